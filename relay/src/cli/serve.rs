//! `mailroom serve`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;

use super::Done;
use crate::config::Settings;
use crate::startup::{Relay, shutdown_signal};

#[derive(clap::Args)]
pub(super) struct Args {
    /// TOML configuration file (see docs/configuration.md).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8025].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// sqlite://PATH or postgres://... [default: sqlite://mailroom.db].
    #[arg(long, env = "MAILROOM_DATABASE_URL")]
    database: Option<String>,
    /// Store signed messages instead of sending them.
    #[arg(long)]
    capture: bool,
}

pub(super) async fn run(args: Args) -> anyhow::Result<Done> {
    let mut settings = Settings::load(args.config.as_deref())?;
    if let Some(l) = args.listen {
        settings.listen = l;
    }
    if let Some(d) = args.database {
        settings.database = d;
    }
    settings.capture |= args.capture;
    let relay = Relay::build(settings.clone()).await?;
    if let Some(key) = relay.bootstrap_capture_key().await? {
        println!("Capture mode, empty database: created an API key for both streams (shown once):");
        println!("{}", key.secret);
    }
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let addr = listener.local_addr().context("reading bound address")?;
    tracing::info!(%addr, capture = settings.capture, "listening on {addr}");
    relay.run(listener, shutdown_signal()).await?;
    Ok(Done::Clean)
}
