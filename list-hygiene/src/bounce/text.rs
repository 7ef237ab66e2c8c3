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
    "message headers follow",
    "below is a copy of the original message",
    "original message follows",
    "------- returned message --------",
    "----- unsent message follows -----",
    "----- original message follows -----",
    "content-type: message/rfc822",
    "start of returned message",
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
        r"|message,? addressed to",
        r#")\s*['"]?<?([^<>\s,;()'"]+@[^<>\s,;()'"]+?)>?['"]?[.,;:]?(?:\s|$)"#
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

/// A line a notice opens with a failed recipient, in the forms real MTAs
/// list them: alone (Notes, Domino, Gmail's delay notice), `addr: reason`
/// (OpenSMTPD), `addr on DATE` (Exchange 2003), `addr [reason]` (X1),
/// `addr... reason` (sendmail v5), `>>> addr <addr>` (Active!Hunter),
/// `* addr` (bulleted), `RCPT TO: addr` (message details). What may follow
/// the address is checked by [`listed_rest`].
static LISTED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?i)^[\s>*-]*(?:rcpt to:\s*)?<?",
        r"([A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+)",
        r">?(.*)$"
    ))
    .expect("regex")
});
/// `Reason words: addr` on a line of its own (IMail: "User mailbox
/// exceeds allowed size: a@b"); the words must say something failed.
static REASON_COLON_ADDRESS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*([A-Za-z][^:<>@]{2,80}):\s*<?([^<>\s@]+@[^<>\s]+?)>?\.?\s*$").expect("regex")
});
static REASON_WORDS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)invalid|unknown|exceed|full|\bnot\b|no such|fail|error|reject|undeliver|denied|refused|unavailable|disabled|quota|expired")
        .expect("regex")
});
/// A session transcript's recipient command (sendmail's `>>> RCPT
/// To:<a@b>`, Postfix's ` In:  RCPT TO:<a@b>`); the reply follows it.
static RCPT_COMMAND: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)rcpt to:\s*<([^<>\s]+@[^<>\s]+)>").expect("regex"));
static REPLY_LINE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:^|\s)[45]\d\d[\s-]").expect("regex"));
/// Words in a notice that say it reports undelivered mail, for bounces
/// whose subject and sender don't (a provider's "no-reply@" with a
/// subject in Japanese).
static UNDELIVERED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?i)could ?n[o']t be delivered|was not delivered|undeliverable|delivery (has )?failed",
        r"|delivery to the following|to the following recipients? (was|were|has|have|failed)",
        r"|following address(es)? (had|has|have|failed)|following recipients? (had|has|have|were|was|failed|could|cannot|returned)",
        r"|following\s+list\s+of\s+recipients|permanent fatal error|had delivery (errors|problems)",
        r"|did not reach the following|could not deliver|unable to deliver|error delivering",
        r"|delivery status notification|delivery (error|failure)|failure reasons",
    ))
    .expect("regex")
});
/// A line that introduces a notice's list of failed recipients, once the
/// notice has said it reports a failure ([`UNDELIVERED`]): looser than
/// that, because a list's heading is often wrapped ("… for the following
/// / list of recipients:").
static LIST_HEADING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)list of recipients|recipients? (were|was) affected|following (address|recipient)|delivered to:|failure reasons|delivery problems|delivery errors")
        .expect("regex")
});
/// Words that make a notice a warning about a delay, not a failure.
static DELAYED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?i)warning message only|has been delayed|is delayed|been delayed|temporary failure report",
        r"|will be retried|not yet been delivered|delivery (is )?delayed|still trying",
    ))
    .expect("regex")
});

/// Whether the notice's words (the body up to the returned original:
/// [`before_original`]) say mail was not delivered.
pub(super) fn says_undelivered(notice: &str) -> bool {
    // A notice says so up front; the same words deep in a long message
    // are a discussion of bounces, not one.
    const OPENING: usize = 2000;
    UNDELIVERED.is_match(first_chars(notice, OPENING))
}

/// Reads the failed recipients from a non-standard bounce body. `subject`
/// and `from` say whether the message presents itself as a bounce at all:
/// the loosest reading is only tried on ones that do.
pub(super) fn read(body: &str, subject: &str, from: &str) -> Vec<Recipient> {
    let found = read_notice(body, subject, from);
    if !found.is_empty() || !is_quoted(body) {
        return found;
    }
    // A bounce forwarded by a person: every line quoted with "> ".
    read_notice(&unquote(body), subject, from)
}

fn read_notice(body: &str, subject: &str, from: &str) -> Vec<Recipient> {
    let notice = before_original(body);
    let lines: Vec<&str> = notice.lines().map(|l| l.trim_end_matches('\r')).collect();

    let presents_as_bounce = super::looks_like_bounce(subject, from);
    // Only structural readers (an address where a notice lists its
    // failures) trust the notice's own words; the loosest reading needs
    // the subject or sender to say "bounce".
    let says_bounce = presents_as_bounce || says_undelivered(notice);
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
        if !says_bounce {
            found.retain(|(_, diagnostic)| FAILURE_WORDS.is_match(diagnostic));
        }
    }
    if found.is_empty() {
        found = exchange(&lines, notice);
    }
    if found.is_empty() && presents_as_bounce {
        found = transcript(&lines);
    }
    if found.is_empty() && says_bounce {
        found = listed(&lines);
    }
    if found.is_empty() && says_bounce {
        // Mid-sentence ("my note could not be delivered to: <a@b>
        // yesterday") the words are a person's, unless the subject or
        // sender says this is a bounce.
        found = phrased(&lines, !presents_as_bounce);
    }
    if found.is_empty() && presents_as_bounce {
        found = loose(&lines, from);
    }
    let delayed = DELAYED.is_match(notice) || subject.to_ascii_lowercase().contains("delay");
    // What the whole notice says, for a recipient whose own line doesn't
    // tell (Domino's "because:" paragraph, Notes' reason line above the
    // address, a transcript below the list).
    let notice_says = std::cell::OnceCell::new();
    let mut out: Vec<Recipient> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (address, diagnostic) in found {
        if out.len() == super::MAX_RECIPIENTS {
            break;
        }
        let address = address
            .trim_matches(['<', '>', '.', ',', ';', ':'])
            .to_ascii_lowercase();
        if is_daemon(&address)
            || address.eq_ignore_ascii_case(from)
            || !seen.insert(address.clone())
        {
            continue;
        }
        let mut diagnostic = squash(&diagnostic);
        let mut d = diagnose(None, &diagnostic);
        if d.reason.is_none() {
            let (whole, words) = notice_says.get_or_init(|| notice_diagnosis(notice));
            if whole.reason.is_some() || d.status.is_none() && whole.status.is_some() {
                d = *whole;
                if diagnostic.is_empty() {
                    diagnostic = words.clone();
                }
            }
        }
        // A delay nothing explains is the receiving side's trouble.
        if delayed
            && d.status.is_none_or(|s| s.class != 5)
            && matches!(
                d.class,
                super::BounceClass::Soft | super::BounceClass::Unknown
            )
        {
            d.class = super::BounceClass::Transient;
        }
        out.push(Recipient {
            class: d.class,
            reason: d.reason,
            status: d.status.map(|s| s.to_string()),
            diagnostic: (!diagnostic.is_empty()).then_some(diagnostic),
            address,
            action: if delayed { "delayed" } else { "failed" }.into(),
        });
    }
    out
}

/// Whether `body` is mostly lines quoted with `>`: a bounce a person
/// forwarded inline.
fn is_quoted(body: &str) -> bool {
    let (mut quoted, mut all) = (0, 0);
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        all += 1;
        quoted += usize::from(line.starts_with('>'));
    }
    quoted >= 5 && quoted * 3 >= all
}

/// `body` with one level of `>` quoting taken off every line.
fn unquote(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    for line in body.lines() {
        let line = line
            .strip_prefix('>')
            .map_or(line, |l| l.strip_prefix(' ').unwrap_or(l));
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Whether what follows an address on a [`LISTED`] line is a reason, a
/// date or nothing — not the rest of a sentence ("a@b wrote:", "a@b is
/// our new address"). Returns the reason, if any.
fn listed_rest(rest: &str) -> Option<String> {
    let rest = rest.trim();
    if rest.is_empty() {
        return Some(String::new());
    }
    let lower = rest.to_ascii_lowercase();
    if lower.starts_with("on ") || lower.starts_with('<') {
        // "a@b on Thu, 29 Apr 2010 …", ">>> a@b <a@b>": no reason here.
        return Some(String::new());
    }
    if let Some(r) = rest.strip_prefix("...") {
        return Some(r.trim().to_string());
    }
    if let Some(r) = rest.strip_prefix(':') {
        return Some(r.trim().to_string());
    }
    if rest.starts_with('[') || rest.starts_with('(') {
        return Some(rest.trim_matches(['[', ']', '(', ')']).trim().to_string());
    }
    if let Some(r) = rest.strip_prefix("- ").or_else(|| rest.strip_prefix("-- ")) {
        return Some(r.trim().to_string());
    }
    None
}

/// Failed recipients a notice lists one to a line (see [`LISTED`]), or
/// after the words that say why (`Invalid final delivery userid: a@b`).
/// The diagnostic is the rest of the line and the lines indented below it.
fn listed(lines: &[&str]) -> Vec<(String, String)> {
    // A list follows the words that introduce it ("did not reach the
    // following recipient(s):", "was not delivered to:"), within a few
    // lines (Notes puts the reason between). An address line anywhere
    // else — a newsletter's footer, a mailing list's quoted header — is
    // not a failed recipient.
    const REACH: usize = 12;
    let mut heading: Option<usize> = None;
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if UNDELIVERED.is_match(line) || LIST_HEADING.is_match(line) {
            heading = Some(i);
        }
        let in_list = heading.is_some_and(|h| i > h && i - h <= REACH);
        if in_list
            && let Some(c) = LISTED.captures(line)
            && let Some(reason) = listed_rest(&c[2])
        {
            let indent = line.len() - line.trim_start().len();
            let mut diagnostic = reason;
            for next in &lines[i + 1..] {
                let next_indent = next.len() - next.trim_start().len();
                if next.trim().is_empty() || next_indent <= indent || LISTED.is_match(next) {
                    break;
                }
                diagnostic.push(' ');
                diagnostic.push_str(next.trim());
            }
            out.push((c[1].to_string(), diagnostic));
            // The list goes on below this entry.
            heading = Some(i);
        } else if let Some(c) = REASON_COLON_ADDRESS.captures(line)
            && REASON_WORDS.is_match(&c[1])
        {
            out.push((c[2].to_string(), c[1].trim().to_string()));
        }
    }
    out
}

/// Recipients a session transcript shows refused: `RCPT TO:<a@b>` and,
/// within the next lines, a 4xx/5xx reply (with its continuation lines).
fn transcript(lines: &[&str]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(c) = RCPT_COMMAND.captures(line) else {
            continue;
        };
        let replies: Vec<&str> = lines[i + 1..]
            .iter()
            .take(4)
            .take_while(|l| !RCPT_COMMAND.is_match(l))
            .skip_while(|l| !REPLY_LINE.is_match(l))
            .take_while(|l| REPLY_LINE.is_match(l))
            .map(|l| {
                l.trim()
                    .trim_start_matches(['<', ' '])
                    .trim_start_matches("Out:")
                    .trim()
            })
            .collect();
        if let Some(first) = replies.first()
            && !first.starts_with('2')
        {
            out.push((c[1].to_string(), replies.join(" ")));
        }
    }
    out
}

/// Where the copy of the original starts in `body`, if a marker says: one
/// case-insensitive pass for all markers, the earliest wins.
pub(super) fn original_start(body: &str) -> Option<usize> {
    static MARKERS: LazyLock<aho_corasick::AhoCorasick> = LazyLock::new(|| {
        aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(ORIGINAL_MARKERS)
            .expect("markers")
    });
    MARKERS.find(body).map(|m| m.start())
}

/// Every address in `text`, lower-cased, in order.
pub(super) fn addresses(text: &str) -> Vec<String> {
    ADDRESS
        .find_iter(text)
        .map(|m| m.as_str().to_ascii_lowercase())
        .collect()
}

/// `body` up to the copy of the original message: the notice.
pub(super) fn before_original(body: &str) -> &str {
    &body[..original_start(body).unwrap_or(body.len())]
}

/// The recipients an `X-Failed-Recipients` header names (Exim adds it, and
/// Gmail, Google Groups and others copied it), for a bounce whose body
/// names none in a form [`read`] knows: each failed, the body's own words
/// (before the returned original) the diagnostic.
pub(super) fn named_in_header(body: &str, header: &str) -> Vec<Recipient> {
    let (d, diagnostic) = notice_diagnosis(before_original(body));
    let mut seen = std::collections::HashSet::new();
    ADDRESS
        .find_iter(header)
        .map(|m| m.as_str().to_ascii_lowercase())
        .filter(|a| !is_daemon(a) && seen.insert(a.clone()))
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

/// What the notice's words (the body before the returned original: see
/// [`before_original`]) say, and those words squashed for a diagnostic:
/// for a failure whose recipient the body doesn't name in a form read here.
fn notice_diagnosis(notice: &str) -> (super::Diagnosis, String) {
    // Enough of the notice for the words that say why; the rest is
    // boilerplate and would only add false matches.
    const WORDS: usize = 4000;
    let words = first_chars(notice, WORDS);
    let d = diagnose(
        None,
        &words.split_whitespace().collect::<Vec<_>>().join(" "),
    );
    (d, squash(words))
}

/// For DSN recipients that come without a `Diagnostic-Code` (OpenSMTPD,
/// Gmail's and others' reports keep the reason in the human-readable
/// part): the reason from the line of the notice that names the
/// recipient ("a@b: Domain does not exist"), else from the notice as a
/// whole — where the report's status code, if specific, outranks the
/// notice's words.
pub(super) fn explain(body: &str, recipients: &mut [Recipient]) {
    // A notice names its recipients near the top; searching only that
    // much keeps a report of 1,000 recipients with a huge text part
    // linear, not recipients × body.
    const SEARCHED: usize = 64 * 1024;
    let notice = before_original(body);
    let head = &notice[..notice.floor_char_boundary(SEARCHED)];
    let lower = head.to_ascii_lowercase();
    let whole = std::cell::OnceCell::new();
    for r in recipients.iter_mut().filter(|r| r.diagnostic.is_none()) {
        let status = r.status.as_deref().and_then(super::StatusCode::parse);
        // The first mention followed by a reason ("To: a@b" above the
        // list says none); a few mentions at most.
        let said = lower.match_indices(&r.address).take(8).find_map(|(at, _)| {
            // ASCII lower-casing keeps byte offsets: `at` is valid in `head`.
            let after = &head[at + r.address.len()..];
            let line = after.lines().next().unwrap_or_default();
            let rest = listed_rest(line.trim_start_matches('>'))?;
            (!rest.is_empty()).then_some(rest)
        });
        let (d, diagnostic) = match said {
            Some(said) => (diagnose(status, &said), squash(&said)),
            None => {
                let (d, words): &(super::Diagnosis, String) =
                    whole.get_or_init(|| notice_diagnosis(notice));
                if d.reason.is_none() {
                    continue;
                }
                // The notice's words are boilerplate around the reason; a
                // specific code, where the report has one, says more.
                let code = diagnose(status, "");
                let d = if code.reason.is_some() {
                    code
                } else {
                    diagnose(status, words)
                };
                (d, words.clone())
            }
        };
        r.reason = d.reason;
        r.class = d.class;
        if let Some(status) = d.status {
            r.status = Some(status.to_string());
        }
        r.diagnostic = (!diagnostic.is_empty()).then_some(diagnostic);
    }
}

/// The failure of a bounce that names no recipient a reader here finds:
/// whoever applies it must know the recipient another way (the verified
/// VERP path names it).
pub(super) fn unnamed(body: &str) -> super::Unnamed {
    let (d, diagnostic) = notice_diagnosis(before_original(body));
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

/// The bounce machinery's own addresses, never a failed recipient.
fn is_daemon(address: &str) -> bool {
    let local = address.split('@').next().unwrap_or_default();
    matches!(local, "mailer-daemon" | "mailer_daemon")
}

/// [`is_daemon`], or postmaster: where the loosest readers find an
/// address, postmaster is the notice's contact ("send mail to
/// postmaster@…"), not a recipient; the structural readers do take it.
fn is_system_address(address: &str) -> bool {
    is_daemon(address) || address.split('@').next() == Some("postmaster")
}

/// The first `n` characters of `text` (all of it if shorter).
fn first_chars(text: &str, n: usize) -> &str {
    match text.char_indices().nth(n) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

fn squash(s: &str) -> String {
    let mut joined = s.split_whitespace().collect::<Vec<_>>().join(" ");
    joined.truncate(first_chars(&joined, 500).len());
    joined
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

/// Addresses named by [`PHRASED`] words (only where they open a line,
/// with `line_start_only`); the diagnostic is the rest of the paragraph.
fn phrased(lines: &[&str], line_start_only: bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let opening = line.len() - line.trim_start().len();
        for c in PHRASED.captures_iter(line) {
            if line_start_only && c.get(0).is_some_and(|m| m.start() != opening) {
                continue;
            }
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
            if !m.as_str().eq_ignore_ascii_case(from)
                && !is_system_address(&m.as_str().to_ascii_lowercase())
            {
                out.push((m.as_str().to_string(), context.clone()));
            }
        }
    }
    out
}
