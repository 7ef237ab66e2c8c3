//! One-click unsubscribe end to end: a marketing message carries signed
//! List-Unsubscribe headers; a GET of the link changes nothing; the POST a
//! mailbox provider sends unsubscribes at once; the next marketing message
//! to that address is suppressed while transactional mail still goes.

use std::time::Duration;

use mailroom_e2e::dkim::Published;
use mailroom_e2e::relay::{self, Relay, create_key, keygen};
use mailroom_e2e::smtp_sink::SmtpSink;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

fn message(stream: &str, to: &str) -> Value {
    json!({
        "from": "Acme <news@shop.example>",
        "to": to,
        "subject": "Winter gear",
        "text": "Hello Dana, the winter range is in.",
        "stream": stream,
    })
}

async fn one_click_unsubscribe(postgres: bool) {
    let sink = SmtpSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let Some(database) = relay::database(dir.path(), postgres).await else {
        return;
    };
    let dkim = keygen(dir.path(), "shop.example", "s1", "ed25519");
    let dns = Published::default();
    dns.publish(&dkim.dns_name, &dkim.dns_value);
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "database = \"{database}\"\n\
             [[dkim]]\ndomain = \"shop.example\"\nselector = \"s1\"\nkey = \"{key}\"\n\
             [streams.transactional]\nroute = \"{url}\"\n\
             [streams.marketing]\nroute = \"{url}\"\n",
            key = dkim.path.display(),
            url = sink.url()
        ),
    )
    .unwrap();
    let key = create_key(
        &database,
        "shop",
        &["transactional", "marketing", "suppressions"],
    );
    let mta = create_key(&database, "mta", &["webhooks"]);
    let relay = Relay::start(&config, &[]);

    let (code, resp) = relay
        .post(
            "/v1/messages",
            &key,
            &message("marketing", "dana@customer.example"),
        )
        .await;
    assert_eq!(code, 202, "{resp}");
    let got = sink.wait_for(1, WAIT).await;
    let raw = got[0].data.clone();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
    let lu = parsed
        .header_raw("List-Unsubscribe")
        .expect("List-Unsubscribe")
        .trim()
        .to_string();
    assert_eq!(
        parsed.header_raw("List-Unsubscribe-Post").map(str::trim),
        Some("List-Unsubscribe=One-Click")
    );
    assert_eq!(
        parsed.header_raw("List-Id").map(str::trim),
        Some("<marketing.shop.example>")
    );
    // Both headers are covered by a signature that verifies.
    let sigs = dns.verify(&raw).await;
    let signed: Vec<String> = sigs[0].2.iter().map(|h| h.to_ascii_lowercase()).collect();
    for h in ["list-unsubscribe", "list-unsubscribe-post", "list-id"] {
        assert!(signed.iter().any(|s| s == h), "{h} not signed: {signed:?}");
    }
    let links = list_links(&lu);
    assert_eq!(links.len(), 2, "{lu}");
    let url = links[0].clone();
    assert!(
        url.starts_with(&format!("{}/u/", relay.base)),
        "{url} in {text}"
    );
    assert!(
        links[1].starts_with("mailto:unsubscribe+") && links[1].contains("@shop.example?"),
        "{lu}"
    );

    let client = mailroom_e2e::http_client().build().unwrap();
    // A link scanner's GET shows a page and unsubscribes nobody.
    let page = client.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let body = page.text().await.unwrap();
    assert!(
        body.contains("<form method=\"post\">") && body.contains("d***@customer.example"),
        "{body}"
    );
    let (_, still) = relay
        .post(
            "/v1/messages",
            &key,
            &message("marketing", "dana@customer.example"),
        )
        .await;
    assert_eq!(
        still["recipients"][0]["status"], "queued",
        "a GET must not unsubscribe"
    );

    // A forged or altered token is refused.
    let mut forged = url.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let r = client
        .post(&forged)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // A POST without the RFC 8058 body is not a one-click request.
    let r = client.post(&url).body("hello").send().await.unwrap();
    assert_eq!(r.status(), 400);

    // The provider's one-click POST: no key, no cookie; twice is fine.
    for _ in 0..2 {
        let r = client
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let (_, after) = relay
        .post(
            "/v1/messages",
            &key,
            &message("marketing", "Dana@Customer.example"),
        )
        .await;
    assert_eq!(after["recipients"][0]["status"], "suppressed", "{after}");
    assert_eq!(after["recipients"][0]["reason"], "unsubscribe (marketing)");
    let (_, receipt) = relay
        .post(
            "/v1/messages",
            &key,
            &message("transactional", "dana@customer.example"),
        )
        .await;
    assert_eq!(
        receipt["recipients"][0]["status"], "queued",
        "receipts still go"
    );
    let (_, list) = relay
        .get_json("/v1/suppressions?scope=marketing", &key)
        .await;
    assert_eq!(list["suppressions"][0]["value"], "dana@customer.example");
    assert!(
        list["suppressions"][0]["source"]
            .as_str()
            .unwrap()
            .starts_with("one-click:")
    );

    // The mailto: link, for clients without one-click: the MTA receiving
    // the unsubscribe mail hands it to the webhook.
    let mailto = links[1].trim_start_matches("mailto:");
    let to = mailto.split('?').next().unwrap();
    let request = format!(
        "From: someone@elsewhere.example\r\nTo: {to}\r\nSubject: unsubscribe\r\n\r\nplease\r\n"
    );
    // dana is unsubscribed already; it is idempotent.
    let (code, r) = post_raw(&relay, &mta, request.clone().into_bytes()).await;
    assert_eq!(
        (code, r["outcome"].as_str()),
        (200, Some("unsubscribed")),
        "{r}"
    );
    assert_eq!(r["address"], "dana@customer.example");
    // A key without the webhooks scope can't.
    assert_eq!(post_raw(&relay, &key, request.into_bytes()).await.0, 403);

    // A message to several recipients gets the mailto: link only; the
    // unsubscribe mail's From says which recipient it is.
    let (code, multi) = relay
        .post(
            "/v1/messages",
            &key,
            &json!({
                "from": "Acme <news@shop.example>",
                "to": ["ann@customer.example", "bo@customer.example"],
                "subject": "Winter gear",
                "text": "Hello, the winter range is in.",
                "stream": "marketing",
            }),
        )
        .await;
    assert_eq!(code, 202, "{multi}");
    let raw = received_by(&sink, "ann@customer.example").await;
    let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
    assert!(parsed.header_raw("List-Unsubscribe-Post").is_none());
    let links = list_links(parsed.header_raw("List-Unsubscribe").unwrap());
    assert_eq!(links.len(), 1, "{links:?}");
    let to = links[0]
        .trim_start_matches("mailto:")
        .split('?')
        .next()
        .unwrap()
        .to_string();
    let forged = format!("From: mallory@evil.example\r\nTo: {to}\r\n\r\nx\r\n");
    let (code, r) = post_raw(&relay, &mta, forged.into_bytes()).await;
    assert_eq!(
        (code, r["outcome"].as_str()),
        (200, Some("unresolved")),
        "{r}"
    );
    let real = format!("From: Bo <BO@customer.example>\r\nTo: {to}\r\n\r\nx\r\n");
    let (code, r) = post_raw(&relay, &mta, real.into_bytes()).await;
    assert_eq!(
        (code, r["address"].as_str()),
        (200, Some("bo@customer.example")),
        "{r}"
    );
    let (_, next) = relay
        .post(
            "/v1/messages",
            &key,
            &json!({
                "from": "Acme <news@shop.example>",
                "to": ["ann@customer.example", "bo@customer.example"],
                "subject": "More gear",
                "text": "Hello again.",
                "stream": "marketing",
            }),
        )
        .await;
    assert_eq!(next["recipients"][0]["status"], "queued", "{next}");
    assert_eq!(next["recipients"][1]["status"], "suppressed", "{next}");
    // A body with no token is refused with a reason.
    let (code, r) = post_raw(
        &relay,
        &mta,
        b"From: a@b.example\r\nTo: list@shop.example\r\n\r\nx".to_vec(),
    )
    .await;
    assert_eq!(
        (code, r["error"]["code"].as_str()),
        (422, Some("no_token")),
        "{r}"
    );
}

/// The links of a `List-Unsubscribe` value, without angle brackets.
fn list_links(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|l| {
            l.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
        .filter(|l| !l.is_empty())
        .collect()
}

/// The first message the sink received for `rcpt`, waiting for it.
async fn received_by(sink: &SmtpSink, rcpt: &str) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(m) = sink
            .received()
            .into_iter()
            .find(|m| m.rcpt_to.iter().any(|r| r == rcpt))
        {
            return m.data;
        }
        assert!(tokio::time::Instant::now() < deadline, "nothing for {rcpt}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn post_raw(relay: &Relay, key: &str, body: Vec<u8>) -> (u16, Value) {
    relay
        .post_raw("/v1/webhooks/unsubscribes", key, body, &[])
        .await
}

#[tokio::test]
async fn one_click_unsubscribe_sqlite() {
    one_click_unsubscribe(false).await;
}

#[tokio::test]
async fn one_click_unsubscribe_postgres() {
    one_click_unsubscribe(true).await;
}
