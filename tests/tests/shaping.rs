//! End to end: traffic shaping per destination provider, reply rules, the
//! destinations API and CLI, and two relays on one PostgreSQL database —
//! one SIGKILLed under load and restarted — holding one connection limit
//! between them and losing nothing.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use mail_parser::MessageParser;
use mailroom_e2e::relay::{self, Relay, create_key};
use mailroom_e2e::smtp_sink::{Reply, SmtpSink};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

/// Config lines for direct MX delivery to the sink (every test domain's
/// MX is `localhost`), with the sink shaped as provider "sink".
fn mx_to_sink(dns: std::net::SocketAddr, port: u16, shaping: &str, streams: &str) -> String {
    format!(
        "dns_servers = [\"{dns}\"]\nmx_port = {port}\n\
         [shaping.provider.sink]\nmx_suffixes = [\"localhost\"]\n{shaping}\n{streams}"
    )
}

async fn mx_zone(domains: &[&str]) -> std::net::SocketAddr {
    let zone = domains
        .iter()
        .map(|d| (d.to_string(), vec![(10, "localhost.".to_string())]))
        .collect::<HashMap<_, _>>();
    mailroom_e2e::dns::serve_mx(zone).await
}

fn message(to: &str, stream: &str) -> Value {
    json!({"from": "shop@shop.example", "to": [to], "subject": "Your order", "text": "Thanks.", "stream": stream})
}

/// The Message-ID local parts the sink has received (the relay's ids).
fn seen_ids(sink: &SmtpSink) -> Vec<String> {
    sink.received()
        .iter()
        .filter_map(|r| {
            let m = MessageParser::default().parse(&r.data)?;
            Some(m.message_id()?.split('@').next()?.to_string())
        })
        .collect()
}

/// A second relay's config: the same database, its own directory (and so
/// its own node id). Keep the directory while the relay runs.
fn second_relay(config: &std::path::Path) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::copy(config, &path).unwrap();
    (dir, path)
}

/// Posts receipt `i` with idempotency key `order-i`; (key, message id).
async fn post(relay: &Relay, key: &str, i: usize) -> (String, String) {
    let body = serde_json::to_vec(&message(&format!("r{i}@x.test"), "transactional")).unwrap();
    let idem = format!("order-{i}");
    let (code, resp) = relay
        .post_raw("/v1/messages", key, body, &[("Idempotency-Key", &idem)])
        .await;
    assert!(code == 202 || code == 200, "{code} {resp}");
    (idem, resp["id"].as_str().unwrap().to_string())
}

/// Two relays share one PostgreSQL database and one provider limit of 3
/// connections. Load goes through both (200 messages: 400 took 53 s after
/// the kill on a slow machine, debug build, and over 60 s beside the rest
/// of the suite); one is SIGKILLed and restarted 3 s
/// later. Every accepted message is delivered within 60 s of the kill, no
/// idempotency key gets two messages, duplicates stay within what was in
/// flight, and the sink never sees more than 3 connections at once.
#[tokio::test]
async fn two_relays_share_a_connection_limit_and_recover_from_a_kill_in_seconds() {
    let sink = SmtpSink::start_with(Duration::from_millis(20), |_| Reply::Accept).await;
    let dns = mx_zone(&["x.test"]).await;
    let Some(a) = relay::fresh(
        true,
        &mx_to_sink(
            dns,
            sink.port,
            "max_connections = 3\nmax_deliveries_per_connection = 20\nmessage_rate = \"none\"",
            "[streams.transactional]\nroute = \"mx\"\nconcurrency = 8\nretry_schedule = [\"1s\"]\n",
        ),
    )
    .await
    else {
        return;
    };
    let (_b_dir, b_config) = second_relay(&a.config);
    let key = create_key(&a.database, "shop", &["transactional"]);
    let relay_a = Relay::start(&a.config, &[]);
    let relay_b = Relay::start(&b_config, &[]);

    let mut accepted: HashMap<String, String> = HashMap::new();
    for i in 0..150 {
        let (k, id) = post(if i % 2 == 0 { &relay_a } else { &relay_b }, &key, i).await;
        accepted.insert(k, id);
    }
    sink.wait_for(40, WAIT).await;
    relay_a.kill();
    let killed = Instant::now();
    let before = sink.count();
    assert!(before < 150, "the kill came too late ({before} delivered)");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let relay_a = Relay::start(&a.config, &[]);
    // More load through both, and every earlier key again: a replay must
    // answer with the first message, never make a second.
    for i in 150..200 {
        let (k, id) = post(if i % 2 == 0 { &relay_a } else { &relay_b }, &key, i).await;
        accepted.insert(k, id);
    }
    for i in (0..150).step_by(7) {
        let (k, id) = post(if i % 2 == 0 { &relay_b } else { &relay_a }, &key, i).await;
        assert_eq!(accepted[&k], id, "idempotency key {k} got a second message");
    }
    let want: HashSet<&String> = accepted.values().collect();
    loop {
        let seen: HashSet<String> = seen_ids(&sink).into_iter().collect();
        if want.iter().all(|id| seen.contains(*id)) {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "not delivered within 60 s of the kill: {} of {}",
            want.iter().filter(|id| !seen.contains(**id)).count(),
            want.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let recovered = killed.elapsed();
    let copies = sink.count();
    assert!(
        copies <= want.len() + 8,
        "{copies} copies of {} messages: more duplicates than deliveries in flight",
        want.len()
    );
    assert!(
        sink.most_connections() <= 3,
        "{} connections at once to a provider limited to 3 across both relays",
        sink.most_connections()
    );
    eprintln!(
        "recovered in {recovered:?}; {copies} copies of {}; most connections {}",
        want.len(),
        sink.most_connections()
    );
    drop(relay_b);
}

/// Delivered count of a relay's own `/metrics` for provider "sink".
async fn delivered_here(relay: &Relay, key: &str) -> u64 {
    let (_, m) = relay.get("/metrics", key).await;
    String::from_utf8_lossy(&m)
        .lines()
        .find(|l| {
            l.starts_with("mailroom_destination_results_total{")
                && l.contains("provider=\"sink\"")
                && l.contains("result=\"delivered\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// Connection slots move to the relay with the mail. Relay A delivers
/// first and keeps its connections — both of the provider's 2 slots — open
/// (idle_timeout 10 min, 1,000 deliveries per connection, so nothing else
/// would ever close them). Then relay B starts and mail comes through it:
/// B finds every slot taken and says so; A closes its idle connections and
/// keeps to its share, so B delivers too — within seconds, never more than
/// 2 connections at once.
#[tokio::test]
async fn a_relay_waiting_for_slots_gets_them_from_one_holding_them_idle() {
    let sink = SmtpSink::start_with(Duration::from_millis(5), |_| Reply::Accept).await;
    let dns = mx_zone(&["x.test"]).await;
    let Some(a) = relay::fresh(
        true,
        &mx_to_sink(
            dns,
            sink.port,
            "max_connections = 2\nmax_deliveries_per_connection = 1000\n\
             message_rate = \"none\"\nconnection_rate = \"none\"\nidle_timeout = \"10m\"",
            "[streams.transactional]\nroute = \"mx\"\nconcurrency = 4\nretry_schedule = [\"1s\"]\n",
        ),
    )
    .await
    else {
        return;
    };
    let (_b_dir, b_config) = second_relay(&a.config);
    let key = create_key(&a.database, "shop", &["transactional", "metrics"]);
    let relay_a = Relay::start(&a.config, &[]);
    for i in 0..40 {
        post(&relay_a, &key, i).await;
    }
    sink.wait_for(40, WAIT).await;
    assert_eq!(delivered_here(&relay_a, &key).await, 40);
    assert_eq!(sink.most_connections(), 2, "A opened both connections");

    let relay_b = Relay::start(&b_config, &[]);
    let started = Instant::now();
    let mut i = 40;
    // Mail through B until B has delivered some itself: both relays claim
    // from the one queue, so B gets part of it, and B can deliver only
    // once A has given a slot up.
    while delivered_here(&relay_b, &key).await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "relay B delivered nothing in 30 s: relay A kept both slots idle"
        );
        for _ in 0..10 {
            post(&relay_b, &key, i).await;
            i += 1;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eprintln!("relay B delivered after {:?}", started.elapsed());
    sink.wait_for(i, WAIT).await;
    assert!(
        sink.most_connections() <= 2,
        "{} connections at once to a provider limited to 2",
        sink.most_connections()
    );
    drop(relay_b);
}

/// A provider's throttle reply suspends it on that stream only (stored,
/// visible in the API, the CLI and the metrics); a per-mailbox reply
/// throttles nobody; resuming by hand is audited and sends what waited.
#[tokio::test]
async fn reply_rules_suspend_one_stream_at_one_provider_and_resume_by_hand() {
    let sink = SmtpSink::answering(&[
        (
            "throttle",
            Reply::Text(
                "421 4.7.28 [127.0.0.1] Our system has detected an unusual rate of unsolicited mail",
            ),
        ),
        (
            "busy",
            Reply::Text(
                "450 4.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional messages from being delivered",
            ),
        ),
    ])
    .await;
    let dns = mx_zone(&["x.test"]).await;
    let f = relay::fresh(
        false,
        &mx_to_sink(
            dns,
            sink.port,
            "[[shaping.rule]]\nname = \"sink-unusual-rate\"\nprovider = \"sink\"\nenhanced = \"4.7.28\"\n\
             action = \"suspend\"\nduration = \"1h\"\n",
            "[streams.transactional]\nroute = \"mx\"\nretry_schedule = [\"1h\"]\n\
             [streams.marketing]\nroute = \"mx\"\nretry_schedule = [\"1h\"]\n",
        ),
    )
    .await
    .unwrap();
    let key = create_key(&f.database, "shop", &["transactional", "marketing"]);
    let admin = create_key(&f.database, "ops", &["admin", "metrics"]);
    let relay = Relay::start(&f.config, &[]);
    let send = |to: &str, stream: &str| {
        let body = message(to, stream);
        let (relay, key) = (&relay, key.clone());
        async move {
            let (code, resp) = relay.post("/v1/messages", &key, &body).await;
            assert_eq!(code, 202, "{resp}");
            resp["id"].as_str().unwrap().to_string()
        }
    };
    let dest = |v: &Value, stream: &str| -> Value {
        v["destinations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["stream"] == stream && d["provider"] == "sink")
            .cloned()
            .unwrap()
    };

    // One mailbox receiving too fast: that recipient retries, nobody else.
    let busy = send("busy@x.test", "transactional").await;
    relay
        .wait_status(&busy, &key, WAIT, |v| {
            v["recipients"][0]["status"] == "deferred"
        })
        .await;
    // The provider's throttle reply on marketing.
    let throttled = send("throttle@x.test", "marketing").await;
    relay
        .wait_status(&throttled, &key, WAIT, |v| {
            v["recipients"][0]["status"] == "deferred"
        })
        .await;
    let (code, v) = relay.get_json("/v1/destinations", &admin).await;
    assert_eq!(code, 200, "{v}");
    let (_, doc) = relay.get_json("/openapi.json", "").await;
    for (path, method) in [
        ("/v1/destinations", "get"),
        ("/v1/destinations/{stream}/{provider}/suspend", "post"),
        ("/v1/destinations/{stream}/{provider}/resume", "post"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    let m = dest(&v, "marketing");
    assert!(m["suspended_until"].is_string(), "{m:#}");
    assert_eq!(m["set_by"], "rule:sink-unusual-rate", "{m:#}");
    assert!(
        m["reason"].as_str().unwrap().contains("unusual rate"),
        "{m:#}"
    );
    let t = dest(&v, "transactional");
    assert!(t["suspended_until"].is_null(), "{t:#}");
    assert!(
        t["last_replies"][0]["text"]
            .as_str()
            .unwrap()
            .contains("4.2.1"),
        "{t:#}"
    );
    assert_eq!(t["limits"]["max_connections"], 10, "the default's");

    // Marketing to the provider waits; transactional goes out.
    let waiting = send("ok@x.test", "marketing").await;
    let receipt = send("ok2@x.test", "transactional").await;
    relay
        .wait_status(&receipt, &key, WAIT, |v| v["status"] == "delivered")
        .await;
    let v = relay
        .wait_status(&waiting, &key, WAIT, |v| {
            v["recipients"][0]["last_reply"]
                .as_str()
                .is_some_and(|r| r.contains("suspended"))
        })
        .await;
    assert_eq!(v["recipients"][0]["status"], "queued", "{v:#}");
    assert_eq!(
        v["recipients"][0]["attempts"], 0,
        "a postponement is not an attempt: {v:#}"
    );
    assert!(
        !sink.received().iter().any(|r| r.rcpt_to == ["ok@x.test"]),
        "delivered while suspended"
    );

    // The CLI sees the same, from the store.
    let config = f.config.to_str().unwrap();
    let (code, out, err) =
        relay::run_cli(&["destinations", "--config", config, "list", "--active"]);
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("marketing") && l.contains("sink"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("suspended until"), "{out}");
    assert!(line.contains("sink-unusual-rate"), "{out}");
    let (_, metrics) = relay.get("/metrics", &admin).await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("mailroom_destination_rule_matches_total{stream=\"marketing\",provider=\"sink\",rule=\"sink-unusual-rate\"} 1"),
        "{metrics}"
    );

    // Control: scoped, checked, audited.
    let path = "/v1/destinations/marketing/sink/resume";
    let (code, _) = relay.post(path, &key, &json!({})).await;
    assert_eq!(code, 403, "needs the admin scope");
    let (code, v) = relay
        .post(
            "/v1/destinations/marketing/nope/suspend",
            &admin,
            &json!({"duration": "1h", "reason": "x"}),
        )
        .await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (404, Some("unknown_provider")),
        "{v}"
    );
    let (code, v) = relay
        .post(
            "/v1/destinations/transactional/sink/suspend",
            &admin,
            &json!({"duration": "forever", "reason": "x"}),
        )
        .await;
    assert_eq!(code, 422, "{v}");
    let (code, v) = relay.post(path, &admin, &json!({})).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["was_limited"], true, "{v}");
    assert!(v["recipients_due_now"].as_u64().unwrap() >= 1, "{v}");
    relay
        .wait_status(&waiting, &key, WAIT, |v| v["status"] == "delivered")
        .await;
    let (code, out, err) = relay::run_cli(&[
        "audit",
        "--database",
        &f.database,
        "--action",
        "destination.",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("destination.resumed") && out.contains("marketing/sink"),
        "{out}"
    );

    // Suspended by hand from the CLI: the API shows who and why.
    let (code, _, err) = cli_suspend(config, "transactional", "sink", "incident 42");
    assert_eq!(code, 0, "{err}");
    let (_, v) = relay.get_json("/v1/destinations", &admin).await;
    let t = dest(&v, "transactional");
    assert_eq!(t["reason"], "incident 42", "{t:#}");
    assert!(t["set_by"].as_str().unwrap().starts_with("cli:"), "{t:#}");
}

/// Only the `mx` route is shaped. A stream sent through a smarthost lists
/// its table marked `shaped: false`, and a suspension of one of its
/// providers — which would be stored, audited and obeyed by nothing — is
/// refused by the API and the CLI alike.
#[tokio::test]
async fn a_stream_on_a_smarthost_is_listed_as_unshaped_and_cannot_be_suspended() {
    let sink = SmtpSink::start().await;
    let dns = mx_zone(&["x.test"]).await;
    let f = relay::fresh(
        false,
        &mx_to_sink(
            dns,
            sink.port,
            "",
            &format!(
                "[streams.transactional]\nroute = \"mx\"\n\
                 [streams.marketing]\nroute = \"{}\"\n",
                sink.url()
            ),
        ),
    )
    .await
    .unwrap();
    let admin = create_key(&f.database, "ops", &["admin"]);
    let relay = Relay::start(&f.config, &[]);
    let (code, v) = relay.get_json("/v1/destinations", &admin).await;
    assert_eq!(code, 200, "{v}");
    let shaped = |stream: &str| -> Vec<bool> {
        v["destinations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["stream"] == stream)
            .map(|d| d["shaped"].as_bool().unwrap())
            .collect()
    };
    assert!(shaped("transactional").iter().all(|s| *s), "{v}");
    let marketing = shaped("marketing");
    assert!(!marketing.is_empty() && marketing.iter().all(|s| !s), "{v}");

    let body = json!({"duration": "1h", "reason": "incident 7"});
    let (code, v) = relay
        .post("/v1/destinations/marketing/google/suspend", &admin, &body)
        .await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (409, Some("not_shaped")),
        "{v}"
    );
    let (code, v) = relay
        .post(
            "/v1/destinations/transactional/google/suspend",
            &admin,
            &body,
        )
        .await;
    assert_eq!(code, 200, "{v}");

    let config = f.config.to_str().unwrap();
    let (code, _, err) = cli_suspend(config, "marketing", "google", "x");
    assert_ne!(code, 0);
    assert!(err.contains("not sent on the mx route"), "{err}");
    let (code, out, err) = relay::run_cli(&["destinations", "--config", config, "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("marketing") && l.contains("not shaped")),
        "{out}"
    );
}

/// `mailroom destinations suspend STREAM PROVIDER --for 10m --reason WHY`
/// against the relay of `config`: (exit code, stdout, stderr).
fn cli_suspend(config: &str, stream: &str, provider: &str, why: &str) -> (i32, String, String) {
    relay::run_cli(&[
        "destinations",
        "--config",
        config,
        "suspend",
        stream,
        provider,
        "--for",
        "10m",
        "--reason",
        why,
    ])
}
