//! Outbound event webhooks: what happened to mail and subscribers, POSTed as
//! signed JSON to the shop's endpoints.
//!
//! Events are written to an outbox (`webhook_deliveries`, one row per event
//! and endpoint) and a dispatcher in every relay process sends what is due,
//! leasing rows the way the mail queue does, retrying on the configured
//! schedule until the endpoint answers 2xx or the event is too old.
//!
//! Each POST carries `Mailroom-Signature: t=UNIX_SECONDS,v1=HEX` where HEX is
//! HMAC-SHA256 under the endpoint's secret of `UNIX_SECONDS.` followed by
//! the raw body; receivers recompute it and reject stale timestamps
//! (docs/webhooks.md has a verification example).

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::{Notify, watch};
use tracing::{Instrument as _, info, warn};

use crate::config::WebhooksSettings;
use crate::store::{DeliveryRecord, DeliveryState, EndpointRecord, Store, now_ms};

/// The event types an endpoint can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Delivered,
    Deferred,
    Bounced,
    Complained,
    Unsubscribed,
    Suppressed,
    Subscribed,
    Confirmed,
}

impl EventKind {
    pub const ALL: [EventKind; 8] = [
        EventKind::Delivered,
        EventKind::Deferred,
        EventKind::Bounced,
        EventKind::Complained,
        EventKind::Unsubscribed,
        EventKind::Suppressed,
        EventKind::Subscribed,
        EventKind::Confirmed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Delivered => "delivered",
            EventKind::Deferred => "deferred",
            EventKind::Bounced => "bounced",
            EventKind::Complained => "complained",
            EventKind::Unsubscribed => "unsubscribed",
            EventKind::Suppressed => "suppressed",
            EventKind::Subscribed => "subscribed",
            EventKind::Confirmed => "confirmed",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One thing that happened; `data` is the type's own fields.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub kind: EventKind,
    /// Milliseconds since the epoch.
    pub at: i64,
    pub data: Value,
}

impl Event {
    pub fn new(kind: EventKind, data: Value) -> Event {
        Event {
            id: uuid::Uuid::now_v7().to_string(),
            kind,
            at: now_ms(),
            data,
        }
    }

    /// The JSON body POSTed to endpoints.
    pub fn payload(&self) -> String {
        json!({
            "id": self.id,
            "type": self.kind,
            "created_at": self.at,
            "data": self.data,
        })
        .to_string()
    }
}

/// Queues events for the endpoints that want them and wakes this process's
/// dispatcher. A failure is logged, not returned: the state change the event
/// reports is already committed, and is not undone for want of a webhook.
pub async fn emit(store: &Store, wake: &Notify, events: Vec<Event>) {
    match store.emit(&events).await {
        Ok(0) => {}
        Ok(_) => wake.notify_one(),
        Err(e) => warn!(error = %e, n = events.len(), "queueing webhook events failed"),
    }
}

/// `t=..,v1=..` for `body` sent at `timestamp` (Unix seconds).
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// A fresh endpoint secret: `whsec_` and 32 random bytes in hex.
pub fn new_secret() -> String {
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("whsec_{}", hex::encode(bytes))
}

/// Makes aws-lc-rs (which lettre's TLS uses too) the process's rustls
/// provider, which the HTTP client's TLS needs; a second call is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Deliveries leased per round.
const BATCH: usize = 32;
/// How long a leased delivery is this process's before another may take it.
const LEASE: Duration = Duration::from_secs(120);
/// Longest idle wait: deliveries queued by other processes are noticed
/// within this time.
const IDLE: Duration = Duration::from_secs(1);

/// Sends due outbox rows until `shutdown` turns true.
pub struct Dispatcher {
    pub store: Store,
    pub settings: WebhooksSettings,
    pub wake: Arc<Notify>,
}

impl Dispatcher {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        install_crypto_provider();
        let client = match reqwest::Client::builder()
            .timeout(self.settings.timeout)
            .connect_timeout(self.settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mailroom-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "webhook HTTP client can't be built; events stay queued");
                return;
            }
        };
        let token = uuid::Uuid::now_v7().to_string();
        loop {
            if *shutdown.borrow() {
                return;
            }
            let now = now_ms();
            let claimed = match self
                .store
                .claim_deliveries(now, now + LEASE.as_millis() as i64, BATCH, &token)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "claiming webhook deliveries failed");
                    Vec::new()
                }
            };
            if claimed.is_empty() {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(IDLE) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let endpoints = match self.store.list_endpoints().await {
                Ok(e) => e,
                Err(e) => {
                    warn!(error = %e, "reading webhook endpoints failed");
                    tokio::time::sleep(IDLE).await;
                    continue;
                }
            };
            // One endpoint's slowness must not hold up the others: the batch
            // goes out concurrently, each POST bounded by the timeout.
            let mut set = tokio::task::JoinSet::new();
            for d in claimed {
                let endpoint = endpoints.iter().find(|e| e.id == d.endpoint_id).cloned();
                let (client, store, settings, token) = (
                    client.clone(),
                    self.store.clone(),
                    self.settings.clone(),
                    token.clone(),
                );
                let span = tracing::info_span!("webhook", event_id = %d.event_id, endpoint = %d.endpoint_id, event = %d.event);
                set.spawn(
                    async move {
                        deliver(&client, &store, &settings, &token, d, endpoint).await;
                    }
                    .instrument(span),
                );
            }
            while set.join_next().await.is_some() {}
        }
    }
}

async fn deliver(
    client: &reqwest::Client,
    store: &Store,
    settings: &WebhooksSettings,
    token: &str,
    d: DeliveryRecord,
    endpoint: Option<EndpointRecord>,
) {
    let Some(endpoint) = endpoint else {
        let _ = store
            .finish_delivery(
                &d,
                token,
                DeliveryState::Failed,
                None,
                Some("endpoint deleted"),
                None,
            )
            .await;
        return;
    };
    let now = now_ms();
    let sent_at = now / 1000;
    let result = client
        .post(&endpoint.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(
            "Mailroom-Signature",
            signature(&endpoint.secret, sent_at, &d.payload),
        )
        .header("Mailroom-Event", &d.event)
        .header("Mailroom-Delivery", &d.event_id)
        .body(d.payload.clone())
        .send()
        .await;
    let (status, error) = match result {
        Ok(resp) if resp.status().is_success() => (Some(resp.status().as_u16()), None),
        Ok(resp) => (
            Some(resp.status().as_u16()),
            Some(format!("endpoint answered {}", resp.status())),
        ),
        Err(e) => (None, Some(describe(&e))),
    };
    let outcome = match &error {
        None => {
            store
                .finish_delivery(&d, token, DeliveryState::Delivered, status, None, None)
                .await
        }
        Some(err) => {
            let retry_at = now + settings.retry_delay(d.attempts).as_millis() as i64;
            if retry_at - d.created_at > settings.max_age.as_millis() as i64 {
                warn!(attempts = d.attempts, error = %err, "webhook delivery given up");
                store
                    .finish_delivery(&d, token, DeliveryState::Failed, status, Some(err), None)
                    .await
            } else {
                info!(attempts = d.attempts, error = %err, "webhook delivery failed; will retry");
                store
                    .finish_delivery(
                        &d,
                        token,
                        DeliveryState::Pending,
                        status,
                        Some(err),
                        Some(retry_at),
                    )
                    .await
            }
        }
    };
    if let Err(e) = outcome {
        // The lease runs out and the delivery is made again: at least once.
        warn!(error = %e, "recording a webhook delivery failed");
    }
}

/// The error and its causes on one line ("error sending request: connection
/// refused"), for the deliveries list.
fn describe(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_time_and_body() {
        let s = signature("whsec_k", 1_700_000_000, r#"{"a":1}"#);
        assert!(s.starts_with("t=1700000000,v1="), "{s}");
        assert_eq!(s.len(), "t=1700000000,v1=".len() + 64);
        assert_ne!(s, signature("whsec_k", 1_700_000_001, r#"{"a":1}"#));
        assert_ne!(s, signature("whsec_k", 1_700_000_000, r#"{"a":2}"#));
        assert_ne!(s, signature("whsec_x", 1_700_000_000, r#"{"a":1}"#));
        // Known answer, so receivers in other languages can check theirs:
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"whsec_k",b"1700000000.{\"a\":1}",hashlib.sha256).hexdigest())'
        assert_eq!(
            s,
            "t=1700000000,v1=a252a4340d8bbbdbac8643a2812cc7d628ad79bfba544bff054ac2fa10f795a2"
        );
    }

    #[test]
    fn every_kind_round_trips() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(EventKind::parse("opened"), None);
    }
}
