//! Is a sending domain set up to reach the inbox? `mailroom check-domain`
//! and `GET /v1/domains` ask DNS what receivers will see and compare it
//! with what this relay will send: its DKIM keys, return-path domains,
//! source addresses, EHLO name and public URL.
//!
//! Records are parsed and evaluated by mail-auth (SPF, DKIM, DMARC,
//! iprev), the way a receiving MTA does it: the DKIM check signs a probe
//! with the relay's own key and verifies it against the published one,
//! and DMARC alignment is the result of verifying that probe. What
//! mail-auth doesn't report (RFC 7208's lookup and void-lookup counts, a
//! second SPF record, include loops) is counted by walking the records it
//! parsed.
//!
//! # Layout
//! - [`dns`]: lookups that tell "no record" from "no answer".
//! - `spf.rs`, `dkim.rs`, `dmarc.rs`: one check family each.
//! - `hosts.rs`: return path MX, reverse DNS, MTA-STS/TLS-RPT/BIMI, the
//!   unsubscribe URL.

mod dkim;
mod dmarc;
pub mod dns;
mod hosts;
mod spf;

use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

use crate::config::Settings;
use crate::delivery::dkim::{Signer, Signers};
use crate::domain::Stream;
pub use dns::{Dns, DnsError};

/// How one check came out, least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    /// Worth knowing, nothing to fix (BIMI, a smarthost's own SPF).
    Info,
    /// Mail gets through, but something is weaker than it should be.
    Warn,
    /// Receivers will refuse, spam-folder or fail to authenticate mail.
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Info => "info",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One finding: what was checked, what DNS said, and what to publish.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Stable identifier, e.g. `spf.lookups` (docs/operations.md lists them).
    pub id: &'static str,
    /// What it is about: a domain, a DNS name, an address, a stream.
    pub subject: String,
    pub status: Status,
    pub summary: String,
    /// The records found, as published.
    pub evidence: Vec<String>,
    /// The exact record to publish or setting to change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn new(id: &'static str, subject: impl Into<String>, status: Status, summary: String) -> Self {
        Check {
            id,
            subject: subject.into(),
            status,
            summary,
            evidence: Vec::new(),
            fix: None,
        }
    }

    fn evidence(mut self, e: impl IntoIterator<Item = String>) -> Self {
        self.evidence.extend(e);
        self
    }

    fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

/// Whether one mailbox provider's published sender rules are met.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub provider: &'static str,
    pub ready: bool,
    /// `id (subject)` of each failing check the provider's rules need.
    pub failing: Vec<String>,
}

/// The checks for one From domain.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub domain: String,
    /// The registrable domain (public suffix list), where an inherited
    /// DMARC record lives and what relaxed alignment compares.
    pub organizational_domain: String,
    /// The worst status of any check.
    pub status: Status,
    pub checks: Vec<Check>,
    pub verdicts: Vec<Verdict>,
}

/// How one stream sends mail from the domain, as configured.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    pub stream: Stream,
    /// The envelope sender's domain (the VERP return path).
    pub return_path: String,
    /// `None` for direct MX delivery; the smarthost's host otherwise, whose
    /// servers (not ours) then meet receivers.
    pub smarthost: Option<String>,
    /// The addresses receivers see this stream's mail come from.
    pub source_addresses: Vec<IpAddr>,
    pub signer: Option<Arc<Signer>>,
}

impl StreamPlan {
    /// Whether receivers see the two streams' mail alike.
    fn sends_like(&self, other: &StreamPlan) -> bool {
        self.return_path == other.return_path
            && self.smarthost == other.smarthost
            && self.source_addresses == other.source_addresses
            && self.signer.as_ref().map(|s| s.label()) == other.signer.as_ref().map(|s| s.label())
    }
}

/// Everything a check of one domain needs to know about this relay.
#[derive(Debug, Clone)]
pub struct Plan {
    pub domain: String,
    pub streams: Vec<StreamPlan>,
    /// The EHLO name.
    pub helo: String,
    pub public_url: Option<String>,
    /// The return-path domains this relay's `[inbound]` MX takes mail
    /// for; empty without one (bounces then come through another MTA and
    /// the bounce webhook).
    pub inbound: Vec<String>,
}

impl Plan {
    /// The plan for `domain` from the settings. `extra_addresses` are the
    /// relay's public addresses given on the command line, used by every
    /// direct-MX stream that names no `source_address` (behind NAT the
    /// relay can't know its public address).
    pub fn from_settings(
        settings: &Settings,
        signers: &Signers,
        domain: &str,
        extra_addresses: &[IpAddr],
    ) -> Plan {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let streams = Stream::ALL
            .iter()
            .map(|&stream| {
                let s = settings.streams.get(stream);
                let return_path = if s.return_path.is_empty() {
                    domain.clone()
                } else {
                    s.return_path.to_ascii_lowercase()
                };
                let smarthost = (s.route != "mx").then(|| {
                    url::Url::parse(&s.route)
                        .ok()
                        .and_then(|u| u.host_str().map(str::to_owned))
                        .unwrap_or_else(|| s.route.clone())
                });
                let mut source_addresses: Vec<IpAddr> = s.source_address.into_iter().collect();
                if source_addresses.is_empty() {
                    source_addresses.extend_from_slice(extra_addresses);
                }
                StreamPlan {
                    stream,
                    return_path,
                    smarthost,
                    source_addresses,
                    signer: signers.for_domain(&domain, stream),
                }
            })
            .collect();
        Plan {
            domain,
            streams,
            helo: settings.hostname.clone(),
            public_url: settings.public_url.clone(),
            inbound: if settings.inbound.listen.is_empty() {
                Vec::new()
            } else {
                settings.inbound_domains()
            },
        }
    }

    /// The domains mail goes out as: every configured DKIM domain.
    pub fn configured_domains(settings: &Settings) -> Vec<String> {
        let mut domains: Vec<String> = settings
            .dkim
            .iter()
            .map(|d| d.domain.trim_end_matches('.').to_ascii_lowercase())
            .collect();
        domains.sort();
        domains.dedup();
        domains
    }

    /// The distinct return-path domains, in stream order.
    fn return_paths(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for s in &self.streams {
            if !out.contains(&s.return_path.as_str()) {
                out.push(&s.return_path);
            }
        }
        out
    }

    /// The distinct addresses direct-MX streams send from.
    fn source_addresses(&self) -> Vec<IpAddr> {
        let mut out = Vec::new();
        for s in self.streams.iter().filter(|s| s.smarthost.is_none()) {
            for ip in &s.source_addresses {
                if !out.contains(ip) {
                    out.push(*ip);
                }
            }
        }
        out
    }
}

/// The organisational domain of `domain` by the public suffix list; the
/// domain itself when the list doesn't know it.
pub fn organizational_domain(domain: &str) -> String {
    psl::domain_str(domain)
        .unwrap_or(domain)
        .to_ascii_lowercase()
}

/// Runs every check for the plan's domain.
///
/// # Errors
/// A DNS lookup got no answer: nothing can be said about the domain.
pub async fn check(dns: &Dns, plan: &Plan) -> Result<Report, DnsError> {
    let mut checks = Vec::new();

    // SPF: the return-path domains carry the SPF that DMARC uses; the
    // From domain's own record matters when it is also the return path.
    let return_paths = plan.return_paths();
    let mut spf_domains = return_paths.clone();
    if !spf_domains.contains(&plan.domain.as_str()) {
        spf_domains.push(&plan.domain);
    }
    for domain in spf_domains {
        let is_return_path = return_paths.contains(&domain);
        let mut found = spf::check(dns, plan, domain).await?;
        if !is_return_path {
            // Receivers evaluate SPF for the envelope sender, which is
            // another domain on every stream: a problem here is advice.
            for c in &mut found {
                if c.status == Status::Fail {
                    c.status = Status::Warn;
                    c.summary.push_str(
                        " (no stream uses this domain as return path, so receivers don't evaluate it for this relay's mail)",
                    );
                }
            }
        }
        checks.extend(found);
    }

    let mut seen = Vec::new();
    for s in &plan.streams {
        match &s.signer {
            Some(signer) if !seen.contains(&signer.label()) => {
                seen.push(signer.label());
                checks.push(dkim::check(dns, signer).await?);
            }
            Some(_) => {}
            None => checks.push(
                Check::new(
                    "dkim.key",
                    format!("{} ({})", plan.domain, s.stream),
                    Status::Fail,
                    format!(
                        "mailroom has no DKIM key for {} on the {} stream: its mail is refused (or sent unsigned with allow_unsigned)",
                        plan.domain, s.stream
                    ),
                )
                .fix(format!(
                    "mailroom dkim keygen --domain {} --selector mr1 --algorithm rsa --out {}.pem, then a [[dkim]] entry in the config",
                    plan.domain, plan.domain
                )),
            ),
        }
    }

    let record = dmarc::check_record(dns, &plan.domain, &mut checks).await?;
    if let Some(record) = &record {
        // Streams that send alike (same key, return path, addresses) get
        // one alignment check between them.
        let mut groups: Vec<(&StreamPlan, Vec<Stream>)> = Vec::new();
        for s in &plan.streams {
            match groups.iter_mut().find(|(g, _)| g.sends_like(s)) {
                Some((_, members)) => members.push(s.stream),
                None => groups.push((s, vec![s.stream])),
            }
        }
        for (s, members) in groups {
            checks.push(dmarc::alignment(dns, plan, s, &members, record).await?);
        }
    }

    checks.extend(hosts::return_path(dns, plan, record.as_ref()).await?);
    checks.extend(hosts::reverse_dns(dns, plan).await?);
    checks.extend(hosts::transport(dns, &plan.domain).await?);
    checks.push(hosts::unsubscribe(plan));

    let status = checks
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(Status::Pass);
    let verdicts = verdicts(&checks);
    Ok(Report {
        organizational_domain: organizational_domain(&plan.domain),
        domain: plan.domain.clone(),
        status,
        checks,
        verdicts,
    })
}

/// The checks each provider's sender rules require. Gmail's and Yahoo's
/// bulk-sender rules (February 2024): SPF and DKIM, DMARC (p=none is
/// enough) aligned with one of them, forward-confirmed reverse DNS, and
/// one-click unsubscribe. Microsoft's (Outlook.com, May 2025): SPF, DKIM
/// and DMARC aligned with one of them.
const RULES: [(&str, &[&str]); 3] = [
    ("gmail", BULK_SENDER),
    ("yahoo", BULK_SENDER),
    ("microsoft", BULK_SENDER.split_at(6).0),
];

/// Gmail's and Yahoo's list; Microsoft's is its first six.
const BULK_SENDER: &[&str] = &[
    "spf.record",
    "spf.lookups",
    "spf.authorizes",
    "dkim.key",
    "dmarc.record",
    "dmarc.alignment",
    "rdns",
    "unsubscribe",
];

fn verdicts(checks: &[Check]) -> Vec<Verdict> {
    RULES
        .iter()
        .map(|(provider, needs)| {
            let failing: Vec<String> = checks
                .iter()
                .filter(|c| c.status == Status::Fail && needs.contains(&c.id))
                .map(|c| format!("{} ({})", c.id, c.subject))
                .collect();
            Verdict {
                provider,
                ready: failing.is_empty(),
                failing,
            }
        })
        .collect()
}

/// A probe message as the relay would send it from `domain`, signed with
/// `signer`: what the DKIM and DMARC checks verify.
fn probe(domain: &str, signer: &Signer) -> anyhow::Result<Vec<u8>> {
    let message = format!(
        "From: <check-domain@{domain}>\r\n\
         To: <postmaster@{domain}>\r\n\
         Subject: mailroom check-domain probe\r\n\
         Date: Wed, 02 Dec 2026 00:00:00 +0000\r\n\
         Message-ID: <check-domain.probe@{domain}>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         This message is never sent; check-domain verifies its signature.\r\n"
    );
    signer.sign(message.as_bytes())
}
