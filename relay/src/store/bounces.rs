//! Bounces received through the webhook.

use super::{Result, Store};

/// One failed recipient of one bounce.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BounceRecord {
    pub id: String,
    pub received_at: i64,
    pub address: String,
    pub class: String,
    pub action: String,
    pub status: Option<String>,
    pub diagnostic: Option<String>,
    pub original_message_id: Option<String>,
    pub relay_message_id: Option<String>,
}

impl Store {
    pub async fn insert_bounce(&self, b: &BounceRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO bounces (id, received_at, address, class, action, status, diagnostic, \
             original_message_id, relay_message_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&b.id)
        .bind(b.received_at)
        .bind(&b.address)
        .bind(&b.class)
        .bind(&b.action)
        .bind(&b.status)
        .bind(&b.diagnostic)
        .bind(&b.original_message_id)
        .bind(&b.relay_message_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Bounces of `class` for `address` received at or after `since`.
    pub async fn count_bounces(&self, address: &str, class: &str, since: i64) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM bounces WHERE address = $1 AND class = $2 AND received_at >= $3",
        )
        .bind(address)
        .bind(class)
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }
}
