//! `mailroom keys`: create, rotate, list and revoke API keys.

use clap::Subcommand;

use super::{Database, Done, cli_actor, rfc3339};
use crate::domain::Stream;
use crate::keys::ApiScope;

#[derive(Subcommand)]
pub(super) enum Command {
    /// Create a key; prints it once, as the last line of stdout.
    Create {
        #[command(flatten)]
        database: Database,
        #[arg(long)]
        name: String,
        /// Stream the key may send on (repeatable).
        #[arg(long = "stream", value_parser = super::parse_stream, required_unless_present = "scopes")]
        streams: Vec<Stream>,
        /// Administrative scope: webhooks, lists, suppressions, metrics or admin
        /// (repeatable).
        #[arg(long = "scope", value_parser = parse_api_scope)]
        scopes: Vec<ApiScope>,
        /// The key stops working after this long (`90d`); default never.
        #[arg(long)]
        expires_in: Option<humantime::Duration>,
    },
    /// Issue a new key with an old one's name, streams and scopes; the old
    /// one keeps working for --grace, then expires.
    Rotate {
        #[command(flatten)]
        database: Database,
        id: String,
        #[arg(long, default_value = "7d")]
        grace: humantime::Duration,
    },
    /// List keys (id, name, streams, scopes, status; never secrets).
    List {
        #[command(flatten)]
        database: Database,
    },
    /// Revoke a key by its id (the part after `mr_`).
    Revoke {
        #[command(flatten)]
        database: Database,
        id: String,
    },
}

fn parse_api_scope(s: &str) -> Result<ApiScope, String> {
    s.parse()
}

pub(super) async fn run(command: Command) -> anyhow::Result<Done> {
    match command {
        Command::Create {
            database,
            name,
            streams,
            scopes,
            expires_in,
        } => {
            let store = database.open().await?;
            let expires_at = expires_in
                .map(|d| crate::store::now_ms() + std::time::Duration::from(d).as_millis() as i64);
            let key = crate::keys::create(&store, &name, &streams, &scopes, expires_at).await?;
            store
                .audit(&cli_actor(), "key.created", &key.id, Some(&name))
                .await?;
            let list: Vec<&str> = streams
                .iter()
                .map(|s| s.as_str())
                .chain(scopes.iter().map(|s| s.as_str()))
                .collect();
            println!(
                "Created key {} ({name}) for {}. It is shown once; store it now:",
                key.id,
                list.join(", ")
            );
            println!("{}", key.secret);
        }
        Command::List { database } => {
            let store = database.open().await?;
            for k in store.list_api_keys().await? {
                let streams: Vec<&str> = k.streams.iter().map(|s| s.as_str()).collect();
                let scopes: Vec<&str> = k.scopes.iter().map(|s| s.as_str()).collect();
                let now = crate::store::now_ms();
                let status = match (k.revoked_at, k.expires_at) {
                    (Some(_), _) => "revoked",
                    (None, Some(t)) if t <= now => "expired",
                    _ => "active",
                };
                let time = |t: Option<i64>| t.map_or_else(|| "-".to_string(), rfc3339);
                println!(
                    "{}\t{}\t{}\t{}\t{}\tcreated {}\tlast used {}\texpires {}",
                    k.id,
                    k.name,
                    streams.join(","),
                    scopes.join(","),
                    status,
                    time(Some(k.created_at)),
                    time(k.last_used_at),
                    time(k.expires_at),
                );
            }
        }
        Command::Revoke { database, id } => {
            let store = database.open().await?;
            anyhow::ensure!(
                store.revoke_api_key(&id).await?,
                "no active key with id {id:?}"
            );
            store.audit(&cli_actor(), "key.revoked", &id, None).await?;
            println!("Revoked key {id}");
        }
        Command::Rotate {
            database,
            id,
            grace,
        } => {
            let store = database.open().await?;
            let grace = std::time::Duration::from(grace);
            let key = crate::keys::rotate(&store, &id, grace).await?;
            store
                .audit(
                    &cli_actor(),
                    "key.rotated",
                    &id,
                    Some(&format!(
                        "new key {}; old one valid {}",
                        key.id,
                        humantime::format_duration(grace)
                    )),
                )
                .await?;
            println!(
                "Created key {} to replace {id}, which keeps working for {}. It is shown once; store it now:",
                key.id,
                humantime::format_duration(grace)
            );
            println!("{}", key.secret);
        }
    }
    Ok(Done::Clean)
}
