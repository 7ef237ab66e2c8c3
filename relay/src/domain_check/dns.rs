//! DNS for the domain check: lookups that tell "there is no such record"
//! (something to report) from "the question couldn't be asked" (an error:
//! the check can't say anything), over the same resolver mail-auth's
//! SPF, DKIM, DMARC and iprev evaluation uses.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::net::{DnsError as HickoryDnsError, NetError};
use hickory_resolver::proto::rr::{RData, RecordType};
use mail_auth::MessageAuthenticator;

/// A lookup that got no answer at all: the server is unreachable, timed
/// out or failed (SERVFAIL, REFUSED). Not "no such record".
#[derive(Debug, thiserror::Error)]
#[error("DNS lookup of {name} ({rtype}) failed: {message}")]
pub struct DnsError {
    pub name: String,
    pub rtype: RecordType,
    pub message: String,
}

pub struct Dns {
    auth: MessageAuthenticator,
}

impl Dns {
    /// A resolver asking `servers`, or the system's configuration when
    /// `servers` is empty. Short timeouts: a person is waiting, and an
    /// unreachable server should be an error in seconds, not a minute.
    ///
    /// # Errors
    /// The system resolver configuration can't be read.
    pub fn new(servers: &[SocketAddr]) -> anyhow::Result<Self> {
        let (config, mut options) = crate::delivery::mx::resolver_config(servers)?;
        options.timeout = Duration::from_secs(3);
        options.attempts = 2;
        let auth = MessageAuthenticator::new(config, options)
            .map_err(|e| anyhow::anyhow!("building DNS resolver: {e}"))?;
        Ok(Dns { auth })
    }

    /// For mail-auth's evaluations, which do their own lookups.
    pub fn authenticator(&self) -> &MessageAuthenticator {
        &self.auth
    }

    /// The records of `rtype` at `name` (CNAMEs followed); empty for
    /// NXDOMAIN and NODATA alike, which is what SPF's "void lookup" means.
    ///
    /// # Errors
    /// No answer (see [`DnsError`]).
    pub async fn records(&self, name: &str, rtype: RecordType) -> Result<Vec<RData>, DnsError> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        match self.auth.resolver().lookup(fqdn.as_str(), rtype).await {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter(|r| r.record_type() == rtype)
                .map(|r| r.data.clone())
                .collect()),
            Err(NetError::Dns(HickoryDnsError::NoRecordsFound(_))) => Ok(Vec::new()),
            Err(e) => Err(DnsError {
                name: name.to_owned(),
                rtype,
                message: e.to_string(),
            }),
        }
    }

    /// TXT records at `name`, each one's strings joined (RFC 7208 §3.3).
    ///
    /// # Errors
    /// No answer.
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        Ok(self
            .records(name, RecordType::TXT)
            .await?
            .into_iter()
            .filter_map(|r| match r {
                RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .map(|s| String::from_utf8_lossy(s))
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect())
    }

    /// MX records at `name` as (preference, host without the final dot),
    /// best first.
    ///
    /// # Errors
    /// No answer.
    pub async fn mx(&self, name: &str) -> Result<Vec<(u16, String)>, DnsError> {
        let mut mx = self
            .records(name, RecordType::MX)
            .await?
            .into_iter()
            .filter_map(|r| match r {
                RData::MX(mx) => Some((
                    mx.preference,
                    mx.exchange.to_ascii().trim_end_matches('.').to_owned(),
                )),
                _ => None,
            })
            .collect::<Vec<_>>();
        mx.sort_by_key(|(pref, _)| *pref);
        Ok(mx)
    }

    /// A and AAAA addresses of `name`.
    ///
    /// # Errors
    /// No answer.
    pub async fn addresses(&self, name: &str) -> Result<Vec<IpAddr>, DnsError> {
        let mut out = Vec::new();
        for rtype in [RecordType::A, RecordType::AAAA] {
            for r in self.records(name, rtype).await? {
                match r {
                    RData::A(a) => out.push(IpAddr::V4(a.0)),
                    RData::AAAA(a) => out.push(IpAddr::V6(a.0)),
                    _ => {}
                }
            }
        }
        Ok(out)
    }

    /// PTR names of `ip`, lower case, without the final dot.
    ///
    /// # Errors
    /// No answer.
    pub async fn ptr(&self, ip: IpAddr) -> Result<Vec<String>, DnsError> {
        let name = hickory_resolver::proto::rr::Name::from(ip).to_ascii();
        Ok(self
            .records(&name, RecordType::PTR)
            .await?
            .into_iter()
            .filter_map(|r| match r {
                RData::PTR(p) => Some(p.0.to_ascii().trim_end_matches('.').to_ascii_lowercase()),
                _ => None,
            })
            .collect())
    }
}
