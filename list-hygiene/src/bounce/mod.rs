//! Reading bounces: RFC 3464 delivery status notifications and the common
//! non-standard formats (Exchange/Office 365, qmail, Exim, Postfix, Yahoo/AOL
//! legacy, plain-text replies, Amazon SES notifications), told apart from
//! auto-replies.
//!
//! [`parse`] is pure: bytes in, [`Bounce`] out.

mod classify;
mod dsn;
pub mod policy;
mod ses;
mod text;

use std::borrow::Cow;
use std::sync::LazyLock;

use mail_parser::{HeaderName, MessageParser, PartType};
use regex::Regex;
use serde::Serialize;

pub use crate::verp::Verp;
pub use classify::{BounceClass, BounceReason, Diagnosis, StatusCode, classify, diagnose, reason};
pub use policy::{BouncePolicy, Failure};

/// Most recipients read from one bounce. A real one names a handful (an
/// MTA returns one message's failed recipients, at most a few hundred);
/// past this, the input is a list pasted into a message, not a bounce, and
/// every recipient read is work for whoever applies the bounce.
pub const MAX_RECIPIENTS: usize = 1000;

/// What kind of message was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A multipart/report delivery status notification (RFC 3464).
    Dsn,
    /// A bounce in one of the non-standard formats.
    NonStandard,
    /// A vacation or out-of-office reply: not a bounce.
    AutoReply,
    /// A feedback-loop complaint (ARF, RFC 5965; or an Amazon SES
    /// `Complaint` notification): not a bounce, a complaint, for the
    /// complaints webhook.
    FeedbackReport,
    /// An unsubscribe request a mail client sent to a `List-Unsubscribe`
    /// `mailto:` address (RFC 2369): Apple Mail's `X-Apple-Unsubscribe:
    /// true`, or the subject "unsubscribe" such links ask for. Not a
    /// bounce and not a complaint; on the relay, mail to its unsubscribe
    /// address unsubscribes by the signed token in that address.
    UnsubscribeRequest,
    /// A delivery status notification that reports only success
    /// (delivered, relayed, expanded; or an SES `Delivery`): not a bounce.
    DeliveryNotice,
    /// Nothing in it reads as a bounce.
    NotABounce,
}

/// One recipient a bounce reports on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recipient {
    pub address: String,
    /// DSN action: failed, delayed (and, rarely, delivered, relayed,
    /// expanded); "failed" for non-standard bounces.
    pub action: String,
    /// RFC 3463 status code, from the DSN or found in the diagnostic; else
    /// `5.0.0` (`4.0.0` for a delay, or the class of an SMTP reply code in
    /// the diagnostic): failed, no detail given.
    pub status: Option<String>,
    /// The remote server's words, when given.
    pub diagnostic: Option<String>,
    /// Why it failed, when the words or the code tell.
    pub reason: Option<BounceReason>,
    pub class: BounceClass,
}

/// What a bounce says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bounce {
    pub kind: Kind,
    pub recipients: Vec<Recipient>,
    /// Message-ID of the message that bounced, when the bounce includes it.
    pub original_message_id: Option<String>,
    pub verp: Option<Verp>,
    /// For a message that presents itself as a bounce but names no
    /// recipient in any form read here: what its words say failed. Only
    /// whoever knows the recipient another way (a verified VERP path) can
    /// apply it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unnamed: Option<Unnamed>,
}

/// The failure a bounce describes without naming its recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unnamed {
    /// As for [`Recipient::status`]: given, or the undefined `X.0.0`.
    pub status: String,
    pub diagnostic: Option<String>,
    pub reason: Option<BounceReason>,
    pub class: BounceClass,
}

/// Why input could not be read as a message at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    #[error("empty input")]
    Empty,
    #[error("not an email message: no header fields")]
    NotEmail,
}

/// Reads one bounce (or auto-reply, or other message) from its raw bytes.
///
/// # Errors
/// Only when the input is empty or has no header fields; a message that
/// isn't a bounce is `Kind::NotABounce`, not an error.
pub fn parse(raw: &[u8]) -> Result<Bounce, ParseError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(ParseError::Empty);
    }
    let mut bounce = read(&crlf_line_ends(raw))?;
    // Only an address the relay could have sent to is a recipient: never a
    // pipe command, a URL or a redacted `***@***` a report happens to quote.
    bounce
        .recipients
        .retain_mut(|r| match recipient_address(&r.address) {
            Some(a) => {
                r.address = a;
                true
            }
            None => false,
        });
    // Every failed recipient has a status: one the bounce gives, else the
    // undefined `X.0.0` of its class, so a consumer never has to guess
    // whether "no status" meant permanent.
    for r in &mut bounce.recipients {
        if r.status.is_none() {
            let diagnostic = r.diagnostic.as_deref().unwrap_or_default();
            r.status = Some(StatusCode::undefined(diagnostic, r.action == "delayed").to_string());
        }
    }
    Ok(bounce)
}

/// `raw` with every bare CR or bare LF line end made CRLF, so that a
/// message stored with any line-ending style reads the same (mail-parser
/// splits header lines on LF only). Borrowed when nothing changes.
fn crlf_line_ends(raw: &[u8]) -> Cow<'_, [u8]> {
    if !raw.contains(&b'\r') {
        // LF only (or one line): mail-parser reads LF as it reads CRLF.
        return Cow::Borrowed(raw);
    }
    let bare = |i: usize| match raw[i] {
        b'\r' => raw.get(i + 1) != Some(&b'\n'),
        b'\n' => i == 0 || raw[i - 1] != b'\r',
        _ => false,
    };
    if !(0..raw.len()).any(bare) {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    for (i, &b) in raw.iter().enumerate() {
        if bare(i) {
            out.extend_from_slice(b"\r\n");
        } else {
            out.push(b);
        }
    }
    Cow::Owned(out)
}

/// The RFC 5321 address in what a bounce names as its recipient: the value
/// itself, less angle brackets, an `rfc822;` type or an RFC 5321 source
/// route (`@relay:user@host`); else the one word in it that is an address
/// (Exim's "pipe to |/bin/prog user@host"). `None` if there is none.
fn recipient_address(value: &str) -> Option<String> {
    let valid = |s: &str| {
        let s = s
            .trim()
            .trim_matches(|c| matches!(c, '<' | '>' | ',' | ';'));
        let s = match s.rsplit_once(':') {
            // A source route: the mailbox is what follows the last colon.
            Some((route, mailbox)) if route.starts_with('@') => mailbox,
            _ => s,
        };
        crate::email::EmailAddress::parse(s)
            .ok()
            .filter(|a| a.as_str().contains('@'))
            .map(|a| a.to_string())
    };
    let value = value.trim();
    let value = value
        .strip_prefix("rfc822;")
        .or_else(|| value.strip_prefix("RFC822;"))
        .unwrap_or(value);
    valid(value).or_else(|| {
        let words: Vec<String> = value.split_whitespace().filter_map(valid).collect();
        // One address among other words; several would be a guess.
        (words.len() == 1).then(|| words.into_iter().next().expect("one word"))
    })
}

/// The one mail-parser setup every reader here shares: MIME headers and
/// the few fields read as values (Subject, From, To, Message-ID); every
/// other field is skipped over, read (when at all) as raw text through
/// `header_raw`, which takes it from the message by offset. mail-parser's
/// default parses every field it knows, and a bounce's returned original
/// brings a dozen `Received` lines, dates and addresses nobody here reads:
/// skipping them made the Sisimai corpus read about a sixth faster.
pub(super) static PARSER: LazyLock<MessageParser> = LazyLock::new(|| {
    MessageParser::new()
        .with_mime_headers()
        .header_text(HeaderName::Subject)
        .header_address(HeaderName::From)
        .header_address(HeaderName::To)
        .header_id(HeaderName::MessageId)
        .default_header_ignore()
});

/// [`parse`] on input whose line ends are CRLF.
fn read(raw: &[u8]) -> Result<Bounce, ParseError> {
    let message = PARSER
        .parse(raw)
        .filter(|m| !m.headers().is_empty())
        .ok_or(ParseError::NotEmail)?;
    let verp = find_verp(&message);

    if is_feedback_report(&message) {
        return Ok(Bounce {
            kind: Kind::FeedbackReport,
            recipients: Vec::new(),
            original_message_id: None,
            verp,
            unnamed: None,
        });
    }
    // Every reader below wants the text parts; they are joined once.
    let body = body_text(&message);
    if let Some(mut report) = dsn::read(&message) {
        if report.recipients.is_empty()
            && let Some(failed) = message.header_raw("X-Failed-Recipients")
        {
            report.recipients = text::named_in_header(&body, failed);
        }
        return Ok(from_report(report, &body, verp));
    }
    let subject = message.subject().unwrap_or_default();
    let from = message
        .from()
        .and_then(|f| f.first())
        .and_then(|a| a.address.as_deref())
        .unwrap_or_default()
        .to_ascii_lowercase();
    // Bounces carry "Auto-Submitted: auto-replied" too (RFC 3834 asks it
    // of them), so only a message that doesn't present itself as a bounce
    // counts as a vacation or out-of-office reply; Apple Mail marks its
    // unsubscribe requests auto-replied as well.
    let bounce_like = looks_like_bounce(subject, &from);
    let auto = if bounce_like {
        None
    } else if is_unsubscribe_request(&message, subject) {
        Some(Kind::UnsubscribeRequest)
    } else if is_auto_reply(&message, subject) {
        Some(Kind::AutoReply)
    } else {
        None
    };
    if let Some(kind) = auto {
        return Ok(Bounce {
            kind,
            recipients: Vec::new(),
            original_message_id: None,
            verp,
            unnamed: None,
        });
    }
    if let Some((kind, recipients)) = ses::read(&body) {
        return Ok(Bounce {
            kind,
            recipients,
            original_message_id: None,
            verp,
            unnamed: None,
        });
    }
    let presents_as_bounce = bounce_like || text::says_undelivered(text::before_original(&body));
    if presents_as_bounce && let Some(report) = dsn::read_text(&body) {
        return Ok(from_report(report, &body, verp));
    }
    let mut recipients = text::read(&body, subject, &from);
    if recipients.is_empty()
        && let Some(failed) = message.header_raw("X-Failed-Recipients")
    {
        recipients = text::named_in_header(&body, failed);
    }
    if recipients.is_empty()
        && presents_as_bounce
        && let Some(to) = original_recipient(&message, &body, &from)
    {
        recipients = text::named_in_header(&body, &to);
    }
    let kind = if recipients.is_empty() && !(presents_as_bounce && verp.is_some()) {
        Kind::NotABounce
    } else {
        Kind::NonStandard
    };
    let unnamed = (recipients.is_empty() && presents_as_bounce).then(|| text::unnamed(&body));
    Ok(Bounce {
        kind,
        recipients,
        original_message_id: embedded_message_id(&body),
        verp,
        unnamed,
    })
}

/// A delivery report read (from its MIME part or from text) as the
/// bounce it is: recipients without a diagnostic explained from the
/// notice, a report of successes only a delivery notice, and the
/// original's Message-ID from the report or else the returned copy.
fn from_report(mut report: dsn::Report, body: &str, verp: Option<Verp>) -> Bounce {
    text::explain(body, &mut report.recipients);
    let kind = if report.recipients.is_empty() && report.succeeded > 0 {
        Kind::DeliveryNotice
    } else {
        Kind::Dsn
    };
    Bounce {
        kind,
        recipients: report.recipients,
        original_message_id: report
            .original_message_id
            .or_else(|| embedded_message_id(body)),
        verp,
        unnamed: None,
    }
}

/// The one recipient of the returned original, for a bounce whose notice
/// names none (sendmail v5's transcript, a provider's "could not be
/// delivered to mobile" with the original below): its `To`, when that
/// names exactly one address, else the `for <addr>` of its first
/// `Received`. An original sent to several is no evidence which failed.
fn original_recipient(
    message: &mail_parser::Message<'_>,
    body: &str,
    from: &str,
) -> Option<String> {
    static TO: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?im)^to:[ \t]*(.*(?:\r?\n[ \t].*)*)").expect("regex"));
    static FOR: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?i)\bfor\s+<([^<>\s]+@[^<>\s]+)>").expect("regex"));
    let attached = message.parts.iter().find_map(|part| match &part.body {
        PartType::Message(m) => Some(m.headers_raw().fold(
            String::new(),
            |mut out, (name, value)| {
                out.push_str(name);
                out.push(':');
                out.push_str(value);
                out
            },
        )),
        _ => None,
    });
    let headers = match attached {
        Some(headers) => headers,
        None => {
            let start = text::original_start(body)?;
            body[start..].to_string()
        }
    };
    let only = |text: &str| {
        let mut found: Vec<String> = text::addresses(text)
            .into_iter()
            .filter(|a| !a.eq_ignore_ascii_case(from))
            .collect();
        found.dedup();
        (found.len() == 1).then(|| found.remove(0))
    };
    match TO.captures(&headers) {
        Some(to) => only(&to[1]),
        None => FOR.captures(&headers).and_then(|c| only(&c[1])),
    }
}

/// All text of the message: text parts, and the headers of an attached
/// original (text/rfc822-headers is text too).
fn body_text(message: &mail_parser::Message<'_>) -> String {
    let mut out = String::new();
    for part in &message.parts {
        match &part.body {
            PartType::Text(t) => {
                out.push_str(t);
                out.push('\n');
            }
            PartType::Html(h) => {
                out.push_str(&strip_tags(h));
                out.push('\n');
            }
            _ => {}
        }
    }
    out
}

/// Bounce HTML (Exchange sends some) reduced to its text: the classifier
/// reads words, not layout.
fn strip_tags(html: &str) -> String {
    static TAG: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?s)<[^>]*>").expect("regex"));
    let text = TAG.replace_all(html, " ");
    text.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn embedded_message_id(text: &str) -> Option<String> {
    static ID: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?im)^message-id:\s*(<[^>\s]+>)").expect("regex"));
    ID.captures(text).map(|c| c[1].to_string())
}

fn looks_like_bounce(subject: &str, from: &str) -> bool {
    let s = subject.to_ascii_lowercase();
    from.starts_with("mailer-daemon")
        || from.starts_with("postmaster")
        || [
            "undeliver",
            "delivery status notification",
            "delivery failure",
            "mail delivery failed",
            "failure notice",
            "returned mail",
            "delivery has failed",
            "could not be delivered",
            "error sending your mail",
        ]
        .iter()
        .any(|w| s.contains(w))
}

/// An ARF feedback report (RFC 5965): `multipart/report;
/// report-type=feedback-report`, or a `message/feedback-report` part.
fn is_feedback_report(message: &mail_parser::Message<'_>) -> bool {
    use mail_parser::MimeHeaders;
    message.parts.iter().any(|part| {
        part.content_type().is_some_and(|ct| {
            let (ctype, subtype) = (ct.ctype(), ct.subtype().unwrap_or_default());
            (ctype.eq_ignore_ascii_case("message")
                && subtype.eq_ignore_ascii_case("feedback-report"))
                || (ctype.eq_ignore_ascii_case("multipart")
                    && subtype.eq_ignore_ascii_case("report")
                    && ct
                        .attribute("report-type")
                        .is_some_and(|t| t.eq_ignore_ascii_case("feedback-report")))
        })
    })
}

/// See [`Kind::UnsubscribeRequest`].
fn is_unsubscribe_request(message: &mail_parser::Message<'_>, subject: &str) -> bool {
    message
        .header_raw("X-Apple-Unsubscribe")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || subject.trim().eq_ignore_ascii_case("unsubscribe")
}

/// RFC 3834 Auto-Submitted: auto-replied, the de-facto vacation headers,
/// and the subjects clients give automatic replies.
fn is_auto_reply(message: &mail_parser::Message<'_>, subject: &str) -> bool {
    let header = |name: &str| {
        message
            .header_raw(name)
            .map(|v| v.trim().to_ascii_lowercase())
    };
    if header("Auto-Submitted").is_some_and(|v| v.starts_with("auto-replied")) {
        return true;
    }
    if header("X-Autoreply").is_some()
        || header("X-Autorespond").is_some()
        || header("X-Auto-Response-Suppress").is_some_and(|v| v.contains("oof"))
        || header("Precedence").is_some_and(|v| v == "auto_reply")
    {
        return true;
    }
    let s = subject.trim().to_lowercase();
    [
        "out of office",
        "out of the office",
        "automatic reply",
        "auto reply",
        "autoreply",
        "auto-reply",
        "auto:",
        "vacation",
        "abwesenheitsnotiz",
        "automatische antwort",
        "réponse automatique",
        "respuesta automática",
        "fuori ufficio",
    ]
    .iter()
    .any(|w| s.starts_with(w) || s.contains(&format!(": {w}")))
}

/// The VERP address in `text` that can prove most (see
/// [`crate::verp::find`]).
pub fn verp_in(text: &str) -> Option<Verp> {
    crate::verp::find(text)
}

fn find_verp(message: &mail_parser::Message<'_>) -> Option<Verp> {
    let mut candidates = Vec::new();
    for name in [
        "Delivered-To",
        "X-Original-To",
        "Envelope-To",
        "X-Envelope-To",
    ] {
        if let Some(v) = message.header_raw(name) {
            candidates.push(v.to_string());
        }
    }
    if let Some(addr) = message.header(HeaderName::To).and_then(|h| h.as_address()) {
        candidates.extend(
            addr.iter()
                .filter_map(|a| a.address.as_deref().map(str::to_string)),
        );
    }
    crate::verp::best(
        candidates
            .iter()
            .flat_map(|c| crate::verp::find_all(c))
            .collect(),
    )
}
