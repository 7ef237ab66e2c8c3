//! Lists, subscribers and the consent trail.

use serde::Serialize;

use list_hygiene::subscriber::{Change, Status, transition};

use super::{Result, Store, StoreError, now_ms};

/// A subscriber row's status, read back: a value that no longer parses is
/// an error naming the row, never a guess.
pub(crate) fn parse_status(list_id: &str, status: &str) -> Result<Status> {
    status
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("subscriber on list {list_id:?}: {e}")))
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ListRecord {
    pub id: String,
    pub name: String,
    pub from_address: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubscriberRecord {
    pub list_id: String,
    pub address: String,
    pub status: Status,
    /// SHA-256 of the outstanding confirmation link's secret.
    #[serde(skip)]
    pub confirm_hash: Option<String>,
    pub confirm_sent_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub confirmed_at: Option<i64>,
    pub last_delivered_at: Option<i64>,
    pub last_open_at: Option<i64>,
    pub last_click_at: Option<i64>,
    pub reengaged_at: Option<i64>,
}

from_row!(SubscriberRecord {
    list_id, address, confirm_hash, confirm_sent_at, created_at, updated_at, confirmed_at,
    last_delivered_at, last_open_at, last_click_at, reengaged_at;
    parsed: status
});

/// One line of the consent trail.
#[derive(Debug, Clone, Serialize)]
pub struct ConsentEvent {
    #[serde(skip)]
    pub id: String,
    #[serde(skip)]
    pub list_id: String,
    #[serde(skip)]
    pub address: String,
    pub at: i64,
    pub status: Status,
    pub source: String,
    pub reason: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

from_row!(ConsentEvent {
    id, list_id, address, at, source, reason, ip, user_agent;
    parsed: status
});

impl ConsentEvent {
    pub fn new(list_id: &str, address: &str, status: Status, source: &str) -> ConsentEvent {
        ConsentEvent {
            id: uuid::Uuid::now_v7().to_string(),
            list_id: list_id.to_string(),
            address: address.to_string(),
            at: now_ms(),
            status,
            source: source.to_string(),
            reason: None,
            ip: None,
            user_agent: None,
        }
    }

    pub fn reason(mut self, reason: impl Into<String>) -> ConsentEvent {
        self.reason = Some(reason.into());
        self
    }
}

const SUBSCRIBER_COLUMNS: &str = "list_id, address, status, confirm_hash, confirm_sent_at, \
     created_at, updated_at, confirmed_at, last_delivered_at, last_open_at, last_click_at, \
     reengaged_at";

async fn insert_event<'c, E>(exec: E, e: &ConsentEvent) -> Result<()>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO subscriber_events (id, list_id, address, at, status, source, reason, ip, \
         user_agent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&e.id)
    .bind(&e.list_id)
    .bind(&e.address)
    .bind(e.at)
    .bind(e.status.as_str())
    .bind(&e.source)
    .bind(&e.reason)
    .bind(&e.ip)
    .bind(&e.user_agent)
    .execute(exec)
    .await?;
    Ok(())
}

impl Store {
    /// False when a list with this id exists already.
    pub async fn insert_list(&self, l: &ListRecord) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO lists (id, name, from_address, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&l.id)
        .bind(&l.name)
        .bind(&l.from_address)
        .bind(l.created_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn get_list(&self, id: &str) -> Result<Option<ListRecord>> {
        Ok(
            sqlx::query_as("SELECT id, name, from_address, created_at FROM lists WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn list_lists(&self) -> Result<Vec<ListRecord>> {
        Ok(
            sqlx::query_as("SELECT id, name, from_address, created_at FROM lists ORDER BY id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Subscribers per status on one list.
    pub async fn count_subscribers(&self, list: &str) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT status, COUNT(*) FROM subscribers WHERE list_id = $1 GROUP BY status ORDER BY status",
        )
        .bind(list)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn get_subscriber(
        &self,
        list: &str,
        address: &str,
    ) -> Result<Option<SubscriberRecord>> {
        let sql = format!(
            "SELECT {SUBSCRIBER_COLUMNS} FROM subscribers WHERE list_id = $1 AND address = $2"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(list)
            .bind(address)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn subscriber_by_confirm_hash(&self, hash: &str) -> Result<Option<SubscriberRecord>> {
        let sql = format!("SELECT {SUBSCRIBER_COLUMNS} FROM subscribers WHERE confirm_hash = $1");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Writes the whole subscriber row and its trail entry in one
    /// transaction.
    pub async fn put_subscriber(&self, s: &SubscriberRecord, event: &ConsentEvent) -> Result<()> {
        let mut tx = self.begin().await?;
        let sql = format!(
            "INSERT INTO subscribers ({SUBSCRIBER_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (list_id, address) DO UPDATE SET status = excluded.status, \
             confirm_hash = excluded.confirm_hash, confirm_sent_at = excluded.confirm_sent_at, \
             updated_at = excluded.updated_at, confirmed_at = excluded.confirmed_at, \
             last_delivered_at = excluded.last_delivered_at, last_open_at = excluded.last_open_at, \
             last_click_at = excluded.last_click_at, reengaged_at = excluded.reengaged_at"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&s.list_id)
            .bind(&s.address)
            .bind(s.status.as_str())
            .bind(&s.confirm_hash)
            .bind(s.confirm_sent_at)
            .bind(s.created_at)
            .bind(s.updated_at)
            .bind(s.confirmed_at)
            .bind(s.last_delivered_at)
            .bind(s.last_open_at)
            .bind(s.last_click_at)
            .bind(s.reengaged_at)
            .execute(&mut *tx)
            .await?;
        insert_event(&mut *tx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records that the confirmation mail went out.
    pub async fn mark_confirmation_sent(&self, list: &str, address: &str, at: i64) -> Result<()> {
        sqlx::query(
            "UPDATE subscribers SET confirm_sent_at = $1 WHERE list_id = $2 AND address = $3",
        )
        .bind(at)
        .bind(list)
        .bind(address)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Confirms the pending subscriber whose link secret hashes to `hash`,
    /// using the link up. False if the link was used already or replaced.
    pub async fn confirm_subscriber(&self, hash: &str, event: &ConsentEvent) -> Result<bool> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE subscribers SET status = 'confirmed', confirm_hash = NULL, confirmed_at = $1, \
             updated_at = $1, reengaged_at = NULL \
             WHERE confirm_hash = $2 AND status = 'pending' AND list_id = $3 AND address = $4",
        )
        .bind(event.at)
        .bind(hash)
        .bind(&event.list_id)
        .bind(&event.address)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        insert_event(&mut *tx, event).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Applies `change` to the subscriber rows of `address` (on `list`, or
    /// on every list) that list-hygiene's transition table lets it move,
    /// with a trail entry each. Returns the lists changed.
    ///
    /// # Errors
    /// Store errors, or a row whose status no longer parses (nothing is
    /// changed then).
    pub async fn change_status(
        &self,
        list: Option<&str>,
        address: &str,
        change: Change,
        source: &str,
        reason: Option<&str>,
    ) -> Result<Vec<String>> {
        let mut tx = self.begin().await?;
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT list_id, status FROM subscribers WHERE address = $1 AND ($2 IS NULL OR list_id = $2)",
        )
        .bind(address)
        .bind(list)
        .fetch_all(&mut *tx)
        .await?;
        let now = now_ms();
        let mut changed = Vec::new();
        for (list_id, current) in rows {
            let current = parse_status(&list_id, &current)?;
            let Some(status) = transition(Some(current), change) else {
                continue;
            };
            sqlx::query(
                "UPDATE subscribers SET status = $1, confirm_hash = NULL, updated_at = $2 \
                 WHERE list_id = $3 AND address = $4",
            )
            .bind(status.as_str())
            .bind(now)
            .bind(&list_id)
            .bind(address)
            .execute(&mut *tx)
            .await?;
            let mut e = ConsentEvent::new(&list_id, address, status, source);
            e.reason = reason.map(str::to_string);
            insert_event(&mut *tx, &e).await?;
            changed.push(list_id);
        }
        tx.commit().await?;
        Ok(changed)
    }

    pub async fn consent_trail(&self, list: &str, address: &str) -> Result<Vec<ConsentEvent>> {
        Ok(sqlx::query_as(
            "SELECT id, list_id, address, at, status, source, reason, ip, user_agent \
             FROM subscriber_events WHERE list_id = $1 AND address = $2 ORDER BY at, id",
        )
        .bind(list)
        .bind(address)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn list_subscribers(
        &self,
        list: &str,
        status: Option<Status>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<SubscriberRecord>> {
        let sql = format!(
            "SELECT {SUBSCRIBER_COLUMNS} FROM subscribers WHERE list_id = $1 \
             AND ($2 IS NULL OR status = $2) ORDER BY address LIMIT $3 OFFSET $4"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(list)
            .bind(status.map(Status::as_str))
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Records an open or click (`kind`) at `at` for `address` on `list` or
    /// every list; a later time never goes backwards. Returns rows touched.
    pub async fn record_engagement(
        &self,
        list: Option<&str>,
        address: &str,
        click: bool,
        at: i64,
    ) -> Result<u64> {
        let column = if click {
            "last_click_at"
        } else {
            "last_open_at"
        };
        let sql = format!(
            "UPDATE subscribers SET {column} = $1, reengaged_at = NULL \
             WHERE address = $2 AND ($3 IS NULL OR list_id = $3) \
             AND ({column} IS NULL OR {column} < $1)"
        );
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(at)
            .bind(address)
            .bind(list)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Notes a delivery to each of `addresses` (lower-cased) on every list
    /// they are on.
    pub async fn mark_delivered(&self, addresses: &[String], at: i64) -> Result<()> {
        for chunk in addresses.chunks(super::messages::ROWS_PER_STATEMENT) {
            let params: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "UPDATE subscribers SET last_delivered_at = $1 WHERE address IN ({})",
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

    /// Unconfirmed sign-ups that went pending before `cutoff`: those never
    /// confirmed are deleted with their trail (no consent, nothing to
    /// keep); those confirmed once and re-subscribing go back to
    /// `unsubscribed`. Returns (deleted, reverted).
    pub async fn expire_pending(&self, cutoff: i64) -> Result<(u64, u64)> {
        let mut tx = self.begin().await?;
        let reverted: Vec<(String, String)> = sqlx::query_as(
            "SELECT list_id, address FROM subscribers WHERE status = 'pending' \
             AND updated_at < $1 AND confirmed_at IS NOT NULL",
        )
        .bind(cutoff)
        .fetch_all(&mut *tx)
        .await?;
        for (list, address) in &reverted {
            sqlx::query(
                "UPDATE subscribers SET status = 'unsubscribed', confirm_hash = NULL, updated_at = $1 \
                 WHERE list_id = $2 AND address = $3",
            )
            .bind(now_ms())
            .bind(list)
            .bind(address)
            .execute(&mut *tx)
            .await?;
            let e = ConsentEvent::new(list, address, Status::Unsubscribed, "expiry")
                .reason("re-subscription not confirmed in time");
            insert_event(&mut *tx, &e).await?;
        }
        sqlx::query(
            "DELETE FROM subscriber_events WHERE (list_id, address) IN (\
             SELECT list_id, address FROM subscribers WHERE status = 'pending' \
             AND updated_at < $1 AND confirmed_at IS NULL)",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
        let deleted = sqlx::query(
            "DELETE FROM subscribers WHERE status = 'pending' AND updated_at < $1 \
             AND confirmed_at IS NULL",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok((deleted, reverted.len() as u64))
    }

    /// Confirmed subscribers of `list` with no sign of life since `cutoff`:
    /// mailed, but not confirmed, opened or clicked after it.
    pub async fn inactive_subscribers(
        &self,
        list: &str,
        cutoff: i64,
    ) -> Result<Vec<SubscriberRecord>> {
        let sql = format!(
            "SELECT {SUBSCRIBER_COLUMNS} FROM subscribers WHERE list_id = $1 \
             AND status = 'confirmed' AND COALESCE(confirmed_at, created_at) < $2 \
             AND last_delivered_at IS NOT NULL \
             AND COALESCE(last_open_at, 0) < $2 AND COALESCE(last_click_at, 0) < $2 \
             ORDER BY address"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(list)
            .bind(cutoff)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Adds `addresses` to `list` as confirmed (consent collected outside
    /// mailroom, as `source` says), a trail entry each. Addresses already on
    /// the list keep their state, whatever it is: an import never
    /// resubscribes someone who left. Returns how many were added.
    pub async fn import_subscribers(
        &self,
        list: &str,
        addresses: &[String],
        source: &str,
    ) -> Result<u64> {
        let mut added = 0;
        for chunk in addresses.chunks(1000) {
            let mut tx = self.begin().await?;
            let now = now_ms();
            for a in chunk {
                let done = sqlx::query(
                    "INSERT INTO subscribers (list_id, address, status, created_at, updated_at, \
                     confirmed_at) VALUES ($1, $2, 'confirmed', $3, $3, $3) \
                     ON CONFLICT (list_id, address) DO NOTHING",
                )
                .bind(list)
                .bind(a)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() > 0 {
                    added += 1;
                    let e = ConsentEvent::new(list, a, Status::Confirmed, source)
                        .reason("imported: consent collected before import");
                    insert_event(&mut *tx, &e).await?;
                }
            }
            tx.commit().await?;
        }
        Ok(added)
    }

    /// Marks subscribers as sent a last-chance (re-engagement) campaign.
    pub async fn mark_reengaged(&self, list: &str, addresses: &[String], at: i64) -> Result<()> {
        for a in addresses {
            sqlx::query(
                "UPDATE subscribers SET reengaged_at = $1 WHERE list_id = $2 AND address = $3",
            )
            .bind(at)
            .bind(list)
            .bind(a)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }
}
