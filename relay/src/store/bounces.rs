//! Bounces: the relay's own 5xx replies and those that came back later,
//! each traced (or not) to the recipient it is about.

use super::{Result, Store};

/// How a bounce was traced to a recipient mailroom sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Attribution {
    /// The relay's own delivery attempt got the 5xx reply.
    Relay,
    /// A VERP return path whose tag verified.
    Verp,
    /// The returned message's Message-ID (or an untagged VERP path) and
    /// the recipient's address both match a message sent recently.
    MessageId,
    /// Nothing mailroom sent matches: recorded, suppresses nobody.
    Unattributed,
}

impl Attribution {
    pub fn as_str(self) -> &'static str {
        match self {
            Attribution::Relay => "relay",
            Attribution::Verp => "verp",
            Attribution::MessageId => "message_id",
            Attribution::Unattributed => "unattributed",
        }
    }
}

/// One failed recipient of one bounce.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// The recipient's index in the relay's message, when traced.
    pub recipient_idx: Option<i64>,
    /// Why it failed (list-hygiene's `BounceReason`), when told.
    pub reason: Option<String>,
    pub attribution: Attribution,
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
             original_message_id, relay_message_id, source, stream, domain, recipient_idx, \
             reason, attribution) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
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
        .bind(b.recipient_idx)
        .bind(&b.reason)
        .bind(b.attribution.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A delivery to each of `addresses` means the soft bounces the relay
    /// saw itself no longer count towards suppression. Asynchronous ones
    /// (returned DSNs) keep counting within the window: a server that
    /// bounces later answers `250` to every message first, so a `250` says
    /// nothing about them.
    pub async fn reset_soft_bounces(&self, addresses: &[String], at: i64) -> Result<()> {
        for chunk in addresses.chunks(super::messages::ROWS_PER_STATEMENT) {
            let params: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "UPDATE bounces SET reset_at = $1 WHERE class = 'soft' AND reset_at IS NULL \
                 AND source = 'relay' AND address IN ({})",
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

    /// Bounces traced to mail we sent received at or after `since`,
    /// counted by stream, destination domain and class, largest first.
    pub async fn bounce_counts(&self, since: i64, limit: i64) -> Result<Vec<BounceCount>> {
        Ok(sqlx::query_as(
            "SELECT stream, domain, class, COUNT(*) AS count FROM bounces WHERE received_at >= $1 \
             AND (attribution IS NULL OR attribution <> 'unattributed') \
             GROUP BY stream, domain, class ORDER BY count DESC, stream, domain, class LIMIT $2",
        )
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Bounces of `class` for `address` received at or after `since`, not
    /// reset by a later delivery. Unattributed bounces count only when
    /// `with_unattributed` (the `suppress_unattributed` setting): anyone
    /// could have written them.
    pub async fn count_bounces(
        &self,
        address: &str,
        class: &str,
        since: i64,
        with_unattributed: bool,
    ) -> Result<i64> {
        let sql = if with_unattributed {
            "SELECT COUNT(*) FROM bounces WHERE address = $1 AND class = $2 AND received_at >= $3 \
             AND reset_at IS NULL"
        } else {
            "SELECT COUNT(*) FROM bounces WHERE address = $1 AND class = $2 AND received_at >= $3 \
             AND reset_at IS NULL AND (attribution IS NULL OR attribution <> 'unattributed')"
        };
        let (n,): (i64,) = sqlx::query_as(sql)
            .bind(address)
            .bind(class)
            .bind(since)
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }

    /// Whether a bounce with `action` was already recorded for recipient
    /// `idx` of message `id`: a second one is a replay.
    pub async fn bounce_recorded(&self, id: &str, idx: i64, action: &str) -> Result<bool> {
        let found: Option<(i64,)> = sqlx::query_as(
            "SELECT 1 FROM bounces WHERE relay_message_id = $1 AND recipient_idx = $2 \
             AND action = $3 LIMIT 1",
        )
        .bind(id)
        .bind(idx)
        .bind(action)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    /// Unattributed bounces received at or after `since`: a rising count
    /// means bounces that no longer carry the VERP path, or forgeries.
    pub async fn count_unattributed_bounces(&self, since: i64) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM bounces WHERE received_at >= $1 AND attribution = 'unattributed'",
        )
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }
}
