//! `mailroom`: parses the command line, sets up logging, calls into the
//! library crates and maps the result to an exit code (0 ok, 2 error).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use relay::config::Settings;
use relay::delivery::dkim::{self, Algorithm};
use relay::domain::Stream;
use relay::startup::{Relay, shutdown_signal};
use relay::store::Store;
use relay::telemetry::{self, LogFormat};

#[derive(Parser)]
#[command(
    name = "mailroom",
    version,
    about = "Email deliverability toolkit and transactional mail relay"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay: HTTP API and delivery workers.
    Serve {
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
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// DKIM key tools.
    Dkim {
        #[command(subcommand)]
        command: DkimCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key; prints it once, as the last line of stdout.
    Create {
        #[arg(
            long,
            env = "MAILROOM_DATABASE_URL",
            default_value = "sqlite://mailroom.db"
        )]
        database: String,
        #[arg(long)]
        name: String,
        /// Stream the key may send on (repeatable).
        #[arg(long = "stream", required = true, value_parser = parse_stream)]
        streams: Vec<Stream>,
    },
    /// List keys (ids, names, streams; never secrets).
    List {
        #[arg(
            long,
            env = "MAILROOM_DATABASE_URL",
            default_value = "sqlite://mailroom.db"
        )]
        database: String,
    },
    /// Revoke a key by its id (the part after `mr_`).
    Revoke {
        #[arg(
            long,
            env = "MAILROOM_DATABASE_URL",
            default_value = "sqlite://mailroom.db"
        )]
        database: String,
        id: String,
    },
}

#[derive(Subcommand)]
enum DkimCommand {
    /// Generate a signing key and print the DNS record to publish.
    Keygen {
        #[arg(long)]
        domain: String,
        #[arg(long)]
        selector: String,
        #[arg(long, value_enum, default_value_t = Algorithm::Ed25519)]
        algorithm: Algorithm,
        /// Where to write the private key (PEM); never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
}

fn parse_stream(s: &str) -> Result<Stream, String> {
    s.parse()
        .map_err(|e: relay::domain::stream::UnknownStream| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve {
            config,
            listen,
            database,
            capture,
        } => {
            let mut settings = Settings::load(config.as_deref())?;
            if let Some(l) = listen {
                settings.listen = l;
            }
            if let Some(d) = database {
                settings.database = d;
            }
            settings.capture |= capture;
            let relay = Relay::build(settings.clone()).await?;
            if let Some(key) = relay.bootstrap_capture_key().await? {
                println!(
                    "Capture mode, empty database: created an API key for both streams (shown once):"
                );
                println!("{}", key.secret);
            }
            let listener = tokio::net::TcpListener::bind(settings.listen)
                .await
                .with_context(|| format!("binding {}", settings.listen))?;
            let addr = listener.local_addr().context("reading bound address")?;
            tracing::info!(%addr, capture = settings.capture, "listening on {addr}");
            relay.run(listener, shutdown_signal()).await
        }
        Command::Keys { command } => keys(command).await,
        Command::Dkim {
            command:
                DkimCommand::Keygen {
                    domain,
                    selector,
                    algorithm,
                    out,
                },
        } => {
            let key = dkim::generate(&domain, &selector, algorithm)?;
            dkim::write_private_key(&out, &key.private_pem)?;
            println!("Private key written to {}", out.display());
            println!("Publish this DNS TXT record:");
            println!("{}", key.dns_name);
            println!("{}", key.dns_value);
            Ok(())
        }
    }
}

async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create {
            database,
            name,
            streams,
        } => {
            let store = Store::connect(&database)
                .await
                .context("opening database")?;
            let key = relay::keys::create(&store, &name, &streams).await?;
            let list: Vec<&str> = streams.iter().map(|s| s.as_str()).collect();
            println!(
                "Created key {} ({name}) for {}. It is shown once; store it now:",
                key.id,
                list.join(", ")
            );
            println!("{}", key.secret);
        }
        KeysCommand::List { database } => {
            let store = Store::connect(&database)
                .await
                .context("opening database")?;
            for k in store.list_api_keys().await? {
                let streams: Vec<&str> = k.streams.iter().map(|s| s.as_str()).collect();
                let status = if k.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                println!("{}\t{}\t{}\t{}", k.id, k.name, streams.join(","), status);
            }
        }
        KeysCommand::Revoke { database, id } => {
            let store = Store::connect(&database)
                .await
                .context("opening database")?;
            anyhow::ensure!(
                store.revoke_api_key(&id).await?,
                "no active key with id {id:?}"
            );
            println!("Revoked key {id}");
        }
    }
    Ok(())
}
