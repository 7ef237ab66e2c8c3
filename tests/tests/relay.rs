//! End to end: the real `mailroom` binary over real HTTP, delivering to a
//! real SMTP server on loopback, on a real SQLite file (and PostgreSQL when
//! MAILROOM_TEST_DATABASE_URL is set).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use mail_parser::{MessageParser, MimeHeaders as _};
use mailroom_e2e::dkim::Published;
use mailroom_e2e::relay::{self, Relay, create_key, keygen};
use mailroom_e2e::smtp_sink::{Reply, SmtpSink};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

struct Setup {
    dir: tempfile::TempDir,
    database: String,
    config: PathBuf,
    dns: Published,
    key: String,
}

struct Streams<'a> {
    transactional: &'a str,
    marketing: &'a str,
    extra: &'a str,
}

/// Two sending domains (Ed25519 and RSA keys made by `mailroom dkim keygen`),
/// both streams routed to the given smarthosts, fast retries.
async fn setup(postgres: bool, routes: Streams<'_>) -> Option<Setup> {
    let dir = tempfile::tempdir().unwrap();
    let database = relay::database(dir.path(), postgres).await?;
    let ed = keygen(dir.path(), "shop.example", "ed1", "ed25519");
    let rsa = keygen(dir.path(), "rsa.example", "rsa1", "rsa");
    let dns = Published::default();
    dns.publish(&ed.dns_name, &ed.dns_value);
    dns.publish(&rsa.dns_name, &rsa.dns_value);
    let config = dir.path().join("mailroom.toml");
    std::fs::write(
        &config,
        config_text(&database, &ed.path, &rsa.path, &routes),
    )
    .unwrap();
    let key = create_key(&database, "shop", &["transactional", "marketing"]);
    Some(Setup {
        dir,
        database,
        config,
        dns,
        key,
    })
}

/// Both streams to one smarthost; None (the test skips) for PostgreSQL when
/// no test database is configured.
async fn setup_one_sink(postgres: bool, url: &str) -> Option<Setup> {
    setup(
        postgres,
        Streams {
            transactional: url,
            marketing: url,
            extra: "",
        },
    )
    .await
}

/// Both streams to one smarthost, on SQLite.
async fn setup_sqlite(url: &str) -> Setup {
    setup_one_sink(false, url)
        .await
        .expect("SQLite needs no set-up")
}

impl Setup {
    /// Adds a setting line to `[streams.STREAM]` of the config.
    fn add_to_stream(&self, stream: &str, line: &str) {
        let anchor = match stream {
            "transactional" => "return_path = \"bounces.shop.example\"",
            _ => "return_path = \"mkt-bounces.shop.example\"",
        };
        let text = std::fs::read_to_string(&self.config)
            .unwrap()
            .replace(anchor, &format!("{anchor}\n{line}"));
        std::fs::write(&self.config, text).unwrap();
    }
}

fn config_text(database: &str, ed: &Path, rsa: &Path, routes: &Streams<'_>) -> String {
    format!(
        r#"
database = "{database}"
hostname = "relay.test"

[[dkim]]
domain = "shop.example"
selector = "ed1"
key = "{ed}"

[[dkim]]
domain = "rsa.example"
selector = "rsa1"
key = "{rsa}"

[streams.transactional]
route = "{t}"
concurrency = 4
max_age = "1h"
retry_schedule = ["1s"]
return_path = "bounces.shop.example"
lease = "3s"

[streams.marketing]
route = "{m}"
concurrency = 4
max_age = "1h"
retry_schedule = ["1s"]
return_path = "mkt-bounces.shop.example"
lease = "3s"
{extra}
"#,
        ed = ed.display(),
        rsa = rsa.display(),
        t = routes.transactional,
        m = routes.marketing,
        extra = routes.extra,
    )
}

fn receipt(to: &str) -> Value {
    json!({
        "from": "Shop <orders@shop.example>",
        "to": [to],
        "subject": "Your receipt #1001",
        "text": "Thanks for your order.",
        "html": "<p>Thanks for your <b>order</b>.</p>",
    })
}

async fn sends_a_signed_message_that_arrives_intact(postgres: bool) {
    let sink = SmtpSink::start().await;
    let url = sink.url();
    let Some(s) = setup_one_sink(postgres, &url).await else {
        return;
    };
    let relay = Relay::start(&s.config, &[]);
    let pdf = b"%PDF-1.4 pretend invoice \x00\x01\x02".to_vec();
    let body = json!({
        "from": "Shop Team <orders@shop.example>",
        "to": ["Alice@Customer.example"],
        "cc": ["bob@customer.example"],
        "bcc": ["audit@shop.example"],
        "reply_to": "help@shop.example",
        "subject": "Votre reçu — commande #1001",
        "text": "Merci pour votre commande.",
        "html": "<h1>Merci</h1><p>pour votre commande.</p>",
        "headers": {"X-Campaign": "receipt", "List-Unsubscribe": "<mailto:unsub@shop.example>"},
        "attachments": [{"filename": "invoice.pdf", "content_type": "application/pdf",
                         "content": base64::engine::general_purpose::STANDARD.encode(&pdf)}],
        "stream": "transactional",
        "tags": ["receipt"],
        "metadata": {"order": "1001"},
    });
    let (code, resp) = relay.post("/v1/messages", &s.key, &body).await;
    assert_eq!(code, 202, "{resp}");
    let id = resp["id"].as_str().unwrap().to_string();
    assert_eq!(resp["stream"], "transactional");
    let statuses: Vec<_> = resp["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["queued"; 3]);

    // One SMTP transaction per recipient, each with a VERP return path.
    let got = sink.wait_for(3, WAIT).await;
    let mut rcpts: Vec<String> = got.iter().flat_map(|r| r.rcpt_to.clone()).collect();
    rcpts.sort();
    assert_eq!(
        rcpts,
        [
            "Alice@Customer.example",
            "audit@shop.example",
            "bob@customer.example"
        ]
    );
    for r in &got {
        assert!(
            r.mail_from
                .starts_with(&format!("bounces+{}-", id.replace('-', ""))),
            "{}",
            r.mail_from
        );
        assert!(
            r.mail_from.ends_with("@bounces.shop.example"),
            "{}",
            r.mail_from
        );
        assert_eq!(
            r.data, got[0].data,
            "every recipient gets the same signed bytes"
        );
    }
    let raw = &got[0].data;

    // The signature verifies against the published key and covers what it must.
    let sigs = s.dns.verify(raw).await;
    assert_eq!(sigs.len(), 1);
    let (d, sel, h) = &sigs[0];
    assert_eq!((d.as_str(), sel.as_str()), ("shop.example", "ed1"));
    let h: Vec<String> = h.iter().map(|x| x.to_ascii_lowercase()).collect();
    for must in [
        "from",
        "to",
        "cc",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "reply-to",
        "list-unsubscribe",
        "list-unsubscribe-post",
    ] {
        assert!(h.contains(&must.to_string()), "{must} not signed: {h:?}");
    }
    assert_eq!(
        h.iter().filter(|x| *x == "from").count(),
        2,
        "From is over-signed"
    );
    let text = String::from_utf8_lossy(raw);
    assert!(text.contains("a=ed25519-sha256"), "{text}");
    assert!(text.contains("c=relaxed/relaxed"), "{text}");

    // Headers and MIME as asked.
    let m = MessageParser::default().parse(raw).unwrap();
    assert_eq!(
        m.from().unwrap().first().unwrap().address(),
        Some("orders@shop.example")
    );
    assert_eq!(m.from().unwrap().first().unwrap().name(), Some("Shop Team"));
    assert_eq!(m.subject(), Some("Votre reçu — commande #1001"));
    assert_eq!(
        m.reply_to().unwrap().first().unwrap().address(),
        Some("help@shop.example")
    );
    assert!(m.bcc().is_none(), "Bcc must not appear in the headers");
    assert!(
        !text.contains("audit@shop.example"),
        "bcc recipient leaked into the message"
    );
    let mid = m.message_id().unwrap();
    assert!(
        mid.ends_with("@shop.example") && mid.starts_with(&id),
        "{mid}"
    );
    assert!(m.date().is_some());
    assert_eq!(m.header_raw("X-Campaign").map(str::trim), Some("receipt"));
    assert_eq!(m.body_text(0).unwrap().trim(), "Merci pour votre commande.");
    assert!(m.body_html(0).unwrap().contains("<h1>Merci</h1>"));
    let att = m.attachment(0).expect("attachment");
    assert_eq!(att.attachment_name(), Some("invoice.pdf"));
    assert_eq!(att.contents(), &pdf[..]);
    assert_eq!(m.content_type().unwrap().ctype(), "multipart");
    assert_eq!(m.content_type().unwrap().subtype(), Some("mixed"));

    // Status and history, then the raw bytes exactly as delivered.
    let status = relay
        .wait_status(&id, &s.key, WAIT, |v| v["status"] == "delivered")
        .await;
    for r in status["recipients"].as_array().unwrap() {
        assert_eq!(r["status"], "delivered");
        assert_eq!(r["history"][0]["smtp_code"], 250);
        assert_eq!(r["history"][0]["outcome"], "delivered");
    }
    assert_eq!(status["tags"], json!(["receipt"]));
    assert_eq!(status["metadata"], json!({"order": "1001"}));
    assert_eq!(status["dkim"], "shop.example/ed1");
    let (code, stored) = relay.get(&format!("/v1/messages/{id}/raw"), &s.key).await;
    assert_eq!(code, 200);
    // lettre ends DATA with CRLF "." CRLF even after a final CRLF, so one
    // empty line more arrives; relaxed body canonicalization ignores it.
    assert_eq!(raw.strip_suffix(b"\r\n").unwrap(), &stored[..]);

    // RSA-signed mail from the second domain verifies too.
    let (code, resp) = relay.post("/v1/messages", &s.key, &json!({"from": "news@rsa.example", "to": "c@x.example", "subject": "rsa", "html": "<p>hi</p>"})).await;
    assert_eq!(code, 202, "{resp}");
    let got = sink.wait_for(4, WAIT).await;
    let rsa_msg = got.iter().find(|r| r.rcpt_to == ["c@x.example"]).unwrap();
    let sigs = s.dns.verify(&rsa_msg.data).await;
    assert_eq!(sigs[0].0, "rsa.example");
    assert!(rsa_msg.text().contains("a=rsa-sha256"));
    drop(s.dir);
}

#[tokio::test]
async fn a_sent_message_arrives_signed_and_intact_sqlite() {
    sends_a_signed_message_that_arrives_intact(false).await;
}

#[tokio::test]
async fn a_sent_message_arrives_signed_and_intact_postgres() {
    sends_a_signed_message_that_arrives_intact(true).await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_stores_nothing() {
    let sink = SmtpSink::start().await;
    let url = sink.url();
    let s = setup_sqlite(&url).await;
    let marketing_only = create_key(&s.database, "mkt", &["marketing"]);
    let relay = Relay::start(&s.config, &[]);
    let k = s.key.as_str();

    let cases: Vec<(u16, &str, Option<&str>, Vec<u8>)> = vec![
        (400, "malformed_json", None, b"{\"from\": ".to_vec()),
        (400, "malformed_json", None, b"\xff\xfe".to_vec()),
        (422, "invalid_request", Some("from"), br#"{"to": ["a@x.example"], "subject": "s", "text": "t"}"#.to_vec()),
        (422, "invalid_request", Some("to"), br#"{"from": "a@shop.example", "to": 5, "subject": "s", "text": "t"}"#.to_vec()),
        (422, "invalid_address", Some("to[0]"), json!({"from": "a@shop.example", "to": ["nope"], "subject": "s", "text": "t"}).to_string().into_bytes()),
        (422, "header_injection", Some("subject"), json!({"from": "a@shop.example", "to": ["b@x.example"], "subject": "hi\r\nBcc: victim@x.example", "text": "t"}).to_string().into_bytes()),
        (422, "header_injection", Some("headers.X-Tag"), json!({"from": "a@shop.example", "to": ["b@x.example"], "subject": "s", "text": "t", "headers": {"X-Tag": "a\u{0}b"}}).to_string().into_bytes()),
        (422, "invalid_stream", Some("stream"), json!({"from": "a@shop.example", "to": ["b@x.example"], "subject": "s", "text": "t", "stream": "bulk"}).to_string().into_bytes()),
        (422, "too_many_recipients", Some("to"), json!({"from": "a@shop.example", "to": (0..51).map(|i| format!("r{i}@x.example")).collect::<Vec<_>>(), "subject": "s", "text": "t"}).to_string().into_bytes()),
        (422, "no_dkim_key", Some("from"), json!({"from": "a@unsigned.example", "to": ["b@x.example"], "subject": "s", "text": "t"}).to_string().into_bytes()),
    ];
    for (want, code, field, body) in cases {
        let (status, resp) = relay.post_raw("/v1/messages", k, body, &[]).await;
        assert_eq!(status, want, "{resp}");
        assert_eq!(resp["error"]["code"], code, "{resp}");
        assert!(
            resp["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{resp}"
        );
        if let Some(f) = field {
            assert_eq!(resp["error"]["field"], f, "{resp}");
        }
    }

    let mut big = json!({"from": "a@shop.example", "to": ["b@x.example"], "subject": "s"});
    big["text"] = json!("x".repeat(11 * 1024 * 1024));
    let (status, resp) = relay
        .post_streaming("/v1/messages", k, big.to_string().into_bytes())
        .await;
    assert_eq!(
        (status, resp["error"]["code"].as_str()),
        (413, Some("payload_too_large")),
        "{resp}"
    );

    // Authentication and scope.
    let (status, resp) = relay
        .post("/v1/messages", "", &receipt("a@x.example"))
        .await;
    assert_eq!(
        (status, resp["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, _) = relay
        .post(
            "/v1/messages",
            "mr_000000000000_forged",
            &receipt("a@x.example"),
        )
        .await;
    assert_eq!(status, 401);
    let (status, resp) = relay
        .post("/v1/messages", &marketing_only, &receipt("a@x.example"))
        .await;
    assert_eq!(
        (status, resp["error"]["code"].as_str()),
        (403, Some("forbidden_stream")),
        "{resp}"
    );
    let (status, _) = relay
        .get_json(
            "/v1/messages/00000000-0000-0000-0000-000000000000",
            "mr_000000000000_forged",
        )
        .await;
    assert_eq!(status, 401);

    // Nothing above was queued: exactly the one good message arrives.
    let (status, ok) = relay
        .post("/v1/messages", k, &receipt("good@x.example"))
        .await;
    assert_eq!(status, 202, "{ok}");
    sink.wait_for(1, WAIT).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sink.count(), 1, "only the valid message may be delivered");

    // A marketing-only key can't read a transactional message.
    let id = ok["id"].as_str().unwrap();
    let (status, _) = relay
        .get_json(&format!("/v1/messages/{id}"), &marketing_only)
        .await;
    assert_eq!(status, 404);
    let (status, _) = relay.get_json("/v1/messages/not-an-id", k).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_answer_and_queues_nothing_new() {
    let sink = SmtpSink::start().await;
    let url = sink.url();
    let s = setup_sqlite(&url).await;
    let relay = Relay::start(&s.config, &[]);
    let body = serde_json::to_vec(&receipt("a@x.example")).unwrap();
    let hdr = [("Idempotency-Key", "order-1001-receipt")];
    let (c1, r1) = relay
        .post_raw("/v1/messages", &s.key, body.clone(), &hdr)
        .await;
    let (c2, r2) = relay
        .post_raw("/v1/messages", &s.key, body.clone(), &hdr)
        .await;
    assert_eq!((c1, c2), (202, 202));
    assert_eq!(r1, r2, "a retry gets the first answer");
    let other = serde_json::to_vec(&receipt("b@x.example")).unwrap();
    let (c3, r3) = relay.post_raw("/v1/messages", &s.key, other, &hdr).await;
    assert_eq!(
        (c3, r3["error"]["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    sink.wait_for(1, WAIT).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sink.count(), 1);
}

#[tokio::test]
async fn a_batch_answers_per_item_and_one_bad_item_does_not_sink_the_others() {
    let sink = SmtpSink::start().await;
    let url = sink.url();
    let s = setup_sqlite(&url).await;
    let relay = Relay::start(&s.config, &[]);
    let items = json!([receipt("a@x.example"), {"from": "a@shop.example", "to": ["bad"], "subject": "s", "text": "t"}, receipt("c@x.example"), {"nonsense": true}]);
    let (code, resp) = relay.post("/v1/messages/batch", &s.key, &items).await;
    assert_eq!(code, 200, "{resp}");
    assert_eq!(resp["accepted"], 2);
    let r = resp["results"].as_array().unwrap();
    assert_eq!(
        r.iter()
            .map(|x| x["status"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [202, 422, 202, 422]
    );
    assert_eq!(r[1]["error"]["field"], "to[0]");
    assert!(r[0]["id"].is_string() && r[2]["id"].is_string());
    let got = sink.wait_for(2, WAIT).await;
    let rcpts: HashSet<_> = got.iter().flat_map(|g| g.rcpt_to.clone()).collect();
    assert_eq!(
        rcpts,
        HashSet::from(["a@x.example".to_string(), "c@x.example".to_string()])
    );

    let too_many: Vec<Value> = (0..501)
        .map(|i| receipt(&format!("r{i}@x.example")))
        .collect();
    let (code, resp) = relay
        .post("/v1/messages/batch", &s.key, &json!(too_many))
        .await;
    assert_eq!(
        (code, resp["error"]["code"].as_str()),
        (422, Some("invalid_batch"))
    );
}

async fn retries_4xx_and_bounces_5xx(postgres: bool) {
    let deferred = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let d = deferred.clone();
    let sink = SmtpSink::start_with(Duration::ZERO, move |rcpt| {
        if rcpt.starts_with("busy") && d.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
            Reply::Defer
        } else if rcpt.starts_with("gone") {
            Reply::Refuse
        } else {
            Reply::Accept
        }
    })
    .await;
    let url = sink.url();
    let Some(s) = setup_one_sink(postgres, &url).await else {
        return;
    };
    let relay = Relay::start(&s.config, &[]);
    let (code, resp) = relay.post("/v1/messages", &s.key, &json!({"from": "orders@shop.example", "to": ["busy@x.example", "gone@x.example"], "subject": "s", "text": "t"})).await;
    assert_eq!(code, 202, "{resp}");
    let id = resp["id"].as_str().unwrap();
    let v = relay
        .wait_status(id, &s.key, WAIT, |v| {
            v["recipients"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["status"] == "delivered" || r["status"] == "bounced")
        })
        .await;
    let busy = &v["recipients"][0];
    assert_eq!(busy["status"], "delivered", "{v:#}");
    assert_eq!(busy["attempts"], 3);
    let outcomes: Vec<_> = busy["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["outcome"].as_str().unwrap(),
                h["smtp_code"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [("deferred", 451), ("deferred", 451), ("delivered", 250)]
    );
    let gone = &v["recipients"][1];
    assert_eq!(gone["status"], "bounced");
    assert_eq!(gone["attempts"], 1, "a 5xx is not retried");
    assert_eq!(gone["history"][0]["smtp_code"], 550);
    assert!(
        gone["last_reply"]
            .as_str()
            .unwrap()
            .contains("no such user"),
        "{gone}"
    );
    assert_eq!(v["status"], "partially_delivered");
}

#[tokio::test]
async fn a_4xx_is_retried_and_a_5xx_bounces_sqlite() {
    retries_4xx_and_bounces_5xx(false).await;
}

#[tokio::test]
async fn a_4xx_is_retried_and_a_5xx_bounces_postgres() {
    retries_4xx_and_bounces_5xx(true).await;
}

#[tokio::test]
async fn an_unreachable_smarthost_defers_then_expires_at_max_age() {
    // Nothing listens on this port: every attempt is a connection error.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("smtp://127.0.0.1:{}", dead.local_addr().unwrap().port());
    drop(dead);
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("m.db").display());
    let config = relay::config_file(
        dir.path().join("c.toml"),
        &database,
        &format!(
            "[streams.transactional]\nroute = \"{url}\"\nconcurrency = 1\nmax_age = \"3s\"\nretry_schedule = [\"1s\"]\n"
        ),
    );
    let key = create_key(&database, "k", &["transactional"]);
    let relay = Relay::start(&config, &[]);
    let (code, resp) = relay
        .post("/v1/messages", &key, &receipt("a@x.example"))
        .await;
    assert_eq!(code, 202, "{resp}");
    let v = relay
        .wait_status(resp["id"].as_str().unwrap(), &key, WAIT, |v| {
            v["status"] == "expired"
        })
        .await;
    let r = &v["recipients"][0];
    assert!(r["attempts"].as_u64().unwrap() >= 2, "{v:#}");
    assert_eq!(r["history"][0]["outcome"], "deferred");
    assert!(r["history"][0]["smtp_code"].is_null());
    assert!(v["dkim"].is_null(), "allow_unsigned sends unsigned");
}

async fn a_killed_relay_loses_nothing(postgres: bool) {
    // A slow server, so deliveries are in flight when the relay is killed.
    let sink = SmtpSink::start_with(Duration::from_millis(150), |_| Reply::Accept).await;
    let url = sink.url();
    let Some(s) = setup_one_sink(postgres, &url).await else {
        return;
    };
    // A lease far longer than the test may wait: only the restarted node
    // taking its leases back can deliver the mail that was in flight.
    let text = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(&s.config, text.replace("lease = \"3s\"", "lease = \"10m\"")).unwrap();
    let relay = Relay::start(&s.config, &[]);
    let mut accepted = HashSet::new();
    for i in 0..60 {
        let stream = if i % 2 == 0 {
            "transactional"
        } else {
            "marketing"
        };
        let mut body = receipt(&format!("r{i}@x.example"));
        body["stream"] = json!(stream);
        let (code, resp) = relay.post("/v1/messages", &s.key, &body).await;
        assert_eq!(code, 202, "{resp}");
        accepted.insert(resp["id"].as_str().unwrap().to_string());
    }
    sink.wait_for(5, WAIT).await;
    relay.kill();
    let before = sink.count();
    assert!(
        before < 60,
        "the kill came too late to prove anything ({before} delivered)"
    );

    // Restart: the node takes back its previous run's leases at once and
    // everything is delivered, well within the 10-minute lease.
    let relay = Relay::start(&s.config, &[]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let seen: HashSet<String> = sink
            .received()
            .iter()
            .filter_map(|r| {
                let m = MessageParser::default().parse(&r.data)?;
                Some(m.message_id()?.split('@').next()?.to_string())
            })
            .collect();
        if accepted.is_subset(&seen) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "lost: {:?}",
            accepted.difference(&seen).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // And the store agrees.
    for id in &accepted {
        relay
            .wait_status(id, &s.key, WAIT, |v| v["status"] == "delivered")
            .await;
    }
    assert!(
        relay
            .log()
            .iter()
            .any(|l| l.contains("took back deliveries the previous run left in flight")),
        "the restart said what it took back"
    );
    // Duplicates only of what was in flight: the leases the restart took
    // back (deliveries made but not yet recorded when the kill came among
    // them).
    let reclaimed: usize = relay
        .log()
        .iter()
        .find_map(|l| {
            let tail = l.split("reclaimed=").nth(1)?;
            tail.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .expect("the restart logs how many leases it took back");
    let copies = sink.count();
    assert!(
        copies <= 60 + reclaimed,
        "{copies} copies of 60 messages, {reclaimed} leases taken back"
    );
}

/// Two processes with one node id would take each other's leases back:
/// the second refuses to start, naming the problem.
#[tokio::test]
async fn a_second_relay_with_the_same_node_id_refuses_to_start() {
    for postgres in [false, true] {
        let Some(s) = setup_one_sink(postgres, "smtp://127.0.0.1:9").await else {
            continue;
        };
        let first = Relay::start(&s.config, &[]);
        let (code, _, err) = relay::run_cli(&[
            "serve",
            "--config",
            s.config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ]);
        assert_ne!(code, 0);
        assert!(err.contains("locked by another running relay"), "{err}");
        // The same id configured explicitly, without the file: on PostgreSQL
        // the database-side lock catches it.
        if postgres {
            let text = std::fs::read_to_string(&s.config).unwrap();
            let id = std::fs::read_to_string(s.dir.path().join("mailroom.node-id")).unwrap();
            let other = s.dir.path().join("other.toml");
            std::fs::write(&other, format!("node_id = \"{}\"\n{text}", id.trim())).unwrap();
            let (code, _, err) = relay::run_cli(&[
                "serve",
                "--config",
                other.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ]);
            assert_ne!(code, 0);
            assert!(err.contains("in use by another running relay"), "{err}");
        }
        first.kill();
    }
}

#[tokio::test]
async fn a_relay_killed_mid_delivery_loses_nothing_sqlite() {
    a_killed_relay_loses_nothing(false).await;
}

#[tokio::test]
async fn a_relay_killed_mid_delivery_loses_nothing_postgres() {
    a_killed_relay_loses_nothing(true).await;
}

#[tokio::test]
async fn sigterm_stops_cleanly_and_queued_mail_goes_out_after_restart() {
    let sink = SmtpSink::start_with(Duration::from_millis(300), |_| Reply::Accept).await;
    let url = sink.url();
    let s = setup_sqlite(&url).await;
    let relay = Relay::start(&s.config, &[]);
    let mut ids = Vec::new();
    for i in 0..20 {
        let (code, resp) = relay
            .post("/v1/messages", &s.key, &receipt(&format!("r{i}@x.example")))
            .await;
        assert_eq!(code, 202);
        ids.push(resp["id"].as_str().unwrap().to_string());
    }
    sink.wait_for(1, WAIT).await;
    assert_eq!(
        relay.terminate().await,
        Some(0),
        "a clean exit after SIGTERM"
    );
    let relay = Relay::start(&s.config, &[]);
    for id in &ids {
        relay
            .wait_status(id, &s.key, WAIT, |v| v["status"] == "delivered")
            .await;
    }
    // Released, not retried: nothing was delivered twice.
    assert_eq!(sink.count(), 20);
}

/// 50,000 marketing messages wait behind a slow server; a transactional
/// message sent afterwards is delivered while that backlog is still there.
#[tokio::test]
async fn transactional_mail_is_not_held_up_by_a_marketing_backlog() {
    let slow = SmtpSink::start_with(Duration::from_millis(200), |_| Reply::Accept).await;
    let fast = SmtpSink::start().await;
    let (slow_url, fast_url) = (slow.url(), fast.url());
    let s = setup(
        false,
        Streams {
            transactional: &fast_url,
            marketing: &slow_url,
            extra: "",
        },
    )
    .await
    .unwrap();
    let relay = Relay::start(&s.config, &[]);
    let mut queued = 0;
    for b in 0..100 {
        let items: Vec<Value> = (0..500)
            .map(|i| json!({"from": "news@shop.example", "to": [format!("m{b}-{i}@x.example")], "subject": "Sale", "html": "<p>Sale</p>", "stream": "marketing"}))
            .collect();
        let (code, resp) = relay
            .post("/v1/messages/batch", &s.key, &json!(items))
            .await;
        assert_eq!(code, 200);
        queued += resp["accepted"].as_u64().unwrap();
    }
    assert_eq!(queued, 50_000);
    let (code, resp) = relay
        .post("/v1/messages", &s.key, &receipt("customer@x.example"))
        .await;
    assert_eq!(code, 202);
    let v = relay
        .wait_status(resp["id"].as_str().unwrap(), &s.key, WAIT, |v| {
            v["status"] == "delivered"
        })
        .await;
    assert_eq!(v["stream"], "transactional");
    assert_eq!(fast.count(), 1);
    assert!(
        slow.count() < 49_000,
        "the marketing backlog was still queued ({} sent)",
        slow.count()
    );
}

#[tokio::test]
async fn capture_mode_works_from_an_empty_database_with_no_setup() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    let database = format!("sqlite://{}", dir.path().join("fresh.db").display());
    std::fs::write(&config, format!("database = \"{database}\"\n")).unwrap();
    let mut relay = Relay::start(&config, &["--capture"]);
    let lines = relay.read_stdout_lines(2);
    let key = lines.last().expect("a key is printed").clone();
    assert!(key.starts_with("mr_"), "{lines:?}");
    // Health, readiness and the API description need no key.
    for path in ["/healthz", "/readyz", "/openapi.json"] {
        let (code, body) = relay.get_json(path, "").await;
        assert_eq!(code, 200, "{path}: {body}");
    }
    let (_, doc) = relay.get_json("/openapi.json", "").await;
    assert!(doc["paths"]["/v1/messages"]["post"].is_object());
    let (code, resp) = relay
        .post("/v1/messages", &key, &receipt("someone@example.com"))
        .await;
    assert_eq!(code, 202, "{resp}");
    let id = resp["id"].as_str().unwrap();
    let v = relay
        .wait_status(id, &key, WAIT, |v| v["status"] == "delivered")
        .await;
    assert!(
        v["recipients"][0]["last_reply"]
            .as_str()
            .unwrap()
            .contains("captured")
    );
    let (code, raw) = relay.get(&format!("/v1/messages/{id}/raw"), &key).await;
    assert_eq!(code, 200);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("DKIM-Signature:"), "{text}");
    assert!(
        text.contains("d=shop.example") && text.contains("s=mailroom-dev"),
        "{text}"
    );
    drop(relay);
    // A second start on the same database makes no new key.
    let again = Relay::start(&config, &["--capture"]);
    let (code, out, _) = relay::run_cli(&["keys", "list", "--database", &database]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("capture-bootstrap"), "{out}");
    drop(again);
}

/// Direct MX delivery: the relay asks DNS for the recipient domain's MX
/// hosts, skips one it can't reach, delivers to the next, and bounces a
/// domain that publishes a null MX.
#[tokio::test]
async fn the_mx_route_follows_preference_order_and_honours_null_mx() {
    let sink = SmtpSink::start().await;
    let zone = std::collections::HashMap::from([
        (
            "customer.test".to_string(),
            vec![
                (20, "localhost.".to_string()),
                (10, "unreachable.invalid.".to_string()),
            ],
        ),
        ("nomail.test".to_string(), vec![(0, ".".to_string())]),
    ]);
    let dns = mailroom_e2e::dns::serve_mx(zone).await;
    let extra = format!("dns_servers = [\"{dns}\"]\nmx_port = {}\n", sink.port);
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("m.db").display());
    let config = relay::config_file(
        dir.path().join("c.toml"),
        &database,
        &format!(
            "{extra}[streams.transactional]\nroute = \"mx\"\nconcurrency = 2\nmax_age = \"1h\"\nretry_schedule = [\"1s\"]\n"
        ),
    );
    let key = create_key(&database, "k", &["transactional"]);
    let relay = Relay::start(&config, &[]);
    let (code, resp) = relay.post("/v1/messages", &key, &json!({"from": "a@shop.example", "to": ["bob@customer.test", "x@nomail.test"], "subject": "s", "text": "t"})).await;
    assert_eq!(code, 202, "{resp}");
    let v = relay
        .wait_status(resp["id"].as_str().unwrap(), &key, WAIT, |v| {
            v["status"] != "in_progress" && v["status"] != "queued"
        })
        .await;
    let bob = &v["recipients"][0];
    assert_eq!(bob["status"], "delivered", "{v:#}");
    assert_eq!(bob["history"][0]["host"], "localhost");
    assert_eq!(sink.received()[0].rcpt_to, ["bob@customer.test"]);
    let null = &v["recipients"][1];
    assert_eq!(null["status"], "bounced", "{v:#}");
    assert_eq!(null["history"][0]["smtp_code"], 556);
}

#[tokio::test]
async fn a_paused_stream_queues_but_delivers_nothing_while_the_other_runs() {
    let sink = SmtpSink::start().await;
    let url = sink.url();
    let s = setup_sqlite(&url).await;
    s.add_to_stream("marketing", "paused = true");
    let relay = Relay::start(&s.config, &[]);
    let mut news = receipt("reader@x.example");
    news["stream"] = json!("marketing");
    let (_, m) = relay.post("/v1/messages", &s.key, &news).await;
    let (_, t) = relay
        .post("/v1/messages", &s.key, &receipt("buyer@x.example"))
        .await;
    relay
        .wait_status(t["id"].as_str().unwrap(), &s.key, WAIT, |v| {
            v["status"] == "delivered"
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, v) = relay
        .get_json(
            &format!("/v1/messages/{}", m["id"].as_str().unwrap()),
            &s.key,
        )
        .await;
    assert_eq!(v["status"], "queued", "{v:#}");
    assert_eq!(sink.count(), 1);
}

/// Each stream sends from its own source address, so their IP reputations
/// stay apart.
#[tokio::test]
async fn each_stream_sends_from_its_own_source_address() {
    let sink = SmtpSink::start().await;
    let url = sink.url();
    let s = setup_sqlite(&url).await;
    s.add_to_stream("transactional", "source_address = \"127.0.0.2\"");
    s.add_to_stream("marketing", "source_address = \"127.0.0.3\"");
    let relay = Relay::start(&s.config, &[]);
    let mut news = receipt("reader@x.example");
    news["stream"] = json!("marketing");
    assert_eq!(relay.post("/v1/messages", &s.key, &news).await.0, 202);
    assert_eq!(
        relay
            .post("/v1/messages", &s.key, &receipt("buyer@x.example"))
            .await
            .0,
        202
    );
    let got = sink.wait_for(2, WAIT).await;
    for r in got {
        let want = if r.rcpt_to == ["reader@x.example"] {
            "127.0.0.3"
        } else {
            "127.0.0.2"
        };
        assert_eq!(r.peer.ip().to_string(), want, "{:?}", r.rcpt_to);
    }
}

/// A smarthost with credentials in its URL: the relay authenticates (AUTH
/// PLAIN, URL-decoded user and password) before sending.
#[tokio::test]
async fn a_smarthost_with_credentials_gets_auth_plain() {
    let sink = SmtpSink::start().await;
    let url = format!(
        "smtp://relay%40shop.example:s3cr%3At@127.0.0.1:{}",
        sink.port
    );
    let s = setup_sqlite(&url).await;
    let relay = Relay::start(&s.config, &[]);
    let (code, resp) = relay
        .post("/v1/messages", &s.key, &receipt("a@x.example"))
        .await;
    assert_eq!(code, 202, "{resp}");
    sink.wait_for(1, WAIT).await;
    assert_eq!(
        sink.auths(),
        [("relay@shop.example".to_string(), "s3cr:t".to_string())]
    );
    let v = relay
        .wait_status(resp["id"].as_str().unwrap(), &s.key, WAIT, |v| {
            v["status"] == "delivered"
        })
        .await;
    let host = v["recipients"][0]["history"][0]["host"].as_str().unwrap();
    assert!(
        !host.contains("s3cr"),
        "the password must not be recorded: {host}"
    );
}

/// STARTTLS: taken when offered (MX route, `tls=opportunistic`), with the
/// certificate unchecked as MTAs do; `tls=required` checks it, so a
/// self-signed certificate defers the message instead of sending it.
#[tokio::test]
async fn starttls_is_used_when_offered_and_required_tls_checks_the_certificate() {
    let sink = SmtpSink::start_with_starttls().await;
    let zone = std::collections::HashMap::from([(
        "tls.test".to_string(),
        vec![(10, "localhost.".to_string())],
    )]);
    let dns = mailroom_e2e::dns::serve_mx(zone).await;
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("m.db").display());
    let config = relay::config_file(
        dir.path().join("c.toml"),
        &database,
        &format!(
            "dns_servers = [\"{dns}\"]\nmx_port = {port}\n\
             [streams.transactional]\nroute = \"mx\"\nconcurrency = 2\nmax_age = \"1h\"\nretry_schedule = [\"1h\"]\n\
             [streams.marketing]\nroute = \"smtp://localhost:{port}?tls=required\"\nconcurrency = 2\nmax_age = \"1d\"\nretry_schedule = [\"1h\"]\n",
            port = sink.port
        ),
    );
    let key = create_key(&database, "k", &["transactional", "marketing"]);
    let relay = Relay::start(&config, &[]);
    let (code, resp) = relay
        .post("/v1/messages", &key, &receipt("bob@tls.test"))
        .await;
    assert_eq!(code, 202, "{resp}");
    relay
        .wait_status(resp["id"].as_str().unwrap(), &key, WAIT, |v| {
            v["status"] == "delivered"
        })
        .await;
    assert!(
        sink.received()[0].tls,
        "the MX route should have switched to TLS"
    );

    let mut news = receipt("reader@x.example");
    news["stream"] = json!("marketing");
    let (code, resp) = relay.post("/v1/messages", &key, &news).await;
    assert_eq!(code, 202, "{resp}");
    let v = relay
        .wait_status(resp["id"].as_str().unwrap(), &key, WAIT, |v| {
            v["recipients"][0]["status"] == "deferred"
        })
        .await;
    let reply = v["recipients"][0]["last_reply"]
        .as_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        reply.contains("certificate") || reply.contains("tls"),
        "{reply}"
    );
    assert_eq!(
        sink.count(),
        1,
        "nothing may be sent over an unverified required-TLS session"
    );
}

/// `smtps://` speaks TLS from the first byte and checks the certificate:
/// against a self-signed server the message is deferred, never sent.
#[tokio::test]
async fn an_smtps_smarthost_gets_tls_from_the_first_byte_and_a_checked_certificate() {
    let sink = SmtpSink::start_with_implicit_tls().await;
    let url = format!("smtps://localhost:{}", sink.port);
    let s = setup_sqlite(&url).await;
    let relay = Relay::start(&s.config, &[]);
    let (code, resp) = relay
        .post("/v1/messages", &s.key, &receipt("a@x.example"))
        .await;
    assert_eq!(code, 202, "{resp}");
    let v = relay
        .wait_status(resp["id"].as_str().unwrap(), &s.key, WAIT, |v| {
            v["recipients"][0]["history"]
                .as_array()
                .is_some_and(|h| !h.is_empty())
        })
        .await;
    let reply = v["recipients"][0]["history"][0]["reply"]
        .as_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(reply.contains("certificate"), "{reply}");
    assert_eq!(sink.count(), 0);
}
