//! This relay process as one node of a deployment sharing a database.
//!
//! Each node has a persistent id (`node_id`, or the `node_id_file` it
//! creates on first start). Its leases on recipients carry that id, its
//! heartbeat renews them every lease/3, and when it starts again after a
//! crash it takes back at once every lease its previous run held — those
//! deliveries were cut off mid-way — instead of letting them run out. A
//! node that never comes back loses its leases after `lease` (30 s by
//! default), and the others deliver them.
//!
//! Two live processes must never share a node id: each would take the
//! other's leases back. A start therefore takes a lock on the id — an
//! exclusive file lock on the node-id file, and on PostgreSQL a session
//! advisory lock, which the server drops the moment the holder's connection
//! dies — and refuses to run without it.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::store::{NodeLock, NodeRecord, Store, now_ms};

/// A node id: 1 to 64 of `A-Z a-z 0-9 . _ -`, so it reads well in logs,
/// metrics and the `nodes` table, and can't smuggle anything into them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeId(String);

impl NodeId {
    /// # Errors
    /// Empty, longer than 64 bytes, or a character outside the set above.
    pub fn parse(s: &str) -> anyhow::Result<NodeId> {
        anyhow::ensure!(
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')),
            "node id {s:?}: use 1 to 64 letters, digits, '.', '_' or '-'"
        );
        Ok(NodeId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A new id: the host name (cleaned) and 8 random hex digits.
    fn generate() -> NodeId {
        let host: String = hostname()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .take(40)
            .collect();
        let tail = &uuid::Uuid::new_v4().simple().to_string()[..8];
        NodeId(format!(
            "{}-{tail}",
            if host.is_empty() { "node" } else { &host }
        ))
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// This process's registration, held while it runs.
#[derive(Debug)]
pub struct Node {
    pub id: NodeId,
    pub run_id: String,
    /// Leases of the previous run taken back at start.
    pub reclaimed: u64,
    _file: Option<File>,
    _lock: NodeLock,
}

/// Where the node id comes from.
#[derive(Debug, Clone)]
pub enum NodeIdSource {
    /// `node_id` in the configuration.
    Configured(String),
    /// Read from this file, created with a new id if missing.
    File(PathBuf),
}

impl Node {
    /// Takes the node id's locks, registers this run, and takes back the
    /// previous run's leases. Call before any worker claims.
    ///
    /// # Errors
    /// The id is invalid or held by another live process, the file can't
    /// be read or written, or the store failed.
    pub async fn start(store: &Store, source: &NodeIdSource) -> anyhow::Result<Node> {
        let (id, file) = match source {
            NodeIdSource::Configured(s) => (NodeId::parse(s).context("node_id")?, None),
            NodeIdSource::File(path) => {
                let (id, file) = id_from_file(path)?;
                (id, Some(file))
            }
        };
        let lock = store
            .lock_node(id.as_str())
            .await
            .context("taking the node lock")?
            .with_context(|| {
                format!(
                    "node id {id} is in use by another running relay on this database; \
                     give each relay its own node_id"
                )
            })?;
        let run_id = uuid::Uuid::now_v7().simple().to_string();
        let now = now_ms();
        store
            .register_node(&NodeRecord {
                node_id: id.to_string(),
                run_id: run_id.clone(),
                hostname: hostname(),
                pid: i64::from(std::process::id()),
                version: env!("CARGO_PKG_VERSION").into(),
                started_at: now,
                heartbeat_at: now,
            })
            .await
            .context("registering this relay in the nodes table")?;
        let reclaimed = store
            .reclaim_node_leases(id.as_str())
            .await
            .context("taking back the previous run's leases")?;
        if reclaimed > 0 {
            warn!(node = %id, reclaimed, "took back deliveries the previous run left in flight; retrying them now");
        }
        info!(node = %id, run = %run_id, "node registered");
        Ok(Node {
            id,
            run_id,
            reclaimed,
            _file: file,
            _lock: lock,
        })
    }
}

/// Reads the node id from `path` (creating it with a new id if missing)
/// and locks the file for this process's lifetime.
fn id_from_file(path: &Path) -> anyhow::Result<(NodeId, File)> {
    if let Ok(mut f) = File::create_new(path) {
        let id = NodeId::generate();
        writeln!(f, "{id}").with_context(|| format!("writing node id to {}", path.display()))?;
        f.sync_all()
            .with_context(|| format!("writing node id to {}", path.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("opening node id file {}", path.display()))?;
    file.try_lock().map_err(|e| match e {
        std::fs::TryLockError::WouldBlock => anyhow::anyhow!(
            "node id file {} is locked by another running relay; give each relay its own \
             node_id_file or node_id",
            path.display()
        ),
        std::fs::TryLockError::Error(e) => {
            anyhow::Error::new(e).context(format!("locking node id file {}", path.display()))
        }
    })?;
    let mut text = String::new();
    file.read_to_string(&mut text)
        .with_context(|| format!("reading node id file {}", path.display()))?;
    let id =
        NodeId::parse(text.trim()).with_context(|| format!("node id file {}", path.display()))?;
    Ok((id, file))
}

/// How often the heartbeat runs for the shortest lease: three beats per
/// lease, so one late beat never lets a lease lapse.
pub fn heartbeat_interval(shortest_lease: Duration) -> Duration {
    (shortest_lease / 3).max(Duration::from_millis(200))
}

/// Renews this node's leases (to `lease` from now) and its heartbeat every
/// `every`, until `stop`.
pub async fn heartbeat(
    store: Store,
    node: NodeId,
    run_id: String,
    every: Duration,
    lease: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let until = now_ms() + lease.as_millis() as i64;
        if let Err(e) = store.heartbeat(node.as_str(), &run_id, until).await {
            // Missing a few is harmless: leases last three beats.
            warn!(error = %e, node = %node, "heartbeat failed; leases may lapse if this persists");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_checked() {
        assert!(NodeId::parse("relay-1.eu_west").is_ok());
        for bad in ["", "a b", "x'; DROP TABLE", &"a".repeat(65), "ünï"] {
            assert!(NodeId::parse(bad).is_err(), "{bad:?}");
        }
        let g = NodeId::generate();
        assert!(NodeId::parse(g.as_str()).is_ok(), "{g}");
    }

    #[test]
    fn a_node_id_file_is_created_once_and_locked_while_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mailroom.node-id");
        let (a, held) = id_from_file(&path).unwrap();
        let err = id_from_file(&path).unwrap_err().to_string();
        assert!(err.contains("locked by another running relay"), "{err}");
        drop(held);
        let (b, _held) = id_from_file(&path).unwrap();
        assert_eq!(a, b, "the id persists across runs");
        std::fs::write(dir.path().join("bad"), "not an id!\n").unwrap();
        assert!(id_from_file(&dir.path().join("bad")).is_err());
    }

    #[test]
    fn three_beats_per_lease() {
        assert_eq!(
            heartbeat_interval(Duration::from_secs(30)),
            Duration::from_secs(10)
        );
        assert_eq!(
            heartbeat_interval(Duration::from_millis(300)),
            Duration::from_millis(200)
        );
    }
}
