//! Any bytes into `mailroom lint`'s library, as a whole message and as a
//! bare HTML body: it must answer with a report whose score is finite, not
//! negative, the sum of its contributions and rated by its thresholds —
//! never panic, whatever the MIME or the markup.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lint::{Email, Options, Rating, Stream, lint};

fn check(email: &Email) {
    for stream in [Stream::Marketing, Stream::Transactional] {
        let options = Options {
            stream,
            ..Options::default()
        };
        let report = lint(email, &options);
        assert!(report.score.is_finite() && report.score >= 0.0, "{}", report.score);
        assert!((0.0..=1.0).contains(&report.probability));
        let c = &report.contributions;
        let sum = c.baseline + c.rules + c.wording + c.links + c.headers + c.layout;
        assert!((sum.max(0.0) - report.score).abs() < 0.1, "{sum} vs {}", report.score);
        assert_eq!(report.rating, Rating::from_score(report.score));
        assert!(report.findings.iter().all(|f| f.points.is_finite()));
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(email) = Email::parse(data) {
        check(&email);
    }
    if let Ok(html) = std::str::from_utf8(data) {
        check(&Email::from_html(html.to_string()));
    }
});
