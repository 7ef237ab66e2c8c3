//! How a delivery attempt ended: one type from the SMTP reply to the queue
//! row, the bounce record, the suppression decision, metrics and events.
//! A bounce's class is worked out once, when the outcome is made.

use list_hygiene::bounce::{BounceClass, BounceReason, diagnose};

/// Where one recipient of a message stands in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecipientState {
    /// Accepted, due now.
    Queued,
    /// Leased to a worker for an attempt.
    Inflight,
    /// A 4xx or a connection failure: due again at `next_attempt_at`.
    Deferred,
    Delivered,
    Bounced,
    Expired,
    /// On the suppression list when accepted: never sent.
    Suppressed,
}

impl RecipientState {
    pub const ALL: [RecipientState; 7] = [
        RecipientState::Queued,
        RecipientState::Inflight,
        RecipientState::Deferred,
        RecipientState::Delivered,
        RecipientState::Bounced,
        RecipientState::Expired,
        RecipientState::Suppressed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RecipientState::Queued => "queued",
            RecipientState::Inflight => "inflight",
            RecipientState::Deferred => "deferred",
            RecipientState::Delivered => "delivered",
            RecipientState::Bounced => "bounced",
            RecipientState::Expired => "expired",
            RecipientState::Suppressed => "suppressed",
        }
    }

    /// Still to be delivered: a worker will (or does) attempt it.
    pub fn is_pending(self) -> bool {
        matches!(
            self,
            RecipientState::Queued | RecipientState::Inflight | RecipientState::Deferred
        )
    }
}

impl std::fmt::Display for RecipientState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for RecipientState {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        RecipientState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown recipient state {s:?}"))
    }
}

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
        /// Why, when the reply's words or code tell.
        reason: Option<BounceReason>,
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
        let (class, reason) = if reply.code.is_some_and(|c| (500..600).contains(&c)) {
            let d = diagnose(None, &reply.text);
            (d.class, d.reason)
        } else {
            (BounceClass::Unknown, None)
        };
        Outcome::Bounced {
            reply,
            class,
            reason,
        }
    }

    /// The recipient row's state.
    pub fn state(&self) -> RecipientState {
        match self {
            Outcome::Delivered(_) => RecipientState::Delivered,
            Outcome::Deferred { .. } => RecipientState::Deferred,
            Outcome::Bounced { .. } => RecipientState::Bounced,
            Outcome::Expired { .. } => RecipientState::Expired,
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
    fn recipient_states_round_trip_and_an_unknown_one_is_an_error() {
        for s in RecipientState::ALL {
            assert_eq!(RecipientState::try_from(s.as_str().to_string()), Ok(s));
        }
        assert!(RecipientState::try_from("lost".to_string()).is_err());
    }

    #[test]
    fn the_relays_own_refusal_is_never_hard() {
        let own = Outcome::bounced(Reply::local("5.1.1 stored address invalid"));
        assert_eq!(own.class(), Some(BounceClass::Unknown));
        assert_eq!(own.state(), RecipientState::Bounced);
        assert_eq!(own.text(), "5.1.1 stored address invalid");
    }
}
