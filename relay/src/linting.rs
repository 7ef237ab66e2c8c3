//! The relay's use of the lint crate: reading what `mailroom lint` is
//! given (an .eml, an HTML body or the relay's JSON message), linting a
//! rendered message, and printing reports for people and for machines.

use std::io::{self, Write};

use anstyle::{AnsiColor, Style};

use crate::compose;
use crate::domain::message::SendRequest;
use crate::domain::{MessageId, NewMessage, Stream};

/// Why a lint input could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    #[error("not UTF-8 text: {0}")]
    NotUtf8(#[from] std::str::Utf8Error),
    #[error("not a valid relay JSON message: {0}")]
    Json(String),
    #[error("invalid message: {field}: {message}")]
    Invalid { field: String, message: String },
    #[error("cannot render the message: {0}")]
    Render(String),
    #[error(transparent)]
    Email(#[from] lint::ParseError),
}

/// What kind of input a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    Eml,
    Html,
    Json,
}

impl InputKind {
    /// By extension, else by the first non-blank byte: `{` is the relay's
    /// JSON, `<` an HTML body, anything else a MIME message.
    pub fn detect(name: &str, bytes: &[u8]) -> InputKind {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".json") {
            return InputKind::Json;
        }
        if lower.ends_with(".html") || lower.ends_with(".htm") {
            return InputKind::Html;
        }
        if lower.ends_with(".eml") {
            return InputKind::Eml;
        }
        let start = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        match start.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => InputKind::Json,
            Some(b'<') => InputKind::Html,
            _ => InputKind::Eml,
        }
    }
}

/// Stands in for the per-recipient one-click link when a relay JSON
/// message is linted outside the relay.
pub const PREVIEW_UNSUBSCRIBE_URL: &str = "https://relay.invalid/u/preview";

/// The input read for linting, and the stream a relay JSON message names.
pub struct Input {
    pub email: lint::Email,
    pub stream: Option<Stream>,
}

/// Reads one input for `mailroom lint`.
///
/// # Errors
/// When the bytes are not what their kind needs: invalid UTF-8 HTML, JSON
/// that isn't a valid send request, an empty or header-less message.
pub fn read_input(name: &str, bytes: &[u8]) -> Result<Input, InputError> {
    match InputKind::detect(name, bytes) {
        InputKind::Eml => Ok(Input {
            email: lint::Email::parse(bytes)?,
            stream: None,
        }),
        InputKind::Html => Ok(Input {
            email: lint::Email::from_html(std::str::from_utf8(bytes)?),
            stream: None,
        }),
        InputKind::Json => {
            let mut de = serde_json::Deserializer::from_slice(bytes);
            let req: SendRequest = serde_path_to_error::deserialize(&mut de)
                .map_err(|e| InputError::Json(format!("at {}: {}", e.path(), e.inner())))?;
            let mut msg = NewMessage::try_from(req).map_err(|e| InputError::Invalid {
                field: e.field,
                message: e.message,
            })?;
            // The relay adds these when it sends; the link is a stand-in.
            crate::unsubscribe::add_list_headers(&mut msg, |recipients| {
                crate::unsubscribe::ListLinks {
                    https: (recipients == 1).then(|| PREVIEW_UNSUBSCRIBE_URL.into()),
                    mailto: "mailto:unsubscribe+preview@relay.invalid?subject=unsubscribe".into(),
                }
            });
            let stream = msg.stream;
            Ok(Input {
                email: email_of(&msg)?,
                stream: Some(stream),
            })
        }
    }
}

/// Renders a validated message as the relay would send it (unsigned: the
/// signature changes nothing the linter reads) and reads it back.
///
/// # Errors
/// When rendering fails (it validates the same way sending does).
pub fn email_of(msg: &NewMessage) -> Result<lint::Email, InputError> {
    let rendered = compose::render(msg, &MessageId::new(), None)
        .map_err(|e| InputError::Render(e.to_string()))?;
    Ok(lint::Email::parse(&rendered.raw)?)
}

/// Lints a message the relay rendered, for the pre-send gate.
///
/// # Errors
/// Only if the bytes don't parse as a message, which rendered ones do.
pub fn lint_rendered(
    raw: &[u8],
    stream: Stream,
    threshold: f64,
) -> Result<lint::Report, lint::ParseError> {
    let email = lint::Email::parse(raw)?;
    Ok(lint::lint(
        &email,
        &lint::Options {
            stream: lint_stream(stream),
            threshold,
        },
    ))
}

pub fn lint_stream(stream: Stream) -> lint::Stream {
    match stream {
        Stream::Transactional => lint::Stream::Transactional,
        Stream::Marketing => lint::Stream::Marketing,
    }
}

/// One JSON object per line, `{"file", "score", "rating", "findings", ...}`.
pub fn json_line(file: &str, report: &lint::Report) -> String {
    #[derive(serde::Serialize)]
    struct Line<'a> {
        file: &'a str,
        #[serde(flatten)]
        report: &'a lint::Report,
    }
    serde_json::to_string(&Line { file, report }).expect("reports serialize")
}

const BOLD: Style = Style::new().bold();
const DIM: Style = Style::new().dimmed();

fn severity_style(s: lint::Severity) -> Style {
    match s {
        lint::Severity::Error => AnsiColor::Red.on_default().bold(),
        lint::Severity::Warning => AnsiColor::Yellow.on_default().bold(),
        lint::Severity::Info => AnsiColor::Cyan.on_default(),
    }
}

fn rating_style(r: lint::Rating) -> Style {
    match r {
        lint::Rating::Good => AnsiColor::Green.on_default().bold(),
        lint::Rating::Review => AnsiColor::Yellow.on_default().bold(),
        lint::Rating::Risky => AnsiColor::Red.on_default().bold(),
    }
}

/// The report for a person: score and rating, then the findings grouped by
/// severity, each with its evidence and fix. Styles are ANSI escapes; the
/// caller's writer (anstream) strips them when the output isn't a terminal.
///
/// # Errors
/// Write errors from `out`.
pub fn write_text(out: &mut impl Write, file: &str, report: &lint::Report) -> io::Result<()> {
    let rating = rating_style(report.rating);
    writeln!(
        out,
        "{BOLD}{file}{BOLD:#}: score {BOLD}{:.1}{BOLD:#} {rating}{}{rating:#} (spam probability {:.0} %, threshold {:.1}, {} stream)",
        report.score,
        report.rating.as_str(),
        report.probability * 100.0,
        report.threshold,
        match report.summary.stream {
            lint::Stream::Marketing => "marketing",
            lint::Stream::Transactional => "transactional",
        }
    )?;
    // The three findings that add most, first: what to fix before anything.
    let mut top: Vec<(&str, f64)> = Vec::new();
    for f in &report.findings {
        match top.iter_mut().find(|(r, _)| *r == f.rule) {
            Some((_, p)) => *p += f.points,
            None => top.push((f.rule, f.points)),
        }
    }
    top.sort_by(|a, b| b.1.total_cmp(&a.1));
    let top: Vec<String> = top
        .iter()
        .filter(|(_, p)| *p > 0.0)
        .take(3)
        .map(|(r, p)| format!("{r} +{p:.1}"))
        .collect();
    if !top.is_empty() {
        writeln!(out, "  {BOLD}fix first:{BOLD:#} {}", top.join(", "))?;
    }
    if let Some(p) = &report.summary.preheader {
        writeln!(out, "  {DIM}preview:{DIM:#} {p}")?;
    }
    if report.findings.is_empty() {
        writeln!(out, "  no findings")?;
    }
    for severity in [
        lint::Severity::Error,
        lint::Severity::Warning,
        lint::Severity::Info,
    ] {
        let group: Vec<_> = report
            .findings
            .iter()
            .filter(|f| f.severity == severity)
            .collect();
        if group.is_empty() {
            continue;
        }
        let style = severity_style(severity);
        writeln!(
            out,
            "  {style}{}{style:#} ({})",
            severity.as_str(),
            group.len()
        )?;
        // One entry per rule, in the order the report ranks them; the fix
        // is printed once however often the rule fired.
        let mut rules: Vec<&str> = group.iter().map(|f| f.rule).collect();
        rules.dedup();
        let mut printed = std::collections::HashSet::new();
        for rule in rules.into_iter().filter(|r| printed.insert(*r)) {
            let hits: Vec<_> = group.iter().filter(|f| f.rule == rule).collect();
            let points: f64 = hits.iter().map(|f| f.points).sum();
            if let [f] = hits.as_slice() {
                writeln!(out, "    {BOLD}{rule}{BOLD:#} +{points:.1}  {}", f.message)?;
                if let Some(e) = &f.evidence {
                    writeln!(out, "      {DIM}evidence:{DIM:#} {e}")?;
                }
            } else {
                writeln!(
                    out,
                    "    {BOLD}{rule}{BOLD:#} +{points:.1}  ({} findings)",
                    hits.len()
                )?;
                for f in &hits {
                    match &f.evidence {
                        Some(e) => writeln!(out, "      - {}  {DIM}[{e}]{DIM:#}", f.message)?,
                        None => writeln!(out, "      - {}", f.message)?,
                    }
                }
            }
            writeln!(out, "      {DIM}fix:{DIM:#} {}", hits[0].fix)?;
        }
    }
    Ok(())
}

/// A parsed bounce for a person: one line per recipient.
///
/// # Errors
/// Write errors from `out`.
pub fn write_bounce(
    out: &mut impl Write,
    file: &str,
    bounce: &list_hygiene::bounce::Bounce,
) -> io::Result<()> {
    use list_hygiene::bounce::Kind;
    let kind = match bounce.kind {
        Kind::Dsn => "delivery status notification (RFC 3464)",
        Kind::NonStandard => "non-standard bounce",
        Kind::AutoReply => "auto-reply (not a bounce)",
        Kind::FeedbackReport => {
            "feedback-loop complaint (not a bounce: POST it to /v1/webhooks/complaints)"
        }
        Kind::UnsubscribeRequest => {
            "unsubscribe request (not a bounce: the relay's inbound MX takes these at its unsubscribe address)"
        }
        Kind::DeliveryNotice => "delivery notice: reports success (not a bounce)",
        Kind::NotABounce => "not a bounce",
    };
    writeln!(out, "{file}: {kind}")?;
    if let Some(id) = &bounce.original_message_id {
        writeln!(out, "  original message: {id}")?;
    }
    if let Some(v) = &bounce.verp {
        writeln!(
            out,
            "  relay message: {} recipient #{}",
            v.message_id, v.recipient_index
        )?;
    }
    for r in &bounce.recipients {
        // `mailbox_full` is its own reason and class: say it once.
        let reason = r
            .reason
            .map(|why| why.as_str())
            .filter(|why| *why != r.class.as_str())
            .map(|why| format!(" ({why})"))
            .unwrap_or_default();
        writeln!(
            out,
            "  {}  {}  {}  {}{reason}",
            r.address,
            r.action,
            r.status.as_deref().unwrap_or("-"),
            r.class.as_str()
        )?;
        if let Some(d) = &r.diagnostic {
            writeln!(out, "    {d}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_kind_is_told_by_extension_then_content() {
        assert_eq!(InputKind::detect("a.JSON", b"x"), InputKind::Json);
        assert_eq!(InputKind::detect("a.htm", b"x"), InputKind::Html);
        assert_eq!(InputKind::detect("-", b"  {\"from\":1}"), InputKind::Json);
        assert_eq!(
            InputKind::detect("-", b"\xEF\xBB\xBF<html>"),
            InputKind::Html
        );
        assert_eq!(
            InputKind::detect("-", b"From: a@b.example\r\n"),
            InputKind::Eml
        );
    }

    #[test]
    fn a_relay_json_message_is_rendered_and_linted() {
        let input = read_input(
            "m.json",
            br#"{"from": "Shop <news@shop.example>", "to": "a@example.net",
                 "subject": "Hello", "html": "<p>Hi <a href='https://bit.ly/x'>x</a></p>",
                 "text": "Hi https://bit.ly/x", "stream": "marketing"}"#,
        )
        .unwrap();
        assert_eq!(input.stream, Some(Stream::Marketing));
        let report = lint::lint(&input.email, &lint::Options::default());
        let ids = report.rule_ids();
        assert!(ids.contains(&"links.shortener"), "{ids:?}");
        // The relay adds Date and Message-ID when it renders.
        assert!(!ids.contains(&"headers.missing-date"), "{ids:?}");
        // ... and the one-click unsubscribe headers on marketing mail.
        assert!(!ids.contains(&"compliance.no-list-unsubscribe"), "{ids:?}");
        assert!(!ids.contains(&"compliance.no-one-click"), "{ids:?}");
    }

    #[test]
    fn bad_inputs_name_the_problem() {
        let e = read_input("m.json", br#"{"from": "x"}"#).err().unwrap();
        assert!(
            e.to_string().contains("invalid message") || e.to_string().contains("relay JSON"),
            "{e}"
        );
        let e = read_input("m.json", b"{not json").err().unwrap();
        assert!(
            e.to_string().starts_with("not a valid relay JSON message"),
            "{e}"
        );
        let e = read_input("m.eml", b"  \n").err().unwrap();
        assert_eq!(e.to_string(), "empty input");
        let e = read_input("m.html", b"<p>\xff</p>").err().unwrap();
        assert!(e.to_string().starts_with("not UTF-8"), "{e}");
    }

    #[test]
    fn json_lines_start_with_the_file() {
        let report = lint::lint(
            &lint::Email::from_html("<p>hi</p>"),
            &lint::Options::default(),
        );
        let line = json_line("a.html", &report);
        assert!(line.starts_with("{\"file\":\"a.html\""), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert!(v["score"].is_number() && v["rating"].is_string() && v["findings"].is_array());
    }
}
