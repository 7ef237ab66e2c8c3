//! A DNS server on loopback answering MX queries from a fixed table, so the
//! relay's direct-MX route can be tested without the Internet.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hickory_proto::op::Message;
use hickory_proto::rr::rdata::MX;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;

/// Serves `zone` (domain → [(preference, exchange)]) over UDP; every other
/// question gets an empty answer (NODATA). Returns the server's address.
pub async fn serve_mx(zone: HashMap<String, Vec<(u16, String)>>) -> SocketAddr {
    serve_mx_counting(zone).await.0
}

/// Like [`serve_mx`], also counting the queries it answers.
pub async fn serve_mx_counting(
    zone: HashMap<String, Vec<(u16, String)>>,
) -> (SocketAddr, Arc<AtomicUsize>) {
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
                let name = q
                    .name()
                    .to_ascii()
                    .trim_end_matches('.')
                    .to_ascii_lowercase();
                if q.query_type() == RecordType::MX
                    && let Some(records) = zone.get(&name)
                {
                    for (pref, host) in records {
                        let exchange = Name::from_ascii(host).unwrap();
                        resp.add_answer(Record::from_rdata(
                            q.name().clone(),
                            60,
                            RData::MX(MX::new(*pref, exchange)),
                        ));
                    }
                }
            }
            if let Ok(bytes) = resp.to_vec() {
                let _ = socket.send_to(&bytes, peer).await;
            }
        }
    });
    (addr, queries)
}
