//! Content: trigger phrases (disguised or not), capitals, punctuation runs,
//! discounts, misleading reply prefixes, emoji and the subject line.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

use super::Context;
use crate::report::{Findings, clip};
use crate::rules::{LIMITS, Rule};
use crate::text::{self, PHRASES};

static FAKE_REPLY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\s*(re|fw|fwd|aw|wg|sv|vs|tr|rv)\s*(\[\d+\])?\s*:").expect("regex")
});
static PERCENT_OFF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)(?-u:\b)\d{1,3}\s?%\s*(off|discount|savings|sale|rabatt)(?-u:\b)|(?-u:\b)save\s+(up\s+to\s+)?\d{1,3}\s?%",
    )
    .expect("regex")
});
static MONEY_RUN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[$€£¥]{2,}").expect("regex"));
static BANG_RUN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"!{2,}").expect("regex"));

pub(super) fn check(cx: &Context<'_>, out: &mut Findings) {
    let subject = cx.email.subject.as_deref().map(str::trim).unwrap_or("");
    subject_rules(cx, subject, out);
    phrases(cx, subject, out);
    capitals(cx, out);
    punctuation(&cx.body, subject, out);
    emoji(cx, subject, out);
}

fn subject_rules(cx: &Context<'_>, subject: &str, out: &mut Findings) {
    if subject.is_empty() {
        if cx.email.headers.is_some() {
            out.add(
                Rule::SubjectMissing,
                "The message has no subject.".into(),
                None,
            );
        }
        return;
    }
    let chars = subject.chars().count();
    if chars > LIMITS.subject_max_chars {
        out.add(
            Rule::SubjectLength,
            format!(
                "The subject is {chars} characters; phones show about 40 and most inboxes cut after {}.",
                LIMITS.subject_max_chars
            ),
            Some(subject.into()),
        );
    } else if chars < LIMITS.subject_min_chars {
        out.add(
            Rule::SubjectLength,
            format!("The subject is only {chars} characters."),
            Some(subject.into()),
        );
    }
    let letters = subject.chars().filter(|c| c.is_alphabetic()).count();
    let upper = subject.chars().filter(|c| c.is_uppercase()).count();
    if letters >= LIMITS.subject_caps_min_letters
        && upper as f64 / letters as f64 >= LIMITS.subject_caps_ratio
    {
        out.add(
            Rule::CapsSubject,
            format!("{upper} of the subject's {letters} letters are capitals."),
            Some(subject.into()),
        );
    }
    let is_reply = cx.email.headers.as_ref().is_some_and(|h| h.is_reply);
    if let Some(m) = FAKE_REPLY.find(subject)
        && cx.email.headers.is_some()
        && !is_reply
    {
        out.add(
            Rule::FakeReplyPrefix,
            format!(
                "The subject starts with \"{}\" but the message has no In-Reply-To or References header.",
                m.as_str().trim()
            ),
            Some(subject.into()),
        );
    }
    let discounts = PERCENT_OFF.find_iter(subject).count();
    if discounts > 0 {
        out.add(
            Rule::PercentDiscount,
            "The subject leads with a percentage discount.".into(),
            Some(subject.into()),
        );
    }
}

/// Trigger phrases in the subject, the preheader and the visible body.
fn phrases(cx: &Context<'_>, subject: &str, out: &mut Findings) {
    let subject_tokens = text::tokens(subject);
    let preheader = cx
        .preheader
        .as_ref()
        .filter(|p| p.explicit)
        .map_or("", |p| p.text.as_str());
    let preheader_tokens = text::tokens(preheader);
    let sources: [(&str, &text::Words); 3] = [
        (subject, &subject_tokens),
        (preheader, &preheader_tokens),
        (&cx.body, &cx.body_words),
    ];

    // phrase → (times seen, first occurrence as written)
    let mut seen: BTreeMap<usize, (usize, String)> = BTreeMap::new();
    let mut disguised: BTreeMap<String, &'static str> = BTreeMap::new();
    let mut mixed: Vec<&str> = Vec::new();
    for (source, words) in sources {
        let tokens = &words.tokens;
        for hit in text::find_phrases(words) {
            let span = tokens[hit.tokens.start].span.start..tokens[hit.tokens.end - 1].span.end;
            let written = source[span].to_string();
            let phrase = PHRASES.phrases[hit.phrase].text;
            if tokens[hit.tokens.clone()].iter().any(|t| t.disguised) {
                disguised.entry(written.clone()).or_insert(phrase);
            }
            seen.entry(hit.phrase).or_insert((0, written)).0 += 1;
        }
        mixed.extend(
            tokens
                .iter()
                .map(|t| &source[t.span.clone()])
                .filter(|w| text::is_mixed_script(w)),
        );
    }
    let mut by_weight: Vec<_> = seen.into_iter().collect();
    by_weight.sort_by(|a, b| {
        PHRASES.phrases[b.0]
            .weight
            .total_cmp(&PHRASES.phrases[a.0].weight)
    });
    for (phrase, (times, written)) in by_weight {
        let p = &PHRASES.phrases[phrase];
        let times = if times == 1 {
            String::new()
        } else {
            format!(" ({times} times)")
        };
        out.add_feature(
            Rule::TriggerPhrase,
            Cow::Owned(format!("phrase:{}", p.text)),
            format!(
                "\"{}\" is a phrase spam filters score against{times}.",
                p.text
            ),
            Some(written),
        );
    }
    for (written, phrase) in disguised {
        out.add(
            Rule::ObfuscatedWord,
            format!("\"{written}\" is a disguised \"{phrase}\"."),
            Some(written),
        );
    }
    mixed.sort_unstable();
    mixed.dedup();
    for word in mixed {
        out.add(
            Rule::MixedScriptWord,
            format!("\"{word}\" mixes letters from different alphabets."),
            Some(word.into()),
        );
    }
}

fn capitals(cx: &Context<'_>, out: &mut Findings) {
    let words = cx.long_words();
    let caps: Vec<&str> = words
        .iter()
        .copied()
        .filter(|w| text::is_caps_word(w))
        .collect();
    if caps.len() >= LIMITS.caps_word_min
        && caps.len() as f64 / words.len() as f64 >= LIMITS.caps_word_ratio
    {
        let mut sample: Vec<&str> = caps.clone();
        sample.dedup();
        sample.truncate(8);
        out.add(
            Rule::CapsWords,
            format!("{} of {} words are in capitals.", caps.len(), words.len()),
            Some(sample.join(" ")),
        );
    }
}

fn punctuation(body: &str, subject: &str, out: &mut Findings) {
    let subject_bangs = subject.matches('!').count();
    if subject_bangs >= 2 {
        out.add(
            Rule::ExclamationRun,
            format!("The subject has {subject_bangs} exclamation marks."),
            Some(subject.into()),
        );
    }
    if let Some(m) = BANG_RUN.find(body) {
        out.add(
            Rule::ExclamationRun,
            format!(
                "The body has {} runs of exclamation marks.",
                BANG_RUN.find_iter(body).count()
            ),
            Some(context(body, m.start(), m.end())),
        );
    }
    let money = MONEY_RUN
        .find(subject)
        .map(|m| (subject, m))
        .or_else(|| MONEY_RUN.find(body).map(|m| (body, m)));
    if let Some((text, m)) = money {
        out.add(
            Rule::MoneyRun,
            format!("\"{}\" is a run of currency symbols.", m.as_str()),
            Some(context(text, m.start(), m.end())),
        );
    }
    let discounts: Vec<_> = PERCENT_OFF.find_iter(body).collect();
    if discounts.len() > LIMITS.body_max_percent_discounts {
        out.add(
            Rule::PercentDiscount,
            format!(
                "The body mentions a percentage discount {} times.",
                discounts.len()
            ),
            Some(
                discounts
                    .iter()
                    .take(5)
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        );
    }
}

fn emoji(cx: &Context<'_>, subject: &str, out: &mut Findings) {
    let in_subject = text::count_emoji(subject);
    if in_subject > LIMITS.subject_max_emoji {
        out.add(
            Rule::EmojiOverload,
            format!("The subject has {in_subject} emoji."),
            Some(subject.into()),
        );
    }
    let in_body = text::count_emoji(&cx.body);
    let words = cx.word_count().max(1);
    if in_body > LIMITS.body_max_emoji && in_body as f64 / words as f64 > LIMITS.body_emoji_per_word
    {
        out.add(
            Rule::EmojiOverload,
            format!("The body has {in_body} emoji in {words} words."),
            None,
        );
    }
}

/// A little of the text around a match, whole words, for evidence.
fn context(text: &str, start: usize, end: usize) -> String {
    let before = &text[..start];
    let mut from = before.char_indices().rev().nth(30).map_or(0, |(i, _)| i);
    if from > 0 {
        // Start at a word, not inside one.
        from = before[from..]
            .find(char::is_whitespace)
            .map_or(from, |i| from + i);
    }
    let after = &text[end..];
    let mut to = after
        .char_indices()
        .nth(30)
        .map_or(text.len(), |(i, _)| end + i);
    if to < text.len() {
        to = text[..to]
            .rfind(char::is_whitespace)
            .filter(|&i| i >= end)
            .unwrap_or(to);
    }
    clip(&crate::text::squash(&text[from..to]), 120)
}
