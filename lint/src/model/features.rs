//! What the model sees of a message. Named features are facts a person can
//! read (`headers:reply-to-other-site`, `layout:words=100-400`, a rule id,
//! `phrase:act now`); wording is hashed words and word pairs of the subject
//! and the visible body. Everything is binary or scaled to at most 1, so a
//! weight reads directly as a contribution in log-odds.
//!
//! Not used on purpose: Received lines, X-Mailer and other transport
//! headers. In a training corpus they identify the collector, not the
//! sender, and a model that learns them learns the corpus.

use std::borrow::Cow;
use std::collections::HashSet;
use std::hash::Hasher as _;

use crate::checks::{Context, LinkStats};
use crate::html::Visibility;
use crate::report::Hit;

use super::HASH_BUCKETS;

/// A message as the model sees it.
#[derive(Debug, Clone, Default)]
pub struct Features {
    /// Named features and their values (0–1].
    pub named: Vec<(Cow<'static, str>, f32)>,
    /// Hashed wording features: bucket and value.
    pub hashed: Vec<(u32, f32)>,
    /// The word or word pair behind each hashed feature (same order), as
    /// ranges of `text`: one allocation per message, not one per word.
    pub spans: Vec<std::ops::Range<u32>>,
    pub text: String,
}

impl Features {
    /// The word or word pair behind the `i`-th hashed feature.
    pub fn token(&self, i: usize) -> &str {
        let r = &self.spans[i];
        &self.text[r.start as usize..r.end as usize]
    }
}

/// The kinds of evidence a score is split into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Rules = 0,
    Wording = 1,
    Links = 2,
    Headers = 3,
    Layout = 4,
}

impl Group {
    pub const COUNT: usize = 5;

    /// The group of a named feature, by its prefix.
    pub fn of(name: &str) -> Group {
        if name.starts_with("links:") {
            Group::Links
        } else if name.starts_with("headers:") {
            Group::Headers
        } else if name.starts_with("layout:") {
            Group::Layout
        } else {
            Group::Rules
        }
    }
}

/// The bucket of a wording token given in pieces (`["subject:", word]`,
/// `[word, " ", next]`), hashed as if joined. FNV-1a: stable across builds
/// and platforms, which the weights file depends on.
pub fn bucket(parts: &[&str]) -> u32 {
    let mut h = fnv::FnvHasher::default();
    for p in parts {
        h.write(p.as_bytes());
    }
    let h = h.finish();
    ((h ^ (h >> 32)) as usize & (HASH_BUCKETS - 1)) as u32
}

/// Words kept per message: enough for any real email, bounded for hostile
/// input.
const MAX_WORDS: usize = 3000;

fn bin(value: usize, edges: &[usize]) -> usize {
    edges.iter().take_while(|e| value >= **e).count()
}

/// `name=LOW-HIGH` for the bin `value` falls in.
fn binned(value: usize, edges: &[usize], names: &[&'static str]) -> Cow<'static, str> {
    debug_assert_eq!(names.len(), edges.len() + 1);
    Cow::Borrowed(names[bin(value, edges)])
}

pub(crate) fn extract(cx: &Context<'_>, hits: &[Hit], links: &LinkStats) -> Features {
    let mut f = Features::default();
    let mut named: Vec<Cow<'static, str>> = Vec::with_capacity(64);

    // Rules and phrases: one feature each, however often they fired.
    for h in hits {
        named.push(h.feature.clone());
    }

    layout(cx, &mut named);
    headers(cx, &mut named);
    link_features(cx, links, &mut named);

    named.sort_unstable();
    named.dedup();
    f.named = named.into_iter().map(|n| (n, 1.0)).collect();
    wording(cx, links, &mut f);
    f
}

fn layout(cx: &Context<'_>, named: &mut Vec<Cow<'static, str>>) {
    let email = cx.email;
    named.push(Cow::Borrowed(match (&email.html, &email.text) {
        (Some(_), Some(_)) => "layout:parts=html+text",
        (Some(_), None) => "layout:parts=html-only",
        (None, Some(_)) => "layout:parts=text-only",
        (None, None) => "layout:parts=none",
    }));
    let words = cx.word_count();
    named.push(binned(
        words,
        &[20, 100, 400, 1500],
        &[
            "layout:words<20",
            "layout:words=20-100",
            "layout:words=100-400",
            "layout:words=400-1500",
            "layout:words>1500",
        ],
    ));
    if cx.html.is_some() {
        // Image counts and markup weight are left out on purpose: in the
        // training data they tell 2002's plain-text mailing lists from
        // today's templates, not spam from ham, and would count against
        // every modern receipt (the image rules cover image-only mail).
        let hidden = &cx.hidden;
        if hidden.words > 0 {
            named.push(binned(
                hidden.words,
                &[20, 100],
                &[
                    "layout:hidden-words<20",
                    "layout:hidden-words=20-100",
                    "layout:hidden-words>100",
                ],
            ));
            if hidden.is_unrelated() {
                named.push(Cow::Borrowed("layout:hidden-unrelated-words"));
            }
        }
        if cx.preheader.as_ref().is_some_and(|p| p.explicit) {
            named.push(Cow::Borrowed("layout:explicit-preheader"));
        }
    }
    if !email.attachments.iter().all(|a| a.inline) {
        named.push(Cow::Borrowed("layout:attachment"));
    }
    let alpha = cx.long_words();
    if alpha.len() >= 20 {
        let caps = alpha
            .iter()
            .filter(|w| crate::text::is_caps_word(w))
            .count();
        named.push(binned(
            caps * 100 / alpha.len(),
            &[5, 15, 30],
            &[
                "layout:caps-words<5%",
                "layout:caps-words=5-15%",
                "layout:caps-words=15-30%",
                "layout:caps-words>30%",
            ],
        ));
    }
    let bangs = cx.body.matches('!').count();
    named.push(binned(
        bangs,
        &[1, 4, 10],
        &[
            "layout:exclamations=0",
            "layout:exclamations=1-3",
            "layout:exclamations=4-9",
            "layout:exclamations>9",
        ],
    ));
}

/// Hidden text outside the preheader, against the visible body; computed
/// once per message (`Context::hidden`) for the rule and the model.
#[derive(Default)]
pub(crate) struct HiddenWords {
    pub words: usize,
    /// Distinct hidden words (3+ letters) that the visible body never uses.
    pub unrelated: usize,
    pub distinct: usize,
    pub sample: String,
    /// The words of each hidden segment, in order.
    pub segments: Vec<crate::text::Words>,
}

impl HiddenWords {
    /// Hash-busting or Bayes poisoning: many hidden words, most of which
    /// the reader never sees elsewhere. A hidden mobile/desktop copy of
    /// the visible content repeats its words, so it doesn't qualify.
    pub(crate) fn is_unrelated(&self) -> bool {
        self.distinct >= 8 && self.unrelated * 2 >= self.distinct
    }
}

pub(crate) fn hidden_words(cx: &Context<'_>) -> HiddenWords {
    let mut out = HiddenWords::default();
    let Some(html) = &cx.html else { return out };
    let is_hidden = |s: &&crate::html::Segment| {
        s.visibility != Visibility::Visible
            && !cx.preheader.as_ref().is_some_and(|p| p.holds(s.block))
    };
    // Most mail hides nothing outside its preheader: skip building the
    // visible vocabulary then.
    if !html.segments.iter().any(|s| is_hidden(&s)) {
        return out;
    }
    let visible: HashSet<&str> = cx
        .body_words
        .tokens
        .iter()
        .map(|t| cx.body_words.norm_of(t))
        .collect();
    let mut seen = HashSet::new();
    for seg in html.segments.iter().filter(is_hidden) {
        let words = crate::text::tokens(&seg.text);
        for t in &words.tokens {
            let w = words.norm_of(t);
            if w.chars().filter(|c| c.is_alphabetic()).count() < 3 {
                continue;
            }
            out.words += 1;
            if seen.insert(w.to_string()) {
                out.distinct += 1;
                if !visible.contains(w) {
                    out.unrelated += 1;
                }
            }
        }
        if out.sample.len() < 80 {
            let text = seg.text.replace(crate::html::is_spacer, " ");
            let text = text.trim();
            if !text.is_empty() {
                if !out.sample.is_empty() {
                    out.sample.push_str(" … ");
                }
                out.sample.push_str(text);
            }
        }
        out.segments.push(words);
    }
    out
}

/// Mailbox providers anyone can sign up to: a brand doesn't send from them.
const FREEMAIL: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "yahoo.com",
    "hotmail.com",
    "outlook.com",
    "live.com",
    "aol.com",
    "icloud.com",
    "mail.ru",
    "yandex.ru",
    "gmx.com",
    "gmx.de",
    "web.de",
    "protonmail.com",
    "proton.me",
    "zoho.com",
    "qq.com",
    "163.com",
];

fn headers(cx: &Context<'_>, named: &mut Vec<Cow<'static, str>>) {
    let email = cx.email;
    let Some(h) = &email.headers else { return };
    let from_site = cx.from_site.as_deref();
    match &email.from {
        None => named.push(Cow::Borrowed("headers:no-from")),
        Some(from) => {
            if from_site.is_some_and(|s| FREEMAIL.contains(&s)) {
                named.push(Cow::Borrowed("headers:from-freemail"));
            }
            let local = from.local_part();
            if local.chars().filter(char::is_ascii_digit).count() >= 3 {
                named.push(Cow::Borrowed("headers:from-local-digits"));
            }
            if local.len() > 20 {
                named.push(Cow::Borrowed("headers:from-local-long"));
            }
            match &from.name {
                None => named.push(Cow::Borrowed("headers:from-no-name")),
                Some(n)
                    if n.chars().any(|c| c.is_alphabetic())
                        && !n.chars().any(char::is_lowercase) =>
                {
                    named.push(Cow::Borrowed("headers:from-name-caps"));
                }
                Some(_) => {}
            }
        }
    }
    match (&email.reply_to, from_site) {
        (Some(r), Some(from)) => {
            let rs = r.domain().and_then(|d| crate::checks::site(&d));
            named.push(Cow::Borrowed(if rs.as_deref() == Some(from) {
                "headers:reply-to-same-site"
            } else {
                "headers:reply-to-other-site"
            }));
        }
        (Some(_), None) => named.push(Cow::Borrowed("headers:reply-to-other-site")),
        _ => {}
    }
    if let Some(id_site) = h
        .message_id
        .as_deref()
        .and_then(|id| id.rsplit_once('@'))
        .and_then(|(_, d)| crate::checks::site(d.trim_end_matches('>')))
    {
        named.push(Cow::Borrowed(if Some(id_site.as_str()) == from_site {
            "headers:message-id-same-site"
        } else {
            "headers:message-id-other-site"
        }));
    }
    match email.to.len() {
        0 => named.push(Cow::Borrowed("headers:no-to")),
        1 => {}
        _ => named.push(Cow::Borrowed("headers:several-to")),
    }
    if let (Some(to), Some(from)) = (email.to.first(), &email.from)
        && to.address.eq_ignore_ascii_case(&from.address)
    {
        named.push(Cow::Borrowed("headers:to-is-from"));
    }
    if h.list_unsubscribe.is_some() {
        named.push(Cow::Borrowed("headers:list-unsubscribe"));
    }
    if h.list_unsubscribe_post.is_some() {
        named.push(Cow::Borrowed("headers:one-click"));
    }
    if h.is_reply {
        named.push(Cow::Borrowed("headers:is-reply"));
    }
    let subject = email.subject.as_deref().unwrap_or("").trim();
    let chars = subject.chars().count();
    named.push(binned(
        chars,
        &[1, 15, 40, 70],
        &[
            "headers:subject-empty",
            "headers:subject<15",
            "headers:subject=15-40",
            "headers:subject=40-70",
            "headers:subject>70",
        ],
    ));
    if subject.contains('!') {
        named.push(Cow::Borrowed("headers:subject-exclamation"));
    }
    if subject.contains(['$', '€', '£']) {
        named.push(Cow::Borrowed("headers:subject-currency"));
    }
    if crate::text::count_emoji(subject) > 0 {
        named.push(Cow::Borrowed("headers:subject-emoji"));
    }
}

fn link_features(cx: &Context<'_>, links: &LinkStats, named: &mut Vec<Cow<'static, str>>) {
    named.push(binned(
        links.links,
        &[1, 4, 16, 41],
        &[
            "links:count=0",
            "links:count=1-3",
            "links:count=4-15",
            "links:count=16-40",
            "links:count>40",
        ],
    ));
    if links.links == 0 {
        return;
    }
    named.push(binned(
        links.sites.len(),
        &[2, 4, 7],
        &[
            "links:sites=1",
            "links:sites=2-3",
            "links:sites=4-6",
            "links:sites>6",
        ],
    ));
    if cx.from_site.is_some() {
        named.push(Cow::Borrowed(if links.to_sender > 0 {
            "links:to-sender-site"
        } else {
            "links:none-to-sender-site"
        }));
    }
    let http_share = links.http * 100 / links.links;
    named.push(binned(
        http_share,
        &[1, 50, 100],
        &[
            "links:http=0%",
            "links:http<50%",
            "links:http=50-99%",
            "links:http=100%",
        ],
    ));
    if links.punycode > 0 {
        named.push(Cow::Borrowed("links:punycode-host"));
    }
    if links.long_query > 0 {
        named.push(Cow::Borrowed("links:long-query"));
    }
}

/// Collects hashed wording features, each bucket once.
struct Wording<'f> {
    f: &'f mut Features,
    seen: fnv::FnvHashSet<u32>,
}

impl Wording<'_> {
    fn add(&mut self, parts: &[&str]) {
        let b = bucket(parts);
        if self.seen.insert(b) {
            let start = self.f.text.len() as u32;
            for p in parts {
                self.f.text.push_str(p);
            }
            self.f.hashed.push((b, 1.0));
            self.f.spans.push(start..self.f.text.len() as u32);
        }
    }
}

/// Hashed words and word pairs of the subject and visible body, words
/// hidden outside the preheader, and the link sites' top-level domains,
/// each present once; scaled by 1/√n so a long message doesn't outweigh a
/// short one.
fn wording(cx: &Context<'_>, links: &LinkStats, f: &mut Features) {
    let mut w = Wording {
        f,
        seen: fnv::FnvHashSet::with_capacity_and_hasher(1024, Default::default()),
    };
    let mut word = String::new();
    if let Some(subject) = cx.email.subject.as_deref() {
        let words = crate::text::tokens(subject);
        for t in words.tokens.iter().take(40) {
            if word_form(words.norm_of(t), &mut word) {
                w.add(&["subject:", &word]);
            }
        }
    }
    let words = &cx.body_words;
    let mut prev = String::new();
    let mut have_prev = false;
    for t in words.tokens.iter().take(MAX_WORDS) {
        if !word_form(words.norm_of(t), &mut word) {
            have_prev = false;
            continue;
        }
        if have_prev {
            w.add(&[&prev, " ", &word]);
        }
        w.add(&[&word]);
        std::mem::swap(&mut prev, &mut word);
        have_prev = true;
    }
    // Words hidden outside the preheader: what hash-busters hide is what
    // a filter reads.
    for words in &cx.hidden.segments {
        for t in words.tokens.iter().take(200) {
            if word_form(words.norm_of(t), &mut word) {
                w.add(&["hidden:", &word]);
            }
        }
    }
    for tld in &links.tlds {
        w.add(&["tld:", tld]);
    }
    let f = w.f;
    if !f.hashed.is_empty() {
        let scale = 1.0 / (f.hashed.len() as f32).sqrt();
        for (_, x) in &mut f.hashed {
            *x = scale;
        }
    }
}

/// A word as the content model keys it, written to `out`: lower-case
/// normal form, digit runs as one `0` (so prices and phone numbers
/// generalise), at most 24 bytes. False for words it doesn't key.
fn word_form(norm: &str, out: &mut String) -> bool {
    out.clear();
    if norm.is_empty() || norm.len() > 24 {
        return false;
    }
    let mut last_digit = false;
    for c in norm.chars() {
        if c.is_ascii_digit() {
            if !last_digit {
                out.push('0');
            }
            last_digit = true;
        } else {
            out.push(c);
            last_digit = false;
        }
    }
    true
}
