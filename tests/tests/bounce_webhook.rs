//! `POST /v1/webhooks/bounces` end to end: bounces in the shapes real MTAs
//! send are read, recorded, and suppress only what the policy says.

use std::time::Duration;

use mailroom_e2e::relay::{self, Relay, create_key};
use mailroom_e2e::smtp_sink::{Reply, SmtpSink};
use serde_json::{Value, json};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../list-hygiene/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A DSN whose failure is permanent but not address-level (5.3.0): soft.
fn soft_bounce(n: usize) -> Vec<u8> {
    soft_bounce_for(n, "lee@flaky.example")
}

fn soft_bounce_for(n: usize, address: &str) -> Vec<u8> {
    format!(
        "From: MAILER-DAEMON@mx.flaky.example\r\nTo: bounces@shop.example\r\n\
         Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <soft-{n}@mx.flaky.example>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"s\"\r\n\r\n\
         --s\r\nContent-Type: message/delivery-status\r\n\r\n\
         Reporting-MTA: dns; mx.flaky.example\r\n\r\n\
         Final-Recipient: rfc822; {address}\r\nAction: failed\r\nStatus: 5.3.0\r\n\
         Diagnostic-Code: smtp; 554 5.3.0 mailbox temporarily unavailable\r\n\r\n--s--\r\n"
    )
    .into_bytes()
}

async fn post_bounce(relay: &Relay, key: &str, raw: Vec<u8>) -> (u16, Value) {
    relay
        .post_raw(
            "/v1/webhooks/bounces",
            key,
            raw,
            &[("content-type", "message/rfc822")],
        )
        .await
}

/// Sends a transactional message to `to`; the 202 answer.
async fn send(relay: &Relay, key: &str, to: &str) -> Value {
    let (code, resp) = relay
        .post(
            "/v1/messages",
            key,
            &json!({"from": "Shop <orders@shop.example>", "to": to, "subject": "Hi",
                    "text": "Hello", "stream": "transactional"}),
        )
        .await;
    assert_eq!(code, 202, "{resp}");
    resp
}

/// The status `to` got when a message to it was accepted.
async fn send_status(relay: &Relay, key: &str, to: &str) -> Value {
    send(relay, key, to).await["recipients"][0].clone()
}

async fn bounces_feed_the_suppression_list(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let Some(database) = relay::database(dir.path(), postgres).await else {
        return;
    };
    let config = relay::config_file(
        dir.path().join("c.toml"),
        &database,
        "capture = true\nsoft_bounce_limit = 3\n",
    );
    let key = create_key(
        &database,
        "mta",
        &["transactional", "marketing", "webhooks"],
    );
    let marketing_only = create_key(&database, "newsletter", &["marketing"]);
    let summary_key = create_key(&database, "ops", &["suppressions"]);
    let relay = Relay::start(&config, &[]);

    // A hard bounce suppresses at once, on every stream.
    let (code, r) = post_bounce(&relay, &key, fixture("postfix-dsn-user-unknown.eml")).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["kind"], "dsn");
    assert_eq!(r["recipients"][0]["class"], "hard");
    assert_eq!(r["recipients"][0]["outcome"], "suppressed");
    assert_eq!(r["verp"]["recipient_index"], 0);
    let s = send_status(&relay, &key, "dana.whitfield@customer.example").await;
    assert_eq!(s["status"], "suppressed");
    assert_eq!(s["reason"], "hard_bounce (global)");

    // A full mailbox or a spam block is recorded and suppresses nothing.
    for (name, class) in [
        ("gmail-dsn-mailbox-full.eml", "mailbox_full"),
        ("dsn-policy-block.eml", "policy"),
    ] {
        let (code, r) = post_bounce(&relay, &key, fixture(name)).await;
        assert_eq!(code, 200);
        assert_eq!(r["recipients"][0]["class"], class, "{name}");
        assert_eq!(r["recipients"][0]["outcome"], "recorded", "{name}");
    }
    assert_eq!(
        send_status(&relay, &key, "sam.ortega@gmail.example").await["status"],
        "queued"
    );
    assert_eq!(
        send_status(&relay, &key, "robin@strict-isp.example").await["status"],
        "queued"
    );

    // Soft bounces suppress at the limit, not before.
    for n in 1..=3 {
        let (_, r) = post_bounce(&relay, &key, soft_bounce(n)).await;
        assert_eq!(r["recipients"][0]["class"], "soft");
        let expected = if n < 3 { "recorded" } else { "suppressed" };
        assert_eq!(r["recipients"][0]["outcome"], expected, "soft bounce {n}");
    }
    assert_eq!(
        send_status(&relay, &key, "lee@flaky.example").await["reason"],
        "soft_bounces (global)"
    );

    // A successful delivery in between resets the soft count.
    for n in 1..=2 {
        let (_, r) = post_bounce(&relay, &key, soft_bounce_for(n, "kim@flaky.example")).await;
        assert_eq!(r["recipients"][0]["outcome"], "recorded");
    }
    let sent = send(&relay, &key, "kim@flaky.example").await;
    relay
        .wait_status(
            sent["id"].as_str().unwrap(),
            &key,
            std::time::Duration::from_secs(60),
            |v| v["status"] == "delivered",
        )
        .await;
    let (_, r) = post_bounce(&relay, &key, soft_bounce_for(3, "kim@flaky.example")).await;
    assert_eq!(
        r["recipients"][0]["outcome"], "recorded",
        "the delivery reset the count: {r}"
    );

    // Policy blocks and full mailboxes are counted per stream and domain.
    let (code, s) = relay
        .get_json("/v1/bounces/summary?since=1h", &summary_key)
        .await;
    assert_eq!(code, 200, "{s}");
    let counts = s["counts"].as_array().unwrap();
    let count_of = |domain: &str, class: &str| {
        counts
            .iter()
            .find(|c| c["domain"] == domain && c["class"] == class)
            .map(|c| c["count"].as_i64().unwrap())
    };
    assert_eq!(count_of("strict-isp.example", "policy"), Some(1), "{s}");
    assert_eq!(count_of("flaky.example", "soft"), Some(6), "{s}");
    assert_eq!(relay.get_json("/v1/bounces/summary", &key).await.0, 403);

    // Auto-replies and ordinary mail are not bounces; garbage is refused.
    let (code, r) = post_bounce(&relay, &key, fixture("vacation-auto-reply.eml")).await;
    assert_eq!((code, r["kind"].as_str()), (200, Some("auto_reply")));
    assert_eq!(r["recipients"], json!([]));
    let (code, r) = post_bounce(&relay, &key, b"\r\n".to_vec()).await;
    assert_eq!(
        (code, r["error"]["code"].as_str()),
        (422, Some("invalid_bounce"))
    );
    // Only a key with the webhooks scope may feed bounces; none at all is 401.
    let (code, _) = post_bounce(&relay, &marketing_only, fixture("qmail.eml")).await;
    assert_eq!(code, 403);
    let (code, _) = post_bounce(&relay, "", fixture("qmail.eml")).await;
    assert_eq!(code, 401);
}

#[tokio::test]
async fn bounces_feed_the_suppression_list_sqlite() {
    bounces_feed_the_suppression_list(false).await;
}

#[tokio::test]
async fn bounces_feed_the_suppression_list_postgres() {
    bounces_feed_the_suppression_list(true).await;
}

/// One bounce policy for every path: soft bounces returned later as DSNs
/// and soft bounces the relay gets as its own SMTP replies add to one
/// count, and the limit suppresses the address whichever path reaches it.
async fn relay_seen_and_returned_soft_bounces_share_one_count(postgres: bool) {
    let sink = SmtpSink::answering(&[("lee@", Reply::RefuseSoft)]).await;
    let rest = format!(
        "soft_bounce_limit = 3\n{}",
        relay::both_streams_to(&sink.url())
    );
    let Some(s) = relay::fresh(postgres, &rest).await else {
        return;
    };
    let key = create_key(
        &s.database,
        "mta",
        &["transactional", "marketing", "webhooks", "suppressions"],
    );
    let relay = Relay::start(&s.config, &[]);

    // One soft bounce returned as a DSN: recorded.
    let (code, r) = post_bounce(&relay, &key, soft_bounce(1)).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["recipients"][0]["class"], "soft");
    assert_eq!(r["recipients"][0]["outcome"], "recorded", "{r}");
    // Two the relay sees itself (554 5.3.0 from the receiving server): the
    // second reaches the limit.
    for _ in 0..2 {
        let sent = send(&relay, &key, "lee@flaky.example").await;
        assert_eq!(sent["recipients"][0]["status"], "queued", "{sent}");
        let status = relay
            .wait_status(
                sent["id"].as_str().unwrap(),
                &key,
                Duration::from_secs(60),
                |v| v["recipients"][0]["status"] == "bounced",
            )
            .await;
        assert_eq!(
            status["recipients"][0]["history"][0]["smtp_code"], 554,
            "{status}"
        );
    }
    // The policy runs just after the outcome is recorded: wait for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let entry = loop {
        let (code, list) = relay
            .get_json("/v1/suppressions?address=lee@flaky.example", &key)
            .await;
        assert_eq!(code, 200, "{list}");
        if let Some(e) = list["suppressions"].as_array().and_then(|a| a.first()) {
            break e.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the relay's own soft bounces never reached the limit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (entry["scope"].as_str(), entry["reason"].as_str()),
        (Some("global"), Some("soft_bounces")),
        "{entry}"
    );
    assert!(
        entry["source"].as_str().unwrap().starts_with("relay:"),
        "{entry}"
    );
    assert_eq!(
        send_status(&relay, &key, "lee@flaky.example").await["reason"],
        "soft_bounces (global)"
    );
    // Another address at the same domain is untouched.
    assert_eq!(
        send_status(&relay, &key, "kim@flaky.example").await["status"],
        "queued"
    );
}

#[tokio::test]
async fn relay_seen_and_returned_soft_bounces_share_one_count_sqlite() {
    relay_seen_and_returned_soft_bounces_share_one_count(false).await;
}

#[tokio::test]
async fn relay_seen_and_returned_soft_bounces_share_one_count_postgres() {
    relay_seen_and_returned_soft_bounces_share_one_count(true).await;
}
