//! `mailroom backup` (with `verify` and `keygen`) and `mailroom restore`.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;

use super::{Done, rfc3339};
use crate::backup::{self, Key, Manifest};

#[derive(clap::Args)]
pub(super) struct Args {
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
}

#[derive(Subcommand)]
enum BackupCommand {
    /// Decrypt into a temporary place and check the manifest, checksum,
    /// SQLite integrity and row counts (exit 0 good, 2 not).
    Verify {
        file: PathBuf,
        #[command(flatten)]
        key: DecryptionKey,
    },
    /// Write a new age identity (secret key) to --out and print its public
    /// key, the --recipient for `mailroom backup`.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(clap::Args)]
pub(super) struct RestoreArgs {
    file: PathBuf,
    #[arg(long, env = "MAILROOM_DATABASE_URL")]
    database: String,
    #[command(flatten)]
    key: DecryptionKey,
    #[arg(long)]
    force: bool,
}

/// What decrypts a backup: exactly one of the two.
#[derive(clap::Args)]
struct DecryptionKey {
    /// age identity file (the secret key) to decrypt with.
    #[arg(long)]
    identity: Option<PathBuf>,
    #[arg(long)]
    passphrase_env: Option<String>,
}

impl DecryptionKey {
    fn key(self) -> anyhow::Result<Key> {
        match (self.identity, self.passphrase_env) {
            (Some(path), None) => Ok(Key::IdentityFile(path)),
            (None, Some(var)) => Ok(Key::Passphrase(passphrase(&var)?)),
            _ => anyhow::bail!("give exactly one of --identity FILE or --passphrase-env VAR"),
        }
    }
}

fn passphrase(var: &str) -> anyhow::Result<age::secrecy::SecretString> {
    let p = std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?;
    anyhow::ensure!(!p.is_empty(), "environment variable {var} is empty");
    Ok(p.into())
}

fn print_manifest(m: &Manifest) {
    let counts: Vec<String> = m
        .row_counts
        .iter()
        .map(|(t, n)| format!("{t} {n}"))
        .collect();
    println!(
        "snapshot of {} (schema {}), {} bytes, sha256 {}\nrows: {}",
        rfc3339(m.created_at),
        m.schema_version,
        m.database_bytes,
        m.sha256,
        counts.join(", ")
    );
}

pub(super) async fn backup(args: Args) -> anyhow::Result<Done> {
    match args.command {
        Some(BackupCommand::Verify { file, key }) => {
            let opened = backup::open_backup(&file, &key.key()?).await?;
            println!("{}: good", file.display());
            print_manifest(&opened.manifest);
        }
        Some(BackupCommand::Keygen { out }) => {
            anyhow::ensure!(!out.exists(), "{} exists already", out.display());
            let (secret, public) = backup::keygen();
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
        }
        None => {
            let database = args
                .database
                .context("--database (or MAILROOM_DATABASE_URL) is required")?;
            let out = args.out.context("--out is required")?;
            let key = match (args.recipients.is_empty(), args.passphrase_env) {
                (false, None) => Key::Recipients(args.recipients),
                (true, Some(var)) => Key::Passphrase(passphrase(&var)?),
                _ => anyhow::bail!(
                    "give --recipient AGE_PUBLIC_KEY (repeatable) or --passphrase-env VAR"
                ),
            };
            let manifest = backup::backup(&database, &out, &key).await?;
            println!("{}: written", out.display());
            print_manifest(&manifest);
        }
    }
    Ok(Done::Clean)
}

pub(super) async fn restore(args: RestoreArgs) -> anyhow::Result<Done> {
    let key = args.key.key()?;
    let manifest = backup::restore(&args.file, &args.database, &key, args.force).await?;
    println!("restored {} into {}", args.file.display(), args.database);
    print_manifest(&manifest);
    Ok(Done::Clean)
}
