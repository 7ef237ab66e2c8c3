//! SPF (RFC 7208): one record, valid, within the lookup limits, and
//! authorising the addresses mail leaves from.

use std::net::IpAddr;

use mail_auth::SpfResult;
use mail_auth::common::parse::TxtRecordParser as _;
use mail_auth::spf::{Macro, Mechanism, Spf, verify::SpfParameters};

use super::{Check, Dns, DnsError, Plan, Status};

/// RFC 7208 §4.6.4: at most 10 terms that cause DNS queries.
const MAX_LOOKUPS: usize = 10;
/// RFC 7208 §4.6.4: at most 2 lookups that return nothing.
const MAX_VOID: usize = 2;
/// Stop walking includes after this many lookups: the verdict is known,
/// and a loop must not keep the check busy.
const WALK_LIMIT: usize = 30;

/// The records at `domain` that are SPF records (RFC 7208 §4.5: `v=spf1`
/// followed by a space or nothing, case-insensitively).
pub(super) async fn records(dns: &Dns, domain: &str) -> Result<Vec<String>, DnsError> {
    Ok(dns
        .txt(domain)
        .await?
        .into_iter()
        .filter(|t| {
            t.get(..6).is_some_and(|v| v.eq_ignore_ascii_case("v=spf1"))
                && t[6..].chars().next().is_none_or(|c| c == ' ')
        })
        .collect())
}

/// One SPF domain's checks: `spf.record`, `spf.lookups`, and
/// `spf.authorizes` for each source address of the streams that use it.
pub(super) async fn check(dns: &Dns, plan: &Plan, domain: &str) -> Result<Vec<Check>, DnsError> {
    // The addresses that send with this domain as envelope sender; for a
    // From domain that no stream uses as return path, every one.
    let mut addresses: Vec<IpAddr> = Vec::new();
    for s in plan
        .streams
        .iter()
        .filter(|s| s.return_path == domain && s.smarthost.is_none())
    {
        for ip in &s.source_addresses {
            if !addresses.contains(ip) {
                addresses.push(*ip);
            }
        }
    }
    if !plan.streams.iter().any(|s| s.return_path == domain) {
        addresses = plan.source_addresses();
    }
    let records = records(dns, domain).await?;
    let mut checks = Vec::new();
    let suggested = suggestion(&addresses, None);
    let spf = match records.as_slice() {
        [] => {
            checks.push(
                Check::new(
                    "spf.record",
                    domain,
                    Status::Fail,
                    format!("{domain} publishes no SPF record"),
                )
                .fix(format!("{domain}. TXT \"{suggested}\"")),
            );
            return Ok(checks);
        }
        [one] => {
            match Spf::parse(one.as_bytes()) {
                Ok(spf) => {
                    checks.push(
                        Check::new(
                            "spf.record",
                            domain,
                            Status::Pass,
                            "one SPF record, valid syntax".into(),
                        )
                        .evidence([one.clone()]),
                    );
                    spf
                }
                Err(e) => {
                    checks.push(
                    Check::new(
                        "spf.record",
                        domain,
                        Status::Fail,
                        format!("the SPF record doesn't parse ({e}): receivers treat it as a permerror"),
                    )
                    .evidence([one.clone()])
                    .fix(format!("{domain}. TXT \"{suggested}\"")),
                );
                    return Ok(checks);
                }
            }
        }
        many => {
            checks.push(
                Check::new(
                    "spf.record",
                    domain,
                    Status::Fail,
                    format!(
                        "{} SPF records: RFC 7208 makes that a permerror, so SPF fails for all mail",
                        many.len()
                    ),
                )
                .evidence(many.iter().cloned())
                .fix(format!(
                    "publish one record that merges them, e.g. {domain}. TXT \"{}\", and delete the others",
                    merge(many)
                )),
            );
            return Ok(checks);
        }
    };

    checks.push(lookups(dns, domain, spf).await?);

    for s in plan.streams.iter().filter(|s| s.return_path == domain) {
        if let Some(host) = &s.smarthost {
            checks.push(Check::new(
                "spf.authorizes",
                format!("{domain} ({})", s.stream),
                Status::Info,
                format!(
                    "the {} stream delivers through {host}: that provider's servers send the mail, so the record must include theirs (their documentation gives the include:)",
                    s.stream
                ),
            ));
            continue;
        }
        if s.source_addresses.is_empty() {
            checks.push(Check::new(
                "spf.authorizes",
                format!("{domain} ({})", s.stream),
                Status::Warn,
                format!(
                    "the {} stream names no source_address, so which address receivers see is unknown here: pass --ip with the relay's public address to check it",
                    s.stream
                ),
            ));
        }
    }
    for ip in addresses {
        checks.push(authorizes(dns, plan, domain, ip, &records[0]).await);
    }
    Ok(checks)
}

/// `spf.lookups`: the DNS-querying terms and void lookups of the record
/// and everything it includes, and include/redirect loops.
async fn lookups(dns: &Dns, domain: &str, spf: Spf) -> Result<Check, DnsError> {
    let mut count = 0usize;
    let mut void = 0usize;
    let mut problems: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    // Depth-first over (domain, record, the include chain that led here).
    let mut stack = vec![(domain.to_owned(), spf, vec![domain.to_owned()])];
    while let Some((current, record, chain)) = stack.pop() {
        let mut targets: Vec<(String, Option<String>)> = Vec::new();
        for d in record.directives.iter() {
            if count >= WALK_LIMIT {
                break;
            }
            match &d.mechanism {
                Mechanism::All | Mechanism::Ip4 { .. } | Mechanism::Ip6 { .. } => {}
                Mechanism::Include { macro_string } => {
                    count += 1;
                    targets.push(("include".into(), literal(macro_string, &current)));
                }
                Mechanism::A { macro_string, .. } => {
                    count += 1;
                    if let Some(t) = literal(macro_string, &current)
                        && dns.addresses(&t).await?.is_empty()
                    {
                        void += 1;
                        notes.push(format!("a:{t} has no address (a void lookup)"));
                    }
                }
                Mechanism::Mx { macro_string, .. } => {
                    count += 1;
                    if let Some(t) = literal(macro_string, &current)
                        && dns.mx(&t).await?.is_empty()
                    {
                        void += 1;
                        notes.push(format!("mx:{t} has no MX record (a void lookup)"));
                    }
                }
                Mechanism::Ptr { .. } => {
                    count += 1;
                    notes.push(
                        "ptr: RFC 7208 §5.5 says not to use it (slow, and many receivers skip it)"
                            .into(),
                    );
                }
                Mechanism::Exists { macro_string } => {
                    count += 1;
                    if let Some(t) = literal(macro_string, &current)
                        && dns.addresses(&t).await?.is_empty()
                    {
                        void += 1;
                        notes.push(format!("exists:{t} has no address (a void lookup)"));
                    }
                }
            }
        }
        if let Some(redirect) = &record.redirect
            && count < WALK_LIMIT
        {
            count += 1;
            targets.push(("redirect".into(), literal(redirect, &current)));
        }
        for (how, target) in targets {
            let Some(target) = target else {
                notes.push(format!(
                    "{how} with a macro is expanded per message and not followed here"
                ));
                continue;
            };
            if chain.contains(&target) {
                problems.push(format!(
                    "{how}:{target} loops: {} → {target}",
                    chain.join(" → ")
                ));
                continue;
            }
            let found = records(dns, &target).await?;
            match found.as_slice() {
                [] => {
                    void += 1;
                    problems.push(format!(
                        "{how}:{target} has no SPF record: receivers return permerror"
                    ));
                }
                [one] => match Spf::parse(one.as_bytes()) {
                    Ok(spf) if chain.len() < 10 => {
                        let mut next = chain.clone();
                        next.push(target.clone());
                        stack.push((target, spf, next));
                    }
                    Ok(_) => problems.push(format!("{how}:{target}: includes nest too deep")),
                    Err(e) => {
                        problems.push(format!("{how}:{target}: its record doesn't parse ({e})"))
                    }
                },
                many => problems.push(format!(
                    "{how}:{target} publishes {} SPF records (a permerror)",
                    many.len()
                )),
            }
        }
    }

    if count > MAX_LOOKUPS {
        problems.insert(
            0,
            format!(
                "{}{count} DNS-querying terms (include, a, mx, ptr, exists, redirect) where RFC 7208 allows {MAX_LOOKUPS}: receivers return permerror",
                if count >= WALK_LIMIT { "at least " } else { "" }
            ),
        );
    }
    if void > MAX_VOID {
        problems.push(format!(
            "{void} lookups return nothing where RFC 7208 allows {MAX_VOID}: receivers return permerror"
        ));
    }
    let mut evidence = problems.clone();
    evidence.extend(notes.iter().cloned());
    let check = if problems.is_empty() {
        let status = if notes.iter().any(|n| n.starts_with("ptr")) {
            Status::Warn
        } else {
            Status::Pass
        };
        Check::new(
            "spf.lookups",
            domain,
            status,
            format!("{count} of {MAX_LOOKUPS} DNS lookups, {void} void"),
        )
    } else {
        Check::new("spf.lookups", domain, Status::Fail, problems[0].clone()).fix(
            "replace include: terms with the ip4:/ip6: ranges they publish (SPF flattening) or drop senders you no longer use, until the record needs at most 10 lookups and includes only domains that publish SPF",
        )
    };
    Ok(check.evidence(evidence))
}

/// `spf.authorizes`: mail-auth's evaluation of `ip` sending as
/// `bounces@domain`, as a receiver does it at MAIL FROM.
async fn authorizes(dns: &Dns, plan: &Plan, domain: &str, ip: IpAddr, record: &str) -> Check {
    let sender = format!("bounces@{domain}");
    let output = dns
        .authenticator()
        .verify_spf(SpfParameters::verify_mail_from(
            ip, &plan.helo, &plan.helo, &sender,
        ))
        .await;
    let subject = format!("{domain} from {ip}");
    let result = output.result();
    let fix = format!("{domain}. TXT \"{}\"", suggestion(&[ip], Some(record)));
    match result {
        SpfResult::Pass => Check::new(
            "spf.authorizes",
            subject,
            Status::Pass,
            format!("{ip} may send as {domain} (spf=pass)"),
        ),
        SpfResult::TempError => Check::new(
            "spf.authorizes",
            subject,
            Status::Fail,
            format!("evaluating SPF for {ip} hit a DNS error (spf=temperror): receivers defer or fail the mail"),
        ),
        other => Check::new(
            "spf.authorizes",
            subject,
            Status::Fail,
            format!(
                "{ip} is not authorised to send as {domain} (spf={})",
                spf_result(other)
            ),
        )
        .fix(fix),
    }
    .evidence([record.to_owned()])
}

fn spf_result(r: SpfResult) -> &'static str {
    match r {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

/// The domain a mechanism's domain-spec names, when it has no macros to
/// expand per message (`None` then): the current domain if it has none.
fn literal(m: &Macro, current: &str) -> Option<String> {
    match m {
        Macro::None => Some(current.to_owned()),
        Macro::Literal(bytes) => Some(
            String::from_utf8_lossy(bytes)
                .trim_end_matches('.')
                .to_ascii_lowercase(),
        ),
        _ => None,
    }
}

/// `existing` with `ip4:`/`ip6:` terms for `addresses` added after the
/// version, or a new record ending in `-all` (or `~all` when nothing is
/// known to authorise).
fn suggestion(addresses: &[IpAddr], existing: Option<&str>) -> String {
    let terms: Vec<String> = addresses
        .iter()
        .map(|ip| match ip {
            IpAddr::V4(v4) => format!("ip4:{v4}"),
            IpAddr::V6(v6) => format!("ip6:{v6}"),
        })
        .collect();
    match existing {
        Some(record) => {
            let rest = record.get(6..).unwrap_or("").trim_start();
            format!("v=spf1 {} {rest}", terms.join(" "))
                .trim_end()
                .to_owned()
        }
        None if terms.is_empty() => "v=spf1 ip4:YOUR.RELAY.IP ~all".into(),
        None => format!("v=spf1 {} -all", terms.join(" ")),
    }
}

/// One record with the terms of several: every mechanism except the
/// `all`s, then the first record's `all`.
fn merge(records: &[String]) -> String {
    let mut terms: Vec<&str> = Vec::new();
    let mut all = None;
    for r in records {
        for t in r.split_whitespace().skip(1) {
            let bare = t.trim_start_matches(['+', '-', '~', '?']);
            if bare.eq_ignore_ascii_case("all") {
                all.get_or_insert(t);
            } else if !terms.contains(&t) {
                terms.push(t);
            }
        }
    }
    let mut out = String::from("v=spf1");
    for t in terms {
        out.push(' ');
        out.push_str(t);
    }
    out.push(' ');
    out.push_str(all.unwrap_or("~all"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suggested_record_adds_the_addresses_to_what_is_published() {
        let ip: IpAddr = "192.0.2.10".parse().unwrap();
        assert_eq!(
            suggestion(&[ip], Some("v=spf1 include:_spf.example.net ~all")),
            "v=spf1 ip4:192.0.2.10 include:_spf.example.net ~all"
        );
        assert_eq!(suggestion(&[ip], None), "v=spf1 ip4:192.0.2.10 -all");
        assert_eq!(suggestion(&[], None), "v=spf1 ip4:YOUR.RELAY.IP ~all");
    }

    #[test]
    fn two_records_merge_into_one_with_a_single_all() {
        let merged = merge(&[
            "v=spf1 ip4:192.0.2.1 -all".into(),
            "v=spf1 include:_spf.example.net ip4:192.0.2.1 ~all".into(),
        ]);
        assert_eq!(merged, "v=spf1 ip4:192.0.2.1 include:_spf.example.net -all");
        assert!(Spf::parse(merged.as_bytes()).is_ok());
    }
}
