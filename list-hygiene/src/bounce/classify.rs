//! Bounce classes from RFC 3463 enhanced status codes and, where a code is
//! missing or generic, from the words of the diagnostic.

use std::sync::LazyLock;

use regex::{Regex, RegexSet};
use serde::Serialize;

/// What a failure says about the address, which decides what list hygiene
/// does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BounceClass {
    /// The address is bad (no such mailbox or domain): suppress at once.
    Hard,
    /// A failure at the address that may not last (temporarily disabled
    /// mailbox, unexplained permanent failure): suppress after several.
    Soft,
    /// The mailbox is over quota: the recipient's problem, and temporary.
    MailboxFull,
    /// Refused for the sender's or the message's sake (spam, reputation,
    /// authentication, size, too many recipients): not the address's fault.
    Policy,
    /// The receiving system had trouble (network, overload, greylisting).
    Transient,
    /// Nothing tells.
    Unknown,
}

impl BounceClass {
    pub fn as_str(self) -> &'static str {
        match self {
            BounceClass::Hard => "hard",
            BounceClass::Soft => "soft",
            BounceClass::MailboxFull => "mailbox_full",
            BounceClass::Policy => "policy",
            BounceClass::Transient => "transient",
            BounceClass::Unknown => "unknown",
        }
    }
}

/// An RFC 3463 status code `class.subject.detail`, e.g. 5.1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusCode {
    pub class: u8,
    pub subject: u16,
    pub detail: u16,
}

impl StatusCode {
    /// Parses `5.1.1` (surrounding text not allowed).
    pub fn parse(s: &str) -> Option<StatusCode> {
        let mut parts = s.trim().splitn(3, '.');
        let class: u8 = parts.next()?.parse().ok()?;
        let subject: u16 = parts.next()?.parse().ok()?;
        let detail: u16 = parts.next()?.parse().ok()?;
        (matches!(class, 2 | 4 | 5) && subject <= 999 && detail <= 999).then_some(StatusCode {
            class,
            subject,
            detail,
        })
    }

    /// The first enhanced status code in free text ("550 5.1.1 <a@b>: ...").
    pub fn find(text: &str) -> Option<StatusCode> {
        static CODE: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(r"(?:^|[^0-9.])([245]\.\d{1,3}\.\d{1,3})(?:[^0-9.]|$)").expect("regex")
        });
        CODE.captures_iter(text)
            .find_map(|c| StatusCode::parse(&c[1]))
    }

    /// A code that carries no information beyond its class (x.0.0).
    pub fn is_generic(self) -> bool {
        self.subject == 0 && self.detail == 0
    }
}

impl std::fmt::Display for StatusCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// The class an enhanced status code gives on its own; `None` when the code
/// is generic and the text must decide.
fn from_code(code: StatusCode) -> Option<BounceClass> {
    use BounceClass::*;
    if code.class == 2 || code.is_generic() {
        return None;
    }
    let permanent = code.class == 5;
    Some(match (code.subject, code.detail) {
        (2, 2) => MailboxFull,
        // Security or policy status (RFC 3463 X.7.*): spam, reputation,
        // authentication, "not authorized".
        (7, _) => Policy,
        // Sender address bad / sender's system address (X.1.7, X.1.8),
        // message too big (X.2.3, X.3.4), too many recipients (X.5.3):
        // the sender's problem, not the recipient's.
        (1, 7) | (1, 8) | (2, 3) | (3, 4) | (5, 3) => Policy,
        // Bad mailbox, bad system/domain, bad syntax, ambiguous, moved,
        // null MX (RFC 7505 X.1.10 as used by Microsoft: recipient not
        // found), mailbox disabled, unable to route (no such domain).
        (1, 0..=6) | (1, 10) | (2, 1) | (4, 4) if permanent => Hard,
        (3, _) | (4, _) if !permanent => Transient,
        _ if permanent => Soft,
        _ => Soft,
    })
}

/// Words that tell the class when the code doesn't, tried in order: a
/// "mailbox full" or "blocked as spam" reply often arrives as a bare 550.
static TEXT_CLASSES: LazyLock<Vec<(RegexSet, BounceClass)>> = LazyLock::new(|| {
    let set = |patterns: &[&str]| {
        RegexSet::new(patterns.iter().map(|p| format!("(?i){p}"))).expect("regex set")
    };
    vec![
        (
            set(&[
                r"mailbox (is )?full",
                r"inbox (is )?full",
                r"over ?quota",
                r"quota (exceeded|full)",
                r"exceed(s|ed)? (the )?(storage|quota)",
                r"insufficient (system )?storage",
                r"storage (allocation|limit)",
                r"user.{0,20}has exceeded",
            ]),
            BounceClass::MailboxFull,
        ),
        (
            set(&[
                r"\bspam\b",
                r"\bblock(ed|list)",
                r"black ?list",
                r"deny ?list",
                r"\bpolicy\b",
                r"reputation",
                r"\bdmarc\b",
                r"\bspf\b",
                r"\bdkim\b",
                r"not authori[sz]ed",
                r"access denied",
                r"too many recipients",
                r"message (size|too (big|large))",
                r"size limit",
                r"\brbl\b",
                r"spamhaus",
                r"content rejected",
            ]),
            BounceClass::Policy,
        ),
        (
            set(&[
                r"user unknown",
                r"unknown user",
                r"unknown (local[- ]part|recipient|address)",
                r"no such (user|mailbox|recipient|address|account|domain)",
                r"(mailbox|user|recipient|address|account) (does not|doesn't) exist",
                r"does not exist",
                r"(address|recipient|mailbox|user).{0,30}(couldn't|could not|cannot|can't) be found",
                r"(mailbox|recipient|address|user) (not found|unavailable|invalid)",
                r"invalid (mailbox|recipient|address|user)",
                r"recipient (address )?rejected",
                r"address rejected",
                r"(account|mailbox) (is )?(disabled|inactive|deactivated|closed|suspended)",
                r"not our customer",
                r"unrouteable address",
                r"(host|domain) (name )?not found",
                r"addressee unknown",
                r"doesn't have an? \S+ account",
                r"recipientnotfound",
                r"bad destination (mailbox|system)",
                r"no mailbox here",
                r"unknown or illegal alias",
            ]),
            BounceClass::Hard,
        ),
        (
            set(&[
                r"try again later",
                r"temporar(il)?y",
                r"timed? ?out",
                r"connection (refused|reset|lost|closed)",
                r"greylist",
                r"deferred",
                r"too many connections",
                r"rate limit",
                r"service unavailable",
                r"resources temporarily",
            ]),
            BounceClass::Transient,
        ),
    ]
});

/// SMTP reply code at the start of a diagnostic ("550 ...", "smtp; 421-...").
fn smtp_class(text: &str) -> Option<u8> {
    static REPLY: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?:^|[\s;:'(])([245])\d\d[\s-]").expect("regex"));
    REPLY.captures(text).and_then(|c| c[1].parse().ok())
}

/// Classifies one failed recipient from its status code (DSN `Status:` or
/// one found in the text) and its diagnostic text.
pub fn classify(status: Option<StatusCode>, diagnostic: &str) -> BounceClass {
    let status = status.or_else(|| StatusCode::find(diagnostic));
    if let Some(class) = status.and_then(from_code) {
        return class;
    }
    let by_text = TEXT_CLASSES
        .iter()
        .find(|(set, _)| set.is_match(diagnostic))
        .map(|(_, class)| *class);
    let temporary = match status {
        Some(s) => s.class == 4,
        None => smtp_class(diagnostic) == Some(4),
    };
    match by_text {
        // "User unknown" with a 4xx code is a mailbox the server couldn't
        // check just now, not a bad address.
        Some(BounceClass::Hard) if temporary => BounceClass::Soft,
        Some(class) => class,
        None if temporary => BounceClass::Transient,
        None if status.is_some_and(|s| s.class == 5) || smtp_class(diagnostic) == Some(5) => {
            BounceClass::Soft
        }
        None => BounceClass::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &str) -> Option<StatusCode> {
        StatusCode::parse(s)
    }

    #[test]
    fn codes_decide_when_they_are_specific() {
        assert_eq!(classify(code("5.1.1"), ""), BounceClass::Hard);
        assert_eq!(classify(code("5.1.10"), ""), BounceClass::Hard);
        assert_eq!(classify(code("5.2.1"), ""), BounceClass::Hard);
        assert_eq!(classify(code("4.2.2"), ""), BounceClass::MailboxFull);
        assert_eq!(classify(code("5.2.2"), ""), BounceClass::MailboxFull);
        assert_eq!(classify(code("5.7.1"), "user unknown"), BounceClass::Policy);
        assert_eq!(classify(code("5.5.3"), ""), BounceClass::Policy);
        assert_eq!(classify(code("4.4.1"), ""), BounceClass::Transient);
        assert_eq!(classify(code("5.3.0"), ""), BounceClass::Soft);
    }

    #[test]
    fn text_decides_when_the_code_is_generic_or_missing() {
        assert_eq!(
            classify(code("5.0.0"), "550 User unknown"),
            BounceClass::Hard
        );
        assert_eq!(
            classify(None, "552 Mailbox is full"),
            BounceClass::MailboxFull
        );
        assert_eq!(
            classify(None, "554 rejected: listed on Spamhaus"),
            BounceClass::Policy
        );
        assert_eq!(
            classify(None, "450 user unknown, try later"),
            BounceClass::Soft
        );
        assert_eq!(
            classify(None, "421 too many connections"),
            BounceClass::Transient
        );
        assert_eq!(classify(None, "550 go away"), BounceClass::Soft);
        assert_eq!(classify(None, "something odd"), BounceClass::Unknown);
        assert_eq!(
            classify(
                None,
                "smtp; 550 5.1.1 <a@b.example>: Recipient address rejected"
            ),
            BounceClass::Hard
        );
    }

    #[test]
    fn status_codes_parse_strictly() {
        assert_eq!(code("5.1.1").unwrap().to_string(), "5.1.1");
        assert!(code("6.1.1").is_none());
        assert!(code("5.1").is_none());
        assert_eq!(
            StatusCode::find("550-5.7.26 unauthenticated")
                .unwrap()
                .to_string(),
            "5.7.26"
        );
        assert!(StatusCode::find("version 1.2.3.4").is_none());
    }
}
