//! Sends stored bytes with lettre's async SMTP transport, unchanged
//! (`send_raw`), and turns lettre's reply or error into an [`Outcome`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::{Error as SmtpError, PoolConfig};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor};

use super::mx::{MxAnswer, MxResolver};
use super::{Outcome, Route};

type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// One stream's way out: its own route, connections and pool, so the
/// streams never share a connection.
pub struct Sender {
    route: Route,
    hello: ClientId,
    timeout: Duration,
    pool_size: u32,
    mx_port: u16,
    smarthost: Option<Transport>,
    mx: Option<MxResolver>,
    /// One pooled transport per MX host, so connections are reused per destination.
    mx_transports: Mutex<HashMap<String, Transport>>,
}

impl Sender {
    /// # Errors
    /// A smarthost URL lettre refuses, or no system DNS configuration for `mx`.
    pub fn new(
        route: Route,
        hello: &str,
        timeout: Duration,
        pool_size: usize,
        dns_servers: &[SocketAddr],
        mx_port: u16,
    ) -> anyhow::Result<Self> {
        let hello = ClientId::Domain(hello.to_owned());
        let pool_size = pool_size.clamp(1, 1000) as u32;
        let smarthost = match &route {
            Route::Smarthost(url) => Some(
                Transport::from_url(url)?
                    .hello_name(hello.clone())
                    .timeout(Some(timeout))
                    .pool_config(PoolConfig::new().max_size(pool_size))
                    .build(),
            ),
            _ => None,
        };
        let mx = match &route {
            Route::Mx => Some(MxResolver::new(dns_servers)?),
            _ => None,
        };
        Ok(Sender {
            route,
            hello,
            timeout,
            pool_size,
            mx_port,
            smarthost,
            mx,
            mx_transports: Mutex::new(HashMap::new()),
        })
    }

    pub fn route(&self) -> &Route {
        &self.route
    }

    /// Sends `raw` to one recipient.
    pub async fn send(&self, envelope: &Envelope, raw: &[u8], domain: &str) -> Outcome {
        match &self.route {
            Route::Capture => Outcome::Delivered {
                code: None,
                reply: "captured (capture mode: not sent)".into(),
                host: None,
            },
            Route::Smarthost(url) => {
                let t = self
                    .smarthost
                    .as_ref()
                    .expect("smarthost transport built with its route");
                classify(t.send_raw(envelope, raw).await, Some(super::redact(url)))
            }
            Route::Mx => self.send_mx(envelope, raw, domain).await,
        }
    }

    async fn send_mx(&self, envelope: &Envelope, raw: &[u8], domain: &str) -> Outcome {
        let resolver = self.mx.as_ref().expect("resolver built with the mx route");
        let hosts = match resolver.lookup(domain).await {
            Ok(MxAnswer::Hosts(h)) => h,
            Ok(MxAnswer::NullMx) => {
                return Outcome::Bounced {
                    code: Some(556),
                    reply: format!(
                        "5.1.10 {domain} publishes a null MX and accepts no mail (RFC 7505)"
                    ),
                    host: None,
                };
            }
            Err(e) => {
                return Outcome::Deferred {
                    code: None,
                    reply: e.to_string(),
                    host: None,
                };
            }
        };
        let mut last = Outcome::Deferred {
            code: None,
            reply: format!("no MX host for {domain}"),
            host: None,
        };
        for host in hosts {
            let t = self.mx_transport(&host);
            let outcome = classify(t.send_raw(envelope, raw).await, Some(host.clone()));
            match outcome {
                // Only a host we could not talk to sends us to the next MX;
                // an SMTP answer from any of them is the domain's answer.
                Outcome::Deferred { code: None, .. } => last = outcome,
                _ => return outcome,
            }
        }
        last
    }

    fn mx_transport(&self, host: &str) -> Transport {
        let mut map = self.mx_transports.lock().expect("transport map lock");
        map.entry(host.to_owned())
            .or_insert_with(|| {
                let tls = TlsParameters::new(host.to_owned())
                    .map(Tls::Opportunistic)
                    .unwrap_or(Tls::None);
                Transport::builder_dangerous(host)
                    .port(self.mx_port)
                    .tls(tls)
                    .hello_name(self.hello.clone())
                    .timeout(Some(self.timeout))
                    .pool_config(PoolConfig::new().max_size(self.pool_size.min(10)))
                    .build()
            })
            .clone()
    }
}

/// lettre's answer as an outcome: 2xx delivered, 5xx bounced, anything else
/// (4xx, connection, TLS, timeout) deferred.
pub fn classify(
    result: Result<lettre::transport::smtp::response::Response, SmtpError>,
    host: Option<String>,
) -> Outcome {
    match result {
        Ok(resp) => Outcome::Delivered {
            code: Some(u16::from(resp.code())),
            reply: resp.message().collect::<Vec<_>>().join(" "),
            host,
        },
        Err(e) => {
            let code = e.status().map(u16::from);
            let reply = error_chain(&e);
            if e.is_permanent() {
                Outcome::Bounced { code, reply, host }
            } else {
                Outcome::Deferred { code, reply, host }
            }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
