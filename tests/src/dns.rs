//! An authoritative DNS server on loopback answering from a fixed zone, so
//! the relay's direct-MX route and `mailroom check-domain` can be tested
//! without the Internet.
//!
//! It answers the way a real authoritative server does where that matters
//! to the code under test: CNAMEs are followed inside the zone and sent
//! with the target's records, a name with no records of the asked type is
//! NODATA, and a name that doesn't exist at all is NXDOMAIN (SPF counts
//! those as "void lookups").

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, PTR, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;

/// Records by owner name (lower case, no trailing dot).
#[derive(Debug, Clone, Default)]
pub struct Zone {
    records: HashMap<String, Vec<RData>>,
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn fqdn(name: &str) -> Name {
    Name::from_ascii(format!("{}.", key(name))).expect("valid test DNS name")
}

impl Zone {
    pub fn new() -> Self {
        Zone::default()
    }

    fn add(&mut self, name: &str, data: RData) -> &mut Self {
        self.records.entry(key(name)).or_default().push(data);
        self
    }

    /// A TXT record; values over 255 bytes are split into strings, as DNS
    /// requires (a 2048-bit RSA DKIM key is ~400 characters).
    pub fn txt(&mut self, name: &str, value: &str) -> &mut Self {
        let strings = value
            .as_bytes()
            .chunks(255)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>();
        self.add(name, RData::TXT(TXT::new(strings)))
    }

    pub fn mx(&mut self, name: &str, preference: u16, exchange: &str) -> &mut Self {
        let exchange = if exchange == "." {
            Name::root()
        } else {
            fqdn(exchange)
        };
        self.add(name, RData::MX(MX::new(preference, exchange)))
    }

    /// An A or AAAA record, by the address's family.
    pub fn addr(&mut self, name: &str, ip: IpAddr) -> &mut Self {
        match ip {
            IpAddr::V4(v4) => self.add(name, RData::A(A(v4))),
            IpAddr::V6(v6) => self.add(name, RData::AAAA(AAAA(v6))),
        }
    }

    pub fn cname(&mut self, name: &str, target: &str) -> &mut Self {
        self.add(name, RData::CNAME(CNAME(fqdn(target))))
    }

    /// A PTR record for `ip` (under in-addr.arpa or ip6.arpa).
    pub fn ptr(&mut self, ip: IpAddr, host: &str) -> &mut Self {
        let owner = Name::from(ip).to_ascii();
        self.add(&owner, RData::PTR(PTR(fqdn(host))))
    }

    /// Drops the records owned by `name`.
    pub fn remove(&mut self, name: &str) -> &mut Self {
        self.records.remove(&key(name));
        self
    }

    /// Whether `name` exists: it owns records, or a name below it does
    /// (an empty non-terminal, which is NODATA rather than NXDOMAIN).
    fn exists(&self, name: &str) -> bool {
        let suffix = format!(".{name}");
        self.records
            .keys()
            .any(|k| k == name || k.ends_with(&suffix))
    }

    /// The answer section for `name`/`rtype`, CNAMEs followed in the zone.
    fn answer(&self, name: &str, rtype: RecordType) -> (ResponseCode, Vec<Record>) {
        let mut answers = Vec::new();
        let mut current = key(name);
        for _ in 0..8 {
            let records = self.records.get(&current);
            let alias = records.and_then(|rs| {
                rs.iter().find_map(|r| match r {
                    RData::CNAME(c) if rtype != RecordType::CNAME => Some(c.0.clone()),
                    _ => None,
                })
            });
            if let Some(target) = alias {
                answers.push(Record::from_rdata(
                    fqdn(&current),
                    60,
                    RData::CNAME(CNAME(target.clone())),
                ));
                current = key(&target.to_ascii());
                continue;
            }
            for r in records.into_iter().flatten() {
                if r.record_type() == rtype {
                    answers.push(Record::from_rdata(fqdn(&current), 60, r.clone()));
                }
            }
            let code = if answers.is_empty() && !self.exists(&current) {
                ResponseCode::NXDomain
            } else {
                ResponseCode::NoError
            };
            return (code, answers);
        }
        (ResponseCode::ServFail, Vec::new())
    }
}

/// Serves `zone` (domain → [(preference, exchange)]) over UDP; every other
/// question gets an empty answer (NODATA). Returns the server's address.
pub async fn serve_mx(zone: HashMap<String, Vec<(u16, String)>>) -> SocketAddr {
    serve_mx_counting(zone).await.0
}

/// Like [`serve_mx`], also counting the queries it answers.
pub async fn serve_mx_counting(
    zone: HashMap<String, Vec<(u16, String)>>,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let mut z = Zone::new();
    for (domain, records) in &zone {
        for (pref, host) in records {
            z.mx(domain, *pref, host);
        }
    }
    serve_counting(z, false).await
}

/// Serves `zone` over UDP; returns the server's address.
pub async fn serve(zone: Zone) -> SocketAddr {
    serve_counting(zone, true).await.0
}

/// `nxdomain`: answer NXDOMAIN for names outside the zone (a real
/// authoritative server); otherwise NODATA (what the MX tests expect).
async fn serve_counting(zone: Zone, nxdomain: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind dns"));
    let addr = socket.local_addr().unwrap();
    let queries = Arc::new(AtomicUsize::new(0));
    let counter = queries.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
            counter.fetch_add(1, Ordering::SeqCst);
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut resp = query.clone().into_response();
            resp.metadata.authoritative = true;
            if let Some(q) = query.queries.first() {
                let (code, answers) = zone.answer(&q.name().to_ascii(), q.query_type());
                if nxdomain || code != ResponseCode::NXDomain {
                    resp.metadata.response_code = code;
                }
                for a in answers {
                    resp.add_answer(a);
                }
            }
            if let Ok(bytes) = resp.to_vec() {
                let _ = socket.send_to(&bytes, peer).await;
            }
        }
    });
    (addr, queries)
}
