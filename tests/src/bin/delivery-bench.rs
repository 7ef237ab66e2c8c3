//! End-to-end delivery with one and two relays (docs/performance.md): N
//! messages posted in batches of 500 through the relays (round robin),
//! delivered to an SMTP sink on loopback; measured: messages per second
//! from the first post to the last message at the sink.
//!
//! Set-ups, run in alternating rounds (this machine drifts):
//! - `sqlite mx`: one relay, SQLite, the `mx` route with shaping (the sink
//!   is provider "sink": 64 connections, 1000 deliveries per connection,
//!   message rate 1,000,000/s so the GCRA runs on every message, no
//!   connection rate);
//! - `sqlite smarthost`: the same relay and sink through the smarthost route
//!   (no MX lookup, no shaping): the difference is shaping's cost;
//! - `postgres mx ×1`, `postgres mx ×2`: one or two relays on one database
//!   (needs MAILROOM_TEST_DATABASE_URL), both delivering.
//!
//! Usage: MAILROOM_BIN=target/release/mailroom delivery-bench [N] [ROUNDS]
//! (`BENCH_SETUPS=0,1`: only the listed set-ups, by their index above)

use std::time::{Duration, Instant};

use mailroom_e2e::relay::{self, Relay, create_key};
use mailroom_e2e::smtp_sink::SmtpSink;
use serde_json::json;

#[derive(Clone, Copy)]
struct SetUp {
    name: &'static str,
    postgres: bool,
    relays: usize,
    mx: bool,
}

async fn run(s: SetUp, n: usize) -> Option<f64> {
    let sink = SmtpSink::start().await;
    let dns = mailroom_e2e::dns::serve_mx(std::collections::HashMap::from([(
        "example.com".to_string(),
        vec![(10, "localhost.".to_string())],
    )]))
    .await;
    let route = if s.mx { "mx".to_string() } else { sink.url() };
    let rest = format!(
        "dns_servers = [\"{dns}\"]\nmx_port = {port}\n\
         [limits]\nrequests_per_second = 0\n\
         [shaping.provider.sink]\nmx_suffixes = [\"localhost\"]\nmax_connections = 64\n\
         max_deliveries_per_connection = 1000\nmessage_rate = \"1000000/s\"\nconnection_rate = \"none\"\n\
         [streams.transactional]\nroute = \"{route}\"\nconcurrency = 64\n",
        port = sink.port
    );
    let f = relay::fresh(s.postgres, &rest).await?;
    let key = create_key(&f.database, "bench", &["transactional"]);
    let mut relays = vec![Relay::start(&f.config, &[])];
    let mut dirs = Vec::new();
    for _ in 1..s.relays {
        let d = tempfile::tempdir().unwrap();
        let c = d.path().join("c.toml");
        std::fs::copy(&f.config, &c).unwrap();
        relays.push(Relay::start(&c, &[]));
        dirs.push(d);
    }
    let batches: Vec<Vec<serde_json::Value>> = (0..n)
        .map(|i| json!({"from": "orders@shop.example", "to": [format!("c{i}@example.com")], "subject": format!("Your receipt #{i}"), "text": "Thank you for your order. Your items will ship within two business days.\n".repeat(26)}))
        .collect::<Vec<_>>()
        .chunks(500)
        .map(<[_]>::to_vec)
        .collect();
    let t = Instant::now();
    // One batch after another, alternating between the relays: delivery
    // runs while the rest is posted.
    for (i, b) in batches.iter().enumerate() {
        let relay = &relays[i % relays.len()];
        let (code, v) = relay.post("/v1/messages/batch", &key, &json!(b)).await;
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["accepted"].as_u64(), Some(b.len() as u64), "{v}");
    }
    while sink.count() < n {
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "stalled at {}",
            sink.count()
        );
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    if std::env::var_os("BENCH_DEBUG").is_some() {
        let peers: std::collections::HashSet<_> = sink.received().iter().map(|r| r.peer).collect();
        eprintln!(
            "{} connections, most at once {}",
            peers.len(),
            sink.most_connections()
        );
        let log = relays[0].log();
        let p: Vec<_> = log.iter().filter(|l| l.contains("postponed")).collect();
        eprintln!("{} postponed; first: {:?}", p.len(), p.first());
    }
    for r in relays {
        r.terminate().await;
    }
    Some(rate)
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(5_000);
    let rounds = args.get(1).copied().unwrap_or(3);
    let setups = [
        SetUp {
            name: "sqlite, 1 relay, mx route (shaped)",
            postgres: false,
            relays: 1,
            mx: true,
        },
        SetUp {
            name: "sqlite, 1 relay, smarthost (no shaping)",
            postgres: false,
            relays: 1,
            mx: false,
        },
        SetUp {
            name: "postgres, 1 relay, mx route (shaped)",
            postgres: true,
            relays: 1,
            mx: true,
        },
        SetUp {
            name: "postgres, 2 relays, mx route (shaped)",
            postgres: true,
            relays: 2,
            mx: true,
        },
    ];
    println!(
        "delivery: {n} messages × ~2 KB posted in batches of 500; msg/s first post → last at the sink"
    );
    // BENCH_SETUPS=0,1 runs only those set-ups (0 and 1: shaping's cost).
    let only: Option<Vec<usize>> = std::env::var("BENCH_SETUPS")
        .ok()
        .map(|v| v.split(',').filter_map(|i| i.trim().parse().ok()).collect());
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); setups.len()];
    for round in 1..=rounds {
        // Every other round in reverse order, so neither of a pair always
        // runs first (this machine drifts within a round too).
        let mut order: Vec<usize> = (0..setups.len())
            .filter(|i| only.as_ref().is_none_or(|o| o.contains(i)))
            .collect();
        if round % 2 == 0 {
            order.reverse();
        }
        for i in order {
            let s = setups[i];
            if let Some(r) = run(s, n).await {
                println!("round {round}: {:<42} {r:>8.0}", s.name);
                results[i].push(r);
            }
        }
        if let ([.., shaped], [.., plain]) = (&results[0][..], &results[1][..])
            && results[0].len() == round
            && results[1].len() == round
        {
            println!(
                "round {round}: shaped / smarthost {:+.1} %",
                (shaped / plain - 1.0) * 100.0
            );
        }
    }
    println!("median of {rounds} rounds:");
    for (s, mut r) in setups.iter().zip(results) {
        if r.is_empty() {
            println!("  {:<42} skipped (no MAILROOM_TEST_DATABASE_URL)", s.name);
            continue;
        }
        r.sort_by(f64::total_cmp);
        println!(
            "  {:<42} {:>8.0}  (runs: {:?})",
            s.name,
            r[r.len() / 2],
            r.iter().map(|x| x.round()).collect::<Vec<_>>()
        );
    }
}
