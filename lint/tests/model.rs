//! The learned score as users see it: hidden text that real templates use
//! is not punished, phrases the model gives no weight are not reported,
//! and the findings explain the score.

use lint::model::MODEL;
use lint::{Email, Options, Rating, lint};

fn page(body: &str) -> Email {
    Email::parse(
        format!(
            "From: Garden Shop <news@garden.example>\r\nTo: ann@example.com\r\nSubject: Spring bulbs are in\r\n\
             Date: Mon, 1 Dec 2025 10:00:00 +0000\r\nMessage-ID: <a1@garden.example>\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>{body}</body></html>"
        )
        .as_bytes(),
    )
    .unwrap()
}

/// Lints `body` as a page and asserts whether `rule` is among the findings.
fn assert_finding(body: &str, rule: &str, expected: bool) {
    let found = lint(&page(body), &Options::default()).rule_ids();
    assert_eq!(
        found.contains(&rule),
        expected,
        "{rule} expected {}: {found:?}",
        if expected { "present" } else { "absent" }
    );
}

const VISIBLE: &str = "<p>Tulips, daffodils and crocuses arrive this week. Plant them before the \
    first frost for a garden full of colour in April. Each bag holds twenty bulbs, packed by hand.</p>";

#[test]
fn a_hidden_mobile_copy_of_the_visible_content_is_not_hidden_text() {
    let mobile = "<div style=\"display:none;max-height:0;overflow:hidden\">Tulips, daffodils and \
        crocuses arrive this week. Plant them before the first frost for a garden full of colour.</div>";
    assert_finding(&format!("{VISIBLE}{mobile}"), "html.hidden-text", false);
}

#[test]
fn japanese_words_holding_latin_letters_are_not_a_look_alike_disguise() {
    // Japanese has no spaces between words and writes product and company
    // names in Latin letters inside them (a hard-ham newsletter of the
    // SpamAssassin corpus was flagged for "KMフロンティア部").
    assert_finding(
        "<p>KMフロンティア部より、OpenText社の新しいiPhone用アプリのご案内です。\
         詳しくは安井@infocomまでお問い合わせください。</p>",
        "content.mixed-script-word",
        false,
    );
    // A Cyrillic а in a Latin word still is one, Japanese around it or not.
    assert_finding(
        "<p>Pаypalアカウントを確認してください。Your Pаypal account.</p>",
        "content.mixed-script-word",
        true,
    );
}

#[test]
fn a_shown_address_linked_through_the_senders_own_site_is_not_a_mismatch() {
    // Brands send every link through their own click-tracking host.
    assert_finding(
        &format!(
            "{VISIBLE}<p><a href=\"https://click.garden.example/c/123\">www.giftcards-partner.example/garden</a></p>"
        ),
        "links.text-mismatch",
        false,
    );
    assert_finding(
        &format!(
            "{VISIBLE}<p><a href=\"https://login.other.example/c/123\">www.garden.example/account</a></p>"
        ),
        "links.text-mismatch",
        true,
    );
}

#[test]
fn invisible_punctuation_is_not_invisible_text() {
    assert_finding(
        &format!(
            "{VISIBLE}<div style=\"background-color:#4a4a4a\"><span style=\"color:#4a4a4a\">...</span></div>"
        ),
        "html.invisible-color",
        false,
    );
    assert_finding(
        &format!(
            "{VISIBLE}<div style=\"background-color:#4a4a4a\"><span style=\"color:#4a4a4a\">cheap pills</span></div>"
        ),
        "html.invisible-color",
        true,
    );
}

#[test]
fn hidden_words_the_reader_never_sees_are_hidden_text() {
    let busting = "<div style=\"display:none\">mortgage casino refinance lottery pharmacy \
        wholesale replica bitcoin jackpot insurance</div>";
    let email = page(&format!("{VISIBLE}{busting}"));
    let report = lint(&email, &Options::default());
    let f = report
        .findings
        .iter()
        .find(|f| f.rule == "html.hidden-text")
        .expect("hash-busting words are flagged");
    assert!(f.points > 0.5, "the model weighs them: {f:?}");
}

#[test]
fn trigger_phrases_without_learned_weight_are_not_reported() {
    // Sorted: the model's map has no order, and the test must pick the
    // same phrases every run.
    let phrases = |keep: fn(f64) -> bool| {
        let mut v: Vec<&str> = MODEL
            .named
            .iter()
            .filter(|(n, w)| n.starts_with("phrase:") && keep(**w))
            .map(|(n, _)| &n["phrase:".len()..])
            .collect();
        v.sort_unstable();
        v
    };
    let weightless = phrases(|w| w < 0.05);
    let weighty = *phrases(|w| w >= 0.5)
        .first()
        .expect("some phrase carries weight");
    let phrase = weightless.first().expect("training zeroes some phrases");
    let email = page(&format!("{VISIBLE}<p>{phrase}.</p><p>{weighty}.</p>"));
    let report = lint(&email, &Options::default());
    let reported: Vec<String> = report
        .findings
        .iter()
        .filter(|f| f.rule == "content.trigger-phrase")
        .map(|f| f.message.to_lowercase())
        .collect();
    assert!(
        reported.iter().any(|m| m.contains(weighty)),
        "{weighty:?} should be reported: {reported:?}"
    );
    assert!(
        !reported
            .iter()
            .any(|m| m.contains(&format!("\"{phrase}\""))),
        "{phrase:?} has no weight yet is reported: {reported:?}"
    );
}

#[test]
fn the_score_is_the_sum_of_its_contributions_and_maps_to_the_rating() {
    let email = page(VISIBLE);
    let r = lint(&email, &Options::default());
    let c = r.contributions;
    let sum = c.baseline + c.rules + c.wording + c.links + c.headers + c.layout;
    assert!((sum.max(0.0) - r.score).abs() < 0.1, "{r:?}");
    assert_eq!(r.rating, Rating::from_score(r.score));
    let logit = r.score - lint::model::SCORE_OFFSET;
    assert!((1.0 / (1.0 + (-logit).exp()) - r.probability).abs() < 0.01);
    // The costliest finding comes first.
    assert!(r.findings.windows(2).all(|w| w[0].points >= w[1].points));
}

#[test]
fn the_embedded_model_round_trips_through_its_text_form() {
    let again = lint::model::Model::parse(&MODEL.to_text()).unwrap();
    assert_eq!(again.thresholds, MODEL.thresholds);
    assert_eq!(again.named.len(), MODEL.named.len());
    assert_eq!(
        again.hashed, MODEL.hashed,
        "hashed weights read back exactly"
    );
    let bad = lint::model::Model::parse("bias x").unwrap_err();
    assert!(bad.to_string().contains("line 1"), "{bad}");
    // `h` lines are read by hand: signs, CRLF, and every malformed shape.
    let m = lint::model::Model::parse("h 3 -25\r\nh 4 7\n\nh 5 1").unwrap();
    assert_eq!(
        (m.hashed[3], m.hashed[4], m.hashed[5]),
        (-0.0025, 0.0007, 0.0001)
    );
    for bad in [
        "h 1",
        "h x 2",
        "h 1 2x",
        "h 1 --2",
        "h 1 ",
        "h  1 2",
        "h 99999999999 1",
        "h 262144 1",
        "h 1 9999999999",
        "h 1 2 3",
        "h 1 2x3",
    ] {
        let e = lint::model::Model::parse(&format!("bias 0\n{bad}\n")).unwrap_err();
        assert!(e.to_string().contains("line 2"), "{bad:?}: {e}");
    }
}
