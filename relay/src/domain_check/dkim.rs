//! DKIM (RFC 6376): the selector's key is published, parses, is strong
//! enough, and verifies what this relay signs.

use hickory_resolver::proto::rr::{RData, RecordType};
use mail_auth::common::parse::TxtRecordParser as _;
use mail_auth::common::verify::DomainKey;
use mail_auth::{AuthenticatedMessage, DkimResult, Error as AuthError};

use super::{Check, Dns, DnsError, Status};
use crate::delivery::dkim::Signer;

/// The `t=y` bit of [`DomainKey::has_flag`]: mail-auth's `R_FLAG_TESTING`,
/// which it doesn't export (a unit test below pins the value).
const TESTING: u64 = 0x10;

/// `dkim.key` for one signing key.
pub(super) async fn check(dns: &Dns, signer: &Signer) -> Result<Check, DnsError> {
    let name = signer.dns_name();
    let publish = format!("{name}. TXT \"{}\"", signer.public_record());
    let mut evidence = Vec::new();
    for r in dns.records(&name, RecordType::CNAME).await? {
        if let RData::CNAME(target) = r {
            evidence.push(format!(
                "{name} is a CNAME to {}",
                target.0.to_ascii().trim_end_matches('.')
            ));
        }
    }
    let records: Vec<String> = dns
        .txt(&name)
        .await?
        .into_iter()
        .filter(|t| t.contains("p="))
        .collect();
    evidence.extend(records.iter().cloned());
    let check = |status, summary: String| {
        Check::new("dkim.key", name.clone(), status, summary).evidence(evidence.clone())
    };
    let record = match records.as_slice() {
        [] => {
            return Ok(check(
                Status::Fail,
                format!(
                    "no DKIM key at {name}: receivers can't verify the signature on this relay's mail"
                ),
            )
            .fix(publish));
        }
        [one] => one,
        many => {
            return Ok(check(
                Status::Fail,
                format!(
                    "{} DKIM records at {name}: receivers may use either",
                    many.len()
                ),
            )
            .fix(format!("keep one record: {publish}")));
        }
    };
    let key = match DomainKey::parse(record.as_bytes()) {
        Ok(key) => key,
        Err(AuthError::Dkim(mail_auth::dkim::DkimError::RevokedPublicKey)) => {
            return Ok(check(
                Status::Fail,
                "the published key is revoked (empty p=)".into(),
            )
            .fix(publish));
        }
        Err(e) => {
            return Ok(check(
                Status::Fail,
                format!("the published DKIM record doesn't parse ({e})"),
            )
            .fix(publish));
        }
    };

    // The real test: sign as the relay does, verify as a receiver does.
    let verified = match super::probe(signer.domain(), signer) {
        Ok(signed) => match AuthenticatedMessage::parse(&signed) {
            Some(message) => {
                let outputs = dns.authenticator().verify_dkim(&message).await;
                outputs.first().map(|o| o.result().clone())
            }
            None => None,
        },
        Err(_) => None,
    };
    match verified {
        Some(DkimResult::Pass) => {}
        Some(DkimResult::TempError(e)) => {
            return Err(DnsError {
                name,
                rtype: RecordType::TXT,
                message: e.to_string(),
            });
        }
        other => {
            let why = match other {
                Some(DkimResult::Fail(e) | DkimResult::PermError(e) | DkimResult::Neutral(e)) => {
                    format!(" ({e})")
                }
                _ => String::new(),
            };
            return Ok(check(
                Status::Fail,
                format!(
                    "the published key doesn't match the private key mailroom signs with: signatures fail{why}"
                ),
            )
            .fix(publish));
        }
    }

    let bits = key.p.public_key_bits();
    // Ed25519 keys have no modulus: mail-auth reports usize::MAX bits.
    let rsa = bits != usize::MAX;
    let mut warnings = Vec::new();
    if rsa && bits < 1024 {
        return Ok(check(
            Status::Fail,
            format!("the key is RSA-{bits}: receivers ignore RSA keys under 1024 bits"),
        )
        .fix("mailroom dkim keygen --algorithm rsa (2048 bits) with a new selector, publish it, then switch the [[dkim]] entry"));
    }
    if rsa && bits < 2048 {
        warnings.push(format!(
            "RSA-{bits}: 2048 bits is the current recommendation (RFC 8301)"
        ));
    }
    if !rsa {
        warnings.push("Ed25519 only: many large mailbox providers don't verify Ed25519 signatures (RFC 8463) yet, so to them the mail is unsigned; use an RSA-2048 key (mailroom dkim keygen --algorithm rsa)".into());
    }
    if key.has_flag(TESTING) {
        warnings.push("t=y: the domain says it is testing DKIM, and receivers may treat failures as unsigned; remove t=y once signing works".into());
    }
    let summary = if rsa {
        format!("key published and it verifies mailroom's signature (RSA-{bits})")
    } else {
        "key published and it verifies mailroom's signature (Ed25519)".into()
    };
    if warnings.is_empty() {
        Ok(check(Status::Pass, summary))
    } else {
        Ok(check(
            Status::Warn,
            format!("{summary}; {}", warnings.join("; ")),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::dkim::{Algorithm, generate};

    #[test]
    fn the_testing_bit_is_mail_auths_t_y() {
        let key = generate("shop.example", "s1", Algorithm::Ed25519).unwrap();
        let plain = DomainKey::parse(key.dns_value.as_bytes()).unwrap();
        assert!(!plain.has_flag(TESTING));
        let testing = format!("{}; t=y", key.dns_value);
        assert!(
            DomainKey::parse(testing.as_bytes())
                .unwrap()
                .has_flag(TESTING)
        );
    }

    #[test]
    fn a_loaded_key_publishes_the_record_keygen_printed() {
        for algorithm in [Algorithm::Ed25519, Algorithm::Rsa] {
            let key = generate("shop.example", "s1", algorithm).unwrap();
            let signer = Signer::from_pem("shop.example", "s1", &key.private_pem).unwrap();
            assert_eq!(signer.public_record(), key.dns_value);
            assert_eq!(signer.dns_name(), key.dns_name);
        }
    }
}
