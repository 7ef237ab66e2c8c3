//! The HTTP listener: plain or TLS (rustls, certificate reloaded on
//! SIGHUP), with limits a slow client can't get around.
//!
//! axum's own `serve` gives hyper no timer, so hyper's header-read timeout
//! never fires and a client trickling one header byte a minute holds a
//! connection for ever. Here hyper gets tokio's timer: headers must arrive
//! within `header_timeout`, a TLS handshake within the same, and the
//! router's own timeout bounds each request after that.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tracing::{info, warn};

/// How long shutdown waits for requests in progress.
const DRAIN: Duration = Duration::from_secs(30);

/// A certificate and key from PEM files, swapped on reload while
/// connections keep the one they started with.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    /// Loads the certificate chain and private key.
    ///
    /// # Errors
    /// A file can't be read or holds no usable certificate or key.
    pub fn load(cert: PathBuf, key: PathBuf) -> anyhow::Result<Tls> {
        let config = server_config(&cert, &key)?;
        Ok(Tls {
            cert,
            key,
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// Reads the files again; on failure the old certificate stays.
    ///
    /// # Errors
    /// As [`Tls::load`].
    pub fn reload(&self) -> anyhow::Result<()> {
        let config = server_config(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        Ok(())
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

fn server_config(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<ServerConfig> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading TLS certificate {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing TLS certificate {}", cert.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{} holds no certificate", cert.display());
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading TLS private key {}", key.display()))?;
    crate::events::install_crypto_provider();
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key don't go together")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Serves `app` on `listener` until `stop` turns true, then lets requests
/// in progress finish (up to 30 s).
///
/// # Errors
/// Accepting failed for good.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<Tls>>,
    header_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: pause, don't spin.
                    warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        let _ = stream.set_nodelay(true);
        let (app, tls, stop) = (app.clone(), tls.clone(), stop.clone());
        connections.spawn(async move {
            match tls {
                None => connection(stream, peer, app, header_timeout, stop).await,
                Some(tls) => {
                    match tokio::time::timeout(header_timeout, tls.acceptor().accept(stream)).await
                    {
                        Ok(Ok(stream)) => connection(stream, peer, app, header_timeout, stop).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
        // Reap finished connections so the set doesn't grow for ever.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        warn!("requests still running after {DRAIN:?}; closing them");
        connections.shutdown().await;
    }
    Ok(())
}

async fn connection<S>(
    stream: S,
    peer: SocketAddr,
    app: Router,
    header_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(tower_http::add_extension::AddExtension::new(
        app,
        ConnectInfo(peer),
    ));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            return;
        }
        _ = stop.wait_for(|s| *s) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// Reloads the TLS certificate on every SIGHUP until `stop`.
pub async fn reload_on_sighup(
    tls: Arc<Tls>,
    store: crate::store::Store,
    mut stop: watch::Receiver<bool>,
) {
    #[cfg(unix)]
    {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "can't listen for SIGHUP; TLS certificate reload disabled");
                return;
            }
        };
        loop {
            // The select only decides; the work (which awaits) comes after,
            // so no watch guard is held across an await.
            let hup_received = tokio::select! {
                r = hup.recv() => r.is_some(),
                _ = stop.wait_for(|s| *s) => false,
            };
            if !hup_received {
                return;
            }
            let (outcome, detail) = match tls.reload() {
                Ok(()) => {
                    info!("SIGHUP: TLS certificate reloaded");
                    ("ok", None)
                }
                Err(e) => {
                    warn!(
                        error = format!("{e:#}"),
                        "SIGHUP: TLS reload failed; keeping the old certificate"
                    );
                    ("failed", Some(format!("{e:#}")))
                }
            };
            if let Err(e) = store
                .audit(
                    "signal:SIGHUP",
                    "config.reloaded",
                    &format!("tls {outcome}"),
                    detail.as_deref(),
                )
                .await
            {
                warn!(error = %e, "writing the audit log failed");
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (tls, store, stop.wait_for(|s| *s).await);
    }
}
