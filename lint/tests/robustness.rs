//! Any input is safe: arbitrary bytes and hostile HTML never panic, deep
//! nesting doesn't overflow the stack and huge messages finish.

use lint::{Email, Options, Stream, lint};
use proptest::prelude::*;

fn lint_both_streams(email: &Email) {
    for stream in [Stream::Marketing, Stream::Transactional] {
        let report = lint(
            email,
            &Options {
                stream,
                ..Options::default()
            },
        );
        assert!(report.score >= 0.0 && report.score.is_finite());
        assert!((0.0..=1.0).contains(&report.probability));
        // The score is the sum of its contributions (floored at 0), each
        // rounded to 0.01.
        let c = &report.contributions;
        let sum = c.baseline + c.rules + c.wording + c.links + c.headers + c.layout;
        assert!(
            (sum.max(0.0) - report.score).abs() < 0.1,
            "score {} but contributions add to {sum}",
            report.score
        );
        assert!(report.findings.iter().all(|f| f.points.is_finite()));
    }
}

/// Markup that exercises the HTML walker's odd corners.
const PIECES: [&str; 25] = [
    "<div>",
    "</div>",
    "<table><tr><td>",
    "</td></tr></table>",
    "<b><i>",
    "</b>",
    "<a href=\"https://x.example/?u=https://y.example\">",
    "<a href=\"http://[::1]/\">",
    "<a href=\"javascript:x\">",
    "</a>",
    "<img src=x>",
    "<span style=\"display:none;font-size:0;color:#fff;background:url(x\">",
    "<style>.p{display:none}@media{.q{",
    "</style>",
    "<script>",
    "&zwnj;&nbsp;",
    "<!--",
    "<p class=p>",
    "<style>@media (x){ .m{display:block !important} } form .b,.c>.d{display:inline}",
    "<style>@import url('//fonts.googleapis.com/x'); @import \"",
    "{",
    "}",
    ";",
    "<div class=\"m b d\" style=\"display:none !important;DISPLAY:BLOCK\">",
    "<link rel=stylesheet href=\"https://fonts.googleapis.com@evil.example/x\">",
];

/// Pieces of markup and text: each of `PIECES` as likely as each kind of
/// random text.
fn html_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        PIECES.len() as u32 => proptest::sample::select(&PIECES[..]).prop_map(str::to_string),
        1 => "[ -~]{0,20}",
        1 => "\\PC{0,12}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        if let Ok(email) = Email::parse(&bytes) {
            lint_both_streams(&email);
        }
    }

    #[test]
    fn arbitrary_messages_with_headers_never_panic(
        subject in "\\PC{0,80}",
        from in "\\PC{0,40}",
        body in "\\PC{0,400}",
    ) {
        let raw = format!(
            "From: {from}\r\nReply-To: {from}\r\nSubject: {subject}\r\nContent-Type: text/html\r\n\r\n{body}"
        );
        if let Ok(email) = Email::parse(raw.as_bytes()) {
            lint_both_streams(&email);
        }
    }

    #[test]
    fn hostile_html_never_panics(pieces in proptest::collection::vec(html_piece(), 0..80)) {
        lint_both_streams(&Email::from_html(pieces.concat()));
    }
}

#[test]
fn ten_thousand_deep_nesting_does_not_overflow_the_stack() {
    for open in [
        "<div>",
        "<b>",
        "<table><tr><td>",
        "<span style=\"color:#fff\">",
        "<a href=\"https://x.example\">",
        "<font size=1>",
    ] {
        let html = format!("{}text{}", open.repeat(10_000), "</div>".repeat(10_000));
        let email = Email::from_html(html);
        // A small stack: recursion proportional to depth would overflow it.
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || lint_both_streams(&email))
            .unwrap()
            .join()
            .unwrap_or_else(|_| panic!("linting 10,000 x {open} panicked"));
    }
}

#[test]
fn a_twenty_megabyte_message_is_linted() {
    let paragraph = "<p>Plenty of ordinary text about boots, jackets and socks, with a \
                     <a href=\"https://shop.example/p\">link</a> now and then.</p>\r\n";
    let mut raw = String::from(
        "From: Shop <news@shop.example>\r\nSubject: Big\r\nContent-Type: text/html\r\n\r\n",
    );
    while raw.len() < 20 * 1024 * 1024 {
        raw.push_str(paragraph);
    }
    let email = Email::parse(raw.as_bytes()).unwrap();
    let report = lint(&email, &Options::default());
    assert!(report.rule_ids().contains(&"structure.gmail-clipping"));
}

/// Inputs the fuzzer once crashed lint with (`tests/fuzz-found/`): each
/// gets a report whose score adds up.
#[test]
fn inputs_the_fuzzer_found_are_linted_without_a_panic() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fuzz-found");
    let mut read = 0;
    for entry in std::fs::read_dir(dir).expect("tests/fuzz-found") {
        let path = entry.expect("an entry").path();
        if path.extension().is_some_and(|e| e == "eml") {
            let raw = std::fs::read(&path).expect("read");
            let email = Email::parse(&raw).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            lint_both_streams(&email);
            read += 1;
        }
    }
    assert!(read >= 1);
}
