//! mailroom's relay: a JSON-over-HTTP send API in front of a durable queue
//! that keeps transactional and marketing mail apart, DKIM-signs every
//! message and delivers it over SMTP with retries.
//!
//! # Layout
//! - [`cli`]: the `mailroom` command line, one module per command group.
//! - [`domain`]: validated types (addresses, streams, messages, delivery
//!   outcomes); request bodies become these at the edge.
//! - [`accept`]: the accept pipeline every ingress calls: scope, limits,
//!   list headers, signing, lint gate, suppression, enqueue.
//! - [`compose`]: MIME rendering (lettre) and DKIM signing of a message.
//! - [`store`]: all SQL, for SQLite and PostgreSQL alike.
//! - [`queue`]: the group-commit enqueuer between the pipeline and the store.
//! - [`delivery`]: per-stream workers, SMTP routes, MX lookup, DKIM keys.
//! - [`routes`]: the HTTP API (axum).
//! - [`destinations`]: per-provider shaping state for the API and CLI.
//! - [`hygiene`]: applies list-hygiene's decisions (the bounce policy,
//!   subscriber transitions) to the store, for every path alike.
//! - [`suppression`]: the in-memory filter in front of the suppression list.
//! - [`unsubscribe`]: signed one-click unsubscribe and confirmation links.
//! - [`events`]: outbound event webhooks: the outbox and its dispatcher.
//! - [`linting`]: `mailroom lint` inputs and printers; the pre-send gate
//!   uses the lint crate through it.
//! - [`lists`]: list import and pruning for the CLI.
//! - [`metrics`]: Prometheus metrics.
//! - [`node`]: this process as one of several relays on a database: node
//!   id, heartbeat, taking back a crashed run's leases.
//! - [`backup`]: encrypted SQLite backups, verify and restore.
//! - [`config`], [`keys`], [`startup`], [`telemetry`].

pub mod accept;
pub mod backup;
pub mod cli;
pub mod compose;
pub mod config;
pub mod delivery;
pub mod destinations;
pub mod domain;
pub mod domain_check;
pub mod events;
pub mod hygiene;
pub mod keys;
pub mod limits;
pub mod linting;
pub mod lists;
pub mod metrics;
pub mod node;
pub mod queue;
pub mod rawmail;
pub mod report;
pub mod routes;
pub mod server;
pub mod smtp;
pub mod startup;
pub mod store;
pub mod suppression;
pub mod telemetry;
pub mod unsubscribe;
