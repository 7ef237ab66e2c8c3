//! VERP: the return path `bounces+MESSAGEID-INDEX@RETURN_PATH_DOMAIN` the
//! relay sends each recipient's copy with, so that an asynchronous bounce
//! names its message and recipient even when the bounce itself is vague.

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;
use uuid::Uuid;

/// Local-part prefix of every VERP address.
pub const PREFIX: &str = "bounces+";

/// The message and recipient a VERP address names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verp {
    pub message_id: String,
    pub recipient_index: u32,
}

/// The local part for recipient `idx` of message `id`.
pub fn local_part(id: &Uuid, idx: u32) -> String {
    format!("{PREFIX}{}-{idx}", id.hyphenated())
}

/// A VERP address anywhere in `text`: a recipient header, or the quoted
/// headers of a reported message.
pub fn find(text: &str) -> Option<Verp> {
    static VERP: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)bounces\+([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})-(\d{1,4})@")
            .expect("regex")
    });
    VERP.captures(text).and_then(|m| {
        Some(Verp {
            message_id: m[1].to_ascii_lowercase(),
            recipient_index: m[2].parse().ok()?,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_verp_address_is_found_in_a_header() {
        let id = Uuid::now_v7();
        let header = format!(
            "To: <{}@bounces.shop.example>",
            local_part(&id, 7).to_uppercase()
        );
        assert_eq!(
            find(&header),
            Some(Verp {
                message_id: id.to_string(),
                recipient_index: 7
            })
        );
        assert_eq!(find("bounces+not-a-uuid-1@x.example"), None);
        assert_eq!(find("someone@x.example"), None);
    }

    proptest! {
        #[test]
        fn encode_then_find_round_trips(bytes in any::<[u8; 16]>(), idx in 0u32..10_000) {
            let id = Uuid::from_bytes(bytes);
            let found = find(&format!("{}@rp.example", local_part(&id, idx))).unwrap();
            prop_assert_eq!(found.message_id, id.to_string());
            prop_assert_eq!(found.recipient_index, idx);
        }
    }
}
