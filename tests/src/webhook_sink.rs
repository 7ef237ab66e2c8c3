//! An HTTP endpoint on loopback that records the webhook POSTs it gets and
//! answers with the status each test asks for (to exercise retries).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub struct Hit {
    /// Header names lower-cased.
    pub headers: HashMap<String, String>,
    pub body: String,
    /// The status this hit was answered with.
    pub answered: u16,
}

impl Hit {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("webhook body is JSON")
    }
}

#[derive(Clone)]
pub struct WebhookSink {
    pub url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
}

type Policy = Arc<dyn Fn(usize) -> u16 + Send + Sync>;

impl WebhookSink {
    /// Answers the n-th request (0-based) with `status(n)`.
    pub async fn start(status: impl Fn(usize) -> u16 + Send + Sync + 'static) -> WebhookSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let policy: Policy = Arc::new(status);
        let h = hits.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (h, policy) = (h.clone(), policy.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, h, policy).await;
                });
            }
        });
        WebhookSink { url, hits }
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Waits until `pred` holds for the hits so far.
    pub async fn wait_until(&self, limit: Duration, pred: impl Fn(&[Hit]) -> bool) -> Vec<Hit> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let hits = self.hits();
            if pred(&hits) {
                return hits;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "webhook condition not met; got {hits:#?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

async fn serve(
    conn: tokio::net::TcpStream,
    hits: Arc<Mutex<Vec<Hit>>>,
    policy: Policy,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).await?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        reader.read_exact(&mut body).await?;
        let status = {
            let mut hits = hits.lock().unwrap();
            let status = policy(hits.len());
            hits.push(Hit {
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
                answered: status,
            });
            status
        };
        let resp = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
        reader.get_mut().write_all(resp.as_bytes()).await?;
    }
}

/// Checks a `Mailroom-Signature` header the way docs/webhooks.md tells
/// receivers to: HMAC-SHA256 of `t.body` under the secret.
pub fn signature_ok(secret: &str, header: &str, body: &str) -> bool {
    use hmac::{Hmac, Mac as _};
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = Some(x),
            Some(("v1", x)) => v1 = Some(x),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let Ok(expected) = hex::decode(v1) else {
        return false;
    };
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    mac.verify_slice(&expected).is_ok()
}
