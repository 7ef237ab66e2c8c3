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
    /// 451 4.3.0
    Defer,
    /// 550 5.1.1
    Refuse,
}

#[derive(Debug, Clone)]
pub struct Received {
    /// The client's address: which source IP the relay sent from.
    pub peer: std::net::SocketAddr,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub data: Vec<u8>,
}

impl Received {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

type Policy = Arc<dyn Fn(&str) -> Reply + Send + Sync>;

#[derive(Clone)]
pub struct SmtpSink {
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    arrived: Arc<Notify>,
}

impl SmtpSink {
    /// Accepts everything at once.
    pub async fn start() -> SmtpSink {
        Self::start_with(Duration::ZERO, |_| Reply::Accept).await
    }

    /// Answers each RCPT with `policy(address)` and waits `delay` before
    /// answering each DATA.
    pub async fn start_with(
        delay: Duration,
        policy: impl Fn(&str) -> Reply + Send + Sync + 'static,
    ) -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
        let port = listener.local_addr().unwrap().port();
        let sink = SmtpSink {
            port,
            received: Arc::default(),
            arrived: Arc::default(),
        };
        let policy: Policy = Arc::new(policy);
        let s = sink.clone();
        tokio::spawn(async move {
            while let Ok((conn, peer)) = listener.accept().await {
                let (s, policy) = (s.clone(), policy.clone());
                tokio::spawn(async move {
                    let _ = s.session(conn, peer, policy, delay).await;
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

    async fn session(
        &self,
        conn: tokio::net::TcpStream,
        peer: std::net::SocketAddr,
        policy: Policy,
        delay: Duration,
    ) -> std::io::Result<()> {
        let (r, mut w) = conn.into_split();
        let mut r = BufReader::new(r);
        w.write_all(b"220 sink.test ESMTP ready\r\n").await?;
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
                w.write_all(b"250-sink.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
                    .await?;
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
                    Reply::Defer => w.write_all(b"451 4.3.0 try again later\r\n").await?,
                    Reply::Refuse => w.write_all(b"550 5.1.1 no such user here\r\n").await?,
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
