//! Compliance of marketing mail: unsubscribe link and headers, postal
//! address, a reply address that is read, personalization.

use std::sync::LazyLock;

use aho_corasick::AhoCorasick;
use regex::Regex;

use super::{Context, is_merge_tag};
use crate::report::Findings;
use crate::rules::Rule;

const UNSUBSCRIBE_WORDS: &[&str] = &[
    "unsubscribe",
    "unsub",
    "opt out",
    "opt-out",
    "optout",
    "manage preferences",
    "email preferences",
    "manage your subscription",
    "update your preferences",
    "abmelden",
    "désinscri",
    "desinscri",
    "darse de baja",
    "cancelar suscripción",
    "afmelden",
    "disiscriviti",
];

/// Street addresses, PO boxes and postcodes in the usual western formats.
/// Street and city names must be capitalised: "3 great ways to drive" is
/// not an address. Word boundaries are ASCII (`(?-u:\b)`) so the regex
/// engine can use its DFA on text with non-ASCII characters.
static POSTAL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        // 221 Harbour Street, 3 Market Square, 1600 Amphitheatre Pkwy
        r"(?-u:\b)\d{1,5}[A-Za-z]?,?\s+(?:\p{Lu}[\p{L}.'-]*\s+){1,4}",
        r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Way|Court|Ct|Place|Pl|Square|Sq|Parkway|Pkwy|Highway|Hwy|Terrace|Suite)(?-u:\b)",
        // P.O. Box 123
        r"|(?i:(?-u:\b)p\.?\s?o\.?\s+box\s+\d+)",
        // Hafenweg 7, Lindenstraße 12
        r"|\p{Lu}\p{Ll}*(?:straße|strasse|str\.|weg|gasse|platz|allee)\s+\d+",
        // Via Roma 12, Calle Mayor 5
        // (the street name unbounded: `{2,40}` of a Unicode letter class
        // compiled into forty copies of its automaton, 28 ms at every
        // `mailroom lint` start; the class holds no line break, so the
        // match still ends on its line)
        r"|(?:Rue|Avenue|Boulevard|Via|Viale|Piazza|Calle|Plaza|Avenida|Rua)\s+[\p{L} '-]{2,}?,?\s*\d{1,4}(?-u:\b)",
        // 12 rue de Rivoli
        r"|(?i:(?-u:\b)\d{1,4},?\s+(?:rue|avenue|boulevard|bd|allée|chemin|via|calle)\s)",
        // UK postcode: LS1 4DY, PO1 3AH
        r"|(?-u:\b)[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}(?-u:\b)",
        // US state and ZIP: CA 94107
        r"|(?-u:\b)[A-Z]{2}\s+\d{5}(?:-\d{4})?(?-u:\b)",
        // European postcode and city after a comma or at a line start: , 20457 Hamburg
        r"|(?m:(?:^|,\s*)\d{4,5}\s+\p{Lu}\p{Ll}+)",
    ))
    .expect("regex")
});

/// The words above, found in one pass (on lower-cased text).
static UNSUBSCRIBE: LazyLock<AhoCorasick> =
    LazyLock::new(|| AhoCorasick::new(UNSUBSCRIBE_WORDS).expect("unsubscribe words"));

static NOREPLY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^(no[-_.]?reply|do[-_.]?not[-_.]?reply|donotreply|noreply|no[-_.]?response|mailer-daemon)")
        .expect("regex")
});

pub(super) fn check(cx: &Context<'_>, out: &mut Findings) {
    let email = cx.email;
    let has_link = match &cx.html {
        Some(h) => h.links.iter().any(|l| {
            l.visible && {
                UNSUBSCRIBE.is_match(&l.text.to_lowercase())
                    || UNSUBSCRIBE.is_match(&l.href.to_lowercase())
            }
        }),
        None => email.text.as_deref().is_some_and(|t| {
            let t = t.to_lowercase();
            UNSUBSCRIBE.is_match(&t) && t.contains("http")
        }),
    };
    if !has_link && (email.html.is_some() || email.text.is_some()) {
        out.add(
            Rule::NoUnsubscribeLink,
            "No visible unsubscribe link was found in the body.".into(),
            None,
        );
    }

    if let Some(headers) = &email.headers {
        match &headers.list_unsubscribe {
            None => out.add(
                Rule::NoListUnsubscribe,
                "The message has no List-Unsubscribe header.".into(),
                None,
            ),
            Some(value) => {
                let https = value.to_ascii_lowercase().contains("<https://");
                let post = headers
                    .list_unsubscribe_post
                    .as_deref()
                    .is_some_and(|p| p.trim().eq_ignore_ascii_case("List-Unsubscribe=One-Click"));
                if !(https && post) {
                    let why = match (https, post) {
                        (false, _) => "List-Unsubscribe has no https: URI",
                        _ => "List-Unsubscribe-Post: List-Unsubscribe=One-Click is missing",
                    };
                    out.add(Rule::NoOneClick, format!("{why}."), Some(value.clone()));
                }
            }
        }
    }

    let mut texts = vec![cx.body.as_str()];
    if let Some(t) = email.text.as_deref() {
        texts.push(t);
    }
    if !texts.iter().any(|t| POSTAL.is_match(t)) {
        out.add(
            Rule::NoPostalAddress,
            "No postal address was recognised in the message.".into(),
            None,
        );
    }

    if let Some(reply) = email.reply_to.as_ref().or(email.from.as_ref())
        && NOREPLY.is_match(reply.local_part())
    {
        out.add(
            Rule::NoreplyAddress,
            "Replies go to an address nobody reads.".into(),
            Some(reply.address.clone()),
        );
    }

    let merge_tags = [
        email.subject.as_deref(),
        email.html.as_deref(),
        email.text.as_deref(),
    ]
    .into_iter()
    .flatten()
    .any(is_merge_tag);
    let name_used = email.to.iter().any(|to| {
        to.name
            .as_deref()
            .and_then(|n| n.split_whitespace().next())
            .filter(|first| first.chars().count() >= 2)
            .is_some_and(|first| {
                let first = first.to_lowercase();
                // The body's words are already lower-cased: no need to
                // lower-case the whole body for one name.
                cx.body_words
                    .tokens
                    .iter()
                    .any(|t| cx.body_words.norm_of(t) == first)
                    || email
                        .subject
                        .as_deref()
                        .is_some_and(|s| s.to_lowercase().contains(&first))
            })
    });
    if !merge_tags && !name_used {
        out.add(
            Rule::NoPersonalization,
            "Nothing in the message is addressed to its reader.".into(),
            None,
        );
    }
}
