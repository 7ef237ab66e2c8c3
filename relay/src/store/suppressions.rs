//! The suppression list: who must not be mailed, on which streams, why.

use list_hygiene::suppression::{Reason, Scope, Target, TargetKind};

use crate::domain::Stream;

use super::{Result, Store, now_ms};

/// One suppression entry as stored. Scope, kind and reason are parsed on
/// read: a row that no longer parses is an error, not a guess.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SuppressionRecord {
    pub scope: Scope,
    pub kind: TargetKind,
    /// Lower case: an address, or a domain.
    pub value: String,
    pub reason: Reason,
    pub source: Option<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

from_row!(SuppressionRecord {
    value, source, created_at, expires_at;
    parsed: scope, kind, reason
});

impl Store {
    /// Adds an entry, or refreshes reason, source and expiry of an existing
    /// one (a second unsubscribe is not an error).
    pub async fn upsert_suppression(&self, s: &SuppressionRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO suppressions (scope, kind, value, reason, source, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (scope, kind, value) DO UPDATE SET reason = excluded.reason, \
             source = excluded.source, expires_at = excluded.expires_at",
        )
        .bind(s.scope.as_str())
        .bind(s.kind.as_str())
        .bind(&s.value)
        .bind(s.reason.as_str())
        .bind(&s.source)
        .bind(s.created_at)
        .bind(s.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Adds many entries in one transaction (imports); existing entries
    /// are left as they are.
    pub async fn insert_suppressions(&self, rows: &[SuppressionRecord]) -> Result<()> {
        let mut tx = self.begin().await?;
        for chunk in rows.chunks(super::messages::ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO suppressions (scope, kind, value, reason, source, created_at, expires_at) \
                 VALUES {} ON CONFLICT (scope, kind, value) DO NOTHING",
                self.values_list(chunk.len(), 7, "", 0)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for s in chunk {
                q = q
                    .bind(s.scope.as_str())
                    .bind(s.kind.as_str())
                    .bind(&s.value)
                    .bind(s.reason.as_str())
                    .bind(&s.source)
                    .bind(s.created_at)
                    .bind(s.expires_at);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Removes one entry; false if there was none.
    pub async fn delete_suppression(&self, scope: Scope, target: &Target) -> Result<bool> {
        let r =
            sqlx::query("DELETE FROM suppressions WHERE scope = $1 AND kind = $2 AND value = $3")
                .bind(scope.as_str())
                .bind(target.kind().as_str())
                .bind(target.value())
                .execute(&self.pool)
                .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Removes one entry if it was made for `reason`; false otherwise.
    pub async fn delete_suppression_for(
        &self,
        scope: Scope,
        target: &Target,
        reason: Reason,
    ) -> Result<bool> {
        let r = sqlx::query(
            "DELETE FROM suppressions WHERE scope = $1 AND kind = $2 AND value = $3 AND reason = $4",
        )
        .bind(scope.as_str())
        .bind(target.kind().as_str())
        .bind(target.value())
        .bind(reason.as_str())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Entries, newest first, optionally of one scope or value.
    pub async fn list_suppressions(
        &self,
        scope: Option<Scope>,
        value: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<SuppressionRecord>> {
        Ok(sqlx::query_as::<_, SuppressionRecord>(
            "SELECT scope, kind, value, reason, source, created_at, expires_at FROM suppressions \
             WHERE ($1 IS NULL OR scope = $1) AND ($2 IS NULL OR value = $2) \
             ORDER BY created_at DESC, scope, kind, value LIMIT $3 OFFSET $4",
        )
        .bind(scope.map(Scope::as_str))
        .bind(value)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The unexpired entries that apply to a message on `stream` among the
    /// given values (addresses and domains).
    pub async fn matching_suppressions(
        &self,
        stream: Stream,
        values: &[String],
    ) -> Result<Vec<SuppressionRecord>> {
        if values.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (0..values.len()).map(|i| format!("${}", i + 3)).collect();
        let sql = format!(
            "SELECT scope, kind, value, reason, source, created_at, expires_at FROM suppressions \
             WHERE value IN ({}) AND scope IN ('global', $1) AND (expires_at IS NULL OR expires_at > $2)",
            placeholders.join(", ")
        );
        let mut q = sqlx::query_as::<_, SuppressionRecord>(sqlx::AssertSqlSafe(sql))
            .bind(stream.as_str())
            .bind(now_ms());
        for v in values {
            q = q.bind(v);
        }
        Ok(q.fetch_all(&self.pool).await?)
    }

    /// Values (addresses and domains) added at or after `since` (unix ms),
    /// with the newest creation time seen, for the in-memory filter.
    pub async fn suppression_values_since(&self, since: i64) -> Result<(Vec<String>, i64)> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT value, created_at FROM suppressions WHERE created_at >= $1")
                .bind(since)
                .fetch_all(&self.bookkeeping)
                .await?;
        let newest = rows.iter().map(|(_, t)| *t).max().unwrap_or(since);
        Ok((rows.into_iter().map(|(v, _)| v).collect(), newest))
    }
}
