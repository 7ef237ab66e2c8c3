//! Prometheus metrics (`GET /metrics`, OpenMetrics text): what the relay
//! accepted, delivered, deferred, bounced and refused, by stream and
//! recipient domain group; queue depth and age; delivery latency; SMTP
//! replies; the webhook outbox; API requests and authentication failures.
//!
//! Recipient domains are grouped (`gmail`, `microsoft`, `yahoo`, …, else
//! `other`) so label cardinality stays bounded whatever the shop mails.
//! Counters live in this process; gauges about the queue are read from the
//! store at scrape time, so every process reports the shared queue.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::domain::Stream;
use crate::store::{Store, now_ms};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum StreamLabel {
    transactional,
    marketing,
    /// A bounce that names no message of ours.
    unknown,
}

impl From<Stream> for StreamLabel {
    fn from(s: Stream) -> Self {
        match s {
            Stream::Transactional => StreamLabel::transactional,
            Stream::Marketing => StreamLabel::marketing,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamDomain {
    pub stream: StreamLabel,
    pub domain: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Bounce {
    pub stream: StreamLabel,
    pub domain: &'static str,
    pub class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamOnly {
    pub stream: StreamLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reply {
    pub stream: StreamLabel,
    /// 2xx, 4xx, 5xx, or none (no reply: connection trouble).
    pub class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Request {
    /// The route pattern (`/v1/messages/{id}`), never the raw path.
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Alert {
    pub stream: StreamLabel,
    /// `complaint` or `hard_bounce`.
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: &'static str,
}

/// A returned message refused as untrustworthy.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Refused {
    /// `bounce` or `complaint`.
    kind: &'static str,
    /// `forged`, `stale` or `replayed`.
    reason: &'static str,
}

/// A returned message that could not be traced to mail the relay sent.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: &'static str,
}

/// A destination provider of one stream (bounded: the shaping table's names).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Destination {
    stream: String,
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestinationResult {
    stream: String,
    provider: String,
    /// delivered, deferred, refused, postponed (held back by shaping).
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestinationRule {
    stream: String,
    provider: String,
    rule: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50 ms to ~27 minutes: local delivery to a long retry.
    Histogram::new(exponential_buckets(0.05, 2.0, 16))
}

/// Every metric the relay keeps. Cheap to share (`Arc`); each update is
/// an atomic add on a label set's counter.
pub struct Metrics {
    registry: Registry,
    pub accepted: Family<StreamDomain, Counter>,
    pub suppressed: Family<StreamDomain, Counter>,
    pub delivered: Family<StreamDomain, Counter>,
    pub deferred: Family<StreamDomain, Counter>,
    pub bounced: Family<Bounce, Counter>,
    pub expired: Family<StreamDomain, Counter>,
    pub complained: Family<StreamDomain, Counter>,
    returns_refused: Family<Refused, Counter>,
    returns_unattributed: Family<Kind, Counter>,
    pub delivery_latency: HistogramFamily<StreamOnly>,
    pub smtp_replies: Family<Reply, Counter>,
    pub api_requests: Family<Request, Counter>,
    pub auth_failures: Family<Reason, Counter>,
    pub lockouts: Counter,
    pub rate_limited: Family<Reason, Counter>,
    queue_depth: Family<StreamOnly, Gauge>,
    oldest_queued: Family<StreamOnly, Gauge>,
    outbox_depth: Gauge,
    rates: Family<Alert, Gauge<f64, std::sync::atomic::AtomicU64>>,
    rate_alerts: Family<Alert, Gauge>,
    destination_results: Family<DestinationResult, Counter>,
    destination_rules: Family<DestinationRule, Counter>,
    destination_suspended: Family<Destination, Gauge>,
    destination_connections: Family<Destination, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            registry: Registry::with_prefix("mailroom"),
            accepted: Family::default(),
            suppressed: Family::default(),
            delivered: Family::default(),
            deferred: Family::default(),
            bounced: Family::default(),
            expired: Family::default(),
            complained: Family::default(),
            returns_refused: Family::default(),
            returns_unattributed: Family::default(),
            delivery_latency: Family::new_with_constructor(latency_histogram),
            smtp_replies: Family::default(),
            api_requests: Family::default(),
            auth_failures: Family::default(),
            lockouts: Counter::default(),
            rate_limited: Family::default(),
            queue_depth: Family::default(),
            oldest_queued: Family::default(),
            outbox_depth: Gauge::default(),
            rates: Family::default(),
            rate_alerts: Family::default(),
            destination_results: Family::default(),
            destination_rules: Family::default(),
            destination_suspended: Family::default(),
            destination_connections: Family::default(),
        };
        let r = &mut m.registry;
        r.register(
            "accepted_recipients",
            "Recipients accepted and queued",
            m.accepted.clone(),
        );
        r.register(
            "suppressed_recipients",
            "Recipients refused at acceptance by the suppression list",
            m.suppressed.clone(),
        );
        r.register(
            "delivered_recipients",
            "Recipients delivered",
            m.delivered.clone(),
        );
        r.register(
            "deferred_attempts",
            "Delivery attempts that failed temporarily",
            m.deferred.clone(),
        );
        r.register(
            "bounced_recipients",
            "Permanent failures (the relay's 5xx and asynchronous bounces) by class",
            m.bounced.clone(),
        );
        r.register(
            "expired_recipients",
            "Recipients given up at max_age",
            m.expired.clone(),
        );
        r.register("complaints", "Feedback-loop complaints (stream unknown when the report could not be traced to a message)", m.complained.clone());
        r.register(
            "returns_refused",
            "Bounces and complaints refused: a forged or stale VERP tag or reference, or a replay of one already applied",
            m.returns_refused.clone(),
        );
        r.register(
            "returns_unattributed",
            "Bounces and complaints that match no message the relay sent: recorded, suppressing nobody",
            m.returns_unattributed.clone(),
        );
        r.register(
            "delivery_latency_seconds",
            "Time from acceptance to delivery",
            m.delivery_latency.clone(),
        );
        r.register(
            "smtp_replies",
            "SMTP replies to delivery attempts by code class",
            m.smtp_replies.clone(),
        );
        r.register(
            "api_requests",
            "API requests by route and status",
            m.api_requests.clone(),
        );
        r.register(
            "auth_failures",
            "Requests refused for a missing, malformed or unknown key",
            m.auth_failures.clone(),
        );
        r.register(
            "auth_lockouts",
            "Client addresses locked out after repeated authentication failures",
            m.lockouts.clone(),
        );
        r.register(
            "rate_limited",
            "Requests answered 429 by the rate limits",
            m.rate_limited.clone(),
        );
        r.register(
            "queue_depth",
            "Recipients waiting for delivery (queued, deferred, in flight)",
            m.queue_depth.clone(),
        );
        r.register(
            "oldest_queued_age_seconds",
            "Age of the oldest recipient waiting for delivery",
            m.oldest_queued.clone(),
        );
        r.register(
            "webhook_outbox_depth",
            "Event webhook deliveries still to be made",
            m.outbox_depth.clone(),
        );
        r.register(
            "rate",
            "Complaint (of delivered) and hard-bounce (of accepted) rates over the last 24 hours",
            m.rates.clone(),
        );
        r.register(
            "destination_results",
            "Delivery attempts per destination provider by result (postponed: held back by shaping, not attempted)",
            m.destination_results.clone(),
        );
        r.register(
            "destination_rule_matches",
            "Replies that made a shaping rule suspend or throttle a provider",
            m.destination_rules.clone(),
        );
        r.register(
            "destination_suspended",
            "1 while a provider is suspended on a stream",
            m.destination_suspended.clone(),
        );
        r.register(
            "destination_connections",
            "Connections this relay has open to a provider",
            m.destination_connections.clone(),
        );
        r.register(
            "rate_alert",
            "1 while a rate is at or over its [alerts] threshold",
            m.rate_alerts.clone(),
        );
        m
    }
}

impl Metrics {
    /// The counter of one stream × provider × result, to keep and count on
    /// without building its labels per delivery.
    pub fn destination_result(
        &self,
        stream: &str,
        provider: &str,
        result: &'static str,
    ) -> Counter {
        self.destination_results
            .get_or_create(&DestinationResult {
                stream: stream.into(),
                provider: provider.into(),
                result,
            })
            .clone()
    }

    pub fn destination_rule(&self, stream: &str, provider: &str, rule: &str) {
        self.destination_rules
            .get_or_create(&DestinationRule {
                stream: stream.into(),
                provider: provider.into(),
                rule: rule.into(),
            })
            .inc();
    }

    pub fn destination_suspended(&self, stream: &str, provider: &str, suspended: bool) {
        self.destination_suspended
            .get_or_create(&Destination {
                stream: stream.into(),
                provider: provider.into(),
            })
            .set(i64::from(suspended));
    }

    pub fn destination_connections(&self, stream: &str, provider: &str, open: i64) {
        self.destination_connections
            .get_or_create(&Destination {
                stream: stream.into(),
                provider: provider.into(),
            })
            .set(open);
    }

    /// Counts a returned message (`kind`: `bounce` or `complaint`) refused
    /// for `reason` (`forged`, `stale`, `replayed`).
    pub fn return_refused(&self, kind: &'static str, reason: &'static str) {
        self.returns_refused
            .get_or_create(&Refused { kind, reason })
            .inc();
    }

    /// Counts a returned message that matches no message the relay sent.
    pub fn return_unattributed(&self, kind: &'static str) {
        self.returns_unattributed
            .get_or_create(&Kind { kind })
            .inc();
    }

    /// Sets a stream's 24-hour rate and whether it is over its threshold.
    pub fn set_rate(&self, stream: Stream, kind: &'static str, rate: f64, over: bool) {
        let labels = Alert {
            stream: stream.into(),
            kind,
        };
        self.rates.get_or_create(&labels).set(rate);
        self.rate_alerts.get_or_create(&labels).set(i64::from(over));
    }

    /// The OpenMetrics text, with the queue gauges read from the store.
    ///
    /// # Errors
    /// The store failed.
    pub async fn render(&self, store: &Store) -> crate::store::Result<String> {
        let now = now_ms();
        for stream in Stream::ALL {
            let depth = store.queue_depth(stream).await?;
            let labels = StreamOnly {
                stream: stream.into(),
            };
            self.queue_depth
                .get_or_create(&labels)
                .set(depth.queued + depth.deferred + depth.inflight);
            let oldest = store.oldest_queued(stream).await?;
            self.oldest_queued
                .get_or_create(&labels)
                .set(oldest.map_or(0, |t| (now - t).max(0) / 1000));
        }
        self.outbox_depth.set(store.outbox_depth().await?);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        Ok(out)
    }
}

/// The label for a recipient domain: big mailbox providers by name (their
/// filters are what a sender's reputation lives with), the rest `other`.
pub fn domain_group(domain: &str) -> &'static str {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    const GROUPS: &[(&str, &[&str])] = &[
        ("gmail", &["gmail.com", "googlemail.com"]),
        (
            "microsoft",
            &[
                "outlook.com",
                "hotmail.com",
                "live.com",
                "msn.com",
                "hotmail.co.uk",
                "hotmail.fr",
                "outlook.de",
                "live.co.uk",
            ],
        ),
        (
            "yahoo",
            &[
                "yahoo.com",
                "ymail.com",
                "yahoo.co.uk",
                "yahoo.fr",
                "yahoo.de",
                "rocketmail.com",
                "aol.com",
                "aim.com",
            ],
        ),
        ("apple", &["icloud.com", "me.com", "mac.com"]),
        (
            "gmx",
            &["gmx.de", "gmx.net", "gmx.com", "web.de", "mail.com"],
        ),
        ("proton", &["proton.me", "protonmail.com", "pm.me"]),
        ("yandex", &["yandex.ru", "yandex.com", "ya.ru"]),
        ("mailru", &["mail.ru", "bk.ru", "list.ru", "inbox.ru"]),
        ("orange", &["orange.fr", "wanadoo.fr"]),
        ("comcast", &["comcast.net"]),
        ("t-online", &["t-online.de"]),
        ("zoho", &["zoho.com", "zohomail.com"]),
    ];
    GROUPS
        .iter()
        .find(|(_, domains)| domains.contains(&d.as_str()))
        .map_or("other", |(group, _)| group)
}

/// `2xx`, `4xx`, `5xx` or `none`.
pub fn reply_class(code: Option<u16>) -> &'static str {
    match code {
        Some(200..=299) => "2xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        Some(_) => "other",
        None => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_fall_into_a_bounded_set_of_groups() {
        assert_eq!(domain_group("GMail.com"), "gmail");
        assert_eq!(domain_group("hotmail.com."), "microsoft");
        assert_eq!(domain_group("aol.com"), "yahoo");
        assert_eq!(domain_group("customer.example"), "other");
        assert_eq!(domain_group("mail.gmail.com.evil.example"), "other");
        assert_eq!(reply_class(Some(250)), "2xx");
        assert_eq!(reply_class(Some(451)), "4xx");
        assert_eq!(reply_class(None), "none");
    }

    #[test]
    fn the_text_names_every_family_with_its_labels() {
        let m = Metrics::default();
        m.accepted
            .get_or_create(&StreamDomain {
                stream: StreamLabel::marketing,
                domain: "gmail",
            })
            .inc_by(3);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &m.registry).unwrap();
        assert!(
            out.contains(
                "mailroom_accepted_recipients_total{stream=\"marketing\",domain=\"gmail\"} 3"
            ),
            "{out}"
        );
        assert!(out.ends_with("# EOF\n"));
    }
}
