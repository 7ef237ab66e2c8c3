//! The preheader: the preview text an inbox shows after the subject.

use super::Context;
use crate::html::{Visibility, is_spacer};
use crate::report::{Findings, clip};
use crate::rules::{LIMITS, Rule};

/// What the inbox preview will show.
#[derive(Debug, Clone)]
pub(crate) struct Preheader {
    /// The preheader's own text, spacers removed.
    pub text: String,
    /// A deliberate preheader: hidden text at the top of the body.
    pub explicit: bool,
    /// Followed by enough spacer characters to end the preview there.
    pub padded: bool,
    /// Visible text follows, so an unpadded short preheader runs on into it.
    pub body_follows: bool,
    /// The preview as an inbox shows it (preheader plus what runs on).
    pub preview: String,
    /// HTML blocks that make up the preheader and its padding, ascending:
    /// hidden on purpose, so the hidden-text rules leave them alone.
    blocks: Vec<usize>,
}

impl Preheader {
    /// Whether the HTML block numbered `block` is part of the preheader.
    /// Asked for every segment, so a search, not a hash per question.
    pub(crate) fn holds(&self, block: usize) -> bool {
        self.blocks.binary_search(&block).is_ok()
    }
}

const BOILERPLATE: &[&str] = &[
    "view this email in your browser",
    "view this email in a browser",
    "view this email online",
    "view in your browser",
    "view in browser",
    "view it in your browser",
    "view online",
    "view as a web page",
    "view as webpage",
    "web version",
    "read online",
    "having trouble viewing",
    "trouble viewing this email",
    "if you cannot see this email",
    "if you can't see this email",
    "if you cannot read this email",
    "can't see images",
    "cannot see images",
    "click here to view",
    "email not displaying correctly",
    "not displaying correctly",
];

fn strip_spacers(s: &str) -> String {
    crate::text::squash(&s.replace(is_spacer, " "))
}

pub(super) fn find(cx: &Context<'_>) -> Option<Preheader> {
    let Some(html) = &cx.html else {
        // Plain text: the preview is the start of the text.
        let text = crate::text::squash(cx.email.text.as_deref()?);
        let preview = clip(&text, LIMITS.preheader_max_chars);
        return (!text.is_empty()).then(|| Preheader {
            text: preview.clone(),
            explicit: false,
            padded: false,
            body_follows: false,
            preview,
            blocks: Vec::new(),
        });
    };
    let segments = &html.segments;
    let first = segments
        .iter()
        .position(|s| !strip_spacers(&s.text).is_empty())?;
    let seg = &segments[first];
    let text = strip_spacers(&seg.text);
    let explicit = seg.visibility != Visibility::Visible;
    // Segments come in document order and block numbers only grow.
    let mut blocks = vec![seg.block];
    let mut spacers = seg.spacers;
    let mut next = first + 1;
    if explicit {
        // Padding usually follows in the same or the next hidden element.
        while let Some(s) = segments.get(next) {
            let pad_only = strip_spacers(&s.text).is_empty();
            if s.visibility == Visibility::Visible || !(pad_only || s.block == seg.block) {
                break;
            }
            spacers += s.spacers;
            if blocks.last() != Some(&s.block) {
                blocks.push(s.block);
            }
            next += 1;
        }
    }
    let following: String = segments[next..]
        .iter()
        .filter(|s| s.visibility == Visibility::Visible)
        .map(|s| s.text.as_str())
        .take(20)
        .collect::<Vec<_>>()
        .join(" ");
    let padded = spacers >= LIMITS.preheader_padding_chars;
    let body_follows = !strip_spacers(&following).is_empty();
    let preview = if padded || !body_follows {
        text.clone()
    } else {
        clip(
            &format!("{text} {}", strip_spacers(&following)),
            LIMITS.preheader_max_chars,
        )
    };
    Some(Preheader {
        text,
        explicit,
        padded,
        body_follows,
        preview,
        blocks: if explicit { blocks } else { Vec::new() },
    })
}

fn normal(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric() || c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn check(cx: &Context<'_>, out: &mut Findings) {
    if cx.email.html.is_none() && cx.email.text.is_none() {
        return;
    }
    let Some(p) = &cx.preheader else {
        out.add(
            Rule::PreheaderMissing,
            "The message has no text for the inbox preview.".into(),
            None,
        );
        return;
    };
    let chars = p.text.chars().count();
    if p.explicit {
        if !(LIMITS.preheader_min_chars..=LIMITS.preheader_max_chars).contains(&chars) {
            out.add(
                Rule::PreheaderLength,
                format!(
                    "The preheader is {chars} characters; {}–{} fill the preview without being cut.",
                    LIMITS.preheader_min_chars, LIMITS.preheader_max_chars
                ),
                Some(p.text.clone()),
            );
        }
        if chars < LIMITS.preheader_run_in_chars && !p.padded && p.body_follows {
            out.add(
                Rule::PreheaderRunsIntoBody,
                "The preheader is short and unpadded, so the preview runs on into the body.".into(),
                Some(p.preview.clone()),
            );
        }
    } else if cx.html.is_some() && chars < LIMITS.preheader_min_chars {
        out.add(
            Rule::PreheaderMissing,
            "No preheader: the preview starts with the first text of the layout.".into(),
            Some(p.preview.clone()),
        );
    }
    let text = normal(&p.text);
    if let Some(b) = BOILERPLATE.iter().find(|b| text.contains(&normal(b))) {
        out.add(
            Rule::PreheaderBoilerplate,
            format!("The preview shows \"{b}\" instead of a message."),
            Some(p.text.clone()),
        );
    }
    if let Some(subject) = cx.email.subject.as_deref() {
        let subject = normal(subject);
        let repeats = !subject.is_empty()
            && !text.is_empty()
            && (text == subject
                || (text.len() >= 10 && subject.contains(&text))
                || (subject.len() >= 10 && text.starts_with(&subject)));
        if repeats {
            out.add(
                Rule::PreheaderRepeatsSubject,
                "The preheader repeats the subject.".into(),
                Some(p.text.clone()),
            );
        }
    }
}
