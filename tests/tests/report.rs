//! `mailroom report` and the relay's own rate alerts, end to end: mail
//! with a hard bounce and a complaint gives a report whose rates and
//! plain-language warnings say so, in text and JSON, and the alert metric
//! turns on.

use std::time::Duration;

use mailroom_e2e::relay::{self, Relay, create_key, run_cli};
use mailroom_e2e::smtp_sink::{Reply, SmtpSink};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

/// An ARF report (RFC 5965) quoting the reported message's headers.
fn arf(headers: &str) -> Vec<u8> {
    format!(
        "From: fbl@isp.example\r\nTo: fbl@shop.example\r\nSubject: complaint\r\n\
         Message-ID: <arf-7@isp.example>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=feedback-report; boundary=\"arf\"\r\n\r\n\
         --arf\r\nContent-Type: text/plain\r\n\r\nAn abuse report.\r\n\r\n\
         --arf\r\nContent-Type: message/feedback-report\r\n\r\n\
         Feedback-Type: abuse\r\nUser-Agent: ExampleFBL/1.0\r\nVersion: 1\r\n\
         Original-Rcpt-To: <redacted>\r\n\r\n\
         --arf\r\nContent-Type: text/rfc822-headers\r\n\r\n{headers}\r\n--arf--\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn the_report_and_the_alert_metric_flag_bounces_and_complaints() {
    let sink = SmtpSink::start_with(Duration::ZERO, |rcpt| {
        if rcpt.starts_with("gone@") {
            Reply::Refuse
        } else {
            Reply::Accept
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let database = relay::database(dir.path(), false).await.unwrap();
    let config = relay::config_file(
        dir.path().join("c.toml"),
        &database,
        &format!(
            "[alerts]\ncheck_every = \"200ms\"\n\
             [streams.transactional]\nroute = \"{}\"\n",
            sink.url()
        ),
    );
    let key = create_key(&database, "shop", &["transactional", "webhooks", "metrics"]);
    let relay = Relay::start(&config, &[]);

    let mut ids = Vec::new();
    for to in (1..=9)
        .map(|n| format!("c{n}@customer.example"))
        .chain(["gone@customer.example".to_string()])
    {
        let (code, r) = relay
            .post(
                "/v1/messages",
                &key,
                &json!({"from": "orders@shop.example", "to": to, "subject": "Receipt",
                        "text": "Thanks", "stream": "transactional"}),
            )
            .await;
        assert_eq!(code, 202, "{r}");
        ids.push(r["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        relay
            .wait_status(id, &key, WAIT, |v| {
                matches!(v["status"].as_str(), Some("delivered" | "bounced"))
            })
            .await;
    }
    // One recipient complains; the report is traced by the signed reference.
    let got = sink.wait_for(9, WAIT).await;
    let raw = String::from_utf8_lossy(&got[0].data).into_owned();
    let head = raw.split("\r\n\r\n").next().unwrap().to_string();
    let (code, r) = relay
        .post_raw("/v1/webhooks/complaints", &key, arf(&head), &[])
        .await;
    assert_eq!(
        (code, r["outcome"].as_str()),
        (200, Some("suppressed")),
        "{r}"
    );

    let (code, text, err) = run_cli(&["report", "--database", &database, "--since", "1h"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        text.contains("transactional from shop.example: 10 accepted, 9 delivered"),
        "{text}"
    );
    assert!(
        text.contains("0.3 % limit"),
        "complaint warning missing: {text}"
    );
    assert!(text.contains("hard bounce rate 10.00 %"), "{text}");
    let (code, json_out, err) = run_cli(&[
        "report",
        "--database",
        &database,
        "--since",
        "1h",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(json_out.trim()).unwrap();
    let group = &report["groups"][0];
    assert_eq!(group["sending_domain"], "shop.example");
    assert_eq!(group["complaints"], 1);
    assert_eq!(group["bounces"]["hard"], 1);
    assert!((group["hard_bounce_rate"].as_f64().unwrap() - 0.1).abs() < 1e-9);
    assert!(
        report["warnings"].as_array().unwrap().len() >= 2,
        "{report}"
    );
    assert_eq!(
        report["suppressions_added"].as_array().unwrap().len(),
        2,
        "{report}"
    );

    // The relay's own watch sets the alert metric.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, body) = relay.get("/metrics", &key).await;
        let text = String::from_utf8(body).unwrap();
        if text.contains("mailroom_rate_alert{stream=\"transactional\",kind=\"hard_bounce\"} 1")
            && text.contains("mailroom_rate_alert{stream=\"transactional\",kind=\"complaint\"} 1")
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // An empty period says so.
    let other = tempfile::tempdir().unwrap();
    let empty = format!("sqlite://{}", other.path().join("e.db").display());
    let (code, text, _) = run_cli(&["report", "--database", &empty]);
    assert_eq!(code, 0);
    assert!(
        text.contains("No warnings") && text.contains("no mail in this period"),
        "{text}"
    );
}
