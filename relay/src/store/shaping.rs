//! Shared traffic-shaping state: connection slots per provider and the
//! suspensions and throttles reply rules (or operators) set.

use super::{Backend, Result, Store, now_ms};
use crate::delivery::shaping::DestinationState;

/// Queued mail of one stream and recipient domain.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DomainQueue {
    pub stream: String,
    pub domain: String,
    pub queued: i64,
    pub inflight: i64,
}

/// Connection slots one node holds for a provider.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SlotsHeld {
    pub stream: String,
    pub provider: String,
    pub holder: String,
    pub slots: i64,
}

#[derive(sqlx::FromRow)]
struct StateRow {
    stream: String,
    provider: String,
    suspended_until: Option<i64>,
    throttle_rate: Option<f64>,
    throttled_until: Option<i64>,
    recover_every_ms: i64,
    reason: String,
    set_by: String,
    updated_at: i64,
}

impl Store {
    /// Makes sure slots `0..n` exist for a provider (more than `n` may exist
    /// from a larger limit earlier: acquiring ignores them).
    pub async fn ensure_slots(&self, stream: &str, provider: &str, n: u32) -> Result<()> {
        // Once per provider and process: a statement per slot is fine.
        let mut tx = self.bookkeeping.begin().await?;
        for slot in 0..i64::from(n) {
            sqlx::query(
                "INSERT INTO destination_slots (stream, provider, slot) VALUES ($1, $2, $3) \
                 ON CONFLICT (stream, provider, slot) DO NOTHING",
            )
            .bind(stream)
            .bind(provider)
            .bind(slot)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Takes a free slot below `max` for `node` until `lease_until`; None
    /// when all are held. On PostgreSQL the candidate row is locked `SKIP
    /// LOCKED`, so relays racing for the last slot never both get it.
    pub async fn acquire_slot(
        &self,
        stream: &str,
        provider: &str,
        max: u32,
        node: &str,
        lease_until: i64,
    ) -> Result<Option<i64>> {
        let lock = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "UPDATE destination_slots SET holder = $1, lease_until = $2 \
             WHERE (stream, provider, slot) IN (\
               SELECT stream, provider, slot FROM destination_slots \
               WHERE stream = $3 AND provider = $4 AND slot < $5 \
               AND (holder IS NULL OR lease_until < $6) ORDER BY slot LIMIT 1 {lock}) \
             RETURNING slot"
        );
        let row: Option<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(node)
            .bind(lease_until)
            .bind(stream)
            .bind(provider)
            .bind(i64::from(max))
            .bind(now_ms())
            .fetch_optional(&self.bookkeeping)
            .await?;
        Ok(row.map(|(s,)| s))
    }

    pub async fn release_slot(
        &self,
        stream: &str,
        provider: &str,
        slot: i64,
        node: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE destination_slots SET holder = NULL, lease_until = 0 \
             WHERE stream = $1 AND provider = $2 AND slot = $3 AND holder = $4",
        )
        .bind(stream)
        .bind(provider)
        .bind(slot)
        .bind(node)
        .execute(&self.bookkeeping)
        .await?;
        Ok(())
    }

    /// Extends every slot `node` holds (part of the heartbeat).
    pub async fn renew_slots(&self, node: &str, lease_until: i64) -> Result<u64> {
        Ok(
            sqlx::query("UPDATE destination_slots SET lease_until = $1 WHERE holder = $2")
                .bind(lease_until)
                .bind(node)
                .execute(&self.bookkeeping)
                .await?
                .rows_affected(),
        )
    }

    /// Frees every slot `node` holds: at start, the previous run's.
    pub async fn free_node_slots(&self, node: &str) -> Result<u64> {
        Ok(sqlx::query(
            "UPDATE destination_slots SET holder = NULL, lease_until = 0 WHERE holder = $1",
        )
        .bind(node)
        .execute(&self.bookkeeping)
        .await?
        .rows_affected())
    }

    /// Says that `node` found every slot of a provider taken and wants one
    /// until `until`.
    pub async fn want_slot(
        &self,
        stream: &str,
        provider: &str,
        node: &str,
        until: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO destination_demand (stream, provider, node, wanted_until) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (stream, provider, node) \
             DO UPDATE SET wanted_until = excluded.wanted_until",
        )
        .bind(stream)
        .bind(provider)
        .bind(node)
        .bind(until)
        .execute(&self.bookkeeping)
        .await?;
        Ok(())
    }

    /// The providers of `stream` some relay other than `node` is waiting
    /// for a slot of now.
    pub async fn wanted_elsewhere(&self, stream: &str, node: &str) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT provider FROM destination_demand \
             WHERE stream = $1 AND node <> $2 AND wanted_until >= $3",
        )
        .bind(stream)
        .bind(node)
        .bind(now_ms())
        .fetch_all(&self.bookkeeping)
        .await?;
        Ok(rows.into_iter().map(|(p,)| p).collect())
    }

    /// Live slots (lease not run out) per stream, provider and holder.
    pub async fn slots_held(&self) -> Result<Vec<SlotsHeld>> {
        Ok(sqlx::query_as(
            "SELECT stream, provider, holder, COUNT(*) AS slots FROM destination_slots \
             WHERE holder IS NOT NULL AND lease_until >= $1 GROUP BY stream, provider, holder \
             ORDER BY stream, provider, holder",
        )
        .bind(now_ms())
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every stored suspension or throttle: (stream, provider, state).
    pub async fn destination_states(&self) -> Result<Vec<(String, String, DestinationState)>> {
        let rows: Vec<StateRow> = sqlx::query_as(
            "SELECT stream, provider, suspended_until, throttle_rate, throttled_until, \
             recover_every_ms, reason, set_by, updated_at FROM destination_state \
             ORDER BY stream, provider",
        )
        .fetch_all(&self.bookkeeping)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                (
                    r.stream,
                    r.provider,
                    DestinationState {
                        suspended_until: r.suspended_until,
                        throttle_rate: r.throttle_rate,
                        throttled_until: r.throttled_until,
                        recover_every_ms: r.recover_every_ms,
                        reason: r.reason,
                        set_by: r.set_by,
                        updated_at: r.updated_at,
                    },
                )
            })
            .collect())
    }

    /// Sets (replaces) a provider's state on a stream.
    pub async fn set_destination_state(
        &self,
        stream: &str,
        provider: &str,
        s: &DestinationState,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO destination_state (stream, provider, suspended_until, throttle_rate, \
             throttled_until, recover_every_ms, reason, set_by, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (stream, provider) DO UPDATE SET \
             suspended_until = excluded.suspended_until, throttle_rate = excluded.throttle_rate, \
             throttled_until = excluded.throttled_until, recover_every_ms = excluded.recover_every_ms, \
             reason = excluded.reason, set_by = excluded.set_by, updated_at = excluded.updated_at",
        )
        .bind(stream)
        .bind(provider)
        .bind(s.suspended_until)
        .bind(s.throttle_rate)
        .bind(s.throttled_until)
        .bind(s.recover_every_ms)
        .bind(&s.reason)
        .bind(&s.set_by)
        .bind(s.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Lifts a provider's suspension or throttle; whether there was one.
    pub async fn clear_destination_state(&self, stream: &str, provider: &str) -> Result<bool> {
        Ok(
            sqlx::query("DELETE FROM destination_state WHERE stream = $1 AND provider = $2")
                .bind(stream)
                .bind(provider)
                .execute(&self.pool)
                .await?
                .rows_affected()
                > 0,
        )
    }

    /// Mail still to deliver, per stream and recipient domain.
    pub async fn queue_by_domain(&self) -> Result<Vec<DomainQueue>> {
        Ok(sqlx::query_as(
            "SELECT stream, domain, \
             SUM(CASE WHEN state = 'inflight' THEN 0 ELSE 1 END) AS queued, \
             SUM(CASE WHEN state = 'inflight' THEN 1 ELSE 0 END) AS inflight \
             FROM recipients WHERE state IN ('queued', 'deferred', 'inflight') \
             GROUP BY stream, domain ORDER BY stream, domain",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Makes the waiting recipients of `stream` whose last reply starts
    /// with `prefix` due at `due` (mail a suspension postponed, on resume).
    pub async fn make_due_by_reply_prefix(
        &self,
        stream: crate::domain::Stream,
        prefix: &str,
        due: i64,
    ) -> Result<u64> {
        Ok(sqlx::query(
            "UPDATE recipients SET next_attempt_at = $1, updated_at = $5 \
             WHERE stream = $2 AND state IN ('queued', 'deferred') AND next_attempt_at > $1 \
             AND substr(last_reply, 1, $3) = $4",
        )
        .bind(due)
        .bind(stream.as_str())
        .bind(prefix.len() as i64)
        .bind(prefix)
        .bind(now_ms())
        .execute(&self.bookkeeping)
        .await?
        .rows_affected())
    }
}
