//! `mailroom suppressions`: list, add, remove and export entries. Straight
//! to the store; a running relay picks additions up within its filter's
//! refresh interval.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;

use super::{Database, Done, cli_actor, rfc3339};
use crate::suppression::{self, Reason, Scope, Target};

#[derive(Subcommand)]
pub(super) enum Command {
    /// List entries, newest first (tab-separated).
    List {
        #[command(flatten)]
        database: Database,
        /// global, transactional or marketing.
        #[arg(long)]
        scope: Option<String>,
    },
    /// Add (or refresh) an entry for an address or a whole domain.
    Add {
        #[command(flatten)]
        database: Database,
        /// `someone@example.com` or `example.com`.
        target: String,
        /// global (every stream), transactional or marketing.
        #[arg(long, default_value = "global")]
        scope: String,
        /// hard_bounce, complaint, unsubscribe or manual.
        #[arg(long, default_value = "manual")]
        reason: String,
        /// Lapse after this long (`30d`, `12h`).
        #[arg(long)]
        expires_in: Option<humantime::Duration>,
    },
    /// Remove an entry.
    Remove {
        #[command(flatten)]
        database: Database,
        target: String,
        #[arg(long, default_value = "global")]
        scope: String,
    },
    /// Write every entry as CSV (scope,kind,value,reason,source,created_at,expires_at).
    Export {
        #[command(flatten)]
        database: Database,
        /// File to write [default: stdout].
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// `mailroom suppressions ...`: straight to the store; a running relay
/// picks additions up within its filter's refresh interval.
pub(super) async fn run(command: Command) -> anyhow::Result<Done> {
    let scope_of = |s: &str| s.parse::<Scope>().map_err(anyhow::Error::msg);
    match command {
        Command::List { database, scope } => {
            let store = database.open().await?;
            let scope = scope.as_deref().map(scope_of).transpose()?;
            let mut offset = 0;
            loop {
                let page = store.list_suppressions(scope, None, 1000, offset).await?;
                for s in &page {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        s.value,
                        s.kind,
                        s.scope,
                        s.reason,
                        rfc3339(s.created_at),
                        s.expires_at.map_or("-".to_string(), rfc3339)
                    );
                }
                if page.len() < 1000 {
                    break;
                }
                offset += 1000;
            }
        }
        Command::Add {
            database,
            target,
            scope,
            reason,
            expires_in,
        } => {
            let reason = reason.parse::<Reason>().map_err(anyhow::Error::msg)?;
            let scope = scope_of(&scope)?;
            let target = Target::parse_either(&target)?;
            let expires_at = expires_in
                .map(|d| crate::store::now_ms() + std::time::Duration::from(d).as_millis() as i64);
            let store = database.open().await?;
            store
                .upsert_suppression(&suppression::entry(
                    scope,
                    &target,
                    reason,
                    Some("cli".into()),
                    expires_at,
                ))
                .await?;
            store
                .audit(
                    &cli_actor(),
                    "suppression.added",
                    target.value(),
                    Some(&format!("{} {reason}", scope.as_str())),
                )
                .await?;
            println!(
                "Suppressed {} {} ({}, {reason})",
                target.kind(),
                target.value(),
                scope.as_str()
            );
        }
        Command::Remove {
            database,
            target,
            scope,
        } => {
            let scope = scope_of(&scope)?;
            let target = Target::parse_either(&target)?;
            let store = database.open().await?;
            anyhow::ensure!(
                store.delete_suppression(scope, &target).await?,
                "no {} suppression for {}",
                scope.as_str(),
                target.value()
            );
            store
                .audit(
                    &cli_actor(),
                    "suppression.removed",
                    target.value(),
                    Some(scope.as_str()),
                )
                .await?;
            println!(
                "Removed {} {} ({})",
                target.kind(),
                target.value(),
                scope.as_str()
            );
        }
        Command::Export { database, out } => {
            let store = database.open().await?;
            let sink: Box<dyn std::io::Write> = match &out {
                Some(path) => Box::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?,
                ),
                None => Box::new(std::io::stdout().lock()),
            };
            let mut w = csv::Writer::from_writer(sink);
            w.write_record([
                "scope",
                "kind",
                "value",
                "reason",
                "source",
                "created_at",
                "expires_at",
            ])?;
            let mut offset = 0;
            let mut n = 0;
            loop {
                let page = store.list_suppressions(None, None, 1000, offset).await?;
                for s in &page {
                    w.write_record([
                        s.scope.as_str(),
                        s.kind.as_str(),
                        &s.value,
                        s.reason.as_str(),
                        s.source.as_deref().unwrap_or(""),
                        &rfc3339(s.created_at),
                        &s.expires_at.map(rfc3339).unwrap_or_default(),
                    ])?;
                }
                n += page.len();
                if page.len() < 1000 {
                    break;
                }
                offset += 1000;
            }
            w.flush()?;
            if let Some(path) = out {
                eprintln!("Exported {n} entries to {}", path.display());
            }
        }
    }
    Ok(Done::Clean)
}
