//! Lists end to end through the real binary: double opt-in (checks, the
//! confirmation mail, GET shows a page, POST confirms once), the consent
//! trail, no leak of who is subscribed, signed event webhooks for
//! subscribed/confirmed, expiry of unconfirmed sign-ups, and the CLI's
//! import and inactive pruning.

use std::time::Duration;

use mailroom_e2e::relay::{self, Relay, create_key, run_cli};
use mailroom_e2e::smtp_sink::SmtpSink;
use mailroom_e2e::webhook_sink::{WebhookSink, signature_ok};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

async fn received_by(sink: &SmtpSink, rcpt: &str) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(m) = sink
            .received()
            .into_iter()
            .find(|m| m.rcpt_to.iter().any(|r| r == rcpt))
        {
            // Decoded: a long link is wrapped by quoted-printable.
            let parsed = mail_parser::MessageParser::default()
                .parse(&m.data)
                .expect("a message");
            return format!(
                "Subject: {}\n{}",
                parsed.subject().unwrap_or_default(),
                parsed.body_text(0).unwrap_or_default()
            );
        }
        assert!(tokio::time::Instant::now() < deadline, "nothing for {rcpt}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The confirmation URL in a mail's (decoded) text part.
fn confirm_url(text: &str, base: &str) -> String {
    let start = text.find(&format!("{base}/c/")).expect("confirm link");
    text[start..]
        .split(|c: char| c.is_whitespace() || c == '"' || c == '<')
        .next()
        .unwrap()
        .to_string()
}

fn config(
    dir: &std::path::Path,
    database: &str,
    sink: &SmtpSink,
    extra: &str,
) -> std::path::PathBuf {
    relay::config_file(
        dir.join("c.toml"),
        database,
        &format!(
            "{extra}\n\
             [streams.transactional]\nroute = \"{url}\"\n\
             [streams.marketing]\nroute = \"{url}\"\n\
             [webhooks]\nretry_schedule = [\"200ms\"]\n",
            url = sink.url()
        ),
    )
}

async fn double_opt_in(postgres: bool) {
    let sink = SmtpSink::start().await;
    let hooks = WebhookSink::start(|_| 200).await;
    let dir = tempfile::tempdir().unwrap();
    let Some(database) = relay::database(dir.path(), postgres).await else {
        return;
    };
    let config = config(dir.path(), &database, &sink, "");
    let key = create_key(
        &database,
        "shop",
        &["transactional", "marketing", "lists", "webhooks"],
    );
    let sender = create_key(&database, "sender", &["transactional", "marketing"]);
    let relay = Relay::start(&config, &[]);
    let client = mailroom_e2e::http_client().build().unwrap();

    let (code, ep) = relay
        .post(
            "/v1/webhooks/endpoints",
            &key,
            &json!({"url": hooks.url, "events": ["subscribed", "confirmed", "unsubscribed"]}),
        )
        .await;
    assert_eq!(code, 201, "{ep}");
    let secret = ep["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));

    let list = json!({"id": "news", "name": "Acme News", "from": "Acme <news@shop.example>"});
    assert_eq!(relay.post("/v1/lists", &sender, &list).await.0, 403);
    let (code, created) = relay.post("/v1/lists", &key, &list).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(relay.post("/v1/lists", &key, &list).await.0, 409);
    let (code, bad) = relay
        .post(
            "/v1/lists",
            &key,
            &json!({"id": "Bad Id", "name": "x", "from": "a@shop.example"}),
        )
        .await;
    assert_eq!((code, bad["error"]["field"].as_str()), (422, Some("id")));

    // Checks before anything is stored.
    for (email, code) in [
        ("not an address", "invalid_address"),
        ("admin@shop.example", "role_address"),
        ("someone@mailinator.com", "disposable_address"),
        ("jo@gmial.com", "possible_typo"),
    ] {
        let (status, r) = relay
            .post("/v1/lists/news/subscribers", &key, &json!({"email": email}))
            .await;
        assert_eq!(
            (status, r["error"]["code"].as_str()),
            (422, Some(code)),
            "{email}: {r}"
        );
    }
    let (_, typo) = relay
        .post(
            "/v1/lists/news/subscribers",
            &key,
            &json!({"email": "jo@gmial.com"}),
        )
        .await;
    assert_eq!(typo["suggestion"], "jo@gmail.com", "{typo}");
    let (_, none) = relay.get_json("/v1/lists/news/subscribers", &key).await;
    assert_eq!(none["subscribers"], json!([]));
    assert_eq!(
        relay
            .post(
                "/v1/lists/nope/subscribers",
                &key,
                &json!({"email": "a@b.example"})
            )
            .await
            .0,
        404
    );

    // A sign-up: pending, a confirmation mail on the transactional stream.
    let signup = json!({
        "email": "Ana@Customer.Example",
        "source": "footer-form",
        "ip": "203.0.113.9",
        "user_agent": "Mozilla/5.0 (test)",
    });
    let (code, first) = relay
        .post("/v1/lists/news/subscribers", &key, &signup)
        .await;
    assert_eq!(code, 202, "{first}");
    let mail = received_by(&sink, "ana@customer.example").await;
    assert!(
        mail.contains("Subject: Please confirm your subscription to Acme News"),
        "{mail}"
    );
    let url = confirm_url(&mail, &relay.base);
    let (_, sub) = relay
        .get_json("/v1/lists/news/subscribers/ana@customer.example", &key)
        .await;
    assert_eq!(sub["status"], "pending", "{sub}");

    // A link scanner's GET changes nothing.
    let page = client.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let body = page.text().await.unwrap();
    assert!(
        body.contains("<form method=\"post\">") && body.contains("Acme News"),
        "{body}"
    );
    let (_, sub) = relay
        .get_json("/v1/lists/news/subscribers/ana@customer.example", &key)
        .await;
    assert_eq!(sub["status"], "pending");
    // A forged token confirms nothing.
    let mut forged = url.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(client.post(&forged).send().await.unwrap().status(), 404);

    // The POST confirms, once.
    let r = client
        .post(&url)
        .header("user-agent", "Browser/1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        client.post(&url).send().await.unwrap().status(),
        404,
        "single use"
    );
    let (_, sub) = relay
        .get_json("/v1/lists/news/subscribers/ana@customer.example", &key)
        .await;
    assert_eq!(sub["status"], "confirmed", "{sub}");
    let trail = sub["consent_trail"].as_array().unwrap();
    assert_eq!(trail.len(), 2, "{sub}");
    assert_eq!(trail[0]["status"], "pending");
    assert_eq!(trail[0]["source"], "footer-form");
    assert_eq!(trail[0]["ip"], "203.0.113.9");
    assert_eq!(trail[0]["user_agent"], "Mozilla/5.0 (test)");
    assert_eq!(trail[1]["status"], "confirmed");
    assert_eq!(trail[1]["ip"], "127.0.0.1");
    assert_eq!(trail[1]["user_agent"], "Browser/1.0");

    // Subscribing again answers exactly as before and sends nothing.
    let mails = sink.count();
    let (code, again) = relay
        .post("/v1/lists/news/subscribers", &key, &signup)
        .await;
    assert_eq!((code, &again), (202, &first));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        sink.count(),
        mails,
        "no second confirmation to a confirmed address"
    );

    // Events: subscribed then confirmed, signed.
    let hits = hooks
        .wait_until(WAIT, |h| {
            h.iter().filter(|h| h.answered == 200).count() >= 2
        })
        .await;
    // Sent concurrently, so in either order.
    let mut types: Vec<String> = hits
        .iter()
        .map(|h| h.json()["type"].as_str().unwrap().to_string())
        .collect();
    types.sort();
    assert_eq!(types, ["confirmed", "subscribed"]);
    for h in &hits {
        assert!(
            signature_ok(&secret, &h.headers["mailroom-signature"], &h.body),
            "{h:?}"
        );
        assert!(!signature_ok(
            "whsec_wrong",
            &h.headers["mailroom-signature"],
            &h.body
        ));
        assert_eq!(h.json()["data"]["address"], "ana@customer.example");
    }
    // Recorded just after the endpoint answered: wait for it.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, d) = relay.get_json("/v1/webhooks/deliveries", &key).await;
        let rows = d["deliveries"].as_array().unwrap();
        if rows.len() == 2 && rows.iter().all(|r| r["state"] == "delivered") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{d}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Engagement and unsubscribing through the API.
    let (code, e) = relay
        .post(
            "/v1/engagement",
            &key,
            &json!({"address": "ana@customer.example", "type": "click"}),
        )
        .await;
    assert_eq!((code, e["updated"].as_i64()), (200, Some(1)), "{e}");
    assert_eq!(
        relay
            .post(
                "/v1/engagement",
                &key,
                &json!({"address": "ana@customer.example", "type": "like"})
            )
            .await
            .0,
        422
    );
    assert_eq!(
        relay
            .delete("/v1/lists/news/subscribers/ana@customer.example", &key)
            .await,
        204
    );
    assert_eq!(
        relay
            .delete("/v1/lists/news/subscribers/ana@customer.example", &key)
            .await,
        404
    );
    let (_, sub) = relay
        .get_json("/v1/lists/news/subscribers/ana@customer.example", &key)
        .await;
    assert_eq!(sub["status"], "unsubscribed");
    assert!(sub["last_click_at"].as_i64().is_some());
    hooks
        .wait_until(WAIT, |h| {
            h.iter().any(|h| h.json()["type"] == "unsubscribed")
        })
        .await;

    // A pending sign-up that is never confirmed is deleted once it is
    // older than lists.pending_expiry (checked at start and hourly).
    let (code, _) = relay
        .post(
            "/v1/lists/news/subscribers",
            &key,
            &json!({"email": "late@customer.example"}),
        )
        .await;
    assert_eq!(code, 202);
    received_by(&sink, "late@customer.example").await;
    relay.terminate().await;
    let config = self::config(
        dir.path(),
        &database,
        &sink,
        "[lists]\npending_expiry = \"1ms\"",
    );
    let relay = Relay::start(&config, &[]);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (code, _) = relay
            .get_json("/v1/lists/news/subscribers/late@customer.example", &key)
            .await;
        if code == 404 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pending sign-up not expired; the relay logged:\n{}",
            relay.log().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The confirmed-then-unsubscribed one keeps its row and trail.
    let (code, _) = relay
        .get_json("/v1/lists/news/subscribers/ana@customer.example", &key)
        .await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn double_opt_in_sqlite() {
    double_opt_in(false).await;
}

#[tokio::test]
async fn double_opt_in_postgres() {
    double_opt_in(true).await;
}

async fn import_and_prune(postgres: bool) {
    let sink = SmtpSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let Some(database) = relay::database(dir.path(), postgres).await else {
        return;
    };
    let config = config(dir.path(), &database, &sink, "");
    let key = create_key(
        &database,
        "shop",
        &["transactional", "marketing", "lists", "suppressions"],
    );
    let relay = Relay::start(&config, &[]);
    let (code, _) = relay
        .post(
            "/v1/lists",
            &key,
            &json!({"id": "news", "name": "News", "from": "news@shop.example"}),
        )
        .await;
    assert_eq!(code, 201);
    // gone@ is suppressed already; the import leaves it out.
    let (code, _) = relay
        .post(
            "/v1/suppressions",
            &key,
            &json!({"address": "gone@customer.example", "reason": "complaint"}),
        )
        .await;
    assert_eq!(code, 201);

    let csv = dir.path().join("subscribers.csv");
    std::fs::write(
        &csv,
        "name,email\nAna,ana@customer.example\nBo,bo@customer.example\nCy,cy@customer.example\n\
         Dup,ANA@customer.example\nRole,info@customer.example\nGone,gone@customer.example\nBad,nope\n",
    )
    .unwrap();
    let (code, out, err) = run_cli(&[
        "list",
        "import",
        csv.to_str().unwrap(),
        "--list",
        "news",
        "--database",
        &database,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("7 rows, 3 added to news, 0 already on the list, 4 rejected"),
        "{out}"
    );
    let report = std::fs::read_to_string(dir.path().join("subscribers.rejected.csv")).unwrap();
    for reason in ["duplicate", "role", "suppressed", "invalid"] {
        assert!(report.contains(reason), "{reason} missing in {report}");
    }
    let (_, subs) = relay
        .get_json("/v1/lists/news/subscribers?status=confirmed", &key)
        .await;
    let addresses: Vec<&str> = subs["subscribers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["address"].as_str().unwrap())
        .collect();
    assert_eq!(
        addresses,
        [
            "ana@customer.example",
            "bo@customer.example",
            "cy@customer.example"
        ]
    );
    let (_, ana) = relay
        .get_json("/v1/lists/news/subscribers/ana@customer.example", &key)
        .await;
    assert_eq!(ana["consent_trail"][0]["source"], "import:subscribers.csv");
    // Importing again adds nothing and changes nobody's state.
    let (code, out, _) = run_cli(&[
        "list",
        "import",
        csv.to_str().unwrap(),
        "--list",
        "news",
        "--database",
        &database,
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains("0 added to news, 3 already on the list"),
        "{out}"
    );

    // Mail them all (deliveries are what makes "inactive" meaningful), then
    // let one of them click.
    for to in [
        "ana@customer.example",
        "bo@customer.example",
        "cy@customer.example",
    ] {
        let (code, r) = relay
            .post(
                "/v1/messages",
                &key,
                &json!({"from": "news@shop.example", "to": to, "subject": "Hi", "text": "News", "stream": "marketing"}),
            )
            .await;
        assert_eq!(code, 202, "{r}");
    }
    sink.wait_for(3, WAIT).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, s) = relay
            .get_json("/v1/lists/news/subscribers?status=confirmed", &key)
            .await;
        if s["subscribers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["last_delivered_at"].is_i64())
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "deliveries not noted: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // "Inactive for 0 days": everyone before now, except a click that
    // comes (a few seconds) later than the prune's cut-off.
    let soon = relay_now() + 30_000;
    let (code, _) = relay
        .post(
            "/v1/engagement",
            &key,
            &json!({"address": "cy@customer.example", "type": "click", "at": soon}),
        )
        .await;
    assert_eq!(code, 200);

    let prune = |extra: &[&str]| {
        let mut args = vec![
            "list",
            "prune",
            "--list",
            "news",
            "--inactive-days",
            "0",
            "--database",
            &database,
        ];
        args.extend_from_slice(extra);
        let (code, out, err) = run_cli(&args);
        assert_eq!(code, 0, "{err}");
        let rows: Vec<String> = out
            .lines()
            .skip(1)
            .map(|l| l.split(',').next().unwrap().to_string())
            .collect();
        (rows, err)
    };
    let (rows, err) = prune(&[]);
    assert_eq!(rows, ["ana@customer.example", "bo@customer.example"]);
    assert!(err.contains("would be pruned (dry run"), "{err}");
    // Last-chance campaign first: listed, recorded with --apply.
    let (rows, _) = prune(&["--reengage", "--apply"]);
    assert_eq!(rows, ["ana@customer.example", "bo@customer.example"]);
    let (rows, _) = prune(&["--reengage"]);
    assert!(rows.is_empty(), "already sent the last chance: {rows:?}");
    // Within the grace period they are spared; after it, pruned.
    let (rows, _) = prune(&[]);
    assert!(rows.is_empty(), "{rows:?}");
    let (rows, err) = prune(&["--grace-days", "0", "--apply"]);
    assert_eq!(rows, ["ana@customer.example", "bo@customer.example"]);
    assert!(err.contains("2 pruned"), "{err}");
    let (_, s) = relay.get_json("/v1/lists/news", &key).await;
    assert_eq!(
        s["subscribers"],
        json!({"confirmed": 1, "pruned": 2}),
        "{s}"
    );
    let (_, bo) = relay
        .get_json("/v1/lists/news/subscribers/bo@customer.example", &key)
        .await;
    let last: &Value = bo["consent_trail"].as_array().unwrap().last().unwrap();
    assert_eq!(
        (last["status"].as_str(), last["source"].as_str()),
        (Some("pruned"), Some("prune"))
    );
    // An unknown list is an error, not an empty answer.
    let (code, _, err) = run_cli(&[
        "list",
        "prune",
        "--list",
        "nope",
        "--inactive-days",
        "1",
        "--database",
        &database,
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("no list"), "{err}");
}

fn relay_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn import_and_prune_sqlite() {
    import_and_prune(false).await;
}

#[tokio::test]
async fn import_and_prune_postgres() {
    import_and_prune(true).await;
}

/// With `[lists] check_mx`, a sign-up whose domain has neither MX nor
/// address records is refused before anything is stored.
#[tokio::test]
async fn sign_ups_to_domains_that_cannot_receive_mail_are_refused() {
    let sink = SmtpSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let database = relay::database(dir.path(), false).await.unwrap();
    let zone = [(
        "receives.example".to_string(),
        vec![(10, "mx.receives.example.".to_string())],
    )]
    .into_iter()
    .collect();
    let dns = mailroom_e2e::dns::serve_mx(zone).await;
    let config = config(
        dir.path(),
        &database,
        &sink,
        &format!("dns_servers = [\"{dns}\"]\n[lists]\ncheck_mx = true"),
    );
    let key = create_key(&database, "shop", &["lists"]);
    let relay = Relay::start(&config, &[]);
    let (code, _) = relay
        .post(
            "/v1/lists",
            &key,
            &json!({"id": "news", "name": "News", "from": "news@shop.example"}),
        )
        .await;
    assert_eq!(code, 201);
    let (code, r) = relay
        .post(
            "/v1/lists/news/subscribers",
            &key,
            &json!({"email": "ana@nomail.example"}),
        )
        .await;
    assert_eq!(
        (code, r["error"]["code"].as_str()),
        (422, Some("domain_cannot_receive")),
        "{r}"
    );
    let (code, r) = relay
        .post(
            "/v1/lists/news/subscribers",
            &key,
            &json!({"email": "ana@receives.example"}),
        )
        .await;
    assert_eq!(code, 202, "{r}");
    let (_, subs) = relay.get_json("/v1/lists/news/subscribers", &key).await;
    let addresses: Vec<&str> = subs["subscribers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["address"].as_str().unwrap())
        .collect();
    assert_eq!(addresses, ["ana@receives.example"]);
}
