//! Email addresses and domains as the relay and list-hygiene accept them:
//! parsed by lettre's RFC 5322 grammar, with no control characters (no
//! header injection) and RFC 5321's length limit.

use std::fmt;
use std::str::FromStr;

use lettre::message::Mailbox;

/// Why an address was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddressError {
    #[error("address is empty")]
    Empty,
    #[error("address contains a control character (CR, LF, NUL, ...)")]
    ControlCharacter,
    #[error("address is longer than 254 characters")]
    TooLong,
    #[error("not a valid email address: {0}")]
    Invalid(String),
}

fn reject_controls(s: &str) -> Result<(), AddressError> {
    if s.chars().any(char::is_control) {
        return Err(AddressError::ControlCharacter);
    }
    Ok(())
}

/// A lower-cased DNS domain, as found on the right of an address's `@`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(String);

impl Domain {
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        reject_controls(s)?;
        let s = s.trim_end_matches('.').to_ascii_lowercase();
        // Reuse lettre's address grammar for the domain part rather than a second one.
        lettre::Address::new("x", &s).map_err(|e| AddressError::Invalid(e.to_string()))?;
        if s.is_empty() {
            return Err(AddressError::Empty);
        }
        Ok(Domain(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A bare mailbox address (`user@example.com`), parsed by lettre's RFC 5322
/// grammar, with no control characters and at most 254 characters (RFC 5321's
/// path limit less the brackets).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(lettre::Address);

impl EmailAddress {
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(AddressError::Empty);
        }
        reject_controls(s)?;
        if s.len() > 254 {
            return Err(AddressError::TooLong);
        }
        lettre::Address::from_str(s)
            .map(EmailAddress)
            .map_err(|e| AddressError::Invalid(format!("{s:?}: {e}")))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_ref()
    }

    /// The domain, lower-cased: recipients are grouped by it for delivery.
    pub fn domain(&self) -> Domain {
        Domain(self.0.domain().trim_end_matches('.').to_ascii_lowercase())
    }

    pub fn as_lettre(&self) -> &lettre::Address {
        &self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An address with an optional display name: `"Shop <orders@shop.example>"`
/// or just `orders@shop.example`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender(Mailbox);

impl Sender {
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(AddressError::Empty);
        }
        reject_controls(s)?;
        let mailbox =
            Mailbox::from_str(s).map_err(|e| AddressError::Invalid(format!("{s:?}: {e}")))?;
        if AsRef::<str>::as_ref(&mailbox.email).len() > 254 {
            return Err(AddressError::TooLong);
        }
        Ok(Sender(mailbox))
    }

    pub fn address(&self) -> EmailAddress {
        EmailAddress(self.0.email.clone())
    }

    pub fn mailbox(&self) -> &Mailbox {
        &self.0
    }
}

impl fmt::Display for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_plain_address_is_accepted_and_its_domain_lower_cased() {
        let a = EmailAddress::parse("Jane.Doe@Shop.Example").unwrap();
        assert_eq!(a.domain().as_str(), "shop.example");
    }

    #[test]
    fn bad_addresses_are_refused_with_a_reason() {
        for (input, want) in [
            ("", AddressError::Empty),
            ("   ", AddressError::Empty),
            (
                "a@b.example\r\nBcc: x@y.example",
                AddressError::ControlCharacter,
            ),
            ("a\0@b.example", AddressError::ControlCharacter),
        ] {
            assert_eq!(EmailAddress::parse(input).unwrap_err(), want, "{input:?}");
        }
        for input in [
            "no-at-sign",
            "@no-local.example",
            "two@@signs.example",
            "a@",
            "a b@c.example",
        ] {
            assert!(
                matches!(EmailAddress::parse(input), Err(AddressError::Invalid(_))),
                "{input:?} should be invalid"
            );
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(
            EmailAddress::parse(&long).unwrap_err(),
            AddressError::TooLong
        );
    }

    #[test]
    fn a_sender_keeps_its_display_name() {
        let s = Sender::parse("Shop Team <orders@shop.example>").unwrap();
        assert_eq!(s.address().as_str(), "orders@shop.example");
        assert_eq!(s.mailbox().name.as_deref(), Some("Shop Team"));
        assert!(Sender::parse("Shop\r\nBcc: evil@x.example <orders@shop.example>").is_err());
    }

    proptest! {
        #[test]
        fn well_formed_addresses_parse(local in "[a-z0-9][a-z0-9._+-]{0,30}[a-z0-9]", domain in "[a-z]([a-z0-9-]{0,18}[a-z0-9])?\\.[a-z]{2,6}") {
            let s = format!("{local}@{domain}");
            // lettre rejects consecutive dots in the local part, as RFC 5322 does.
            prop_assume!(!local.contains(".."));
            let a = EmailAddress::parse(&s).unwrap();
            prop_assert_eq!(a.domain().to_string(), domain);
        }

        #[test]
        fn arbitrary_input_never_panics(s in "\\PC{0,80}") {
            let _ = EmailAddress::parse(&s);
            let _ = Sender::parse(&s);
        }
    }
}
