//! The checks about hosts rather than policy records: where bounces go,
//! reverse DNS of the sending addresses, the transport-security records,
//! and the URL that one-click unsubscribe links point at.

use mail_auth::IprevResult;
use mail_auth::common::parse::TxtRecordParser as _;
use mail_auth::dmarc::Alignment;
use mail_auth::mta_sts::{MtaSts, TlsRpt};

use super::dmarc::Found;
use super::{Check, Dns, DnsError, Plan, Status, organizational_domain};

/// `return_path.mx` and `return_path.alignment` for each return-path domain.
pub(super) async fn return_path(
    dns: &Dns,
    plan: &Plan,
    dmarc: Option<&Found>,
) -> Result<Vec<Check>, DnsError> {
    let mut checks = Vec::new();
    for rp in plan.return_paths() {
        let streams: Vec<String> = plan
            .streams
            .iter()
            .filter(|s| s.return_path == rp)
            .map(|s| s.stream.to_string())
            .collect();
        let which = if streams.len() == 1 {
            format!("the {} stream", streams[0])
        } else {
            format!("the {} streams", streams.join(" and "))
        };
        let publish_mx = format!("{rp}. MX 10 <the host that receives your bounces>");
        let mx = dns.mx(rp).await?;
        let evidence: Vec<String> = mx
            .iter()
            .map(|(p, h)| format!("{rp}. MX {p} {h}"))
            .collect();
        let check = if mx.len() == 1 && (mx[0].1.is_empty() || mx[0].1 == ".") {
            Check::new(
                "return_path.mx",
                rp,
                Status::Fail,
                format!("{rp} publishes a null MX (RFC 7505): bounces can't be delivered, and receivers refuse a MAIL FROM domain that takes no mail"),
            )
            .fix(publish_mx.clone())
        } else if mx.is_empty() {
            if dns.addresses(rp).await?.is_empty() {
                Check::new(
                    "return_path.mx",
                    rp,
                    Status::Fail,
                    format!("{rp} has no MX and no address: bounces can't be delivered, and receivers refuse a MAIL FROM domain that can't receive mail"),
                )
                .fix(publish_mx.clone())
            } else {
                Check::new(
                    "return_path.mx",
                    rp,
                    Status::Warn,
                    format!("{rp} has no MX record, only an address (the implicit MX of RFC 5321 §5.1); publish an MX"),
                )
                .fix(publish_mx.clone())
            }
        } else {
            let mut unresolved = Vec::new();
            for (_, host) in &mx {
                if dns.addresses(host).await?.is_empty() {
                    unresolved.push(host.clone());
                }
            }
            if !unresolved.is_empty() {
                Check::new(
                    "return_path.mx",
                    rp,
                    Status::Fail,
                    format!("MX host {} has no address", unresolved.join(", ")),
                )
            } else if plan.inbound.iter().any(|d| d == rp) {
                Check::new(
                    "return_path.mx",
                    rp,
                    Status::Pass,
                    format!(
                        "bounces for {which} go to {}, which must be this relay's [inbound] listener",
                        mx[0].1
                    ),
                )
            } else {
                Check::new(
                    "return_path.mx",
                    rp,
                    Status::Warn,
                    format!(
                        "bounces for {which} go to {}; this relay's [inbound] listener doesn't take mail for {rp}, so that host must pass them to POST /v1/webhooks/bounces (docs/list-hygiene.md), or they are never processed",
                        mx[0].1
                    ),
                )
            }
        };
        checks.push(check.evidence(evidence));

        // Relaxed (the default): same organisational domain; strict: equal.
        let strict = dmarc.is_some_and(|d| d.aspf() == Alignment::Strict);
        let aligned = if strict {
            rp == plan.domain
        } else {
            organizational_domain(rp) == organizational_domain(&plan.domain)
        };
        let mode = if strict { "strict" } else { "relaxed" };
        checks.push(if aligned {
            Check::new(
                "return_path.alignment",
                rp,
                Status::Pass,
                format!("{rp} is aligned with {} ({mode})", plan.domain),
            )
        } else {
            let suggestion = if strict {
                plan.domain.clone()
            } else {
                format!("bounces.{}", plan.domain)
            };
            Check::new(
                "return_path.alignment",
                rp,
                Status::Warn,
                format!(
                    "{rp} is not aligned with {} ({mode} SPF alignment): SPF can't count towards DMARC, only DKIM can",
                    plan.domain
                ),
            )
            .fix(format!(
                "return_path = \"{suggestion}\" under [streams.{}] in the config, with its own SPF and MX records",
                streams.join("] and [streams.")
            ))
        });
    }
    Ok(checks)
}

/// `rdns` for each source address: PTR exists, forward-confirms (iprev,
/// RFC 8601 §3), and names the host the relay says EHLO as.
pub(super) async fn reverse_dns(dns: &Dns, plan: &Plan) -> Result<Vec<Check>, DnsError> {
    let mut checks = Vec::new();
    for ip in plan.source_addresses() {
        let names = dns.ptr(ip).await?;
        let evidence: Vec<String> = names.iter().map(|n| format!("{ip} PTR {n}")).collect();
        let fix = format!(
            "ask whoever owns {ip} (the hosting provider) to set its PTR to {}, and publish {}. A {ip}",
            plan.helo, plan.helo
        );
        if names.is_empty() {
            checks.push(
                Check::new(
                    "rdns",
                    ip.to_string(),
                    Status::Fail,
                    format!("{ip} has no PTR record: Gmail and Yahoo refuse mail from addresses without reverse DNS"),
                )
                .fix(fix),
            );
            continue;
        }
        let iprev = dns.authenticator().verify_iprev(ip).await;
        let confirmed = matches!(iprev.result(), IprevResult::Pass);
        if let IprevResult::TempError(e) = iprev.result() {
            return Err(DnsError {
                name: names[0].clone(),
                rtype: hickory_resolver::proto::rr::RecordType::A,
                message: e.to_string(),
            });
        }
        let helo = plan.helo.trim_end_matches('.').to_ascii_lowercase();
        let check = if !confirmed {
            Check::new(
                "rdns",
                ip.to_string(),
                Status::Fail,
                format!(
                    "{ip}'s PTR {} doesn't resolve back to {ip} (not forward-confirmed): receivers treat that like no reverse DNS",
                    names.join(", ")
                ),
            )
            .fix(format!("publish {}. A {ip}", names[0]))
        } else if !names.contains(&helo) {
            Check::new(
                "rdns",
                ip.to_string(),
                Status::Warn,
                format!(
                    "{ip} is {}, but mailroom says EHLO {}: receivers score a mismatch",
                    names.join(", "),
                    plan.helo
                ),
            )
            .fix(format!("hostname = \"{}\" in the config", names[0]))
        } else {
            Check::new(
                "rdns",
                ip.to_string(),
                Status::Pass,
                format!("{ip} is {helo}, which resolves back to it and is the EHLO name"),
            )
        };
        checks.push(check.evidence(evidence));
    }
    if plan.source_addresses().is_empty() && plan.streams.iter().any(|s| s.smarthost.is_none()) {
        checks.push(Check::new(
            "rdns",
            plan.helo.clone(),
            Status::Warn,
            "no source address known: set source_address per stream or pass --ip with the relay's public address to check its reverse DNS".into(),
        ));
    }
    Ok(checks)
}

/// MTA-STS and TLS-RPT (warn only: they protect mail *to* the domain,
/// replies and bounces), and BIMI (information).
pub(super) async fn transport(dns: &Dns, domain: &str) -> Result<Vec<Check>, DnsError> {
    let mut checks = Vec::new();
    let sts_name = format!("_mta-sts.{domain}");
    let sts = dns.txt(&sts_name).await?;
    checks.push(match sts.iter().find(|t| MtaSts::parse(t.as_bytes()).is_ok()) {
        Some(r) => Check::new("transport.mta_sts", sts_name, Status::Pass, "MTA-STS is published".into())
            .evidence([r.clone()]),
        None => Check::new(
            "transport.mta_sts",
            sts_name.clone(),
            Status::Warn,
            "no MTA-STS record: mail to this domain (replies, bounces) can be downgraded to plain text".into(),
        )
        .evidence(sts)
        .fix(format!("{sts_name}. TXT \"v=STSv1; id=1\", with the policy at https://mta-sts.{domain}/.well-known/mta-sts.txt")),
    });
    let rpt_name = format!("_smtp._tls.{domain}");
    let rpt = dns.txt(&rpt_name).await?;
    checks.push(
        match rpt.iter().find(|t| TlsRpt::parse(t.as_bytes()).is_ok()) {
            Some(r) => Check::new(
                "transport.tls_rpt",
                rpt_name,
                Status::Pass,
                "TLS reporting is published".into(),
            )
            .evidence([r.clone()]),
            None => Check::new(
                "transport.tls_rpt",
                rpt_name.clone(),
                Status::Warn,
                "no TLS-RPT record: nobody hears about failed TLS to this domain".into(),
            )
            .evidence(rpt)
            .fix(format!(
                "{rpt_name}. TXT \"v=TLSRPTv1; rua=mailto:tls-reports@{domain}\""
            )),
        },
    );
    let bimi_name = format!("default._bimi.{domain}");
    let bimi: Vec<String> = dns
        .txt(&bimi_name)
        .await?
        .into_iter()
        .filter(|t| t.to_ascii_lowercase().starts_with("v=bimi1"))
        .collect();
    checks.push(
        Check::new(
            "bimi",
            bimi_name,
            Status::Info,
            if bimi.is_empty() {
                "no BIMI record (a brand logo in the inbox needs DMARC at quarantine or reject, and for Gmail a VMC)".into()
            } else {
                "BIMI is published".into()
            },
        )
        .evidence(bimi),
    );
    Ok(checks)
}

/// `unsubscribe`: RFC 8058 one-click links must be https.
pub(super) fn unsubscribe(plan: &Plan) -> Check {
    let url = plan.public_url.as_deref().unwrap_or("");
    let subject = if url.is_empty() { "public_url" } else { url };
    if url.starts_with("https://") {
        Check::new(
            "unsubscribe",
            subject,
            Status::Pass,
            "one-click unsubscribe links (RFC 8058) are https".into(),
        )
    } else {
        Check::new(
            "unsubscribe",
            subject,
            Status::Fail,
            if url.is_empty() {
                "no public_url: unsubscribe links point at the API's listen address, which recipients can't reach; Gmail and Yahoo need working one-click unsubscribe on marketing mail".into()
            } else {
                format!("{url} is not https: RFC 8058 one-click unsubscribe needs an https URL")
            },
        )
        .fix("public_url = \"https://mail.YOUR-SHOP.example\" in the config, served through a TLS proxy or [tls]")
    }
}
