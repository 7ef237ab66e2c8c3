//! VERP: the return path `bounces+MESSAGE-INDEX-TAG@RETURN_PATH_DOMAIN`
//! each recipient's copy is sent with, so that an asynchronous bounce names
//! its message and recipient even when the bounce itself is vague, and so
//! that nobody can make mailroom suppress an address by mailing a made-up
//! bounce: `TAG` is an HMAC of the message and recipient under the relay's
//! key (see [`Signer::return_path_tag`]).
//!
//! `MESSAGE` is the message id's 32 hex digits (no hyphens), `INDEX` the
//! recipient's index in decimal: the local part is at most 63 characters,
//! inside RFC 5321's 64. Relays before the tag sent
//! `bounces+UUID-INDEX@…`; such an address is still read, as an untagged
//! claim that proves nothing.

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;
use uuid::Uuid;

use crate::token::Signer;

/// Local-part prefix of every VERP address.
pub const PREFIX: &str = "bounces+";

/// A VERP address as found in a message: what it claims, and the tag that
/// would prove it. Nothing here is trusted until [`Verp::check`] says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verp {
    /// The message id, hyphenated lowercase.
    pub message_id: String,
    pub recipient_index: u32,
    /// The HMAC tag, lowercase hex; `None` for an untagged (pre-tag) path.
    pub tag: Option<String>,
}

/// What checking a found VERP address against the key says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// We made it, for this message and recipient, within the window.
    Verified { message: Uuid, recipient_index: u16 },
    /// No tag: a relay before the tag made it, or anyone did.
    Untagged,
    /// A tag that we did not make: forged, or made under another key.
    Forged,
    /// Our tag, but for a message older than the window (or dated in the
    /// future): a replay of an old return path.
    Stale,
}

/// The local part for recipient `idx` of message `id`, tagged by `signer`.
pub fn local_part(signer: &Signer, id: &Uuid, idx: u16) -> String {
    format!(
        "{PREFIX}{}-{idx}-{}",
        id.simple(),
        signer.return_path_tag(*id, idx)
    )
}

impl Verp {
    /// Whether we made this address, for a message accepted no more than
    /// `window_ms` before `now_ms` (a UUIDv7 message id carries its time,
    /// signed with the rest, so this needs no lookup).
    pub fn check(&self, signer: &Signer, now_ms: i64, window_ms: i64) -> Check {
        let Some(tag) = &self.tag else {
            return Check::Untagged;
        };
        let (Ok(id), Ok(idx)) = (
            Uuid::parse_str(&self.message_id),
            u16::try_from(self.recipient_index),
        ) else {
            return Check::Forged;
        };
        if !signer.verify_return_path_tag(id, idx, tag) {
            return Check::Forged;
        }
        if !within_window(&id, now_ms, window_ms) {
            return Check::Stale;
        }
        Check::Verified {
            message: id,
            recipient_index: idx,
        }
    }
}

/// Whether message `id`, a UUIDv7 (which carries its creation time), was
/// made no more than `window_ms` before `now_ms`. A little clock skew
/// between relays is allowed; an id from further in the future, or one with
/// no time in it, is not ours to honour.
pub fn within_window(id: &Uuid, now_ms: i64, window_ms: i64) -> bool {
    const SKEW_MS: i64 = 5 * 60 * 1000;
    let Some(made_ms) = id.get_timestamp().map(|t| {
        let (secs, nanos) = t.to_unix();
        i64::try_from(secs).unwrap_or(i64::MAX) * 1000 + i64::from(nanos / 1_000_000)
    }) else {
        return false;
    };
    made_ms <= now_ms.saturating_add(SKEW_MS) && now_ms.saturating_sub(made_ms) <= window_ms
}

/// Every VERP address in `text`, in order: a recipient header, or the
/// quoted headers of a reported message.
pub fn find_all(text: &str) -> Vec<Verp> {
    static VERP: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(concat!(
            r"(?i)bounces\+(?:",
            r"([0-9a-f]{32})-(\d{1,5})-([0-9a-f]{16})",
            r"|([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})-(\d{1,5})",
            r")@"
        ))
        .expect("regex")
    });
    VERP.captures_iter(text)
        .filter_map(|m| {
            let (id, idx, tag) = match (m.get(1), m.get(4)) {
                (Some(id), _) => (id, m.get(2)?, m.get(3)),
                (None, Some(id)) => (id, m.get(5)?, None),
                (None, None) => return None,
            };
            Some(Verp {
                message_id: Uuid::parse_str(id.as_str()).ok()?.hyphenated().to_string(),
                recipient_index: idx.as_str().parse().ok()?,
                tag: tag.map(|t| t.as_str().to_ascii_lowercase()),
            })
        })
        .collect()
}

/// The VERP address in `text` that can prove most: the first tagged one,
/// else the first untagged one.
pub fn find(text: &str) -> Option<Verp> {
    best(find_all(text))
}

/// The first tagged address of `found`, else the first.
pub fn best(found: Vec<Verp>) -> Option<Verp> {
    let tagged = found.iter().position(|v| v.tag.is_some());
    found.into_iter().nth(tagged.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DAY_MS: i64 = 24 * 3600 * 1000;

    fn now_ms() -> i64 {
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap()
    }

    #[test]
    fn a_tagged_address_is_found_in_any_case_and_verifies() {
        let s = Signer::new(b"k1");
        let id = Uuid::now_v7();
        let local = local_part(&s, &id, 7);
        assert!(local.len() <= 64, "{local}");
        let header = format!("To: <{}@bounces.shop.example>", local.to_uppercase());
        let found = find(&header).unwrap();
        assert_eq!(found.message_id, id.to_string());
        assert_eq!(found.recipient_index, 7);
        assert_eq!(
            found.check(&s, now_ms(), DAY_MS),
            Check::Verified {
                message: id,
                recipient_index: 7
            }
        );
        // The longest one still fits a local part.
        assert!(local_part(&s, &id, u16::MAX).len() <= 64);
    }

    #[test]
    fn forged_stale_and_untagged_addresses_are_told_apart() {
        let s = Signer::new(b"k1");
        let id = Uuid::now_v7();
        let good = find(&format!("{}@rp.example", local_part(&s, &id, 2))).unwrap();
        // Another key, another recipient index, a changed tag.
        assert_eq!(
            good.check(&Signer::new(b"k2"), now_ms(), DAY_MS),
            Check::Forged
        );
        let other_idx = Verp {
            recipient_index: 3,
            ..good.clone()
        };
        assert_eq!(other_idx.check(&s, now_ms(), DAY_MS), Check::Forged);
        let mut tag = good.tag.clone().unwrap();
        tag.replace_range(0..1, if tag.starts_with('0') { "1" } else { "0" });
        let changed = Verp {
            tag: Some(tag),
            ..good.clone()
        };
        assert_eq!(changed.check(&s, now_ms(), DAY_MS), Check::Forged);
        // Ours, but past the window, or from the future.
        assert_eq!(good.check(&s, now_ms() + 2 * DAY_MS, DAY_MS), Check::Stale);
        assert_eq!(good.check(&s, now_ms() - DAY_MS, DAY_MS), Check::Stale);
        // A pre-tag address is read but proves nothing.
        let old = find(&format!("bounces+{}-4@rp.example", id.hyphenated())).unwrap();
        assert_eq!(old.tag, None);
        assert_eq!(old.recipient_index, 4);
        assert_eq!(old.check(&s, now_ms(), DAY_MS), Check::Untagged);
        assert_eq!(find("bounces+not-a-uuid-1@x.example"), None);
        assert_eq!(find("someone@x.example"), None);
    }

    #[test]
    fn the_tagged_address_wins_over_an_untagged_one() {
        let s = Signer::new(b"k1");
        let id = Uuid::now_v7();
        let text = format!(
            "Delivered-To: bounces+{}-0@rp.example\nReturn-Path: <{}@rp.example>",
            Uuid::now_v7().hyphenated(),
            local_part(&s, &id, 1)
        );
        assert_eq!(find_all(&text).len(), 2);
        assert_eq!(find(&text).unwrap().message_id, id.to_string());
    }

    proptest! {
        #[test]
        fn encode_then_find_round_trips(bytes in any::<[u8; 16]>(), idx in any::<u16>()) {
            let s = Signer::new(b"key");
            let id = Uuid::from_bytes(bytes);
            let found = find(&format!("{}@rp.example", local_part(&s, &id, idx))).unwrap();
            prop_assert_eq!(found.message_id, id.to_string());
            prop_assert_eq!(found.recipient_index, u32::from(idx));
            prop_assert!(found.tag.is_some());
        }

        #[test]
        fn garbage_never_verifies_or_panics(local in "[a-zA-Z0-9+-]{0,80}") {
            let s = Signer::new(b"key");
            for v in find_all(&format!("{local}@rp.example")) {
                let verified = matches!(v.check(&s, now_ms(), DAY_MS), Check::Verified { .. });
                prop_assert!(!verified, "{:?} verified", v);
            }
        }
    }
}
