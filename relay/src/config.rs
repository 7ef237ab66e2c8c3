//! Settings: a TOML file (`--config`), then command-line overrides. Every
//! setting and its default is documented in docs/configuration.md.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

use crate::domain::Stream;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address the HTTP API binds.
    pub listen: SocketAddr,
    /// `sqlite://PATH` (created if missing) or `postgres://...`.
    pub database: String,
    /// Name used in EHLO and, for domains without one, in Message-IDs.
    pub hostname: String,
    /// Largest request body the API reads, in bytes.
    pub max_request_bytes: usize,
    /// Accept mail from domains with no DKIM key (sent unsigned). Off by
    /// default: unsigned mail is a deliverability problem waiting to happen.
    pub allow_unsigned: bool,
    /// Store the signed message instead of delivering it.
    pub capture: bool,
    /// Base URL at which recipients reach this relay's unsubscribe pages,
    /// e.g. `https://mail.shop.example` (behind a TLS proxy). None: the
    /// address the API listens on, which suits local trials only.
    pub public_url: Option<String>,
    /// Soft bounces (see docs/list-hygiene.md) for one address within
    /// `soft_bounce_window` that put it on the suppression list.
    pub soft_bounce_limit: u32,
    #[serde(with = "humantime_serde")]
    pub soft_bounce_window: Duration,
    /// How long after a message was accepted a bounce or complaint about
    /// it is believed: a VERP tag or reference older than this is refused
    /// as a replay, and a returned message without one is matched only to
    /// mail accepted within it.
    #[serde(with = "humantime_serde")]
    pub feedback_window: Duration,
    /// Apply bounces and complaints that match no message the relay sent
    /// (no valid VERP tag or reference, no Message-ID and recipient match)
    /// to the address they name. Off: anyone can write such a message.
    pub suppress_unattributed: bool,
    /// DNS servers for MX lookups and `check-domain` (`ip:port`); empty: the system's resolver
    /// configuration (`/etc/resolv.conf`).
    pub dns_servers: Vec<SocketAddr>,
    /// Port for direct MX delivery. 25 on the Internet; other values are for
    /// test set-ups.
    pub mx_port: u16,
    pub dkim: Vec<DkimSettings>,
    pub streams: StreamsSettings,
    pub lists: ListsSettings,
    pub webhooks: WebhooksSettings,
    pub limits: LimitsSettings,
    pub alerts: AlertSettings,
    /// Longest a request may take, body upload included (then 408).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Longest a client may take to send its request headers (and, with
    /// TLS, to finish the handshake) before the connection is closed.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Serve HTTPS with this certificate; reloaded on SIGHUP.
    pub tls: Option<TlsSettings>,
    /// SMTP submission for shop platforms (docs/configuration.md).
    pub submission: SubmissionSettings,
    /// The MX for the return-path domains: bounces, complaints, unsubscribes.
    pub inbound: InboundSettings,
    /// The database password, read from this file (trailing newline
    /// dropped) or environment variable instead of written in `database`.
    pub database_password_file: Option<PathBuf>,
    pub database_password_env: Option<String>,
    /// This relay's name among the relays sharing the database: its leases
    /// carry it, and a restart takes back the leases the previous run held
    /// (docs/operations.md). Unique per running process. Unset: read from
    /// `node_id_file`.
    pub node_id: Option<String>,
    /// Holds the node id, created with a new one on first start; relative
    /// paths are taken from the configuration file's directory.
    pub node_id_file: PathBuf,
    /// Per-provider limits and reply rules over the built-in table
    /// (docs/operations.md, "Traffic shaping").
    pub shaping: crate::delivery::shaping::ShapingSettings,
}

/// `[tls]`: PEM files. The chain starts with the server's certificate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[submission]`: SMTP listeners taking mail from shop platforms, with
/// AUTH by API key. No `listen`: no SMTP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubmissionSettings {
    /// Addresses to listen on, e.g. `["0.0.0.0:587", "0.0.0.0:465"]`. Each
    /// offers STARTTLS and also serves implicit TLS to a client that opens
    /// with a TLS handshake.
    pub listen: Vec<SocketAddr>,
    /// Certificate for STARTTLS and implicit TLS; default the `[tls]` pair.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Allow AUTH before TLS. Only for loopback trials and tests: the
    /// password is an API key.
    pub allow_plaintext_auth: bool,
    /// Recipients one message may have (more: `452 4.5.3`).
    pub max_recipients: usize,
    /// Connections at once on each listener, and from one client address.
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    /// Longest wait for the next command line.
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    /// Longest a client may take to send a message's DATA.
    #[serde(with = "humantime_serde")]
    pub data_timeout: Duration,
}

impl Default for SubmissionSettings {
    fn default() -> Self {
        SubmissionSettings {
            listen: Vec::new(),
            tls_cert: None,
            tls_key: None,
            allow_plaintext_auth: false,
            max_recipients: 1000,
            max_connections: 1000,
            max_connections_per_client: 50,
            command_timeout: Duration::from_secs(5 * MIN),
            data_timeout: Duration::from_secs(10 * MIN),
        }
    }
}

/// `[inbound]`: an SMTP listener taking mail for the relay's own
/// addresses: VERP bounces (`bounces+…`), `mailto:` unsubscribes
/// (`unsubscribe+…`) and the feedback-loop addresses. Connection limits
/// and timeouts are `[submission]`'s.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InboundSettings {
    /// E.g. `["0.0.0.0:25"]`. No AUTH; STARTTLS with the `[submission]`
    /// (or `[tls]`) certificate.
    pub listen: Vec<SocketAddr>,
    /// Domains it takes mail for; empty: every stream's return-path
    /// domain, and the `[[dkim]]` domains for streams without one.
    pub domains: Vec<String>,
    /// Where mailbox providers' feedback loops send ARF complaint reports,
    /// e.g. `["fbl@bounces.shop.example"]`.
    pub feedback_addresses: Vec<String>,
}

impl Settings {
    /// The domains the inbound MX answers for (lower case).
    pub fn inbound_domains(&self) -> Vec<String> {
        let mut out: Vec<String> = if self.inbound.domains.is_empty() {
            let mut d = Vec::new();
            for stream in crate::domain::Stream::ALL {
                let rp = &self.streams.get(stream).return_path;
                if rp.is_empty() {
                    d.extend(self.dkim.iter().map(|k| k.domain.clone()));
                } else {
                    d.push(rp.clone());
                }
            }
            d
        } else {
            self.inbound.domains.clone()
        };
        for d in &mut out {
            *d = d.trim_end_matches('.').to_ascii_lowercase();
        }
        out.sort();
        out.dedup();
        out
    }
}

/// `[alerts]`: the rates `mailroom report` warns about and the relay
/// watches itself (metrics `mailroom_rate_alert`, a log warning).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertSettings {
    /// Complaints / delivered. Gmail and Yahoo ask for under 0.1 %.
    pub complaint_rate: f64,
    /// Hard bounces / accepted.
    pub hard_bounce_rate: f64,
    /// Deferred / attempts at one destination (with at least 20 attempts).
    pub deferral_rate: f64,
    /// How often the relay checks the last day's rates.
    #[serde(with = "humantime_serde")]
    pub check_every: Duration,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            complaint_rate: 0.001,
            hard_bounce_rate: 0.02,
            deferral_rate: 0.2,
            check_every: Duration::from_secs(5 * MIN),
        }
    }
}

/// `[limits]`: rate limits and the lockout of clients presenting bad keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSettings {
    /// API requests per second per key (token bucket; 0: no limit).
    pub requests_per_second: u32,
    /// Requests a key may make at once before the rate applies.
    pub burst: u32,
    /// Inbound webhook requests per second per key, a budget of their own.
    pub webhook_requests_per_second: u32,
    /// Requests per second per client address to the public pages
    /// (one-click unsubscribe, confirmation).
    pub public_requests_per_second: u32,
    /// Failed authentications from one client address within
    /// `auth_failure_window` that lock it out for `lockout`.
    pub auth_failures: u32,
    #[serde(with = "humantime_serde")]
    pub auth_failure_window: Duration,
    #[serde(with = "humantime_serde")]
    pub lockout: Duration,
    /// Take the client address from `X-Forwarded-For` (only behind a proxy
    /// that sets it; otherwise clients could pick their own address).
    pub trust_forwarded_for: bool,
}

impl Default for LimitsSettings {
    fn default() -> Self {
        LimitsSettings {
            requests_per_second: 1000,
            burst: 2000,
            webhook_requests_per_second: 100,
            public_requests_per_second: 5,
            auth_failures: 10,
            auth_failure_window: Duration::from_secs(5 * MIN),
            lockout: Duration::from_secs(15 * MIN),
            trust_forwarded_for: false,
        }
    }
}

/// `[lists]`: double opt-in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListsSettings {
    /// How long a confirmation link works.
    #[serde(with = "humantime_serde")]
    pub confirm_link_ttl: Duration,
    /// Unconfirmed subscribers older than this are deleted, consent trail
    /// and all: without consent there is nothing to keep.
    #[serde(with = "humantime_serde")]
    pub pending_expiry: Duration,
    /// A repeated subscribe re-sends the confirmation at most this often,
    /// so the endpoint can't be used to flood someone's inbox.
    #[serde(with = "humantime_serde")]
    pub resend_interval: Duration,
    /// Look up the domain's MX (or A/AAAA) records before storing a
    /// subscriber; a domain that can't receive mail is refused.
    pub check_mx: bool,
}

impl Default for ListsSettings {
    fn default() -> Self {
        ListsSettings {
            confirm_link_ttl: Duration::from_secs(48 * HOUR),
            pending_expiry: Duration::from_secs(7 * 24 * HOUR),
            resend_interval: Duration::from_secs(10 * MIN),
            check_mx: false,
        }
    }
}

/// `[webhooks]`: outbound event delivery.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksSettings {
    /// Delay before retry n (1-based); the last entry repeats.
    #[serde(deserialize_with = "duration_list")]
    pub retry_schedule: Vec<Duration>,
    /// An event not accepted within this age of its creation is given up.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Limit for one POST to an endpoint, connection included.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for WebhooksSettings {
    fn default() -> Self {
        WebhooksSettings {
            retry_schedule: [30, MIN, 5 * MIN, 15 * MIN, HOUR, 3 * HOUR, 6 * HOUR]
                .map(Duration::from_secs)
                .to_vec(),
            max_age: Duration::from_secs(3 * 24 * HOUR),
            timeout: Duration::from_secs(10),
        }
    }
}

impl WebhooksSettings {
    /// Delay after failed attempt `attempts` (1-based).
    pub fn retry_delay(&self, attempts: i64) -> Duration {
        let i = (attempts.max(1) as usize - 1).min(self.retry_schedule.len().saturating_sub(1));
        self.retry_schedule
            .get(i)
            .copied()
            .unwrap_or(Duration::from_secs(60))
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: "127.0.0.1:8025".parse().expect("valid literal"),
            database: "sqlite://mailroom.db".into(),
            hostname: "localhost".into(),
            max_request_bytes: 10 * 1024 * 1024,
            allow_unsigned: false,
            capture: false,
            public_url: None,
            soft_bounce_limit: 3,
            soft_bounce_window: Duration::from_secs(7 * 24 * 3600),
            feedback_window: Duration::from_secs(30 * 24 * 3600),
            suppress_unattributed: false,
            dns_servers: Vec::new(),
            mx_port: 25,
            dkim: Vec::new(),
            streams: StreamsSettings::default(),
            lists: ListsSettings::default(),
            webhooks: WebhooksSettings::default(),
            limits: LimitsSettings::default(),
            alerts: AlertSettings::default(),
            request_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            tls: None,
            submission: SubmissionSettings::default(),
            inbound: InboundSettings::default(),
            database_password_file: None,
            database_password_env: None,
            node_id: None,
            node_id_file: PathBuf::from("mailroom.node-id"),
            shaping: crate::delivery::shaping::ShapingSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimSettings {
    pub domain: String,
    pub selector: String,
    /// Path to the private key, PEM (PKCS#8 Ed25519 or RSA, or PKCS#1 RSA).
    pub key: PathBuf,
    /// Use this key only for one stream; a key without `stream` serves both
    /// streams unless a stream-specific key exists for the same domain.
    #[serde(default)]
    pub stream: Option<Stream>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(from = "StreamsPatch")]
pub struct StreamsSettings {
    pub transactional: StreamSettings,
    pub marketing: StreamSettings,
}

/// `[streams.*]` as written in the file: each key optional and laid over
/// that stream's own defaults, so `[streams.marketing]` with one line
/// changes one thing.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamsPatch {
    #[serde(default)]
    transactional: StreamPatch,
    #[serde(default)]
    marketing: StreamPatch,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamPatch {
    route: Option<String>,
    concurrency: Option<usize>,
    rate_limit: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    max_age: Option<Duration>,
    #[serde(default, deserialize_with = "some_duration_list")]
    retry_schedule: Option<Vec<Duration>>,
    return_path: Option<String>,
    #[serde(default, with = "humantime_serde")]
    lease: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    smtp_timeout: Option<Duration>,
    source_address: Option<std::net::IpAddr>,
    paused: Option<bool>,
    lint_max_score: Option<f64>,
    messages_per_hour: Option<u32>,
    smtp_password_file: Option<PathBuf>,
    smtp_password_env: Option<String>,
    shaping: Option<crate::delivery::shaping::ShapingPatch>,
}

impl StreamPatch {
    fn over(self, base: StreamSettings) -> StreamSettings {
        StreamSettings {
            route: self.route.unwrap_or(base.route),
            concurrency: self.concurrency.unwrap_or(base.concurrency),
            rate_limit: self.rate_limit.unwrap_or(base.rate_limit),
            max_age: self.max_age.unwrap_or(base.max_age),
            retry_schedule: self.retry_schedule.unwrap_or(base.retry_schedule),
            return_path: self.return_path.unwrap_or(base.return_path),
            lease: self.lease.unwrap_or(base.lease),
            smtp_timeout: self.smtp_timeout.unwrap_or(base.smtp_timeout),
            source_address: self.source_address.or(base.source_address),
            paused: self.paused.unwrap_or(base.paused),
            lint_max_score: self.lint_max_score.or(base.lint_max_score),
            messages_per_hour: self.messages_per_hour.unwrap_or(base.messages_per_hour),
            smtp_password_file: self.smtp_password_file.or(base.smtp_password_file),
            smtp_password_env: self.smtp_password_env.or(base.smtp_password_env),
            shaping: self.shaping.unwrap_or(base.shaping),
        }
    }
}

impl From<StreamsPatch> for StreamsSettings {
    fn from(p: StreamsPatch) -> Self {
        StreamsSettings {
            transactional: p.transactional.over(StreamSettings::transactional()),
            marketing: p.marketing.over(StreamSettings::marketing()),
        }
    }
}

impl Default for StreamsSettings {
    fn default() -> Self {
        StreamsSettings {
            transactional: StreamSettings::transactional(),
            marketing: StreamSettings::marketing(),
        }
    }
}

impl StreamsSettings {
    pub fn get(&self, stream: Stream) -> &StreamSettings {
        match stream {
            Stream::Transactional => &self.transactional,
            Stream::Marketing => &self.marketing,
        }
    }

    pub fn get_mut(&mut self, stream: Stream) -> &mut StreamSettings {
        match stream {
            Stream::Transactional => &mut self.transactional,
            Stream::Marketing => &mut self.marketing,
        }
    }
}

/// One stream's settings; see docs/configuration.md.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// `"mx"` to deliver to each recipient domain's MX hosts, or a smarthost
    /// URL: `smtp://host:port` (plain), `smtp://host:587?tls=required`
    /// (STARTTLS), `smtps://user:pass@host:465` (implicit TLS).
    pub route: String,
    /// Deliveries in flight at once for this stream.
    pub concurrency: usize,
    /// Messages per second this stream may start; 0 means no limit.
    pub rate_limit: u32,
    /// A recipient not delivered within this age of acceptance expires.
    pub max_age: Duration,
    /// Delay before retry n (1-based); the last entry repeats.
    pub retry_schedule: Vec<Duration>,
    /// Domain of the envelope sender (Return-Path), e.g. `bounces.shop.example`.
    /// Empty: the From address's domain.
    pub return_path: String,
    /// How long a claimed recipient stays leased to one worker. A process
    /// that dies holding a lease loses it after this long.
    pub lease: Duration,
    /// Limit for connecting, each set-up step, and one whole transaction.
    pub smtp_timeout: Duration,
    /// Local IP address outbound SMTP connections are made from, so each
    /// stream can have its own sending IP (and reputation). None: the OS picks.
    pub source_address: Option<std::net::IpAddr>,
    /// Accept and queue, but deliver nothing until unpaused (incidents,
    /// reputation trouble, planned sends).
    pub paused: bool,
    /// Refuse (422, with the lint report) messages whose spam-risk score is
    /// above this. None: no lint gate. See docs/lint-rules.md for scores.
    pub lint_max_score: Option<f64>,
    /// Messages per hour one API key may send on this stream (token bucket
    /// with a burst of the same size); 0: no limit.
    pub messages_per_hour: u32,
    /// The smarthost password, read from this file or environment variable
    /// instead of written in `route` (which then names only the user).
    pub smtp_password_file: Option<PathBuf>,
    pub smtp_password_env: Option<String>,
    /// This stream's own shaping, over `[shaping]`: its limits per provider
    /// (and rules) differ from the other stream's.
    pub shaping: crate::delivery::shaping::ShapingPatch,
}

fn duration_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| {
            humantime::parse_duration(s)
                .map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}")))
        })
        .collect()
}

fn some_duration_list<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<Duration>>, D::Error> {
    duration_list(d).map(Some)
}

/// A secret from a file (trailing newline dropped) or an environment
/// variable; None when neither is configured.
fn secret(what: &str, file: Option<&Path>, env: Option<&str>) -> anyhow::Result<Option<String>> {
    match (file, env) {
        (Some(_), Some(_)) => {
            anyhow::bail!("{what}: give a password file or an environment variable, not both")
        }
        (Some(f), None) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("{what}: reading password file {}", f.display()))?;
            Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()))
        }
        (None, Some(v)) => std::env::var(v)
            .map(Some)
            .with_context(|| format!("{what}: environment variable {v} is not set")),
        (None, None) => Ok(None),
    }
}

/// `url` with `password` set (percent-encoded as the URL needs).
fn with_password(url: &str, password: &str) -> anyhow::Result<String> {
    let mut u = url::Url::parse(url).context("not a URL to put a password in")?;
    anyhow::ensure!(
        !u.username().is_empty(),
        "a password needs a user name in the URL (scheme://USER@host)"
    );
    u.set_password(Some(password))
        .map_err(|()| anyhow::anyhow!("this URL can't carry a password"))?;
    Ok(u.to_string())
}

/// Short, because the heartbeat renews it every lease/3 while a delivery
/// runs: a relay that dies and never comes back holds its mail this long.
fn default_lease() -> Duration {
    Duration::from_secs(30)
}

fn default_smtp_timeout() -> Duration {
    Duration::from_secs(60)
}

const MIN: u64 = 60;
const HOUR: u64 = 3600;

impl StreamSettings {
    /// Password resets are useless after a day or two: retry early and often,
    /// give up after 2 days.
    pub fn transactional() -> Self {
        StreamSettings {
            route: "mx".into(),
            concurrency: 32,
            rate_limit: 0,
            max_age: Duration::from_secs(2 * 24 * HOUR),
            retry_schedule: [MIN, 2 * MIN, 5 * MIN, 10 * MIN, 30 * MIN, HOUR]
                .map(Duration::from_secs)
                .to_vec(),
            return_path: String::new(),
            lease: default_lease(),
            smtp_timeout: default_smtp_timeout(),
            source_address: None,
            paused: false,
            lint_max_score: None,
            messages_per_hour: 0,
            smtp_password_file: None,
            smtp_password_env: None,
            shaping: crate::delivery::shaping::ShapingPatch::default(),
        }
    }

    /// RFC 5321 §4.5.4.1: at least 30 minutes between late retries and 4-5
    /// days before giving up.
    pub fn marketing() -> Self {
        StreamSettings {
            route: "mx".into(),
            concurrency: 16,
            rate_limit: 0,
            max_age: Duration::from_secs(4 * 24 * HOUR),
            retry_schedule: [5 * MIN, 30 * MIN, HOUR, 2 * HOUR, 4 * HOUR]
                .map(Duration::from_secs)
                .to_vec(),
            return_path: String::new(),
            lease: default_lease(),
            smtp_timeout: default_smtp_timeout(),
            source_address: None,
            paused: false,
            lint_max_score: None,
            messages_per_hour: 0,
            smtp_password_file: None,
            smtp_password_env: None,
            shaping: crate::delivery::shaping::ShapingPatch::default(),
        }
    }

    /// Delay before the retry that follows attempt number `attempts` (1-based).
    pub fn retry_delay(&self, attempts: u32) -> Duration {
        let i = (attempts.max(1) as usize - 1).min(self.retry_schedule.len().saturating_sub(1));
        self.retry_schedule
            .get(i)
            .copied()
            .unwrap_or(Duration::from_secs(5 * MIN))
    }
}

impl Settings {
    /// The bounce policy these settings configure, for every path that
    /// sees a bounce.
    pub fn bounce_policy(&self) -> list_hygiene::bounce::BouncePolicy {
        list_hygiene::bounce::BouncePolicy {
            soft_bounce_limit: self.soft_bounce_limit,
            soft_bounce_window: self.soft_bounce_window,
        }
    }

    /// Reads `path` if given, else the defaults.
    ///
    /// # Errors
    /// The file can't be read, isn't TOML, or holds an unknown or invalid setting.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let settings: Settings = match path {
            None => Settings::default(),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading config {}", p.display()))?;
                let mut s: Settings = toml::from_str(&text)
                    .with_context(|| format!("parsing config {}", p.display()))?;
                if let Some(dir) = p.parent() {
                    if s.node_id_file.is_relative() {
                        s.node_id_file = dir.join(&s.node_id_file);
                    }
                    if let Some(f) = s.shaping.file.as_mut()
                        && f.is_relative()
                    {
                        *f = dir.join(&*f);
                    }
                }
                s
            }
        };
        settings.check()?;
        Ok(settings)
    }

    /// Puts the passwords kept in files or environment variables into the
    /// database URL and smarthost routes. Call once, after command-line
    /// overrides; the values are never logged (URLs are redacted).
    ///
    /// # Errors
    /// A file or variable named can't be read, or the URL can't take it.
    pub fn resolve_secrets(&mut self) -> anyhow::Result<()> {
        if let Some(p) = secret(
            "database",
            self.database_password_file.as_deref(),
            self.database_password_env.as_deref(),
        )? {
            self.database = with_password(&self.database, &p).context("database")?;
        }
        for stream in Stream::ALL {
            let s = self.streams.get_mut(stream);
            if let Some(p) = secret(
                stream.as_str(),
                s.smtp_password_file.as_deref(),
                s.smtp_password_env.as_deref(),
            )? {
                s.route = with_password(&s.route, &p)
                    .with_context(|| format!("streams.{stream}.route"))?;
            }
        }
        Ok(())
    }

    /// Where this process's node id comes from.
    pub fn node_id_source(&self) -> crate::node::NodeIdSource {
        match &self.node_id {
            Some(id) => crate::node::NodeIdSource::Configured(id.clone()),
            None => crate::node::NodeIdSource::File(self.node_id_file.clone()),
        }
    }

    /// Where a stream's mail goes: its `route`, or nowhere in capture mode.
    ///
    /// # Errors
    /// The route doesn't parse (validation refuses such a config).
    pub fn route(&self, stream: Stream) -> anyhow::Result<crate::delivery::Route> {
        if self.capture {
            return Ok(crate::delivery::Route::Capture);
        }
        crate::delivery::Route::parse(&self.streams.get(stream).route)
    }

    /// Whether a stream's deliveries are shaped: only the `mx` route is (a
    /// smarthost does its own; capture mode sends nothing).
    pub fn shaped(&self, stream: Stream) -> bool {
        self.route(stream)
            .is_ok_and(|r| r == crate::delivery::Route::Mx)
    }

    /// A stream's shaping table: the built-in one, then `[shaping] file`,
    /// then `[shaping]`, then `[streams.STREAM.shaping]`.
    ///
    /// # Errors
    /// The file can't be read or parsed, or a layer is invalid.
    pub fn shaping_table(
        &self,
        stream: Stream,
    ) -> anyhow::Result<crate::delivery::shaping::ShapingTable> {
        use crate::delivery::shaping::{DEFAULTS, ShapingPatch, ShapingTable};
        let builtin: ShapingPatch = toml::from_str(DEFAULTS).context("built-in shaping table")?;
        let file = match &self.shaping.file {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading shaping file {}", p.display()))?;
                Some(
                    toml::from_str::<ShapingPatch>(&text)
                        .with_context(|| format!("parsing shaping file {}", p.display()))?,
                )
            }
            None => None,
        };
        let mut layers = vec![&builtin];
        layers.extend(file.as_ref());
        layers.push(&self.shaping.inline);
        layers.push(&self.streams.get(stream).shaping);
        ShapingTable::build(&layers).with_context(|| format!("shaping of the {stream} stream"))
    }

    /// The shortest lease of the streams: the heartbeat keeps up with it.
    pub fn shortest_lease(&self) -> Duration {
        Stream::ALL
            .iter()
            .map(|s| self.streams.get(*s).lease)
            .min()
            .unwrap_or_else(default_lease)
    }

    /// Checks what serde can't: values within range and routes that parse.
    pub fn check(&self) -> anyhow::Result<()> {
        if let Some(id) = &self.node_id {
            crate::node::NodeId::parse(id).context("node_id")?;
        }
        anyhow::ensure!(
            self.soft_bounce_limit >= 1,
            "soft_bounce_limit must be at least 1"
        );
        anyhow::ensure!(
            self.feedback_window >= Duration::from_secs(3600),
            "feedback_window must be at least 1h: bounces arrive hours or days after the mail"
        );
        if let Some(u) = &self.public_url {
            let url = url::Url::parse(u).with_context(|| format!("public_url {u:?}"))?;
            anyhow::ensure!(
                matches!(url.scheme(), "http" | "https") && url.host().is_some(),
                "public_url must be an http(s) URL with a host, e.g. https://mail.shop.example"
            );
        }
        anyhow::ensure!(
            !self.alerts.check_every.is_zero(),
            "alerts.check_every must be positive"
        );
        anyhow::ensure!(
            !self.request_timeout.is_zero() && !self.header_timeout.is_zero(),
            "request_timeout and header_timeout must be positive"
        );
        anyhow::ensure!(
            !self.webhooks.retry_schedule.is_empty(),
            "webhooks.retry_schedule must not be empty"
        );
        anyhow::ensure!(
            !self.webhooks.timeout.is_zero(),
            "webhooks.timeout must be positive"
        );
        anyhow::ensure!(
            !self.lists.confirm_link_ttl.is_zero() && !self.lists.pending_expiry.is_zero(),
            "lists.confirm_link_ttl and lists.pending_expiry must be positive"
        );
        for stream in Stream::ALL {
            let s = self.streams.get(stream);
            anyhow::ensure!(
                s.concurrency > 0,
                "streams.{stream}.concurrency must be at least 1"
            );
            anyhow::ensure!(
                !s.retry_schedule.is_empty(),
                "streams.{stream}.retry_schedule must not be empty"
            );
            anyhow::ensure!(
                s.lease >= Duration::from_secs(1),
                "streams.{stream}.lease must be at least 1s"
            );
            anyhow::ensure!(
                s.lint_max_score.is_none_or(|m| m.is_finite() && m >= 0.0),
                "streams.{stream}.lint_max_score must be a number of at least 0"
            );
            crate::delivery::Route::parse(&s.route)
                .with_context(|| format!("streams.{stream}.route"))?;
            self.shaping_table(stream)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_the_documented_defaults() {
        let s: Settings = toml::from_str("").unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8025");
        assert_eq!(s.database, "sqlite://mailroom.db");
        assert_eq!(
            s.streams.marketing.max_age,
            Duration::from_secs(4 * 24 * 3600)
        );
        s.check().unwrap();
    }

    #[test]
    fn a_full_file_parses() {
        let s: Settings = toml::from_str(
            r#"
            listen = "0.0.0.0:9000"
            [[dkim]]
            domain = "shop.example"
            selector = "s1"
            key = "/etc/mailroom/s1.pem"
            [streams.marketing]
            route = "smtp://127.0.0.1:2526"
            concurrency = 4
            rate_limit = 50
            max_age = "5d"
            retry_schedule = ["10m", "1h"]
            return_path = "bounces.shop.example"
            "#,
        )
        .unwrap();
        s.check().unwrap();
        assert_eq!(s.streams.marketing.retry_delay(1), Duration::from_secs(600));
        assert_eq!(
            s.streams.marketing.retry_delay(9),
            Duration::from_secs(3600)
        );
        assert_eq!(s.streams.transactional.route, "mx");
    }

    #[test]
    fn a_partial_stream_table_keeps_that_streams_defaults() {
        let s: Settings =
            toml::from_str("[streams.marketing]\nlint_max_score = 4.5\nrate_limit = 50").unwrap();
        s.check().unwrap();
        assert_eq!(s.streams.marketing.lint_max_score, Some(4.5));
        assert_eq!(s.streams.marketing.rate_limit, 50);
        let defaults = StreamSettings::marketing();
        assert_eq!(s.streams.marketing.max_age, defaults.max_age);
        assert_eq!(s.streams.marketing.retry_schedule, defaults.retry_schedule);
        assert_eq!(s.streams.transactional.lint_max_score, None);
        let bad: Settings = toml::from_str("[streams.marketing]\nlint_max_score = -1").unwrap();
        assert!(bad.check().is_err());
        assert!(toml::from_str::<Settings>("[streams.marketing]\nroute_x = 1").is_err());
    }

    #[test]
    fn an_unknown_setting_is_an_error() {
        assert!(toml::from_str::<Settings>("listn = \"x\"").is_err());
        let bad: Settings = toml::from_str("[streams.marketing]\nroute = \"ftp://x\"\nconcurrency = 1\nmax_age = \"1d\"\nretry_schedule = [\"1m\"]").unwrap();
        assert!(bad.check().is_err());
    }

    #[test]
    fn passwords_come_from_files_and_environment_variables() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("smtp-password");
        std::fs::write(&file, "s3cr:t/@x\n").unwrap();
        // SAFETY (edition 2024): this test alone uses this variable.
        unsafe { std::env::set_var("MAILROOM_TEST_DB_PASSWORD", "pg pass") };
        let text = format!(
            "database = \"postgres://mailroom@db.internal/mailroom\"\n\
             database_password_env = \"MAILROOM_TEST_DB_PASSWORD\"\n\
             [streams.marketing]\nroute = \"smtps://news@smtp.provider.example:465\"\n\
             smtp_password_file = \"{}\"\n",
            file.display()
        );
        let mut s: Settings = toml::from_str(&text).unwrap();
        s.resolve_secrets().unwrap();
        assert_eq!(
            s.database,
            "postgres://mailroom:pg%20pass@db.internal/mailroom"
        );
        let route = crate::delivery::Smarthost::parse(&s.streams.marketing.route).unwrap();
        assert_eq!(
            route.credentials,
            Some(("news".to_string(), "s3cr:t/@x".to_string()))
        );
        assert!(!route.display.contains("s3cr"), "{}", route.display);
        let bad: Settings = toml::from_str(
            "[streams.marketing]\nroute = \"smtp://host.example\"\nsmtp_password_env = \"MAILROOM_TEST_DB_PASSWORD\"",
        )
        .unwrap();
        let mut bad = bad;
        assert!(
            bad.resolve_secrets().is_err(),
            "no user to give the password to"
        );
    }

    #[test]
    fn the_documented_example_loads_and_lists_and_webhooks_have_defaults() {
        let doc = include_str!("../../docs/configuration.md");
        let start = doc.find("## Example").unwrap();
        let block = &doc[start..];
        let toml_start = block.find("```toml\n").unwrap() + "```toml\n".len();
        let toml_end = toml_start + block[toml_start..].find("```").unwrap();
        let s: Settings = toml::from_str(&block[toml_start..toml_end]).unwrap();
        assert!(s.lists.check_mx);
        assert_eq!(s.webhooks.timeout, Duration::from_secs(5));
        assert_eq!(s.webhooks.max_age, Duration::from_secs(3 * 24 * 3600));
        let d = Settings::default();
        assert_eq!(d.lists.confirm_link_ttl, Duration::from_secs(48 * 3600));
        assert_eq!(d.lists.pending_expiry, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(d.webhooks.retry_delay(1), Duration::from_secs(30));
        assert_eq!(d.webhooks.retry_delay(100), Duration::from_secs(6 * 3600));
        let bad: Settings = toml::from_str("[webhooks]\nretry_schedule = []").unwrap();
        assert!(bad.check().is_err());
    }
}
