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

pub use list_hygiene::suppression::{Reason, Scope, Target, TargetKind};

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
                Scope::Stream(Stream::Marketing),
                &Target::Address(address.to_string()),
                Reason::Unsubscribe,
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
        let found = store.matching_suppressions(stream, &candidates).await?;
        Ok(recipients
            .iter()
            .map(|(address, domain)| {
                found
                    .iter()
                    .find(|s| {
                        (s.kind == TargetKind::Address && &s.value == address)
                            || (s.kind == TargetKind::Domain && &s.value == domain)
                    })
                    .map(describe)
            })
            .collect())
    }
}

/// "unsubscribe (marketing)", "hard_bounce (global, domain)".
fn describe(s: &SuppressionRecord) -> String {
    if s.kind == TargetKind::Domain {
        format!("{} ({}, domain {})", s.reason, s.scope, s.value)
    } else {
        format!("{} ({})", s.reason, s.scope)
    }
}

/// Builds the row for a new entry.
pub fn entry(
    scope: Scope,
    target: &Target,
    reason: Reason,
    source: Option<String>,
    expires_at: Option<i64>,
) -> SuppressionRecord {
    SuppressionRecord {
        scope,
        kind: target.kind(),
        value: target.value().to_string(),
        reason,
        source,
        created_at: store::now_ms(),
        expires_at,
    }
}
