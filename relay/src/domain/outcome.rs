//! How a delivery attempt ended: one type from the SMTP reply to the queue
//! row, the bounce record, the suppression decision, metrics and events.
//! A bounce's class is worked out once, when the outcome is made.

use list_hygiene::bounce::{BounceClass, StatusCode, classify};

/// A reply as received from a server, or the relay's own words when no
/// server answered (connection failure, timeout, expiry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The SMTP code; `None` when no server answered.
    pub code: Option<u16>,
    pub text: String,
    /// The host that answered, or the smarthost.
    pub host: Option<String>,
}

impl Reply {
    /// The relay's own words: no server, no code.
    pub fn local(text: impl Into<String>) -> Reply {
        Reply {
            code: None,
            text: text.into(),
            host: None,
        }
    }
}

/// The result of one attempt for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered(Reply),
    /// 4xx, or the connection or TLS failed: tried again at `retry_at`
    /// (Unix ms).
    Deferred {
        reply: Reply,
        retry_at: i64,
    },
    /// 5xx: permanent for this recipient.
    Bounced {
        reply: Reply,
        class: BounceClass,
    },
    /// Not delivered within the stream's `max_age`, or never deliverable.
    Expired {
        reason: String,
    },
}

impl Outcome {
    /// A permanent failure, classified: only a reply from a server that
    /// answered is read for its cause (list-hygiene's classifier, the same
    /// one inbound bounces go through); a failure the relay decided itself
    /// (no SMTP code) is `Unknown`, so it never suppresses an address.
    pub fn bounced(reply: Reply) -> Outcome {
        let class = if reply.code.is_some_and(|c| (500..600).contains(&c)) {
            classify(StatusCode::find(&reply.text), &reply.text)
        } else {
            BounceClass::Unknown
        };
        Outcome::Bounced { reply, class }
    }

    /// The recipient row's state.
    pub fn state(&self) -> &'static str {
        match self {
            Outcome::Delivered(_) => "delivered",
            Outcome::Deferred { .. } => "deferred",
            Outcome::Bounced { .. } => "bounced",
            Outcome::Expired { .. } => "expired",
        }
    }

    /// The reply, if a server was asked.
    pub fn reply(&self) -> Option<&Reply> {
        match self {
            Outcome::Delivered(reply)
            | Outcome::Deferred { reply, .. }
            | Outcome::Bounced { reply, .. } => Some(reply),
            Outcome::Expired { .. } => None,
        }
    }

    /// The reply's text, or why the message expired.
    pub fn text(&self) -> &str {
        match self {
            Outcome::Expired { reason } => reason,
            other => other.reply().map_or("", |r| r.text.as_str()),
        }
    }

    /// The bounce's class; `None` for any other outcome.
    pub fn class(&self) -> Option<BounceClass> {
        match self {
            Outcome::Bounced { class, .. } => Some(*class),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: u16, text: &str) -> Reply {
        Reply {
            code: Some(code),
            text: text.into(),
            host: Some("mx.example".into()),
        }
    }

    #[test]
    fn a_bounce_is_classified_once_from_the_servers_reply() {
        for (code, text, class) in [
            (550, "550 5.1.1 no such user here", BounceClass::Hard),
            (
                554,
                "554 5.7.1 blocked using zen.spamhaus.org",
                BounceClass::Policy,
            ),
            (552, "552 5.2.2 mailbox full", BounceClass::MailboxFull),
            (552, "552 5.5.3 too many recipients", BounceClass::Policy),
            (550, "550 go away", BounceClass::Soft),
        ] {
            assert_eq!(
                Outcome::bounced(server(code, text)).class(),
                Some(class),
                "{text}"
            );
        }
    }

    #[test]
    fn the_relays_own_refusal_is_never_hard() {
        let own = Outcome::bounced(Reply::local("5.1.1 stored address invalid"));
        assert_eq!(own.class(), Some(BounceClass::Unknown));
        assert_eq!(own.state(), "bounced");
        assert_eq!(own.text(), "5.1.1 stored address invalid");
    }
}
