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
    let key = create_key(&database, "shop", &["transactional", "marketing"]);
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
    let url = lu.trim_start_matches('<').trim_end_matches('>').to_string();
    assert!(
        url.starts_with(&format!("{}/u/", relay.base)),
        "{url} in {text}"
    );

    let client = reqwest::Client::new();
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
}

#[tokio::test]
async fn one_click_unsubscribe_sqlite() {
    one_click_unsubscribe(false).await;
}

#[tokio::test]
async fn one_click_unsubscribe_postgres() {
    one_click_unsubscribe(true).await;
}
