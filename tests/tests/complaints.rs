//! `POST /v1/webhooks/complaints` end to end: an ARF report whose recipient
//! is redacted is traced to the recipient by the signed reference header,
//! or by the VERP return path, and the address is suppressed everywhere.

use std::time::Duration;

use mailroom_e2e::relay::{self, Relay, create_key};
use mailroom_e2e::smtp_sink::SmtpSink;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

/// An ARF report (RFC 5965) quoting `headers` of the reported message.
fn arf(original_rcpt_to: &str, headers: &str) -> Vec<u8> {
    format!(
        "From: fbl@isp.example\r\nTo: fbl@shop.example\r\nSubject: complaint about message\r\n\
         Message-ID: <arf-1@isp.example>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=feedback-report; boundary=\"arf\"\r\n\r\n\
         --arf\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n\r\n\
         --arf\r\nContent-Type: message/feedback-report\r\n\r\n\
         Feedback-Type: abuse\r\nUser-Agent: ExampleFBL/1.0\r\nVersion: 1\r\n\
         Original-Rcpt-To: {original_rcpt_to}\r\n\r\n\
         --arf\r\nContent-Type: text/rfc822-headers\r\n\r\n{headers}\r\n--arf--\r\n"
    )
    .into_bytes()
}

/// The header block of a received message, with the To: address redacted
/// as feedback loops do.
fn redacted_headers(raw: &[u8], return_path: &str) -> String {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap();
    let mut out = format!("Return-Path: <{return_path}>\r\n");
    for line in head.split("\r\n") {
        if line.to_ascii_lowercase().starts_with("to:") {
            out.push_str("To: redacted@redacted.invalid\r\n");
        } else {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out
}

async fn post_report(relay: &Relay, key: &str, raw: Vec<u8>) -> (u16, Value) {
    relay
        .post_raw(
            "/v1/webhooks/complaints",
            key,
            raw,
            &[("content-type", "message/rfc822")],
        )
        .await
}

async fn send(relay: &Relay, key: &str, stream: &str, to: &[&str]) -> Value {
    let (code, resp) = relay
        .post(
            "/v1/messages",
            key,
            &json!({"from": "Shop <news@shop.example>", "to": to, "subject": "Hi",
                    "text": "Hello", "stream": stream}),
        )
        .await;
    assert_eq!(code, 202, "{resp}");
    resp
}

async fn complaints_suppress_the_traced_recipient(postgres: bool) {
    let sink = SmtpSink::start().await;
    let Some(s) = relay::fresh(postgres, &relay::both_streams_to(&sink.url())).await else {
        return;
    };
    let (database, config) = (&s.database, &s.config);
    let key = create_key(database, "fbl", &["transactional", "marketing", "webhooks"]);
    let relay = Relay::start(config, &[]);

    // A single-recipient message carries the signed reference.
    send(&relay, &key, "marketing", &["pat@customer.example"]).await;
    let got = sink.wait_for(1, WAIT).await;
    let headers = redacted_headers(&got[0].data, "someone@else.example");
    assert!(headers.contains("X-Mailroom-Ref: "), "{headers}");
    let (code, r) = post_report(&relay, &key, arf("<redacted@redacted.invalid>", &headers)).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["outcome"], "suppressed");
    assert_eq!(r["found_by"], "reference");
    assert_eq!(r["address"], "pat@customer.example");
    assert_eq!(r["feedback_type"], "abuse");
    let s = send(&relay, &key, "transactional", &["pat@customer.example"]).await;
    assert_eq!(s["recipients"][0]["status"], "suppressed");
    assert_eq!(s["recipients"][0]["reason"], "complaint (global)");

    // Several recipients share one rendering: the VERP return path names
    // which of them complained.
    send(
        &relay,
        &key,
        "marketing",
        &["a@customer.example", "b@customer.example"],
    )
    .await;
    let got = sink.wait_for(3, WAIT).await;
    let to_b = got
        .iter()
        .find(|m| m.rcpt_to == ["b@customer.example"])
        .expect("b's copy");
    let headers = redacted_headers(&to_b.data, &to_b.mail_from);
    let (_, r) = post_report(&relay, &key, arf("<redacted@redacted.invalid>", &headers)).await;
    assert_eq!(
        (r["found_by"].as_str(), r["address"].as_str()),
        (Some("return-path"), Some("b@customer.example"))
    );
    let s = send(
        &relay,
        &key,
        "marketing",
        &["a@customer.example", "b@customer.example"],
    )
    .await;
    assert_eq!(s["recipients"][0]["status"], "queued");
    assert_eq!(s["recipients"][1]["status"], "suppressed");

    // A report that names its recipient counts only when the reported
    // Message-ID is of a message sent to that recipient.
    let sent = send(&relay, &key, "marketing", &["kim@customer.example"]).await;
    let copy = sink
        .wait_for_copy(sent["id"].as_str().unwrap(), "kim@customer.example", WAIT)
        .await;
    let text = String::from_utf8_lossy(&copy.data).to_string();
    let message_id = text
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
        .expect("a Message-ID")
        .to_string();
    let (_, r) = post_report(
        &relay,
        &key,
        arf(
            "<kim@customer.example>",
            &format!("{message_id}\r\nSubject: x\r\n"),
        ),
    )
    .await;
    assert_eq!(
        (
            r["found_by"].as_str(),
            r["address"].as_str(),
            r["outcome"].as_str()
        ),
        (
            Some("message-id"),
            Some("kim@customer.example"),
            Some("suppressed")
        ),
        "{r}"
    );
    // Naming an address without proof is unattributed: nobody suppressed.
    for headers in ["Subject: x\r\n".to_string(), format!("{message_id}\r\n")] {
        let (_, r) = post_report(&relay, &key, arf("<lou@customer.example>", &headers)).await;
        assert_eq!(r["outcome"], "unattributed", "{r}");
    }
    let s = send(&relay, &key, "marketing", &["lou@customer.example"]).await;
    assert_eq!(s["recipients"][0]["status"], "queued");
    let (_, r) = post_report(&relay, &key, arf("<redacted>", "Subject: x\r\n")).await;
    assert_eq!(r["outcome"], "unresolved");
    // A forged reference is refused, and so is the same complaint twice.
    let forged = "X-Mailroom-Ref: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n";
    let (_, r) = post_report(&relay, &key, arf("<pat@customer.example>", forged)).await;
    assert_eq!(
        (r["outcome"].as_str(), r["refused"].as_str()),
        (Some("refused"), Some("forged")),
        "{r}"
    );
    let headers = redacted_headers(&to_b.data, &to_b.mail_from);
    let (_, r) = post_report(&relay, &key, arf("<redacted@redacted.invalid>", &headers)).await;
    assert_eq!(
        (r["outcome"].as_str(), r["refused"].as_str()),
        (Some("refused"), Some("replayed")),
        "{r}"
    );
    // Not a report at all.
    let (code, r) = post_report(&relay, &key, b"Subject: hi\r\n\r\nhello".to_vec()).await;
    assert_eq!(
        (code, r["error"]["code"].as_str()),
        (422, Some("invalid_report"))
    );
}

#[tokio::test]
async fn complaints_suppress_the_traced_recipient_sqlite() {
    complaints_suppress_the_traced_recipient(false).await;
}

#[tokio::test]
async fn complaints_suppress_the_traced_recipient_postgres() {
    complaints_suppress_the_traced_recipient(true).await;
}
