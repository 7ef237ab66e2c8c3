//! Each fixture under tests/fixtures/ is linted and must hit exactly the
//! rules listed here, with the rating listed here. The ratings are the
//! learned model's (docs/lint-model.md): hand-made fixtures whose rating
//! the model moved say why next to the expectation.

use lint::{Email, Options, Rating, Stream, lint};

fn load(name: &str) -> Email {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    if name.ends_with(".html") {
        Email::from_html(String::from_utf8(bytes).expect("utf-8 fixture"))
    } else {
        Email::parse(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"))
    }
}

fn check(name: &str, stream: Stream, rules: &[&str], rating: Rating) {
    let report = lint(
        &load(name),
        &Options {
            stream,
            ..Options::default()
        },
    );
    let mut expected = rules.to_vec();
    expected.sort_unstable();
    assert_eq!(
        report.rule_ids(),
        expected,
        "{name}: rules differ; full report:\n{}",
        serde_json::to_string_pretty(&report).unwrap()
    );
    assert_eq!(
        report.rating,
        rating,
        "{name}: score {}; full report:\n{}",
        report.score,
        serde_json::to_string_pretty(&report).unwrap()
    );
}

#[test]
fn a_clean_receipt_has_no_findings() {
    check("receipt.eml", Stream::Transactional, &[], Rating::Good);
}

#[test]
fn a_good_newsletter_has_no_findings() {
    check("newsletter.eml", Stream::Marketing, &[], Rating::Good);
}

#[test]
fn a_spammy_promo_is_risky() {
    check(
        "spammy-promo.eml",
        Stream::Marketing,
        &[
            "content.trigger-phrase",
            "content.obfuscated-word",
            "content.caps-words",
            "content.caps-subject",
            "content.exclamation-run",
            "content.money-run",
            "content.percent-discount",
            "content.fake-reply-prefix",
            "content.emoji-overload",
            "links.shortener",
            "links.insecure",
            "structure.no-text-part",
            "preheader.missing",
            "compliance.no-unsubscribe-link",
            "compliance.no-list-unsubscribe",
            "compliance.no-postal-address",
            "compliance.no-personalization",
            // What the model learned beyond the rules: an http link among
            // few, and the shouting From name (under the 0.3 a pattern
            // needs to be reported after session 15's retraining, over it
            // again after session 16's).
            "links.pattern",
            "headers.pattern",
        ],
        Rating::Risky,
    );
}

#[test]
fn an_image_only_mail_is_flagged() {
    check(
        "image-only.eml",
        Stream::Marketing,
        &[
            "images.image-only",
            "images.missing-alt",
            "structure.no-text-part",
            "preheader.missing",
            "compliance.no-postal-address",
            "compliance.no-personalization",
        ],
        Rating::Risky,
    );
}

#[test]
fn phishing_style_links_are_risky() {
    check(
        "phishing-links.eml",
        Stream::Transactional,
        &[
            "content.trigger-phrase",
            "links.ip-host",
            "links.insecure",
            "links.text-mismatch",
            "links.open-redirect",
            "html.form",
            "headers.from-name-mixed-script",
            "headers.from-name-address",
            "headers.reply-to-unrelated",
            "preheader.missing",
            "structure.parts-differ",
        ],
        Rating::Risky,
    );
}

#[test]
fn hidden_text_outside_the_preheader_is_flagged() {
    check(
        "hidden-text.eml",
        Stream::Transactional,
        &[
            "html.hidden-text",
            "html.tiny-text",
            "html.invisible-color",
            "preheader.runs-into-body",
        ],
        // Hidden hash-busting words, tiny and invisible text: risky since
        // session 16 set the threshold per corpus (issue 13's unit, 5.3 for
        // the model it trained); under the old 7.3 this was only `review`.
        Rating::Risky,
    );
}

#[test]
fn a_boilerplate_preheader_is_flagged() {
    check(
        "bad-preheader.eml",
        Stream::Transactional,
        &["preheader.boilerplate", "preheader.missing"],
        Rating::Good,
    );
}

#[test]
fn a_short_unpadded_preheader_runs_into_the_body() {
    check(
        "short-preheader.html",
        Stream::Transactional,
        &["preheader.length", "preheader.runs-into-body"],
        Rating::Good,
    );
}

#[test]
fn html_over_gmails_clipping_limit_is_flagged() {
    check(
        "oversize.html",
        Stream::Transactional,
        // A few links, all to one site, add just under the 0.3 a learned
        // pattern needs to be reported since session 15's retraining.
        &["structure.gmail-clipping"],
        Rating::Good,
    );
}

#[test]
fn broken_and_active_html_is_flagged() {
    check(
        "broken-html.html",
        Stream::Marketing,
        &[
            "html.script",
            "html.iframe",
            "html.embed",
            "html.external-stylesheet",
            "html.malformed",
            "links.empty-href",
            "links.relative-href",
            "links.malformed-href",
            "links.tracking-wrapper",
            "images.missing-alt",
            "compliance.no-personalization",
        ],
        // Active content in a bare HTML body with no sender: every rule
        // fires. The model weighs scripts and frames as real spam used them,
        // less than the hand points, but together they pass the per-corpus
        // threshold of session 16 (`review` under the old 7.3).
        Rating::Risky,
    );
}

#[test]
fn executable_attachments_are_flagged_on_any_stream() {
    check(
        "dangerous-attachment.eml",
        Stream::Transactional,
        &["attachments.dangerous-type"],
        // The heaviest rule alone: `review` under the old 7.3, risky now.
        Rating::Risky,
    );
}

#[test]
fn attachments_on_marketing_mail_are_flagged() {
    check(
        "dangerous-attachment.eml",
        Stream::Marketing,
        &[
            "attachments.dangerous-type",
            "attachments.on-marketing",
            "compliance.no-unsubscribe-link",
            "compliance.no-list-unsubscribe",
        ],
        Rating::Risky,
    );
}

#[test]
fn a_text_only_marketing_mail_is_checked_too() {
    check(
        "text-only-marketing.eml",
        Stream::Marketing,
        &[
            "links.insecure",
            "preheader.repeats-subject",
            "compliance.no-list-unsubscribe",
            "compliance.noreply-address",
            "compliance.no-personalization",
        ],
        // Plain text from the shop's own domain: the compliance gaps are
        // reported, but real spam and ham show they alone don't make spam.
        Rating::Good,
    );
}
