//! Sends stored bytes over SMTP, unchanged, on connections mailroom opens
//! itself and keeps per destination.
//!
//! Why not lettre's pooled transport: lettre writes the message body and the
//! closing `CRLF.CRLF` in two writes and then waits for the reply. On a socket
//! with Nagle's algorithm on, the second write waits for the first to be
//! ACKed, and the receiver delays that ACK (40 ms on Linux) because it has
//! nothing to answer yet: every message stalls ~40 ms. So we open the TCP
//! connection ourselves — `TCP_NODELAY`, bound to the stream's source address
//! if one is set — and hand it to lettre's `AsyncSmtpConnection`, which still
//! speaks the protocol (EHLO, STARTTLS, AUTH, MAIL/RCPT/DATA, dot-stuffing).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;
use tokio::net::TcpSocket;
use tokio::sync::Notify;
use tokio::time::timeout;

use super::mx::{MxAnswer, MxResolver};
use super::shaping::runtime::{ConnectionSlot, MAX_WAIT, PoolWatch, ProviderRuntime};
use super::shaping::{Admission, Shaper};
use super::{Route, Smarthost, TlsMode};
use crate::domain::Reply;

/// What one SMTP attempt came to: the server's acceptance, or a refusal.
/// The worker turns it into the recorded [`crate::domain::Outcome`].
pub type Sent = Result<Reply, Refusal>;

/// A refused attempt: a 4xx or 5xx reply, or no server reached — or no
/// attempt at all, held back by shaping (`postponed_until`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reply: Reply,
    /// 5xx: retrying would get the same answer.
    pub permanent: bool,
    /// Not attempted: shaping held the delivery back until this time (the
    /// reply says why). The queue takes it back without counting an attempt.
    pub postponed_until: Option<i64>,
}

impl Refusal {
    fn temporary(reply: Reply) -> Sent {
        Err(Refusal {
            reply,
            permanent: false,
            postponed_until: None,
        })
    }

    fn postponed(until: i64, why: String) -> Refusal {
        Refusal {
            reply: Reply::local(why),
            permanent: false,
            postponed_until: Some(until),
        }
    }
}

/// A pooled connection is dropped after this long unused; servers close
/// idle SMTP sessions after a few minutes anyway.
const IDLE_LIMIT: Duration = Duration::from_secs(60);
/// A shaped connection holds one of its provider's few slots: it is closed
/// after its provider's `idle_timeout` (5 s unless set) — or this soon
/// while another relay waits for one of the slots. Not at once: a delivery
/// of this relay's may be about to take it.
const WANTED_IDLE_LIMIT: Duration = Duration::from_millis(100);

/// Where one SMTP session goes.
#[derive(Debug, Clone)]
struct Destination {
    host: String,
    port: u16,
    tls: TlsMode,
    credentials: Option<(String, String)>,
}

impl Destination {
    fn key(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Why a send failed before or beside an SMTP reply.
#[derive(Debug)]
enum SendError {
    /// lettre's error: an SMTP reply (with its code) or a protocol/network fault.
    Smtp(SmtpError),
    /// Couldn't reach or set up a session with the host.
    Connect(String),
    Timeout,
    /// Shaping held it back: no connection slot or rate.
    Postponed(i64, String),
}

impl SendError {
    /// No SMTP reply: the host was not talked to (try the next MX).
    fn unreached(&self) -> bool {
        match self {
            SendError::Smtp(e) => e.status().is_none(),
            SendError::Connect(_) | SendError::Timeout => true,
            SendError::Postponed(..) => false,
        }
    }
}

/// One stream's way out: its own route, source address and connections, so
/// the streams never share a connection or an IP.
pub struct Sender {
    route: Route,
    hello: ClientId,
    timeout: Duration,
    pool_size: usize,
    source_address: Option<IpAddr>,
    mx_port: u16,
    mx: Option<MxResolver>,
    /// Per-provider limits and reply rules (the `mx` route only).
    shaper: Option<Arc<Shaper>>,
    idle: Mutex<HashMap<String, Vec<Pooled>>>,
    /// Notified when a connection goes back to the pool, for deliveries
    /// waiting for a connection slot.
    freed: Notify,
}

/// An idle connection, with the shaping slot it holds (if shaped).
struct Pooled {
    conn: AsyncSmtpConnection,
    since: Instant,
    slot: Option<ConnectionSlot>,
}

impl Pooled {
    fn stale(&self) -> bool {
        let limit = match &self.slot {
            None => IDLE_LIMIT,
            // Another relay waits for this provider's slots: an idle
            // connection here (none of this relay's deliveries took it)
            // gives its slot up.
            Some(s) if s.wanted_elsewhere() => WANTED_IDLE_LIMIT,
            Some(s) => s.idle_timeout(),
        };
        self.since.elapsed() >= limit || self.conn.has_broken()
    }
}

/// How a [`Sender`] connects.
pub struct SenderOptions<'a> {
    pub hello: &'a str,
    pub timeout: Duration,
    /// Idle connections kept per destination.
    pub pool_size: usize,
    pub source_address: Option<IpAddr>,
    pub dns_servers: &'a [SocketAddr],
    pub mx_port: u16,
    /// Shaping for the `mx` route; other routes ignore it.
    pub shaper: Option<Arc<Shaper>>,
}

impl Sender {
    /// # Errors
    /// No system DNS configuration for the `mx` route.
    pub fn new(route: Route, opts: SenderOptions<'_>) -> anyhow::Result<Self> {
        let (mx, shaper) = match &route {
            Route::Mx => (Some(MxResolver::new(opts.dns_servers)?), opts.shaper),
            _ => (None, None),
        };
        Ok(Sender {
            route,
            hello: ClientId::Domain(opts.hello.to_owned()),
            timeout: opts.timeout,
            pool_size: opts.pool_size.clamp(1, 1000),
            source_address: opts.source_address,
            mx_port: opts.mx_port,
            mx,
            shaper,
            idle: Mutex::new(HashMap::new()),
            freed: Notify::new(),
        })
    }

    pub fn route(&self) -> &Route {
        &self.route
    }

    /// Closes pooled connections idle too long (freeing their shaping
    /// slots). The worker calls this at least every half second.
    pub fn reap_idle(&self) {
        let stale: Vec<Pooled> = {
            let mut idle = self.idle.lock().expect("pool lock");
            let mut out = Vec::new();
            for list in idle.values_mut() {
                let (old, keep): (Vec<_>, Vec<_>) = list.drain(..).partition(Pooled::stale);
                *list = keep;
                out.extend(old);
            }
            idle.retain(|_, l| !l.is_empty());
            out
        };
        // Dropped outside the lock: each frees its slot.
        drop(stale);
    }

    /// Sends `raw` to one recipient.
    pub async fn send(&self, envelope: &Envelope, raw: &[u8], domain: &str) -> Sent {
        match &self.route {
            Route::Capture => Ok(Reply::local("captured (capture mode: not sent)")),
            Route::Smarthost(s) => {
                let dest = smarthost_destination(s);
                classify(
                    self.send_to(&dest, envelope, raw, None).await,
                    Some(s.display.clone()),
                )
            }
            Route::Mx => self.send_mx(envelope, raw, domain).await,
        }
    }

    async fn send_mx(&self, envelope: &Envelope, raw: &[u8], domain: &str) -> Sent {
        let resolver = self.mx.as_ref().expect("resolver built with the mx route");
        let hosts = match resolver.lookup(domain).await {
            Ok(MxAnswer::Hosts(h)) => h,
            Ok(MxAnswer::NullMx) => {
                return Err(Refusal {
                    postponed_until: None,
                    reply: Reply {
                        code: Some(556),
                        text: format!(
                            "5.1.10 {domain} publishes a null MX and accepts no mail (RFC 7505)"
                        ),
                        host: None,
                    },
                    permanent: true,
                });
            }
            Err(e) => return Refusal::temporary(Reply::local(e.to_string())),
        };
        let shaped = self
            .shaper
            .as_ref()
            .map(|s| (s, s.provider(domain, hosts.first().map(String::as_str))));
        if let Some((shaper, p)) = &shaped
            && let Admission::Postpone { until, why } = shaper.admit(p).await
        {
            return Err(Refusal::postponed(until, why));
        }
        let mut last = Refusal::temporary(Reply::local(format!("no MX host for {domain}")));
        let mut tried = false;
        for host in hosts {
            let dest = Destination {
                host: host.clone(),
                port: self.mx_port,
                tls: TlsMode::Opportunistic,
                credentials: None,
            };
            let result = self
                .send_to(&dest, envelope, raw, shaped.as_ref().map(|(_, p)| p))
                .await;
            // Only a host we could not talk to sends us to the next MX; an
            // SMTP answer from any of them is the domain's answer.
            let unreached = result.as_ref().err().is_some_and(SendError::unreached);
            let outcome = classify(result, Some(host));
            if let Some((shaper, p)) = &shaped {
                match &outcome {
                    Ok(reply) => shaper.observe(p, reply, true).await,
                    Err(r) if r.postponed_until.is_none() => {
                        shaper.observe(p, &r.reply, false).await;
                    }
                    Err(_) => {}
                }
            }
            // Postponed at a later host after an earlier one could not be
            // reached: that was a real attempt, and postponing would spend
            // the provider's connection rate on the dead host again next
            // time, round after round — defer on the earlier failure.
            let postponed = outcome
                .as_ref()
                .err()
                .is_some_and(|r| r.postponed_until.is_some());
            if postponed && tried {
                return last;
            }
            if !unreached {
                return outcome;
            }
            tried = true;
            last = outcome;
        }
        last
    }

    /// One SMTP transaction on a pooled connection, or a new one. A pooled
    /// connection the server has meanwhile closed gets one retry on a fresh
    /// connection, so an idle timeout never costs a deferral.
    async fn send_to(
        &self,
        dest: &Destination,
        envelope: &Envelope,
        raw: &[u8],
        shaped: Option<&Arc<ProviderRuntime>>,
    ) -> Result<Response, SendError> {
        let key = dest.key();
        // However often a pooled connection comes free and is taken by
        // another delivery first, this one waits MAX_WAIT in all.
        let deadline = tokio::time::Instant::now() + MAX_WAIT;
        let mut tries = 0;
        while tries < 2 {
            let (mut conn, mut slot, reused) = match self.checkout(&key) {
                Some((c, slot)) => (c, slot, true),
                None => {
                    let slot = match shaped {
                        Some(p) => match self.slot_for(p, &key, deadline).await? {
                            Some(slot) => Some(slot),
                            // One of ours to this host came free meanwhile.
                            None => continue,
                        },
                        None => None,
                    };
                    (self.connect(dest).await?, slot, false)
                }
            };
            tries += 1;
            if let Some(s) = &mut slot {
                s.uses += 1;
            }
            match timeout(self.timeout, conn.send(envelope, raw)).await {
                Err(_) => return Err(SendError::Timeout),
                Ok(Ok(resp)) => {
                    self.checkin(key, conn, slot).await;
                    return Ok(resp);
                }
                Ok(Err(e)) => {
                    if reused && e.status().is_none() {
                        continue;
                    }
                    if !conn.has_broken() {
                        self.checkin(key, conn, slot).await;
                    }
                    return Err(SendError::Smtp(e));
                }
            }
        }
        Err(SendError::Connect(format!(
            "{key}: pooled and fresh connection both failed"
        )))
    }

    fn checkout(&self, key: &str) -> Option<(AsyncSmtpConnection, Option<ConnectionSlot>)> {
        let mut stale = Vec::new();
        let found = {
            let mut idle = self.idle.lock().expect("pool lock");
            let list = idle.get_mut(key)?;
            let mut found = None;
            while let Some(p) = list.pop() {
                if p.stale() {
                    stale.push(p);
                } else {
                    found = Some((p.conn, p.slot));
                    break;
                }
            }
            found
        };
        drop(stale);
        found
    }

    /// Back to the pool — unless it has carried its provider's
    /// `max_deliveries_per_connection`, another relay waits for a slot while
    /// this one holds more than its share, or the pool is full: then closed
    /// (QUIT), which frees its slot.
    async fn checkin(&self, key: String, conn: AsyncSmtpConnection, slot: Option<ConnectionSlot>) {
        let unwanted = if slot.as_ref().is_some_and(ConnectionSlot::give_up) {
            Some((conn, slot))
        } else {
            self.pool(key, conn, slot)
        };
        let Some((mut conn, slot)) = unwanted else {
            self.freed.notify_waiters();
            return;
        };
        let _ = timeout(Duration::from_secs(5), conn.quit()).await;
        drop(slot);
    }

    /// Into the pool; given back if the pool for `key` is full.
    fn pool(
        &self,
        key: String,
        conn: AsyncSmtpConnection,
        slot: Option<ConnectionSlot>,
    ) -> Option<(AsyncSmtpConnection, Option<ConnectionSlot>)> {
        let mut idle = self.idle.lock().expect("pool lock");
        let list = idle.entry(key).or_default();
        if list.len() >= self.pool_size {
            return Some((conn, slot));
        }
        list.push(Pooled {
            conn,
            since: Instant::now(),
            slot,
        });
        None
    }

    /// A slot for a new connection to `key` of provider `p`. With every
    /// local slot taken, an idle connection of the same provider to another
    /// host is closed to free one.
    /// `None`: a connection of ours to `key` came free while waiting.
    async fn slot_for(
        &self,
        p: &Arc<ProviderRuntime>,
        key: &str,
        deadline: tokio::time::Instant,
    ) -> Result<Option<ConnectionSlot>, SendError> {
        let shaper = self.shaper.as_ref().expect("shaped sends have a shaper");
        if !shaper.connection_free(p) {
            let victim = {
                let mut idle = self.idle.lock().expect("pool lock");
                idle.iter_mut()
                    .filter(|(k, _)| k.as_str() != key)
                    .find_map(|(_, list)| {
                        let i = list.iter().position(|c| {
                            c.slot
                                .as_ref()
                                .is_some_and(|s| s.provider() == p.provider.name)
                        })?;
                        Some(list.swap_remove(i))
                    })
            };
            drop(victim);
        }
        let has_idle = || {
            self.idle
                .lock()
                .expect("pool lock")
                .get(key)
                .is_some_and(|l| l.iter().any(|c| !c.stale()))
        };
        let watch = PoolWatch {
            freed: &self.freed,
            has_idle: &has_idle,
        };
        shaper
            .connection_slot(p, &watch, deadline)
            .await
            .map_err(|a| match a {
                Admission::Postpone { until, why } => SendError::Postponed(until, why),
                Admission::Go => unreachable!("a slot refusal always postpones"),
            })
    }

    async fn connect(&self, dest: &Destination) -> Result<AsyncSmtpConnection, SendError> {
        let mut conn = if dest.tls == TlsMode::Wrapper {
            // Implicit TLS from the first byte: lettre opens this socket itself.
            let tls = tls_parameters(&dest.host, true)?;
            AsyncSmtpConnection::connect_tokio1(
                (dest.host.as_str(), dest.port),
                Some(self.timeout),
                &self.hello,
                Some(tls),
                self.source_address,
            )
            .await
            .map_err(SendError::Smtp)?
        } else {
            let stream = self.tcp_connect(&dest.host, dest.port).await?;
            let mut conn = timeout(
                self.timeout,
                AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello),
            )
            .await
            .map_err(|_| SendError::Timeout)?
            .map_err(SendError::Smtp)?;
            match dest.tls {
                TlsMode::Required | TlsMode::Opportunistic if conn.can_starttls() => {
                    // Opportunistic TLS to MX hosts doesn't verify certificates,
                    // as MTAs do (RFC 7435): it still beats plain text.
                    let tls = tls_parameters(&dest.host, dest.tls == TlsMode::Required)?;
                    timeout(self.timeout, conn.starttls(tls, &self.hello))
                        .await
                        .map_err(|_| SendError::Timeout)?
                        .map_err(SendError::Smtp)?;
                }
                TlsMode::Required => {
                    return Err(SendError::Connect(format!(
                        "{} does not offer STARTTLS, which tls=required asks for",
                        dest.host
                    )));
                }
                _ => {}
            }
            conn
        };
        if let Some((user, pass)) = &dest.credentials {
            let creds = Credentials::new(user.clone(), pass.clone());
            timeout(
                self.timeout,
                conn.auth(&[Mechanism::Plain, Mechanism::Login], &creds),
            )
            .await
            .map_err(|_| SendError::Timeout)?
            .map_err(SendError::Smtp)?;
        }
        Ok(conn)
    }

    /// A TCP connection with Nagle off, from the source address if set, to
    /// the first of the host's addresses that answers.
    async fn tcp_connect(&self, host: &str, port: u16) -> Result<tokio::net::TcpStream, SendError> {
        let addrs: Vec<SocketAddr> = timeout(self.timeout, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| SendError::Timeout)?
            .map_err(|e| SendError::Connect(format!("resolving {host}: {e}")))?
            .filter(|a| {
                self.source_address
                    .is_none_or(|s| s.is_ipv4() == a.is_ipv4())
            })
            .collect();
        let mut last = format!("{host}: no address to connect to");
        for addr in addrs {
            let attempt = async {
                let socket = if addr.is_ipv4() {
                    TcpSocket::new_v4()
                } else {
                    TcpSocket::new_v6()
                }?;
                if let Some(src) = self.source_address {
                    socket.bind(SocketAddr::new(src, 0))?;
                }
                socket.set_nodelay(true)?;
                socket.connect(addr).await
            };
            match timeout(self.timeout, attempt).await {
                Ok(Ok(stream)) => return Ok(stream),
                Ok(Err(e)) => last = format!("connecting to {addr} ({host}): {e}"),
                Err(_) => last = format!("connecting to {addr} ({host}): timed out"),
            }
        }
        Err(SendError::Connect(last))
    }
}

fn smarthost_destination(s: &Smarthost) -> Destination {
    Destination {
        host: s.host.clone(),
        port: s.port,
        tls: s.tls,
        credentials: s.credentials.clone(),
    }
}

fn tls_parameters(host: &str, verify: bool) -> Result<TlsParameters, SendError> {
    TlsParameters::builder(host.to_owned())
        .dangerous_accept_invalid_certs(!verify)
        .dangerous_accept_invalid_hostnames(!verify)
        .build()
        .map_err(|e| SendError::Connect(format!("TLS set-up for {host}: {e}")))
}

/// An attempt's result: 2xx accepted, 5xx refused for good, anything else
/// (4xx, connection, TLS, timeout) refused for now.
fn classify(result: Result<Response, SendError>, host: Option<String>) -> Sent {
    let local = |text: String, host: Option<String>| Reply {
        code: None,
        text,
        host,
    };
    match result {
        Ok(resp) => Ok(Reply {
            code: Some(u16::from(resp.code())),
            text: resp.message().collect::<Vec<_>>().join(" "),
            host,
        }),
        Err(SendError::Smtp(e)) => Err(Refusal {
            reply: Reply {
                code: e.status().map(u16::from),
                text: error_chain(&e),
                host,
            },
            permanent: e.is_permanent(),
            postponed_until: None,
        }),
        Err(SendError::Connect(text)) => Refusal::temporary(local(text, host)),
        Err(SendError::Postponed(until, why)) => Err(Refusal::postponed(until, why)),
        Err(SendError::Timeout) => Refusal::temporary(local("SMTP timeout".into(), host)),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        // lettre's messages often repeat their source's text already.
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        src = inner.source();
    }
    s
}
