//! Relay processes ("nodes") sharing the database: registration, the
//! liveness lock, heartbeats, and taking back a previous run's leases.

use serde::Serialize;

use super::{Backend, Result, Store, now_ms};

/// A relay process as it registered itself.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct NodeRecord {
    pub node_id: String,
    pub run_id: String,
    pub hostname: String,
    pub pid: i64,
    pub version: String,
    pub started_at: i64,
    pub heartbeat_at: i64,
}

/// Held for as long as the process runs: on PostgreSQL a session-level
/// advisory lock on a connection of its own, which the server drops the
/// moment the process dies (its socket closes), so a restarted node can
/// take its lock — and its leases — back at once.
pub struct NodeLock {
    _conn: Option<sqlx::AnyConnection>,
}

impl std::fmt::Debug for NodeLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeLock")
    }
}

/// Advisory lock class for node ids: "mlrm" as an int4.
const NODE_LOCK_CLASS: i32 = 0x6d6c_726d;

impl Store {
    /// Takes the database-side lock on `node_id`; None when another live
    /// process holds it. On SQLite, None never happens here: the caller's
    /// file lock on the node-id file does the job there.
    pub async fn lock_node(&self, node_id: &str) -> Result<Option<NodeLock>> {
        match self.backend {
            Backend::Sqlite => Ok(Some(NodeLock { _conn: None })),
            Backend::Postgres => {
                // Out of the pool for good: the lock lives with this session.
                let mut conn = self.pool.acquire().await?.detach();
                // Keyed by schema too: relays on different schemas of one
                // database (as the tests run) are different deployments.
                let (got,): (bool,) = sqlx::query_as(
                    "SELECT pg_try_advisory_lock($1, hashtext(current_schema() || ':' || $2))",
                )
                .bind(NODE_LOCK_CLASS)
                .bind(node_id)
                .fetch_one(&mut conn)
                .await?;
                Ok(got.then(|| NodeLock { _conn: Some(conn) }))
            }
        }
    }

    /// Records this run of `node`, replacing the previous run's row.
    pub async fn register_node(&self, node: &NodeRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO nodes (node_id, run_id, hostname, pid, version, started_at, heartbeat_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (node_id) DO UPDATE SET \
             run_id = excluded.run_id, hostname = excluded.hostname, pid = excluded.pid, \
             version = excluded.version, started_at = excluded.started_at, \
             heartbeat_at = excluded.heartbeat_at",
        )
        .bind(&node.node_id)
        .bind(&node.run_id)
        .bind(&node.hostname)
        .bind(node.pid)
        .bind(&node.version)
        .bind(node.started_at)
        .bind(node.heartbeat_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Makes every recipient a previous run of `node_id` had leased due at
    /// once, and frees its connection slots. Call before this run claims anything: all of the node's leases
    /// are then its previous run's. The attempt stays counted — it may have
    /// reached the server before the process died.
    pub async fn reclaim_node_leases(&self, node_id: &str) -> Result<u64> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE recipients SET state = 'deferred', lease_token = NULL, leased_by = NULL, \
             next_attempt_at = $1, updated_at = $1, \
             last_reply = 'attempt interrupted: the relay holding it stopped; retrying' \
             WHERE leased_by = $2 AND state = 'inflight'",
        )
        .bind(now)
        .bind(node_id)
        .execute(&self.bookkeeping)
        .await?;
        self.free_node_slots(node_id).await?;
        Ok(done.rows_affected())
    }

    /// The heartbeat: extends every lease `node_id` holds (recipients and
    /// connection slots) to `lease_until` and marks the node alive. Returns the leases renewed.
    pub async fn heartbeat(&self, node_id: &str, run_id: &str, lease_until: i64) -> Result<u64> {
        let now = now_ms();
        let renewed = sqlx::query(
            "UPDATE recipients SET next_attempt_at = $1 WHERE leased_by = $2 AND state = 'inflight'",
        )
        .bind(lease_until)
        .bind(node_id)
        .execute(&self.bookkeeping)
        .await?
        .rows_affected();
        self.renew_slots(node_id, lease_until).await?;
        sqlx::query("UPDATE nodes SET heartbeat_at = $1 WHERE node_id = $2 AND run_id = $3")
            .bind(now)
            .bind(node_id)
            .bind(run_id)
            .execute(&self.bookkeeping)
            .await?;
        Ok(renewed)
    }

    /// Every node that ever registered, most recent heartbeat first.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>> {
        Ok(sqlx::query_as(
            "SELECT node_id, run_id, hostname, pid, version, started_at, heartbeat_at FROM nodes \
             ORDER BY heartbeat_at DESC, node_id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// How many nodes sent a heartbeat at or after `since` (at least 1:
    /// the caller is one).
    pub async fn live_nodes(&self, since: i64) -> Result<u64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM nodes WHERE heartbeat_at >= $1")
            .bind(since)
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0).max(1))
    }
}
