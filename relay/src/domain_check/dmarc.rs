//! DMARC (RFC 9989, which mail-auth implements): a policy record for the
//! domain or its organisational domain, its report destinations, and
//! whether this relay's mail aligns with it.

use mail_auth::common::parse::TxtRecordParser as _;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::dmarc::{Alignment, Dmarc, Policy};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{AuthenticatedMessage, DmarcResult, SpfOutput, SpfResult};

use super::{Check, Dns, DnsError, Plan, Status, StreamPlan, organizational_domain};

/// The DMARC record that applies to a domain.
pub(super) struct Found {
    pub record: Dmarc,
    /// Where it is published: the domain, or its organisational domain.
    pub at: String,
    pub inherited: bool,
}

impl Found {
    pub fn aspf(&self) -> Alignment {
        self.record.aspf
    }
}

fn policy_name(p: Policy) -> &'static str {
    match p {
        Policy::None => "none",
        Policy::Quarantine => "quarantine",
        Policy::Reject => "reject",
        Policy::Unspecified => "unspecified",
    }
}

/// The DMARC records at `_dmarc.NAME`: those starting `v=DMARC1`.
async fn records(dns: &Dns, name: &str) -> Result<Vec<String>, DnsError> {
    Ok(dns
        .txt(&format!("_dmarc.{name}"))
        .await?
        .into_iter()
        .filter(|t| {
            t.trim_start()
                .get(..8)
                .is_some_and(|v| v.eq_ignore_ascii_case("v=DMARC1"))
        })
        .collect())
}

/// `dmarc.record` and `dmarc.reports`; the record, if one applies.
pub(super) async fn check_record(
    dns: &Dns,
    domain: &str,
    checks: &mut Vec<Check>,
) -> Result<Option<Found>, DnsError> {
    let org = organizational_domain(domain);
    let mut at = domain.to_owned();
    let mut found = records(dns, domain).await?;
    if found.is_empty() && org != domain {
        found = records(dns, &org).await?;
        at.clone_from(&org);
    }
    let subject = format!("_dmarc.{at}");
    let start = format!(
        "_dmarc.{org}. TXT \"v=DMARC1; p=none; rua=mailto:dmarc-reports@{org}\" (then move to p=quarantine once the reports show only your own mail failing)"
    );
    let raw = match found.as_slice() {
        [] => {
            checks.push(
                Check::new(
                    "dmarc.record",
                    format!("_dmarc.{domain}"),
                    Status::Fail,
                    if org == domain {
                        format!("no DMARC record for {domain}: Gmail and Yahoo refuse bulk mail without one")
                    } else {
                        format!("no DMARC record for {domain} or {org}: Gmail and Yahoo refuse bulk mail without one")
                    },
                )
                .fix(start),
            );
            return Ok(None);
        }
        [one] => one.clone(),
        many => {
            checks.push(
                Check::new(
                    "dmarc.record",
                    subject,
                    Status::Fail,
                    format!("{} DMARC records: receivers then apply none", many.len()),
                )
                .evidence(many.iter().cloned())
                .fix("keep one _dmarc record"),
            );
            return Ok(None);
        }
    };
    let record = match Dmarc::parse(raw.as_bytes()) {
        Ok(r) => r,
        Err(e) => {
            checks.push(
                Check::new(
                    "dmarc.record",
                    subject,
                    Status::Fail,
                    format!("the DMARC record doesn't parse ({e})"),
                )
                .evidence([raw])
                .fix(start),
            );
            return Ok(None);
        }
    };
    let inherited = at != domain;
    // A subdomain without its own record gets the organisational
    // domain's sp= (which defaults to p=).
    let policy = if inherited { record.sp } else { record.p };
    let mut notes = Vec::new();
    if inherited {
        notes.push(format!(
            "inherited from {at} (sp={})",
            policy_name(record.sp)
        ));
    }
    // DMARCbis dropped pct= for t=; a pct under 100 still tells a
    // pre-bis receiver to apply the policy to part of the mail only.
    if let Some(pct) = tag(&raw, "pct").and_then(|v| v.parse::<u8>().ok())
        && pct < 100
    {
        notes.push(format!(
            "pct={pct}: older receivers apply the policy to {pct} % of failing mail only"
        ));
    }
    if record.t {
        notes.push("t=y: receivers apply the policy one step weaker (testing)".into());
    }
    let status = match policy {
        Policy::Quarantine | Policy::Reject if notes.iter().all(|n| n.starts_with("inherited")) => {
            Status::Pass
        }
        Policy::Unspecified => Status::Fail,
        _ => Status::Warn,
    };
    let summary = match policy {
        Policy::None => "p=none: monitoring only. Gmail and Yahoo accept it for bulk senders, but it protects the domain from nothing".to_owned(),
        Policy::Unspecified => "the record has no p= policy".to_owned(),
        p => format!("policy p={}", policy_name(p)),
    };
    let summary = if notes.is_empty() {
        summary
    } else {
        format!("{summary}; {}", notes.join("; "))
    };
    checks
        .push(Check::new("dmarc.record", subject.clone(), status, summary).evidence([raw.clone()]));

    // Report destinations outside the policy domain must authorise it
    // (RFC 9989 §3.5: `POLICY._report._dmarc.DEST`).
    let addresses: Vec<String> = record
        .rua
        .iter()
        .chain(record.ruf.iter())
        .map(|u| u.uri.clone())
        .collect();
    if addresses.is_empty() {
        checks.push(Check::new(
            "dmarc.reports",
            subject,
            Status::Info,
            "no rua=: nobody receives the aggregate reports that show who sends as this domain"
                .into(),
        ));
    } else {
        let authorised = dns
            .authenticator()
            .verify_dmarc_report_address(
                &at,
                &addresses,
                None::<&mail_auth::common::cache::NoCache<Box<str>, mail_auth::Txt>>,
            )
            .await
            .ok_or_else(|| DnsError {
                name: format!("*._report._dmarc.{at}"),
                rtype: hickory_resolver::proto::rr::RecordType::TXT,
                message: "no answer".into(),
            })?;
        let refused: Vec<&String> = addresses
            .iter()
            .filter(|a| !authorised.contains(a))
            .collect();
        if refused.is_empty() {
            checks.push(
                Check::new(
                    "dmarc.reports",
                    subject,
                    Status::Pass,
                    format!("reports go to {}", addresses.join(", ")),
                )
                .evidence([raw]),
            );
        } else {
            let fixes: Vec<String> = refused
                .iter()
                .filter_map(|a| a.rsplit_once('@'))
                .map(|(_, d)| format!("{at}._report._dmarc.{d}. TXT \"v=DMARC1\""))
                .collect();
            checks.push(
                Check::new(
                    "dmarc.reports",
                    subject,
                    Status::Warn,
                    format!(
                        "{} doesn't authorise reports for {at}: receivers won't send them there",
                        refused
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .evidence([raw])
                .fix(format!(
                    "the report destination publishes {}",
                    fixes.join(" and ")
                )),
            );
        }
    }
    Ok(Some(Found {
        record,
        at,
        inherited,
    }))
}

/// A tag's value in a `tag=value; ...` record, for the one tag mail-auth
/// no longer reads (`pct`).
fn tag<'a>(record: &'a str, name: &str) -> Option<&'a str> {
    record.split(';').find_map(|part| {
        let (k, v) = part.split_once('=')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// `dmarc.alignment` for one stream: the probe message signed with the
/// stream's key and sent (in evaluation only) from its first source
/// address with its return path, run through mail-auth's DKIM, SPF and
/// DMARC verification as a receiver would.
pub(super) async fn alignment(
    dns: &Dns,
    plan: &Plan,
    stream: &StreamPlan,
    members: &[crate::domain::Stream],
    found: &Found,
) -> Result<Check, DnsError> {
    let names: Vec<&str> = members.iter().map(|s| s.as_str()).collect();
    let subject = if names.len() == 1 {
        format!("{} stream", names[0])
    } else {
        format!("{} streams", names.join(" and "))
    };
    let Some(signer) = &stream.signer else {
        return Ok(Check::new(
            "dmarc.alignment",
            subject,
            Status::Fail,
            "no DKIM key for this stream, so only SPF can align".into(),
        ));
    };
    let signed = super::probe(&plan.domain, signer).map_err(|e| DnsError {
        name: signer.dns_name(),
        rtype: hickory_resolver::proto::rr::RecordType::TXT,
        message: format!("signing the probe: {e}"),
    })?;
    let Some(message) = AuthenticatedMessage::parse(&signed) else {
        return Ok(Check::new(
            "dmarc.alignment",
            subject,
            Status::Fail,
            "the probe message didn't parse".into(),
        ));
    };
    let dkim = dns.authenticator().verify_dkim(&message).await;
    let sender = format!("bounces@{}", stream.return_path);
    // mail-auth evaluates the first SPF record that parses; a receiver
    // finding two returns permerror (spf.record reports it).
    let spf_records = super::spf::records(dns, &stream.return_path).await?.len();
    let spf = match (stream.smarthost.as_ref(), stream.source_addresses.first()) {
        (None, Some(_)) if spf_records > 1 => {
            SpfOutput::new(stream.return_path.clone()).with_result(SpfResult::PermError)
        }
        (None, Some(ip)) => {
            dns.authenticator()
                .verify_spf(SpfParameters::verify_mail_from(
                    *ip, &plan.helo, &plan.helo, &sender,
                ))
                .await
        }
        _ => SpfOutput::new(stream.return_path.clone()).with_result(SpfResult::None),
    };
    let output = dns
        .authenticator()
        .verify_dmarc(DmarcParameters::new(
            &message,
            &dkim,
            &stream.return_path,
            &spf,
        ))
        .await;
    let by_dkim = matches!(output.dkim_result(), DmarcResult::Pass);
    let by_spf = matches!(output.spf_result(), DmarcResult::Pass);
    let evidence = vec![
        format!(
            "dkim: d={} {}",
            signer.domain(),
            if by_dkim {
                "aligned, pass"
            } else {
                "not aligned or failing"
            }
        ),
        format!(
            "spf: MAIL FROM {sender} {}",
            match (by_spf, spf.result()) {
                (true, _) => "aligned, pass".to_owned(),
                (false, SpfResult::None)
                    if stream.source_addresses.is_empty() || stream.smarthost.is_some() =>
                    "not evaluated (source address unknown)".to_owned(),
                (false, r) => format!("not aligned or failing (spf={r:?})").to_lowercase(),
            }
        ),
        format!(
            "record at _dmarc.{}{}",
            found.at,
            if found.inherited { " (inherited)" } else { "" }
        ),
    ];
    let check = match (by_dkim, by_spf) {
        (true, true) => Check::new(
            "dmarc.alignment",
            subject,
            Status::Pass,
            "DMARC passes through DKIM and SPF".into(),
        ),
        (true, false) => Check::new(
            "dmarc.alignment",
            subject,
            Status::Pass,
            "DMARC passes through DKIM (SPF doesn't align, so a broken signature fails DMARC)"
                .into(),
        ),
        (false, true) => Check::new(
            "dmarc.alignment",
            subject,
            Status::Warn,
            "DMARC passes through SPF only: forwarded mail will fail it; fix DKIM".into(),
        ),
        (false, false) => Check::new(
            "dmarc.alignment",
            subject,
            Status::Fail,
            format!(
                "DMARC fails: neither the DKIM signature nor the return path aligns with {} and passes",
                plan.domain
            ),
        ),
    };
    Ok(check.evidence(evidence))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pct_is_read_from_the_raw_record() {
        assert_eq!(tag("v=DMARC1; p=reject; pct=20", "pct"), Some("20"));
        assert_eq!(tag("v=DMARC1; p=reject", "pct"), None);
    }
}
