//! Unforgeable tokens for the links and addresses mailroom puts in mail:
//! one-click unsubscribe, the complaint reference header, and double
//! opt-in confirmation.
//!
//! A recipient token is the message id (16 bytes) and the recipient index
//! followed by an HMAC-SHA256 of them, truncated to 128 bits, under a key
//! every relay process shares. It can't be forged or enumerated, names no
//! address, and needs no lookup to verify. A confirmation token carries a
//! random secret and its expiry instead. Each purpose signs under its own
//! context, so a token made for one never verifies for another.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the MAC kept in a token.
const MAC_LEN: usize = 16;
/// Longest token text accepted before decoding (a real one is 46 or 54).
const MAX_TOKEN_LEN: usize = 64;

/// What a recipient token is for; part of what is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `/u/TOKEN` and `mailto:unsubscribe+TOKEN@…`.
    Unsubscribe,
    /// The `X-Mailroom-Ref` header that traces a redacted complaint.
    Reference,
}

impl Purpose {
    fn context(self) -> &'static [u8] {
        match self {
            Purpose::Unsubscribe => b"mailroom unsubscribe v1\0",
            Purpose::Reference => b"mailroom reference v1\0",
        }
    }
}

const CONFIRM: &[u8] = b"mailroom confirm v1\0";
const RETURN_PATH: &[u8] = b"mailroom return-path v1\0";

/// Bytes of the MAC in a VERP return-path tag: 64 bits, as 16 hex digits.
/// Shorter than a link token's because a local part holds at most 64
/// characters; a forger still has to guess 2^64 tags online, each guess a
/// request we count.
const RETURN_PATH_MAC_LEN: usize = 8;

/// Signs and verifies tokens under one key.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.write_str("Signer(..)")
    }
}

impl Signer {
    pub fn new(key: &[u8]) -> Signer {
        Signer { key: key.to_vec() }
    }

    fn mac(&self, context: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(context);
        mac
    }

    fn seal(&self, context: &[u8], mut payload: Vec<u8>) -> String {
        let mut mac = self.mac(context);
        mac.update(&payload);
        payload.extend_from_slice(&mac.finalize().into_bytes()[..MAC_LEN]);
        URL_SAFE_NO_PAD.encode(payload)
    }

    /// The payload of a token sealed under `context`, `payload_len` bytes.
    fn open(&self, context: &[u8], token: &str, payload_len: usize) -> Option<Vec<u8>> {
        if token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let mut bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
        if bytes.len() != payload_len + MAC_LEN {
            return None;
        }
        let tag = bytes.split_off(payload_len);
        let mut mac = self.mac(context);
        mac.update(&bytes);
        // Constant-time comparison of the truncated tag.
        mac.verify_truncated_left(&tag).ok()?;
        Some(bytes)
    }

    /// The token naming recipient `idx` of message `id` for `purpose`.
    pub fn recipient(&self, purpose: Purpose, id: Uuid, idx: u16) -> String {
        let mut payload = Vec::with_capacity(18 + MAC_LEN);
        payload.extend_from_slice(id.as_bytes());
        payload.extend_from_slice(&idx.to_be_bytes());
        self.seal(purpose.context(), payload)
    }

    /// The message and recipient a token names, if we made it for `purpose`.
    pub fn verify_recipient(&self, purpose: Purpose, token: &str) -> Option<(Uuid, u16)> {
        let payload = self.open(purpose.context(), token, 18)?;
        let id = Uuid::from_slice(&payload[..16]).ok()?;
        Some((id, u16::from_be_bytes([payload[16], payload[17]])))
    }

    /// The tag of the VERP return path of recipient `idx` of message `id`:
    /// lowercase hex, because receiving MTAs may change a local part's case.
    pub fn return_path_tag(&self, id: Uuid, idx: u16) -> String {
        let mut mac = self.mac(RETURN_PATH);
        mac.update(id.as_bytes());
        mac.update(&idx.to_be_bytes());
        hex::encode(&mac.finalize().into_bytes()[..RETURN_PATH_MAC_LEN])
    }

    /// Whether `tag` (any case) is the return-path tag we made for
    /// recipient `idx` of message `id`; compared in constant time.
    pub fn verify_return_path_tag(&self, id: Uuid, idx: u16, tag: &str) -> bool {
        let Ok(tag) = hex::decode(tag) else {
            return false;
        };
        if tag.len() != RETURN_PATH_MAC_LEN {
            return false;
        }
        let mut mac = self.mac(RETURN_PATH);
        mac.update(id.as_bytes());
        mac.update(&idx.to_be_bytes());
        mac.verify_truncated_left(&tag).is_ok()
    }

    /// A double opt-in link's token: a random `secret` (whose hash the
    /// subscriber row keeps until the link is used) and the expiry, signed.
    pub fn confirmation(&self, secret: &[u8; 16], expires_at_secs: i64) -> String {
        let mut payload = Vec::with_capacity(24 + MAC_LEN);
        payload.extend_from_slice(secret);
        payload.extend_from_slice(&expires_at_secs.to_be_bytes());
        self.seal(CONFIRM, payload)
    }

    /// The secret of a confirmation token we made that has not expired at
    /// `now_secs`.
    pub fn verify_confirmation(&self, token: &str, now_secs: i64) -> Option<[u8; 16]> {
        let payload = self.open(CONFIRM, token, 24)?;
        let expires = i64::from_be_bytes(payload[16..24].try_into().ok()?);
        (now_secs <= expires).then(|| payload[..16].try_into().expect("16 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn recipient_tokens_verify_and_any_change_is_refused() {
        let s = Signer::new(b"k1");
        let id = Uuid::now_v7();
        let t = s.recipient(Purpose::Unsubscribe, id, 3);
        assert_eq!(s.verify_recipient(Purpose::Unsubscribe, &t), Some((id, 3)));
        // Another key, a flipped character, a truncated or padded token.
        assert_eq!(
            Signer::new(b"k2").verify_recipient(Purpose::Unsubscribe, &t),
            None
        );
        let mut chars: Vec<char> = t.chars().collect();
        chars[5] = if chars[5] == 'A' { 'B' } else { 'A' };
        let flipped: String = chars.iter().collect();
        assert_eq!(s.verify_recipient(Purpose::Unsubscribe, &flipped), None);
        assert_eq!(
            s.verify_recipient(Purpose::Unsubscribe, &t[..t.len() - 1]),
            None
        );
        assert_eq!(
            s.verify_recipient(Purpose::Unsubscribe, &format!("{t}A")),
            None
        );
        assert_eq!(s.verify_recipient(Purpose::Unsubscribe, ""), None);
        assert_eq!(
            s.verify_recipient(Purpose::Unsubscribe, "../../etc/passwd"),
            None
        );
        assert_ne!(s.recipient(Purpose::Unsubscribe, id, 4), t);
        // Purposes are signed apart: neither verifies as the other.
        let r = s.recipient(Purpose::Reference, id, 3);
        assert_eq!(s.verify_recipient(Purpose::Reference, &r), Some((id, 3)));
        assert_eq!(s.verify_recipient(Purpose::Reference, &t), None);
        assert_eq!(s.verify_recipient(Purpose::Unsubscribe, &r), None);
        assert_eq!(s.verify_confirmation(&t, 0), None);
    }

    #[test]
    fn confirmation_tokens_expire_and_their_expiry_is_signed() {
        let s = Signer::new(b"k1");
        let t = s.confirmation(&[7; 16], 1_000);
        assert_eq!(s.verify_confirmation(&t, 999), Some([7; 16]));
        assert_eq!(s.verify_confirmation(&t, 1_000), Some([7; 16]));
        assert_eq!(s.verify_confirmation(&t, 1_001), None);
        assert_eq!(Signer::new(b"k2").verify_confirmation(&t, 0), None);
        assert_eq!(s.verify_recipient(Purpose::Unsubscribe, &t), None);
        let mut bytes = URL_SAFE_NO_PAD.decode(&t).unwrap();
        bytes[23] ^= 1;
        assert_eq!(
            s.verify_confirmation(&URL_SAFE_NO_PAD.encode(bytes), 0),
            None
        );
    }

    proptest! {
        #[test]
        fn every_recipient_token_round_trips(bytes in any::<[u8; 16]>(), idx in any::<u16>()) {
            let s = Signer::new(b"key");
            let id = Uuid::from_bytes(bytes);
            for p in [Purpose::Unsubscribe, Purpose::Reference] {
                prop_assert_eq!(s.verify_recipient(p, &s.recipient(p, id, idx)), Some((id, idx)));
            }
        }

        #[test]
        fn garbage_never_verifies_or_panics(t in "\\PC{0,80}") {
            let s = Signer::new(b"key");
            prop_assert_eq!(s.verify_recipient(Purpose::Unsubscribe, &t), None);
            prop_assert_eq!(s.verify_confirmation(&t, 0), None);
        }
    }
}
