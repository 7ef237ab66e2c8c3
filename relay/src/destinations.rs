//! What `GET /v1/destinations` and `mailroom destinations` show, and the
//! hand-set suspend and resume both offer: per stream and provider, the
//! limits, the queue, the connections, the current rate and any
//! suspension or throttle with its reason.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;

use crate::delivery::shaping::runtime::SeenReply;
use crate::delivery::shaping::{Allowed, DestinationState, Limits, Rate, Shaper, ShapingTable};
use crate::domain::Stream;
use crate::store::{Store, StoreError, now_ms, rfc3339};

#[derive(Debug, Serialize)]
pub struct DestinationReport {
    pub stream: Stream,
    pub provider: String,
    /// Whether the limits apply: only the `mx` route is shaped. A stream
    /// sent through a smarthost lists its table for reference.
    pub shaped: bool,
    pub limits: Limits,
    /// Recipients waiting (queued or deferred) for this provider's domains.
    pub queued: i64,
    /// Recipients leased to a worker now, on any relay.
    pub in_flight: i64,
    /// Connection slots held, across every relay.
    pub connections: i64,
    /// Connections this relay has open (None from the CLI).
    pub connections_here: Option<i64>,
    /// The message rate in force now across all relays (None: no limit).
    pub current_rate: Option<Rate>,
    pub suspended_until: Option<String>,
    pub throttled_until: Option<String>,
    /// Why it is suspended or throttled, and who or what did it.
    pub reason: Option<String>,
    pub set_by: Option<String>,
    /// This relay's last non-2xx replies from the provider (newest last).
    pub last_replies: Vec<SeenReply>,
}

#[derive(Debug, Serialize)]
pub struct Overview {
    pub destinations: Vec<DestinationReport>,
    /// Queued recipients whose domain's provider isn't known yet (no
    /// delivery to it has looked up its MX on this relay), per stream.
    pub unresolved: HashMap<Stream, i64>,
    /// Relays with a recent heartbeat.
    pub live_relays: u64,
}

/// The overview. `shapers` (the running relay's) adds what only it knows:
/// its open connections, last replies, and domains matched by MX.
///
/// # Errors
/// The store failed.
pub async fn overview(
    store: &Store,
    tables: &[(Stream, ShapingTable, bool)],
    shapers: &[Arc<Shaper>],
    heartbeat: Duration,
) -> Result<Overview, StoreError> {
    let now = now_ms();
    let states = store.destination_states().await?;
    let slots = store.slots_held().await?;
    let queue = store.queue_by_domain().await?;
    let live = store
        .live_nodes(now - 3 * heartbeat.as_millis() as i64)
        .await?;
    let shaper = |s: Stream| shapers.iter().find(|x| x.stream() == s);
    let mut counts: HashMap<(Stream, String), (i64, i64)> = HashMap::new();
    let mut unresolved: HashMap<Stream, i64> = HashMap::new();
    for q in &queue {
        let Ok(stream) = q.stream.parse::<Stream>() else {
            continue;
        };
        let Some((_, table, _)) = tables.iter().find(|(s, _, _)| *s == stream) else {
            continue;
        };
        let provider = table
            .by_domain(&q.domain)
            .map(|p| p.name.clone())
            .or_else(|| shaper(stream).and_then(|s| s.known_provider(&q.domain)));
        match provider {
            Some(p) => {
                let c = counts.entry((stream, p)).or_default();
                c.0 += q.queued;
                c.1 += q.inflight;
            }
            None => *unresolved.entry(stream).or_default() += q.queued + q.inflight,
        }
    }
    let mut out = Vec::new();
    for (stream, table, shaped) in tables {
        for p in table.all() {
            let state = states
                .iter()
                .find(|(s, pr, _)| s == stream.as_str() && *pr == p.name)
                .map(|(_, _, st)| st)
                .filter(|st| !st.spent(p.limits.message_rate.map(Rate::per_second), now));
            let base = p.limits.message_rate.map(Rate::per_second);
            let (suspended_until, rate) = match state.map(|s| s.allowed(base, now)) {
                Some(Allowed::Suspended { until }) => (Some(until), Some(0.0)),
                Some(Allowed::Rate(r)) => (None, r),
                None => (None, base),
            };
            let (queued, in_flight) = counts
                .get(&(*stream, p.name.clone()))
                .copied()
                .unwrap_or_default();
            let runtime = shaper(*stream).and_then(|s| s.used(&p.name));
            out.push(DestinationReport {
                stream: *stream,
                provider: p.name.clone(),
                shaped: *shaped,
                limits: p.limits.clone(),
                queued,
                in_flight,
                connections: slots
                    .iter()
                    .filter(|h| h.stream == stream.as_str() && h.provider == p.name)
                    .map(|h| h.slots)
                    .sum(),
                connections_here: shaper(*stream).map(|_| {
                    runtime
                        .as_ref()
                        .map_or(0, |r| r.open.load(Ordering::Relaxed))
                }),
                current_rate: rate.map(Rate::from_per_second),
                suspended_until: suspended_until.map(rfc3339),
                throttled_until: state.and_then(|s| s.throttled_until).map(rfc3339),
                reason: state.map(|s| s.reason.clone()),
                set_by: state.map(|s| s.set_by.clone()),
                last_replies: runtime.map(|r| r.last_replies()).unwrap_or_default(),
            });
        }
    }
    Ok(Overview {
        destinations: out,
        unresolved,
        live_relays: live,
    })
}

/// Why a delivery was postponed while its provider was suspended: the
/// start of its `last_reply`, which resume looks for.
pub fn suspended_reply_prefix(provider: &str, stream: Stream) -> String {
    format!("not attempted: {provider} suspended on the {stream} stream")
}

/// Suspends a provider on a stream by hand for `duration`; it then resumes
/// at full speed (an operator who wants a ramp sets a throttle rule).
///
/// # Errors
/// The store failed.
pub async fn suspend(
    store: &Store,
    stream: Stream,
    provider: &str,
    duration: Duration,
    reason: &str,
    actor: &str,
) -> Result<DestinationState, StoreError> {
    let now = now_ms();
    let state = DestinationState {
        suspended_until: Some(now + duration.as_millis() as i64),
        throttle_rate: None,
        throttled_until: None,
        recover_every_ms: 600_000,
        reason: reason.to_owned(),
        set_by: actor.to_owned(),
        updated_at: now,
    };
    store
        .set_destination_state(stream.as_str(), provider, &state)
        .await?;
    store
        .audit(
            actor,
            "destination.suspended",
            &format!("{stream}/{provider}"),
            Some(&format!(
                "for {} — {reason}",
                humantime::format_duration(duration)
            )),
        )
        .await?;
    Ok(state)
}

/// Lifts a provider's suspension or throttle on a stream, and makes the
/// mail postponed by a suspension due (within two refresh intervals). Returns whether there was
/// one and how many recipients were made due.
///
/// # Errors
/// The store failed.
pub async fn resume(
    store: &Store,
    stream: Stream,
    provider: &str,
    actor: &str,
) -> Result<(bool, u64), StoreError> {
    let had = store
        .clear_destination_state(stream.as_str(), provider)
        .await?;
    // Due once every relay has re-read the state: one claimed earlier would
    // only be postponed again under the suspension it still remembers.
    let due = store
        .make_due_by_reply_prefix(
            stream,
            &suspended_reply_prefix(provider, stream),
            now_ms() + 2 * crate::delivery::shaping::runtime::REFRESH.as_millis() as i64,
        )
        .await?;
    store
        .audit(
            actor,
            "destination.resumed",
            &format!("{stream}/{provider}"),
            Some(&format!("{due} postponed recipients due now")),
        )
        .await?;
    Ok((had, due))
}
