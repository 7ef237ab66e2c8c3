//! Bounces that are not RFC 3464 reports: the human-readable bodies of
//! qmail, Exim, Exchange/Office 365, Postfix, Yahoo/AOL legacy and plain
//! "user unknown" replies.

use std::sync::LazyLock;

use regex::Regex;

use super::Recipient;
use super::classify::diagnose;

/// Where the copy of the original message starts; addresses after it are
/// the original's headers, not failed recipients.
const ORIGINAL_MARKERS: &[&str] = &[
    "--- below this line is a copy of the message",
    "------ this is a copy of the message",
    "----- original message -----",
    "original message headers:",
    "----- the header of the original message is following",
    "--- original message follows",
    "------ this is a copy of your message",
    "the original message was received at",
    "message headers follow",
];

static ADDRESS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+")
        .expect("regex")
});
/// qmail, Yahoo legacy and Postfix's text: `<addr>:` opening a line, the
/// diagnostic after it or on the lines below.
static ANGLE_LINE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*<([^<>\s]+@[^<>\s]+)>:?\s*(.*)$").expect("regex"));
/// An address right after words that say delivery to it failed: "There
/// was an error delivering your mail to <a@b>.", "Could not be delivered
/// to: <a@b>", "Unable to deliver message to <a@b>", "rejected recipient
/// <a@b>", "The following recipients returned permanent errors: a@b."
static PHRASED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?i)(?:error delivering (?:your )?(?:mail|message) to",
        r"|could not be delivered to:?",
        r"|unable to deliver (?:the )?(?:message |mail )?to:?",
        r"|rejected recipient",
        r"|recipients? (?:returned|had) permanent errors?:?",
        r"|delivery to the following recipients? (?:failed|was unsuccessful)[^:<]*:?",
        r")\s*<?([^<>\s,;()]+@[^<>\s,;()]+?)>?[.,;:]?(?:\s|$)"
    ))
    .expect("regex")
});
/// Exchange: `Remote Server returned '550 5.1.10 ...'`.
static EXCHANGE_REPLY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)remote server returned '([^']+)'").expect("regex"));
/// Exchange's administrator section: `#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##`.
static CODE_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?m)^\s*#?([245]\d\d[ -][245]\.\d{1,3}\.\d{1,3}.*?)\s*(?:##)?\s*$").expect("regex")
});
static FAILURE_WORDS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b[45]\d\d\b|user unknown|unknown user|no such|does not exist|doesn't exist|not found|rejected|mailbox (is )?(full|unavailable)|over quota|undeliverable|could not be delivered|couldn't be delivered|delivery (has )?failed|invalid (recipient|address)")
        .expect("regex")
});

/// Reads the failed recipients from a non-standard bounce body. `subject`
/// and `from` say whether the message presents itself as a bounce at all:
/// the loosest reading is only tried on ones that do.
pub(super) fn read(body: &str, subject: &str, from: &str) -> Vec<Recipient> {
    let body = before_original(body);
    let lines: Vec<&str> = body.lines().map(|l| l.trim_end_matches('\r')).collect();

    let presents_as_bounce = super::looks_like_bounce(subject, from);
    // Exim's notice first: its own marker is unambiguous, and it quotes
    // the *sender* as an indented `<address>` line ("A message sent by
    // <…> could not be delivered"), which the angle-block reading would
    // take for a failed recipient.
    let mut found = exim(&lines);
    if found.is_empty() {
        found = angle_blocks(&lines);
        // `<address>: reason` is also how ordinary mail quotes an address;
        // from a message that doesn't present itself as a bounce, only a
        // block whose reason reads as a delivery failure counts.
        if !presents_as_bounce {
            found.retain(|(_, diagnostic)| FAILURE_WORDS.is_match(diagnostic));
        }
    }
    if found.is_empty() {
        found = exchange(&lines, body);
    }
    if found.is_empty() && presents_as_bounce {
        found = loose(&lines, from);
    }
    if found.is_empty() && presents_as_bounce {
        found = phrased(&lines);
    }
    let mut out: Vec<Recipient> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (address, diagnostic) in found {
        if out.len() == super::MAX_RECIPIENTS {
            break;
        }
        let address = address
            .trim_matches(['<', '>', '.', ',', ';', ':'])
            .to_ascii_lowercase();
        if is_system_address(&address) || !seen.insert(address.clone()) {
            continue;
        }
        let diagnostic = squash(&diagnostic);
        let d = diagnose(None, &diagnostic);
        out.push(Recipient {
            class: d.class,
            reason: d.reason,
            status: d.status.map(|s| s.to_string()),
            diagnostic: (!diagnostic.is_empty()).then_some(diagnostic),
            address,
            action: "failed".into(),
        });
    }
    out
}

/// `body` up to the copy of the original message.
fn before_original(body: &str) -> &str {
    let lower = body.to_ascii_lowercase();
    let cut = ORIGINAL_MARKERS
        .iter()
        .filter_map(|m| lower.find(m))
        .min()
        .unwrap_or(body.len());
    // `find` on the lower-cased copy gives a byte offset into it; ASCII
    // lower-casing keeps byte offsets, so it is valid in `body` too.
    &body[..cut]
}

/// The recipients an `X-Failed-Recipients` header names (Exim adds it, and
/// Gmail, Google Groups and others copied it), for a bounce whose body
/// names none in a form [`read`] knows: each failed, the body's own words
/// (before the returned original) the diagnostic.
pub(super) fn named_in_header(body: &str, header: &str) -> Vec<Recipient> {
    let (d, diagnostic) = body_diagnosis(body);
    let mut seen = std::collections::HashSet::new();
    ADDRESS
        .find_iter(header)
        .map(|m| m.as_str().to_ascii_lowercase())
        .filter(|a| !is_system_address(a) && seen.insert(a.clone()))
        .take(super::MAX_RECIPIENTS)
        .map(|address| Recipient {
            class: d.class,
            reason: d.reason,
            status: d.status.map(|s| s.to_string()),
            diagnostic: (!diagnostic.is_empty()).then(|| diagnostic.clone()),
            address,
            action: "failed".into(),
        })
        .collect()
}

/// What the body's own words (before the returned original) say, and
/// those words squashed for a diagnostic: for a failure whose recipient
/// the body doesn't name in a form read here.
fn body_diagnosis(body: &str) -> (super::Diagnosis, String) {
    // Enough of the body for the words that say why; the rest is
    // boilerplate and would only add false matches.
    const WORDS: usize = 4000;
    let body = before_original(body);
    let words = match body.char_indices().nth(WORDS) {
        Some((i, _)) => &body[..i],
        None => body,
    };
    let d = diagnose(
        None,
        &words.split_whitespace().collect::<Vec<_>>().join(" "),
    );
    (d, squash(words))
}

/// The failure of a bounce that names no recipient a reader here finds:
/// whoever applies it must know the recipient another way (the verified
/// VERP path names it).
pub(super) fn unnamed(body: &str) -> super::Unnamed {
    let (d, diagnostic) = body_diagnosis(body);
    super::Unnamed {
        status: d
            .status
            .unwrap_or_else(|| super::StatusCode::undefined(&diagnostic, false))
            .to_string(),
        diagnostic: (!diagnostic.is_empty()).then_some(diagnostic),
        reason: d.reason,
        class: d.class,
    }
}

fn is_system_address(address: &str) -> bool {
    let local = address.split('@').next().unwrap_or_default();
    matches!(local, "mailer-daemon" | "postmaster" | "mailer_daemon")
}

fn squash(s: &str) -> String {
    let joined = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match joined.char_indices().nth(500) {
        Some((i, _)) => joined[..i].to_string(),
        None => joined,
    }
}

/// The diagnostic: the rest of the line, then the following non-blank lines.
fn following(lines: &[&str], from: usize, first: &str) -> String {
    let mut diagnostic = first.to_string();
    for line in &lines[from..] {
        if line.trim().is_empty() || ANGLE_LINE.is_match(line) {
            break;
        }
        diagnostic.push(' ');
        diagnostic.push_str(line.trim());
    }
    diagnostic
}

fn angle_blocks(lines: &[&str]) -> Vec<(String, String)> {
    lines
        .iter()
        .enumerate()
        .filter_map(|(i, line)| {
            let c = ANGLE_LINE.captures(line)?;
            Some((c[1].to_string(), following(lines, i + 1, &c[2])))
        })
        .collect()
}

/// Exim: "The following address(es) failed:" then each address indented on
/// its own line, its reasons indented deeper below it.
fn exim(lines: &[&str]) -> Vec<(String, String)> {
    let Some(start) = lines.iter().position(|l| {
        let l = l.to_ascii_lowercase();
        // "The following address(es) failed:", often wrapped after "following".
        l.contains("address(es) failed") || l.contains("following addresses had permanent")
    }) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = Vec::new();
    for line in &lines[start + 1..] {
        if line.trim().is_empty() {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        // "  user@example.com" (a trailing ":" is accepted too), alone on
        // its line; its reasons follow, indented deeper.
        let is_address_line = indent <= 2
            && ADDRESS.find(trimmed).is_some_and(|m| m.start() == 0)
            && !trimmed.contains(' ');
        if is_address_line {
            out.push((
                ADDRESS.find(trimmed).expect("checked").as_str().to_string(),
                String::new(),
            ));
        } else if let Some((_, diagnostic)) = out.last_mut() {
            if indent == 0 {
                break; // the next paragraph of the notice
            }
            diagnostic.push(' ');
            diagnostic.push_str(trimmed);
        }
    }
    out
}

/// Exchange/Office 365 text NDRs.
fn exchange(lines: &[&str], body: &str) -> Vec<(String, String)> {
    let Some(start) = lines.iter().position(|l| {
        let l = l.to_ascii_lowercase();
        l.contains("delivery has failed to these recipients")
            || l.contains("your message to") && l.contains("couldn't be delivered")
            || l.contains("the following recipient(s) cannot be reached")
    }) else {
        return Vec::new();
    };
    let reply = EXCHANGE_REPLY
        .captures(body)
        .or_else(|| CODE_LINE.captures(body))
        .map(|c| c[1].to_string());
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate().skip(start) {
        // The heading line itself can carry the address ("Your message to
        // a@b couldn't be delivered").
        for m in ADDRESS.find_iter(line) {
            let said = following(lines, i + 1, "");
            let diagnostic = match &reply {
                Some(reply) => format!("{reply} {said}"),
                None => said,
            };
            out.push((m.as_str().to_string(), diagnostic));
        }
        if !out.is_empty() && line.trim().is_empty() {
            break;
        }
    }
    out
}

/// Addresses named by [`PHRASED`] words; the diagnostic is the rest of
/// the paragraph.
fn phrased(lines: &[&str]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        for c in PHRASED.captures_iter(line) {
            let mut diagnostic = following(lines, i + 1, line.trim());
            // The reason is often the next paragraph ("There was an error
            // delivering your mail to <a@b>.", a blank line, "Could not
            // deliver for the last 432000 seconds. Giving up.").
            if diagnostic == line.trim()
                && let Some(next) = (i + 1..lines.len()).find(|&j| !lines[j].trim().is_empty())
                && !ANGLE_LINE.is_match(lines[next])
            {
                diagnostic = following(
                    lines,
                    next + 1,
                    &format!("{} {}", line.trim(), lines[next].trim()),
                );
            }
            out.push((c[1].to_string(), diagnostic));
        }
    }
    out
}

/// Last resort for messages that say they are bounces: addresses on lines
/// that also carry an SMTP code or failure words.
fn loose(lines: &[&str], from: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let context = format!("{line} {}", lines.get(i + 1).copied().unwrap_or_default());
        if !FAILURE_WORDS.is_match(&context) {
            continue;
        }
        for m in ADDRESS.find_iter(line) {
            if !m.as_str().eq_ignore_ascii_case(from) {
                out.push((m.as_str().to_string(), context.clone()));
            }
        }
    }
    out
}
