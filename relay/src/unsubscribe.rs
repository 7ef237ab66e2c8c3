//! One-click unsubscribe links (RFC 8058): an unforgeable token per
//! marketing recipient, and the headers that carry it.
//!
//! A token is the message id and recipient index followed by an HMAC-SHA256
//! of them (truncated to 128 bits) under a key every relay process shares
//! (made on first start, kept in the store). It can't be forged or
//! enumerated, names no address, and needs no lookup to verify.

use list_hygiene::token::{Purpose, Signer};

use crate::domain::{CustomHeader, MessageId, NewMessage, Stream};

/// Makes and checks the relay's links; the tokens themselves are
/// list-hygiene's [`Signer`].
#[derive(Debug)]
pub struct Links {
    /// `https://mail.shop.example`, no trailing slash.
    base_url: String,
    signer: Signer,
}

impl Links {
    pub fn new(base_url: &str, key: &[u8]) -> Links {
        Links {
            base_url: base_url.trim_end_matches('/').to_string(),
            signer: Signer::new(key),
        }
    }

    /// The key's signer, for the VERP return path's tag.
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// The unsubscribe token for recipient `idx` of `message`.
    pub fn token(&self, message: &MessageId, idx: u16) -> String {
        self.signer
            .recipient(Purpose::Unsubscribe, *message.as_uuid(), idx)
    }

    /// The message and recipient an unsubscribe token names, if it is one
    /// we made.
    pub fn verify(&self, token: &str) -> Option<(MessageId, u16)> {
        self.signer
            .verify_recipient(Purpose::Unsubscribe, token)
            .map(|(id, idx)| (MessageId::from_uuid(id), idx))
    }

    /// The opaque reference (`X-Mailroom-Ref`) that maps a feedback-loop
    /// report, whose recipient is often redacted, back to its recipient.
    pub fn reference(&self, message: &MessageId, idx: u16) -> String {
        self.signer
            .recipient(Purpose::Reference, *message.as_uuid(), idx)
    }

    pub fn verify_reference(&self, reference: &str) -> Option<(MessageId, u16)> {
        self.signer
            .verify_recipient(Purpose::Reference, reference.trim())
            .map(|(id, idx)| (MessageId::from_uuid(id), idx))
    }

    /// A double opt-in link's token (see [`Signer::confirmation`]).
    pub fn confirm_token(&self, secret: &[u8; 16], expires_at_secs: i64) -> String {
        self.signer.confirmation(secret, expires_at_secs)
    }

    /// The secret of a confirmation token we made that has not expired.
    pub fn verify_confirm(&self, token: &str, now_secs: i64) -> Option<[u8; 16]> {
        self.signer.verify_confirmation(token, now_secs)
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
    let has = |name: &str| {
        msg.headers
            .iter()
            .any(|h| h.name().eq_ignore_ascii_case(name))
    };
    let extra = list_headers(
        msg.stream,
        msg.from.address().domain().as_str(),
        msg.recipients().count(),
        has,
        links,
    );
    for (name, value) in extra {
        // Values built here are valid headers; a failure would be a bug,
        // and the message is still sendable without them.
        match CustomHeader::parse(name, &value) {
            Ok(h) => msg.headers.push(h),
            Err(e) => tracing::error!(name, error = %e.message, "list header refused"),
        }
    }
}

/// The list headers [`add_list_headers`] adds, for a message of `stream`
/// from `from_domain` to `recipients` addresses whose headers `has`
/// reports: for a message that arrives whole (SMTP) as for one built here.
pub fn list_headers(
    stream: Stream,
    from_domain: &str,
    recipients: usize,
    has: impl Fn(&str) -> bool,
    links: impl FnOnce(usize) -> ListLinks,
) -> Vec<(&'static str, String)> {
    let mut extra = Vec::new();
    if stream != Stream::Marketing {
        return extra;
    }
    if !has("List-Unsubscribe") && !has("List-Unsubscribe-Post") {
        let links = links(recipients);
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
    if !has("List-Id") {
        extra.push(("List-Id", format!("<marketing.{from_domain}>")));
    }
    extra
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

    // The tokens' own properties are tested in list-hygiene; here, that
    // the relay's links carry them and map back to message ids.
    #[test]
    fn links_carry_verifiable_tokens() {
        let links = Links::new("https://mail.shop.example/", b"k1");
        let id = MessageId::new();
        let t = links.token(&id, 3);
        assert_eq!(links.verify(&t), Some((id, 3)));
        assert_eq!(links.url(&t), format!("https://mail.shop.example/u/{t}"));
        let r = links.reference(&id, 3);
        assert_eq!(links.verify_reference(&format!(" {r} ")), Some((id, 3)));
        assert_eq!(links.verify(&r), None);
        let c = links.confirm_token(&[7; 16], 1_000);
        assert_eq!(links.verify_confirm(&c, 999), Some([7; 16]));
        assert!(
            links
                .confirm_url(&c)
                .starts_with("https://mail.shop.example/c/")
        );
    }
}
