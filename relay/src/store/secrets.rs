//! Shared secrets: made once, read by every relay process.

use super::{Result, Store, now_ms};

impl Store {
    /// The secret called `name`; `fresh` is stored first if there is none.
    /// Two processes racing both end up with the one that won the insert.
    pub async fn get_or_create_secret(&self, name: &str, fresh: &str) -> Result<String> {
        sqlx::query(
            "INSERT INTO secrets (name, value, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(fresh)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        let (value,): (String,) = sqlx::query_as("SELECT value FROM secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(value)
    }
}
