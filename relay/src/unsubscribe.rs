//! One-click unsubscribe links (RFC 8058): an unforgeable token per
//! marketing recipient, and the headers that carry it.
//!
//! A token is the message id and recipient index followed by an HMAC-SHA256
//! of them (truncated to 128 bits) under a key every relay process shares
//! (made on first start, kept in the store). It can't be forged or
//! enumerated, names no address, and needs no lookup to verify.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::{CustomHeader, MessageId, NewMessage, Stream};

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the MAC kept in a token.
const MAC_LEN: usize = 16;
/// Domain separation: a token made for one purpose never verifies for
/// another under the same key.
const UNSUBSCRIBE: &[u8] = b"mailroom unsubscribe v1\0";
const REFERENCE: &[u8] = b"mailroom reference v1\0";
const CONFIRM: &[u8] = b"mailroom confirm v1\0";

/// Makes and checks unsubscribe links.
pub struct Links {
    /// `https://mail.shop.example`, no trailing slash.
    base_url: String,
    key: Vec<u8>,
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Links")
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl Links {
    pub fn new(base_url: &str, key: &[u8]) -> Links {
        Links {
            base_url: base_url.trim_end_matches('/').to_string(),
            key: key.to_vec(),
        }
    }

    fn mac(&self, context: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(context);
        mac
    }

    fn sign(&self, context: &[u8], message: &MessageId, idx: u16) -> String {
        let mut payload = Vec::with_capacity(18 + MAC_LEN);
        payload.extend_from_slice(message.as_uuid().as_bytes());
        payload.extend_from_slice(&idx.to_be_bytes());
        let mut mac = self.mac(context);
        mac.update(&payload);
        payload.extend_from_slice(&mac.finalize().into_bytes()[..MAC_LEN]);
        URL_SAFE_NO_PAD.encode(payload)
    }

    fn check(&self, context: &[u8], token: &str) -> Option<(MessageId, u16)> {
        if token.len() > 64 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
        if bytes.len() != 18 + MAC_LEN {
            return None;
        }
        let (payload, tag) = bytes.split_at(18);
        let mut mac = self.mac(context);
        mac.update(payload);
        // Constant-time comparison of the truncated tag.
        mac.verify_truncated_left(tag).ok()?;
        let id = uuid::Uuid::from_slice(&payload[..16]).ok()?;
        let idx = u16::from_be_bytes([payload[16], payload[17]]);
        Some((MessageId::from_uuid(id), idx))
    }

    /// The unsubscribe token for recipient `idx` of `message`.
    pub fn token(&self, message: &MessageId, idx: u16) -> String {
        self.sign(UNSUBSCRIBE, message, idx)
    }

    /// The message and recipient an unsubscribe token names, if it is one
    /// we made.
    pub fn verify(&self, token: &str) -> Option<(MessageId, u16)> {
        self.check(UNSUBSCRIBE, token)
    }

    /// The opaque reference (`X-Mailroom-Ref`) that maps a feedback-loop
    /// report, whose recipient is often redacted, back to its recipient.
    pub fn reference(&self, message: &MessageId, idx: u16) -> String {
        self.sign(REFERENCE, message, idx)
    }

    pub fn verify_reference(&self, reference: &str) -> Option<(MessageId, u16)> {
        self.check(REFERENCE, reference.trim())
    }

    /// A double opt-in link's token: a random `secret` (whose hash the
    /// subscriber row keeps until the link is used) and the expiry, signed.
    pub fn confirm_token(&self, secret: &[u8; 16], expires_at_secs: i64) -> String {
        let mut payload = Vec::with_capacity(24 + MAC_LEN);
        payload.extend_from_slice(secret);
        payload.extend_from_slice(&expires_at_secs.to_be_bytes());
        let mut mac = self.mac(CONFIRM);
        mac.update(&payload);
        payload.extend_from_slice(&mac.finalize().into_bytes()[..MAC_LEN]);
        URL_SAFE_NO_PAD.encode(payload)
    }

    /// The secret of a confirmation token we made that has not expired at
    /// `now_secs`.
    pub fn verify_confirm(&self, token: &str, now_secs: i64) -> Option<[u8; 16]> {
        if token.len() > 64 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
        if bytes.len() != 24 + MAC_LEN {
            return None;
        }
        let (payload, tag) = bytes.split_at(24);
        let mut mac = self.mac(CONFIRM);
        mac.update(payload);
        mac.verify_truncated_left(tag).ok()?;
        let expires = i64::from_be_bytes(payload[16..24].try_into().ok()?);
        (now_secs <= expires).then(|| payload[..16].try_into().expect("16 bytes"))
    }

    /// `https://HOST/c/TOKEN`.
    pub fn confirm_url(&self, token: &str) -> String {
        format!("{}/c/{token}", self.base_url)
    }

    /// `https://HOST/u/TOKEN`.
    pub fn url(&self, token: &str) -> String {
        format!("{}/u/{token}", self.base_url)
    }
}

/// Local part prefix of the `mailto:` unsubscribe address:
/// `unsubscribe+TOKEN@DOMAIN`.
pub const MAILTO_PREFIX: &str = "unsubscribe+";

/// Recipient index in a token that names a whole message: a message with
/// several recipients shares one rendering, so its `mailto:` link can't
/// name one of them; the request's From does.
pub const WHOLE_MESSAGE: u16 = u16::MAX;

/// The links of one marketing message's `List-Unsubscribe`.
pub struct ListLinks {
    /// This recipient's one-click URL; None for several recipients.
    pub https: Option<String>,
    /// `mailto:unsubscribe+TOKEN@DOMAIN?subject=unsubscribe`.
    pub mailto: String,
}

/// Marketing mail gets RFC 2369/8058 list headers, signed with the rest:
/// `List-Unsubscribe` with the recipient's one-click link and a `mailto:`
/// link, `List-Unsubscribe-Post` and a `List-Id`. A one-click link names
/// one recipient, so a message with several recipients gets the `mailto:`
/// link only (and no `List-Unsubscribe-Post`, which RFC 8058 ties to an
/// https link): campaigns should send one message per subscriber.
/// Headers the caller set are kept as they are. `links` is only asked for
/// when the message gets them (signing is work other messages don't need).
pub fn add_list_headers(msg: &mut NewMessage, links: impl FnOnce(usize) -> ListLinks) {
    if msg.stream != Stream::Marketing {
        return;
    }
    let has = |msg: &NewMessage, name: &str| {
        msg.headers
            .iter()
            .any(|h| h.name().eq_ignore_ascii_case(name))
    };
    let mut extra = Vec::new();
    if !has(msg, "List-Unsubscribe") && !has(msg, "List-Unsubscribe-Post") {
        let links = links(msg.recipients().count());
        match links.https {
            Some(url) => {
                extra.push(("List-Unsubscribe", format!("<{url}>, <{}>", links.mailto)));
                extra.push((
                    "List-Unsubscribe-Post",
                    "List-Unsubscribe=One-Click".to_string(),
                ));
            }
            None => extra.push(("List-Unsubscribe", format!("<{}>", links.mailto))),
        }
    }
    if !has(msg, "List-Id") {
        let domain = msg.from.address().domain().to_string();
        extra.push(("List-Id", format!("<marketing.{domain}>")));
    }
    for (name, value) in extra {
        // Values built here are valid headers; a failure would be a bug,
        // and the message is still sendable without them.
        match CustomHeader::parse(name, &value) {
            Ok(h) => msg.headers.push(h),
            Err(e) => tracing::error!(name, error = %e.message, "list header refused"),
        }
    }
}

/// The header carrying [`Links::reference`].
pub const REFERENCE_HEADER: &str = "X-Mailroom-Ref";

/// Every single-recipient message carries a signed reference to its
/// recipient, so a complaint report that redacts the address still names
/// who complained. (Several recipients share one rendering: their
/// complaints are traced through the per-recipient VERP return path.)
pub fn add_reference_header(msg: &mut NewMessage, reference: impl FnOnce() -> String) {
    if msg.recipients().count() != 1
        || msg
            .headers
            .iter()
            .any(|h| h.name().eq_ignore_ascii_case(REFERENCE_HEADER))
    {
        return;
    }
    match CustomHeader::parse(REFERENCE_HEADER, &reference()) {
        Ok(h) => msg.headers.push(h),
        Err(e) => tracing::error!(error = %e.message, "reference header refused"),
    }
}

/// A fresh random key, hex-encoded, for the store.
pub fn new_key() -> String {
    use rand::RngCore as _;
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    hex::encode(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_any_change_is_refused() {
        let links = Links::new("https://mail.shop.example/", b"k1");
        let id = MessageId::new();
        let t = links.token(&id, 3);
        assert_eq!(links.verify(&t), Some((id, 3)));
        assert_eq!(links.url(&t), format!("https://mail.shop.example/u/{t}"));
        // Another key, a flipped character, a truncated or padded token.
        assert_eq!(Links::new("x", b"k2").verify(&t), None);
        let mut chars: Vec<char> = t.chars().collect();
        chars[5] = if chars[5] == 'A' { 'B' } else { 'A' };
        assert_eq!(links.verify(&chars.iter().collect::<String>()), None);
        assert_eq!(links.verify(&t[..t.len() - 1]), None);
        assert_eq!(links.verify(&format!("{t}A")), None);
        assert_eq!(links.verify(""), None);
        assert_eq!(links.verify("../../etc/passwd"), None);
        // Another recipient of the same message gets another token.
        assert_ne!(links.token(&id, 4), t);
        // References are signed apart: neither verifies as the other.
        let r = links.reference(&id, 3);
        assert_eq!(links.verify_reference(&r), Some((id, 3)));
        assert_eq!(links.verify_reference(&t), None);
        assert_eq!(links.verify(&r), None);
    }

    #[test]
    fn confirm_tokens_expire_and_are_signed_apart() {
        let links = Links::new("https://mail.shop.example", b"k1");
        let t = links.confirm_token(&[7; 16], 1_000);
        assert_eq!(links.verify_confirm(&t, 999), Some([7; 16]));
        assert_eq!(links.verify_confirm(&t, 1_000), Some([7; 16]));
        assert_eq!(links.verify_confirm(&t, 1_001), None);
        assert_eq!(Links::new("x", b"k2").verify_confirm(&t, 0), None);
        assert_eq!(links.verify(&t), None);
        // Moving the expiry invalidates the signature.
        let mut bytes = URL_SAFE_NO_PAD.decode(&t).unwrap();
        bytes[23] ^= 1;
        assert_eq!(
            links.verify_confirm(&URL_SAFE_NO_PAD.encode(bytes), 0),
            None
        );
        assert!(
            links
                .confirm_url(&t)
                .starts_with("https://mail.shop.example/c/")
        );
    }
}
