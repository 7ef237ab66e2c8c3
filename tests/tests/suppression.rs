//! The suppression list end to end: entries made over the API and the CLI
//! stop delivery on the streams they cover, and only those, through the real
//! binary and a real SMTP sink, on SQLite and PostgreSQL.

use std::time::Duration;

use mailroom_e2e::relay::{self, Relay, create_key};
use mailroom_e2e::smtp_sink::{Reply, SmtpSink};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

fn message(stream: &str, to: &[&str]) -> Value {
    json!({
        "from": "Shop <news@shop.example>",
        "to": to,
        "subject": "Hello",
        "text": "Hello there",
        "stream": stream,
    })
}

fn statuses(resp: &Value) -> Vec<(String, String)> {
    resp["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["address"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn suppressed_recipients_are_never_delivered(postgres: bool) {
    // The sink refuses one mailbox with 550 5.1.1, as a server does for an
    // address that doesn't exist.
    let sink = SmtpSink::answering(&[("gone@", Reply::Refuse)]).await;
    let Some(s) = relay::fresh(postgres, &relay::both_streams_to(&sink.url())).await else {
        return;
    };
    let (database, config) = (s.database.clone(), s.config.clone());
    let key = create_key(
        &database,
        "shop",
        &["transactional", "marketing", "suppressions"],
    );
    let marketing_only = create_key(&database, "newsletter-tool", &["marketing", "suppressions"]);
    let sender = create_key(&database, "sender", &["transactional", "marketing"]);
    let relay = Relay::start(&config, &[]);

    // An unsubscribe stops marketing only; a domain entry stops everything.
    let (code, entry) = relay
        .post(
            "/v1/suppressions",
            &key,
            &json!({"address": "Unsub@Customer.Example", "scope": "marketing", "reason": "unsubscribe"}),
        )
        .await;
    assert_eq!(code, 201, "{entry}");
    assert_eq!(entry["value"], "unsub@customer.example");
    let (code, _) = relay
        .post(
            "/v1/suppressions",
            &key,
            &json!({"domain": "blocked.example"}),
        )
        .await;
    assert_eq!(code, 201);
    // A key for one stream can't stop every stream.
    let (code, err) = relay
        .post(
            "/v1/suppressions",
            &marketing_only,
            &json!({"domain": "other.example", "scope": "global"}),
        )
        .await;
    assert_eq!(
        (code, err["error"]["code"].as_str()),
        (403, Some("forbidden_scope"))
    );
    // A key without the suppressions scope can't touch the list at all.
    let (code, err) = relay
        .post(
            "/v1/suppressions",
            &sender,
            &json!({"address": "x@other.example", "scope": "marketing"}),
        )
        .await;
    assert_eq!(
        (code, err["error"]["code"].as_str()),
        (403, Some("forbidden_scope"))
    );
    assert_eq!(relay.get_json("/v1/suppressions", &sender).await.0, 403);
    let (code, err) = relay
        .post(
            "/v1/suppressions",
            &key,
            &json!({"address": "bad@", "scope": "marketing"}),
        )
        .await;
    assert_eq!(
        (code, err["error"]["field"].as_str()),
        (422, Some("address"))
    );

    let (code, mkt) = relay
        .post(
            "/v1/messages",
            &key,
            &message(
                "marketing",
                &[
                    "unsub@customer.example",
                    "ok@customer.example",
                    "x@blocked.example",
                ],
            ),
        )
        .await;
    assert_eq!(code, 202, "{mkt}");
    assert_eq!(
        statuses(&mkt),
        [
            ("unsub@customer.example".into(), "suppressed".into()),
            ("ok@customer.example".into(), "queued".into()),
            ("x@blocked.example".into(), "suppressed".into()),
        ]
    );
    assert_eq!(mkt["recipients"][0]["reason"], "unsubscribe (marketing)");
    let (code, tx) = relay
        .post(
            "/v1/messages",
            &key,
            &message("transactional", &["unsub@customer.example"]),
        )
        .await;
    assert_eq!(code, 202);
    assert_eq!(
        statuses(&tx),
        [("unsub@customer.example".into(), "queued".into())]
    );

    let got = sink.wait_for(2, WAIT).await;
    let mut rcpts: Vec<String> = got.iter().flat_map(|r| r.rcpt_to.clone()).collect();
    rcpts.sort();
    assert_eq!(rcpts, ["ok@customer.example", "unsub@customer.example"]);
    let id = mkt["id"].as_str().unwrap();
    let v = relay
        .wait_status(id, &key, WAIT, |v| {
            v["recipients"][1]["status"] == "delivered"
        })
        .await;
    assert_eq!(v["recipients"][0]["status"], "suppressed");
    assert_eq!(v["recipients"][2]["status"], "suppressed");

    // An entry made with the CLI while the relay runs takes effect within
    // the filter's refresh interval.
    let (code, _, err) = relay::run_cli(&[
        "suppressions",
        "add",
        "late@customer.example",
        "--reason",
        "complaint",
        "--database",
        &database,
    ]);
    assert_eq!(code, 0, "{err}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, r) = relay
            .post(
                "/v1/messages",
                &key,
                &message("transactional", &["late@customer.example"]),
            )
            .await;
        if r["recipients"][0]["status"] == "suppressed" {
            assert_eq!(r["recipients"][0]["reason"], "complaint (global)");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the CLI entry never applied"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Removing an entry lets mail through again.
    assert_eq!(
        relay
            .delete("/v1/suppressions?domain=blocked.example&scope=global", &key)
            .await,
        204
    );
    assert_eq!(
        relay
            .delete("/v1/suppressions?domain=blocked.example&scope=global", &key)
            .await,
        404
    );
    let (_, again) = relay
        .post(
            "/v1/messages",
            &key,
            &message("marketing", &["x@blocked.example"]),
        )
        .await;
    assert_eq!(
        statuses(&again),
        [("x@blocked.example".into(), "queued".into())]
    );

    // Listing shows what the key may see; export writes CSV.
    let (code, list) = relay.get_json("/v1/suppressions", &marketing_only).await;
    assert_eq!(code, 200);
    let values: Vec<&str> = list["suppressions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, ["late@customer.example", "unsub@customer.example"]);
    let (code, out, _) = relay::run_cli(&["suppressions", "export", "--database", &database]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("scope,kind,value,reason,source,created_at,expires_at\n"),
        "{out}"
    );
    assert!(
        out.contains("marketing,address,unsub@customer.example,unsubscribe,api:"),
        "{out}"
    );
    assert!(
        out.contains("global,address,late@customer.example,complaint,cli,"),
        "{out}"
    );
}

#[tokio::test]
async fn suppressed_recipients_are_never_delivered_sqlite() {
    suppressed_recipients_are_never_delivered(false).await;
}

#[tokio::test]
async fn suppressed_recipients_are_never_delivered_postgres() {
    suppressed_recipients_are_never_delivered(true).await;
}
