//! The suppression check every recipient passes before it is queued.
//!
//! An in-memory set of 64-bit hashes of every suppressed address and domain
//! sits in front of the store: a recipient whose address and domain are not
//! in it (nearly all of them) costs two hash lookups and no query. A hit is
//! confirmed against the store, which also settles scope, expiry and
//! entries removed since (the set only grows until the process restarts).
//! Entries added by other relay processes reach the set within
//! [`REFRESH`].

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::RwLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::domain::Stream;
use crate::store::{self, Store, SuppressionRecord};

/// How often entries added elsewhere are picked up.
pub const REFRESH: Duration = Duration::from_secs(2);

/// Rows created this long before the last one seen are read again on
/// refresh: another process's insert can commit with an older timestamp
/// than one already read.
const OVERLAP_MS: i64 = 30_000;

fn hash(value: &str) -> u64 {
    // Fixed keys: the same value hashes the same in every process and run.
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// The filter; share it through an `Arc`.
#[derive(Debug)]
pub struct Suppressions {
    hashes: RwLock<HashSet<u64>>,
    synced_to: AtomicI64,
}

impl Suppressions {
    /// Loads every suppressed value.
    ///
    /// # Errors
    /// Store errors.
    pub async fn load(store: &Store) -> store::Result<Suppressions> {
        let (values, newest) = store.suppression_values_since(0).await?;
        Ok(Suppressions {
            hashes: RwLock::new(values.iter().map(|v| hash(v)).collect()),
            synced_to: AtomicI64::new(newest),
        })
    }

    /// Picks up entries added since the last refresh (by any process).
    ///
    /// # Errors
    /// Store errors; the filter keeps what it had.
    pub async fn refresh(&self, store: &Store) -> store::Result<usize> {
        let since = self.synced_to.load(Ordering::Relaxed) - OVERLAP_MS;
        let (values, newest) = store.suppression_values_since(since.max(0)).await?;
        let mut set = self.hashes.write().unwrap_or_else(|p| p.into_inner());
        let before = set.len();
        set.extend(values.iter().map(|v| hash(v)));
        self.synced_to.fetch_max(newest, Ordering::Relaxed);
        Ok(set.len() - before)
    }

    /// Stores `entry` (or refreshes an existing one) and lets this
    /// process's filter know, so it applies to the next message at once.
    ///
    /// # Errors
    /// Store errors; the filter is left as it was.
    pub async fn add(&self, store: &Store, entry: &SuppressionRecord) -> store::Result<()> {
        store.upsert_suppression(entry).await?;
        self.remember(&entry.value);
        Ok(())
    }

    /// Lifts a marketing unsubscribe of `address` (after a new, confirmed
    /// opt-in); other entries stay. The filter needs no change: a hit in
    /// it is always confirmed against the store.
    ///
    /// # Errors
    /// Store errors.
    pub async fn lift_unsubscribe(&self, store: &Store, address: &str) -> store::Result<bool> {
        store
            .delete_suppression_for(
                Scope::Stream(crate::domain::Stream::Marketing).as_str(),
                "address",
                address,
                "unsubscribe",
            )
            .await
    }

    /// Notes a value added to the store, so it applies at once.
    pub fn remember(&self, value: &str) {
        self.hashes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(hash(value));
    }

    fn might_contain(&self, value: &str) -> bool {
        self.hashes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&hash(value))
    }

    /// For each `(address, domain)` (both lower-case), the reason it must
    /// not be mailed on `stream`, or `None`.
    ///
    /// # Errors
    /// Store errors when a hit has to be confirmed.
    pub async fn check(
        &self,
        store: &Store,
        stream: Stream,
        recipients: &[(String, String)],
    ) -> store::Result<Vec<Option<String>>> {
        let candidates: Vec<String> = recipients
            .iter()
            .flat_map(|(a, d)| [a, d])
            .filter(|v| self.might_contain(v))
            .cloned()
            .collect();
        if candidates.is_empty() {
            return Ok(vec![None; recipients.len()]);
        }
        let found = store
            .matching_suppressions(stream.as_str(), &candidates)
            .await?;
        Ok(recipients
            .iter()
            .map(|(address, domain)| {
                found
                    .iter()
                    .find(|s| {
                        (s.kind == "address" && &s.value == address)
                            || (s.kind == "domain" && &s.value == domain)
                    })
                    .map(describe)
            })
            .collect())
    }
}

/// "unsubscribe (marketing)", "hard_bounce (global, domain)".
fn describe(s: &SuppressionRecord) -> String {
    if s.kind == "domain" {
        format!("{} ({}, domain {})", s.reason, s.scope, s.value)
    } else {
        format!("{} ({})", s.reason, s.scope)
    }
}

/// What an entry covers: one address, or every address at a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Lower-cased.
    Address(String),
    Domain(String),
}

impl Target {
    /// Exactly one of `address` and `domain`, parsed as the send API parses
    /// recipients, so an entry matches what the relay will check.
    ///
    /// # Errors
    /// Neither or both given, or the value doesn't parse.
    pub fn parse(address: Option<&str>, domain: Option<&str>) -> Result<Target, String> {
        match (address, domain) {
            (Some(a), None) => crate::domain::EmailAddress::parse(a)
                .map(|a| Target::Address(a.to_string().to_lowercase()))
                .map_err(|e| e.to_string()),
            (None, Some(d)) => crate::domain::address::Domain::parse(d)
                .map(|d| Target::Domain(d.to_string()))
                .map_err(|e| e.to_string()),
            _ => Err("give exactly one of address and domain".into()),
        }
    }

    /// `a@b.example` is an address, `b.example` a domain.
    ///
    /// # Errors
    /// As [`Target::parse`].
    pub fn parse_either(value: &str) -> Result<Target, String> {
        if value.contains('@') {
            Target::parse(Some(value), None)
        } else {
            Target::parse(None, Some(value))
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Target::Address(_) => "address",
            Target::Domain(_) => "domain",
        }
    }

    pub fn value(&self) -> &str {
        match self {
            Target::Address(v) | Target::Domain(v) => v,
        }
    }
}

/// Which mail an entry stops: all of it, or one stream's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
}

impl std::str::FromStr for Scope {
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
pub const REASONS: &[&str] = &[
    "hard_bounce",
    "soft_bounces",
    "complaint",
    "unsubscribe",
    "manual",
];

/// Builds the row for a new entry.
pub fn entry(
    scope: Scope,
    target: &Target,
    reason: &str,
    source: Option<String>,
    expires_at: Option<i64>,
) -> SuppressionRecord {
    SuppressionRecord {
        scope: scope.as_str().to_string(),
        kind: target.kind().to_string(),
        value: target.value().to_string(),
        reason: reason.to_string(),
        source,
        created_at: store::now_ms(),
        expires_at,
    }
}

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
        assert!(Target::parse(Some("a@b.example"), Some("b.example")).is_err());
        assert!(Target::parse_either("bad@").is_err());
        assert!(Target::parse_either("a@b.example\r\nX: y").is_err());
        assert_eq!(
            "marketing".parse::<Scope>().unwrap(),
            Scope::Stream(Stream::Marketing)
        );
        assert!("everything".parse::<Scope>().is_err());
    }
}
