//! Backups under load: a snapshot taken while messages are being accepted
//! and delivered verifies, restores into a new database holding every
//! message accepted before it with its state, and a relay started on the
//! restored store delivers what was still queued. A tampered file, a wrong
//! key and restoring over an existing database are refused.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailroom_e2e::relay::{self, Relay, create_key, run_cli};
use mailroom_e2e::smtp_sink::{Reply, SmtpSink};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(120);

fn config(
    dir: &std::path::Path,
    name: &str,
    database: &str,
    sink: &SmtpSink,
) -> std::path::PathBuf {
    relay::config_file(
        dir.join(name),
        database,
        &format!(
            "[streams.transactional]\nroute = \"{}\"\nconcurrency = 2\n",
            sink.url()
        ),
    )
}

#[tokio::test]
async fn a_backup_taken_under_load_restores_and_delivers_what_was_queued() {
    // A slow destination, so a backlog builds while mail is accepted.
    let slow = SmtpSink::start_with(Duration::from_millis(30), |_| Reply::Accept).await;
    let dir = tempfile::tempdir().unwrap();
    let database = relay::database(dir.path(), false).await.unwrap();
    let key = create_key(&database, "shop", &["transactional"]);
    let relay = Arc::new(Relay::start(
        &config(dir.path(), "a.toml", &database, &slow),
        &[],
    ));

    let identity = dir.path().join("backup-key.txt");
    let (code, public, err) = run_cli(&["backup", "keygen", "--out", identity.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let public = public.trim().to_string();
    assert!(public.starts_with("age1"), "{public}");

    // Load: a sender posting messages until told to stop, noting when each
    // was accepted.
    let accepted: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (relay, key, accepted, stop) =
            (relay.clone(), key.clone(), accepted.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let (code, r) = relay
                    .post(
                        "/v1/messages",
                        &key,
                        &json!({"from": "orders@shop.example", "to": format!("c{n}@customer.example"),
                                "subject": format!("Receipt {n}"), "text": "Thanks", "stream": "transactional"}),
                    )
                    .await;
                assert_eq!(code, 202, "{r}");
                accepted
                    .lock()
                    .unwrap()
                    .push((r["id"].as_str().unwrap().to_string(), Instant::now()));
            }
        })
    };
    while accepted.lock().unwrap().len() < 40 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let file = dir.path().join("mailroom.backup");
    let started = Instant::now();
    let (code, out, err) = {
        let (db, file, public) = (database.clone(), file.clone(), public.clone());
        tokio::task::spawn_blocking(move || {
            run_cli(&[
                "backup",
                "--database",
                &db,
                "--out",
                file.to_str().unwrap(),
                "--recipient",
                &public,
            ])
        })
        .await
        .unwrap()
    };
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("written"), "{out}");
    // Keep the load going a little past the snapshot, then stop.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.await.unwrap();
    let before: Vec<String> = accepted
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, at)| *at < started)
        .map(|(id, _)| id.clone())
        .collect();
    assert!(before.len() >= 40);

    // verify: good; a flipped byte or the wrong key: refused.
    let (code, out, err) = run_cli(&[
        "backup",
        "verify",
        file.to_str().unwrap(),
        "--identity",
        identity.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("good") && out.contains("messages "), "{out}");
    let tampered = dir.path().join("tampered.backup");
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&tampered, &bytes).unwrap();
    let (code, _, err) = run_cli(&[
        "backup",
        "verify",
        tampered.to_str().unwrap(),
        "--identity",
        identity.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "a tampered backup must not verify");
    assert!(!err.is_empty());
    let other = dir.path().join("other-key.txt");
    assert_eq!(
        run_cli(&["backup", "keygen", "--out", other.to_str().unwrap()]).0,
        0
    );
    let (code, _, err) = run_cli(&[
        "backup",
        "verify",
        file.to_str().unwrap(),
        "--identity",
        other.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("decrypt"), "{err}");

    // restore: into a new file; never over an existing one without --force.
    let restored = format!("sqlite://{}", dir.path().join("restored.db").display());
    let restore = |target: &str, file: &std::path::Path, force: bool| {
        let mut args = vec![
            "restore",
            file.to_str().unwrap(),
            "--database",
            target,
            "--identity",
            identity.to_str().unwrap(),
        ];
        if force {
            args.push("--force");
        }
        run_cli(&args)
    };
    let (code, _, err) = restore(&restored, &tampered, false);
    assert_eq!(code, 2, "a tampered backup is not restored: {err}");
    assert!(!dir.path().join("restored.db").exists());
    let (code, _, err) = restore(&restored, &file, false);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = restore(&restored, &file, false);
    assert_eq!(code, 2);
    assert!(err.contains("--force"), "{err}");
    let (code, _, err) = restore(&database, &file, false);
    assert_eq!(
        code, 2,
        "the live database is never overwritten by accident: {err}"
    );

    // A relay on the restored store: every message accepted before the
    // snapshot is there, and what was still queued is delivered.
    drop(Arc::try_unwrap(relay).ok().expect("load task finished"));
    let fast = SmtpSink::start().await;
    let relay = Relay::start(&config(dir.path(), "b.toml", &restored, &fast), &[]);
    let mut delivered_after_restore = 0;
    for id in &before {
        let status = relay
            .wait_status(id, &key, WAIT, |v| v["status"] == "delivered")
            .await;
        assert_eq!(status["id"], id.as_str());
        let _ = status;
    }
    for m in fast.received() {
        if m.rcpt_to.iter().any(|r| r.starts_with('c')) {
            delivered_after_restore += 1;
        }
    }
    assert!(
        delivered_after_restore >= 1,
        "nothing was still queued at the snapshot; the test proves less than it should"
    );

    // A passphrase works as well as a key pair.
    let with_pass = dir.path().join("pass.backup");
    let bin = relay::binary();
    let run = |args: &[&str], pass: &str| {
        let out = std::process::Command::new(&bin)
            .args(args)
            .env("BACKUP_PASSPHRASE", pass)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(
        &[
            "backup",
            "--database",
            &restored,
            "--out",
            with_pass.to_str().unwrap(),
            "--passphrase-env",
            "BACKUP_PASSPHRASE",
        ],
        "correct horse battery staple",
    );
    assert_eq!(code, 0, "{err}");
    let (code, _) = run(
        &[
            "backup",
            "verify",
            with_pass.to_str().unwrap(),
            "--passphrase-env",
            "BACKUP_PASSPHRASE",
        ],
        "wrong",
    );
    assert_eq!(code, 2);
    let (code, err) = run(
        &[
            "backup",
            "verify",
            with_pass.to_str().unwrap(),
            "--passphrase-env",
            "BACKUP_PASSPHRASE",
        ],
        "correct horse battery staple",
    );
    assert_eq!(code, 0, "{err}");
}
