//! What a suppression entry is: which mail it stops ([`Scope`]), whom it
//! covers ([`Target`]) and why ([`Reason`]). The relay stores entries and
//! enforces them before queuing; these types decide what an entry may be.

use std::fmt;
use std::str::FromStr;

use crate::email::{AddressError, Domain, EmailAddress};
use crate::stream::Stream;

/// What an entry covers: one address, or every address at a domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// Lower-cased.
    Address(String),
    Domain(String),
}

/// Why a value can't be a suppression target.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TargetError {
    #[error("give exactly one of address and domain")]
    NeitherOrBoth,
    #[error(transparent)]
    Address(#[from] AddressError),
}

impl Target {
    /// Exactly one of `address` and `domain`, parsed as the send API parses
    /// recipients, so an entry matches what the relay will check.
    ///
    /// # Errors
    /// Neither or both given, or the value doesn't parse.
    pub fn parse(address: Option<&str>, domain: Option<&str>) -> Result<Target, TargetError> {
        match (address, domain) {
            (Some(a), None) => Ok(Target::address(&EmailAddress::parse(a)?)),
            (None, Some(d)) => Ok(Target::Domain(Domain::parse(d)?.to_string())),
            _ => Err(TargetError::NeitherOrBoth),
        }
    }

    /// `a@b.example` is an address, `b.example` a domain.
    ///
    /// # Errors
    /// As [`Target::parse`].
    pub fn parse_either(value: &str) -> Result<Target, TargetError> {
        if value.contains('@') {
            Target::parse(Some(value), None)
        } else {
            Target::parse(None, Some(value))
        }
    }

    /// The entry for one already-parsed address.
    pub fn address(address: &EmailAddress) -> Target {
        Target::Address(address.as_str().to_lowercase())
    }

    pub fn kind(&self) -> TargetKind {
        match self {
            Target::Address(_) => TargetKind::Address,
            Target::Domain(_) => TargetKind::Domain,
        }
    }

    pub fn value(&self) -> &str {
        match self {
            Target::Address(v) | Target::Domain(v) => v,
        }
    }

    /// The domain part of an address target, or the domain itself.
    pub fn domain(&self) -> &str {
        match self {
            Target::Address(a) => a.rsplit_once('@').map_or("", |(_, d)| d),
            Target::Domain(d) => d,
        }
    }
}

/// Whether an entry names one address or a whole domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Address,
    Domain,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Address => "address",
            TargetKind::Domain => "domain",
        }
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TargetKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "address" => Ok(TargetKind::Address),
            "domain" => Ok(TargetKind::Domain),
            other => Err(format!(
                "unknown kind {other:?}: expected address or domain"
            )),
        }
    }
}

/// Which mail an entry stops: all of it, or one stream's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Global,
    Stream(Stream),
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Global => "global",
            Scope::Stream(s) => s.as_str(),
        }
    }

    /// Whether the entry stops mail on `stream`.
    pub fn covers(self, stream: Stream) -> bool {
        match self {
            Scope::Global => true,
            Scope::Stream(s) => s == stream,
        }
    }
}

impl serde::Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "global" => Ok(Scope::Global),
            other => other.parse::<Stream>().map(Scope::Stream).map_err(|_| {
                format!("unknown scope {other:?}: expected global, transactional or marketing")
            }),
        }
    }
}

/// Why an address is suppressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The address or domain doesn't exist.
    HardBounce,
    /// `soft_bounce_limit` soft bounces within the window.
    SoftBounces,
    /// The recipient reported the mail as spam.
    Complaint,
    /// One-click, `mailto:` or API unsubscribe (marketing).
    Unsubscribe,
    /// Added by an operator.
    Manual,
}

impl Reason {
    pub const ALL: [Reason; 5] = [
        Reason::HardBounce,
        Reason::SoftBounces,
        Reason::Complaint,
        Reason::Unsubscribe,
        Reason::Manual,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::HardBounce => "hard_bounce",
            Reason::SoftBounces => "soft_bounces",
            Reason::Complaint => "complaint",
            Reason::Unsubscribe => "unsubscribe",
            Reason::Manual => "manual",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Reason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
                format!("unknown reason {s:?}: expected one of {}", names.join(", "))
            })
    }
}

/// Rows read back from a store parse through these (sqlx's `try_from`).
macro_rules! try_from_string {
    ($($t:ty),*) => {$(
        impl TryFrom<String> for $t {
            type Error = String;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }
    )*};
}
try_from_string!(Scope, TargetKind, Reason);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_scopes_parse_like_recipients() {
        assert_eq!(
            Target::parse_either(" Dana@Customer.Example ").unwrap(),
            Target::Address("dana@customer.example".into())
        );
        assert_eq!(
            Target::parse_either("Customer.Example.").unwrap(),
            Target::Domain("customer.example".into())
        );
        assert_eq!(
            Target::parse(Some("a@b.example"), Some("b.example")),
            Err(TargetError::NeitherOrBoth)
        );
        assert!(Target::parse_either("bad@").is_err());
        assert!(Target::parse_either("a@b.example\r\nX: y").is_err());
        assert_eq!(
            "marketing".parse::<Scope>().unwrap(),
            Scope::Stream(Stream::Marketing)
        );
        assert!("everything".parse::<Scope>().is_err());
        assert_eq!(Scope::try_from("global".to_string()), Ok(Scope::Global));
        assert_eq!("domain".parse::<TargetKind>(), Ok(TargetKind::Domain));
        assert!(TargetKind::try_from("user".to_string()).is_err());
        assert_eq!(
            Target::parse_either("a@B.example").unwrap().domain(),
            "b.example"
        );
    }

    #[test]
    fn a_scope_covers_its_stream_or_all() {
        assert!(Scope::Global.covers(Stream::Transactional));
        assert!(Scope::Stream(Stream::Marketing).covers(Stream::Marketing));
        assert!(!Scope::Stream(Stream::Marketing).covers(Stream::Transactional));
    }

    #[test]
    fn reasons_round_trip_and_an_unknown_one_lists_the_rest() {
        for r in Reason::ALL {
            assert_eq!(r.as_str().parse::<Reason>(), Ok(r));
        }
        let err = "spam".parse::<Reason>().unwrap_err();
        assert!(
            err.contains("hard_bounce") && err.contains("manual"),
            "{err}"
        );
    }
}
