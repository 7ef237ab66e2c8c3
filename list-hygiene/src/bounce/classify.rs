//! Bounce classes from RFC 3463 enhanced status codes and, where a code is
//! missing or generic, from the words of the diagnostic.

use std::sync::LazyLock;

use regex::Regex;
use regex::bytes::RegexSet;
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
    /// `X.0.0` (RFC 3463's "other or undefined status") for a failure that
    /// names no code: `X` from the SMTP reply code in `diagnostic` (`550 …`),
    /// else 4 for a delay and 5 for a failure.
    pub fn undefined(diagnostic: &str, delayed: bool) -> StatusCode {
        let class = smtp_class(diagnostic)
            .filter(|c| *c != 2)
            .unwrap_or(if delayed { 4 } else { 5 });
        StatusCode {
            class,
            subject: 0,
            detail: 0,
        }
    }

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

/// Why a delivery failed, in the vocabulary of Sisimai's reasons (the
/// reference for what real servers say): finer than [`BounceClass`], which
/// each reason maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BounceReason {
    /// No such mailbox.
    UserUnknown,
    /// No such domain, or it can't be reached by name.
    HostUnknown,
    /// The mailbox moved (RFC 3463 X.1.6).
    HasMoved,
    /// The domain accepts no mail (null MX, RFC 7505).
    NotAccept,
    /// The mailbox is disabled or suspended for now.
    Suspend,
    MailboxFull,
    /// The message is larger than the receiver takes.
    MesgTooBig,
    /// Another limit of the receiver's (recipients, lines, headers).
    ExceedLimit,
    /// The content broke something (encoding, structure).
    ContentError,
    /// The message breaks RFC 5322 (duplicate headers, bad syntax).
    NotCompliantRfc,
    /// The receiver didn't understand a command.
    SyntaxError,
    /// The sender's IP or domain is blocked or listed.
    Blocked,
    /// The sender address is refused.
    Rejected,
    PolicyViolation,
    SpamDetected,
    VirusDetected,
    /// SPF, DKIM or DMARC failed.
    AuthFailure,
    /// The receiver wants SMTP authentication or another security step.
    SecurityError,
    /// The sending IP has no (matching) reverse DNS.
    RequirePtr,
    BadReputation,
    /// The receiver won't relay for us.
    NoRelaying,
    /// Too fast: a rate limit.
    RateLimited,
    TooManyConnections,
    /// A content filter refused it.
    Filtered,
    FailedStartTls,
    /// Not delivered within the retry period.
    Expired,
    NetworkError,
    /// The receiving system failed.
    SystemError,
    SystemFull,
    /// The receiver's local delivery program failed.
    MailerError,
    /// Nothing tells.
    Undefined,
}

impl BounceReason {
    pub fn as_str(self) -> &'static str {
        match self {
            BounceReason::UserUnknown => "user_unknown",
            BounceReason::HostUnknown => "host_unknown",
            BounceReason::HasMoved => "has_moved",
            BounceReason::NotAccept => "not_accept",
            BounceReason::Suspend => "suspend",
            BounceReason::MailboxFull => "mailbox_full",
            BounceReason::MesgTooBig => "mesg_too_big",
            BounceReason::ExceedLimit => "exceed_limit",
            BounceReason::ContentError => "content_error",
            BounceReason::NotCompliantRfc => "not_compliant_rfc",
            BounceReason::SyntaxError => "syntax_error",
            BounceReason::Blocked => "blocked",
            BounceReason::Rejected => "rejected",
            BounceReason::PolicyViolation => "policy_violation",
            BounceReason::SpamDetected => "spam_detected",
            BounceReason::VirusDetected => "virus_detected",
            BounceReason::AuthFailure => "auth_failure",
            BounceReason::SecurityError => "security_error",
            BounceReason::RequirePtr => "require_ptr",
            BounceReason::BadReputation => "bad_reputation",
            BounceReason::NoRelaying => "no_relaying",
            BounceReason::RateLimited => "rate_limited",
            BounceReason::TooManyConnections => "too_many_connections",
            BounceReason::Filtered => "filtered",
            BounceReason::FailedStartTls => "failed_starttls",
            BounceReason::Expired => "expired",
            BounceReason::NetworkError => "network_error",
            BounceReason::SystemError => "system_error",
            BounceReason::SystemFull => "system_full",
            BounceReason::MailerError => "mailer_error",
            BounceReason::Undefined => "undefined",
        }
    }

    /// What the reason means for the address (docs/list-hygiene.md has the
    /// table).
    pub fn class(self) -> BounceClass {
        use BounceReason::*;
        match self {
            UserUnknown | HostUnknown | HasMoved | NotAccept => BounceClass::Hard,
            Suspend | MesgTooBig | ExceedLimit | ContentError | NotCompliantRfc | SyntaxError => {
                BounceClass::Soft
            }
            MailboxFull => BounceClass::MailboxFull,
            Blocked | Rejected | PolicyViolation | SpamDetected | VirusDetected | AuthFailure
            | SecurityError | RequirePtr | BadReputation | NoRelaying | RateLimited
            | TooManyConnections | Filtered | FailedStartTls => BounceClass::Policy,
            Expired | NetworkError | SystemError | SystemFull | MailerError => {
                BounceClass::Transient
            }
            Undefined => BounceClass::Unknown,
        }
    }
}

/// The reason an enhanced status code gives on its own; `None` when the
/// code is generic (or too vague) and only the text can tell.
fn from_code(code: StatusCode) -> Option<BounceReason> {
    use BounceReason::*;
    // X.5.0, "other or undefined protocol status", tells no more than
    // X.0.0 does.
    if code.class == 2 || code.is_generic() || (code.subject, code.detail) == (5, 0) {
        return None;
    }
    Some(match (code.subject, code.detail) {
        (1, 1) | (1, 3) | (1, 0) => UserUnknown,
        (1, 2) | (4, 4) => HostUnknown,
        (1, 6) => HasMoved,
        // RFC 7505's null MX; Microsoft also uses X.1.10 for "recipient not found".
        (1, 10) => UserUnknown,
        (1, 7) | (1, 8) => Rejected,
        (2, 1) => Suspend,
        (2, 2) => MailboxFull,
        (2, 3) | (3, 4) => MesgTooBig,
        (2, 4) => ExceedLimit,
        // Too many recipients: the sender's doing, not the address's.
        (5, 3) => PolicyViolation,
        (3, 1) => SystemFull,
        (3, 5) => SystemError,
        (4, 7) => Expired,
        (4, 0..=6) => NetworkError,
        (5, _) => SyntaxError,
        (6, _) => ContentError,
        (7, 1) => Rejected,
        (7, 13) | (7, 14) => Suspend,
        (7, 20..=24) | (7, 26) => AuthFailure,
        (7, 25) => RequirePtr,
        (7, 27) => NotAccept,
        (7, _) => PolicyViolation,
        _ => return None,
    })
}

/// An ordered table of reason groups ([`TEXT_REASONS`], [`WEAK_REASONS`]):
/// the first group in order with a pattern that matches decides.
///
/// The patterns are ASCII and run over the ASCII-lower-cased diagnostic
/// without Unicode rules (`(?-u)`): case-insensitive Unicode classes make
/// the automata several times larger and slower, and the words are English
/// (or French) in ASCII anyway. Each group is its own set, tried in turn:
/// all groups in one set would scan once, but its lazy DFA needs four
/// times regex's default cache not to thrash (and then falls to a sixth
/// of the speed), for 4 % less time over the Sisimai corpus.
struct Reasons(Vec<(RegexSet, BounceReason)>);

impl Reasons {
    fn new(groups: Vec<(&[&str], BounceReason)>) -> Reasons {
        Reasons(
            groups
                .into_iter()
                .map(|(patterns, reason)| {
                    let set = RegexSet::new(patterns.iter().map(|p| format!("(?-u){p}")));
                    (set.expect("regex set"), reason)
                })
                .collect(),
        )
    }

    /// The reason of the first group in order that matches `lower`.
    fn first(&self, lower: &str) -> Option<BounceReason> {
        self.0
            .iter()
            .find(|(set, _)| set.is_match(lower.as_bytes()))
            .map(|(_, reason)| *reason)
    }
}

/// Words that tell the reason, tried in order (the more specific first):
/// real servers often send a generic or even a misleading code ("550 5.2.0
/// User unknown", "553 5.3.0 No such user"), so the words, when they say
/// something, outrank the code. Drawn from what real servers say (Sisimai's
/// per-reason phrase tables are the reference), not from any one message.
static TEXT_REASONS: LazyLock<Reasons> = LazyLock::new(|| {
    use BounceReason::*;
    Reasons::new(vec![
        (&[r"\bvirus", r"malware", r"infected"], VirusDetected),
        // A local delivery program failing says so by name, whatever it
        // then prints ("procmail: … No such user").
        (
            &[
                r"procmail:",
                r"mail\.local:",
                r"couldn't create \S*/(spool|mail)",
            ],
            MailerError,
        ),
        // Directory lookups that don't list the user ("User … not listed
        // in Domino Directory"), before "listed in" reads as a blocklist.
        (&[r"not listed in"], UserUnknown),
        // Microsoft 365's directory-based edge blocking: "550 5.4.1
        // Recipient address rejected: Access denied" means the mailbox
        // isn't in the tenant's directory.
        (&[r"recipient address rejected: access denied"], UserUnknown),
        // A message the receiver calls malformed, whatever else it says
        // ("… not RFC 5322 compliant … To reduce the amount of spam …").
        (
            &[
                r"not rfc ?(5322|2822|822) compliant",
                r"multiple addresses in from",
                r"(multiple|duplicate) (from|to|subject|date|message-id) (header|field)",
                r"duplicate header",
                r"malformed (recipient )?address",
            ],
            NotCompliantRfc,
        ),
        // The sender's resolver failing is the network's trouble, even
        // when the answer it relays is "not found".
        (
            &[
                // Postfix: "Host not found, try again", "Malformed or
                // unexpected name server reply" (a bare "Host not found"
                // is the domain's absence: host_unknown below).
                r"name service error.{0,80}(try again|malformed|unexpected|timed out)",
                r"dns error",
                r"lookup of \S+ responded with",
            ],
            NetworkError,
        ),
        (
            &[
                r"\bspf\b",
                r"\bdkim\b",
                r"\bdmarc\b",
                r"sender policy framework",
                r"authentication (checks? )?fail",
            ],
            AuthFailure,
        ),
        (
            &[
                r"\bptr\b",
                r"reverse (dns|lookup|name)",
                r"\brdns\b",
                r"no (valid )?(reverse|dns) (record|entry)",
                r"(cannot|could not|can't|unable to) (find|resolve) your (host ?name|ip)",
                r"mismatches client ip",
            ],
            RequirePtr,
        ),
        (
            &[
                r"relay(ing)? (access )?(denied|not permitted|prohibited|not allowed)",
                r"(not|do not|don't) relay",
                r"open relay",
                r"not configured to relay",
                r"relay not",
                r"no relaying",
                r"insecure mail relay",
                r"address is not verified",
            ],
            NoRelaying,
        ),
        (
            &[
                r"too many (concurrent |simultaneous )?connections",
                r"connection limit",
            ],
            TooManyConnections,
        ),
        (
            &[
                r"rate limit",
                r"too many (messages|mails|emails)",
                r"sending rate",
                r"unusual rate",
                r"try (again )?(later|slower).{0,40}(rate|volume)",
                r"\bthrottl",
                r"unexpected volume",
                r"\btss0\d\b",
                r"receiving mail (at a rate|too quickly|too fast)",
            ],
            RateLimited,
        ),
        (
            &[
                r"\bspam\b",
                r"junk ?mail",
                r"content (was )?rejected",
                r"message content",
                r"looks like (spam|unsolicited)",
                r"unsolicited",
                r"bulk mail",
                r"mail rejet",
            ],
            SpamDetected,
        ),
        (
            &[r"reputation", r"sender score", r"low (sender )?score"],
            BadReputation,
        ),
        (
            &[
                r"black ?list",
                r"deny ?list",
                r"block ?list",
                r"\bblocked\b",
                r"\brbl\b",
                r"spamhaus",
                r"spamcop",
                r"barracuda",
                r"listed (in|on|at)",
                r"(client|sender) host.{0,30}(rejected|refused)",
                r"(messages|mail) from \S+ (weren't|were not|was not|wasn't) sent",
                r"invalid ip",
                r"(ip|address|host) .{0,30}(not allowed|not permitted|denied|refused)",
                r"service refus",
                r"access denied",
                r"no access from",
                r"connection (refused|rejected) (by|from)",
                r"my name was rejected",
                r"not accepting connections",
            ],
            Blocked,
        ),
        (
            &[
                r"smtp auth",
                r"authentication (is )?required",
                r"(must|please) (authenticate|turn on smtp auth)",
                r"unauthenticated (sender|user|relay)",
                r"not authenticated",
                r"starttls (is )?required",
                r"must (issue|use) (a )?starttls",
                r"encryption required",
            ],
            SecurityError,
        ),
        (
            &[
                r"starttls.{0,30}(fail|error)",
                r"tls (negotiation|handshake) fail",
            ],
            FailedStartTls,
        ),
        (
            &[
                r"message (is )?(too (big|large))",
                r"message (size|length) exceeds",
                r"exceeds? (the )?(maximum )?(message )?size",
                r"size limit",
                r"too large",
                r"message file too big",
            ],
            MesgTooBig,
        ),
        (
            &[
                r"mailbox (is )?full",
                r"inbox (is )?full",
                r"mail ?folder is full",
                r"over ?quota",
                r"quota (exceeded|full)",
                r"exceed(s|ed)? (the |his |her |its |their )?(storage|quota|mailbox)",
                r"insufficient (system )?storage",
                r"storage (allocation|limit)",
                r"user.{0,20}has exceeded",
                r"mailbox.{0,20}(exceeded|over)",
                r"mailbox exceeds",
                r"not enough (space|storage)",
                r"full mailbox",
                r"disk quota",
            ],
            MailboxFull,
        ),
        (
            &[
                r"(account|mailbox|user|recipient address|recipient)( \S+)? (is |has been )?(disabled|inactive|deactivated|suspended|locked|frozen|expired)",
                r"disabled (recipient|mailbox|account|user)",
                r"temporar(il)?y? locked",
                r"inactive (user|account|mailbox)",
                r"(recipient|destinataire).{0,30}(account|compte) (is |est )?(blocked|bloque|suspended|disabled)",
            ],
            Suspend,
        ),
        (
            &[
                r"has (moved|been moved)",
                r"address (has )?changed",
                r"no longer (valid|active|in use|available)",
            ],
            HasMoved,
        ),
        (
            &[
                r"host unknown",
                r"unknown host",
                r"(host|domain) (name )?not found",
                r"no such (host|domain)",
                r"unknown domain",
                r"domain (does not|doesn't) exist",
                r"domain (is )?not reachable",
                r"unrouteable (address|domain)",
                r"unroutable (address|domain)",
                r"name or service not known",
                r"nxdomain",
                r"no (mx|mail exchanger|route to domain)",
                r"domain .{0,30}(invalid|unknown)",
                r"host or domain name not found",
                r"host \S+ not found",
                r"no smtp service",
                r"null mx",
            ],
            HostUnknown,
        ),
        (
            &[
                r"sender (address |domain )?(rejected|refused|invalid|not allowed|verify failed)",
                r"(unroutable|unrouteable|invalid|unknown|bad) sender",
                r"sender verification",
                r"purported responsible address",
                r"domain of sender",
                r"(mail from|envelope from).{0,30}(rejected|refused|invalid)",
                r"return path",
                // Google Groups: "the group you tried to contact may not
                // exist, or you may not have permission to post".
                r"group you tried to contact",
                r"permission to post",
                r"groups\.google\.com",
            ],
            Rejected,
        ),
        (
            &[
                r"user unknown",
                r"unknown user",
                r"unknown (local[- ]part|recipient|address|mailbox|alias)",
                r"no such (user|mailbox|recipient|address|account|person)",
                r"(mailbox|user|recipient|address|account|addressee) (does not|doesn't|did not) exist",
                r"does not exist",
                r"(address|recipient|mailbox|user).{0,30}(couldn't|could not|cannot|can't) be found",
                r"(mailbox|recipient|address|user|account) (not found|unavailable|invalid|unknown)",
                r"invalid (mailbox|recipient|address|user|destination)",
                r"not a valid (user|recipient|mailbox)",
                r"not our customer",
                r"addressee unknown",
                r"doesn't have an? \S+ account",
                r"recipientnotfound",
                r"bad destination (mailbox|system)",
                r"no mailbox",
                r"unknown or illegal alias",
                r"destinataire invalide",
                r"mailbox unavailable",
                r"user not found",
                r"user not exist",
                r"invalid .{0,20}userid",
                r"check if (the )?address is correct",
                r"recipient name is not recognized",
            ],
            UserUnknown,
        ),
        (
            &[
                r"duplicate (header|message-id|from)",
                // Not a bare "rfc822": every DSN says "rfc822; address".
                r"rfc ?(2822|5322|822)[ -]?(compli|violat|conform|standard|requirement)",
                r"(violat|compli|conform)[a-z]* (with |to )?rfc ?(2822|5322|822)",
                r"not (rfc[- ]?)?compliant",
                r"header (is )?(missing|invalid|malformed)",
                r"multiple (from|to|subject)",
            ],
            NotCompliantRfc,
        ),
        (
            &[r"message filtered", r"\bfilter(ed)?\b", r"content filter"],
            Filtered,
        ),
        (
            &[r"too many recipients", r"recipient limit"],
            PolicyViolation,
        ),
        (
            &[r"exceeded? .{0,20}limit", r"too many (lines|headers)"],
            ExceedLimit,
        ),
        (
            &[
                r"retry time(out)? (exceeded|expired)",
                r"message expired",
                r"failing for a long time",
                r"(delivery|retry|queue) (time|period) (expired|exceeded)",
                r"could not be delivered (for|within)",
                r"gave up",
                r"giving up",
                r"too long",
                r"expired",
                r"aborted after",
                r"delivery failed \d+ attempts",
            ],
            Expired,
        ),
        (
            &[
                r"mailer error",
                r"pipe to \|",
                r"command (died|failed)",
                r"exit (code|status)",
                r"local delivery (failed|error)",
            ],
            MailerError,
        ),
        (
            &[
                r"timed? ?out",
                r"connection (refused|reset|lost|closed|dropped)",
                r"network (is )?unreachable",
                r"no route to host",
                r"lost connection",
                r"could not connect",
                r"dns (lookup )?(error|failure|timeout)",
                r"host not responding",
                r"hop count",
                r"too many hops",
                r"(routing|mail|forwarding) loop",
                r"unable to connect",
                r"accept our requests to connect",
                r"socket error",
                r"host (is )?(not reachable|unreachable)",
            ],
            NetworkError,
        ),
        (
            &[
                r"system error",
                r"internal (server |system )?error",
                r"local error",
                r"temporary (local )?(failure|problem)",
                r"resources temporarily",
                r"service (temporarily |currently )?unavailable",
                r"transaction failed",
                r"try again later",
                r"greylist",
                r"deferred",
                r"system (not|is not) (available|accepting)",
            ],
            SystemError,
        ),
        (
            &[
                r"syntax error",
                r"command unrecognized",
                r"unrecognized command",
            ],
            SyntaxError,
        ),
    ])
});

/// Words that say only that something was refused ("Recipient address
/// rejected:", "refused", "not allowed", "policy"): Postfix and others put
/// them in front of the real reason, so they count only when neither the
/// specific words of [`TEXT_REASONS`] nor a specific status code tell more
/// ("550 5.4.6 … refused to accept your message" is the 5.4.6 routing loop).
static WEAK_REASONS: LazyLock<Reasons> = LazyLock::new(|| {
    use BounceReason::*;
    Reasons::new(vec![
        (
            &[
                r"\bpolic(y|ies)\b",
                r"violat",
                r"not authori[sz]ed",
                r"prohibited",
                r"not allowed",
                r"refused",
            ],
            PolicyViolation,
        ),
        (
            &[r"recipient (address )?rejected", r"address rejected"],
            UserUnknown,
        ),
    ])
});

/// The SMTP stage a reply came at, when the diagnostic says (Exim's "SMTP
/// error from remote mail server after MAIL FROM:…", Postfix's "(in reply
/// to MAIL FROM command)"): a refusal before any recipient was named is
/// about the sender or the connection, never the recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Connection, greeting, HELO/EHLO.
    Connect,
    /// MAIL FROM.
    Mail,
}

fn stage(lower: &str) -> Option<Stage> {
    static STAGES: LazyLock<RegexSet> = LazyLock::new(|| {
        RegexSet::new([
            r"(?-u)after (initial connection|connect|helo|ehlo|greeting)",
            r"(?-u)in reply to (helo|ehlo) command",
            r"(?-u)after mail from",
            r"(?-u)in reply to mail from command",
        ])
        .expect("regex set")
    });
    let m = STAGES.matches(lower.as_bytes());
    if m.matched(2) || m.matched(3) {
        Some(Stage::Mail)
    } else if m.matched(0) || m.matched(1) {
        Some(Stage::Connect)
    } else {
        None
    }
}

/// SMTP reply code at the start of a diagnostic ("550 ...", "smtp; 421-...").
fn smtp_class(text: &str) -> Option<u8> {
    static REPLY: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?:^|[\s;:'(])([245])\d\d[\s-]").expect("regex"));
    REPLY.captures(text).and_then(|c| c[1].parse().ok())
}

/// `lower` with the reply code that opens each continuation line of a
/// multi-line SMTP reply taken out ("550-5.7.1 Messages with multiple
/// 550-5.7.1 addresses in From: …" → "… multiple addresses in From: …"),
/// so that words wrapped across lines are read as one sentence.
fn continuations_joined(lower: &str) -> std::borrow::Cow<'_, str> {
    static CONTINUATION: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?:^|\s)[245]\d\d[ -](?:[245]\.\d{1,3}\.\d{1,3}\s)?").expect("regex")
    });
    // The first reply code stays: it is the one that opens the reply.
    let Some(first) = CONTINUATION.find(lower) else {
        return std::borrow::Cow::Borrowed(lower);
    };
    let rest = &lower[first.end()..];
    if !CONTINUATION.is_match(rest) {
        return std::borrow::Cow::Borrowed(lower);
    }
    let mut out = lower[..first.end()].to_string();
    out.push_str(&CONTINUATION.replace_all(rest, " "));
    std::borrow::Cow::Owned(out)
}

/// What one failed recipient's status code and diagnostic say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Diagnosis {
    /// The status given, else the first enhanced code in the text; the
    /// text's code also where the given one is generic (X.0.0) or
    /// sendmail's "gave up" (X.4.7) and the text's is of the same class.
    pub status: Option<StatusCode>,
    /// The words when they tell, else the code; `None` when nothing tells.
    pub reason: Option<BounceReason>,
    /// The reason's class; a failure nothing explains is `soft` when
    /// permanent (5xx), `transient` when not (4xx).
    pub class: BounceClass,
}

/// Reads one failed recipient's status code (DSN `Status:`, or `None` to
/// look for one in the text) and diagnostic text, each scanned once.
pub fn diagnose(status: Option<StatusCode>, diagnostic: &str) -> Diagnosis {
    // The text's own code is wanted only where the given one says little.
    let needs_text_code = status.is_none_or(|s| s.is_generic() || (s.subject, s.detail) == (4, 7));
    let said = if needs_text_code {
        StatusCode::find(diagnostic)
    } else {
        None
    };
    let status = match (status, said) {
        // A report's generic X.0.0, or sendmail's X.4.7 "gave up" over the
        // last reply it had, says less than the receiver's own code in the
        // diagnostic ("Status: 5.0.0", "Diagnostic-Code: smtp; 550 5.7.1
        // relaying denied"); only a code of the same class can stand in.
        (Some(given), Some(said))
            if given.class == said.class
                && (given.is_generic() || (given.subject, given.detail) == (4, 7))
                && !said.is_generic() =>
        {
            Some(said)
        }
        (given, said) => given.or(said),
    };
    let lower = diagnostic.to_ascii_lowercase();
    let joined = continuations_joined(&lower);
    let reason = TEXT_REASONS
        .first(&joined)
        .or_else(|| status.and_then(from_code))
        .or_else(|| WEAK_REASONS.first(&joined));
    // An "unknown user" at MAIL FROM is our sender refused; a refusal at
    // the greeting is a block of the sending host.
    let reason = match (stage(&lower), reason) {
        (Some(Stage::Mail), None | Some(BounceReason::UserUnknown | BounceReason::HostUnknown)) => {
            Some(BounceReason::Rejected)
        }
        (Some(Stage::Connect), None) => Some(BounceReason::Blocked),
        (_, reason) => reason,
    };
    let reply = smtp_class(diagnostic);
    let temporary = match status {
        Some(s) => s.class == 4,
        None => reply == Some(4),
    };
    let class = match reason.map(BounceReason::class) {
        // "User unknown" with a 4xx code is a mailbox the server couldn't
        // check just now, not a bad address.
        Some(BounceClass::Hard) if temporary => BounceClass::Soft,
        Some(class) => class,
        None if temporary => BounceClass::Transient,
        None if status.is_some_and(|s| s.class == 5) || reply == Some(5) => BounceClass::Soft,
        None => BounceClass::Unknown,
    };
    Diagnosis {
        status,
        reason,
        class,
    }
}

/// The reason alone (see [`diagnose`]).
pub fn reason(status: Option<StatusCode>, diagnostic: &str) -> Option<BounceReason> {
    diagnose(status, diagnostic).reason
}

/// The class alone (see [`diagnose`]).
pub fn classify(status: Option<StatusCode>, diagnostic: &str) -> BounceClass {
    diagnose(status, diagnostic).class
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &str) -> Option<StatusCode> {
        StatusCode::parse(s)
    }

    #[test]
    fn a_refusal_before_any_recipient_is_about_the_sender_or_host() {
        let at_mail = "SMTP error from remote mail server after MAIL FROM:<news@shop.example> \
                       SIZE=1024: 550 5.1.1 unknown user";
        assert_eq!(reason(None, at_mail), Some(BounceReason::Rejected));
        assert_eq!(classify(None, at_mail), BounceClass::Policy);
        let at_greeting = "SMTP error from remote mail server after initial connection: \
                           host mx.example [192.0.2.1]: 554 mx.example";
        assert_eq!(reason(None, at_greeting), Some(BounceReason::Blocked));
        // At RCPT the same words are the recipient's.
        let at_rcpt = "SMTP error from remote mail server after RCPT TO:<a@b.example>: \
                       550 5.1.1 unknown user";
        assert_eq!(reason(None, at_rcpt), Some(BounceReason::UserUnknown));
    }

    #[test]
    fn real_phrasings_read_as_their_reasons() {
        for (text, want) in [
            (
                "550-5.7.1 This message is not RFC 5322 compliant. There are multiple Subject \
                 headers. To reduce the amount of spam sent to Gmail, this message has been blocked.",
                BounceReason::NotCompliantRfc,
            ),
            (
                "Name service error for domain example.com: Host not found, try again",
                BounceReason::NetworkError,
            ),
            (
                "Host or domain name not found. Name service error for name=x.example type=A: \
                 Host not found",
                BounceReason::HostUnknown,
            ),
            (
                "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to \
                 unexpected volume or user complaints",
                BounceReason::RateLimited,
            ),
            (
                "550 domain [example.com] mismatches client ip 192.0.2.225.",
                BounceReason::RequirePtr,
            ),
            (
                "the group you tried to contact (shop) may not exist, or you may not have \
                 permission to post messages to the group",
                BounceReason::Rejected,
            ),
        ] {
            assert_eq!(reason(None, text), Some(want), "{text}");
        }
    }

    #[test]
    fn a_specific_code_outranks_words_that_only_say_refused() {
        assert_eq!(
            reason(
                code("5.4.6"),
                "554 5.4.6 server refused to accept your message"
            ),
            Some(BounceReason::NetworkError)
        );
        assert_eq!(
            reason(None, "554 server refused to accept your message"),
            Some(BounceReason::PolicyViolation)
        );
        assert_eq!(
            reason(code("5.1.1"), "550 5.1.1 Recipient address rejected"),
            Some(BounceReason::UserUnknown)
        );
        // X.5.0 is "undefined protocol status": no more specific than X.0.0.
        assert_eq!(
            reason(code("5.5.0"), "554 Service unavailable"),
            Some(BounceReason::SystemError)
        );
    }

    #[test]
    fn a_specific_code_decides_when_the_words_say_nothing() {
        assert_eq!(classify(code("5.1.1"), ""), BounceClass::Hard);
        assert_eq!(classify(code("5.1.10"), ""), BounceClass::Hard);
        assert_eq!(classify(code("5.1.2"), ""), BounceClass::Hard);
        // A disabled mailbox may come back: soft, as Sisimai's "suspend".
        assert_eq!(classify(code("5.2.1"), ""), BounceClass::Soft);
        assert_eq!(classify(code("4.2.2"), ""), BounceClass::MailboxFull);
        assert_eq!(classify(code("5.2.2"), ""), BounceClass::MailboxFull);
        assert_eq!(classify(code("5.7.1"), ""), BounceClass::Policy);
        assert_eq!(classify(code("5.7.26"), ""), BounceClass::Policy);
        assert_eq!(reason(code("5.7.26"), ""), Some(BounceReason::AuthFailure));
        assert_eq!(classify(code("5.5.3"), ""), BounceClass::Policy);
        assert_eq!(classify(code("4.4.1"), ""), BounceClass::Transient);
        assert_eq!(reason(code("4.4.7"), ""), Some(BounceReason::Expired));
        assert_eq!(classify(code("5.3.0"), ""), BounceClass::Soft);
        assert_eq!(reason(code("5.0.0"), ""), None);
    }

    #[test]
    fn the_words_outrank_a_generic_or_misleading_code() {
        for (status, text, want) in [
            ("5.0.0", "550 User unknown", BounceReason::UserUnknown),
            (
                "5.2.0",
                "550 Unknown user someone@example.org",
                BounceReason::UserUnknown,
            ),
            (
                "5.3.0",
                "553 5.3.0 <a@b.example>... No such user here",
                BounceReason::UserUnknown,
            ),
            (
                "5.7.1",
                "550 5.7.1 User a@b.example temporary locked",
                BounceReason::Suspend,
            ),
            (
                // Microsoft 365's edge blocking of a mailbox its directory
                // doesn't have, whatever the code.
                "5.7.1",
                "550 5.7.1 Recipient address rejected: Access denied",
                BounceReason::UserUnknown,
            ),
            (
                "5.7.1",
                "550 5.7.1 Client host rejected: Access denied",
                BounceReason::Blocked,
            ),
            (
                // "Recipient address rejected:" only introduces the reason.
                "5.7.0",
                "550 5.7.0 <a@b.example>: Recipient address rejected: No relaying",
                BounceReason::NoRelaying,
            ),
            (
                "5.7.1",
                "550-5.7.1 Messages with multiple 550-5.7.1 addresses in From: header are not accepted",
                BounceReason::NotCompliantRfc,
            ),
            (
                "5.5.0",
                "554 the domain is not reachable",
                BounceReason::HostUnknown,
            ),
            (
                "5.0.0",
                "571 No PTR Record found. Reverse DNS required",
                BounceReason::RequirePtr,
            ),
            (
                "5.0.0",
                "550 Unauthenticated senders not allowed",
                BounceReason::SecurityError,
            ),
            (
                "5.6.1",
                "500 5.6.1 Message content rejected",
                BounceReason::SpamDetected,
            ),
        ] {
            assert_eq!(reason(code(status), text), Some(want), "{text}");
        }
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
        // "User unknown" on a 4xx: the server couldn't check just now.
        assert_eq!(
            classify(None, "450 user unknown, try later"),
            BounceClass::Soft
        );
        assert_eq!(
            classify(None, "421 too many connections"),
            BounceClass::Policy
        );
        assert_eq!(
            classify(None, "451 please try again later"),
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
    fn every_reason_has_a_name_and_a_class() {
        use BounceReason::*;
        for r in [
            UserUnknown,
            Suspend,
            MailboxFull,
            Blocked,
            Expired,
            Undefined,
        ] {
            assert!(!r.as_str().is_empty());
            let _ = r.class();
        }
        assert_eq!(UserUnknown.class(), BounceClass::Hard);
        assert_eq!(Undefined.class(), BounceClass::Unknown);
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
