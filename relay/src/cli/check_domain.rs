//! `mailroom check-domain`.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context as _;

use super::{Done, Format};
use crate::config::Settings;
use crate::delivery::dkim::Signers;
use crate::domain_check::{self, Dns, Plan, Report, Status};

#[derive(clap::Args)]
pub(super) struct Args {
    /// Sending domains to check; default: every `[[dkim]]` domain in the config.
    domains: Vec<String>,
    /// The relay's configuration: DKIM keys, return paths, source
    /// addresses, hostname, public_url.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Ask this DNS server (`IP:PORT`, repeatable) instead of the config's
    /// `dns_servers` or the system resolver.
    #[arg(long = "dns-server")]
    dns_servers: Vec<SocketAddr>,
    /// The relay's public address (repeatable), for streams without a
    /// `source_address`: checked against SPF and reverse DNS.
    #[arg(long = "ip")]
    addresses: Vec<IpAddr>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub(super) async fn run(args: Args) -> anyhow::Result<Done> {
    let settings = Settings::load(args.config.as_deref())?;
    let signers = Signers::load(&settings.dkim)?;
    let domains = if args.domains.is_empty() {
        Plan::configured_domains(&settings)
    } else {
        args.domains.clone()
    };
    anyhow::ensure!(
        !domains.is_empty(),
        "no domain to check: name one, or give --config with [[dkim]] entries"
    );
    let servers = if args.dns_servers.is_empty() {
        settings.dns_servers.clone()
    } else {
        args.dns_servers.clone()
    };
    let dns = Dns::new(&servers)?;
    let mut worst = Status::Pass;
    let mut out = std::io::stdout().lock();
    for domain in &domains {
        let plan = Plan::from_settings(&settings, &signers, domain, &args.addresses);
        let report = domain_check::check(&dns, &plan)
            .await
            .with_context(|| format!("checking {domain}"))?;
        worst = worst.max(report.status);
        match args.format {
            Format::Json => {
                serde_json::to_writer(&mut out, &report)?;
                out.write_all(b"\n")?;
            }
            Format::Text => write_text(&report, &mut out)?,
        }
    }
    Ok(if worst == Status::Fail {
        Done::Found
    } else {
        Done::Clean
    })
}

/// For people: the checks in order, failures marked, each with its
/// evidence and fix, then the verdict per mailbox provider.
fn write_text(report: &Report, out: &mut impl std::io::Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{} ({}): {}",
        report.domain,
        report.organizational_domain,
        report.status.as_str().to_uppercase()
    )?;
    for c in &report.checks {
        writeln!(
            out,
            "  {:<4}  {:<21} {}: {}",
            c.status.as_str().to_uppercase(),
            c.id,
            c.subject,
            c.summary
        )?;
        for e in &c.evidence {
            writeln!(out, "          found: {e}")?;
        }
        if let Some(fix) = &c.fix {
            writeln!(out, "          fix:   {fix}")?;
        }
    }
    for v in &report.verdicts {
        if v.ready {
            writeln!(out, "  {}: ready", v.provider)?;
        } else {
            writeln!(
                out,
                "  {}: not ready ({})",
                v.provider,
                v.failing.join(", ")
            )?;
        }
    }
    writeln!(out)
}
