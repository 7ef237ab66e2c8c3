//! The audit log of administrative actions.

use serde::Serialize;

use super::{Result, Store, now_ms};

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AuditRecord {
    pub id: String,
    pub at: i64,
    /// `cli:USER`, `api:KEYID`, `signal`.
    pub actor: String,
    /// `key.created`, `key.rotated`, `key.revoked`, `suppression.added`,
    /// `suppression.removed`, `config.reloaded`.
    pub action: String,
    pub target: String,
    pub detail: Option<String>,
}

impl Store {
    /// Records one action. Audit entries are best kept even when the
    /// caller can't wait for them, but never silently lost: errors return.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_log (id, at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(now_ms())
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(detail)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Entries at or after `since`, oldest first, optionally of one action
    /// (or action prefix such as `key.`).
    pub async fn audit_entries(
        &self,
        since: i64,
        action: Option<&str>,
    ) -> Result<Vec<AuditRecord>> {
        let pattern = action.map(|a| format!("{a}%"));
        Ok(sqlx::query_as(
            "SELECT id, at, actor, action, target, detail FROM audit_log \
             WHERE at >= $1 AND ($2 IS NULL OR action LIKE $2) ORDER BY at, id",
        )
        .bind(since)
        .bind(pattern)
        .fetch_all(&self.pool)
        .await?)
    }
}
