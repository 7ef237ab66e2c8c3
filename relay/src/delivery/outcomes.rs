//! What follows a recorded delivery outcome, beyond the queue itself:
//! events for the shop's webhooks, the bounce record, subscribers' state
//! and engagement, and the soft-bounce count a delivery resets.
//!
//! None of this is retried: the outcome is committed already, and each
//! step failing costs a record or an event, never a delivery. Failures are
//! logged.

use list_hygiene::bounce::{BounceClass, StatusCode, classify};
use serde_json::json;
use tokio::sync::Notify;
use tracing::warn;

use crate::domain::Stream;
use crate::events::{self, Event, EventKind};
use crate::metrics::{self, Metrics, StreamDomain, StreamOnly};
use crate::store::{BounceRecord, Claimed, Finish, Store, now_ms};

/// The class of a bounced outcome (`None` for any other). Only a reply
/// from the receiving server is read for its cause; a bounce the relay
/// decided itself (no SMTP code) is `Unknown`.
pub fn bounce_class(f: &Finish) -> Option<BounceClass> {
    let Finish::Bounced { code, reply, .. } = f else {
        return None;
    };
    Some(if code.is_some_and(|c| (500..600).contains(&c)) {
        classify(StatusCode::find(reply), reply)
    } else {
        BounceClass::Unknown
    })
}

/// Runs after a batch of outcomes of `stream` is recorded; each comes with
/// its [`bounce_class`], worked out once by the caller.
pub async fn after(
    store: &Store,
    stream: Stream,
    wake: &Notify,
    metrics: &Metrics,
    done: &[(&Claimed, &Finish, Option<BounceClass>)],
) {
    let now = now_ms();
    let mut events = Vec::with_capacity(done.len());
    let mut delivered = Vec::new();
    for &(c, f, class) in done {
        count(metrics, stream, c, f, class, now);
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
        match f {
            Finish::Delivered { code, reply, host } => {
                delivered.push(c.address.to_lowercase());
                events.push(Event::new(
                    EventKind::Delivered,
                    with(json!({"smtp_code": code, "reply": reply, "host": host})),
                ));
            }
            Finish::Deferred {
                code,
                reply,
                retry_at,
                ..
            } => events.push(Event::new(
                EventKind::Deferred,
                with(json!({"smtp_code": code, "reply": reply, "retry_at": retry_at})),
            )),
            Finish::Bounced { code, reply, host } => {
                let status = StatusCode::find(reply);
                let class = class.unwrap_or(BounceClass::Unknown);
                let record = BounceRecord {
                    id: uuid::Uuid::now_v7().to_string(),
                    received_at: now,
                    address: c.address.to_lowercase(),
                    class: class.as_str().to_string(),
                    action: "failed".into(),
                    status: status.map(|s| s.to_string()),
                    diagnostic: Some(reply.clone()),
                    original_message_id: None,
                    relay_message_id: Some(c.message_id.clone()),
                    source: "relay".into(),
                    stream: Some(stream.as_str().into()),
                    domain: Some(c.domain.clone()),
                };
                if let Err(e) = store.insert_bounce(&record).await {
                    warn!(error = %e, message_id = %c.message_id, "recording a bounce failed");
                }
                if class == BounceClass::Hard {
                    mark_subscribers(store, &record.address, "bounced", "hard bounce").await;
                }
                events.push(Event::new(
                    EventKind::Bounced,
                    with(json!({"smtp_code": code, "reply": reply, "host": host, "class": class, "source": "relay"})),
                ));
            }
            Finish::Expired { reply } => events.push(Event::new(
                EventKind::Bounced,
                with(json!({"reply": reply, "class": "expired", "source": "relay"})),
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

fn count(
    m: &Metrics,
    stream: Stream,
    c: &Claimed,
    f: &Finish,
    class: Option<BounceClass>,
    now: i64,
) {
    let labels = StreamDomain {
        stream: stream.into(),
        domain: metrics::domain_group(&c.domain),
    };
    let code = match f {
        Finish::Delivered { code, .. }
        | Finish::Deferred { code, .. }
        | Finish::Bounced { code, .. } => *code,
        Finish::Expired { .. } => None,
    };
    if !matches!(f, Finish::Expired { .. }) {
        m.smtp_replies
            .get_or_create(&metrics::Reply {
                stream: stream.into(),
                class: metrics::reply_class(code),
            })
            .inc();
    }
    match f {
        Finish::Delivered { .. } => {
            m.delivered.get_or_create(&labels).inc();
            m.delivery_latency
                .get_or_create(&StreamOnly {
                    stream: stream.into(),
                })
                .observe((now - c.created_at).max(0) as f64 / 1000.0);
        }
        Finish::Deferred { .. } => {
            m.deferred.get_or_create(&labels).inc();
        }
        Finish::Bounced { .. } => {
            m.bounced
                .get_or_create(&metrics::Bounce {
                    stream: stream.into(),
                    domain: labels.domain,
                    class: class.unwrap_or(BounceClass::Unknown).as_str(),
                })
                .inc();
        }
        Finish::Expired { .. } => {
            m.expired.get_or_create(&labels).inc();
        }
    }
}

/// Moves `address`'s live subscriptions on every list to `status`
/// (`bounced`, `complained`) with a trail entry each.
pub async fn mark_subscribers(store: &Store, address: &str, status: &str, reason: &str) {
    if let Err(e) = store
        .change_status(
            None,
            address,
            &["pending", "confirmed"],
            status,
            "relay",
            Some(reason),
        )
        .await
    {
        warn!(error = %e, "updating subscribers failed");
    }
}
