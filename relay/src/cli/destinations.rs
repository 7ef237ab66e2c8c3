//! `mailroom destinations`: the per-provider shaping state, and suspend /
//! resume by hand. Straight to the store; running relays pick changes up
//! within a second.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;

use super::{Done, Format, cli_actor, parse_stream};
use crate::config::Settings;
use crate::domain::Stream;

#[derive(clap::Args)]
pub(super) struct Args {
    /// The relay's configuration: database and shaping tables.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Per stream and provider: limits, queue, connections, rate, and any
    /// suspension or throttle (the default).
    List {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Only providers with mail queued, connections or a limit in force.
        #[arg(long)]
        active: bool,
    },
    /// Stop delivering to a provider on one stream for a while (audited).
    Suspend {
        #[arg(value_parser = parse_stream)]
        stream: Stream,
        provider: String,
        /// How long, e.g. `30m`, `2h`.
        #[arg(long = "for")]
        duration: humantime::Duration,
        #[arg(long)]
        reason: String,
    },
    /// Lift a suspension or throttle; mail it postponed is due at once.
    Resume {
        #[arg(value_parser = parse_stream)]
        stream: Stream,
        provider: String,
    },
}

pub(super) async fn run(args: Args) -> anyhow::Result<Done> {
    let mut settings = Settings::load(args.config.as_deref())?;
    settings.resolve_secrets()?;
    let store = super::open(&settings.database).await?;
    let tables = Stream::ALL
        .iter()
        .map(|s| Ok((*s, settings.shaping_table(*s)?, settings.shaped(*s))))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let check = |stream: Stream, provider: &str| {
        let known = tables
            .iter()
            .any(|(s, t, _)| *s == stream && t.get(provider).is_some());
        anyhow::ensure!(
            known,
            "no provider {provider:?} in the {stream} stream's shaping table"
        );
        Ok(())
    };
    match args.command.unwrap_or(Command::List {
        format: Format::Text,
        active: false,
    }) {
        Command::List { format, active } => {
            let overview = crate::destinations::overview(
                &store,
                &tables,
                &[],
                crate::node::heartbeat_interval(settings.shortest_lease()),
            )
            .await
            .context("reading destinations")?;
            let mut out = std::io::stdout().lock();
            match format {
                Format::Json => writeln!(out, "{}", serde_json::to_string(&overview)?)?,
                Format::Text => {
                    writeln!(
                        out,
                        "{:<14} {:<12} {:>7} {:>9} {:>11} {:>10}  state",
                        "stream", "provider", "queued", "in flight", "connections", "rate"
                    )?;
                    for d in &overview.destinations {
                        let limited = d.suspended_until.is_some() || d.throttled_until.is_some();
                        if active
                            && d.queued == 0
                            && d.in_flight == 0
                            && d.connections == 0
                            && !limited
                        {
                            continue;
                        }
                        let state = match (&d.suspended_until, &d.throttled_until) {
                            _ if !d.shaped => "not shaped (the stream's route is not mx)".into(),
                            (Some(u), _) => format!("suspended until {u}"),
                            (None, Some(u)) => format!("throttled (full period until {u})"),
                            _ => "normal".into(),
                        };
                        let why = d
                            .reason
                            .as_deref()
                            .map(|r| format!(" — {r} [{}]", d.set_by.as_deref().unwrap_or("")))
                            .unwrap_or_default();
                        writeln!(
                            out,
                            "{:<14} {:<12} {:>7} {:>9} {:>5} of {:<3} {:>10}  {state}{why}",
                            d.stream.as_str(),
                            d.provider,
                            d.queued,
                            d.in_flight,
                            d.connections,
                            d.limits.max_connections,
                            d.current_rate.map_or("unlimited".into(), |r| r.to_string()),
                        )?;
                    }
                    for (stream, n) in &overview.unresolved {
                        writeln!(
                            out,
                            "{n} queued on {stream} for domains whose provider isn't known yet"
                        )?;
                    }
                    writeln!(out, "{} relay(s) live", overview.live_relays)?;
                }
            }
        }
        Command::Suspend {
            stream,
            provider,
            duration,
            reason,
        } => {
            check(stream, &provider)?;
            anyhow::ensure!(
                settings.shaped(stream),
                "the {stream} stream is not sent on the mx route, so its providers are not \
                 shaped and a suspension would not hold anything back"
            );
            let s = crate::destinations::suspend(
                &store,
                stream,
                &provider,
                duration.into(),
                &reason,
                &cli_actor(),
            )
            .await?;
            println!(
                "{stream}/{provider} suspended until {}",
                s.suspended_until.map(super::rfc3339).unwrap_or_default()
            );
        }
        Command::Resume { stream, provider } => {
            check(stream, &provider)?;
            let (had, due) =
                crate::destinations::resume(&store, stream, &provider, &cli_actor()).await?;
            println!(
                "{stream}/{provider} resumed ({}); {due} postponed recipients due now",
                if had {
                    "it was limited"
                } else {
                    "it was not limited"
                }
            );
        }
    }
    store.close().await;
    Ok(Done::Clean)
}
