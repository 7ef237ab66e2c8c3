//! HTML: hidden, tiny and invisible text; active content; external CSS;
//! broken markup.

use super::Context;
use crate::html::Visibility;
use crate::report::{Findings, clip};
use crate::rules::Rule;

pub(super) fn check(cx: &Context<'_>, out: &mut Findings) {
    let Some(html) = &cx.html else { return };
    // Hidden text is normal in real templates (the preheader, a mobile or
    // desktop copy of the same content); what filters punish is hidden
    // text the reader never sees the like of: hash-busting words.
    let hidden = &cx.hidden;
    if hidden.is_unrelated() {
        out.add(
            Rule::HiddenText,
            format!(
                "{} hidden words outside the preheader, {} of {} distinct ones never visible.",
                hidden.words, hidden.unrelated, hidden.distinct
            ),
            Some(clip(&hidden.sample, 80)),
        );
    }
    for seg in &html.segments {
        // Checked before anything is copied: most text is visible.
        let (rule, what) = match seg.visibility {
            Visibility::Visible | Visibility::Hidden(_) => continue,
            Visibility::Tiny => (Rule::TinyText, "Text is set in a 0–2px font."),
            Visibility::Invisible => (
                Rule::InvisibleColor,
                "Text has the same colour as its background (or none).",
            ),
        };
        if cx.preheader.as_ref().is_some_and(|p| p.holds(seg.block)) {
            continue;
        }
        let text = seg.text.replace(crate::html::is_spacer, " ");
        let text = text.trim();
        // A hidden "..." or "|" separator says nothing to a filter.
        if text.chars().any(char::is_alphanumeric) {
            out.add(rule, what.into(), Some(clip(text, 80)));
        }
    }
    let mut active = html.active_elements.clone();
    active.sort_unstable();
    active.dedup();
    for element in active {
        let (rule, what) = match element {
            "script" => (Rule::Script, "<script>"),
            "form" => (Rule::Form, "<form>"),
            "iframe" => (Rule::Iframe, "<iframe>/<frame>"),
            _ => (Rule::Embed, "<object>/<embed>/<applet>"),
        };
        let n = html
            .active_elements
            .iter()
            .filter(|e| **e == element)
            .count();
        out.add(
            rule,
            format!("The HTML contains {n} {what} element(s)."),
            Some(what.into()),
        );
    }
    if !html.stylesheets.is_empty() {
        out.add(
            Rule::ExternalStylesheet,
            "The HTML loads CSS from outside the message.".into(),
            Some(html.stylesheets.join(", ")),
        );
    }
    if let Some(first) = html.structure_errors.first() {
        out.add(
            Rule::MalformedHtml,
            format!(
                "The HTML parser had to repair the markup ({} problem(s)).",
                html.structure_errors.len()
            ),
            Some(first.clone()),
        );
    }
}
