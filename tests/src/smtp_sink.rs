//! A small SMTP server on loopback that records what it receives and answers
//! as each test asks: accept, defer (4xx), refuse (5xx), or take its time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// How the sink answers a RCPT TO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Accept,
    /// 451 4.3.0 <address>: …
    Defer,
    /// 550 5.1.1 <address>: … (a hard bounce: no such mailbox)
    Refuse,
    /// 554 5.3.0 <address>: … (a permanent failure that is not the
    /// address's: a soft bounce)
    RefuseSoft,
    /// This reply line, as written (e.g. a provider's throttle reply).
    Text(&'static str),
}

#[derive(Debug, Clone)]
pub struct Received {
    /// The client's address: which source IP the relay sent from.
    pub peer: std::net::SocketAddr,
    /// Whether the session had switched to TLS (STARTTLS) before DATA.
    pub tls: bool,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub data: Vec<u8>,
}

impl Received {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// A TLS acceptor with a fresh self-signed certificate for `localhost`.
fn self_signed_acceptor() -> tokio_rustls::TlsAcceptor {
    let key =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    let cert = key.cert.der().clone();
    let pkey = rustls::pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], pkey)
        .expect("server config");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// A byte stream the sink can speak SMTP over: plain TCP, or TLS after STARTTLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

type Policy = Arc<dyn Fn(&str) -> Reply + Send + Sync>;

#[derive(Clone)]
pub struct SmtpSink {
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    /// (user, password) of every AUTH PLAIN the sink was given.
    auths: Arc<Mutex<Vec<(String, String)>>>,
    /// Offers STARTTLS with a self-signed certificate for `localhost`.
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// TLS from the first byte (an `smtps` server) instead of STARTTLS.
    implicit_tls: bool,
    arrived: Arc<Notify>,
    /// Connections open now, and the most ever open at once.
    open: Arc<std::sync::atomic::AtomicUsize>,
    most_open: Arc<std::sync::atomic::AtomicUsize>,
}

impl SmtpSink {
    /// Accepts everything at once.
    pub async fn start() -> SmtpSink {
        Self::start_with(Duration::ZERO, |_| Reply::Accept).await
    }

    /// Accepts everything and offers STARTTLS (self-signed certificate).
    pub async fn start_with_starttls() -> SmtpSink {
        Self::start_inner(
            Duration::ZERO,
            |_| Reply::Accept,
            Some(self_signed_acceptor()),
            false,
        )
        .await
    }

    /// Accepts everything over TLS from the first byte (self-signed certificate).
    pub async fn start_with_implicit_tls() -> SmtpSink {
        Self::start_inner(
            Duration::ZERO,
            |_| Reply::Accept,
            Some(self_signed_acceptor()),
            true,
        )
        .await
    }

    /// Answers each RCPT with `policy(address)` and waits `delay` before
    /// answering each DATA.
    pub async fn start_with(
        delay: Duration,
        policy: impl Fn(&str) -> Reply + Send + Sync + 'static,
    ) -> SmtpSink {
        Self::start_inner(delay, policy, None, false).await
    }

    /// Answers each RCPT with the reply of the first rule whose prefix the
    /// address starts with, else accepts.
    pub async fn answering(rules: &'static [(&'static str, Reply)]) -> SmtpSink {
        Self::start_with(Duration::ZERO, move |rcpt| {
            rules
                .iter()
                .find(|(prefix, _)| rcpt.starts_with(prefix))
                .map_or(Reply::Accept, |(_, reply)| *reply)
        })
        .await
    }

    async fn start_inner(
        delay: Duration,
        policy: impl Fn(&str) -> Reply + Send + Sync + 'static,
        tls: Option<tokio_rustls::TlsAcceptor>,
        implicit_tls: bool,
    ) -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
        let port = listener.local_addr().unwrap().port();
        let sink = SmtpSink {
            port,
            received: Arc::default(),
            auths: Arc::default(),
            tls,
            implicit_tls,
            arrived: Arc::default(),
            open: Arc::default(),
            most_open: Arc::default(),
        };
        let policy: Policy = Arc::new(policy);
        let s = sink.clone();
        tokio::spawn(async move {
            while let Ok((conn, peer)) = listener.accept().await {
                let (s, policy) = (s.clone(), policy.clone());
                use std::sync::atomic::Ordering::SeqCst;
                let now_open = s.open.fetch_add(1, SeqCst) + 1;
                s.most_open.fetch_max(now_open, SeqCst);
                tokio::spawn(async move {
                    // Closed when the session ends, however it ends.
                    struct Open(Arc<std::sync::atomic::AtomicUsize>);
                    impl Drop for Open {
                        fn drop(&mut self) {
                            self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                    let _open = Open(s.open.clone());
                    match (&s.tls, s.implicit_tls) {
                        (Some(acceptor), true) => {
                            if let Ok(tls) = acceptor.clone().accept(conn).await {
                                let _ = s.session(Box::new(tls), peer, policy, delay, true).await;
                            }
                        }
                        _ => {
                            let _ = s.session(Box::new(conn), peer, policy, delay, false).await;
                        }
                    }
                });
            }
        });
        sink
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn auths(&self) -> Vec<(String, String)> {
        self.auths.lock().unwrap().clone()
    }

    /// The most connections that were ever open at once.
    pub fn most_connections(&self) -> usize {
        self.most_open.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// Waits until at least `n` messages have arrived, or panics after `limit`.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.arrived.notified();
            if self.count() >= n {
                return self.received();
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "waited {limit:?} for {n} messages; the sink has {}",
                    self.count()
                );
            }
        }
    }

    /// Waits for the copy of relay message `message_id` to `to` (its VERP
    /// return path names the message), or panics after `limit`.
    pub async fn wait_for_copy(&self, message_id: &str, to: &str, limit: Duration) -> Received {
        let hex = message_id.replace('-', "");
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.arrived.notified();
            if let Some(r) = self.received().into_iter().find(|r| {
                r.mail_from.contains(&hex) && r.rcpt_to.iter().any(|a| a.eq_ignore_ascii_case(to))
            }) {
                return r;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("waited {limit:?} for message {message_id} to {to}");
            }
        }
    }

    fn session(
        &self,
        conn: Box<dyn Io>,
        peer: std::net::SocketAddr,
        policy: Policy,
        delay: Duration,
        tls: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send + '_>> {
        Box::pin(self.session_inner(conn, peer, policy, delay, tls))
    }

    async fn session_inner(
        &self,
        conn: Box<dyn Io>,
        peer: std::net::SocketAddr,
        policy: Policy,
        delay: Duration,
        tls: bool,
    ) -> std::io::Result<()> {
        let (r, mut w) = tokio::io::split(conn);
        let mut r = BufReader::new(r);
        // After STARTTLS the client sends EHLO again without a new greeting.
        if !tls || self.implicit_tls {
            w.write_all(b"220 sink.test ESMTP ready\r\n").await?;
        }
        let mut mail_from = String::new();
        let mut rcpts: Vec<String> = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let cmd = line.trim_end().to_string();
            let upper = cmd.to_ascii_uppercase();
            if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                if self.tls.is_some() && !tls {
                    w.write_all(b"250-sink.test\r\n250-STARTTLS\r\n").await?;
                }
                w.write_all(b"250-sink.test\r\n250-8BITMIME\r\n250-AUTH PLAIN\r\n250 SMTPUTF8\r\n")
                    .await?;
            } else if upper == "STARTTLS"
                && !tls
                && let Some(acceptor) = self.tls.clone()
            {
                w.write_all(b"220 2.0.0 ready to start TLS\r\n").await?;
                let plain = r.into_inner().unsplit(w);
                let stream = acceptor.accept(plain).await?;
                return self
                    .session(Box::new(stream), peer, policy, delay, true)
                    .await;
            } else if upper.starts_with("AUTH PLAIN") {
                let mut b64 = cmd[10..].trim().to_string();
                if b64.is_empty() {
                    w.write_all(b"334 \r\n").await?;
                    let mut l = String::new();
                    r.read_line(&mut l).await?;
                    b64 = l.trim().to_string();
                }
                use base64::Engine as _;
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap_or_default();
                let parts: Vec<String> = raw
                    .split(|b| *b == 0)
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect();
                if parts.len() == 3 {
                    self.auths
                        .lock()
                        .unwrap()
                        .push((parts[1].clone(), parts[2].clone()));
                    w.write_all(b"235 2.7.0 authenticated\r\n").await?;
                } else {
                    w.write_all(b"501 5.5.2 malformed AUTH PLAIN\r\n").await?;
                }
            } else if upper.starts_with("MAIL FROM:") {
                mail_from = addr(&cmd[10..]);
                rcpts.clear();
                w.write_all(b"250 2.1.0 ok\r\n").await?;
            } else if upper.starts_with("RCPT TO:") {
                let a = addr(&cmd[8..]);
                match policy(&a) {
                    Reply::Accept => {
                        rcpts.push(a);
                        w.write_all(b"250 2.1.5 ok\r\n").await?;
                    }
                    // Quoting the address, as Postfix and most MTAs do.
                    Reply::Defer => {
                        w.write_all(format!("451 4.3.0 <{a}>: try again later\r\n").as_bytes())
                            .await?
                    }
                    Reply::Refuse => {
                        w.write_all(
                            format!(
                                "550 5.1.1 <{a}>: Recipient address rejected: no such user here\r\n"
                            )
                            .as_bytes(),
                        )
                        .await?
                    }
                    Reply::RefuseSoft => {
                        w.write_all(
                            format!("554 5.3.0 <{a}>: mail system problem, not delivered\r\n")
                                .as_bytes(),
                        )
                        .await?
                    }
                    Reply::Text(line) => w.write_all(format!("{line}\r\n").as_bytes()).await?,
                }
            } else if upper == "DATA" {
                w.write_all(b"354 go ahead\r\n").await?;
                let mut data = Vec::new();
                loop {
                    let mut l = String::new();
                    if r.read_line(&mut l).await? == 0 {
                        return Ok(());
                    }
                    if l == ".\r\n" {
                        break;
                    }
                    // RFC 5321 §4.5.2: undo dot-stuffing.
                    let l = l.strip_prefix('.').unwrap_or(&l);
                    data.extend_from_slice(l.as_bytes());
                }
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                self.received.lock().unwrap().push(Received {
                    peer,
                    tls,
                    mail_from: mail_from.clone(),
                    rcpt_to: rcpts.clone(),
                    data,
                });
                self.arrived.notify_waiters();
                w.write_all(b"250 2.0.0 queued as sink\r\n").await?;
            } else if upper == "RSET" {
                rcpts.clear();
                w.write_all(b"250 ok\r\n").await?;
            } else if upper == "NOOP" {
                w.write_all(b"250 ok\r\n").await?;
            } else if upper == "QUIT" {
                w.write_all(b"221 bye\r\n").await?;
                return Ok(());
            } else {
                w.write_all(b"502 5.5.2 command not implemented\r\n")
                    .await?;
            }
        }
    }
}

fn addr(s: &str) -> String {
    let s = s.trim();
    match (s.find('<'), s.find('>')) {
        (Some(a), Some(b)) if b > a => s[a + 1..b].to_string(),
        _ => s.split_whitespace().next().unwrap_or("").to_string(),
    }
}
