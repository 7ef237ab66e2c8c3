use super::messages::ROWS_PER_STATEMENT;
use super::{Backend, Result, Store};
use crate::domain::{Outcome, Stream};

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

/// What a delivery sends: the envelope sender and the final bytes.
#[derive(Debug)]
pub struct Payload {
    pub sender: String,
    pub raw: Vec<u8>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Due now or waiting for a retry.
    pub queued: i64,
    pub deferred: i64,
    pub inflight: i64,
}

impl Store {
    /// Leases up to `limit` due recipients of `stream` to node `node_id`
    /// until `lease_until`. A row's due time becomes its lease expiry, so
    /// rows held by a process that died fall due again by themselves; the
    /// node's heartbeat extends them while it lives, and the node takes
    /// them back at once when it restarts (`reclaim_node_leases`).
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
        node_id: &str,
    ) -> Result<Vec<Claimed>> {
        let lock = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "UPDATE recipients SET state = 'inflight', attempts = attempts + 1, lease_token = $1, \
             leased_by = $6, next_attempt_at = $2, updated_at = $3 \
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
            .bind(node_id)
            .fetch_all(&self.bookkeeping)
            .await?;
        for r in &mut rows {
            r.lease_token = lease_token.to_owned();
        }
        Ok(rows)
    }

    /// Records the outcome of attempts in one transaction. An outcome whose
    /// lease was lost (expired and re-claimed elsewhere) is not recorded:
    /// the other holder's attempt counts. Returns, per item, whether it was.
    /// Two statements per batch, not per item (see `enqueue_batch`).
    pub async fn finish_batch(&self, items: &[(Claimed, i64, Outcome)]) -> Result<Vec<bool>> {
        // Deferred: the first statement writes (see `Store::begin`).
        let mut tx = self.bookkeeping.begin().await?;
        let now = super::now_ms();
        let mut recorded = vec![false; items.len()];
        for (offset, chunk) in items
            .chunks(ROWS_PER_STATEMENT)
            .enumerate()
            .map(|(i, c)| (i * ROWS_PER_STATEMENT, c))
        {
            // UPDATE ... FROM a VALUES list: fenced by each row's lease token.
            let sql = format!(
                "WITH v (message_id, idx, lease_token, state, next_attempt_at, last_reply) AS (VALUES {}) \
                 UPDATE recipients SET state = v.state, next_attempt_at = v.next_attempt_at, lease_token = NULL, leased_by = NULL, \
                 last_reply = v.last_reply, updated_at = {} FROM v \
                 WHERE recipients.message_id = v.message_id AND recipients.idx = v.idx \
                 AND recipients.lease_token = v.lease_token RETURNING recipients.message_id, recipients.idx",
                self.values_list(chunk.len(), 6, "", 0),
                self.placeholder(chunk.len() * 6 + 1)
            );
            let mut q = sqlx::query_as::<_, (String, i64)>(sqlx::AssertSqlSafe(sql));
            for (c, _, finish) in chunk {
                let next = match finish {
                    Outcome::Deferred { retry_at, .. } => Some(*retry_at),
                    _ => None,
                };
                q = q
                    .bind(&c.message_id)
                    .bind(c.idx)
                    .bind(&c.lease_token)
                    .bind(finish.state().as_str())
                    .bind(next)
                    .bind(finish.text());
            }
            let updated: std::collections::HashSet<(String, i64)> =
                q.bind(now).fetch_all(&mut *tx).await?.into_iter().collect();
            let done: Vec<usize> = chunk
                .iter()
                .enumerate()
                .filter(|(_, (c, _, _))| updated.contains(&(c.message_id.clone(), c.idx)))
                .map(|(i, _)| i)
                .collect();
            if done.is_empty() {
                continue;
            }
            let sql = format!(
                "INSERT INTO attempts (message_id, idx, attempt, started_at, finished_at, outcome, smtp_code, \
                 reply, host) VALUES {}",
                self.values_list(done.len(), 9, "", 0)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for &i in &done {
                let (c, started_at, finish) = &chunk[i];
                let reply = finish.reply();
                q = q
                    .bind(&c.message_id)
                    .bind(c.idx)
                    .bind(c.attempts)
                    .bind(*started_at)
                    .bind(now)
                    .bind(finish.state().as_str())
                    .bind(reply.and_then(|r| r.code).map(i64::from))
                    .bind(finish.text())
                    .bind(reply.and_then(|r| r.host.as_deref()));
                recorded[offset + i] = true;
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(recorded)
    }

    /// Gives leased recipients back untried (graceful shutdown): due at once,
    /// and the claim's attempt not counted.
    pub async fn release(&self, claimed: &[Claimed]) -> Result<()> {
        let now = super::now_ms();
        self.give_back(claimed.iter().map(|c| (c, now, None))).await
    }

    /// Gives leased recipients back untried because shaping held them back:
    /// due at each one's time, the claim's attempt not counted, the reason
    /// kept as the last reply (what `GET /v1/messages/{id}` shows).
    pub async fn postpone(&self, items: &[(Claimed, i64, String)]) -> Result<()> {
        self.give_back(
            items
                .iter()
                .map(|(c, until, why)| (c, *until, Some(why.as_str()))),
        )
        .await
    }

    /// Untried leases back to the queue, due at the time given, with a new
    /// last reply if one is given; fenced by each lease's token.
    async fn give_back<'a>(
        &self,
        items: impl Iterator<Item = (&'a Claimed, i64, Option<&'a str>)>,
    ) -> Result<()> {
        // Deferred: the first statement writes (see `Store::begin`).
        let mut tx = self.bookkeeping.begin().await?;
        let now = super::now_ms();
        for (c, due, why) in items {
            sqlx::query(
                "UPDATE recipients SET state = CASE WHEN attempts > 1 THEN 'deferred' ELSE 'queued' END, \
                 attempts = attempts - 1, lease_token = NULL, leased_by = NULL, next_attempt_at = $1, \
                 last_reply = COALESCE($2, last_reply), updated_at = $3 \
                 WHERE message_id = $4 AND idx = $5 AND lease_token = $6",
            )
            .bind(due)
            .bind(why)
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

    /// The envelope sender and final bytes of each message, for delivery: one
    /// query for a whole claim.
    pub async fn delivery_payloads(
        &self,
        message_ids: &[&str],
    ) -> Result<std::collections::HashMap<String, std::sync::Arc<Payload>>> {
        let mut out = std::collections::HashMap::with_capacity(message_ids.len());
        for chunk in message_ids.chunks(ROWS_PER_STATEMENT) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT id, sender, raw FROM messages WHERE id IN ({})",
                placeholders.join(", ")
            );
            let mut q = sqlx::query_as::<_, (String, String, Vec<u8>)>(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(*id);
            }
            for (id, sender, raw) in q.fetch_all(&self.bookkeeping).await? {
                out.insert(id, std::sync::Arc::new(Payload { sender, raw }));
            }
        }
        Ok(out)
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

    /// Acceptance time of the oldest recipient of `stream` still waiting
    /// for delivery, if any.
    pub async fn oldest_queued(&self, stream: Stream) -> Result<Option<i64>> {
        let (t,): (Option<i64>,) = sqlx::query_as(
            "SELECT MIN(created_at) FROM recipients \
             WHERE stream = $1 AND state IN ('queued', 'deferred', 'inflight')",
        )
        .bind(stream.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(t)
    }

    /// When the earliest recipient of `stream` falls due, if any.
    pub async fn next_due(&self, stream: Stream) -> Result<Option<i64>> {
        let (t,): (Option<i64>,) = sqlx::query_as(
            "SELECT MIN(next_attempt_at) FROM recipients \
             WHERE stream = $1 AND state IN ('queued', 'deferred', 'inflight')",
        )
        .bind(stream.as_str())
        .fetch_one(&self.bookkeeping)
        .await?;
        Ok(t)
    }
}
