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
    /// `webhook` (an asynchronous bounce) or `relay` (its own 5xx reply).
    pub source: String,
    pub stream: Option<String>,
    /// The recipient's domain, for counts per destination.
    pub domain: Option<String>,
}

/// Bounces of one class on one stream to one destination domain.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct BounceCount {
    pub stream: Option<String>,
    pub domain: Option<String>,
    pub class: String,
    pub count: i64,
}

impl Store {
    pub async fn insert_bounce(&self, b: &BounceRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO bounces (id, received_at, address, class, action, status, diagnostic, \
             original_message_id, relay_message_id, source, stream, domain) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
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
        .bind(&b.source)
        .bind(&b.stream)
        .bind(&b.domain)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A delivery to each of `addresses` means their earlier soft bounces
    /// no longer count towards suppression.
    pub async fn reset_soft_bounces(&self, addresses: &[String], at: i64) -> Result<()> {
        for chunk in addresses.chunks(super::messages::ROWS_PER_STATEMENT) {
            let params: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "UPDATE bounces SET reset_at = $1 WHERE class = 'soft' AND reset_at IS NULL \
                 AND address IN ({})",
                params.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(at);
            for a in chunk {
                q = q.bind(a);
            }
            q.execute(&self.pool).await?;
        }
        Ok(())
    }

    /// Bounces received at or after `since`, counted by stream,
    /// destination domain and class, largest first.
    pub async fn bounce_counts(&self, since: i64, limit: i64) -> Result<Vec<BounceCount>> {
        Ok(sqlx::query_as(
            "SELECT stream, domain, class, COUNT(*) AS count FROM bounces WHERE received_at >= $1 \
             GROUP BY stream, domain, class ORDER BY count DESC, stream, domain, class LIMIT $2",
        )
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Bounces of `class` for `address` received at or after `since`, not
    /// reset by a later delivery.
    pub async fn count_bounces(&self, address: &str, class: &str, since: i64) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM bounces WHERE address = $1 AND class = $2 AND received_at >= $3 \
             AND reset_at IS NULL",
        )
        .bind(address)
        .bind(class)
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }
}
