//! The `mailroom` command line: argument definitions and one module per
//! command group, each calling into the library. `main` only parses,
//! sets up logging and calls [`run`], the one place that turns a result
//! into an exit code (0 ok, 1 "found something" — a lint score over the
//! threshold —, 2 error).
//!
//! # Layout
//! - `serve.rs`: `mailroom serve`.
//! - `keys.rs`, `dkim.rs`: API keys and DKIM keys.
//! - `lint.rs`: `mailroom lint` and `mailroom bounce parse`.
//! - `suppressions.rs`, `list.rs`: the suppression list; list clean,
//!   import and prune.
//! - `backup.rs`: backup, verify, keygen, restore.
//! - `report.rs`: the deliverability report and the audit log.
//! - `check_domain.rs`: the DNS set-up of the sending domains.
//! - `destinations.rs`: per-provider shaping state; suspend and resume.

mod backup;
mod check_domain;
mod destinations;
mod dkim;
mod keys;
mod lint;
mod list;
mod report;
mod serve;
mod suppressions;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::domain::Stream;
use crate::store::Store;
use crate::telemetry::LogFormat;

#[derive(Parser)]
#[command(
    name = "mailroom",
    version,
    about = "Email deliverability toolkit and transactional mail relay"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay: HTTP API and delivery workers.
    Serve(serve::Args),
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: keys::Command,
    },
    /// DKIM key tools.
    Dkim {
        #[command(subcommand)]
        command: dkim::Command,
    },
    /// Score emails for spam risk before sending them (exit 0: all at or
    /// under the threshold, 1: some above, 2: a file couldn't be read).
    Lint(lint::Args),
    /// Bounce tools.
    Bounce {
        #[command(subcommand)]
        command: lint::BounceCommand,
    },
    /// Manage the suppression list (addresses and domains never mailed).
    Suppressions {
        #[command(subcommand)]
        command: suppressions::Command,
    },
    /// Mailing-list tools.
    List {
        #[command(subcommand)]
        command: list::Command,
    },
    /// Back up the SQLite store while the relay runs: a consistent snapshot,
    /// compressed and encrypted with age, with a manifest. `backup verify`
    /// checks a backup restores; `backup keygen` makes an age key pair.
    #[command(args_conflicts_with_subcommands = true)]
    Backup(backup::Args),
    /// Restore a backup into a new SQLite database (an existing one only
    /// with --force, with the relay stopped).
    Restore(backup::RestoreArgs),
    /// Deliverability health report per stream and sending domain: volumes,
    /// bounce and complaint rates, deferrals by destination, top bounce
    /// reasons, suppressions added, with warnings against the thresholds
    /// (`[alerts]` in --config; Gmail's and Yahoo's 0.3 % complaint limit).
    Report(report::Args),
    /// Check that sending domains are set up to reach the inbox: SPF, DKIM,
    /// DMARC, return path, reverse DNS, MTA-STS/TLS-RPT/BIMI and one-click
    /// unsubscribe, each with the record found and the fix, and a verdict
    /// per mailbox provider (exit 0: nothing fails, 1: something fails,
    /// 2: DNS or the config couldn't be read).
    CheckDomain(check_domain::Args),
    /// Per-provider traffic shaping: limits, queue, connections, rate,
    /// suspensions and throttles; suspend or resume a provider by hand.
    Destinations(destinations::Args),
    /// Show the audit log: keys created, rotated and revoked, suppressions
    /// added and removed by hand, configuration reloads (tab-separated,
    /// oldest first).
    Audit(report::AuditArgs),
}

/// `--database` for commands that work on a relay's store.
#[derive(clap::Args)]
struct Database {
    /// sqlite://PATH or postgres://...
    #[arg(
        long = "database",
        env = "MAILROOM_DATABASE_URL",
        default_value = "sqlite://mailroom.db"
    )]
    url: String,
}

impl Database {
    async fn open(&self) -> anyhow::Result<Store> {
        open(&self.url).await
    }
}

async fn open(url: &str) -> anyhow::Result<Store> {
    Store::connect(url).await.context("opening database")
}

/// `--format` of the commands that print a report.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    /// For people: grouped by severity, coloured on a terminal.
    Text,
    /// One JSON object per file per line.
    Json,
}

/// How a command that ran to its end came out.
enum Done {
    /// Exit 0.
    Clean,
    /// Exit 1: it found what it looks for (a lint score over the threshold).
    Found,
    /// Exit 2: it reported its errors itself as it went (`lint` carries on
    /// past an unreadable file).
    Failed,
}

/// Runs the command; the one place that maps outcomes and errors to exit
/// codes and prints an error, once, with its chain.
pub fn run(cli: Cli) -> ExitCode {
    let result = tokio::runtime::Runtime::new()
        .context("starting the async runtime")
        .and_then(|runtime| runtime.block_on(dispatch(cli.command)));
    match result {
        Ok(Done::Clean) => ExitCode::SUCCESS,
        Ok(Done::Found) => ExitCode::from(1),
        Ok(Done::Failed) => ExitCode::from(2),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<Done> {
    match command {
        Command::Serve(args) => serve::run(args).await,
        Command::Keys { command } => keys::run(command).await,
        Command::Dkim { command } => dkim::run(command),
        Command::Lint(args) => Ok(lint::lint(&args)),
        Command::Bounce { command } => lint::bounce(&command),
        Command::Suppressions { command } => suppressions::run(command).await,
        Command::List { command } => list::run(command).await,
        Command::Backup(args) => backup::backup(args).await,
        Command::Restore(args) => backup::restore(args).await,
        Command::Report(args) => report::report(args).await,
        Command::Audit(args) => report::audit(args).await,
        Command::CheckDomain(args) => check_domain::run(args).await,
        Command::Destinations(args) => destinations::run(args).await,
    }
}

fn parse_stream(s: &str) -> Result<Stream, String> {
    s.parse()
        .map_err(|e: crate::domain::stream::UnknownStream| e.to_string())
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

/// An RFC 3339 time (seconds) for Unix milliseconds.
fn rfc3339(ms: i64) -> String {
    crate::store::rfc3339(ms)
}

/// `now` less a `--since` duration, in Unix milliseconds.
fn since(d: humantime::Duration) -> i64 {
    crate::store::now_ms() - std::time::Duration::from(d).as_millis() as i64
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
