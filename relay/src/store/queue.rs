use super::{Backend, Result, Store};
use crate::domain::Stream;

/// A recipient leased to this process for one delivery attempt.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub message_id: String,
    pub idx: i64,
    pub address: String,
    pub domain: String,
    /// Attempts including this one.
    pub attempts: i64,
    pub created_at: i64,
    #[sqlx(skip)]
    pub lease_token: String,
}

/// How an attempt ended, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    Delivered {
        code: Option<u16>,
        reply: String,
        host: Option<String>,
    },
    Deferred {
        code: Option<u16>,
        reply: String,
        host: Option<String>,
        retry_at: i64,
    },
    Bounced {
        code: Option<u16>,
        reply: String,
        host: Option<String>,
    },
    Expired {
        reply: String,
    },
}

impl Finish {
    fn state(&self) -> &'static str {
        match self {
            Finish::Delivered { .. } => "delivered",
            Finish::Deferred { .. } => "deferred",
            Finish::Bounced { .. } => "bounced",
            Finish::Expired { .. } => "expired",
        }
    }

    fn parts(&self) -> (Option<u16>, &str, Option<&str>) {
        match self {
            Finish::Delivered { code, reply, host }
            | Finish::Deferred {
                code, reply, host, ..
            }
            | Finish::Bounced { code, reply, host } => (*code, reply, host.as_deref()),
            Finish::Expired { reply } => (None, reply, None),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Due now or waiting for a retry.
    pub queued: i64,
    pub deferred: i64,
    pub inflight: i64,
}

impl Store {
    /// Leases up to `limit` due recipients of `stream` to the caller until
    /// `lease_until`. A row's due time becomes its lease expiry, so rows held
    /// by a process that died fall due again by themselves.
    ///
    /// On PostgreSQL the candidate rows are locked `FOR UPDATE SKIP LOCKED`:
    /// several relay processes claim side by side without waiting on or
    /// double-claiming each other's rows. SQLite has one writer at a time, so
    /// the statement is atomic there as it stands.
    pub async fn claim(
        &self,
        stream: Stream,
        now: i64,
        lease_until: i64,
        limit: usize,
        lease_token: &str,
    ) -> Result<Vec<Claimed>> {
        let lock = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "UPDATE recipients SET state = 'inflight', attempts = attempts + 1, lease_token = $1, \
             next_attempt_at = $2, updated_at = $3 \
             WHERE (message_id, idx) IN (\
               SELECT message_id, idx FROM recipients \
               WHERE stream = $4 AND state IN ('queued', 'deferred', 'inflight') AND next_attempt_at <= $3 \
               ORDER BY next_attempt_at LIMIT $5 {lock}) \
             RETURNING message_id, idx, address, domain, attempts, created_at"
        );
        let mut rows: Vec<Claimed> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(lease_token)
            .bind(lease_until)
            .bind(now)
            .bind(stream.as_str())
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?;
        for r in &mut rows {
            r.lease_token = lease_token.to_owned();
        }
        Ok(rows)
    }

    /// Records the outcome of attempts in one transaction. An outcome whose
    /// lease was lost (expired and re-claimed elsewhere) is not recorded:
    /// the other holder's attempt counts. Returns, per item, whether it was.
    pub async fn finish_batch(&self, items: &[(Claimed, i64, Finish)]) -> Result<Vec<bool>> {
        let mut tx = self.pool.begin().await?;
        let mut recorded = Vec::with_capacity(items.len());
        let now = super::now_ms();
        for (c, started_at, finish) in items {
            let (code, reply, host) = finish.parts();
            let next = match finish {
                Finish::Deferred { retry_at, .. } => Some(*retry_at),
                _ => None,
            };
            let done = sqlx::query(
                "UPDATE recipients SET state = $1, next_attempt_at = $2, lease_token = NULL, last_reply = $3, \
                 updated_at = $4 WHERE message_id = $5 AND idx = $6 AND lease_token = $7",
            )
            .bind(finish.state())
            .bind(next)
            .bind(reply)
            .bind(now)
            .bind(&c.message_id)
            .bind(c.idx)
            .bind(&c.lease_token)
            .execute(&mut *tx)
            .await?;
            let ok = done.rows_affected() == 1;
            if ok {
                sqlx::query(
                    "INSERT INTO attempts (message_id, idx, attempt, started_at, finished_at, outcome, smtp_code, \
                     reply, host) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&c.message_id)
                .bind(c.idx)
                .bind(c.attempts)
                .bind(started_at)
                .bind(now)
                .bind(finish.state())
                .bind(code.map(i64::from))
                .bind(reply)
                .bind(host)
                .execute(&mut *tx)
                .await?;
            }
            recorded.push(ok);
        }
        tx.commit().await?;
        Ok(recorded)
    }

    /// Gives leased recipients back untried (graceful shutdown): due at once,
    /// and the claim's attempt not counted.
    pub async fn release(&self, claimed: &[Claimed]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let now = super::now_ms();
        for c in claimed {
            sqlx::query(
                "UPDATE recipients SET state = CASE WHEN attempts > 1 THEN 'deferred' ELSE 'queued' END, \
                 attempts = attempts - 1, lease_token = NULL, next_attempt_at = $1, updated_at = $1 \
                 WHERE message_id = $2 AND idx = $3 AND lease_token = $4",
            )
            .bind(now)
            .bind(&c.message_id)
            .bind(c.idx)
            .bind(&c.lease_token)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The envelope sender and final bytes of a message, for delivery.
    pub async fn delivery_payload(&self, message_id: &str) -> Result<Option<(String, Vec<u8>)>> {
        Ok(
            sqlx::query_as("SELECT sender, raw FROM messages WHERE id = $1")
                .bind(message_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn queue_depth(&self, stream: Stream) -> Result<QueueDepth> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT state, COUNT(*) FROM recipients \
             WHERE stream = $1 AND state IN ('queued', 'deferred', 'inflight') GROUP BY state",
        )
        .bind(stream.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut d = QueueDepth::default();
        for (state, n) in rows {
            match state.as_str() {
                "queued" => d.queued = n,
                "deferred" => d.deferred = n,
                _ => d.inflight = n,
            }
        }
        Ok(d)
    }

    /// When the earliest recipient of `stream` falls due, if any.
    pub async fn next_due(&self, stream: Stream) -> Result<Option<i64>> {
        let (t,): (Option<i64>,) = sqlx::query_as(
            "SELECT MIN(next_attempt_at) FROM recipients \
             WHERE stream = $1 AND state IN ('queued', 'deferred', 'inflight')",
        )
        .bind(stream.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(t)
    }
}
