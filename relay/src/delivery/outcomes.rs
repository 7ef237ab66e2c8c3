//! What follows a recorded delivery outcome, beyond the queue itself:
//! events for the shop's webhooks, the bounce record and the bounce policy
//! and engagement, and the soft-bounce count a delivery resets.
//!
//! None of this is retried: the outcome is committed already, and each
//! step failing costs a record or an event, never a delivery. Failures are
//! logged.

use list_hygiene::bounce::{BounceClass, BounceReason, Failure, StatusCode};
use serde_json::json;
use tokio::sync::Notify;
use tracing::warn;

use crate::domain::{Outcome, Stream};
use crate::events::{self, Event, EventKind};
use crate::hygiene::Hygiene;
use crate::metrics::{self, Metrics, StreamDomain, StreamOnly};
use crate::store::{Attribution, BounceRecord, Claimed, now_ms};
use crate::suppression::Target;

/// Runs after a batch of outcomes of `stream` is recorded.
pub async fn after(
    hygiene: Hygiene<'_>,
    stream: Stream,
    wake: &Notify,
    metrics: &Metrics,
    done: &[(&Claimed, &Outcome)],
) {
    let store = hygiene.store;
    let now = now_ms();
    let mut events = Vec::with_capacity(done.len());
    let mut delivered = Vec::new();
    for &(c, outcome) in done {
        count(metrics, stream, c, outcome, now);
        let base = json!({
            "message_id": c.message_id,
            "recipient_index": c.idx,
            "stream": stream,
            "address": c.address,
            "attempt": c.attempts,
        });
        let with = |extra: serde_json::Value| {
            let mut v = base.clone();
            if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
                v.extend(extra.clone());
            }
            v
        };
        match outcome {
            Outcome::Delivered(reply) => {
                delivered.push(c.address.to_lowercase());
                events.push(Event::new(
                    EventKind::Delivered,
                    with(json!({"smtp_code": reply.code, "reply": reply.text, "host": reply.host})),
                ));
            }
            Outcome::Deferred { reply, retry_at } => events.push(Event::new(
                EventKind::Deferred,
                with(json!({"smtp_code": reply.code, "reply": reply.text, "retry_at": retry_at})),
            )),
            Outcome::Bounced {
                reply,
                class,
                reason,
            } => {
                let suppressed =
                    bounced(hygiene, stream, c, &reply.text, *class, *reason, now).await;
                events.push(Event::new(
                    EventKind::Bounced,
                    with(
                        json!({"smtp_code": reply.code, "reply": reply.text, "host": reply.host,
                        "class": class, "reason": reason, "source": "relay",
                        "suppressed": suppressed}),
                    ),
                ));
            }
            Outcome::Expired { reason } => events.push(Event::new(
                EventKind::Bounced,
                with(json!({"reply": reason, "class": "expired", "source": "relay"})),
            )),
        }
    }
    if !delivered.is_empty() {
        if let Err(e) = store.reset_soft_bounces(&delivered, now).await {
            warn!(error = %e, "resetting soft-bounce counts failed");
        }
        if let Err(e) = store.mark_delivered(&delivered, now).await {
            warn!(error = %e, "noting deliveries on subscribers failed");
        }
    }
    events::emit(store, wake, events).await;
}

/// Records the relay's own bounce and applies the bounce policy to it
/// (the same one inbound bounces get). Returns whether the address was
/// suppressed.
async fn bounced(
    hygiene: Hygiene<'_>,
    stream: Stream,
    c: &Claimed,
    reply: &str,
    class: BounceClass,
    reason: Option<BounceReason>,
    now: i64,
) -> bool {
    // A stored address that no longer parses was bounced by the relay
    // itself (class unknown): there is nothing to record it against.
    let Ok(target) = Target::parse(Some(&c.address), None) else {
        return false;
    };
    let record = BounceRecord {
        id: uuid::Uuid::now_v7().to_string(),
        received_at: now,
        address: target.value().to_string(),
        class: class.as_str().to_string(),
        action: "failed".into(),
        status: StatusCode::find(reply).map(|s| s.to_string()),
        diagnostic: Some(reply.to_string()),
        original_message_id: None,
        relay_message_id: Some(c.message_id.clone()),
        source: "relay".into(),
        stream: Some(stream.as_str().into()),
        domain: Some(c.domain.clone()),
        recipient_idx: Some(c.idx),
        reason: reason.map(|r| r.as_str().to_string()),
        attribution: Attribution::Relay,
    };
    let failure = Failure {
        class,
        delayed: false,
    };
    // Not retried: the outcome is recorded; a lost suppression means one
    // more attempt on a bad address some day, which bounces again.
    match hygiene
        .apply_bounce(&record, &target, failure, format!("relay:{}", c.message_id))
        .await
    {
        Ok(reason) => reason.is_some(),
        Err(e) => {
            warn!(error = %e, message_id = %c.message_id, "recording a bounce failed");
            false
        }
    }
}

fn count(m: &Metrics, stream: Stream, c: &Claimed, outcome: &Outcome, now: i64) {
    let labels = StreamDomain {
        stream: stream.into(),
        domain: metrics::domain_group(&c.domain),
    };
    if let Some(reply) = outcome.reply() {
        m.smtp_replies
            .get_or_create(&metrics::Reply {
                stream: stream.into(),
                class: metrics::reply_class(reply.code),
            })
            .inc();
    }
    match outcome {
        Outcome::Delivered(_) => {
            m.delivered.get_or_create(&labels).inc();
            m.delivery_latency
                .get_or_create(&StreamOnly {
                    stream: stream.into(),
                })
                .observe((now - c.created_at).max(0) as f64 / 1000.0);
        }
        Outcome::Deferred { .. } => {
            m.deferred.get_or_create(&labels).inc();
        }
        Outcome::Bounced { class, .. } => {
            m.bounced
                .get_or_create(&metrics::Bounce {
                    stream: stream.into(),
                    domain: labels.domain,
                    class: class.as_str(),
                })
                .inc();
        }
        Outcome::Expired { .. } => {
            m.expired.get_or_create(&labels).inc();
        }
    }
}
