//! Runs the real `mailroom` binary.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

/// The `mailroom` binary: `$MAILROOM_BIN` if set (the benchmark points it at
/// a release build), else the workspace's debug build, built once per run.
pub fn binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            if let Some(bin) = std::env::var_os("MAILROOM_BIN") {
                return PathBuf::from(bin);
            }
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                // The whole workspace's binaries: the same feature set as
                // `cargo test --workspace`, so nothing is compiled twice.
                .args(["build", "--quiet", "--workspace", "--bins"])
                .status()
                .expect("running cargo build");
            assert!(status.success(), "building mailroom failed");
            // target/<profile>/deps/<this test> -> target/<profile>/mailroom
            let exe = std::env::current_exe().unwrap();
            exe.parent().unwrap().parent().unwrap().join("mailroom")
        })
        .clone()
}

/// Runs `mailroom ARGS` to completion; returns (exit code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary())
        .args(args)
        .output()
        .expect("running mailroom");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The database for a test: a SQLite file in `dir`, or a fresh schema in
/// the test PostgreSQL.
pub async fn database(dir: &Path, postgres: bool) -> Option<String> {
    if !postgres {
        return Some(format!("sqlite://{}", dir.join("mailroom.db").display()));
    }
    let Ok(base) = std::env::var("MAILROOM_TEST_DATABASE_URL") else {
        eprintln!("skipped: MAILROOM_TEST_DATABASE_URL not set, PostgreSQL variant not run");
        return None;
    };
    let schema = format!("e2e_{}_{}", std::process::id(), rand_suffix());
    let out = Command::new("psql")
        .args([base.as_str(), "-qc", &format!("CREATE SCHEMA {schema}")])
        .output()
        .expect(
            "psql (PostgreSQL client) must be installed when MAILROOM_TEST_DATABASE_URL is set",
        );
    assert!(
        out.status.success(),
        "creating schema: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{sep}options=-csearch_path%3D{schema}"))
}

fn rand_suffix() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{t}_{}",
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// Writes a relay config to `path`: `database`, unsigned mail allowed, then
/// `rest` (top-level keys first, then tables).
pub fn config_file(path: PathBuf, database: &str, rest: &str) -> PathBuf {
    std::fs::write(
        &path,
        format!("database = \"{database}\"\nallow_unsigned = true\n{rest}"),
    )
    .expect("writing the config");
    path
}

/// A fresh store and a relay config over it.
pub struct Fresh {
    /// Holds the SQLite file and the config; removed on drop.
    pub dir: tempfile::TempDir,
    pub database: String,
    pub config: PathBuf,
}

/// A fresh store — SQLite in a new directory, or a new PostgreSQL schema —
/// and a config file over it with `rest` (see [`config_file`]). `None`
/// when PostgreSQL is asked for and not configured (the test skips).
pub async fn fresh(postgres: bool, rest: &str) -> Option<Fresh> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let database = database(dir.path(), postgres).await?;
    let config = config_file(dir.path().join("c.toml"), &database, rest);
    Some(Fresh {
        dir,
        database,
        config,
    })
}

/// The config lines that route both streams to `url`.
pub fn both_streams_to(url: &str) -> String {
    format!("[streams.transactional]\nroute = \"{url}\"\n[streams.marketing]\nroute = \"{url}\"\n")
}

/// Creates an API key with `mailroom keys create`; returns the key.
/// `grants` are stream names (`--stream`) and scopes (`--scope`: webhooks,
/// lists, suppressions).
pub fn create_key(database: &str, name: &str, grants: &[&str]) -> String {
    let mut args = vec!["keys", "create", "--database", database, "--name", name];
    for g in grants {
        let flag = if matches!(*g, "transactional" | "marketing") {
            "--stream"
        } else {
            "--scope"
        };
        args.extend([flag, g]);
    }
    let (code, out, err) = run_cli(&args);
    assert_eq!(code, 0, "keys create failed: {err}");
    out.lines()
        .last()
        .expect("key on the last line")
        .trim()
        .to_string()
}

/// A DKIM key made by `mailroom dkim keygen`: its file and DNS record.
pub struct DkimKey {
    pub path: PathBuf,
    pub dns_name: String,
    pub dns_value: String,
}

pub fn keygen(dir: &Path, domain: &str, selector: &str, algorithm: &str) -> DkimKey {
    let path = dir.join(format!("{domain}-{selector}.pem"));
    let (code, out, err) = run_cli(&[
        "dkim",
        "keygen",
        "--domain",
        domain,
        "--selector",
        selector,
        "--algorithm",
        algorithm,
        "--out",
        path.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "keygen failed: {err}");
    let lines: Vec<&str> = out.lines().collect();
    let n = lines.len();
    DkimKey {
        path,
        dns_name: lines[n - 2].to_string(),
        dns_value: lines[n - 1].to_string(),
    }
}

/// The socket address after `needle` in a log line: up to the first
/// character no socket address has (a space in text logs, a quote in JSON
/// ones).
fn address_after(line: &str, needle: &str) -> Option<String> {
    let i = line.find(needle)?;
    Some(
        line[i + needle.len()..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || ".:[]".contains(*c))
            .collect(),
    )
}

/// A running relay process.
pub struct Relay {
    child: Child,
    pub base: String,
    pub stdout: Vec<String>,
    /// Every line the relay has written to stderr (its log) so far.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    client: reqwest::Client,
}

impl Relay {
    /// Starts `mailroom serve --config CONFIG --listen 127.0.0.1:0 EXTRA...`
    /// and waits for its "listening on" line.
    pub fn start(config: &Path, extra: &[&str]) -> Relay {
        let mut child = Command::new(binary())
            .args([
                "serve",
                "--config",
                config.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting mailroom serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::<std::sync::Mutex<Vec<String>>>::default();
        let log_writer = log.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("MAILROOM_TEST_LOG").is_some() {
                    eprintln!("[relay] {line}");
                }
                if !sent && let Some(addr) = address_after(&line, "listening on ") {
                    let _ = tx.send(addr);
                    sent = true;
                }
                log_writer.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "relay did not start: {}",
                    String::from_utf8_lossy(&out.stdout)
                );
            }
        };
        // Anything printed before the listening line (the capture-mode key).
        let stdout_lines = Vec::new();
        Relay {
            child,
            base: format!("http://{addr}"),
            stdout: stdout_lines,
            log,
            client: crate::http_client()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
        }
    }

    /// The address in the first log line saying "`what` listening on
    /// ADDR" (e.g. "SMTP submission"), waiting for it up to 30 s.
    pub async fn listening(&self, what: &str) -> std::net::SocketAddr {
        let needle = format!("{what} listening on ");
        for _ in 0..300 {
            for line in self.log() {
                if let Some(addr) = address_after(&line, &needle) {
                    return addr.parse().expect("a socket address");
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no \"{needle}\" line in the relay's log: {:?}", self.log());
    }

    /// The lines the relay has logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Reads what the relay printed on stdout so far (it prints before it
    /// listens, so this doesn't block once started).
    pub fn read_stdout_lines(&mut self, n: usize) -> Vec<String> {
        let out = self.child.stdout.as_mut().unwrap();
        let mut r = BufReader::new(out);
        let mut lines = Vec::new();
        for _ in 0..n {
            let mut l = String::new();
            if r.read_line(&mut l).unwrap_or(0) == 0 {
                break;
            }
            lines.push(l.trim_end().to_string());
        }
        self.stdout.extend(lines.clone());
        lines
    }

    pub async fn post(&self, path: &str, key: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, key, serde_json::to_vec(body).unwrap(), &[])
            .await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        key: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body);
        if !key.is_empty() {
            req = req.bearer_auth(key);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Posts over a bare TCP connection, writing the body while reading the
    /// answer: the relay may answer (413) and close before the body is sent,
    /// which an ordinary HTTP client reports as a broken pipe.
    pub async fn post_streaming(&self, path: &str, key: &str, body: Vec<u8>) -> (u16, Value) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let addr = self.base.trim_start_matches("http://").to_string();
        let conn = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        let (mut r, mut w) = conn.into_split();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let writer = tokio::spawn(async move {
            let _ = w.write_all(head.as_bytes()).await;
            let _ = w.write_all(&body).await;
        });
        let mut resp = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(60), r.read_to_end(&mut resp)).await;
        writer.abort();
        let text = String::from_utf8_lossy(&resp);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        (
            status,
            serde_json::from_str(body).unwrap_or(Value::String(body.to_string())),
        )
    }

    pub async fn get(&self, path: &str, key: &str) -> (u16, Vec<u8>) {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(key)
            .send()
            .await
            .expect("request");
        (resp.status().as_u16(), resp.bytes().await.unwrap().to_vec())
    }

    pub async fn get_json(&self, path: &str, key: &str) -> (u16, Value) {
        let (s, b) = self.get(path, key).await;
        (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
    }

    pub async fn delete(&self, path: &str, key: &str) -> u16 {
        self.client
            .delete(format!("{}{path}", self.base))
            .bearer_auth(key)
            .send()
            .await
            .expect("request")
            .status()
            .as_u16()
    }

    /// Polls `GET /v1/messages/{id}` until `done(status)` holds.
    pub async fn wait_status(
        &self,
        id: &str,
        key: &str,
        limit: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let (code, v) = self.get_json(&format!("/v1/messages/{id}"), key).await;
            assert_eq!(code, 200, "{v}");
            if done(&v) {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "message {id} never reached the expected state: {v:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to finish or release anything.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the process; returns its exit code. Async, so
    /// the test's own servers (the SMTP sink) keep running meanwhile.
    pub async fn terminate(mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.code();
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("relay did not stop within 60 s of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
