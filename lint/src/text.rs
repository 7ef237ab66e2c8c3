//! Words: tokenising text, undoing the disguises spammers use ("FR33",
//! "f.r.e.e", Cyrillic look-alikes) and finding weighted trigger phrases.

use std::ops::Range;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, Anchored, Input, MatchKind, StartKind};
use unicode_properties::{GeneralCategory, UnicodeEmoji, UnicodeGeneralCategory};
use unicode_security::MixedScript;

/// A word of the original text and its normalised form.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    /// Byte range in the original text.
    pub span: Range<usize>,
    /// Lower-case, look-alikes folded, leetspeak undone.
    pub norm: String,
    /// The normal form needed leetspeak, look-alike folding or the joining
    /// of spaced-out letters.
    pub disguised: bool,
}

/// Characters that stand for letters inside a word ("FR33", "$ave").
fn leet(c: char) -> Option<char> {
    Some(match c {
        '0' => 'o',
        '1' | '|' => 'i',
        '3' | '€' => 'e',
        '4' | '@' => 'a',
        '5' | '$' => 's',
        '7' => 't',
        '8' => 'b',
        _ => return None,
    })
}

fn is_mark(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::NonspacingMark | GeneralCategory::EnclosingMark
    )
}

/// Letters that belong to the word even though they are not alphanumeric.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || is_mark(c) || matches!(c, '$' | '@' | '€' | '|')
}

/// Latin letters with diacritics are real spelling, not a disguise.
fn is_latin_extended(c: char) -> bool {
    ('\u{C0}'..='\u{24F}').contains(&c) || ('\u{1E00}'..='\u{1EFF}').contains(&c)
}

fn normalise_word(word: &str) -> (String, bool) {
    let has_letter = word.chars().any(char::is_alphabetic);
    let mut norm = String::with_capacity(word.len());
    let mut disguised = false;
    for c in word.chars() {
        if c.is_ascii() {
            match leet(c) {
                Some(l) if has_letter && !c.is_ascii_alphabetic() => {
                    norm.push(l);
                    disguised = true;
                }
                _ => norm.push(c.to_ascii_lowercase()),
            }
        } else if let Some(l) = leet(c).filter(|_| has_letter) {
            norm.push(l);
            disguised = true;
        } else {
            // UTS #39 skeleton folds look-alikes (Cyrillic "а", fullwidth
            // "Ｆ") onto their Latin prototype; accents are dropped after.
            let before = norm.len();
            for s in unicode_security::skeleton(&c.to_string()) {
                if !is_mark(s) {
                    norm.extend(s.to_lowercase());
                }
            }
            if norm[before..].is_ascii() && !norm[before..].is_empty() && !is_latin_extended(c) {
                disguised = true;
            }
        }
    }
    (norm, disguised)
}

/// Splits text into words. Single letters spaced out with separators
/// ("f r e e", "f.r.e.e") are joined back into one disguised word.
pub(crate) fn tokens(text: &str) -> Vec<Token> {
    let mut raw: Vec<Range<usize>> = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (is_word_char(c), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                raw.push(s..i);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        raw.push(s..text.len());
    }

    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let single = |r: &Range<usize>| {
            let mut cs = text[r.clone()].chars();
            matches!((cs.next(), cs.next()), (Some(c), None) if c.is_alphabetic())
        };
        // A run of one-letter words separated by a short gap on one line.
        let mut j = i;
        while j < raw.len()
            && single(&raw[j])
            && (j == i || {
                let gap = &text[raw[j - 1].end..raw[j].start];
                gap.chars().count() <= 2 && !gap.contains('\n')
            })
        {
            j += 1;
        }
        if j - i >= 3 {
            let span = raw[i].start..raw[j - 1].end;
            let mut norm = String::new();
            for r in &raw[i..j] {
                norm.push_str(&normalise_word(&text[r.clone()]).0);
            }
            out.push(Token {
                span,
                norm,
                disguised: true,
            });
            i = j;
            continue;
        }
        let (norm, disguised) = normalise_word(&text[raw[i].clone()]);
        out.push(Token {
            span: raw[i].clone(),
            norm,
            disguised,
        });
        i += 1;
    }
    out
}

/// A weighted trigger phrase from `data/phrases.txt`.
pub(crate) struct Phrase {
    pub text: &'static str,
    pub weight: f64,
}

pub(crate) struct PhraseList {
    pub phrases: Vec<Phrase>,
    automaton: AhoCorasick,
}

pub(crate) static PHRASES: LazyLock<PhraseList> = LazyLock::new(|| {
    let phrases: Vec<Phrase> = include_str!("data/phrases.txt")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (weight, text) = l.split_once('|').expect("phrases.txt: weight|phrase");
            Phrase {
                text: text.trim(),
                weight: weight.trim().parse().expect("phrases.txt: numeric weight"),
            }
        })
        .collect();
    // Patterns go through the same normalisation as the text they match.
    let patterns: Vec<String> = phrases
        .iter()
        .map(|p| {
            tokens(p.text)
                .into_iter()
                .map(|t| t.norm)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let automaton = AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostLongest)
        .start_kind(StartKind::Anchored)
        .build(&patterns)
        .expect("phrase automaton builds");
    PhraseList { phrases, automaton }
});

/// A trigger phrase found in the text.
#[derive(Debug)]
pub(crate) struct PhraseHit {
    pub phrase: usize,
    /// Tokens the phrase covers.
    pub tokens: Range<usize>,
}

/// Finds trigger phrases on word boundaries, longest first, without overlap.
pub(crate) fn find_phrases(tokens: &[Token]) -> Vec<PhraseHit> {
    let list = &*PHRASES;
    let mut hay = String::new();
    let mut starts = Vec::with_capacity(tokens.len());
    for t in tokens {
        if !hay.is_empty() {
            hay.push(' ');
        }
        starts.push(hay.len());
        hay.push_str(&t.norm);
    }
    let mut hits = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let input = Input::new(&hay).range(starts[i]..).anchored(Anchored::Yes);
        if let Some(m) = list.automaton.find(input) {
            let end = m.end();
            // Must end on a word boundary: "free" must not match "freedom".
            if end == hay.len() || hay.as_bytes()[end] == b' ' {
                let last = starts.partition_point(|&s| s < end);
                hits.push(PhraseHit {
                    phrase: m.pattern().as_usize(),
                    tokens: i..last,
                });
                i = last;
                continue;
            }
        }
        i += 1;
    }
    hits
}

/// Is the word written in more than one script ("Pаypal" with a Cyrillic а)?
pub(crate) fn is_mixed_script(word: &str) -> bool {
    word.chars().filter(|c| c.is_alphabetic()).count() >= 2 && !word.is_single_script()
}

/// Emoji pictographs, not counting ©, ®, ™, digits or joiners.
pub(crate) fn count_emoji(text: &str) -> usize {
    text.chars()
        .filter(|&c| {
            !c.is_ascii()
                && c.is_emoji_char()
                && !c.is_emoji_component()
                && !matches!(c, '©' | '®' | '™')
        })
        .count()
}

/// Acronyms that are normally written in capitals.
const ACRONYMS: &[&str] = &[
    "USA", "FAQ", "PDF", "VAT", "SKU", "USD", "EUR", "GBP", "CEO", "API", "URL", "HTML", "CSS",
    "PIN", "SMS", "NYC", "DIY", "RSVP", "FYI", "GMT", "UTC", "CET", "EST", "PST", "LLC", "INC",
    "LTD", "GMBH", "PLC", "ATM", "IBAN", "BIC", "ZIP", "NASA", "NATO", "UPS", "DHL", "USPS",
];

/// A word of three or more letters written wholly in capitals.
pub(crate) fn is_caps_word(word: &str) -> bool {
    let letters = word.chars().filter(|c| c.is_alphabetic()).count();
    letters >= 3
        && word.chars().all(|c| !c.is_lowercase())
        && word.chars().any(char::is_uppercase)
        && !ACRONYMS.contains(&word)
}

/// Collapses whitespace runs to single spaces and trims.
pub(crate) fn squash(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norms(text: &str) -> Vec<(String, bool)> {
        tokens(text)
            .into_iter()
            .map(|t| (t.norm, t.disguised))
            .collect()
    }

    #[test]
    fn leetspeak_is_undone_only_inside_words() {
        assert_eq!(norms("FR33"), [("free".to_string(), true)]);
        assert_eq!(norms("$ave"), [("save".to_string(), true)]);
        assert_eq!(
            norms("2024 $25"),
            [("2024".into(), false), ("$25".into(), false)]
        );
    }

    #[test]
    fn spaced_letters_are_joined() {
        assert_eq!(norms("get f.r.e.e stuff")[1], ("free".to_string(), true));
        assert_eq!(norms("F R E E")[0], ("free".to_string(), true));
        // Two single letters are just words.
        assert_eq!(norms("a b").len(), 2);
    }

    #[test]
    fn look_alike_letters_fold_but_accents_are_not_a_disguise() {
        // Cyrillic а and е.
        assert_eq!(norms("frее")[0], ("free".to_string(), true));
        assert_eq!(norms("ＦＲＥＥ")[0], ("free".to_string(), true));
        assert_eq!(norms("gratuité")[0], ("gratuite".to_string(), false));
    }

    #[test]
    fn phrases_match_whole_words_longest_first() {
        let text = "Act now: this is 100% free money, freedom included";
        let toks = tokens(text);
        let hits: Vec<_> = find_phrases(&toks)
            .into_iter()
            .map(|h| PHRASES.phrases[h.phrase].text)
            .collect();
        assert!(hits.contains(&"act now"), "{hits:?}");
        assert!(hits.contains(&"100% free"), "{hits:?}");
        assert!(!hits.iter().any(|h| h.starts_with("freedom")));
    }

    #[test]
    fn mixed_scripts_and_caps_and_emoji() {
        assert!(is_mixed_script("Pаypal"));
        assert!(!is_mixed_script("Paypal"));
        assert!(!is_mixed_script("東京タワー"));
        assert!(is_caps_word("FREE"));
        assert!(!is_caps_word("USA"));
        assert!(!is_caps_word("Free"));
        assert_eq!(count_emoji("Sale 🔥🔥 now © 2026 ™"), 2);
    }
}
