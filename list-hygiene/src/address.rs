//! Checks on an address before it goes on a list: syntax by a real parser
//! (IDN domains included), role accounts, disposable-mail domains and likely
//! domain typos with a suggestion.

use std::collections::HashSet;
use std::str::FromStr as _;
use std::sync::LazyLock;

use serde::Serialize;

/// Something wrong with an address, worst first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// Not a deliverable address; says why.
    Invalid { reason: String },
    /// A throwaway-mail domain.
    Disposable { domain: String },
    /// Probably a mistyped domain (`gmial.com`).
    Typo { suggestion: String },
    /// A role account (`info@`, `postmaster@`): many people or none read
    /// it, nobody opted in personally, and it draws complaints.
    Role { local_part: String },
}

impl Problem {
    /// Short name for reports: invalid, disposable, typo, role.
    pub fn as_str(&self) -> &'static str {
        match self {
            Problem::Invalid { .. } => "invalid",
            Problem::Disposable { .. } => "disposable",
            Problem::Typo { .. } => "typo",
            Problem::Role { .. } => "role",
        }
    }
}

/// An address that parses: `local@domain`, the domain lower-cased and in
/// its ASCII (punycode) form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Address {
    local: String,
    domain: String,
}

impl Address {
    /// Parses with lettre's RFC 5321/5322 address parser, then asks what a
    /// mailing list needs beyond syntax: a domain with a dot (no bare hosts
    /// or IP literals) and the length limits of RFC 5321.
    ///
    /// # Errors
    /// The reason, in words, when the address can't be mailed.
    pub fn parse(input: &str) -> Result<Address, String> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err("empty".into());
        }
        if trimmed.chars().any(char::is_control) {
            return Err("contains control characters".into());
        }
        let (local, domain) = trimmed.rsplit_once('@').ok_or_else(|| "no @".to_string())?;
        if local.is_empty() {
            return Err("nothing before the @".into());
        }
        if domain.starts_with('[') {
            return Err("IP-address literal instead of a domain".into());
        }
        // IDN domains become punycode; url's host parser does UTS #46.
        let ascii = match url::Host::parse(domain) {
            Ok(url::Host::Domain(d)) => d,
            Ok(_) => return Err("IP address instead of a domain".into()),
            Err(e) => return Err(format!("bad domain {domain:?}: {e}")),
        };
        if !ascii.contains('.') || ascii.ends_with('.') {
            return Err(format!("domain {ascii:?} has no top-level domain"));
        }
        if local.len() > 64 {
            return Err("local part longer than 64 characters".into());
        }
        let address = format!("{local}@{ascii}");
        if address.len() > 254 {
            return Err("longer than 254 characters".into());
        }
        lettre::Address::from_str(&address).map_err(|e| e.to_string())?;
        Ok(Address {
            local: local.to_string(),
            domain: ascii,
        })
    }

    pub fn local_part(&self) -> &str {
        &self.local
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The form duplicates are compared in: providers treat local parts
    /// case-insensitively in practice.
    pub fn key(&self) -> String {
        format!("{}@{}", self.local.to_lowercase(), self.domain)
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// The outcome of [`check`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checked {
    /// The parsed address, when it parses.
    pub address: Option<Address>,
    pub problems: Vec<Problem>,
}

impl Checked {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

fn data_set(text: &'static str) -> HashSet<&'static str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

static DISPOSABLE: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| data_set(include_str!("../data/disposable-domains.txt")));
static DISPOSABLE_WILDCARD: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| data_set(include_str!("../data/disposable-wildcard.txt")));

/// Local parts that name a function, not a person.
const ROLES: &[&str] = &[
    "abuse",
    "admin",
    "administrator",
    "accounts",
    "billing",
    "compliance",
    "contact",
    "do-not-reply",
    "donotreply",
    "enquiries",
    "help",
    "helpdesk",
    "hostmaster",
    "hr",
    "info",
    "inquiries",
    "legal",
    "list",
    "list-request",
    "mailer-daemon",
    "marketing",
    "noc",
    "no-reply",
    "noreply",
    "office",
    "postmaster",
    "privacy",
    "root",
    "sales",
    "security",
    "support",
    "sysadmin",
    "team",
    "webmaster",
];

/// Mailbox providers people mistype most; a domain one or two edits away
/// from one of these (and not itself one) is a likely typo.
const POPULAR_DOMAINS: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "yahoo.com",
    "yahoo.co.uk",
    "yahoo.fr",
    "yahoo.de",
    "hotmail.com",
    "hotmail.co.uk",
    "hotmail.fr",
    "hotmail.de",
    "outlook.com",
    "outlook.de",
    "live.com",
    "msn.com",
    "icloud.com",
    "me.com",
    "mac.com",
    "aol.com",
    "gmx.de",
    "gmx.net",
    "gmx.at",
    "web.de",
    "t-online.de",
    "freenet.de",
    "mail.com",
    "protonmail.com",
    "proton.me",
    "yandex.ru",
    "mail.ru",
    "comcast.net",
    "verizon.net",
    "att.net",
    "sbcglobal.net",
    "orange.fr",
    "free.fr",
    "wanadoo.fr",
    "laposte.net",
    "libero.it",
    "btinternet.com",
    "bluewin.ch",
    "telenet.be",
    "ziggo.nl",
    "shaw.ca",
    "rogers.com",
    "bigpond.com",
];

fn is_disposable(domain: &str) -> bool {
    if DISPOSABLE.contains(domain) {
        return true;
    }
    // x.y.wildcard.example: any parent on the wildcard list counts.
    let mut rest = domain;
    while let Some((_, parent)) = rest.split_once('.') {
        if DISPOSABLE_WILDCARD.contains(parent) || DISPOSABLE_WILDCARD.contains(rest) {
            return true;
        }
        rest = parent;
    }
    false
}

fn typo_of(domain: &str) -> Option<&'static str> {
    if POPULAR_DOMAINS.contains(&domain) {
        return None;
    }
    POPULAR_DOMAINS
        .iter()
        .map(|p| (p, strsim::damerau_levenshtein(domain, p)))
        // Short domains tolerate one edit, longer ones two.
        .filter(|(p, d)| *d > 0 && *d <= if p.len() <= 8 { 1 } else { 2 })
        .min_by_key(|(_, d)| *d)
        .map(|(p, _)| *p)
}

/// Checks one address as typed.
pub fn check(input: &str) -> Checked {
    let address = match Address::parse(input) {
        Ok(a) => a,
        Err(reason) => {
            return Checked {
                address: None,
                problems: vec![Problem::Invalid { reason }],
            };
        }
    };
    let mut problems = Vec::new();
    if is_disposable(address.domain()) {
        problems.push(Problem::Disposable {
            domain: address.domain().to_string(),
        });
    }
    if let Some(fix) = typo_of(address.domain()) {
        problems.push(Problem::Typo {
            suggestion: format!("{}@{fix}", address.local_part()),
        });
    }
    // "info+news@" is still info@.
    let local = address.local_part().to_lowercase();
    let base = local.split('+').next().unwrap_or_default();
    if ROLES.contains(&base) {
        problems.push(Problem::Role {
            local_part: base.to_string(),
        });
    }
    Checked {
        address: Some(address),
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(input: &str) -> Vec<&'static str> {
        check(input).problems.iter().map(Problem::as_str).collect()
    }

    #[test]
    fn good_addresses_pass_and_idn_domains_become_punycode() {
        assert!(check("dana.whitfield@customer.example").is_clean());
        assert!(check("  Dana@Customer.Example ").is_clean());
        let c = check("jürgen@bücher.example");
        assert!(c.is_clean(), "{c:?}");
        assert_eq!(c.address.unwrap().domain(), "xn--bcher-kva.example");
    }

    #[test]
    fn bad_syntax_is_invalid_with_a_reason() {
        for bad in [
            "",
            "plainaddress",
            "@no-local.example",
            "a@",
            "a@localhost",
            "a@[192.0.2.1]",
            "a b@example.com",
            "a@exa mple.com",
            "a@b.example\r\nBcc: x@y.example",
        ] {
            assert_eq!(problems(bad), ["invalid"], "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(65));
        assert_eq!(problems(&long), ["invalid"]);
    }

    #[test]
    fn roles_disposable_domains_and_typos_are_named() {
        assert_eq!(problems("info@shop.example"), ["role"]);
        assert_eq!(problems("Postmaster+x@shop.example"), ["role"]);
        assert_eq!(problems("someone@mailinator.com"), ["disposable"]);
        let c = check("dana@gmial.com");
        assert_eq!(
            c.problems,
            [Problem::Typo {
                suggestion: "dana@gmail.com".into()
            }]
        );
        assert_eq!(problems("dana@hotmial.co.uk"), ["typo"]);
        assert_eq!(problems("dana@yahoo.con"), ["typo"]);
        assert!(check("dana@gmail.com").is_clean());
        assert!(check("dana@gmx.de").is_clean());
    }
}
