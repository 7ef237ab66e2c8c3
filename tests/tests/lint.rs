//! `mailroom lint` and the relay's lint endpoint and marketing gate, through
//! the real binary.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use mailroom_e2e::relay::{self, Relay};
use serde_json::{Value, json};

fn fixture(name: &str) -> String {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "lint",
        "tests",
        "fixtures",
        name,
    ]
    .iter()
    .collect();
    path.to_str().unwrap().to_string()
}

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn spammy_message(stream: &str) -> Value {
    json!({
        "from": "MEGA DEALS <deals@shop.example>",
        "to": "someone@example.net",
        "subject": "FINAL NOTICE!!! 90% OFF 🔥🔥🔥💰",
        "html": "<h1>ACT NOW!!! THIS IS NOT SPAM</h1><p>Dear friend, you have been selected for a FR33 gift! \
                 Make money fast, no credit check, claim your prize. <a href=\"https://bit.ly/x\">CLICK HERE</a></p>",
        "stream": stream,
    })
}

fn good_newsletter() -> Value {
    json!({
        "from": "Acme Outfitters <news@shop.example>",
        "to": "dana@example.net",
        "reply_to": "hello@shop.example",
        "subject": "Winter gear we tested on the wettest ridges",
        "html": "<div style=\"display:none;max-height:0;overflow:hidden\">Twenty-four pieces we tested on wet November ridges, and a guide to boot care.\
                 &zwnj;&nbsp;&zwnj;&nbsp;&zwnj;&nbsp;&zwnj;&nbsp;&zwnj;&nbsp;&zwnj;&nbsp;&zwnj;&nbsp;&zwnj;&nbsp;&zwnj;&nbsp;&zwnj;&nbsp;&zwnj;&nbsp;&zwnj;&nbsp;&zwnj;&nbsp;&zwnj;&nbsp;&zwnj;&nbsp;</div>\
                 <h1>Hi Dana, winter is here</h1><p>Our team spent November testing gear on the wettest ridges we could find. \
                 These are the pieces that kept us warm and dry.</p>\
                 <p><a href=\"https://shop.example/winter\">See the winter range</a></p>\
                 <p>Acme Outfitters GmbH, Hafenweg 7, 20457 Hamburg. <a href=\"https://shop.example/u/abc\">Unsubscribe</a></p>",
        "text": "Hi Dana, winter is here\n\nOur team spent November testing gear on the wettest ridges we could find. \
                 These are the pieces that kept us warm and dry.\n\nSee the winter range: https://shop.example/winter\n\n\
                 Acme Outfitters GmbH, Hafenweg 7, 20457 Hamburg. Unsubscribe: https://shop.example/u/abc",
        "headers": {
            "List-Unsubscribe": "<https://shop.example/u/abc>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"
        },
        "stream": "marketing",
    })
}

#[test]
fn lint_prints_one_json_line_per_file_and_exits_by_threshold() {
    let (code, out, err) = relay::run_cli(&[
        "lint",
        "--format",
        "json",
        "--stream",
        "transactional",
        &fixture("receipt.eml"),
    ]);
    assert_eq!(code, 0, "{err}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["file"], fixture("receipt.eml"));
    assert_eq!(lines[0]["rating"], "good");
    assert_eq!(lines[0]["findings"], json!([]));
    // The learned score: a probability and where the score comes from.
    let probability = lines[0]["probability"].as_f64().unwrap();
    assert!(probability < 0.2, "{}", lines[0]);
    let c = &lines[0]["contributions"];
    let sum: f64 = ["baseline", "rules", "wording", "links", "headers", "layout"]
        .iter()
        .map(|k| c[k].as_f64().unwrap())
        .sum();
    assert!(
        (sum.max(0.0) - lines[0]["score"].as_f64().unwrap()).abs() < 0.1,
        "{c}"
    );

    let (code, out, _) = relay::run_cli(&[
        "lint",
        "--format",
        "json",
        &fixture("newsletter.eml"),
        &fixture("spammy-promo.eml"),
    ]);
    assert_eq!(code, 1, "the promo is above the default threshold");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["rating"], "good");
    assert_eq!(lines[1]["rating"], "risky");
    let shortener = lines[1]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "links.shortener")
        .expect("the shortener is reported");
    for key in ["severity", "points", "message", "evidence", "fix"] {
        assert!(!shortener[key].is_null(), "{key} missing: {shortener}");
    }
    assert_eq!(shortener["evidence"], "https://bit.ly/3xYzAbC");

    // A generous threshold lets the same file pass.
    let (code, _, _) =
        relay::run_cli(&["lint", "--fail-above", "100", &fixture("spammy-promo.eml")]);
    assert_eq!(code, 0);
}

#[test]
fn lint_text_output_is_plain_when_not_a_terminal() {
    let (code, out, _) = relay::run_cli(&["lint", &fixture("phishing-links.eml")]);
    assert_eq!(code, 1);
    assert!(
        !out.contains('\u{1b}'),
        "escape codes in piped output: {out:?}"
    );
    assert!(out.contains("score ") && out.contains("risky"), "{out}");
    // The three findings that add most come first.
    let first = out.lines().nth(1).unwrap();
    assert!(
        first.starts_with("  fix first: ") && first.matches(" +").count() == 3,
        "{out}"
    );
    assert!(
        out.contains("links.text-mismatch") && out.contains("fix: "),
        "{out}"
    );
    // Grouped by severity, errors first.
    let error = out.find("  error (").unwrap();
    let warning = out.find("  warning (").unwrap();
    assert!(error < warning, "{out}");
}

#[test]
fn an_unreadable_file_exits_2_naming_it_and_the_others_are_still_linted() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.eml");
    let bad_json = dir.path().join("bad.json");
    std::fs::write(
        &bad_json,
        r#"{"from": "a@shop.example", "to": "not an address", "subject": "x", "text": "x"}"#,
    )
    .unwrap();
    let (code, out, err) = relay::run_cli(&[
        "lint",
        "--format",
        "json",
        missing.to_str().unwrap(),
        &fixture("receipt.eml"),
        bad_json.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("missing.eml"), "{err}");
    assert!(err.contains("bad.json") && err.contains("to"), "{err}");
    assert_eq!(
        json_lines(&out).len(),
        1,
        "the readable file is still linted"
    );
}

#[test]
fn lint_reads_stdin_and_relay_json_messages() {
    let mut child = Command::new(relay::binary())
        .args(["lint", "--format", "json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"<html><body><a href=\"http://203.0.113.9/x\">go</a></body></html>")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let lines = json_lines(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(lines[0]["file"], "<stdin>");
    let rules: Vec<&str> = lines[0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert!(rules.contains(&"links.ip-host"), "{rules:?}");

    // The relay's own JSON: its stream decides the rules unless --stream says otherwise.
    let dir = tempfile::tempdir().unwrap();
    let msg = dir.path().join("promo.json");
    std::fs::write(&msg, spammy_message("marketing").to_string()).unwrap();
    let (code, out, err) = relay::run_cli(&["lint", "--format", "json", msg.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    let report = &json_lines(&out)[0];
    assert_eq!(report["summary"]["stream"], "marketing");
    assert_eq!(report["rating"], "risky");
    let (_, out, _) = relay::run_cli(&[
        "lint",
        "--format",
        "json",
        "--stream",
        "transactional",
        msg.to_str().unwrap(),
    ]);
    assert_eq!(json_lines(&out)[0]["summary"]["stream"], "transactional");
}

#[tokio::test]
async fn the_lint_endpoint_reports_and_the_marketing_gate_refuses_risky_mail() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    let database = format!("sqlite://{}", dir.path().join("lint.db").display());
    std::fs::write(
        &config,
        format!("database = \"{database}\"\n[streams.marketing]\nlint_max_score = 5.0\n"),
    )
    .unwrap();
    let mut relay = Relay::start(&config, &["--capture"]);
    let key = relay.read_stdout_lines(2).last().unwrap().clone();

    let (code, _) = relay
        .post("/v1/lint", "", &spammy_message("marketing"))
        .await;
    assert_eq!(code, 401, "linting needs a key like every API route");

    let (code, report) = relay
        .post("/v1/lint", &key, &spammy_message("marketing"))
        .await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["rating"], "risky");
    assert_eq!(report["passed"], false);
    assert_eq!(
        report["gate"],
        json!({"enabled": true, "would_refuse": true})
    );

    let (code, err) = relay.post("/v1/lint", &key, &json!({"from": "x"})).await;
    assert_eq!(code, 422, "{err}");

    // Sending it on marketing is refused, with the report.
    let (code, refused) = relay
        .post("/v1/messages", &key, &spammy_message("marketing"))
        .await;
    assert_eq!(code, 422, "{refused}");
    assert_eq!(refused["error"]["code"], "lint_failed");
    assert!(refused["report"]["score"].as_f64().unwrap() > 5.0);
    assert!(
        refused["report"]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["rule"] == "content.obfuscated-word"),
        "{refused}"
    );

    // Transactional has no gate configured.
    let (code, resp) = relay
        .post("/v1/messages", &key, &spammy_message("transactional"))
        .await;
    assert_eq!(code, 202, "{resp}");

    // A well-made newsletter passes the gate and is queued.
    let (code, report) = relay.post("/v1/lint", &key, &good_newsletter()).await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["rating"], "good", "{report}");
    let (code, resp) = relay.post("/v1/messages", &key, &good_newsletter()).await;
    assert_eq!(code, 202, "{resp}");

    // In a batch the gate answers per item.
    let (code, batch) = relay
        .post(
            "/v1/messages/batch",
            &key,
            &json!([spammy_message("marketing"), good_newsletter()]),
        )
        .await;
    assert_eq!(code, 200, "{batch}");
    assert_eq!(batch["accepted"], 1);
    assert_eq!(batch["results"][0]["error"]["code"], "lint_failed");
    assert!(batch["results"][0]["report"]["findings"].is_array());
    assert_eq!(batch["results"][1]["status"], 202);
}

#[test]
fn many_files_are_linted_in_parallel_and_printed_in_the_order_given() {
    // More files than one batch, with an unreadable one in the middle.
    let names = ["receipt.eml", "spammy-promo.eml", "newsletter.eml"];
    let mut files: Vec<String> = (0..150).map(|i| fixture(names[i % 3])).collect();
    files.insert(100, "/nonexistent/missing.eml".into());
    let mut args = vec!["lint", "--format", "json"];
    args.extend(files.iter().map(String::as_str));
    let (code, out, err) = relay::run_cli(&args);
    assert_eq!(code, 2, "an unreadable file fails the run: {err}");
    assert!(err.contains("/nonexistent/missing.eml"), "{err}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 150, "every readable file is reported");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["file"], fixture(names[i % 3]), "line {i} out of order");
    }
    let promo: Vec<_> = lines.iter().skip(1).step_by(3).collect();
    assert!(
        promo
            .iter()
            .all(|l| l["rating"] == "risky" && l["score"] == promo[0]["score"])
    );
}
