//! `mailroom list clean` through the real binary.

use mailroom_e2e::relay;

#[test]
fn list_clean_writes_kept_rows_and_a_report_of_removed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("subscribers.csv");
    std::fs::write(
        &input,
        "email,first_name\n\
         dana@customer.example,Dana\n\
         dana@customer.example,Dana again\n\
         sales@shop.example,Sales\n\
         sam@gmial.com,Sam\n\
         broken@,Nobody\n\
         throwaway@mailinator.com,Temp\n\
         jürgen@bücher.example,Jürgen\n",
    )
    .unwrap();
    let out = dir.path().join("clean.csv");
    let (code, stdout, err) = relay::run_cli(&[
        "list",
        "clean",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        stdout.starts_with("kept 2 of 7 rows")
            && stdout.contains("1 disposable, 1 duplicate, 1 invalid, 1 role, 1 typo"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "email,first_name\ndana@customer.example,Dana\njürgen@bücher.example,Jürgen\n"
    );
    let report = std::fs::read_to_string(dir.path().join("clean.removed.csv")).unwrap();
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines[0], "line,address,reason,detail");
    assert!(
        lines[1].starts_with("3,dana@customer.example,duplicate,"),
        "{report}"
    );
    assert!(
        report.contains("5,sam@gmial.com,typo,did you mean sam@gmail.com?"),
        "{report}"
    );
    assert_eq!(lines.len(), 6, "{report}");
}

#[test]
fn list_clean_refuses_a_file_it_cannot_read_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("no-email.csv");
    std::fs::write(&input, "name,phone\nDana,123\n").unwrap();
    let out = dir.path().join("out.csv");
    let (code, _, err) = relay::run_cli(&[
        "list",
        "clean",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no-email.csv") && err.contains("no email column"),
        "{err}"
    );
    let (code, _, err) = relay::run_cli(&[
        "list",
        "clean",
        input.to_str().unwrap(),
        "--out",
        input.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("must not be the input"), "{err}");
}

#[test]
fn list_clean_leaves_out_the_relays_suppressed_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("relay.db").display());
    for args in [
        &[
            "suppressions",
            "add",
            "gone@customer.example",
            "--reason",
            "hard_bounce",
        ][..],
        &[
            "suppressions",
            "add",
            "left@customer.example",
            "--scope",
            "marketing",
            "--reason",
            "unsubscribe",
        ],
        &[
            "suppressions",
            "add",
            "receipts-only@customer.example",
            "--scope",
            "transactional",
        ],
        &["suppressions", "add", "blocked.example"],
    ] {
        let mut args = args.to_vec();
        args.extend(["--database", &database]);
        let (code, _, err) = relay::run_cli(&args);
        assert_eq!(code, 0, "{err}");
    }
    let input = dir.path().join("in.csv");
    std::fs::write(
        &input,
        "email\nkeep@customer.example\nGone@customer.example\nleft@customer.example\n\
         receipts-only@customer.example\nanyone@blocked.example\n",
    )
    .unwrap();
    let out = dir.path().join("out.csv");
    let (code, stdout, err) = relay::run_cli(&[
        "list",
        "clean",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--database",
        &database,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        stdout.starts_with("kept 2 of 5 rows") && stdout.contains("3 suppressed"),
        "{stdout}"
    );
    // A transactional-only entry doesn't keep someone off a mailing list.
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "email\nkeep@customer.example\nreceipts-only@customer.example\n"
    );
    let report = std::fs::read_to_string(dir.path().join("out.removed.csv")).unwrap();
    assert!(
        report.contains("3,Gone@customer.example,suppressed,hard_bounce (global)"),
        "{report}"
    );
    assert!(
        report.contains("4,left@customer.example,suppressed,unsubscribe (marketing)"),
        "{report}"
    );
    assert!(
        report.contains("6,anyone@blocked.example,suppressed,manual (global)"),
        "{report}"
    );
}
