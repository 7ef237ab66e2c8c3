//! mailroom's benchmark (see docs/performance.md). Starts the real relay
//! binary (`MAILROOM_BIN`, a release build) on SQLite and measures:
//!
//! 1. API acceptance: messages/s accepted and committed, with N concurrent
//!    clients posting ~2 KB messages (delivery paused, so only acceptance runs).
//! 2. End-to-end delivery to an SMTP sink on loopback, DKIM-signed with
//!    Ed25519 and with RSA-2048: accept + sign + queue + deliver, and the
//!    drain rate of an already-queued backlog.
//! 3. Peak RSS of the relay with 100,000 messages queued.
//!
//! Usage: MAILROOM_BIN=target/release/mailroom mailroom-bench [MESSAGES] [CLIENTS] [RSS_MESSAGES]
//!        MAILROOM_BIN=... mailroom-bench accept [MESSAGES] [CLIENTS]   (phase 1 only)
//! `MAILROOM_BENCH_NO_LIMITS=1` leaves `[limits]` out of the config, for
//! builds older than it.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mailroom_e2e::relay::{Relay, create_key, keygen};
use mailroom_e2e::smtp_sink::SmtpSink;
use serde_json::{Value, json};

fn body(from: &str, i: usize, stream: &str) -> Value {
    // ~2 KB of text and HTML, like a typical receipt.
    let line = "Thank you for your order. Your items will ship within two business days. ";
    let text = line.repeat(12);
    let html = format!("<html><body><p>{}</p></body></html>", line.repeat(12));
    json!({"from": from, "to": [format!("customer{i}@example.com")], "subject": format!("Your receipt #{i}"),
           "text": text, "html": html, "stream": stream})
}

fn config(dir: &Path, database: &str, route: &str, paused: bool) -> std::path::PathBuf {
    let ed = dir.join("shop.example-ed1.pem");
    let rsa = dir.join("rsa.example-rsa1.pem");
    if !ed.exists() {
        keygen(dir, "shop.example", "ed1", "ed25519");
        keygen(dir, "rsa.example", "rsa1", "rsa");
    }
    let path = dir.join(format!("bench-{paused}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"database = "{database}"
[[dkim]]
domain = "shop.example"
selector = "ed1"
key = "{ed}"
[[dkim]]
domain = "rsa.example"
selector = "rsa1"
key = "{rsa}"
{limits}[streams.transactional]
route = "{route}"
concurrency = 64
max_age = "1d"
retry_schedule = ["1s"]
paused = {paused}
[streams.marketing]
route = "{route}"
concurrency = 64
max_age = "1d"
retry_schedule = ["1s"]
paused = {paused}
"#,
            ed = ed.display(),
            rsa = rsa.display(),
            limits = if std::env::var_os("MAILROOM_BENCH_NO_LIMITS").is_some() {
                // For builds from before `[limits]` existed (they refuse
                // unknown settings).
                ""
            } else {
                // The limiter runs on every request but never refuses one
                // here: the benchmark measures the relay, limiter included.
                "[limits]\nrequests_per_second = 1000000\nburst = 1000000\n"
            }
        ),
    )
    .unwrap();
    path
}

/// Posts `n` messages from `clients` concurrent clients; returns elapsed time.
async fn post_all(
    relay: &Relay,
    key: &str,
    from: &str,
    n: usize,
    clients: usize,
    offset: usize,
) -> Duration {
    let client = mailroom_e2e::http_client()
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let url = format!("{}/v1/messages", relay.base);
    // Pre-serialize so the load generator spends its CPU on HTTP, not JSON.
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..n)
            .map(|i| serde_json::to_vec(&body(from, offset + i, "transactional")).unwrap())
            .collect(),
    );
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (client, next, url, key, bodies) = (
            client.clone(),
            next.clone(),
            url.clone(),
            key.to_string(),
            bodies.clone(),
        );
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= bodies.len() {
                    break;
                }
                let resp = client
                    .post(&url)
                    .bearer_auth(&key)
                    .header("content-type", "application/json")
                    .body(bodies[i].clone())
                    .send()
                    .await
                    .expect("post");
                assert_eq!(
                    resp.status().as_u16(),
                    202,
                    "{}",
                    resp.text().await.unwrap_or_default()
                );
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    start.elapsed()
}

fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// CPU time (user + system) process `pid` has used so far, in seconds:
/// fields 14 and 15 of `/proc/PID/stat`, in clock ticks of 1/100 s (Linux's
/// `USER_HZ` on every architecture the project runs on).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => (user + system) / 100.0,
        _ => f64::NAN,
    }
}

/// [`post_all`], measured: (elapsed, messages/s, the relay's CPU time per
/// message in µs).
async fn post_measured(
    relay: &Relay,
    key: &str,
    from: &str,
    n: usize,
    clients: usize,
    offset: usize,
) -> (Duration, f64, f64) {
    let cpu = cpu_seconds(relay.pid());
    let t = post_all(relay, key, from, n, clients, offset).await;
    let cpu_us = (cpu_seconds(relay.pid()) - cpu) * 1e6 / n as f64;
    (t, n as f64 / t.as_secs_f64(), cpu_us)
}

/// `mailroom-bench accept N CLIENTS`: phase 1 alone, then a graceful stop
/// (SIGTERM), so a profiler wrapped around the relay writes its output.
async fn accept_only(n: usize, clients: usize) {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("bench.db").display());
    let paused = config(dir.path(), &db, "smtp://127.0.0.1:9", true);
    let key = create_key(&db, "bench", &["transactional", "marketing"]);
    let relay = Relay::start(&paused, &[]);
    let (t, rate, cpu_us) = post_measured(&relay, &key, "orders@shop.example", n, clients, 0).await;
    println!(
        "acceptance (Ed25519 signing, SQLite, {clients} clients): {n} in {t:.2?} = {rate:.0} msg/s; relay CPU {cpu_us:.0} µs/msg"
    );
    relay.terminate().await;
}

#[tokio::main]
async fn main() {
    if std::env::args().nth(1).as_deref() == Some("accept") {
        let arg = |i: usize, default: usize| {
            std::env::args()
                .nth(i)
                .and_then(|a| a.parse().ok())
                .unwrap_or(default)
        };
        return accept_only(arg(2, 20_000), arg(3, 50)).await;
    }
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(20_000);
    let clients = args.get(1).copied().unwrap_or(50);
    let rss_n = args.get(2).copied().unwrap_or(100_000);
    assert!(
        std::env::var_os("MAILROOM_BIN").is_some(),
        "set MAILROOM_BIN to a release build of mailroom"
    );
    println!(
        "mailroom benchmark: {n} messages, {clients} clients, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // 1. Acceptance, delivery paused.
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("bench.db").display());
    let sink = SmtpSink::start().await;
    let paused = config(dir.path(), &db, &sink.url(), true);
    let key = create_key(&db, "bench", &["transactional", "marketing"]);
    let relay = Relay::start(&paused, &[]);
    let (t, rate, cpu_us) = post_measured(&relay, &key, "orders@shop.example", n, clients, 0).await;
    println!(
        "1. acceptance (Ed25519 signing, SQLite, {clients} clients): {n} in {t:.2?} = {rate:.0} msg/s; relay CPU {cpu_us:.0} µs/msg"
    );
    let t = post_all(&relay, &key, "orders@rsa.example", n, clients, n).await;
    println!(
        "1b. acceptance (RSA-2048 signing, SQLite, {clients} clients): {n} in {:.2?} = {:.0} msg/s",
        t,
        n as f64 / t.as_secs_f64()
    );
    drop(relay);

    // 2a. Drain: the 2n queued messages delivered by a restarted relay.
    let live = config(dir.path(), &db, &sink.url(), false);
    let start = Instant::now();
    let relay = Relay::start(&live, &[]);
    sink.wait_for(2 * n, Duration::from_secs(3600)).await;
    let t = start.elapsed();
    println!(
        "2a. drain of a queued backlog to a loopback SMTP sink: {} in {:.2?} = {:.0} msg/s; relay CPU {:.0} µs/msg (peak RSS {:.1} MB)",
        2 * n,
        t,
        (2 * n) as f64 / t.as_secs_f64(),
        // A fresh process: its CPU time so far is the drain's (and start-up's).
        cpu_seconds(relay.pid()) * 1e6 / (2 * n) as f64,
        peak_rss_mb(relay.pid())
    );

    // 2b. End to end: accept + sign + commit + deliver, per algorithm.
    for (label, from, offset) in [
        ("Ed25519", "orders@shop.example", 2 * n),
        ("RSA-2048", "orders@rsa.example", 3 * n),
    ] {
        let before = sink.count();
        let start = Instant::now();
        post_all(&relay, &key, from, n, clients, offset).await;
        sink.wait_for(before + n, Duration::from_secs(3600)).await;
        let t = start.elapsed();
        println!(
            "2b. end to end, {label}: {n} accepted and delivered in {:.2?} = {:.0} msg/s",
            t,
            n as f64 / t.as_secs_f64()
        );
    }
    println!(
        "    relay peak RSS so far: {:.1} MB",
        peak_rss_mb(relay.pid())
    );
    drop(relay);

    // 3. Peak RSS with rss_n queued (fresh database, delivery paused).
    let dir3 = tempfile::tempdir().unwrap();
    let db3 = format!("sqlite://{}", dir3.path().join("rss.db").display());
    for f in ["shop.example-ed1.pem", "rsa.example-rsa1.pem"] {
        std::fs::copy(dir.path().join(f), dir3.path().join(f)).unwrap();
    }
    let paused3 = config(dir3.path(), &db3, &sink.url(), true);
    let key3 = create_key(&db3, "bench", &["transactional", "marketing"]);
    let relay = Relay::start(&paused3, &[]);
    let (t, rate, cpu_us) =
        post_measured(&relay, &key3, "orders@shop.example", rss_n, clients, 0).await;
    println!(
        "3. {rss_n} queued in {t:.2?} = {rate:.0} msg/s; relay CPU {cpu_us:.0} µs/msg; relay peak RSS {:.1} MB",
        peak_rss_mb(relay.pid())
    );
    let relay2 = {
        drop(relay);
        let live3 = config(dir3.path(), &db3, "smtp://127.0.0.1:9", false);
        Relay::start(&live3, &[])
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    println!(
        "   restarted over {rss_n} queued (delivery failing, retrying): peak RSS {:.1} MB",
        peak_rss_mb(relay2.pid())
    );
}
