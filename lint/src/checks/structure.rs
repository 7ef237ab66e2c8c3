//! Structure: images against text, the text alternative, and size.

use std::cmp::Ordering;
use std::hash::BuildHasher;

use super::Context;
use crate::report::Findings;
use crate::rules::{LIMITS, Rule};
use crate::text::{Words, tokens};

pub(super) fn check(cx: &Context<'_>, out: &mut Findings) {
    images(cx, out);
    let Some(html) = cx.email.html.as_deref() else {
        return;
    };
    if html.len() > LIMITS.gmail_clip_bytes {
        out.add(
            Rule::GmailClipping,
            format!(
                "The HTML is {} KB; Gmail clips messages over {} KB.",
                html.len() / 1024,
                LIMITS.gmail_clip_bytes / 1024
            ),
            None,
        );
    }
    // A bare HTML file has no MIME structure to judge.
    if cx.email.headers.is_none() {
        return;
    }
    match cx.email.text.as_deref() {
        None => out.add(
            Rule::NoTextPart,
            "The message has HTML but no text/plain part.".into(),
            None,
        ),
        Some(text) => {
            let text_words = tokens(text);
            // FNV: a vocabulary comparison needs no DoS-resistant hash, and
            // SipHash was a third of the cost of building the two sets.
            let hasher = fnv::FnvBuildHasher::default();
            let similarity = jaccard(
                &word_set(&cx.body_words, &hasher),
                &word_set(&text_words, &hasher),
            );
            if similarity < LIMITS.parts_min_similarity {
                out.add(
                    Rule::PartsDiffer,
                    format!(
                        "Only {:.0}% of the words are shared between the text and HTML parts.",
                        similarity * 100.0
                    ),
                    Some(crate::report::clip(text, 80)),
                );
            }
        }
    }
}

fn images(cx: &Context<'_>, out: &mut Findings) {
    let Some(html) = &cx.html else { return };
    let content: Vec<_> = html.images.iter().filter(|i| !i.pixel).collect();
    if content.is_empty() {
        return;
    }
    let words = cx.word_count();
    let chars = cx.body.chars().filter(|c| !c.is_whitespace()).count();
    if words < LIMITS.image_only_max_words {
        out.add(
            Rule::ImageOnly,
            format!("{} image(s) and only {words} words of text.", content.len()),
            Some(content[0].src.clone()),
        );
    } else if chars / content.len() < LIMITS.min_text_per_image {
        out.add(
            Rule::LowTextRatio,
            format!(
                "{} images for {chars} characters of text ({} per image; aim for at least {}).",
                content.len(),
                chars / content.len(),
                LIMITS.min_text_per_image
            ),
            None,
        );
    }
    for image in content.iter().filter(|i| i.alt.is_none()) {
        out.add(
            Rule::MissingAlt,
            "An image has no alt attribute.".into(),
            Some(image.src.clone()),
        );
    }
}

/// Distinct words of three or more letters, as sorted hashes: comparing
/// two messages' vocabularies needs set sizes, not the words themselves,
/// and u64s sort far faster than strings.
fn word_set(words: &Words, hasher: &impl BuildHasher) -> Vec<u64> {
    let mut set: Vec<u64> = words
        .tokens
        .iter()
        .map(|t| words.norm_of(t))
        .filter(|w| w.len() >= 3 && w.chars().filter(|c| c.is_alphabetic()).count() >= 3)
        .map(|w| hasher.hash_one(w))
        .collect();
    set.sort_unstable();
    set.dedup();
    set
}

/// |A ∩ B| / |A ∪ B| of two sorted, deduplicated lists.
fn jaccard(a: &[u64], b: &[u64]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let (mut i, mut j, mut shared) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            Ordering::Less => i += 1,
            Ordering::Greater => j += 1,
            Ordering::Equal => {
                shared += 1;
                i += 1;
                j += 1;
            }
        }
    }
    shared as f64 / (a.len() + b.len() - shared) as f64
}
