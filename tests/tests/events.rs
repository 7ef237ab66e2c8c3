//! Outbound event webhooks end to end: delivered and bounced events reach a
//! registered endpoint signed, are retried from the outbox until it answers
//! 2xx, and the deliveries list says what happened; an unreachable endpoint
//! keeps its events pending with the error; deleting it gives them up.

use std::time::Duration;

use mailroom_e2e::relay::{self, Relay, create_key};
use mailroom_e2e::smtp_sink::{Reply, SmtpSink};
use mailroom_e2e::webhook_sink::{WebhookSink, signature_ok};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

async fn events_reach_endpoints(postgres: bool) {
    let sink = SmtpSink::answering(&[("gone@", Reply::Refuse), ("slow@", Reply::Defer)]).await;
    // The endpoint fails twice before it takes anything.
    let hooks = WebhookSink::start(|n| if n < 2 { 500 } else { 204 }).await;
    let dir = tempfile::tempdir().unwrap();
    let Some(database) = relay::database(dir.path(), postgres).await else {
        return;
    };
    let config = relay::config_file(
        dir.path().join("c.toml"),
        &database,
        &format!(
            "[streams.transactional]\nroute = \"{url}\"\n\
             [webhooks]\nretry_schedule = [\"200ms\"]\n",
            url = sink.url()
        ),
    );
    let key = create_key(&database, "shop", &["transactional", "webhooks"]);
    let sender = create_key(&database, "sender", &["transactional"]);
    let relay = Relay::start(&config, &[]);

    // Registering checks its input and needs the webhooks scope.
    let endpoint = |url: &str, events: Value| json!({"url": url, "events": events});
    assert_eq!(
        relay
            .post(
                "/v1/webhooks/endpoints",
                &sender,
                &endpoint(&hooks.url, json!([]))
            )
            .await
            .0,
        403
    );
    let (code, e) = relay
        .post(
            "/v1/webhooks/endpoints",
            &key,
            &endpoint(&hooks.url, json!(["opened"])),
        )
        .await;
    assert_eq!(
        (code, e["error"]["code"].as_str()),
        (422, Some("invalid_event")),
        "{e}"
    );
    let (code, e) = relay
        .post(
            "/v1/webhooks/endpoints",
            &key,
            &endpoint("ftp://x.example/", json!([])),
        )
        .await;
    assert_eq!(
        (code, e["error"]["code"].as_str()),
        (422, Some("invalid_url")),
        "{e}"
    );

    let (code, good) = relay
        .post(
            "/v1/webhooks/endpoints",
            &key,
            &endpoint(&hooks.url, json!(["delivered", "deferred", "bounced"])),
        )
        .await;
    assert_eq!(code, 201, "{good}");
    let secret = good["secret"].as_str().unwrap().to_string();
    let good_id = good["id"].as_str().unwrap().to_string();
    // Nothing listens on port 9 of loopback here.
    let (code, dead) = relay
        .post(
            "/v1/webhooks/endpoints",
            &key,
            &endpoint("http://127.0.0.1:9/hooks", json!([])),
        )
        .await;
    assert_eq!(code, 201);
    let dead_id = dead["id"].as_str().unwrap().to_string();
    let (_, list) = relay.get_json("/v1/webhooks/endpoints", &key).await;
    assert_eq!(list["endpoints"].as_array().unwrap().len(), 2);
    assert!(
        list["endpoints"][0].get("secret").is_none(),
        "secrets are shown once: {list}"
    );
    assert_eq!(
        list["endpoints"][0]["events"],
        json!(["delivered", "deferred", "bounced"])
    );

    for to in [
        "ok@customer.example",
        "gone@customer.example",
        "slow@customer.example",
    ] {
        let (code, r) = relay
            .post(
                "/v1/messages",
                &key,
                &json!({"from": "orders@shop.example", "to": to, "subject": "Receipt",
                        "text": "Thanks", "stream": "transactional"}),
            )
            .await;
        assert_eq!(code, 202, "{r}");
    }

    let hits = hooks
        .wait_until(WAIT, |h| {
            h.iter().filter(|h| h.answered == 204).count() >= 3
        })
        .await;
    assert!(
        hits.len() >= 5,
        "two failures, then the three events: {hits:#?}"
    );
    let ok: Vec<_> = hits.iter().filter(|h| h.answered == 204).collect();
    let mut kinds: Vec<String> = ok
        .iter()
        .map(|h| h.json()["type"].as_str().unwrap().to_string())
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["bounced", "deferred", "delivered"]);
    for h in &hits {
        assert!(
            signature_ok(&secret, &h.headers["mailroom-signature"], &h.body),
            "{h:?}"
        );
        assert_eq!(
            h.headers["mailroom-event"],
            h.json()["type"].as_str().unwrap()
        );
        assert_eq!(
            h.headers["mailroom-delivery"],
            h.json()["id"].as_str().unwrap()
        );
    }
    // Retries resend the same event (same id), not a new one.
    let ids: std::collections::HashSet<String> = hits
        .iter()
        .map(|h| h.json()["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3, "{hits:#?}");
    let bounced = ok
        .iter()
        .find(|h| h.json()["type"] == "bounced")
        .unwrap()
        .json();
    assert_eq!(bounced["data"]["address"], "gone@customer.example");
    assert_eq!(bounced["data"]["class"], "hard");
    assert_eq!(bounced["data"]["smtp_code"], 550);
    let delivered = ok
        .iter()
        .find(|h| h.json()["type"] == "delivered")
        .unwrap()
        .json();
    assert_eq!(delivered["data"]["stream"], "transactional");
    let deferred = ok
        .iter()
        .find(|h| h.json()["type"] == "deferred")
        .unwrap()
        .json();
    assert_eq!(deferred["data"]["address"], "slow@customer.example");
    assert_eq!(deferred["data"]["smtp_code"], 451);
    assert!(deferred["data"]["retry_at"].is_i64(), "{deferred}");

    // The deliveries list: both delivered (recorded just after the
    // endpoint answered), the attempts add up.
    let d = delivered_rows(
        &relay,
        &key,
        &format!("/v1/webhooks/deliveries?endpoint={good_id}"),
        3,
    )
    .await;
    let rows = d["deliveries"].as_array().unwrap();
    assert!(rows.iter().all(|r| r["last_status"] == 204), "{d}");
    let attempts: i64 = rows.iter().map(|r| r["attempts"].as_i64().unwrap()).sum();
    assert_eq!(attempts as usize, hits.len(), "{d}");

    // The dead endpoint keeps everything pending, with the reason.
    let deadline = tokio::time::Instant::now() + WAIT;
    let rows = loop {
        let (_, d) = relay
            .get_json(&format!("/v1/webhooks/deliveries?endpoint={dead_id}"), &key)
            .await;
        let rows = d["deliveries"].as_array().unwrap().clone();
        if rows.len() == 3 && rows.iter().all(|r| r["last_error"].is_string()) {
            break rows;
        }
        assert!(tokio::time::Instant::now() < deadline, "{d}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(rows.iter().all(|r| r["state"] == "pending"), "{rows:?}");
    assert_eq!(
        relay
            .delete(&format!("/v1/webhooks/endpoints/{dead_id}"), &key)
            .await,
        204
    );
    assert_eq!(
        relay
            .delete(&format!("/v1/webhooks/endpoints/{dead_id}"), &key)
            .await,
        404
    );
    let (_, d) = relay
        .get_json(
            &format!("/v1/webhooks/deliveries?endpoint={dead_id}&state=failed"),
            &key,
        )
        .await;
    assert_eq!(d["deliveries"].as_array().unwrap().len(), 3, "{d}");
    let (code, e) = relay
        .get_json("/v1/webhooks/deliveries?state=lost", &key)
        .await;
    assert_eq!((code, e["error"]["field"].as_str()), (422, Some("state")));
}

#[tokio::test]
async fn events_reach_endpoints_sqlite() {
    events_reach_endpoints(false).await;
}

#[tokio::test]
async fn events_reach_endpoints_postgres() {
    events_reach_endpoints(true).await;
}

/// Polls `path` until it lists `n` deliveries, all delivered.
pub async fn delivered_rows(relay: &Relay, key: &str, path: &str, n: usize) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, d) = relay.get_json(path, key).await;
        let rows = d["deliveries"].as_array().unwrap();
        if rows.len() == n && rows.iter().all(|r| r["state"] == "delivered") {
            return d;
        }
        assert!(tokio::time::Instant::now() < deadline, "{d}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
