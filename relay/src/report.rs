//! The deliverability health report (`mailroom report`) and the rate
//! alerts the relay raises itself: volumes, bounce rates by class and
//! complaint rates per stream and sending domain, deferrals by destination,
//! top bounce reasons and suppressions added, with plain-language warnings
//! against the thresholds mailbox providers hold senders to.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::AlertSettings;
use crate::store::{Store, now_ms};

/// Gmail's and Yahoo's hard limit for the spam-complaint rate (their bulk
/// sender rules, 2024): above it mail is blocked or goes to spam.
pub const COMPLAINT_LIMIT: f64 = 0.003;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Group {
    pub stream: String,
    pub sending_domain: String,
    /// Recipients accepted (suppressed ones not included).
    pub accepted: i64,
    pub delivered: i64,
    /// Still queued, deferred or in flight.
    pub pending: i64,
    pub expired: i64,
    pub suppressed: i64,
    /// Bounces by class: the relay's own and asynchronous ones.
    pub bounces: BTreeMap<String, i64>,
    pub complaints: i64,
    /// All bounces / accepted.
    pub bounce_rate: f64,
    /// Hard bounces / accepted.
    pub hard_bounce_rate: f64,
    /// Complaints / delivered.
    pub complaint_rate: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Deferrals {
    pub stream: String,
    pub domain: String,
    pub deferred: i64,
    pub attempts: i64,
    pub rate: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BounceReason {
    pub class: String,
    pub status: Option<String>,
    pub example: Option<String>,
    pub count: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SuppressionsAdded {
    pub scope: String,
    pub reason: String,
    pub count: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Warning {
    /// `crossed`, `near`.
    pub level: &'static str,
    pub stream: String,
    pub subject: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub since: i64,
    pub generated_at: i64,
    pub groups: Vec<Group>,
    pub deferrals: Vec<Deferrals>,
    pub top_bounce_reasons: Vec<BounceReason>,
    pub suppressions_added: Vec<SuppressionsAdded>,
    pub warnings: Vec<Warning>,
}

fn domain_of(sender: Option<&str>) -> String {
    sender
        .and_then(|s| s.rsplit_once('@'))
        .map_or_else(|| "(untraced)".to_string(), |(_, d)| d.to_ascii_lowercase())
}

fn ratio(n: i64, d: i64) -> f64 {
    if d > 0 { n as f64 / d as f64 } else { 0.0 }
}

fn pct(x: f64) -> String {
    format!("{:.2} %", x * 100.0)
}

/// Volumes, bounces and complaints since `since` (Unix ms) per stream and
/// sending domain, with their rates: all the relay's own rate alerts need,
/// without the report's other queries.
async fn groups(store: &Store, since: i64) -> crate::store::Result<Vec<Group>> {
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    let mut group = |stream: &str, sender: Option<&str>| -> (String, String) {
        let key = (stream.to_string(), domain_of(sender));
        groups.entry(key.clone()).or_insert_with(|| Group {
            stream: key.0.clone(),
            sending_domain: key.1.clone(),
            ..Group::default()
        });
        key
    };
    let volumes = store.report_volumes(since).await?;
    let bounces = store.report_bounces(since).await?;
    let complaints = store.report_complaints(since).await?;
    let mut keyed = Vec::new();
    for (stream, sender, state, n) in &volumes {
        keyed.push((group(stream, sender.as_deref()), 'v', state.clone(), *n));
    }
    for (stream, sender, class, n) in &bounces {
        keyed.push((group(stream, sender.as_deref()), 'b', class.clone(), *n));
    }
    for (stream, sender, kind, n) in &complaints {
        keyed.push((group(stream, sender.as_deref()), 'c', kind.clone(), *n));
    }
    for (key, what, label, n) in keyed {
        let g = groups.get_mut(&key).expect("made above");
        match (what, label.as_str()) {
            ('v', "suppressed") => g.suppressed += n,
            ('v', state) => {
                g.accepted += n;
                match state {
                    "delivered" => g.delivered += n,
                    "expired" => g.expired += n,
                    "queued" | "deferred" | "inflight" => g.pending += n,
                    _ => {}
                }
            }
            ('b', class) => *g.bounces.entry(class.to_string()).or_default() += n,
            _ => g.complaints += n,
        }
    }
    let mut groups: Vec<Group> = groups.into_values().collect();
    for g in &mut groups {
        let all_bounces: i64 = g.bounces.values().sum();
        let hard = g.bounces.get("hard").copied().unwrap_or(0);
        g.bounce_rate = ratio(all_bounces, g.accepted);
        g.hard_bounce_rate = ratio(hard, g.accepted);
        g.complaint_rate = ratio(g.complaints, g.delivered);
    }
    Ok(groups)
}

/// Builds the report for everything since `since` (Unix ms).
///
/// # Errors
/// The store failed.
pub async fn build(
    store: &Store,
    since: i64,
    alerts: &AlertSettings,
) -> crate::store::Result<Report> {
    let groups = groups(store, since).await?;
    let mut warnings = Vec::new();
    for g in &groups {
        let hard = g.bounces.get("hard").copied().unwrap_or(0);
        let subject = format!("{} from {}", g.stream, g.sending_domain);
        if g.complaint_rate >= COMPLAINT_LIMIT {
            warnings.push(Warning {
                level: "crossed",
                stream: g.stream.clone(),
                subject: subject.clone(),
                message: format!(
                    "complaint rate {} is above the 0.3 % limit Gmail and Yahoo enforce: expect this mail to be blocked or filtered as spam. Stop marketing sends, check where these recipients came from (consent trail), and prune inactive subscribers.",
                    pct(g.complaint_rate)
                ),
            });
        } else if g.complaint_rate >= alerts.complaint_rate {
            warnings.push(Warning {
                level: "crossed",
                stream: g.stream.clone(),
                subject: subject.clone(),
                message: format!(
                    "complaint rate {} is above the {} target (Gmail and Yahoo ask for under 0.1 %, and block above 0.3 %). Send less to people who don't engage and make unsubscribing easy.",
                    pct(g.complaint_rate),
                    pct(alerts.complaint_rate)
                ),
            });
        } else if g.complaints > 0 && g.complaint_rate >= alerts.complaint_rate * 0.8 {
            warnings.push(Warning {
                level: "near",
                stream: g.stream.clone(),
                subject: subject.clone(),
                message: format!(
                    "complaint rate {} is close to the {} target.",
                    pct(g.complaint_rate),
                    pct(alerts.complaint_rate)
                ),
            });
        }
        if g.hard_bounce_rate >= alerts.hard_bounce_rate {
            warnings.push(Warning {
                level: "crossed",
                stream: g.stream.clone(),
                subject: subject.clone(),
                message: format!(
                    "hard bounce rate {} is above {}: the list holds addresses that don't exist (old, mistyped or bought). Clean it (mailroom list clean) and confirm new sign-ups (double opt-in).",
                    pct(g.hard_bounce_rate),
                    pct(alerts.hard_bounce_rate)
                ),
            });
        } else if hard > 0 && g.hard_bounce_rate >= alerts.hard_bounce_rate * 0.8 {
            warnings.push(Warning {
                level: "near",
                stream: g.stream.clone(),
                subject,
                message: format!(
                    "hard bounce rate {} is close to {}.",
                    pct(g.hard_bounce_rate),
                    pct(alerts.hard_bounce_rate)
                ),
            });
        }
    }
    let deferrals: Vec<Deferrals> = store
        .report_deferrals(since)
        .await?
        .into_iter()
        .map(|(stream, domain, deferred, attempts)| Deferrals {
            rate: ratio(deferred, attempts),
            stream,
            domain,
            deferred,
            attempts,
        })
        .collect();
    for d in &deferrals {
        if d.attempts >= 20 && d.rate >= alerts.deferral_rate {
            warnings.push(Warning {
                level: "crossed",
                stream: d.stream.clone(),
                subject: format!("{} to {}", d.stream, d.domain),
                message: format!(
                    "{} of delivery attempts to {} were deferred: the provider is throttling this sender, usually over reputation. Lower the stream's rate_limit, look at complaint and bounce rates, and lint the content.",
                    pct(d.rate),
                    d.domain
                ),
            });
        }
    }
    Ok(Report {
        since,
        generated_at: now_ms(),
        groups,
        deferrals,
        top_bounce_reasons: store
            .report_bounce_reasons(since)
            .await?
            .into_iter()
            .map(|(class, status, example, count)| BounceReason {
                class,
                status,
                example,
                count,
            })
            .collect(),
        suppressions_added: store
            .report_suppressions(since)
            .await?
            .into_iter()
            .map(|(scope, reason, count)| SuppressionsAdded {
                scope,
                reason,
                count,
            })
            .collect(),
        warnings,
    })
}

/// The report for people.
pub fn write_text(r: &Report, out: &mut impl std::io::Write) -> std::io::Result<()> {
    let time = crate::store::rfc3339;
    writeln!(
        out,
        "Deliverability report, {} to {}",
        time(r.since),
        time(r.generated_at)
    )?;
    if r.warnings.is_empty() {
        writeln!(out, "\nNo warnings.")?;
    } else {
        writeln!(out, "\nWarnings:")?;
        for w in &r.warnings {
            let mark = if w.level == "crossed" { "!!" } else { " !" };
            writeln!(out, "{mark} {}: {}", w.subject, w.message)?;
        }
    }
    writeln!(out, "\nBy stream and sending domain:")?;
    if r.groups.is_empty() {
        writeln!(out, "  (no mail in this period)")?;
    }
    for g in &r.groups {
        let bounces: Vec<String> = g.bounces.iter().map(|(c, n)| format!("{c} {n}")).collect();
        writeln!(
            out,
            "  {} from {}: {} accepted, {} delivered, {} pending, {} expired, {} suppressed at acceptance",
            g.stream, g.sending_domain, g.accepted, g.delivered, g.pending, g.expired, g.suppressed
        )?;
        writeln!(
            out,
            "    bounces {} ({}), hard {}; complaints {} ({} of delivered)",
            pct(g.bounce_rate),
            if bounces.is_empty() {
                "none".into()
            } else {
                bounces.join(", ")
            },
            pct(g.hard_bounce_rate),
            g.complaints,
            pct(g.complaint_rate)
        )?;
    }
    if !r.deferrals.is_empty() {
        writeln!(out, "\nDeferrals by destination:")?;
        for d in r.deferrals.iter().filter(|d| d.deferred > 0) {
            writeln!(
                out,
                "  {} to {}: {} of {} attempts ({})",
                d.stream,
                d.domain,
                d.deferred,
                d.attempts,
                pct(d.rate)
            )?;
        }
    }
    if !r.top_bounce_reasons.is_empty() {
        writeln!(out, "\nTop bounce reasons:")?;
        for b in &r.top_bounce_reasons {
            writeln!(
                out,
                "  {} × {} {}: {}",
                b.count,
                b.class,
                b.status.as_deref().unwrap_or("-"),
                b.example.as_deref().unwrap_or("")
            )?;
        }
    }
    if !r.suppressions_added.is_empty() {
        writeln!(out, "\nSuppressions added:")?;
        for s in &r.suppressions_added {
            writeln!(out, "  {} {} ({})", s.count, s.reason, s.scope)?;
        }
    }
    Ok(())
}

/// Checks the last day's complaint and hard-bounce rates per stream every
/// `every`, sets the metrics an alert can fire on, and logs a warning when
/// a stream goes over a threshold (and when it comes back).
pub async fn watch_rates(
    store: Store,
    alerts: AlertSettings,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(alerts.check_every);
    let mut over: std::collections::HashSet<(String, &'static str)> = Default::default();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let groups = match groups(&store, now_ms() - 24 * 3600 * 1000).await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(error = %e, "computing complaint and bounce rates failed");
                continue;
            }
        };
        for stream in crate::domain::Stream::ALL {
            let gs: Vec<&Group> = groups
                .iter()
                .filter(|g| g.stream == stream.as_str())
                .collect();
            let delivered: i64 = gs.iter().map(|g| g.delivered).sum();
            let accepted: i64 = gs.iter().map(|g| g.accepted).sum();
            let complaints: i64 = gs.iter().map(|g| g.complaints).sum();
            let hard: i64 = gs
                .iter()
                .map(|g| g.bounces.get("hard").copied().unwrap_or(0))
                .sum();
            let rates = [
                (
                    "complaint",
                    ratio(complaints, delivered),
                    alerts.complaint_rate,
                ),
                (
                    "hard_bounce",
                    ratio(hard, accepted),
                    alerts.hard_bounce_rate,
                ),
            ];
            for (kind, rate, threshold) in rates {
                metrics.set_rate(stream, kind, rate, rate >= threshold && rate > 0.0);
                let key = (stream.as_str().to_string(), kind);
                if rate >= threshold && rate > 0.0 {
                    if over.insert(key) {
                        tracing::warn!(%stream, kind, rate, threshold, "rate over its alert threshold in the last 24 hours");
                    }
                } else if over.remove(&key) {
                    tracing::info!(%stream, kind, rate, threshold, "rate back under its alert threshold");
                }
            }
        }
    }
}
