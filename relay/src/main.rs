//! `mailroom`: parses the command line, sets up logging, calls into the
//! library crates and maps the result to an exit code (0 ok, 1 "found
//! something" — a lint score over the threshold —, 2 error).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use relay::config::Settings;
use relay::delivery::dkim::{self, Algorithm};
use relay::domain::Stream;
use relay::keys::ApiScope;
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
    /// Score emails for spam risk before sending them (exit 0: all at or
    /// under the threshold, 1: some above, 2: a file couldn't be read).
    Lint {
        /// Stream rules to apply [default: the JSON message's stream, else
        /// marketing].
        #[arg(long, value_parser = parse_stream)]
        stream: Option<Stream>,
        #[arg(long, value_enum, default_value_t = LintFormat::Text)]
        format: LintFormat,
        /// Exit 1 when any file scores above this.
        #[arg(long, default_value_t = 5.0, value_parser = parse_score)]
        fail_above: f64,
        /// .eml messages, .html bodies or the relay's JSON messages; `-`
        /// reads stdin.
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// Bounce tools.
    Bounce {
        #[command(subcommand)]
        command: BounceCommand,
    },
    /// Manage the suppression list (addresses and domains never mailed).
    Suppressions {
        #[command(subcommand)]
        command: SuppressionsCommand,
    },
    /// Mailing-list tools.
    List {
        #[command(subcommand)]
        command: ListCommand,
    },
    /// Back up the SQLite store while the relay runs: a consistent snapshot,
    /// compressed and encrypted with age, with a manifest. `backup verify`
    /// checks a backup restores; `backup keygen` makes an age key pair.
    #[command(args_conflicts_with_subcommands = true)]
    Backup {
        #[command(subcommand)]
        command: Option<BackupCommand>,
        #[arg(long, env = "MAILROOM_DATABASE_URL")]
        database: Option<String>,
        #[arg(long)]
        out: Option<PathBuf>,
        /// age public key (`age1…`) to encrypt to (repeatable).
        #[arg(long = "recipient")]
        recipients: Vec<String>,
        /// Environment variable holding a passphrase to encrypt with.
        #[arg(long)]
        passphrase_env: Option<String>,
    },
    /// Restore a backup into a new SQLite database (an existing one only
    /// with --force, with the relay stopped).
    Restore {
        file: PathBuf,
        #[arg(long, env = "MAILROOM_DATABASE_URL")]
        database: String,
        /// age identity file (the secret key) to decrypt with.
        #[arg(long)]
        identity: Option<PathBuf>,
        #[arg(long)]
        passphrase_env: Option<String>,
        #[arg(long)]
        force: bool,
    },
    /// Deliverability health report per stream and sending domain: volumes,
    /// bounce and complaint rates, deferrals by destination, top bounce
    /// reasons, suppressions added, with warnings against the thresholds
    /// (`[alerts]` in --config; Gmail's and Yahoo's 0.3 % complaint limit).
    Report {
        #[arg(
            long,
            env = "MAILROOM_DATABASE_URL",
            default_value = "sqlite://mailroom.db"
        )]
        database: String,
        /// For the `[alerts]` thresholds.
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value = "7d")]
        since: humantime::Duration,
        #[arg(long, value_enum, default_value_t = LintFormat::Text)]
        format: LintFormat,
    },
    /// Show the audit log: keys created, rotated and revoked, suppressions
    /// added and removed by hand, configuration reloads (tab-separated,
    /// oldest first).
    Audit {
        #[arg(
            long,
            env = "MAILROOM_DATABASE_URL",
            default_value = "sqlite://mailroom.db"
        )]
        database: String,
        /// How far back: `7d`, `12h`.
        #[arg(long, default_value = "30d")]
        since: humantime::Duration,
        /// Only this action, or actions starting with it (`key.`).
        #[arg(long)]
        action: Option<String>,
    },
}

#[derive(Subcommand)]
enum BackupCommand {
    /// Decrypt into a temporary place and check the manifest, checksum,
    /// SQLite integrity and row counts (exit 0 good, 2 not).
    Verify {
        file: PathBuf,
        #[arg(long)]
        identity: Option<PathBuf>,
        #[arg(long)]
        passphrase_env: Option<String>,
    },
    /// Write a new age identity (secret key) to --out and print its public
    /// key, the --recipient for `mailroom backup`.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
}

/// The decryption key from `--identity` or `--passphrase-env`.
fn decryption_key(
    identity: Option<PathBuf>,
    passphrase_env: Option<String>,
) -> anyhow::Result<relay::backup::Key> {
    match (identity, passphrase_env) {
        (Some(path), None) => Ok(relay::backup::Key::IdentityFile(path)),
        (None, Some(var)) => Ok(relay::backup::Key::Passphrase(passphrase(&var)?)),
        _ => anyhow::bail!("give exactly one of --identity FILE or --passphrase-env VAR"),
    }
}

fn passphrase(var: &str) -> anyhow::Result<age::secrecy::SecretString> {
    let p = std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?;
    anyhow::ensure!(!p.is_empty(), "environment variable {var} is empty");
    Ok(p.into())
}

fn print_manifest(m: &relay::backup::Manifest) {
    let counts: Vec<String> = m
        .row_counts
        .iter()
        .map(|(t, n)| format!("{t} {n}"))
        .collect();
    println!(
        "snapshot of {} (schema {}), {} bytes, sha256 {}\nrows: {}",
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(m.created_at.max(0) as u64)
        ),
        m.schema_version,
        m.database_bytes,
        m.sha256,
        counts.join(", ")
    );
}

#[derive(Subcommand)]
enum SuppressionsCommand {
    /// List entries, newest first (tab-separated).
    List {
        #[arg(
            long,
            env = "MAILROOM_DATABASE_URL",
            default_value = "sqlite://mailroom.db"
        )]
        database: String,
        /// global, transactional or marketing.
        #[arg(long)]
        scope: Option<String>,
    },
    /// Add (or refresh) an entry for an address or a whole domain.
    Add {
        #[arg(
            long,
            env = "MAILROOM_DATABASE_URL",
            default_value = "sqlite://mailroom.db"
        )]
        database: String,
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
        #[arg(
            long,
            env = "MAILROOM_DATABASE_URL",
            default_value = "sqlite://mailroom.db"
        )]
        database: String,
        target: String,
        #[arg(long, default_value = "global")]
        scope: String,
    },
    /// Write every entry as CSV (scope,kind,value,reason,source,created_at,expires_at).
    Export {
        #[arg(
            long,
            env = "MAILROOM_DATABASE_URL",
            default_value = "sqlite://mailroom.db"
        )]
        database: String,
        /// File to write [default: stdout].
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ListCommand {
    /// Offline hygiene of a subscriber CSV: writes the rows worth mailing to
    /// --out and every removed row with its reason (invalid, duplicate,
    /// role, disposable, typo with a suggestion) to --report.
    Clean {
        /// CSV with a header row.
        input: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// [default: OUT with `.removed.csv` in place of `.csv`]
        #[arg(long)]
        report: Option<PathBuf>,
        /// Header of the address column [default: email, e-mail,
        /// email_address, ...].
        #[arg(long)]
        column: Option<String>,
        /// Also remove addresses on this relay database's suppression list
        /// (global and marketing entries).
        #[arg(long, env = "MAILROOM_DATABASE_URL")]
        database: Option<String>,
    },
    /// Add a CSV's subscribers to a list as confirmed (consent collected
    /// elsewhere), after the same checks as `list clean`; suppressed
    /// addresses are left out, and an address already on the list keeps
    /// its state. Removed rows go to --report.
    Import {
        input: PathBuf,
        #[arg(long)]
        list: String,
        #[arg(
            long,
            env = "MAILROOM_DATABASE_URL",
            default_value = "sqlite://mailroom.db"
        )]
        database: String,
        /// Header of the address column [default: email, e-mail, ...].
        #[arg(long)]
        column: Option<String>,
        /// Where the consent was collected, for the consent trail
        /// [default: import:FILE NAME].
        #[arg(long)]
        source: Option<String>,
        /// [default: INPUT with `.rejected.csv` in place of `.csv`]
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Print confirmed subscribers with no open or click in --inactive-days
    /// (dry run); --apply marks them pruned. With --reengage, print those to
    /// send a last-chance campaign first (--apply records that it went);
    /// a later prune spares them for --grace-days.
    Prune {
        #[arg(long)]
        list: String,
        #[arg(long)]
        inactive_days: u32,
        #[arg(long, default_value_t = 14)]
        grace_days: u32,
        #[arg(long)]
        reengage: bool,
        #[arg(long)]
        apply: bool,
        #[arg(
            long,
            env = "MAILROOM_DATABASE_URL",
            default_value = "sqlite://mailroom.db"
        )]
        database: String,
    },
}

#[derive(Subcommand)]
enum BounceCommand {
    /// Print what a bounce says: recipients, status, class, and the message
    /// it refers to (exit 0; 2 if the file can't be read or isn't a message).
    Parse {
        #[arg(long, value_enum, default_value_t = LintFormat::Text)]
        format: LintFormat,
        /// The bounce as received (RFC 5322); `-` reads stdin.
        file: String,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LintFormat {
    /// For people: grouped by severity, coloured on a terminal.
    Text,
    /// One JSON object per file per line.
    Json,
}

fn parse_score(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(format!("{s:?} is not a score (a number of at least 0)")),
    }
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
        #[arg(long = "stream", value_parser = parse_stream, required_unless_present = "scopes")]
        streams: Vec<Stream>,
        /// Administrative scope: webhooks, lists, suppressions or metrics
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
        #[arg(
            long,
            env = "MAILROOM_DATABASE_URL",
            default_value = "sqlite://mailroom.db"
        )]
        database: String,
        id: String,
        #[arg(long, default_value = "7d")]
        grace: humantime::Duration,
    },
    /// List keys (id, name, streams, scopes, status; never secrets).
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

fn parse_api_scope(s: &str) -> Result<ApiScope, String> {
    s.parse()
}

fn parse_stream(s: &str) -> Result<Stream, String> {
    s.parse()
        .map_err(|e: relay::domain::stream::UnknownStream| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    if let Command::Lint {
        stream,
        format,
        fail_above,
        files,
    } = cli.command
    {
        return lint_files(stream, format, fail_above, &files);
    }
    if let Command::List {
        command:
            ListCommand::Clean {
                input,
                out,
                report,
                column,
                database,
            },
    } = &cli.command
    {
        return match list_clean(
            input,
            out,
            report.as_deref(),
            column.as_deref(),
            database.as_deref(),
        ) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    if let Command::Bounce {
        command: BounceCommand::Parse { format, file },
    } = &cli.command
    {
        return match bounce_parse(*format, file) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
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
        Command::Backup {
            command:
                Some(BackupCommand::Verify {
                    file,
                    identity,
                    passphrase_env,
                }),
            ..
        } => {
            let key = decryption_key(identity, passphrase_env)?;
            let opened = relay::backup::open_backup(&file, &key).await?;
            println!("{}: good", file.display());
            print_manifest(&opened.manifest);
            Ok(())
        }
        Command::Backup {
            command: Some(BackupCommand::Keygen { out }),
            ..
        } => {
            anyhow::ensure!(!out.exists(), "{} exists already", out.display());
            let (secret, public) = relay::backup::keygen();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut f = options
                .open(&out)
                .with_context(|| format!("creating {}", out.display()))?;
            std::io::Write::write_all(
                &mut f,
                format!("# public key: {public}\n{secret}\n").as_bytes(),
            )?;
            println!("{public}");
            Ok(())
        }
        Command::Backup {
            command: None,
            database,
            out,
            recipients,
            passphrase_env,
        } => {
            let database = database.context("--database (or MAILROOM_DATABASE_URL) is required")?;
            let out = out.context("--out is required")?;
            let key = match (recipients.is_empty(), passphrase_env) {
                (false, None) => relay::backup::Key::Recipients(recipients),
                (true, Some(var)) => relay::backup::Key::Passphrase(passphrase(&var)?),
                _ => anyhow::bail!(
                    "give --recipient AGE_PUBLIC_KEY (repeatable) or --passphrase-env VAR"
                ),
            };
            let manifest = relay::backup::backup(&database, &out, &key).await?;
            println!("{}: written", out.display());
            print_manifest(&manifest);
            Ok(())
        }
        Command::Restore {
            file,
            database,
            identity,
            passphrase_env,
            force,
        } => {
            let key = decryption_key(identity, passphrase_env)?;
            let manifest = relay::backup::restore(&file, &database, &key, force).await?;
            println!("restored {} into {database}", file.display());
            print_manifest(&manifest);
            Ok(())
        }
        Command::Report {
            database,
            config,
            since,
            format,
        } => {
            let settings = Settings::load(config.as_deref())?;
            let store = Store::connect(&database)
                .await
                .context("opening database")?;
            let since =
                relay::store::now_ms() - std::time::Duration::from(since).as_millis() as i64;
            let report = relay::report::build(&store, since, &settings.alerts).await?;
            let mut out = std::io::stdout().lock();
            match format {
                LintFormat::Text => relay::report::write_text(&report, &mut out)?,
                LintFormat::Json => {
                    serde_json::to_writer(&mut out, &report)?;
                    std::io::Write::write_all(&mut out, b"\n")?;
                }
            }
            Ok(())
        }
        Command::Audit {
            database,
            since,
            action,
        } => {
            let store = Store::connect(&database)
                .await
                .context("opening database")?;
            let since =
                relay::store::now_ms() - std::time::Duration::from(since).as_millis() as i64;
            for e in store.audit_entries(since, action.as_deref()).await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH
                            + std::time::Duration::from_millis(e.at.max(0) as u64)
                    ),
                    e.actor,
                    e.action,
                    e.target,
                    e.detail.unwrap_or_default()
                );
            }
            Ok(())
        }
        Command::Suppressions { command } => suppressions(command).await,
        Command::List {
            command:
                ListCommand::Import {
                    input,
                    list,
                    database,
                    column,
                    source,
                    report,
                },
        } => list_import(&input, &list, &database, column.as_deref(), source, report).await,
        Command::List {
            command:
                ListCommand::Prune {
                    list,
                    inactive_days,
                    grace_days,
                    reengage,
                    apply,
                    database,
                },
        } => {
            let store = Store::connect(&database)
                .await
                .context("opening database")?;
            let done =
                relay::lists::prune(&store, &list, inactive_days, grace_days, reengage, apply)
                    .await?;
            let ts = |t: Option<i64>| t.map(|t| t.to_string()).unwrap_or_default();
            let mut out = csv::Writer::from_writer(std::io::stdout().lock());
            out.write_record([
                "address",
                "confirmed_at",
                "last_delivered_at",
                "last_open_at",
                "last_click_at",
            ])?;
            for s in &done.subscribers {
                out.write_record([
                    s.address.clone(),
                    ts(s.confirmed_at),
                    ts(s.last_delivered_at),
                    ts(s.last_open_at),
                    ts(s.last_click_at),
                ])?;
            }
            out.flush()?;
            let n = done.subscribers.len();
            let what = match (reengage, done.applied) {
                (true, true) => format!("{n} marked as sent a last-chance campaign"),
                (true, false) => {
                    format!("{n} to send a last-chance campaign (dry run; --apply records it)")
                }
                (false, true) => format!("{n} pruned"),
                (false, false) => format!("{n} would be pruned (dry run; --apply prunes)"),
            };
            eprintln!("{list}: {what}");
            Ok(())
        }
        Command::Lint { .. } | Command::Bounce { .. } | Command::List { .. } => {
            unreachable!("handled before the runtime starts")
        }
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

/// Who ran a command, for the audit log: the login name, as far as the
/// environment tells.
fn cli_actor() -> String {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create {
            database,
            name,
            streams,
            scopes,
            expires_in,
        } => {
            let store = Store::connect(&database)
                .await
                .context("opening database")?;
            let expires_at = expires_in
                .map(|d| relay::store::now_ms() + std::time::Duration::from(d).as_millis() as i64);
            let key = relay::keys::create(&store, &name, &streams, &scopes, expires_at).await?;
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
        KeysCommand::List { database } => {
            let store = Store::connect(&database)
                .await
                .context("opening database")?;
            for k in store.list_api_keys().await? {
                let streams: Vec<&str> = k.streams.iter().map(|s| s.as_str()).collect();
                let scopes: Vec<&str> = k.scopes.iter().map(|s| s.as_str()).collect();
                let now = relay::store::now_ms();
                let status = match (k.revoked_at, k.expires_at) {
                    (Some(_), _) => "revoked",
                    (None, Some(t)) if t <= now => "expired",
                    _ => "active",
                };
                let time = |t: Option<i64>| {
                    t.map_or_else(
                        || "-".to_string(),
                        |ms| {
                            humantime::format_rfc3339_seconds(
                                std::time::UNIX_EPOCH
                                    + std::time::Duration::from_millis(ms.max(0) as u64),
                            )
                            .to_string()
                        },
                    )
                };
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
        KeysCommand::Revoke { database, id } => {
            let store = Store::connect(&database)
                .await
                .context("opening database")?;
            anyhow::ensure!(
                store.revoke_api_key(&id).await?,
                "no active key with id {id:?}"
            );
            store.audit(&cli_actor(), "key.revoked", &id, None).await?;
            println!("Revoked key {id}");
        }
        KeysCommand::Rotate {
            database,
            id,
            grace,
        } => {
            let store = Store::connect(&database)
                .await
                .context("opening database")?;
            let grace = std::time::Duration::from(grace);
            let key = relay::keys::rotate(&store, &id, grace).await?;
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
    Ok(())
}

/// `mailroom lint`: every file is linted even when one fails to read.
fn lint_files(
    stream: Option<Stream>,
    format: LintFormat,
    fail_above: f64,
    files: &[String],
) -> ExitCode {
    use relay::linting;
    use std::io::Write as _;

    let mut out = anstream::stdout().lock();
    let mut unreadable = false;
    let mut above = false;
    for (i, file) in files.iter().enumerate() {
        let (name, bytes) = read_file_or_stdin(file);
        let input = match bytes {
            Ok(bytes) => linting::read_input(file, &bytes).map_err(anyhow::Error::from),
            Err(e) => Err(anyhow::Error::from(e)),
        };
        let input = match input {
            Ok(input) => input,
            Err(e) => {
                eprintln!("error: {name}: {e:#}");
                unreadable = true;
                continue;
            }
        };
        let stream = stream.or(input.stream).unwrap_or(Stream::Marketing);
        let options = lint::Options {
            stream: linting::lint_stream(stream),
            threshold: fail_above,
        };
        let report = lint::lint(&input.email, &options);
        above |= !report.passed;
        let written = match format {
            LintFormat::Json => writeln!(out, "{}", linting::json_line(name, &report)),
            LintFormat::Text => {
                let gap = if i > 0 { writeln!(out) } else { Ok(()) };
                gap.and_then(|()| linting::write_text(&mut out, name, &report))
            }
        };
        if let Err(e) = written {
            // A closed pipe (`| head`) ends the output, it isn't a failure.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                break;
            }
            eprintln!("error: writing output: {e}");
            return ExitCode::from(2);
        }
    }
    if unreadable {
        ExitCode::from(2)
    } else if above {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The bytes of FILE, or of stdin for `-`, and the name to show for it.
fn read_file_or_stdin(file: &str) -> (&str, std::io::Result<Vec<u8>>) {
    use std::io::Read as _;
    if file == "-" {
        let mut buf = Vec::new();
        let read = std::io::stdin().read_to_end(&mut buf).map(|_| buf);
        ("<stdin>", read)
    } else {
        (file, std::fs::read(file))
    }
}

/// `mailroom bounce parse`.
fn bounce_parse(format: LintFormat, file: &str) -> anyhow::Result<()> {
    use std::io::Write as _;

    let (name, raw) = read_file_or_stdin(file);
    let raw = raw.with_context(|| format!("reading {name}"))?;
    let bounce = list_hygiene::bounce::parse(&raw).with_context(|| name.to_string())?;
    let mut out = std::io::stdout().lock();
    let written = match format {
        LintFormat::Json => writeln!(
            out,
            "{}",
            serde_json::to_string(&bounce).expect("bounces serialize")
        ),
        LintFormat::Text => relay::linting::write_bounce(&mut out, name, &bounce),
    };
    match written {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing output"),
        _ => Ok(()),
    }
}

/// `mailroom list clean`.
async fn list_import(
    input: &std::path::Path,
    list: &str,
    database: &str,
    column: Option<&str>,
    source: Option<String>,
    report: Option<PathBuf>,
) -> anyhow::Result<()> {
    use list_hygiene::clean;
    let store = Store::connect(database).await.context("opening database")?;
    store
        .get_list(list)
        .await?
        .with_context(|| format!("no list {list:?}; create it with POST /v1/lists"))?;
    let suppressed = relay::lists::marketing_suppressions(&store).await?;
    let is_suppressed = |a: &list_hygiene::address::Address| {
        suppressed
            .get(&("address".to_string(), a.key()))
            .or_else(|| suppressed.get(&("domain".to_string(), a.domain().to_string())))
            .cloned()
    };
    let reader =
        std::fs::File::open(input).with_context(|| format!("opening {}", input.display()))?;
    let summary = clean::clean(
        std::io::BufReader::new(reader),
        std::io::sink(),
        column,
        is_suppressed,
    )
    .with_context(|| input.display().to_string())?;
    let report = report.unwrap_or_else(|| {
        let name = input.to_string_lossy();
        let base = name.strip_suffix(".csv").unwrap_or(&name);
        PathBuf::from(format!("{base}.rejected.csv"))
    });
    let report_file =
        std::fs::File::create(&report).with_context(|| format!("creating {}", report.display()))?;
    clean::write_report(&summary, std::io::BufWriter::new(report_file))
        .with_context(|| format!("writing {}", report.display()))?;
    let source = source.unwrap_or_else(|| {
        format!(
            "import:{}",
            input.file_name().unwrap_or_default().to_string_lossy()
        )
    });
    let added = store
        .import_subscribers(list, &summary.kept_addresses, &source)
        .await?;
    println!(
        "{}: {} rows, {added} added to {list}, {} already on the list, {} rejected (see {})",
        input.display(),
        summary.rows,
        summary.kept - added,
        summary.removed.len(),
        report.display()
    );
    Ok(())
}

fn list_clean(
    input: &std::path::Path,
    out: &std::path::Path,
    report: Option<&std::path::Path>,
    column: Option<&str>,
    database: Option<&str>,
) -> anyhow::Result<()> {
    use list_hygiene::clean;

    // What a mailing list must leave out: global and marketing entries.
    let mut suppressed: std::collections::HashMap<(String, String), String> =
        std::collections::HashMap::new();
    if let Some(database) = database {
        let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        suppressed = runtime.block_on(async {
            let store = Store::connect(database).await.context("opening database")?;
            relay::lists::marketing_suppressions(&store).await
        })?;
    }
    let is_suppressed = |a: &list_hygiene::address::Address| {
        suppressed
            .get(&("address".to_string(), a.key()))
            .or_else(|| suppressed.get(&("domain".to_string(), a.domain().to_string())))
            .cloned()
    };

    anyhow::ensure!(
        input != out,
        "--out must not be the input file: it would be overwritten while read"
    );
    let report = report.map_or_else(
        || {
            let name = out.to_string_lossy();
            let base = name.strip_suffix(".csv").unwrap_or(&name);
            PathBuf::from(format!("{base}.removed.csv"))
        },
        std::path::Path::to_path_buf,
    );
    let reader =
        std::fs::File::open(input).with_context(|| format!("opening {}", input.display()))?;
    let writer =
        std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let summary = clean::clean(
        std::io::BufReader::new(reader),
        std::io::BufWriter::new(writer),
        column,
        is_suppressed,
    )
    .with_context(|| input.display().to_string())?;
    let report_file =
        std::fs::File::create(&report).with_context(|| format!("creating {}", report.display()))?;
    clean::write_report(&summary, std::io::BufWriter::new(report_file))
        .with_context(|| format!("writing {}", report.display()))?;
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for r in &summary.removed {
        *counts.entry(r.reason).or_default() += 1;
    }
    let removed: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    println!(
        "kept {} of {} rows in {}; removed {}{} (listed in {})",
        summary.kept,
        summary.rows,
        out.display(),
        summary.removed.len(),
        if removed.is_empty() {
            String::new()
        } else {
            format!(": {}", removed.join(", "))
        },
        report.display()
    );
    Ok(())
}

/// `mailroom suppressions ...`: straight to the store; a running relay
/// picks additions up within its filter's refresh interval.
async fn suppressions(command: SuppressionsCommand) -> anyhow::Result<()> {
    use relay::suppression::{self, REASONS, Scope, Target};

    let open = |database: String| async move {
        Store::connect(&database).await.context("opening database")
    };
    let scope_of = |s: &str| s.parse::<Scope>().map_err(anyhow::Error::msg);
    let rfc3339 = |ms: i64| {
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64),
        )
        .to_string()
    };
    match command {
        SuppressionsCommand::List { database, scope } => {
            let store = open(database).await?;
            let scope = scope.as_deref().map(scope_of).transpose()?;
            let mut offset = 0;
            loop {
                let page = store
                    .list_suppressions(scope.map(Scope::as_str), None, 1000, offset)
                    .await?;
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
        SuppressionsCommand::Add {
            database,
            target,
            scope,
            reason,
            expires_in,
        } => {
            anyhow::ensure!(
                REASONS.contains(&reason.as_str()),
                "unknown reason {reason:?}: expected one of {}",
                REASONS.join(", ")
            );
            let scope = scope_of(&scope)?;
            let target = Target::parse_either(&target).map_err(anyhow::Error::msg)?;
            let expires_at = expires_in
                .map(|d| relay::store::now_ms() + std::time::Duration::from(d).as_millis() as i64);
            let store = open(database).await?;
            store
                .upsert_suppression(&suppression::entry(
                    scope,
                    &target,
                    &reason,
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
        SuppressionsCommand::Remove {
            database,
            target,
            scope,
        } => {
            let scope = scope_of(&scope)?;
            let target = Target::parse_either(&target).map_err(anyhow::Error::msg)?;
            let store = open(database).await?;
            anyhow::ensure!(
                store
                    .delete_suppression(scope.as_str(), target.kind(), target.value())
                    .await?,
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
        SuppressionsCommand::Export { database, out } => {
            let store = open(database).await?;
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
                        &s.kind,
                        &s.value,
                        &s.reason,
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
    Ok(())
}
