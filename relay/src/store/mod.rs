//! All SQL lives here, one function per statement. The same statements run on
//! SQLite and PostgreSQL through sqlx's `Any` driver (runtime queries, `$n`
//! placeholders, which both backends accept); where the dialects differ the
//! function says so and branches on [`Backend`].

/// `FromRow` for a record some of whose text columns parse into domain
/// types. sqlx's derive (`try_from`) drops the parse error's message, and
/// a row that no longer parses must say which column holds what.
macro_rules! from_row {
    ($t:ident { $($field:ident),* ; parsed: $($p:ident),* }) => {
        impl<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> for $t {
            fn from_row(row: &'r sqlx::any::AnyRow) -> sqlx::Result<Self> {
                use sqlx::Row as _;
                Ok($t {
                    $($field: row.try_get(stringify!($field))?,)*
                    $($p: super::parsed(row, stringify!($p))?,)*
                })
            }
        }
    };
}

mod audit;
mod bounces;
mod keys;
mod lists;
mod messages;
mod nodes;
mod queue;
mod report;
mod secrets;
mod shaping;
mod suppressions;
#[cfg(test)]
mod tests;
mod webhooks;

use std::str::FromStr as _;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor as _};

pub use audit::AuditRecord;
pub use bounces::{Attribution, BounceCount, BounceRecord};
pub use keys::{ApiKeyRecord, NewApiKey};
pub use lists::{ConsentEvent, ListRecord, SubscriberRecord};
pub use messages::{
    AttemptRecord, EnqueueOutcome, IdempotencyClaim, MessageRecord, PreparedMessage,
    PreparedRecipient, RecipientRecord, SentBy, SentRecipient,
};
pub use nodes::{NodeLock, NodeRecord};
pub use queue::{Claimed, Payload, QueueDepth};
pub use shaping::{DomainQueue, SlotsHeld};
pub use suppressions::SuppressionRecord;
pub use webhooks::{DeliveryRecord, DeliveryState, EndpointRecord};

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("unsupported database URL {0:?}: expected sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error("database error")]
    Sqlx(#[from] sqlx::Error),
    #[error("migrating the database")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored row no longer parses: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The relay's durable store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    /// Accepting mail: every commit durable before it returns.
    pool: AnyPool,
    /// Queue bookkeeping (claims, outcomes, releases). On SQLite these
    /// commits skip the fsync (`synchronous = NORMAL`, still crash-safe in
    /// WAL mode): losing the last of them to a power cut only means a lease
    /// that expires or an attempt made again — at-least-once holds — while
    /// an fsync per claim would cap delivery at the disk's sync rate.
    bookkeeping: AnyPool,
    backend: Backend,
}

/// A text column parsed into a domain type; a value that no longer parses
/// is a decode error naming the column and the value.
fn parsed<T>(row: &sqlx::any::AnyRow, column: &str) -> sqlx::Result<T>
where
    T: TryFrom<String>,
    T::Error: std::fmt::Display,
{
    use sqlx::Row as _;
    let raw: String = row.try_get(column)?;
    T::try_from(raw).map_err(|e| sqlx::Error::ColumnDecode {
        index: column.to_string(),
        source: e.to_string().into(),
    })
}

/// Milliseconds since the Unix epoch: the store's unit of time.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// An RFC 3339 time (whole seconds, UTC) for the store's milliseconds.
pub fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_seconds(
        UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64),
    )
    .to_string()
}

impl Store {
    /// Opens (creating a SQLite file if needed) and migrates the database.
    ///
    /// # Errors
    /// The URL is neither SQLite nor PostgreSQL, the database can't be
    /// reached, or a migration fails.
    pub async fn connect(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if let Some(rest) = url.strip_prefix("sqlite:") {
            // Create the file on first start: the README's first command must just work.
            let mut url = format!("sqlite:{rest}");
            if !rest.contains("mode=") {
                url.push(if rest.contains('?') { '&' } else { '?' });
                url.push_str("mode=rwc");
            }
            (Backend::Sqlite, url)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned())
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let (pool, bookkeeping) = match backend {
            Backend::Sqlite => (
                sqlite_pool(options.clone(), 8, "FULL").await?,
                sqlite_pool(options, 4, "NORMAL").await?,
            ),
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .connect_with(options)
                    .await?;
                (pool.clone(), pool)
            }
        };
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATOR,
            Backend::Postgres => &POSTGRES_MIGRATOR,
        };
        migrator.run(&pool).await?;
        Ok(Store {
            pool,
            bookkeeping,
            backend,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether every migration this binary knows has been applied (and the
    /// store answers at all).
    pub async fn migrations_current(&self) -> Result<bool> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATOR,
            Backend::Postgres => &POSTGRES_MIGRATOR,
        };
        let latest = migrator.iter().map(|m| m.version).max().unwrap_or(0);
        let (applied,): (Option<i64>,) =
            sqlx::query_as("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await?;
        Ok(applied.unwrap_or(0) >= latest)
    }

    /// Cheap round trip, for readiness checks.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Begins a transaction that will write.
    ///
    /// On SQLite, a transaction that will write takes the write lock when it
    /// begins (`BEGIN IMMEDIATE`), waiting out the busy timeout for it. A
    /// deferred one that reads first and writes later fails at the write with
    /// SQLITE_BUSY, without waiting, whenever another connection committed in
    /// between: its snapshot is stale. That lost the hourly expiry of pending
    /// sign-ups whenever the dispatcher or a worker wrote during it.
    ///
    /// The group commit and the queue bookkeeping (`enqueue_batch`,
    /// `finish_batch`, `release`) begin deferred instead: their first statement
    /// writes, which takes the lock from a fresh snapshot (waiting out the busy
    /// timeout), and the lock is then held one round trip less — worth 5 % of
    /// the drain rate (docs/performance.md). Keep their first statement a write.
    pub(crate) async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.bookkeeping.close().await;
    }
}

/// A SQLite pool: WAL lets readers run beside the one writer, `synchronous`
/// as given (FULL: a commit is on disk before it returns), and a busy
/// timeout so writers queue instead of failing.
async fn sqlite_pool(
    options: AnyConnectOptions,
    size: u32,
    synchronous: &'static str,
) -> Result<AnyPool> {
    Ok(AnyPoolOptions::new()
        .max_connections(size)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                let pragmas = format!(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; \
                     PRAGMA busy_timeout = 30000; PRAGMA foreign_keys = ON;"
                );
                conn.execute(sqlx::AssertSqlSafe(pragmas)).await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await?)
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A fresh store for one test: a SQLite file in a temp dir, or, when
    /// `MAILROOM_TEST_DATABASE_URL` is set, a fresh PostgreSQL schema.
    pub struct TestStore {
        pub store: Store,
        _dir: Option<tempfile::TempDir>,
    }

    pub async fn sqlite() -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        TestStore {
            store: Store::connect(&url).await.unwrap(),
            _dir: Some(dir),
        }
    }

    /// A store on a schema of its own in the test PostgreSQL, or None (and a
    /// line saying the test skipped) when no URL is set.
    pub async fn postgres() -> Option<TestStore> {
        let Ok(base) = std::env::var("MAILROOM_TEST_DATABASE_URL") else {
            eprintln!(
                "skipped: MAILROOM_TEST_DATABASE_URL not set, PostgreSQL half of this test not run"
            );
            return None;
        };
        let url = fresh_postgres_schema(&base).await;
        Some(TestStore {
            store: Store::connect(&url).await.unwrap(),
            _dir: None,
        })
    }

    /// Creates a new schema and returns a URL whose connections use it.
    pub async fn fresh_postgres_schema(base: &str) -> String {
        sqlx::any::install_default_drivers();
        let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .connect(base)
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}options=-csearch_path%3D{schema}")
    }

    /// Both backends that are available here.
    pub async fn all() -> Vec<TestStore> {
        let mut v = vec![sqlite().await];
        v.extend(postgres().await);
        v
    }
}
