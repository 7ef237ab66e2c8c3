//! Where list-hygiene's decisions meet the store: load what a decision
//! needs, call the pure function, write the result. The rules themselves
//! (the bounce policy, the subscriber transition table, what a suppression
//! entry is) live in the list-hygiene crate; this module only applies them,
//! the same way for every path that reaches it: a bounce the worker sees
//! or one that comes back later, an unsubscribe by one-click link or by
//! mail, a complaint from a feedback loop.

pub mod trace;

use list_hygiene::bounce::{BouncePolicy, Failure};
use list_hygiene::subscriber::Change;
use tracing::{info, warn};

use crate::domain::Stream;
use crate::events::{self, Event, EventKind};
use crate::store::{self, Attribution, BounceRecord, Store};
use crate::suppression::{self, Reason, Scope, Suppressions, Target};

/// What the appliers ([`Hygiene::apply_bounce`], `apply_unsubscribe`,
/// `apply_complaint`) need besides the event itself.
#[derive(Debug, Clone, Copy)]
pub struct Hygiene<'a> {
    pub store: &'a Store,
    pub suppressions: &'a Suppressions,
    pub policy: BouncePolicy,
    /// Apply unattributed bounces and complaints too (`suppress_unattributed`).
    pub suppress_unattributed: bool,
    /// Wakes the webhook dispatcher for the events a change sends.
    pub events: &'a tokio::sync::Notify,
}

impl Hygiene<'_> {
    /// Records a bounce of `target` and applies the bounce policy: the one
    /// path for the relay's own 5xx replies and for inbound bounces, so a
    /// soft bounce counts toward `soft_bounce_limit` wherever it was seen.
    /// A suppression goes on the global list (every stream) and moves the
    /// address's live subscriptions to `bounced`. Returns why it was
    /// suppressed, if it was. An unattributed bounce (see [`trace`]) is
    /// recorded and suppresses nobody, unless `suppress_unattributed`.
    ///
    /// # Errors
    /// Store errors recording the bounce, counting or suppressing; a
    /// failure to update subscribers is only logged (the suppression is
    /// what stops the mail).
    pub async fn apply_bounce(
        &self,
        record: &BounceRecord,
        target: &Target,
        failure: Failure,
        source: String,
    ) -> store::Result<Option<Reason>> {
        self.store.insert_bounce(record).await?;
        if record.attribution == Attribution::Unattributed && !self.suppress_unattributed {
            return Ok(None);
        }
        let soft_in_window = if self.policy.needs_soft_count(failure) {
            let since = self.policy.window_start(record.received_at);
            let n = self
                .store
                .count_bounces(
                    target.value(),
                    failure.class.as_str(),
                    since,
                    self.suppress_unattributed,
                )
                .await?;
            u64::try_from(n).unwrap_or(0)
        } else {
            0
        };
        let decision = self.policy.decide(failure, soft_in_window);
        if let Some(reason) = decision {
            let entry = suppression::entry(Scope::Global, target, reason, Some(source), None);
            self.suppressions.add(self.store, &entry).await?;
            info!(class = failure.class.as_str(), %reason, "bounced address suppressed");
            change_subscribers(self.store, target.value(), Change::Bounce, reason.as_str()).await;
        }
        Ok(decision)
    }

    /// Unsubscribes `target` from marketing mail: a marketing suppression,
    /// its subscriptions on every list `unsubscribed`, an `unsubscribed`
    /// event. `source` says how (`one-click:ID`, `mailto:ID`).
    ///
    /// # Errors
    /// The suppression could not be stored (the rest is logged).
    pub async fn apply_unsubscribe(&self, target: &Target, source: &str) -> store::Result<()> {
        let entry = suppression::entry(
            Scope::Stream(Stream::Marketing),
            target,
            Reason::Unsubscribe,
            Some(source.to_string()),
            None,
        );
        self.suppressions.add(self.store, &entry).await?;
        if let Err(e) = self
            .store
            .change_status(None, target.value(), Change::Unsubscribe, source, None)
            .await
        {
            warn!(error = %e, "marking subscriptions unsubscribed failed");
        }
        events::emit(
            self.store,
            self.events,
            vec![Event::new(
                EventKind::Unsubscribed,
                serde_json::json!({"address": target.value(), "source": source}),
            )],
        )
        .await;
        Ok(())
    }

    /// A spam complaint about mail to `target`: a global suppression (a
    /// complainer gets nothing more on any stream) and its subscriptions
    /// `complained`.
    ///
    /// # Errors
    /// The suppression could not be stored (the rest is logged).
    pub async fn apply_complaint(&self, target: &Target, feedback_type: &str) -> store::Result<()> {
        let entry = suppression::entry(
            Scope::Global,
            target,
            Reason::Complaint,
            Some(format!("complaint:{feedback_type}")),
            None,
        );
        self.suppressions.add(self.store, &entry).await?;
        change_subscribers(self.store, target.value(), Change::Complaint, feedback_type).await;
        Ok(())
    }
}

/// Applies `change` to `address`'s subscriptions on every list, with a
/// trail entry each. Logged, not returned, on failure: callers have already
/// done what stops the mail (a suppression) and must not fail for this.
pub async fn change_subscribers(store: &Store, address: &str, change: Change, reason: &str) {
    if let Err(e) = store
        .change_status(None, address, change, "relay", Some(reason))
        .await
    {
        warn!(error = %e, ?change, "updating subscribers failed");
    }
}
