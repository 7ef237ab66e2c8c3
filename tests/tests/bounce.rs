//! `mailroom bounce parse` through the real binary.

use std::io::Write as _;
use std::process::{Command, Stdio};

use mailroom_e2e::relay;
use serde_json::Value;

fn fixture(name: &str) -> String {
    format!(
        "{}/../list-hygiene/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn bounce_parse_prints_recipients_classes_and_the_original_as_json() {
    let (code, out, err) = relay::run_cli(&[
        "bounce",
        "parse",
        "--format",
        "json",
        &fixture("postfix-dsn-user-unknown.eml"),
    ]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["kind"], "dsn");
    assert_eq!(
        v["recipients"][0]["address"],
        "dana.whitfield@customer.example"
    );
    assert_eq!(v["recipients"][0]["action"], "failed");
    assert_eq!(v["recipients"][0]["status"], "5.1.1");
    assert_eq!(v["recipients"][0]["class"], "hard");
    assert!(
        v["recipients"][0]["diagnostic"]
            .as_str()
            .unwrap()
            .contains("User unknown")
    );
    assert_eq!(
        v["original_message_id"],
        "<0193a6f2-7c1e-7b40-9d1a-3f2b8c4e5a10@shop.example>"
    );
    assert_eq!(v["verp"]["recipient_index"], 0);
}

#[test]
fn bounce_parse_reads_stdin_and_prints_text() {
    let raw = std::fs::read(fixture("gmail-dsn-mailbox-full.eml")).unwrap();
    let mut child = Command::new(relay::binary())
        .args(["bounce", "parse", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&raw).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("<stdin>: delivery status notification"),
        "{text}"
    );
    assert!(
        text.contains("sam.ortega@gmail.example  failed  5.2.2  mailbox_full\n"),
        "{text}"
    );
    let (code, out, _) =
        relay::run_cli(&["bounce", "parse", &fixture("postfix-dsn-user-unknown.eml")]);
    assert_eq!(code, 0);
    assert!(
        out.contains("dana.whitfield@customer.example  failed  5.1.1  hard (user_unknown)"),
        "{out}"
    );
}

#[test]
fn bounce_parse_exits_2_on_what_is_not_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.eml");
    std::fs::write(&empty, "").unwrap();
    let (code, _, err) = relay::run_cli(&["bounce", "parse", empty.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("empty.eml") && err.contains("empty input"),
        "{err}"
    );
    let (code, _, err) = relay::run_cli(&["bounce", "parse", "/nonexistent/b.eml"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/b.eml"), "{err}");
}

#[test]
fn bounce_parse_reads_many_files_one_json_line_each_and_goes_on_past_a_bad_one() {
    let (code, out, err) = relay::run_cli(&[
        "bounce",
        "parse",
        "--format",
        "json",
        &fixture("postfix-dsn-user-unknown.eml"),
        "/nonexistent/b.eml",
        &fixture("gmail-dsn-mailbox-full.eml"),
    ]);
    assert_eq!(code, 2, "a file that can't be read is an error");
    assert!(err.contains("/nonexistent/b.eml"), "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0]["file"]
            .as_str()
            .unwrap()
            .ends_with("postfix-dsn-user-unknown.eml")
    );
    assert_eq!(lines[0]["recipients"][0]["reason"], "user_unknown");
    assert!(
        lines[1]["file"]
            .as_str()
            .unwrap()
            .ends_with("gmail-dsn-mailbox-full.eml")
    );
    assert_eq!(lines[1]["recipients"][0]["class"], "mailbox_full");
}
