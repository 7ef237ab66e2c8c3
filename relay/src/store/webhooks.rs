//! Outbound event webhooks: endpoints and the delivery outbox.

use serde::Serialize;

use super::messages::ROWS_PER_STATEMENT;
use super::{Backend, Result, Store, now_ms};
use crate::events::Event;

/// A registered endpoint. The secret is only ever shown at creation.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct EndpointRecord {
    pub id: String,
    pub url: String,
    #[serde(serialize_with = "events_list")]
    pub events: String,
    #[serde(skip)]
    pub secret: String,
    pub created_at: i64,
}

fn events_list<S: serde::Serializer>(events: &str, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(events.split(',').filter(|e| !e.is_empty()))
}

impl EndpointRecord {
    pub fn wants(&self, event: &str) -> bool {
        self.events.split(',').any(|e| e == event)
    }
}

/// Where one event stands with one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Due at `next_attempt_at` (also the lease's end while one is held).
    Pending,
    Delivered,
    /// Given up (`max_age`) or the endpoint was deleted.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }
}

impl std::str::FromStr for DeliveryState {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "pending" => Ok(DeliveryState::Pending),
            "delivered" => Ok(DeliveryState::Delivered),
            "failed" => Ok(DeliveryState::Failed),
            other => Err(format!(
                "unknown delivery state {other:?}: expected pending, delivered or failed"
            )),
        }
    }
}

impl TryFrom<String> for DeliveryState {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, Self::Error> {
        s.parse()
    }
}

/// One event on its way to one endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRecord {
    pub event_id: String,
    pub endpoint_id: String,
    pub event: String,
    #[serde(skip)]
    pub payload: String,
    pub state: DeliveryState,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
}

from_row!(DeliveryRecord {
    event_id, endpoint_id, event, payload, attempts, next_attempt_at, last_status, last_error,
    created_at, delivered_at;
    parsed: state
});

const DELIVERY_COLUMNS: &str = "event_id, endpoint_id, event, payload, state, attempts, \
     next_attempt_at, last_status, last_error, created_at, delivered_at";

impl Store {
    pub async fn insert_endpoint(&self, e: &EndpointRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, url, events, secret, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&e.id)
        .bind(&e.url)
        .bind(&e.events)
        .bind(&e.secret)
        .bind(e.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Endpoints not deleted, oldest first.
    pub async fn list_endpoints(&self) -> Result<Vec<EndpointRecord>> {
        Ok(sqlx::query_as(
            "SELECT id, url, events, secret, created_at FROM webhook_endpoints \
             WHERE deleted_at IS NULL ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Deletes an endpoint: nothing more is queued for it and what is still
    /// pending is given up. False if there was no such live endpoint.
    pub async fn delete_endpoint(&self, id: &str) -> Result<bool> {
        let mut tx = self.begin().await?;
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE webhook_endpoints SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE webhook_deliveries SET state = 'failed', last_error = 'endpoint deleted' \
             WHERE endpoint_id = $1 AND state = 'pending'",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Queues each event for every live endpoint that asked for its type:
    /// one read of the endpoints and one insert per chunk, whatever the
    /// number of events. Without endpoints this is one cheap query.
    pub async fn emit(&self, events: &[Event]) -> Result<usize> {
        if events.is_empty() {
            return Ok(0);
        }
        let endpoints = self.list_endpoints().await?;
        let rows: Vec<(&Event, &EndpointRecord)> = events
            .iter()
            .flat_map(|ev| {
                endpoints
                    .iter()
                    .filter(|ep| ep.wants(ev.kind.as_str()))
                    .map(move |ep| (ev, ep))
            })
            .collect();
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO webhook_deliveries (event_id, endpoint_id, event, payload, state, \
                 attempts, next_attempt_at, created_at) VALUES {}",
                self.values_list(chunk.len(), 4, "'pending', 0, ", 2)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (ev, ep) in chunk {
                q = q
                    .bind(&ev.id)
                    .bind(&ep.id)
                    .bind(ev.kind.as_str())
                    .bind(ev.payload())
                    .bind(ev.at)
                    .bind(ev.at);
            }
            q.execute(&self.pool).await?;
        }
        Ok(rows.len())
    }

    /// Leases up to `limit` due deliveries until `lease_until` (see
    /// [`Store::claim`] for why PostgreSQL skips locked rows).
    pub async fn claim_deliveries(
        &self,
        now: i64,
        lease_until: i64,
        limit: usize,
        lease_token: &str,
    ) -> Result<Vec<DeliveryRecord>> {
        let lock = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, lease_token = $1, \
             next_attempt_at = $2 \
             WHERE (event_id, endpoint_id) IN (\
               SELECT event_id, endpoint_id FROM webhook_deliveries \
               WHERE state = 'pending' AND next_attempt_at <= $3 \
               ORDER BY next_attempt_at LIMIT $4 {lock}) \
             RETURNING {DELIVERY_COLUMNS}"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(lease_token)
            .bind(lease_until)
            .bind(now)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Records one attempt's outcome, if this process still holds the lease.
    /// `retry_at`: None for a final state (delivered or given up).
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_delivery(
        &self,
        d: &DeliveryRecord,
        lease_token: &str,
        state: DeliveryState,
        status: Option<u16>,
        error: Option<&str>,
        retry_at: Option<i64>,
    ) -> Result<bool> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET state = $1, last_status = $2, last_error = $3, \
             next_attempt_at = $4, delivered_at = $5, lease_token = NULL \
             WHERE event_id = $6 AND endpoint_id = $7 AND lease_token = $8",
        )
        .bind(state.as_str())
        .bind(status.map(i64::from))
        .bind(error)
        .bind(retry_at.unwrap_or(now))
        .bind((state == DeliveryState::Delivered).then_some(now))
        .bind(&d.event_id)
        .bind(&d.endpoint_id)
        .bind(lease_token)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Newest first, optionally one endpoint's or one state's.
    pub async fn list_deliveries(
        &self,
        endpoint: Option<&str>,
        state: Option<DeliveryState>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<DeliveryRecord>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
             WHERE ($1 IS NULL OR endpoint_id = $1) AND ($2 IS NULL OR state = $2) \
             ORDER BY created_at DESC, event_id DESC LIMIT $3 OFFSET $4"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(endpoint)
            .bind(state.map(DeliveryState::as_str))
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Deliveries still to be made.
    pub async fn outbox_depth(&self) -> Result<i64> {
        let (n,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'pending'")
                .fetch_one(&self.pool)
                .await?;
        Ok(n)
    }
}
