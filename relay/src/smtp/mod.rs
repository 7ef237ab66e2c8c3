//! The SMTP listeners. Submission (`[submission]`): what shop platforms
//! (WooCommerce, Magento, …) send through; a message goes through the same
//! accept pipeline as `POST /v1/messages` and is answered `250` only once
//! committed. The inbound MX (`[inbound]`): mail to the relay's own
//! addresses, handled by the inbound webhooks' code. Commands are parsed
//! by smtp-proto; the session is a tokio state machine of our own
//! (`session.rs`), one for both kinds.
//!
//! Every listener offers STARTTLS, and a client whose first bytes are a
//! TLS handshake gets implicit TLS on the same port: platforms mix up 465
//! and 587 (Magento 2.4.8 opens implicit TLS on 587).

mod session;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{Instrument as _, info, warn};

use crate::routes::{AppState, Inbound};
use crate::server::Tls;

/// How long shutdown waits for sessions in progress.
const DRAIN: Duration = Duration::from_secs(30);

/// Which listener a session came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Mail from the shop, with AUTH: `[submission]`.
    Submission,
    /// Mail to the relay's own addresses (bounces, complaints,
    /// unsubscribes), without AUTH: `[inbound]`, the return-path MX.
    Inbound,
}

/// What every session of one kind shares.
pub struct Submission {
    /// The API's state: the accept pipeline, keys, and what the inbound
    /// webhooks use, so the MX handles mail exactly as they do.
    pub app: AppState,
    pub mode: Mode,
    /// For STARTTLS and implicit TLS; None: no TLS, so no AUTH unless
    /// `allow_plaintext_auth`.
    pub tls: Option<Arc<Tls>>,
    /// `[inbound]`: the domains it takes mail for, and the feedback-loop
    /// addresses (lower case).
    domains: Vec<String>,
    feedback: Vec<String>,
    /// Open sessions per client address, for `max_connections_per_client`.
    clients: Mutex<HashMap<IpAddr, usize>>,
    /// Open sessions per listener (by its index), for `max_connections`.
    per_listener: Mutex<HashMap<usize, usize>>,
}

impl Submission {
    pub fn new(app: AppState, mode: Mode, tls: Option<Arc<Tls>>) -> Self {
        let domains = app.settings.inbound_domains();
        let feedback = app
            .settings
            .inbound
            .feedback_addresses
            .iter()
            .map(|a| a.to_ascii_lowercase())
            .collect();
        Submission {
            app,
            mode,
            domains,
            feedback,
            tls,
            clients: Mutex::default(),
            per_listener: Mutex::default(),
        }
    }

    /// Counts a new session from `ip` on listener `listener`, or says
    /// which limit it is over.
    fn admit(self: &Arc<Self>, ip: IpAddr, listener: usize) -> Result<SessionSlot, &'static str> {
        let s = &self.app.settings.submission;
        let mut clients = self.clients.lock().expect("clients lock");
        let mut per_listener = self.per_listener.lock().expect("listener count lock");
        let on_listener = per_listener.entry(listener).or_insert(0);
        if *on_listener >= s.max_connections {
            return Err("too many connections");
        }
        let n = clients.entry(ip).or_insert(0);
        if *n >= s.max_connections_per_client {
            return Err("too many connections from your address");
        }
        *n += 1;
        *on_listener += 1;
        Ok(SessionSlot {
            owner: self.clone(),
            ip,
            listener,
        })
    }
}

/// One counted session; uncounted when dropped.
struct SessionSlot {
    owner: Arc<Submission>,
    ip: IpAddr,
    listener: usize,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut clients = self.owner.clients.lock().expect("clients lock");
        if let Some(n) = clients.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                clients.remove(&self.ip);
            }
        }
        let mut per_listener = self.owner.per_listener.lock().expect("listener count lock");
        if let Some(n) = per_listener.get_mut(&self.listener) {
            *n = n.saturating_sub(1);
        }
    }
}

impl Submission {
    /// What mail to `address` is, on the inbound MX: None for anything
    /// but the relay's own addresses (`550 5.1.1`: never a relay).
    fn inbound_kind(&self, address: &crate::domain::EmailAddress) -> Option<Inbound> {
        let address = address.to_string().to_ascii_lowercase();
        let (local, domain) = address.rsplit_once('@')?;
        if !self.domains.iter().any(|d| d == domain) {
            return None;
        }
        if self.feedback.contains(&address) {
            Some(Inbound::Complaint)
        } else if local.starts_with(list_hygiene::verp::PREFIX)
            && list_hygiene::verp::find(&address).is_some()
        {
            Some(Inbound::Bounce)
        } else if local.starts_with(crate::unsubscribe::MAILTO_PREFIX) {
            Some(Inbound::Unsubscribe)
        } else {
            None
        }
    }
}

/// Binds every address of `[submission]` or `[inbound]` (`what` says
/// which, in the log line: "SMTP submission listening on ADDR").
///
/// # Errors
/// An address can't be bound (in use, no permission for a port < 1024).
pub async fn bind(addresses: &[SocketAddr], what: &str) -> anyhow::Result<Vec<TcpListener>> {
    let mut out = Vec::new();
    for addr in addresses {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("binding the {what} listener {addr}: {e}"))?;
        info!(
            addr = %l.local_addr()?,
            "{what} listening on {}",
            l.local_addr()?
        );
        out.push(l);
    }
    Ok(out)
}

/// Serves the listeners until `stop`, then lets sessions finish their
/// current command (up to 30 s).
pub async fn serve(
    listeners: Vec<TcpListener>,
    submission: Arc<Submission>,
    mut stop: watch::Receiver<bool>,
) {
    let mut sessions = tokio::task::JoinSet::new();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(TcpStream, SocketAddr, usize)>(64);
    let mut acceptors = tokio::task::JoinSet::new();
    for (index, l) in listeners.into_iter().enumerate() {
        let (tx, mut stop) = (tx.clone(), stop.clone());
        acceptors.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = l.accept() => a,
                    _ = stop.wait_for(|s| *s) => return,
                };
                match accepted {
                    Ok((tcp, peer)) => {
                        if tx.send((tcp, peer, index)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "accepting an SMTP connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }
    drop(tx);
    loop {
        let (tcp, peer, listener) = tokio::select! {
            next = rx.recv() => match next {
                Some(accepted) => accepted,
                None => break,
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        let _ = tcp.set_nodelay(true);
        let slot = submission.admit(peer.ip(), listener);
        let (submission, stop) = (submission.clone(), stop.clone());
        let span = tracing::info_span!("smtp", %peer);
        sessions.spawn(
            async move {
                // The slot is held for the whole session.
                match slot {
                    Ok(_slot) => session::run(tcp, peer, &submission, stop).await,
                    Err(why) => session::refuse(tcp, why).await,
                }
            }
            .instrument(span),
        );
        while sessions.try_join_next().is_some() {}
    }
    acceptors.shutdown().await;
    if tokio::time::timeout(DRAIN, async {
        while sessions.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        warn!("SMTP sessions still open after {DRAIN:?}; closing them");
        sessions.shutdown().await;
    }
}
