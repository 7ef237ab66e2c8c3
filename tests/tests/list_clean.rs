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
