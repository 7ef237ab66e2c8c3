//! A subscriber's status on a list and the changes that move it: the one
//! transition table every path (sign-up, confirmation link, unsubscribe,
//! bounces, complaints, pruning, import) goes through.

use std::fmt;
use std::str::FromStr;

/// Where an address stands on one list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Signed up, confirmation mail sent, link not yet used.
    Pending,
    /// Opted in (double opt-in, or imported with consent collected elsewhere).
    Confirmed,
    Unsubscribed,
    /// A hard bounce: the address doesn't exist.
    Bounced,
    /// The recipient reported mail as spam.
    Complained,
    /// Removed for inactivity.
    Pruned,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Pending,
        Status::Confirmed,
        Status::Unsubscribed,
        Status::Bounced,
        Status::Complained,
        Status::Pruned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Confirmed => "confirmed",
            Status::Unsubscribed => "unsubscribed",
            Status::Bounced => "bounced",
            Status::Complained => "complained",
            Status::Pruned => "pruned",
        }
    }

    /// Still on the list: mail may go to it (pending gets the confirmation).
    pub fn is_live(self) -> bool {
        matches!(self, Status::Pending | Status::Confirmed)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status name that isn't one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "unknown subscriber status {0:?}: expected pending, confirmed, unsubscribed, bounced, complained or pruned"
)]
pub struct UnknownStatus(pub String);

impl FromStr for Status {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_string()))
    }
}

impl TryFrom<String> for Status {
    type Error = UnknownStatus;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// Something that happens to a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Change {
    /// A sign-up form or API call: (re)starts double opt-in.
    SignUp,
    /// The confirmation link was used.
    Confirm,
    /// The subscriber (one-click, mailto, API) or the shop unsubscribed them.
    Unsubscribe,
    /// A bounce that put the address on the suppression list (the bounce
    /// policy), from the relay's own delivery or an inbound bounce.
    Bounce,
    /// A spam complaint (ARF).
    Complaint,
    /// Inactive past the prune window.
    Prune,
    /// Imported with consent collected elsewhere.
    Import,
}

const LIVE: &[Status] = &[Status::Pending, Status::Confirmed];

impl Change {
    pub const ALL: [Change; 7] = [
        Change::SignUp,
        Change::Confirm,
        Change::Unsubscribe,
        Change::Bounce,
        Change::Complaint,
        Change::Prune,
        Change::Import,
    ];

    /// The statuses this change moves a subscriber out of (for a store's
    /// `WHERE status IN (…)`); an address not on the list at all is
    /// [`transition`]'s `None`.
    pub fn applies_to(self) -> &'static [Status] {
        match self {
            Change::SignUp => &[Status::Pending, Status::Unsubscribed, Status::Pruned],
            Change::Confirm => &[Status::Pending],
            Change::Unsubscribe | Change::Bounce | Change::Complaint => LIVE,
            Change::Prune => &[Status::Confirmed],
            Change::Import => &[],
        }
    }

    /// The status the change leads to.
    pub fn leads_to(self) -> Status {
        match self {
            Change::SignUp => Status::Pending,
            Change::Confirm | Change::Import => Status::Confirmed,
            Change::Unsubscribe => Status::Unsubscribed,
            Change::Bounce => Status::Bounced,
            Change::Complaint => Status::Complained,
            Change::Prune => Status::Pruned,
        }
    }
}

/// The new status after `change` for a subscriber now at `current` (`None`:
/// not on the list), or `None` when the change doesn't apply: a confirmed,
/// bounced or complained address signing up again stays as it is (the
/// suppression list, not a new opt-in, decides whether it is mailed), and
/// an import never overrides an existing subscriber's state.
pub fn transition(current: Option<Status>, change: Change) -> Option<Status> {
    let applies = match current {
        None => matches!(change, Change::SignUp | Change::Import),
        Some(s) => change.applies_to().contains(&s),
    };
    applies.then(|| change.leads_to())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Change::*;
    use Status::*;

    #[test]
    fn the_transition_table() {
        // (from, change, to): every row of the table that changes something.
        let allowed = [
            (None, SignUp, Pending),
            (Some(Pending), SignUp, Pending),
            (Some(Unsubscribed), SignUp, Pending),
            (Some(Pruned), SignUp, Pending),
            (Some(Pending), Confirm, Confirmed),
            (Some(Pending), Unsubscribe, Unsubscribed),
            (Some(Confirmed), Unsubscribe, Unsubscribed),
            (Some(Pending), Bounce, Bounced),
            (Some(Confirmed), Bounce, Bounced),
            (Some(Pending), Complaint, Complained),
            (Some(Confirmed), Complaint, Complained),
            (Some(Confirmed), Prune, Pruned),
            (None, Import, Confirmed),
        ];
        let froms = std::iter::once(None).chain(Status::ALL.into_iter().map(Some));
        for from in froms {
            for change in Change::ALL {
                let want = allowed
                    .iter()
                    .find(|(f, c, _)| *f == from && *c == change)
                    .map(|(_, _, to)| *to);
                assert_eq!(transition(from, change), want, "{from:?} + {change:?}");
            }
        }
    }

    #[test]
    fn bounced_and_complained_addresses_are_not_revived_by_a_sign_up() {
        assert_eq!(transition(Some(Bounced), SignUp), None);
        assert_eq!(transition(Some(Complained), SignUp), None);
        assert_eq!(transition(Some(Confirmed), SignUp), None);
    }

    #[test]
    fn statuses_round_trip_and_an_unknown_one_is_an_error() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>(), Ok(s));
        }
        let err = "active".parse::<Status>().unwrap_err().to_string();
        assert!(err.contains("pending") && err.contains("pruned"), "{err}");
    }
}
