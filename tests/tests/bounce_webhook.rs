//! `POST /v1/webhooks/bounces` end to end: bounces in the shapes real MTAs
//! send are read, recorded, and suppress only what the policy says.

use std::time::Duration;

use mailroom_e2e::relay::{self, Relay, create_key};
use mailroom_e2e::smtp_sink::{Received, Reply, SmtpSink};
use serde_json::{Value, json};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../list-hygiene/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const WAIT: Duration = Duration::from_secs(60);

/// `raw` with every VERP address in it (`bounces+…@domain`) made `verp`.
fn readdressed(raw: &[u8], verp: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(raw);
    let (mut out, mut rest) = (String::new(), &*text);
    while let Some(i) = rest.find("bounces+") {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| c == '>' || c.is_whitespace())
            .unwrap_or(tail.len());
        out.push_str(verp);
        rest = &tail[end..];
    }
    out.push_str(rest);
    out.into_bytes()
}

/// A DSN to `to` whose failure is permanent but not address-level
/// (5.3.0): soft.
fn soft_bounce(n: usize, address: &str, to: &str) -> Vec<u8> {
    dsn(
        n,
        address,
        to,
        "5.3.0",
        "554 5.3.0 mailbox temporarily unavailable",
        "",
    )
}

/// A DSN sent to `to` about `address`, quoting `original` headers.
fn dsn(
    n: usize,
    address: &str,
    to: &str,
    status: &str,
    diagnostic: &str,
    original: &str,
) -> Vec<u8> {
    format!(
        "From: MAILER-DAEMON@mx.flaky.example\r\nTo: <{to}>\r\n\
         Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-{n}@mx.flaky.example>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"s\"\r\n\r\n\
         --s\r\nContent-Type: message/delivery-status\r\n\r\n\
         Reporting-MTA: dns; mx.flaky.example\r\n\r\n\
         Final-Recipient: rfc822; {address}\r\nAction: failed\r\nStatus: {status}\r\n\
         Diagnostic-Code: smtp; {diagnostic}\r\n\r\n\
         --s\r\nContent-Type: text/rfc822-headers\r\n\r\n{original}\r\n--s--\r\n"
    )
    .into_bytes()
}

/// The header block of a delivered copy.
fn headers_of(copy: &Received) -> String {
    let text = String::from_utf8_lossy(&copy.data);
    text.split("\r\n\r\n").next().unwrap().to_string()
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

/// Sends a message to `to` and waits for the sink to get it: the copy, its
/// VERP return path in `mail_from`.
async fn delivered_copy(relay: &Relay, sink: &SmtpSink, key: &str, to: &str) -> Received {
    let sent = send(relay, key, to).await;
    sink.wait_for_copy(sent["id"].as_str().unwrap(), to, WAIT)
        .await
}

/// The status `to` got when a message to it was accepted.
async fn send_status(relay: &Relay, key: &str, to: &str) -> Value {
    send(relay, key, to).await["recipients"][0].clone()
}

async fn bounces_feed_the_suppression_list(postgres: bool) {
    let sink = SmtpSink::start().await;
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
        &["transactional", "marketing", "webhooks", "metrics"],
    );
    let marketing_only = create_key(&s.database, "newsletter", &["marketing"]);
    let summary_key = create_key(&s.database, "ops", &["suppressions"]);
    let relay = Relay::start(&s.config, &[]);

    // A hard bounce through the tagged VERP path suppresses at once, on
    // every stream.
    let dana = delivered_copy(&relay, &sink, &key, "dana.whitfield@customer.example").await;
    assert!(dana.mail_from.starts_with("bounces+"), "{}", dana.mail_from);
    let hard = readdressed(&fixture("postfix-dsn-user-unknown.eml"), &dana.mail_from);
    let (code, r) = post_bounce(&relay, &key, hard.clone()).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["kind"], "dsn");
    assert_eq!(r["verp"]["check"], "verified", "{r}");
    assert_eq!(r["recipients"][0]["class"], "hard");
    assert_eq!(r["recipients"][0]["reason"], "user_unknown");
    assert_eq!(r["recipients"][0]["attribution"], "verp");
    assert_eq!(r["recipients"][0]["outcome"], "suppressed", "{r}");
    let st = send_status(&relay, &key, "dana.whitfield@customer.example").await;
    assert_eq!(st["status"], "suppressed");
    assert_eq!(st["reason"], "hard_bounce (global)");
    // The same bounce again is a replay: refused, counted.
    let (code, r) = post_bounce(&relay, &key, hard).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["recipients"][0]["outcome"], "refused", "{r}");

    // A forged tag (or one of an address never sent to) suppresses nobody.
    let max = delivered_copy(&relay, &sink, &key, "max@customer.example").await;
    let (local, domain) = max.mail_from.split_once('@').unwrap();
    let last = local.chars().last().unwrap();
    let flipped = format!(
        "{}{}@{domain}",
        &local[..local.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    let forged = dsn(
        1,
        "max@customer.example",
        &flipped,
        "5.1.1",
        "550 5.1.1 no such user",
        "",
    );
    let (_, r) = post_bounce(&relay, &key, forged).await;
    assert_eq!(
        (r["verp"]["check"].as_str(), r["refused"].as_str()),
        (Some("forged"), Some("forged")),
        "{r}"
    );
    assert_eq!(r["recipients"][0]["outcome"], "refused");
    assert_eq!(
        send_status(&relay, &key, "max@customer.example").await["status"],
        "queued"
    );

    // The verified path decides who bounced, not the text: a bounce
    // through max's path that names someone else suppresses max only.
    let other = dsn(
        2,
        "victim@customer.example",
        &max.mail_from,
        "5.1.1",
        "550 5.1.1 no such user",
        "",
    );
    let (_, r) = post_bounce(&relay, &key, other).await;
    assert_eq!(r["recipients"][0]["address"], "max@customer.example", "{r}");
    assert_eq!(r["recipients"][0]["outcome"], "suppressed", "{r}");
    assert_eq!(
        send_status(&relay, &key, "victim@customer.example").await["status"],
        "queued"
    );

    // Without a tag, the returned Message-ID and the address must both
    // match a message sent; then it counts. Otherwise: unattributed.
    let noah = delivered_copy(&relay, &sink, &key, "noah@customer.example").await;
    let quoted = headers_of(&noah);
    let by_id = dsn(
        3,
        "noah@customer.example",
        "bounces@shop.example",
        "5.1.1",
        "550 5.1.1 no such user",
        &quoted,
    );
    let (_, r) = post_bounce(&relay, &key, by_id).await;
    assert_eq!(r["recipients"][0]["attribution"], "message_id", "{r}");
    assert_eq!(r["recipients"][0]["outcome"], "suppressed", "{r}");
    for (n, original) in [
        (4, quoted.as_str()),
        (5, "Message-ID: <made-up@shop.example>\r\n"),
    ] {
        let made_up = dsn(
            n,
            "victim@customer.example",
            "bounces@shop.example",
            "5.1.1",
            "550 5.1.1 no such user",
            original,
        );
        let (_, r) = post_bounce(&relay, &key, made_up).await;
        assert_eq!(r["recipients"][0]["attribution"], "unattributed", "{r}");
        assert_eq!(r["recipients"][0]["outcome"], "recorded", "{r}");
    }
    assert_eq!(
        send_status(&relay, &key, "victim@customer.example").await["status"],
        "queued"
    );

    // A bounce in a form nothing reads recipients from: the verified path
    // names the recipient, the words say why.
    let ivy = delivered_copy(&relay, &sink, &key, "ivy@customer.example").await;
    let odd = format!(
        "From: MAILER-DAEMON@mx.customer.example\r\nTo: <{}>\r\nSubject: Undeliverable mail\r\n\r\n\
         Your message could not be stored for the recipient: the mailbox is full.\r\n",
        ivy.mail_from
    );
    let (_, r) = post_bounce(&relay, &key, odd.into_bytes()).await;
    assert_eq!(
        (
            r["recipients"][0]["address"].as_str(),
            r["recipients"][0]["class"].as_str(),
            r["recipients"][0]["attribution"].as_str(),
            r["recipients"][0]["outcome"].as_str(),
        ),
        (
            Some("ivy@customer.example"),
            Some("mailbox_full"),
            Some("verp"),
            Some("recorded")
        ),
        "{r}"
    );

    // A full mailbox or a spam block is recorded and suppresses nothing.
    for (name, to, class) in [
        (
            "gmail-dsn-mailbox-full.eml",
            "sam.ortega@gmail.example",
            "mailbox_full",
        ),
        ("dsn-policy-block.eml", "robin@strict-isp.example", "policy"),
    ] {
        let copy = delivered_copy(&relay, &sink, &key, to).await;
        let (code, r) =
            post_bounce(&relay, &key, readdressed(&fixture(name), &copy.mail_from)).await;
        assert_eq!(code, 200);
        assert_eq!(r["recipients"][0]["class"], class, "{name}: {r}");
        assert_eq!(r["recipients"][0]["outcome"], "recorded", "{name}");
        assert_eq!(send_status(&relay, &key, to).await["status"], "queued");
    }

    // Soft bounces (one per message) suppress at the limit, not before.
    for n in 1..=3 {
        let copy = delivered_copy(&relay, &sink, &key, "lee@flaky.example").await;
        let (_, r) = post_bounce(
            &relay,
            &key,
            soft_bounce(n, "lee@flaky.example", &copy.mail_from),
        )
        .await;
        assert_eq!(r["recipients"][0]["class"], "soft");
        let expected = if n < 3 { "recorded" } else { "suppressed" };
        assert_eq!(
            r["recipients"][0]["outcome"], expected,
            "soft bounce {n}: {r}"
        );
    }
    assert_eq!(
        send_status(&relay, &key, "lee@flaky.example").await["reason"],
        "soft_bounces (global)"
    );

    // A server that bounces later took every message first: a delivery in
    // between does not clear returned soft bounces (only the relay's own).
    for n in 1..=2 {
        let copy = delivered_copy(&relay, &sink, &key, "kim@flaky.example").await;
        let (_, r) = post_bounce(
            &relay,
            &key,
            soft_bounce(10 + n, "kim@flaky.example", &copy.mail_from),
        )
        .await;
        assert_eq!(r["recipients"][0]["outcome"], "recorded");
    }
    let sent = send(&relay, &key, "kim@flaky.example").await;
    let id = sent["id"].as_str().unwrap();
    relay
        .wait_status(id, &key, WAIT, |v| v["status"] == "delivered")
        .await;
    let copy = sink.wait_for_copy(id, "kim@flaky.example", WAIT).await;
    let (_, r) = post_bounce(
        &relay,
        &key,
        soft_bounce(13, "kim@flaky.example", &copy.mail_from),
    )
    .await;
    assert_eq!(r["recipients"][0]["outcome"], "suppressed", "{r}");

    // Policy blocks and full mailboxes are counted per stream and domain;
    // unattributed bounces are nobody's and count nowhere.
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
    assert_eq!(count_of("customer.example", "hard"), Some(3), "{s}");
    assert_eq!(relay.get_json("/v1/bounces/summary", &key).await.0, 403);
    let (_, metrics) = relay.get("/metrics", &key).await;
    let metrics = String::from_utf8(metrics).unwrap();
    for line in [
        "mailroom_returns_refused_total{kind=\"bounce\",reason=\"forged\"} 1",
        "mailroom_returns_refused_total{kind=\"bounce\",reason=\"replayed\"} 1",
        "mailroom_returns_unattributed_total{kind=\"bounce\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }

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
    // Transactional mail is taken (and bounces later, as a DSN); marketing
    // mail to lee@ is refused at once, so the relay sees those itself.
    let taking = SmtpSink::start().await;
    let refusing =
        SmtpSink::answering(&[("lee@", Reply::RefuseSoft), ("ray@", Reply::RefuseSoft)]).await;
    let rest = format!(
        "soft_bounce_limit = 3\n[streams.transactional]\nroute = \"{}\"\n\
         [streams.marketing]\nroute = \"{}\"\n",
        taking.url(),
        refusing.url()
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
    let copy = delivered_copy(&relay, &taking, &key, "lee@flaky.example").await;
    let (code, r) = post_bounce(
        &relay,
        &key,
        soft_bounce(1, "lee@flaky.example", &copy.mail_from),
    )
    .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["recipients"][0]["class"], "soft");
    assert_eq!(r["recipients"][0]["outcome"], "recorded", "{r}");
    // Two the relay sees itself (554 5.3.0 from the receiving server): the
    // second reaches the limit.
    for _ in 0..2 {
        refused_by_receiver(&relay, &key, "lee@flaky.example").await;
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

    // A delivery clears the relay's own soft bounces: two, a delivery,
    // one more is one in the count, not three.
    for _ in 0..2 {
        refused_by_receiver(&relay, &key, "ray@flaky.example").await;
    }
    // The reset runs with the delivery's outcome.
    let sent = send(&relay, &key, "ray@flaky.example").await;
    relay
        .wait_status(sent["id"].as_str().unwrap(), &key, WAIT, |v| {
            v["status"] == "delivered"
        })
        .await;
    refused_by_receiver(&relay, &key, "ray@flaky.example").await;
    // Give the policy its moment after the outcome, as above.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, list) = relay
        .get_json("/v1/suppressions?address=ray@flaky.example", &key)
        .await;
    assert_eq!(list["suppressions"], json!([]), "{list}");
}

/// Sends a marketing message to `to` (the receiving server refuses it
/// with 554 5.3.0) and waits for the relay to record the bounce.
async fn refused_by_receiver(relay: &Relay, key: &str, to: &str) {
    let (code, sent) = relay
        .post(
            "/v1/messages",
            key,
            &json!({"from": "Shop <news@shop.example>", "to": to,
                    "subject": "News", "text": "Hello", "stream": "marketing"}),
        )
        .await;
    assert_eq!(code, 202, "{sent}");
    assert_eq!(sent["recipients"][0]["status"], "queued", "{sent}");
    let status = relay
        .wait_status(
            sent["id"].as_str().unwrap(),
            key,
            Duration::from_secs(60),
            |v| v["recipients"][0]["status"] == "bounced",
        )
        .await;
    assert_eq!(
        status["recipients"][0]["history"][0]["smtp_code"], 554,
        "{status}"
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

/// `suppress_unattributed = true`: an operator who must take bounces that
/// match nothing mailroom sent gets them applied, soft ones counted.
async fn unattributed_bounces_apply_only_when_configured(postgres: bool) {
    let sink = SmtpSink::start().await;
    let rest = format!(
        "soft_bounce_limit = 2\nsuppress_unattributed = true\n{}",
        relay::both_streams_to(&sink.url())
    );
    let Some(s) = relay::fresh(postgres, &rest).await else {
        return;
    };
    let key = create_key(&s.database, "mta", &["transactional", "webhooks"]);
    let relay = Relay::start(&s.config, &[]);
    let hard = dsn(
        1,
        "gone@customer.example",
        "bounces@shop.example",
        "5.1.1",
        "550 5.1.1 no such user",
        "",
    );
    let (_, r) = post_bounce(&relay, &key, hard).await;
    assert_eq!(
        (
            r["recipients"][0]["attribution"].as_str(),
            r["recipients"][0]["outcome"].as_str()
        ),
        (Some("unattributed"), Some("suppressed")),
        "{r}"
    );
    for n in 1..=2 {
        let (_, r) = post_bounce(
            &relay,
            &key,
            soft_bounce(n + 1, "lee@flaky.example", "bounces@shop.example"),
        )
        .await;
        let expected = if n < 2 { "recorded" } else { "suppressed" };
        assert_eq!(r["recipients"][0]["outcome"], expected, "soft {n}: {r}");
    }
    assert_eq!(
        send_status(&relay, &key, "gone@customer.example").await["status"],
        "suppressed"
    );
}

#[tokio::test]
async fn unattributed_bounces_apply_only_when_configured_sqlite() {
    unattributed_bounces_apply_only_when_configured(false).await;
}

#[tokio::test]
async fn unattributed_bounces_apply_only_when_configured_postgres() {
    unattributed_bounces_apply_only_when_configured(true).await;
}
