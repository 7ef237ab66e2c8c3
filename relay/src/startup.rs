//! Wiring: store, signers, enqueuer, one worker per stream, the HTTP API,
//! and an orderly shutdown of all of them.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::Settings;
use crate::delivery::dkim::{self, Algorithm, Signers};
use crate::delivery::smtp::{Sender, SenderOptions};
use crate::delivery::worker::Worker;
use crate::domain::Stream;
use crate::keys::{self, IssuedKey};
use crate::queue::{Enqueuer, Wakers};
use crate::routes::{self, AppState, KeyCache};
use crate::store::{Store, now_ms};
use crate::suppression::Suppressions;

/// Selector of capture mode's development key.
pub const DEV_SELECTOR: &str = "mailroom-dev";
/// How long idempotency keys are remembered.
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);

pub struct Relay {
    settings: Settings,
    store: Store,
    signers: Signers,
}

impl Relay {
    /// Connects and migrates the store and loads the DKIM keys.
    ///
    /// # Errors
    /// The database can't be opened or migrated, or a key file is bad.
    pub async fn build(mut settings: Settings) -> anyhow::Result<Relay> {
        settings.resolve_secrets()?;
        let store = Store::connect(&settings.database).await.with_context(|| {
            format!(
                "opening database {}",
                crate::delivery::redact(&settings.database)
            )
        })?;
        let mut signers = Signers::load(&settings.dkim)?;
        if settings.capture {
            let dev = dkim::generate("mailroom.invalid", DEV_SELECTOR, Algorithm::Ed25519)?;
            warn!(
                selector = DEV_SELECTOR,
                public_key = %dev.dns_value,
                "capture mode: domains without a configured DKIM key are signed with a development key made for this run"
            );
            signers.set_fallback(dev.private_pem, DEV_SELECTOR);
        }
        Ok(Relay {
            settings,
            store,
            signers,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// In capture mode on an empty database, makes a key for both streams so
    /// a new user can send straight away.
    ///
    /// # Errors
    /// The store failed.
    pub async fn bootstrap_capture_key(&self) -> anyhow::Result<Option<IssuedKey>> {
        if !self.settings.capture || self.store.count_api_keys().await? > 0 {
            return Ok(None);
        }
        Ok(Some(
            keys::create(
                &self.store,
                "capture-bootstrap",
                &Stream::ALL,
                &keys::ApiScope::ALL,
                None,
            )
            .await?,
        ))
    }

    /// Serves the API on `listener` and runs the workers until `shutdown`
    /// resolves; then stops accepting, lets workers finish or release their
    /// deliveries, and returns.
    ///
    /// # Errors
    /// A stream's route can't be set up, or the server failed.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Relay {
            settings,
            store,
            signers,
        } = self;
        // Everything that can fail at start-up comes before any task starts.
        let suppressions = Arc::new(
            Suppressions::load(&store)
                .await
                .context("loading the suppression list")?,
        );
        let base_url = match &settings.public_url {
            Some(u) => u.clone(),
            None => format!(
                "http://{}",
                listener.local_addr().context("reading bound address")?
            ),
        };
        // Before any worker claims: the previous run's leases are taken back.
        let node = crate::node::Node::start(&store, &settings.node_id_source()).await?;
        let key = store
            .get_or_create_secret("unsubscribe_hmac", &crate::unsubscribe::new_key())
            .await
            .context("reading the unsubscribe signing key")?;
        let key = hex::decode(key).context("stored unsubscribe key is not hex")?;
        let links = Arc::new(crate::unsubscribe::Links::new(&base_url, &key));
        // Only the MX route has a resolver of its own; sign-up checks get
        // one when asked for.
        let mx = if settings.lists.check_mx {
            Some(Arc::new(
                crate::delivery::mx::MxResolver::new(&settings.dns_servers)
                    .context("setting up DNS for the sign-up MX check")?,
            ))
        } else {
            None
        };
        let tls = match &settings.tls {
            Some(t) => Some(Arc::new(crate::server::Tls::load(
                t.cert.clone(),
                t.key.clone(),
            )?)),
            None => None,
        };
        // SMTP submission: its own certificate, or the HTTP one.
        let submission_tls = match (&settings.submission.tls_cert, &settings.submission.tls_key) {
            (Some(cert), Some(key)) => Some(Arc::new(crate::server::Tls::load(
                cert.clone(),
                key.clone(),
            )?)),
            (None, None) => tls.clone(),
            _ => anyhow::bail!("[submission] needs both tls_cert and tls_key, or neither"),
        };
        let smtp_listeners =
            crate::smtp::bind(&settings.submission.listen, "SMTP submission").await?;
        let mx_listeners = crate::smtp::bind(&settings.inbound.listen, "SMTP inbound").await?;
        let header_timeout = settings.header_timeout;
        let events_wake = Arc::new(tokio::sync::Notify::new());
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let running: Vec<(Stream, Arc<std::sync::atomic::AtomicBool>)> =
            Stream::ALL.iter().map(|s| (*s, Arc::default())).collect();
        let wakers = Arc::new(Wakers::default());
        let (enqueuer, writer) = Enqueuer::spawn(store.clone(), wakers.clone());
        let (stop_tx, stop_rx) = watch::channel(false);

        let mut workers = Vec::new();
        let mut shapers = Vec::new();
        for stream in Stream::ALL {
            let shaper = Arc::new(crate::delivery::shaping::Shaper::new(
                stream,
                settings.shaping_table(stream)?,
                store.clone(),
                node.id.clone(),
                settings.streams.get(stream).lease,
                metrics.clone(),
            ));
            shapers.push(shaper);
        }
        for (stream, shaper) in Stream::ALL.into_iter().zip(&shapers) {
            let s = settings.streams.get(stream).clone();
            if s.paused {
                warn!(%stream, "stream paused: accepting and queueing, delivering nothing");
                continue;
            }
            let sender = Sender::new(
                settings.route(stream)?,
                SenderOptions {
                    hello: &settings.hostname,
                    timeout: s.smtp_timeout,
                    pool_size: s.concurrency,
                    source_address: s.source_address,
                    dns_servers: &settings.dns_servers,
                    mx_port: settings.mx_port,
                    shaper: Some(shaper.clone()),
                },
            )
            .with_context(|| format!("setting up the {stream} stream's route"))?;
            let worker = Worker {
                stream,
                settings: s,
                store: store.clone(),
                sender: Arc::new(sender),
                wake: wakers.get(stream).clone(),
                events: events_wake.clone(),
                metrics: metrics.clone(),
                suppressions: suppressions.clone(),
                bounce_policy: settings.bounce_policy(),
                links: links.clone(),
                node: node.id.clone(),
                running: running
                    .iter()
                    .find(|(s, _)| *s == stream)
                    .map(|(_, r)| r.clone())
                    .expect("every stream has a flag"),
            };
            workers.push(tokio::spawn(worker.run(stop_rx.clone())));
        }
        // The heartbeat outlives the workers' shutdown grace: deliveries
        // finishing then still hold renewed leases.
        let (beat_stop, beat_rx) = watch::channel(false);
        let heartbeat = tokio::spawn(crate::node::heartbeat(
            store.clone(),
            node.id.clone(),
            node.run_id.clone(),
            crate::node::heartbeat_interval(settings.shortest_lease()),
            settings.shortest_lease(),
            beat_rx,
        ));
        let shaping_refresher = tokio::spawn(crate::delivery::shaping::runtime::refresher(
            shapers.clone(),
            crate::node::heartbeat_interval(settings.shortest_lease()),
            stop_rx.clone(),
        ));
        let housekeeping = tokio::spawn(housekeeping(
            store.clone(),
            settings.lists.pending_expiry,
            stop_rx.clone(),
        ));
        let rate_watch = tokio::spawn(crate::report::watch_rates(
            store.clone(),
            settings.alerts.clone(),
            metrics.clone(),
            stop_rx.clone(),
        ));
        let dispatcher = tokio::spawn(
            crate::events::Dispatcher {
                store: store.clone(),
                settings: settings.webhooks.clone(),
                wake: events_wake.clone(),
            }
            .run(stop_rx.clone()),
        );
        let refresher = tokio::spawn(refresh_suppressions(
            store.clone(),
            suppressions.clone(),
            stop_rx.clone(),
        ));

        let limits = Arc::new(crate::limits::Limits::new(
            &settings.limits,
            [
                settings.streams.transactional.messages_per_hour,
                settings.streams.marketing.messages_per_hour,
            ],
        ));
        let (signers, settings) = (Arc::new(signers), Arc::new(settings));
        let accept = Arc::new(crate::accept::Pipeline {
            store: store.clone(),
            enqueuer,
            signers,
            settings: settings.clone(),
            suppressions: suppressions.clone(),
            links: links.clone(),
            limits: limits.clone(),
            metrics: metrics.clone(),
            wake: events_wake.clone(),
        });
        let keys = Arc::new(KeyCache::default());
        // A certificate of its own gets its own SIGHUP reload.
        let smtp_reloader = submission_tls
            .clone()
            .filter(|t| !tls.as_ref().is_some_and(|h| Arc::ptr_eq(h, t)))
            .map(|t| {
                tokio::spawn(crate::server::reload_on_sighup(
                    t,
                    store.clone(),
                    stop_rx.clone(),
                ))
            });
        let state = AppState {
            accept,
            store: store.clone(),
            settings,
            keys,
            suppressions,
            links,
            wake: events_wake,
            mx,
            metrics,
            workers: Arc::new(running),
            shapers: Arc::new(shapers),
            limits,
        };
        // The SMTP listeners share the API's state: the same pipeline for
        // submission, the same handlers as the inbound webhooks for the MX.
        let mut smtp = Vec::new();
        for (listeners, mode) in [
            (smtp_listeners, crate::smtp::Mode::Submission),
            (mx_listeners, crate::smtp::Mode::Inbound),
        ] {
            if listeners.is_empty() {
                continue;
            }
            let sessions = Arc::new(crate::smtp::Submission::new(
                state.clone(),
                mode,
                submission_tls.clone(),
            ));
            smtp.push(tokio::spawn(crate::smtp::serve(
                listeners,
                sessions,
                stop_rx.clone(),
            )));
        }
        let app = routes::router(state);
        let reloader = tls.clone().map(|t| {
            tokio::spawn(crate::server::reload_on_sighup(
                t,
                store.clone(),
                stop_rx.clone(),
            ))
        });
        let server = crate::server::serve(listener, app, tls, header_timeout, stop_rx.clone());
        tokio::spawn(async move {
            shutdown.await;
            info!("shutdown requested: no longer accepting; finishing deliveries");
            let _ = stop_tx.send(true);
        });
        server.await.context("HTTP server failed")?;
        // The SMTP sessions hold the pipeline (and an Enqueuer) too.
        for s in smtp {
            let _ = s.await;
        }
        if let Some(r) = smtp_reloader {
            let _ = r.await;
        }
        // The router (and with it every Enqueuer) is gone: the writer commits
        // what it holds and ends.
        let _ = writer.await;
        for w in workers {
            let _ = w.await;
        }
        let _ = beat_stop.send(true);
        let _ = heartbeat.await;
        let _ = shaping_refresher.await;
        let _ = housekeeping.await;
        let _ = refresher.await;
        let _ = dispatcher.await;
        let _ = rate_watch.await;
        if let Some(r) = reloader {
            let _ = r.await;
        }
        // The node lock goes with the process; dropping it first lets a
        // restart on PostgreSQL take it at once.
        drop(node);
        store.close().await;
        info!("stopped");
        Ok(())
    }
}

async fn housekeeping(store: Store, pending_expiry: Duration, mut stop: watch::Receiver<bool>) {
    // Hourly, and once at start.
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match store
            .prune_idempotency(now_ms() - IDEMPOTENCY_TTL.as_millis() as i64)
            .await
        {
            Ok(n) if n > 0 => info!(n, "forgot expired idempotency keys"),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "pruning idempotency keys failed"),
        }
        match store
            .expire_pending(now_ms() - pending_expiry.as_millis() as i64)
            .await
        {
            Ok((0, 0)) => {}
            Ok((deleted, reverted)) => info!(deleted, reverted, "expired unconfirmed sign-ups"),
            Err(e) => warn!(error = %e, "expiring unconfirmed sign-ups failed"),
        }
    }
}

/// Keeps the suppression filter up to date with entries other processes add.
async fn refresh_suppressions(
    store: Store,
    filter: Arc<Suppressions>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(crate::suppression::REFRESH);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if let Err(e) = filter.refresh(&store).await {
            warn!(error = %e, "refreshing the suppression filter failed");
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
