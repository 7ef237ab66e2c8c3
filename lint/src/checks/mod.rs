//! The checks, one module per rule category, over a shared [`Context`].

mod attachments;
mod compliance;
mod content;
mod headers;
mod html;
mod links;
mod preheader;
mod structure;

use std::collections::HashSet;
use std::sync::LazyLock;

use crate::email::Email;
use crate::html::{HtmlFacts, analyse};
use crate::model::features::HiddenWords;
use crate::model::{Features, MODEL};
use crate::report::{Findings, Options, Report, Summary};
use crate::text::{Words, tokens};

pub(crate) use links::LinkStats;
pub(crate) use preheader::Preheader;

/// What every check may read, computed once per message.
pub(crate) struct Context<'a> {
    pub email: &'a Email,
    pub html: Option<HtmlFacts>,
    /// The visible body text: from the HTML when there is HTML, else the
    /// text part.
    pub body: String,
    pub body_words: Words,
    /// Words with at least one letter in `body_words`.
    words: usize,
    /// Registrable domain (eTLD+1) of the From address.
    pub from_site: Option<String>,
    pub preheader: Option<Preheader>,
    /// Text hidden outside the preheader (needs `preheader`).
    pub hidden: HiddenWords,
}

impl Context<'_> {
    /// Visible body words of three or more letters, as written: the
    /// words whose capitals count.
    pub(crate) fn long_words(&self) -> Vec<&str> {
        self.body_words
            .tokens
            .iter()
            .map(|t| &self.body[t.span.clone()])
            .filter(|w| w.chars().filter(|c| c.is_alphabetic()).count() >= 3)
            .collect()
    }

    /// Words with at least one letter in the visible body.
    pub(crate) fn word_count(&self) -> usize {
        self.words
    }
}

pub(crate) fn run(email: &Email, options: &Options) -> Report {
    let (out, summary, features) = examine(email, options);
    let scored = MODEL.score(&features);
    out.finish(options, summary, scored)
}

/// The checks' findings, the summary and the model's features, before the
/// model prices them (training reads the features).
pub(crate) fn examine(email: &Email, options: &Options) -> (Findings, Summary, Features) {
    let html = email.html.as_deref().map(analyse);
    let body = match &html {
        Some(facts) => facts.visible_text(),
        None => email.text.clone().unwrap_or_default(),
    };
    let body_words = tokens(&body);
    let words = body_words
        .tokens
        .iter()
        .filter(|t| body_words.norm_of(t).chars().any(char::is_alphabetic))
        .count();
    let from_site = email
        .from
        .as_ref()
        .and_then(|f| f.domain())
        .and_then(|d| site(&d));
    let mut cx = Context {
        email,
        html,
        body,
        body_words,
        words,
        from_site,
        preheader: None,
        hidden: HiddenWords::default(),
    };
    cx.preheader = preheader::find(&cx);
    cx.hidden = crate::model::features::hidden_words(&cx);

    let mut out = Findings::new(options.stream);
    content::check(&cx, &mut out);
    preheader::check(&cx, &mut out);
    let link_stats = links::check(&cx, &mut out);
    html::check(&cx, &mut out);
    structure::check(&cx, &mut out);
    attachments::check(&cx, &mut out);
    if options.stream == crate::Stream::Marketing {
        compliance::check(&cx, &mut out);
    }
    headers::check(&cx, &mut out);
    let features = crate::model::features::extract(&cx, &out.hits, &link_stats);

    let summary = Summary {
        stream: options.stream,
        subject: email.subject.clone(),
        preheader: cx.preheader.as_ref().map(|p| p.preview.clone()),
        words: cx.word_count(),
        links: link_stats.links,
        link_domains: link_stats.domains,
        images: cx
            .html
            .as_ref()
            .map_or(0, |h| h.images.iter().filter(|i| !i.pixel).count()),
        html_bytes: email.html.as_ref().map_or(0, String::len),
        attachments: email.attachments.len(),
    };
    (out, summary, features)
}

/// The registrable domain (eTLD+1) of a host name, by the public suffix
/// list: `news.shop.co.uk` → `shop.co.uk`. IDNs are compared in punycode.
pub(crate) fn site(host: &str) -> Option<String> {
    let host = host.trim().trim_end_matches('.');
    let ascii = match url::Host::parse(host).ok()? {
        url::Host::Domain(d) => d,
        _ => return None,
    };
    let domain = psl::domain_str(&ascii)?;
    Some(domain.to_string())
}

/// Loads a one-entry-per-line data list, skipping comments.
fn data_set(text: &'static str) -> HashSet<&'static str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

pub(crate) static SHORTENERS: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| data_set(include_str!("../data/shorteners.txt")));
pub(crate) static TRACKERS: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| data_set(include_str!("../data/tracking-domains.txt")));
pub(crate) static COMMON_SITES: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| data_set(include_str!("../data/common-sites.txt")));
pub(crate) static IMPERSONATED_SITES: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| data_set(include_str!("../data/impersonated-sites.txt")));

/// Template merge tags ({{name}}, *|FNAME|*, %%first%%, {$name}, [name]):
/// a template linted before merging has them where links and names go.
pub(crate) fn is_merge_tag(s: &str) -> bool {
    // Searched with SIMD (Teddy) where the CPU has it: a 60 KB body in one
    // pass instead of six `contains` (2 % of a newsletter's lint).
    static MARKERS: LazyLock<Option<aho_corasick::packed::Searcher>> =
        LazyLock::new(|| aho_corasick::packed::Searcher::new(MERGE_MARKERS));
    match &*MARKERS {
        Some(searcher) => searcher.find(s).is_some(),
        None => MERGE_MARKERS.iter().any(|m| s.contains(m)),
    }
}

const MERGE_MARKERS: [&str; 6] = ["{{", "*|", "%%", "{$", "${", "[["];

#[cfg(test)]
mod tests {
    use super::is_merge_tag;

    #[test]
    fn merge_tags_are_found_in_short_and_long_text() {
        let long = |s: &str| format!("{}{s}{}", "x".repeat(600), "y".repeat(600));
        for tag in [
            "{{name}}",
            "*|FNAME|*",
            "%%first%%",
            "{$name}",
            "${name}",
            "[[name]]",
        ] {
            assert!(is_merge_tag(tag), "{tag}");
            assert!(is_merge_tag(&long(tag)), "{tag} in a long body");
        }
        for plain in [
            "https://shop.example/a?b=c",
            "{ name }",
            "50% off",
            "[link]",
        ] {
            assert!(!is_merge_tag(plain), "{plain}");
            assert!(!is_merge_tag(&long(plain)), "{plain} in a long body");
        }
    }
}
