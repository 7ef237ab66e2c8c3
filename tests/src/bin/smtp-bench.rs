//! SMTP relaying, mailroom and Postfix side by side (docs/performance.md):
//! N messages of ~2 KB over S concurrent sessions into the relay, which
//! delivers them to an SMTP sink on loopback; measured: the rate at which
//! the relay answered `250` (accepted and committed), and the rate end to
//! end (the last message at the sink).
//!
//! - mailroom: the release binary (`MAILROOM_BIN`) with `[submission]` on
//!   loopback, AUTH PLAIN with an API key (plaintext: loopback, like the
//!   Postfix side), DKIM Ed25519 or RSA-2048, SQLite; this program is the
//!   client (Postfix's smtp-source has no AUTH).
//! - Postfix (with `--postfix`): the local Postfix, reconfigured on
//!   loopback to relay everything to the sink, fed by `smtp-source`.
//!
//! Usage: MAILROOM_BIN=target/release/mailroom smtp-bench [N] [SESSIONS] [--postfix]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mailroom_e2e::relay::{Relay, create_key, keygen};
use mailroom_e2e::smtp_client::Client;
use mailroom_e2e::smtp_sink::SmtpSink;

/// ~2 KB, like a receipt (smtp-source -l 2048 on the Postfix side).
fn message(i: usize, from: &str) -> String {
    let line = "Thank you for your order. Your items will ship within two business days.\r\n";
    format!(
        "From: <{from}>\r\nTo: <customer{i}@example.com>\r\nSubject: Your receipt #{i}\r\n\r\n{}.\r\n",
        line.repeat(26)
    )
}

/// One session: EHLO, AUTH, then its share of the messages.
async fn session(
    addr: std::net::SocketAddr,
    key: String,
    from: String,
    next: Arc<AtomicUsize>,
    n: usize,
) {
    let (mut c, _) = Client::connect(addr).await;
    c.cmd("EHLO bench").await;
    assert!(c.auth(&key).await.starts_with("235"));
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= n {
            break;
        }
        // MAIL, RCPT and DATA pipelined, then the message.
        c.send(
            format!("MAIL FROM:<{from}>\r\nRCPT TO:<customer{i}@example.com>\r\nDATA\r\n")
                .as_bytes(),
        )
        .await;
        for _ in 0..3 {
            c.reply().await;
        }
        c.send(message(i, &from).as_bytes()).await;
        let done = c.reply().await;
        assert!(done.starts_with("250"), "{done}");
    }
    c.send(b"QUIT\r\n").await;
}

async fn wait_for(sink: &SmtpSink, n: usize) {
    while sink.count() < n {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn mailroom(n: usize, sessions: usize, rsa: bool) -> (f64, f64) {
    let sink = SmtpSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("bench.db").display());
    let (domain, algorithm) = if rsa {
        ("rsa.example", "rsa")
    } else {
        ("shop.example", "ed25519")
    };
    let key = keygen(dir.path(), domain, "s1", algorithm);
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "database = \"{db}\"\n[[dkim]]\ndomain = \"{domain}\"\nselector = \"s1\"\nkey = \"{}\"\n\
             [limits]\nrequests_per_second = 0\n\
             [submission]\nlisten = [\"127.0.0.1:0\"]\nallow_plaintext_auth = true\n\
             [streams.transactional]\nroute = \"{}\"\nconcurrency = 64\n",
            key.path.display(),
            sink.url()
        ),
    )
    .unwrap();
    let api_key = create_key(&db, "bench", &["transactional"]);
    let relay = Relay::start(&config, &[]);
    let addr = relay.listening("SMTP submission").await;
    let from = format!("orders@{domain}");
    let next = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let tasks: Vec<_> = (0..sessions)
        .map(|_| {
            tokio::spawn(session(
                addr,
                api_key.clone(),
                from.clone(),
                next.clone(),
                n,
            ))
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let accepted = t.elapsed();
    wait_for(&sink, n).await;
    let delivered = t.elapsed();
    relay.terminate().await;
    (
        n as f64 / accepted.as_secs_f64(),
        n as f64 / delivered.as_secs_f64(),
    )
}

fn postconf(settings: &[String]) {
    let ok = std::process::Command::new("postconf")
        .arg("-e")
        .args(settings)
        .status()
        .expect("postconf")
        .success();
    assert!(ok, "postconf failed");
}

async fn postfix(n: usize, sessions: usize) -> (f64, f64) {
    let sink = SmtpSink::start().await;
    let port = sink.url().rsplit(':').next().unwrap().to_owned();
    // Loopback only, relaying everything to the sink, nothing delivered
    // locally; as many parallel deliveries as mailroom's sessions.
    postconf(
        &[
            "inet_interfaces = loopback-only",
            "inet_protocols = ipv4",
            "mynetworks = 127.0.0.0/8",
            "mydestination =",
            &format!("relayhost = [127.0.0.1]:{port}"),
            "default_destination_concurrency_limit = 64",
            "smtp_destination_concurrency_limit = 64",
            "default_process_limit = 200",
        ]
        .map(String::from),
    );
    let _ = std::process::Command::new("postfix").arg("stop").status();
    assert!(
        std::process::Command::new("postfix")
            .arg("start")
            .status()
            .unwrap()
            .success()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t = Instant::now();
    let status = tokio::process::Command::new("smtp-source")
        .args([
            "-s",
            &sessions.to_string(),
            "-m",
            &n.to_string(),
            "-l",
            "2048",
            "-f",
            "orders@shop.example",
            "-t",
            "customer@example.com",
            "127.0.0.1:25",
        ])
        .status()
        .await
        .expect("smtp-source");
    assert!(status.success());
    let accepted = t.elapsed();
    wait_for(&sink, n).await;
    let delivered = t.elapsed();
    let _ = std::process::Command::new("postfix").arg("stop").status();
    (
        n as f64 / accepted.as_secs_f64(),
        n as f64 / delivered.as_secs_f64(),
    )
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let numbers: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let n = numbers.first().copied().unwrap_or(10_000);
    let sessions = numbers.get(1).copied().unwrap_or(20);
    let with_postfix = args.iter().any(|a| a == "--postfix");
    println!(
        "SMTP relaying: {n} messages × ~2 KB, {sessions} sessions; msg/s accepted (250) / delivered to the sink"
    );
    // Alternating rounds: this machine drifts.
    for round in 1..=2 {
        let (a, d) = mailroom(n, sessions, false).await;
        println!("round {round} mailroom Ed25519:  {a:>7.0} / {d:>7.0}");
        let (a, d) = mailroom(n, sessions, true).await;
        println!("round {round} mailroom RSA-2048: {a:>7.0} / {d:>7.0}");
        if with_postfix {
            let (a, d) = postfix(n, sessions).await;
            println!("round {round} Postfix:           {a:>7.0} / {d:>7.0}");
        }
    }
}
