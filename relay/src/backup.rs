//! Encrypted backups of the SQLite store: a consistent online snapshot
//! (`VACUUM INTO`, safe while the relay runs and sends), gzip-compressed
//! and encrypted with age, with a manifest that `verify` and `restore`
//! check before trusting a byte of it.
//!
//! File format, inside the age encryption and then gzip: an 8-byte
//! big-endian manifest length, the manifest (JSON), then the database file.
//! PostgreSQL stores are backed up with pg_dump instead (docs/operations.md).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr as _;

use age::secrecy::SecretString;
use anyhow::{Context as _, bail, ensure};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sqlx::Connection as _;

/// Format tag in every manifest.
const FORMAT: &str = "mailroom-backup/1";

/// Tables whose rows are counted in the manifest and checked on verify.
const TABLES: &[&str] = &[
    "api_keys",
    "messages",
    "recipients",
    "attempts",
    "suppressions",
    "bounces",
    "lists",
    "subscribers",
    "subscriber_events",
    "webhook_endpoints",
    "webhook_deliveries",
    "secrets",
    "audit_log",
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub format: String,
    /// Unix milliseconds when the snapshot was taken.
    pub created_at: i64,
    /// The newest migration the snapshot has.
    pub schema_version: i64,
    pub database_bytes: u64,
    /// SHA-256 of the database file, hex.
    pub sha256: String,
    pub row_counts: BTreeMap<String, i64>,
}

/// Who can open a backup.
pub enum Key {
    /// age X25519 recipients (`age1…`) to encrypt to.
    Recipients(Vec<String>),
    /// A passphrase (scrypt); encrypts and decrypts.
    Passphrase(SecretString),
    /// An age identity file (`AGE-SECRET-KEY-1…` lines) to decrypt with.
    IdentityFile(PathBuf),
}

/// The file a `sqlite://PATH` URL names.
///
/// # Errors
/// Not a SQLite URL.
pub fn sqlite_path(url: &str) -> anyhow::Result<PathBuf> {
    let Some(rest) = url.strip_prefix("sqlite:") else {
        bail!(
            "backups here are of the SQLite store; for PostgreSQL use pg_dump (docs/operations.md), got {}",
            crate::delivery::redact(url)
        );
    };
    let rest = rest.trim_start_matches("//");
    let path = rest.split('?').next().unwrap_or(rest);
    ensure!(
        !path.is_empty() && path != ":memory:",
        "no database file in {url:?}"
    );
    Ok(PathBuf::from(path))
}

async fn open(path: &Path, writable: bool) -> anyhow::Result<sqlx::AnyConnection> {
    sqlx::any::install_default_drivers();
    let mode = if writable { "rw" } else { "ro" };
    sqlx::AnyConnection::connect(&format!("sqlite://{}?mode={mode}", path.display()))
        .await
        .with_context(|| format!("opening {}", path.display()))
}

async fn manifest_of(path: &Path, bytes: &[u8]) -> anyhow::Result<Manifest> {
    let mut conn = open(path, false).await?;
    let (version,): (Option<i64>,) =
        sqlx::query_as("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&mut conn)
            .await
            .context("reading the schema version: is this a mailroom database?")?;
    let mut row_counts = BTreeMap::new();
    for table in TABLES {
        // Older schemas lack newer tables: counted as absent, not an error.
        let sql = format!("SELECT COUNT(*) FROM {table}");
        if let Ok((n,)) = sqlx::query_as::<_, (i64,)>(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut conn)
            .await
        {
            row_counts.insert((*table).to_string(), n);
        }
    }
    conn.close().await.ok();
    Ok(Manifest {
        format: FORMAT.into(),
        created_at: crate::store::now_ms(),
        schema_version: version.unwrap_or(0),
        database_bytes: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(bytes)),
        row_counts,
    })
}

fn encryptor(key: &Key) -> anyhow::Result<age::Encryptor> {
    match key {
        Key::Recipients(list) => {
            ensure!(!list.is_empty(), "no recipient to encrypt to");
            let recipients = list
                .iter()
                .map(|r| {
                    age::x25519::Recipient::from_str(r.trim())
                        .map_err(|e| anyhow::anyhow!("recipient {r:?}: {e}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
                .context("setting up encryption")
        }
        Key::Passphrase(p) => Ok(age::Encryptor::with_user_passphrase(p.clone())),
        Key::IdentityFile(_) => {
            bail!("an identity file decrypts; encrypt to its public key (--recipient)")
        }
    }
}

/// Takes a snapshot of the SQLite database at `database` (an URL) while it
/// may be in use, and writes it encrypted to `out` (never overwritten).
///
/// # Errors
/// Not SQLite, `out` exists, or reading, snapshotting or writing failed.
pub async fn backup(database: &str, out: &Path, key: &Key) -> anyhow::Result<Manifest> {
    let source = sqlite_path(database)?;
    ensure!(source.exists(), "{} does not exist", source.display());
    ensure!(
        !out.exists(),
        "{} exists already; backups are never overwritten",
        out.display()
    );
    let encryptor = encryptor(key)?;
    let dir = tempfile::tempdir().context("making a temporary directory")?;
    let snapshot = dir.path().join("snapshot.db");
    {
        // VACUUM INTO reads one consistent snapshot (a read transaction) and
        // writes a compact copy; writers carry on meanwhile (WAL mode).
        let mut conn = open(&source, false).await?;
        let target = snapshot.to_string_lossy().replace('\'', "''");
        sqlx::query(sqlx::AssertSqlSafe(format!("VACUUM INTO '{target}'")))
            .execute(&mut conn)
            .await
            .context("taking the snapshot (VACUUM INTO)")?;
        conn.close().await.ok();
    }
    let bytes = std::fs::read(&snapshot).context("reading the snapshot")?;
    let manifest = manifest_of(&snapshot, &bytes).await?;
    let manifest_json = serde_json::to_vec(&manifest).expect("manifests serialize");

    let partial = out.with_extension("partial");
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    let encrypted = encryptor
        .wrap_output(std::io::BufWriter::new(file))
        .context("starting encryption")?;
    let mut gz = flate2::write::GzEncoder::new(encrypted, flate2::Compression::default());
    gz.write_all(&(manifest_json.len() as u64).to_be_bytes())?;
    gz.write_all(&manifest_json)?;
    gz.write_all(&bytes)?;
    let encrypted = gz.finish().context("compressing")?;
    let mut file = encrypted.finish().context("finishing encryption")?;
    file.flush()?;
    file.into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()
        .context("writing the backup to disk")?;
    std::fs::rename(&partial, out).with_context(|| format!("moving into {}", out.display()))?;
    Ok(manifest)
}

/// A backup decrypted, checked and written out as a database file.
pub struct Opened {
    pub manifest: Manifest,
    /// The database file, in `dir`.
    pub database: PathBuf,
    pub dir: tempfile::TempDir,
}

/// Decrypts `file`, checks the manifest, the checksum, SQLite's integrity
/// check and the row counts, leaving the database in a temporary directory.
///
/// # Errors
/// Wrong key, a damaged or tampered file, or a database that doesn't match
/// its manifest.
pub async fn open_backup(file: &Path, key: &Key) -> anyhow::Result<Opened> {
    let reader = std::io::BufReader::new(
        std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?,
    );
    let decryptor = age::Decryptor::new(reader).context("not an age-encrypted file")?;
    let identities: Vec<Box<dyn age::Identity>> = match key {
        Key::Passphrase(p) => vec![Box::new(age::scrypt::Identity::new(p.clone()))],
        Key::IdentityFile(path) => age::IdentityFile::from_file(path.display().to_string())
            .with_context(|| format!("reading identity file {}", path.display()))?
            .into_identities()
            .context("reading identities")?,
        Key::Recipients(_) => {
            bail!("recipients encrypt; decrypting needs --identity or a passphrase")
        }
    };
    let plaintext = decryptor
        .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .context("decrypting: wrong key, or not a backup for this key")?;
    let mut gz = flate2::read::GzDecoder::new(plaintext);
    let mut len = [0u8; 8];
    gz.read_exact(&mut len)
        .context("reading the manifest: the file is damaged or was tampered with")?;
    let len = u64::from_be_bytes(len);
    ensure!(
        len <= 1 << 20,
        "manifest length {len} is implausible: damaged file"
    );
    let mut manifest_json = vec![0u8; len as usize];
    gz.read_exact(&mut manifest_json)
        .context("reading the manifest: the file is damaged or was tampered with")?;
    let manifest: Manifest =
        serde_json::from_slice(&manifest_json).context("the manifest is not valid")?;
    ensure!(
        manifest.format == FORMAT,
        "unknown backup format {:?}",
        manifest.format
    );
    let mut bytes = Vec::with_capacity(manifest.database_bytes.min(1 << 30) as usize);
    gz.read_to_end(&mut bytes)
        .context("reading the database: the file is damaged or was tampered with")?;
    ensure!(
        bytes.len() as u64 == manifest.database_bytes,
        "database is {} bytes, the manifest says {}",
        bytes.len(),
        manifest.database_bytes
    );
    ensure!(
        hex::encode(Sha256::digest(&bytes)) == manifest.sha256,
        "database checksum doesn't match the manifest"
    );
    let dir = tempfile::tempdir().context("making a temporary directory")?;
    let database = dir.path().join("restored.db");
    std::fs::write(&database, &bytes).context("writing the database")?;
    {
        let mut conn = open(&database, false).await?;
        let (check,): (String,) = sqlx::query_as("PRAGMA integrity_check")
            .fetch_one(&mut conn)
            .await
            .context("running SQLite's integrity check")?;
        ensure!(check == "ok", "SQLite integrity check failed: {check}");
        conn.close().await.ok();
    }
    let recount = manifest_of(&database, &bytes).await?;
    ensure!(
        recount.row_counts == manifest.row_counts,
        "row counts differ from the manifest: {:?} vs {:?}",
        recount.row_counts,
        manifest.row_counts
    );
    Ok(Opened {
        manifest,
        database,
        dir,
    })
}

/// Restores `file` as the SQLite database `database` names. An existing
/// database is replaced only with `force` (its `-wal`/`-shm` files go too,
/// or SQLite would replay them onto the restored file).
///
/// # Errors
/// As [`open_backup`]; or the target exists without `force`.
pub async fn restore(
    file: &Path,
    database: &str,
    key: &Key,
    force: bool,
) -> anyhow::Result<Manifest> {
    let target = sqlite_path(database)?;
    ensure!(
        force || !target.exists(),
        "{} exists: restoring over a database (perhaps a live one) needs --force; stop the relay first",
        target.display()
    );
    let opened = open_backup(file, key).await?;
    let partial = target.with_extension("restoring");
    std::fs::copy(&opened.database, &partial)
        .with_context(|| format!("writing {}", partial.display()))?;
    release_leases(&partial).await?;
    std::fs::File::open(&partial)?.sync_all()?;
    for suffix in ["-wal", "-shm"] {
        let mut side = target.clone().into_os_string();
        side.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(side));
    }
    std::fs::rename(&partial, &target)
        .with_context(|| format!("moving into {}", target.display()))?;
    Ok(opened.manifest)
}

/// Deliveries that were in flight when the snapshot was taken belong to a
/// process that is gone: they are due again at once rather than when their
/// lease would have run out (at least once: they may go out twice).
async fn release_leases(path: &Path) -> anyhow::Result<()> {
    let mut conn = open(path, true).await?;
    let now = crate::store::now_ms();
    sqlx::query(
        "UPDATE recipients SET state = 'queued', next_attempt_at = $1, lease_token = NULL \
         WHERE state = 'inflight'",
    )
    .bind(now)
    .execute(&mut conn)
    .await
    .context("releasing in-flight deliveries")?;
    // Older backups may predate the outbox table.
    let _ = sqlx::query(
        "UPDATE webhook_deliveries SET next_attempt_at = $1, lease_token = NULL \
         WHERE state = 'pending' AND lease_token IS NOT NULL",
    )
    .bind(now)
    .execute(&mut conn)
    .await;
    conn.close().await.ok();
    Ok(())
}

/// A new age identity: (secret key line for the identity file, public
/// recipient).
pub fn keygen() -> (String, String) {
    use age::secrecy::ExposeSecret as _;
    let id = age::x25519::Identity::generate();
    (
        id.to_string().expose_secret().to_string(),
        id.to_public().to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sqlite_urls_name_a_file() {
        assert_eq!(
            sqlite_path("sqlite://var/m.db").unwrap(),
            PathBuf::from("var/m.db")
        );
        assert_eq!(
            sqlite_path("sqlite:///abs/m.db?mode=rwc").unwrap(),
            PathBuf::from("/abs/m.db")
        );
        assert!(sqlite_path("postgres://u@h/db").is_err());
    }
}
