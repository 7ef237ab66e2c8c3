//! `mailroom report` and `mailroom audit`.

use std::path::PathBuf;

use super::{Database, Done, Format, rfc3339, since};
use crate::config::Settings;

#[derive(clap::Args)]
pub(super) struct Args {
    #[command(flatten)]
    database: Database,
    /// For the `[alerts]` thresholds.
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long, default_value = "7d")]
    since: humantime::Duration,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(clap::Args)]
pub(super) struct AuditArgs {
    #[command(flatten)]
    database: Database,
    /// How far back: `7d`, `12h`.
    #[arg(long, default_value = "30d")]
    since: humantime::Duration,
    /// Only this action, or actions starting with it (`key.`).
    #[arg(long)]
    action: Option<String>,
}

pub(super) async fn report(args: Args) -> anyhow::Result<Done> {
    let settings = Settings::load(args.config.as_deref())?;
    let store = args.database.open().await?;
    let report = crate::report::build(&store, since(args.since), &settings.alerts).await?;
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Text => crate::report::write_text(&report, &mut out)?,
        Format::Json => {
            serde_json::to_writer(&mut out, &report)?;
            std::io::Write::write_all(&mut out, b"\n")?;
        }
    }
    Ok(Done::Clean)
}

pub(super) async fn audit(args: AuditArgs) -> anyhow::Result<Done> {
    let store = args.database.open().await?;
    for e in store
        .audit_entries(since(args.since), args.action.as_deref())
        .await?
    {
        println!(
            "{}\t{}\t{}\t{}\t{}",
            rfc3339(e.at),
            e.actor,
            e.action,
            e.target,
            e.detail.unwrap_or_default()
        );
    }
    Ok(Done::Clean)
}
