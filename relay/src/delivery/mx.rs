//! MX resolution with hickory-resolver, cached in an LRU that honours TTLs.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::rr::RData;
use hickory_resolver::system_conf::read_system_conf;
use lru::LruCache;

/// Where mail for a domain goes, best first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxAnswer {
    /// Exchange host names in preference order (ties keep DNS order).
    Hosts(Vec<String>),
    /// The domain publishes a null MX (RFC 7505): it accepts no mail.
    NullMx,
}

#[derive(Debug, thiserror::Error)]
#[error("MX lookup for {domain} failed: {message}")]
pub struct MxError {
    pub domain: String,
    pub message: String,
}

/// Orders MX records by preference and applies RFC 7505 (null MX) and RFC
/// 5321 §5.1 (no MX records: the domain itself is the implicit MX).
pub fn order_mx(domain: &str, mut records: Vec<(u16, String)>) -> MxAnswer {
    if records.is_empty() {
        return MxAnswer::Hosts(vec![domain.to_owned()]);
    }
    if records.len() == 1 && (records[0].1 == "." || records[0].1.is_empty()) {
        return MxAnswer::NullMx;
    }
    records.sort_by_key(|(pref, _)| *pref);
    MxAnswer::Hosts(
        records
            .into_iter()
            .map(|(_, h)| h.trim_end_matches('.').to_owned())
            .collect(),
    )
}

/// The configuration for a resolver asking `servers` (UDP, then TCP), or
/// the system's (`/etc/resolv.conf`) when `servers` is empty.
///
/// # Errors
/// The system resolver configuration can't be read.
pub fn resolver_config(servers: &[SocketAddr]) -> anyhow::Result<(ResolverConfig, ResolverOpts)> {
    if servers.is_empty() {
        return read_system_conf()
            .map_err(|e| anyhow::anyhow!("reading system DNS configuration: {e}"));
    }
    let name_servers = servers
        .iter()
        .map(|addr| {
            let conns = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                .into_iter()
                .map(|mut c| {
                    c.port = addr.port();
                    c
                })
                .collect();
            NameServerConfig::new(addr.ip(), true, conns)
        })
        .collect();
    Ok((
        ResolverConfig::from_name_servers(name_servers),
        ResolverOpts::default(),
    ))
}

pub struct MxResolver {
    resolver: TokioResolver,
    cache: Mutex<LruCache<String, (MxAnswer, Instant)>>,
}

impl MxResolver {
    /// A resolver asking `servers` (UDP, then TCP), or the system's
    /// configuration (`/etc/resolv.conf`) when `servers` is empty.
    ///
    /// # Errors
    /// The system resolver configuration can't be read.
    pub fn new(servers: &[SocketAddr]) -> anyhow::Result<Self> {
        let (config, options) = resolver_config(servers)?;
        let builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(options);
        let resolver = builder
            .build()
            .map_err(|e| anyhow::anyhow!("building DNS resolver: {e}"))?;
        Ok(MxResolver {
            resolver,
            cache: Mutex::new(LruCache::new(NonZeroUsize::new(10_000).expect("non-zero"))),
        })
    }

    /// MX hosts for `domain`, from the cache while its TTL lasts.
    ///
    /// # Errors
    /// The lookup failed for a reason other than "no MX records" (which
    /// falls back to the domain itself).
    pub async fn lookup(&self, domain: &str) -> Result<MxAnswer, MxError> {
        let now = Instant::now();
        if let Some((answer, until)) = self.cache.lock().expect("mx cache lock").get(domain)
            && *until > now
        {
            return Ok(answer.clone());
        }
        let fqdn = format!("{domain}.");
        let (records, valid_until) = match self.resolver.mx_lookup(fqdn.as_str()).await {
            Ok(lookup) => {
                let recs = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
                        _ => None,
                    })
                    .collect::<Vec<_>>();
                (recs, lookup.valid_until())
            }
            // No MX records (NODATA): the domain itself is the implicit MX.
            // NXDOMAIN falls here too and then fails at connect time.
            Err(NetError::Dns(DnsError::NoRecordsFound(_))) => {
                (Vec::new(), now + Duration::from_secs(300))
            }
            Err(e) => {
                return Err(MxError {
                    domain: domain.to_owned(),
                    message: e.to_string(),
                });
            }
        };
        let answer = order_mx(domain, records);
        self.cache
            .lock()
            .expect("mx cache lock")
            .put(domain.to_owned(), (answer.clone(), valid_until));
        Ok(answer)
    }
}

impl MxResolver {
    /// Whether `domain` can receive mail: it has MX hosts, or no MX but an
    /// address record (the implicit MX). A null MX or a name with neither
    /// is a no.
    ///
    /// # Errors
    /// DNS gave no answer either way (timeout, SERVFAIL): the caller decides.
    pub async fn can_receive(&self, domain: &str) -> Result<bool, MxError> {
        match self.lookup(domain).await? {
            MxAnswer::NullMx => return Ok(false),
            MxAnswer::Hosts(hosts) if hosts != [domain] => return Ok(true),
            MxAnswer::Hosts(_) => {}
        }
        match self.resolver.lookup_ip(format!("{domain}.").as_str()).await {
            Ok(ips) => Ok(ips.iter().next().is_some()),
            Err(NetError::Dns(DnsError::NoRecordsFound(_))) => Ok(false),
            Err(e) => Err(MxError {
                domain: domain.to_owned(),
                message: e.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_come_in_preference_order() {
        let a = order_mx(
            "x.example",
            vec![
                (20, "b.x.example.".into()),
                (10, "a.x.example.".into()),
                (20, "c.x.example.".into()),
            ],
        );
        assert_eq!(
            a,
            MxAnswer::Hosts(vec![
                "a.x.example".into(),
                "b.x.example".into(),
                "c.x.example".into()
            ])
        );
    }

    #[test]
    fn no_mx_means_the_domain_itself() {
        assert_eq!(
            order_mx("x.example", vec![]),
            MxAnswer::Hosts(vec!["x.example".into()])
        );
    }

    #[tokio::test]
    async fn answers_come_from_dns_once_then_from_the_cache() {
        let zone = std::collections::HashMap::from([
            (
                "shop.test".to_string(),
                vec![
                    (20, "mx2.shop.test.".to_string()),
                    (10, "mx1.shop.test.".to_string()),
                ],
            ),
            ("none.test".to_string(), vec![(0, ".".to_string())]),
        ]);
        let (dns, queries) = mailroom_e2e::dns::serve_mx_counting(zone).await;
        let r = MxResolver::new(&[dns]).unwrap();
        let want = MxAnswer::Hosts(vec!["mx1.shop.test".into(), "mx2.shop.test".into()]);
        assert_eq!(r.lookup("shop.test").await.unwrap(), want);
        let asked = queries.load(std::sync::atomic::Ordering::SeqCst);
        assert!(asked >= 1);
        // Within the records' 60 s TTL the second answer is the cached one.
        assert_eq!(r.lookup("shop.test").await.unwrap(), want);
        assert_eq!(queries.load(std::sync::atomic::Ordering::SeqCst), asked);
        assert_eq!(r.lookup("none.test").await.unwrap(), MxAnswer::NullMx);
        // No MX records at all: the domain itself (RFC 5321 §5.1).
        assert_eq!(
            r.lookup("plain.test").await.unwrap(),
            MxAnswer::Hosts(vec!["plain.test".into()])
        );
    }

    #[test]
    fn a_null_mx_accepts_no_mail() {
        assert_eq!(
            order_mx("x.example", vec![(0, ".".into())]),
            MxAnswer::NullMx
        );
    }
}
