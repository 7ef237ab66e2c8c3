//! The queries behind `mailroom report` and the rate alerts: counts over a
//! time window, grouped, never per message.

use super::{Result, Store, now_ms};

/// (stream, sender address, key, count) rows.
pub type Grouped = Vec<(String, Option<String>, String, i64)>;

impl Store {
    pub async fn insert_complaint(
        &self,
        address: &str,
        feedback_type: &str,
        traced: Option<&super::SentRecipient>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO complaints (id, received_at, address, feedback_type, relay_message_id, \
             recipient_idx, stream) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(now_ms())
        .bind(address)
        .bind(feedback_type)
        .bind(traced.map(|t| t.message_id.to_string()))
        .bind(traced.map(|t| t.idx))
        .bind(traced.map(|t| t.stream.as_str()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether a complaint about recipient `idx` of message `id` was
    /// already recorded: a second one is a replay.
    pub async fn complaint_recorded(&self, id: &str, idx: i64) -> Result<bool> {
        let found: Option<(i64,)> = sqlx::query_as(
            "SELECT 1 FROM complaints WHERE relay_message_id = $1 AND recipient_idx = $2 LIMIT 1",
        )
        .bind(id)
        .bind(idx)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    /// Recipients accepted since `since` by stream, sender and state.
    pub async fn report_volumes(&self, since: i64) -> Result<Grouped> {
        Ok(sqlx::query_as(
            "SELECT m.stream, m.sender, r.state, COUNT(*) FROM recipients r \
             JOIN messages m ON m.id = r.message_id WHERE r.created_at >= $1 \
             GROUP BY m.stream, m.sender, r.state",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Bounces traced to our mail since `since` by stream, sender and
    /// class (unattributed ones are nobody's rate).
    pub async fn report_bounces(&self, since: i64) -> Result<Grouped> {
        Ok(sqlx::query_as(
            "SELECT COALESCE(b.stream, m.stream, 'unknown'), m.sender, b.class, COUNT(*) FROM bounces b \
             LEFT JOIN messages m ON m.id = b.relay_message_id WHERE b.received_at >= $1 \
             AND (b.attribution IS NULL OR b.attribution <> 'unattributed') \
             GROUP BY COALESCE(b.stream, m.stream, 'unknown'), m.sender, b.class",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Complaints since `since` by stream, sender (when traced) and type.
    pub async fn report_complaints(&self, since: i64) -> Result<Grouped> {
        Ok(sqlx::query_as(
            "SELECT COALESCE(c.stream, m.stream, 'unknown'), m.sender, c.feedback_type, COUNT(*) \
             FROM complaints c LEFT JOIN messages m ON m.id = c.relay_message_id \
             WHERE c.received_at >= $1 \
             GROUP BY COALESCE(c.stream, m.stream, 'unknown'), m.sender, c.feedback_type",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Attempts since `since` by stream and destination domain: (stream,
    /// domain, deferred, all), most deferrals first.
    pub async fn report_deferrals(&self, since: i64) -> Result<Vec<(String, String, i64, i64)>> {
        Ok(sqlx::query_as(
            "SELECT r.stream, r.domain, \
             SUM(CASE WHEN a.outcome = 'deferred' THEN 1 ELSE 0 END), COUNT(*) \
             FROM attempts a JOIN recipients r ON r.message_id = a.message_id AND r.idx = a.idx \
             WHERE a.finished_at >= $1 GROUP BY r.stream, r.domain \
             ORDER BY 3 DESC, 4 DESC LIMIT 20",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The commonest bounce reasons: (class, status, an example
    /// diagnostic, count).
    pub async fn report_bounce_reasons(
        &self,
        since: i64,
    ) -> Result<Vec<(String, Option<String>, Option<String>, i64)>> {
        Ok(sqlx::query_as(
            "SELECT class, status, MIN(diagnostic), COUNT(*) FROM bounces WHERE received_at >= $1 \
             AND (attribution IS NULL OR attribution <> 'unattributed') GROUP BY class, status ORDER BY 4 DESC LIMIT 10",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Suppressions added since `since`: (scope, reason, count).
    pub async fn report_suppressions(&self, since: i64) -> Result<Vec<(String, String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT scope, reason, COUNT(*) FROM suppressions WHERE created_at >= $1 \
             GROUP BY scope, reason ORDER BY 3 DESC",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?)
    }
}
