//! Words: tokenising text, undoing the disguises spammers use ("FR33",
//! "f.r.e.e", Cyrillic look-alikes) and finding weighted trigger phrases.

use std::ops::Range;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, Anchored, Input, MatchKind, StartKind};
use unicode_properties::{GeneralCategory, UnicodeEmoji, UnicodeGeneralCategory};
use unicode_security::mixed_script::AugmentedScriptSet;

/// A word of the original text and where its normalised form is.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    /// Byte range in the original text.
    pub span: Range<usize>,
    /// Byte range of the normal form (lower-case, look-alikes folded,
    /// leetspeak undone) in [`Words::norm`].
    pub norm: Range<usize>,
    /// The normal form needed leetspeak, look-alike folding or the joining
    /// of spaced-out letters.
    pub disguised: bool,
}

/// The words of a text. The normal forms are kept in one string, separated
/// by single spaces, which is also what the phrase matcher searches: one
/// allocation per text instead of one per word.
#[derive(Debug, Default)]
pub(crate) struct Words {
    pub norm: String,
    pub tokens: Vec<Token>,
}

impl Words {
    pub(crate) fn norm_of(&self, t: &Token) -> &str {
        &self.norm[t.norm.clone()]
    }

    fn push(&mut self, span: Range<usize>, word: &str) -> bool {
        let start = self.begin();
        let disguised = normalise_word(word, &mut self.norm);
        self.tokens.push(Token {
            span,
            norm: start..self.norm.len(),
            disguised,
        });
        disguised
    }

    fn begin(&mut self) -> usize {
        if !self.norm.is_empty() {
            self.norm.push(' ');
        }
        self.norm.len()
    }
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
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || matches!(c, '$' | '@' | '|');
    }
    c.is_alphanumeric() || is_mark(c) || matches!(c, '$' | '@' | '€' | '|')
}

/// Latin letters with diacritics are real spelling, not a disguise.
fn is_latin_extended(c: char) -> bool {
    ('\u{C0}'..='\u{24F}').contains(&c) || ('\u{1E00}'..='\u{1EFF}').contains(&c)
}

/// Appends the normal form of `word` to `norm`; true if it was disguised.
fn normalise_word(word: &str, norm: &mut String) -> bool {
    if word.bytes().all(|b| b.is_ascii_alphabetic()) {
        // The common case, and nothing to undo.
        let start = norm.len();
        norm.push_str(word);
        norm[start..].make_ascii_lowercase();
        return false;
    }
    let has_letter = word.chars().any(char::is_alphabetic);
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
    disguised
}

/// Splits text into words. Single letters spaced out with separators
/// ("f r e e", "f.r.e.e") are joined back into one disguised word.
pub(crate) fn tokens(text: &str) -> Words {
    let mut raw: Vec<Range<usize>> = Vec::new();
    let mut start = None;
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        // ASCII is told from its byte; only other characters are decoded.
        let (word, len) = if b.is_ascii() {
            (is_word_char(char::from(b)), 1)
        } else {
            let c = text[i..].chars().next().unwrap_or_default();
            (is_word_char(c), c.len_utf8())
        };
        match (word, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                raw.push(s..i);
                start = None;
            }
            _ => {}
        }
        i += len;
    }
    if let Some(s) = start {
        raw.push(s..text.len());
    }

    let mut words = Words {
        norm: String::with_capacity(text.len()),
        tokens: Vec::with_capacity(raw.len()),
    };
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
            let start = words.begin();
            for r in &raw[i..j] {
                normalise_word(&text[r.clone()], &mut words.norm);
            }
            words.tokens.push(Token {
                span: raw[i].start..raw[j - 1].end,
                norm: start..words.norm.len(),
                disguised: true,
            });
            i = j;
            continue;
        }
        words.push(raw[i].clone(), &text[raw[i].clone()]);
        i += 1;
    }
    words
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
    let patterns: Vec<String> = phrases.iter().map(|p| tokens(p.text).norm).collect();
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
pub(crate) fn find_phrases(words: &Words) -> Vec<PhraseHit> {
    let list = &*PHRASES;
    let hay = words.norm.as_str();
    let tokens = &words.tokens;
    let mut hits = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let input = Input::new(hay)
            .range(tokens[i].norm.start..)
            .anchored(Anchored::Yes);
        if let Some(m) = list.automaton.find(input) {
            let end = m.end();
            // Must end on a word boundary: "free" must not match "freedom".
            if end == hay.len() || hay.as_bytes()[end] == b' ' {
                let last = tokens.partition_point(|t| t.norm.start < end);
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
///
/// Japanese, Chinese and Korean are written with Latin letters inside
/// their words ("KMフロンティア部", "OpenText社"), and have no spaces
/// to split words at: those combinations are UTS #39's "highly
/// restrictive" level and count as one script here, as they do for
/// identifiers. Latin with Cyrillic or Greek — the look-alike disguise —
/// does not.
pub(crate) fn is_mixed_script(word: &str) -> bool {
    // ASCII letters are all Latin; only a non-ASCII letter can mix scripts.
    if word.is_ascii() {
        return false;
    }
    let latin = AugmentedScriptSet::from('a');
    let mut letters = 0;
    let mut all = AugmentedScriptSet::default();
    let mut besides_latin = AugmentedScriptSet::default();
    // Letters only, as before: digits and '@' are common to every script.
    for c in word.chars().filter(|c| c.is_alphabetic()) {
        letters += 1;
        let set = AugmentedScriptSet::from(c);
        all.intersect_with(set);
        let mut is_latin = set;
        is_latin.intersect_with(latin);
        if is_latin.is_empty() {
            besides_latin.intersect_with(set);
        }
    }
    letters >= 2
        && all.is_empty()
        && !(besides_latin.jpan || besides_latin.hanb || besides_latin.kore)
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
        let words = tokens(text);
        words
            .tokens
            .iter()
            .map(|t| (words.norm_of(t).to_string(), t.disguised))
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
    fn no_two_phrases_match_the_same_words() {
        // The automaton reports the first of two equal patterns only: the
        // second ("risk-free" beside "risk free") could never be found.
        let mut seen = std::collections::HashMap::new();
        for p in &PHRASES.phrases {
            let norm = tokens(p.text).norm;
            if let Some(other) = seen.insert(norm, p.text) {
                panic!("{:?} and {other:?} match the same words", p.text);
            }
        }
    }

    #[test]
    fn phrases_match_whole_words_longest_first() {
        let text = "Act now: this is 100% free money, freedom included";
        let hits: Vec<_> = find_phrases(&tokens(text))
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
        assert!(is_mixed_script("Αpple"), "a Greek capital alpha");
        // Japanese, Chinese and Korean words hold Latin letters.
        assert!(!is_mixed_script("KMフロンティア部"));
        assert!(!is_mixed_script("ＫＭフロンティア"));
        assert!(!is_mixed_script("OpenText社"));
        assert!(!is_mixed_script("安井@infocomです"));
        assert!(!is_mixed_script("iPhone用"));
        assert!(!is_mixed_script("Samsung갤럭시"));
        // ...but not Cyrillic as well.
        assert!(is_mixed_script("Pаypal東京"));
        assert!(is_caps_word("FREE"));
        assert!(!is_caps_word("USA"));
        assert!(!is_caps_word("Free"));
        assert_eq!(count_emoji("Sale 🔥🔥 now © 2026 ™"), 2);
    }
}
