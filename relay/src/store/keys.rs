use super::{Result, Store, StoreError, now_ms};
use crate::domain::Stream;
use crate::keys::ApiScope;

/// What is stored of a new API key: never the secret itself.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: String,
    pub name: String,
    pub secret_hash: String,
    pub streams: Vec<Stream>,
    pub scopes: Vec<ApiScope>,
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct ApiKeyRecord {
    pub id: String,
    pub name: String,
    pub streams: Vec<Stream>,
    pub scopes: Vec<ApiScope>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: String,
    name: String,
    streams: String,
    scopes: String,
    created_at: i64,
    revoked_at: Option<i64>,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
}

impl TryFrom<KeyRow> for ApiKeyRecord {
    type Error = StoreError;

    fn try_from(r: KeyRow) -> Result<Self> {
        let streams = r
            .streams
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<Stream>()
                    .map_err(|e| StoreError::Corrupt(format!("api key {}: {e}", r.id)))
            })
            .collect::<Result<_>>()?;
        let scopes = r
            .scopes
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<ApiScope>()
                    .map_err(|e| StoreError::Corrupt(format!("api key {}: {e}", r.id)))
            })
            .collect::<Result<_>>()?;
        Ok(ApiKeyRecord {
            id: r.id,
            name: r.name,
            streams,
            scopes,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
            expires_at: r.expires_at,
            last_used_at: r.last_used_at,
        })
    }
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

impl Store {
    pub async fn insert_api_key(&self, key: &NewApiKey) -> Result<()> {
        sqlx::query("INSERT INTO api_keys (id, name, secret_hash, streams, scopes, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(&key.id)
            .bind(&key.name)
            .bind(&key.secret_hash)
            .bind(join(&key.streams))
            .bind(join(&key.scopes))
            .bind(now_ms())
            .bind(key.expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The live (not revoked, not expired) key whose secret hashes to
    /// `secret_hash`.
    pub async fn find_api_key(&self, secret_hash: &str) -> Result<Option<ApiKeyRecord>> {
        sqlx::query_as::<_, KeyRow>(
            "SELECT id, name, streams, scopes, created_at, revoked_at, expires_at, last_used_at \
             FROM api_keys WHERE secret_hash = $1 AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(secret_hash)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?
        .map(ApiKeyRecord::try_from)
        .transpose()
    }

    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        sqlx::query_as::<_, KeyRow>(
            "SELECT id, name, streams, scopes, created_at, revoked_at, expires_at, last_used_at \
             FROM api_keys ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(ApiKeyRecord::try_from)
        .collect()
    }

    /// Revokes a key by id; false when no live key has that id.
    pub async fn revoke_api_key(&self, id: &str) -> Result<bool> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now_ms())
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Notes that key `id` was used at `at`.
    pub async fn touch_api_key(&self, id: &str, at: i64) -> Result<()> {
        sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
            .bind(at)
            .bind(id)
            .execute(&self.bookkeeping)
            .await?;
        Ok(())
    }

    /// Ends a live key's life at `at` (the grace period of a rotation);
    /// false if no live key has that id.
    pub async fn expire_api_key(&self, id: &str, at: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_keys SET expires_at = $1 WHERE id = $2 AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $1)",
        )
        .bind(at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// One key by id, live or not.
    pub async fn get_api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        sqlx::query_as::<_, KeyRow>(
            "SELECT id, name, streams, scopes, created_at, revoked_at, expires_at, last_used_at \
             FROM api_keys WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .map(ApiKeyRecord::try_from)
        .transpose()
    }

    pub async fn count_api_keys(&self) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM api_keys")
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }
}
