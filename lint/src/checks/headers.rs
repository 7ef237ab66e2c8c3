//! Headers: Date and Message-ID, display-name tricks, Reply-To domain.

use super::{Context, site};
use crate::report::Findings;
use crate::rules::Rule;
use crate::text::is_mixed_script;

pub(super) fn check(cx: &Context<'_>, out: &mut Findings) {
    let Some(headers) = &cx.email.headers else {
        return;
    };
    if !headers.has_date {
        out.add(
            Rule::MissingDate,
            "The message has no Date header.".into(),
            None,
        );
    }
    if !headers.has_message_id {
        out.add(
            Rule::MissingMessageId,
            "The message has no Message-ID header.".into(),
            None,
        );
    }
    if let Some(from) = &cx.email.from
        && let Some(name) = from.name.as_deref()
    {
        let embeds_address = name.contains('@');
        let foreign_domain = name
            .split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | '<' | '>' | '"' | ','))
            .filter(|w| w.contains('.') && !w.starts_with('.') && !w.ends_with('.'))
            .filter(|w| psl::suffix(w.as_bytes()).is_some_and(|s| s.is_known()))
            .filter_map(site)
            .find(|s| Some(s) != cx.from_site.as_ref());
        if embeds_address || foreign_domain.is_some() {
            out.add(
                Rule::FromNameAddress,
                match foreign_domain {
                    Some(d) => format!("The display name names {d}, not the sender's domain."),
                    None => "The display name contains an email address.".into(),
                },
                Some(format!("{name} <{}>", from.address)),
            );
        }
        if name.split_whitespace().any(is_mixed_script) {
            out.add(
                Rule::FromNameMixedScript,
                "The display name mixes letters from different alphabets.".into(),
                Some(name.into()),
            );
        }
    }
    if let (Some(reply), Some(from_site)) = (&cx.email.reply_to, &cx.from_site)
        && let Some(reply_site) = reply.domain().and_then(|d| site(&d))
        && &reply_site != from_site
    {
        out.add(
            Rule::ReplyToUnrelated,
            format!("Replies go to {reply_site}, the message is from {from_site}."),
            Some(reply.address.clone()),
        );
    }
}
