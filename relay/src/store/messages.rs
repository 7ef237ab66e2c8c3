use super::{Backend, Result, Store};
use crate::domain::{MessageId, RecipientKind, RecipientState, Stream};

/// A message rendered, signed and ready to be committed with its recipients.
#[derive(Debug, Clone)]
pub struct PreparedMessage {
    pub id: MessageId,
    pub stream: Stream,
    pub api_key_id: String,
    pub sender: String,
    pub subject: String,
    pub message_id_header: String,
    /// `domain/selector` of the DKIM signature, if signed.
    pub dkim: Option<String>,
    /// JSON array.
    pub tags: String,
    /// JSON object.
    pub metadata: String,
    /// The final signed bytes.
    pub raw: Vec<u8>,
    pub recipients: Vec<PreparedRecipient>,
    /// The 202 body, saved with an idempotency key so retries get it back.
    pub response: String,
    pub idempotency: Option<IdempotencyClaim>,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct PreparedRecipient {
    pub kind: RecipientKind,
    pub address: String,
    pub domain: String,
    /// Why the recipient is on the suppression list: stored as the terminal
    /// state `suppressed` and never delivered.
    pub suppressed: Option<String>,
}

#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    pub key: String,
    /// SHA-256 of the request body: the same key with another body is refused.
    pub request_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnqueueOutcome {
    /// Committed; the caller's prepared response stands.
    Accepted,
    /// The idempotency key was seen before with the same body: its first answer.
    Replayed(String),
    /// The idempotency key was seen before with another body.
    KeyReused,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MessageRecord {
    pub id: String,
    pub stream: String,
    pub api_key_id: String,
    pub sender: String,
    pub subject: String,
    pub message_id_header: String,
    pub dkim: Option<String>,
    pub tags: String,
    pub metadata: String,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct RecipientRecord {
    pub idx: i64,
    pub kind: String,
    pub address: String,
    pub state: RecipientState,
    pub attempts: i64,
    pub next_attempt_at: Option<i64>,
    pub last_reply: Option<String>,
    pub updated_at: i64,
}

from_row!(RecipientRecord {
    idx, kind, address, attempts, next_attempt_at, last_reply, updated_at;
    parsed: state
});

/// One recipient of a message the relay accepted: what a bounce or a
/// complaint is traced to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentRecipient {
    pub message_id: MessageId,
    pub idx: i64,
    pub address: String,
    pub stream: Stream,
}

/// (message id, recipient index, address, stream) as selected.
type SentRow = (String, i64, String, String);

fn sent_recipient((id, idx, address, stream): SentRow) -> Result<SentRecipient> {
    Ok(SentRecipient {
        message_id: MessageId::parse(&id)
            .ok_or_else(|| super::StoreError::Corrupt(format!("messages.id {id:?}")))?,
        idx,
        address,
        stream: stream
            .parse()
            .map_err(|e: crate::domain::stream::UnknownStream| {
                super::StoreError::Corrupt(format!("messages.stream: {e}"))
            })?,
    })
}

/// Which message a returned message claims to be.
#[derive(Debug, Clone, Copy)]
pub enum SentBy<'a> {
    /// The relay's own message id (an untagged VERP path).
    Id(&'a MessageId),
    /// The Message-ID header field, angle brackets included.
    MessageIdHeader(&'a str),
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttemptRecord {
    pub idx: i64,
    pub attempt: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub outcome: String,
    pub smtp_code: Option<i64>,
    pub reply: String,
    pub host: Option<String>,
}

impl Store {
    /// Commits a batch of messages and their recipients in one transaction
    /// (group commit: one fsync for many API calls). Each idempotency key is
    /// inserted first; a key seen before replays its saved answer instead.
    /// Messages and recipients go in as multi-row INSERTs: SQLite runs each
    /// statement on its connection's thread, so fewer statements means fewer
    /// thread hand-offs per message.
    ///
    /// # Errors
    /// Any database error; then nothing of the batch is stored.
    pub async fn enqueue_batch(&self, batch: &[PreparedMessage]) -> Result<Vec<EnqueueOutcome>> {
        // Deferred: the first statement writes (see `Store::begin`).
        let mut tx = self.pool.begin().await?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for m in batch {
            outcomes.push(match &m.idempotency {
                None => EnqueueOutcome::Accepted,
                Some(claim) => claim_idempotency_key(&mut tx, m, claim).await?,
            });
        }
        let accepted: Vec<&PreparedMessage> = batch
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| **o == EnqueueOutcome::Accepted)
            .map(|(m, _)| m)
            .collect();

        for chunk in accepted.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO messages (id, stream, api_key_id, sender, subject, message_id_header, dkim, \
                 tags, metadata, raw, created_at) VALUES {}",
                self.values_list(chunk.len(), 11, "", 0)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for m in chunk {
                q = q
                    .bind(m.id.to_string())
                    .bind(m.stream.as_str())
                    .bind(&m.api_key_id)
                    .bind(&m.sender)
                    .bind(&m.subject)
                    .bind(&m.message_id_header)
                    .bind(&m.dkim)
                    .bind(&m.tags)
                    .bind(&m.metadata)
                    .bind(&m.raw)
                    .bind(m.created_at);
            }
            q.execute(&mut *tx).await?;
        }

        let recipients: Vec<(&PreparedMessage, usize, &PreparedRecipient)> = accepted
            .iter()
            .flat_map(|m| {
                m.recipients
                    .iter()
                    .enumerate()
                    .map(move |(i, r)| (*m, i, r))
            })
            .collect();
        for chunk in recipients.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO recipients (message_id, idx, stream, kind, address, domain, state, attempts, \
                 next_attempt_at, last_reply, created_at, updated_at) VALUES {}",
                self.values_list(chunk.len(), 7, "0, ", 4)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (m, idx, r) in chunk {
                q = q
                    .bind(m.id.to_string())
                    .bind(*idx as i64)
                    .bind(m.stream.as_str())
                    .bind(r.kind.as_str())
                    .bind(&r.address)
                    .bind(&r.domain)
                    .bind(if r.suppressed.is_some() {
                        "suppressed"
                    } else {
                        "queued"
                    })
                    // Suppressed rows are never due: no time, no claim.
                    .bind(r.suppressed.is_none().then_some(m.created_at))
                    .bind(
                        r.suppressed
                            .as_ref()
                            .map(|why| format!("suppressed: {why}")),
                    )
                    .bind(m.created_at)
                    .bind(m.created_at);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    pub async fn get_message(&self, id: &MessageId) -> Result<Option<MessageRecord>> {
        Ok(sqlx::query_as::<_, MessageRecord>(
            "SELECT id, stream, api_key_id, sender, subject, message_id_header, dkim, tags, metadata, created_at \
             FROM messages WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn get_recipients(&self, id: &MessageId) -> Result<Vec<RecipientRecord>> {
        Ok(sqlx::query_as::<_, RecipientRecord>(
            "SELECT idx, kind, address, state, attempts, next_attempt_at, last_reply, updated_at \
             FROM recipients WHERE message_id = $1 ORDER BY idx",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?)
    }

    /// Recipient `idx` of message `id`, if it is still stored.
    pub async fn sent_recipient(&self, id: &MessageId, idx: i64) -> Result<Option<SentRecipient>> {
        let row: Option<SentRow> = sqlx::query_as(
            "SELECT m.id, r.idx, r.address, m.stream FROM recipients r \
             JOIN messages m ON m.id = r.message_id WHERE r.message_id = $1 AND r.idx = $2",
        )
        .bind(id.to_string())
        .bind(idx)
        .fetch_optional(&self.pool)
        .await?;
        row.map(sent_recipient).transpose()
    }

    /// The recipient `address` (any case) of a message `by` names that was
    /// accepted at or after `since`: the two facts a returned message
    /// without a valid VERP tag must both match before it is believed.
    pub async fn find_sent(
        &self,
        by: SentBy<'_>,
        address: &str,
        since: i64,
    ) -> Result<Option<SentRecipient>> {
        let (column, value) = match by {
            SentBy::Id(id) => ("m.id", id.to_string()),
            SentBy::MessageIdHeader(h) => ("m.message_id_header", h.to_string()),
        };
        let sql = format!(
            "SELECT m.id, r.idx, r.address, m.stream FROM messages m \
             JOIN recipients r ON r.message_id = m.id \
             WHERE {column} = $1 AND m.created_at >= $2 AND LOWER(r.address) = LOWER($3) \
             ORDER BY m.created_at DESC, r.idx LIMIT 1"
        );
        let row: Option<SentRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(value)
            .bind(since)
            .bind(address)
            .fetch_optional(&self.pool)
            .await?;
        row.map(sent_recipient).transpose()
    }

    pub async fn get_attempts(&self, id: &MessageId) -> Result<Vec<AttemptRecord>> {
        Ok(sqlx::query_as::<_, AttemptRecord>(
            "SELECT idx, attempt, started_at, finished_at, outcome, smtp_code, reply, host \
             FROM attempts WHERE message_id = $1 ORDER BY idx, attempt",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?)
    }

    /// The stored bytes and the stream they belong to (for scoping).
    pub async fn get_raw(&self, id: &MessageId) -> Result<Option<(String, Vec<u8>)>> {
        Ok(
            sqlx::query_as("SELECT stream, raw FROM messages WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Forgets idempotency keys older than `before_ms`.
    pub async fn prune_idempotency(&self, before_ms: i64) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM idempotency WHERE created_at < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}

/// Rows per multi-row statement: well under SQLite's 32,766 and PostgreSQL's
/// 65,535 bind parameters at 11 columns a row.
pub(super) const ROWS_PER_STATEMENT: usize = 500;

impl Store {
    /// `($1, $2), ($3, $4)`: a VALUES list of `rows` rows of `cols`
    /// parameters, then `fixed` literal SQL and `tail` more parameters in
    /// each row. In the cheapest placeholders for this store: plain `?` on
    /// SQLite (so the statement's other parameters are written with
    /// [`Store::placeholder`]). SQLite finds a `$N` by a linear scan of the
    /// statement's parameter names, once when it prepares the statement and
    /// again when sqlx binds it, so the hundreds of parameters of a group
    /// commit cost quadratically (~11 % of acceptance's instructions,
    /// docs/performance.md). Plain `?` are numbered in order and never
    /// looked up.
    pub(super) fn values_list(&self, rows: usize, cols: usize, fixed: &str, tail: usize) -> String {
        render_values(rows, cols, fixed, tail, self.backend == Backend::Postgres)
    }

    /// The `n`th parameter (from 1) of a statement built with
    /// [`Store::values_list`], placed after that list in the SQL text: plain
    /// `?` on SQLite continues its numbering.
    pub(super) fn placeholder(&self, n: usize) -> String {
        match self.backend {
            Backend::Postgres => format!("${n}"),
            Backend::Sqlite => "?".to_string(),
        }
    }
}

fn render_values(rows: usize, cols: usize, fixed: &str, tail: usize, numbered: bool) -> String {
    let mut n = 0;
    let mut out = String::with_capacity(rows * (cols + tail) * 5);
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for c in 0..cols + tail {
            if c == cols {
                out.push_str(", ");
                out.push_str(fixed.trim_end_matches([',', ' ']));
            }
            if c > 0 {
                out.push_str(", ");
            }
            if numbered {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push('?');
            }
        }
        out.push(')');
    }
    out
}

/// Inserts the key first; a conflict means it was used before: the saved
/// answer if the body matches, else a refusal.
async fn claim_idempotency_key(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    m: &PreparedMessage,
    claim: &IdempotencyClaim,
) -> Result<EnqueueOutcome> {
    let inserted = sqlx::query(
        "INSERT INTO idempotency (api_key_id, key, request_hash, response, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (api_key_id, key) DO NOTHING",
    )
    .bind(&m.api_key_id)
    .bind(&claim.key)
    .bind(&claim.request_hash)
    .bind(&m.response)
    .bind(m.created_at)
    .execute(&mut **tx)
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(EnqueueOutcome::Accepted);
    }
    let (hash, response): (String, String) = sqlx::query_as(
        "SELECT request_hash, response FROM idempotency WHERE api_key_id = $1 AND key = $2",
    )
    .bind(&m.api_key_id)
    .bind(&claim.key)
    .fetch_one(&mut **tx)
    .await?;
    Ok(if hash == claim.request_hash {
        EnqueueOutcome::Replayed(response)
    } else {
        EnqueueOutcome::KeyReused
    })
}

#[cfg(test)]
mod values_tests {
    #[test]
    fn placeholders_are_numbered_across_rows() {
        assert_eq!(
            super::render_values(2, 2, "", 0, true),
            "($1, $2), ($3, $4)"
        );
        assert_eq!(
            super::render_values(2, 1, "'q', 0, ", 1, true),
            "($1, 'q', 0, $2), ($3, 'q', 0, $4)"
        );
        assert_eq!(
            super::render_values(2, 1, "'q', 0, ", 1, false),
            "(?, 'q', 0, ?), (?, 'q', 0, ?)"
        );
    }
}
