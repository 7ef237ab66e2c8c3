//! An SMTP client driven by hand, for the submission and MX tests and
//! smtp-bench: one command, one reply, nothing hidden (lettre hides the
//! refusal codes the tests check).

use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

/// A client over plain TCP or TLS: one reply (all its lines) per call.
pub struct Client<S> {
    pub reader: BufReader<tokio::io::ReadHalf<S>>,
    pub writer: tokio::io::WriteHalf<S>,
}

impl Client<TcpStream> {
    pub async fn connect(addr: std::net::SocketAddr) -> (Client<TcpStream>, String) {
        let mut c = Client::new(TcpStream::connect(addr).await.unwrap());
        let greeting = c.reply().await;
        (c, greeting)
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Client<S> {
    pub fn new(stream: S) -> Self {
        let (r, w) = tokio::io::split(stream);
        Client {
            reader: BufReader::new(r),
            writer: w,
        }
    }

    pub async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(20), self.reader.read_line(&mut line))
                .await
                .expect("a reply in time")
                .unwrap();
            if n == 0 {
                return all;
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] == b' ' {
                return all;
            }
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
        self.writer.flush().await.unwrap();
    }

    pub async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    pub async fn auth(&mut self, key: &str) -> String {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("\0apikey\0{key}"));
        self.cmd(&format!("AUTH PLAIN {token}")).await
    }
}
