//! Operations end to end through the real binary: `/metrics` parses and
//! moves as mail flows; `/readyz` reports workers; a client presenting bad
//! keys is locked out (429 + Retry-After) without touching a valid key
//! holder elsewhere, and recovers after the cool-down; per-key request and
//! message rate limits and the public pages' limit answer 429 with
//! Retry-After and recover; the JSON log names message and stream and never
//! a full recipient address.

use std::collections::HashMap;
use std::time::Duration;

use mailroom_e2e::relay::{self, Relay, create_key};
use mailroom_e2e::smtp_sink::SmtpSink;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// The samples of an OpenMetrics text: `name{labels}` → value. Panics on a
/// line that is neither a comment nor a sample, so the test also checks the
/// format.
fn samples(text: &str) -> HashMap<String, f64> {
    assert!(text.ends_with("# EOF\n"), "no EOF marker");
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        out.insert(series.to_string(), value);
    }
    out
}

async fn scrape(relay: &Relay, key: &str) -> HashMap<String, f64> {
    let (code, body) = relay.get("/metrics", key).await;
    assert_eq!(code, 200);
    samples(&String::from_utf8(body).unwrap())
}

/// An SMTP sink that refuses `gone@…` (5.1.1), defers `later@…` and takes
/// the rest; a SQLite store; a config sending transactional mail to the
/// sink, marketing paused. Returns (sink, dir to keep, database, config).
async fn delivering_setup() -> (SmtpSink, tempfile::TempDir, String, std::path::PathBuf) {
    use mailroom_e2e::smtp_sink::Reply;
    let sink = SmtpSink::answering(&[("gone@", Reply::Refuse), ("later@", Reply::Defer)]).await;
    let dir = tempfile::tempdir().unwrap();
    let database = relay::database(dir.path(), false).await.unwrap();
    let config = relay::config_file(
        dir.path().join("c.toml"),
        &database,
        &format!(
            "[streams.transactional]\nroute = \"{url}\"\n\
             [streams.marketing]\npaused = true\n",
            url = sink.url()
        ),
    );
    (sink, dir, database, config)
}

#[tokio::test]
async fn metrics_count_what_flows_and_readyz_reports_workers() {
    let (sink, _dir, database, config) = delivering_setup().await;
    let key = create_key(&database, "shop", &["transactional", "suppressions"]);
    let scraper = create_key(&database, "prometheus", &["metrics"]);
    let relay = Relay::start(&config, &[]);

    assert_eq!(
        relay.get("/metrics", &key).await.0,
        403,
        "needs the metrics scope"
    );
    let (code, ready) = relay.get_json("/readyz", "").await;
    assert_eq!(code, 200, "{ready}");
    assert_eq!(
        ready["workers"],
        json!({"transactional": "running", "marketing": "paused"})
    );

    let before = scrape(&relay, &scraper).await;
    let (code, _) = relay
        .post(
            "/v1/suppressions",
            &key,
            &json!({"address": "blocked@gmail.com", "scope": "transactional"}),
        )
        .await;
    assert_eq!(code, 201);
    let (code, r) = relay
        .post(
            "/v1/messages",
            &key,
            &json!({"from": "orders@shop.example", "subject": "Receipt", "text": "Thanks",
                    "to": ["ana@gmail.com", "bo@customer.example", "gone@customer.example", "blocked@gmail.com"],
                    "stream": "transactional"}),
        )
        .await;
    assert_eq!(code, 202, "{r}");
    sink.wait_for(1, WAIT).await;
    relay
        .wait_status(r["id"].as_str().unwrap(), &key, WAIT, |v| {
            v["recipients"].as_array().unwrap().iter().all(|r| {
                matches!(
                    r["status"].as_str(),
                    Some("delivered" | "bounced" | "suppressed")
                )
            })
        })
        .await;
    let _ = relay.get("/v1/messages/nope", "mr_000000000000_bad").await;

    // Outcomes are counted just after they are recorded: poll briefly.
    let deadline = tokio::time::Instant::now() + WAIT;
    let after = loop {
        let m = scrape(&relay, &scraper).await;
        if m.get("mailroom_bounced_recipients_total{stream=\"transactional\",domain=\"other\",class=\"hard\"}") == Some(&1.0) {
            break m;
        }
        assert!(tokio::time::Instant::now() < deadline, "{m:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let delta = |series: &str| {
        after.get(series).copied().unwrap_or(0.0) - before.get(series).copied().unwrap_or(0.0)
    };
    assert_eq!(
        delta("mailroom_accepted_recipients_total{stream=\"transactional\",domain=\"gmail\"}"),
        1.0
    );
    assert_eq!(
        delta("mailroom_accepted_recipients_total{stream=\"transactional\",domain=\"other\"}"),
        2.0
    );
    assert_eq!(
        delta("mailroom_suppressed_recipients_total{stream=\"transactional\",domain=\"gmail\"}"),
        1.0
    );
    assert_eq!(
        delta("mailroom_delivered_recipients_total{stream=\"transactional\",domain=\"gmail\"}"),
        1.0
    );
    assert_eq!(
        delta("mailroom_delivered_recipients_total{stream=\"transactional\",domain=\"other\"}"),
        1.0
    );
    assert_eq!(
        delta("mailroom_smtp_replies_total{stream=\"transactional\",class=\"2xx\"}"),
        2.0
    );
    assert_eq!(
        delta("mailroom_smtp_replies_total{stream=\"transactional\",class=\"5xx\"}"),
        1.0
    );
    assert_eq!(
        delta("mailroom_delivery_latency_seconds_count{stream=\"transactional\"}"),
        2.0
    );
    assert_eq!(
        delta("mailroom_api_requests_total{route=\"/v1/messages\",status=\"202\"}"),
        1.0
    );
    assert!(delta("mailroom_auth_failures_total{reason=\"unknown\"}") >= 1.0);
    assert_eq!(after["mailroom_queue_depth{stream=\"transactional\"}"], 0.0);
    assert_eq!(after["mailroom_webhook_outbox_depth"], 0.0);
    // A paused stream's backlog shows in the queue gauges.
    let mkt = create_key(&database, "mkt", &["marketing"]);
    let (code, _) = relay
        .post(
            "/v1/messages",
            &mkt,
            &json!({"from": "news@shop.example", "to": "ana@gmail.com", "subject": "News",
                    "text": "Hello", "stream": "marketing"}),
        )
        .await;
    assert_eq!(code, 202);
    let m = scrape(&relay, &scraper).await;
    assert_eq!(m["mailroom_queue_depth{stream=\"marketing\"}"], 1.0);
}

#[tokio::test]
async fn bad_keys_lock_out_one_client_and_rate_limits_answer_429() {
    let dir = tempfile::tempdir().unwrap();
    let database = relay::database(dir.path(), false).await.unwrap();
    let config = relay::config_file(
        dir.path().join("c.toml"),
        &database,
        "capture = true\n\
         [limits]\nauth_failures = 3\nauth_failure_window = \"1m\"\nlockout = \"2s\"\n\
         requests_per_second = 5\nburst = 5\npublic_requests_per_second = 1\n\
         trust_forwarded_for = true\n\
         [streams.marketing]\nmessages_per_hour = 2\n",
    );
    let key = create_key(&database, "shop", &["transactional", "marketing"]);
    let relay = Relay::start(&config, &[]);
    let client = mailroom_e2e::http_client().build().unwrap();
    let get = |from: &'static str, key: String| {
        let client = client.clone();
        let url = format!(
            "{}/v1/messages/00000000-0000-7000-8000-000000000000",
            relay.base
        );
        async move {
            client
                .get(url)
                .header("x-forwarded-for", from)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
        }
    };
    const ATTACKER: &str = "198.51.100.7";
    const SHOP: &str = "203.0.113.5";

    // Three bad keys from one address lock it out...
    for _ in 0..3 {
        assert_eq!(
            get(ATTACKER, "mr_000000000000_guess".into()).await.status(),
            401
        );
    }
    let locked = get(ATTACKER, "mr_000000000000_guess".into()).await;
    assert_eq!(locked.status(), 429);
    let retry: u64 = locked.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    // ...even for a good key from there, but not for the shop elsewhere.
    assert_eq!(get(ATTACKER, key.clone()).await.status(), 429);
    assert_eq!(get(SHOP, key.clone()).await.status(), 404);
    // After the cool-down the address may try again.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(get(ATTACKER, key.clone()).await.status(), 404);

    // Per-key request rate: a burst of 5, then 429 until a token is back.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(get(SHOP, key.clone()).await.status().as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(
        statuses.iter().filter(|s| **s == 404).count() >= 5,
        "{statuses:?}"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(get(SHOP, key.clone()).await.status(), 404, "recovered");

    // Messages per hour on marketing: two, then 429; transactional unaffected.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let message = |stream: &str| {
        json!({"from": "news@shop.example", "to": "ana@customer.example", "subject": "Hi",
               "text": "Hello", "stream": stream})
    };
    let send = |stream: &'static str| {
        let body = message(stream);
        let relay = &relay;
        let key = key.clone();
        async move { relay.post("/v1/messages", &key, &body).await }
    };
    assert_eq!(send("marketing").await.0, 202);
    assert_eq!(send("marketing").await.0, 202);
    let (code, r) = send("marketing").await;
    assert_eq!(
        (code, r["error"]["code"].as_str()),
        (429, Some("rate_limited")),
        "{r}"
    );
    assert_eq!(send("transactional").await.0, 202);

    // The public pages have their own per-address budget (burst 4 here).
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = client
            .get(format!("{}/u/not-a-token", relay.base))
            .header("x-forwarded-for", "192.0.2.44")
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(&statuses[..4], &[404, 404, 404, 404], "{statuses:?}");
    assert_eq!(statuses[5], 429, "{statuses:?}");
}

#[tokio::test]
async fn keys_rotate_with_a_grace_period_and_the_audit_log_says_who_did_what() {
    let dir = tempfile::tempdir().unwrap();
    let database = relay::database(dir.path(), false).await.unwrap();
    let config = relay::config_file(dir.path().join("c.toml"), &database, "capture = true\n");
    let old = create_key(&database, "shop", &["transactional", "suppressions"]);
    let old_id = old.split('_').nth(1).unwrap().to_string();
    let relay = Relay::start(&config, &[]);
    let probe = "/v1/messages/00000000-0000-7000-8000-000000000000";
    assert_eq!(relay.get(probe, &old).await.0, 404, "a working key");

    let (code, out, err) = relay::run_cli(&[
        "keys",
        "rotate",
        &old_id,
        "--grace",
        "2s",
        "--database",
        &database,
    ]);
    assert_eq!(code, 0, "{err}");
    let new = out.lines().last().unwrap().trim().to_string();
    assert!(new.starts_with("mr_") && new != old, "{out}");
    // Both work during the grace period; the old one stops after it.
    assert_eq!(relay.get(probe, &new).await.0, 404);
    assert_eq!(relay.get(probe, &old).await.0, 404);
    // After it (plus up to the 10 s a verified key is cached, as for a
    // revocation) the old key is refused.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while relay.get(probe, &old).await.0 != 401 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "old key still works"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(relay.get(probe, &new).await.0, 404);
    let (code, _) = relay
        .post(
            "/v1/suppressions",
            &new,
            &json!({"address": "x@customer.example", "scope": "transactional"}),
        )
        .await;
    assert_eq!(code, 201);

    let (code, keys, _) = relay::run_cli(&["keys", "list", "--database", &database]);
    assert_eq!(code, 0);
    let line = |id: &str| {
        keys.lines()
            .find(|l| l.starts_with(id))
            .unwrap()
            .to_string()
    };
    assert!(line(&old_id).contains("\texpired\t"), "{keys}");
    let new_id = new.split('_').nth(1).unwrap();
    assert!(line(new_id).contains("\tactive\t"), "{keys}");
    // Last use is noted off the request path: give it a moment.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, keys, _) = relay::run_cli(&["keys", "list", "--database", &database]);
        if !keys
            .lines()
            .find(|l| l.starts_with(new_id))
            .unwrap()
            .contains("last used -")
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{keys}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (code, audit, err) = relay::run_cli(&["audit", "--database", &database]);
    assert_eq!(code, 0, "{err}");
    let actions: Vec<(&str, &str, &str)> = audit
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[1], f[2], f[3])
        })
        .collect();
    assert!(
        actions
            .iter()
            .any(|(who, what, target)| who.starts_with("cli:")
                && *what == "key.created"
                && *target == old_id),
        "{audit}"
    );
    assert!(
        actions
            .iter()
            .any(|(_, what, target)| *what == "key.rotated" && *target == old_id),
        "{audit}"
    );
    let by_api = format!("api:{new_id}");
    assert!(
        actions.iter().any(|(who, what, target)| *who == by_api
            && *what == "suppression.added"
            && *target == "x@customer.example"),
        "{audit}"
    );
    let (_, only_keys, _) = relay::run_cli(&["audit", "--action", "key.", "--database", &database]);
    assert!(
        only_keys.lines().all(|l| l.contains("\tkey.")),
        "{only_keys}"
    );
}

/// Issue 5's log rules, read off the real binary's JSON log: every line
/// about a message carries its id and stream, and no line holds a full
/// recipient address — not even the SMTP replies, which quote it.
#[tokio::test]
async fn json_logs_name_message_and_stream_and_never_a_full_recipient_address() {
    let (_sink, _dir, database, config) = delivering_setup().await;
    let key = create_key(&database, "shop", &["transactional"]);
    let relay = Relay::start(&config, &["--log-format", "json"]);
    let recipients = [
        "ana.ok@customer.example",
        "gone@customer.example",
        "later@customer.example",
    ];
    let (code, r) = relay
        .post(
            "/v1/messages",
            &key,
            &json!({"from": "orders@shop.example", "subject": "Receipt", "text": "Thanks",
                    "to": recipients, "stream": "transactional"}),
        )
        .await;
    assert_eq!(code, 202, "{r}");
    let id = r["id"].as_str().unwrap().to_string();

    let parse_line = |line: &str| -> serde_json::Value {
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    let log = loop {
        let log = relay.log();
        let said = |what: &str| {
            log.iter()
                .any(|l| parse_line(l)["fields"]["message"] == what)
        };
        if said("delivered") && said("bounced") && said("deferred") {
            break log;
        }
        assert!(tokio::time::Instant::now() < deadline, "{log:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    for line in &log {
        for address in recipients {
            assert!(
                !line.to_lowercase().contains(address),
                "a full recipient address in the log: {line}"
            );
        }
        let v = parse_line(line);
        let what = v["fields"]["message"].as_str().unwrap_or_default();
        if ["accepted", "delivered", "bounced", "deferred"].contains(&what) {
            // The event's own fields and those of every span it is in.
            let mut scopes = vec![&v["fields"]];
            scopes.extend(v["spans"].as_array().into_iter().flatten());
            let field = |name: &str| scopes.iter().find_map(|s| s[name].as_str());
            assert_eq!(field("message_id"), Some(id.as_str()), "{line}");
            assert_eq!(field("stream"), Some("transactional"), "{line}");
        }
    }
    // The replies are still there for the operator, domain and all.
    let bounced = log
        .iter()
        .map(|l| parse_line(l))
        .find(|v| v["fields"]["message"] == "bounced")
        .unwrap();
    let reply = bounced["fields"]["reply"].as_str().unwrap();
    assert!(
        reply.contains("<***@customer.example>: Recipient address rejected"),
        "{reply}"
    );
}
