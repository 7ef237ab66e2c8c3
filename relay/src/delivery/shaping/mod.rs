//! Traffic shaping per destination provider: how many connections, how
//! many deliveries per connection and how fast one stream may send to
//! Google, Microsoft, Yahoo, Apple… and which replies slow or stop it.
//!
//! This module is the pure part: the shaping table (built-in
//! `defaults.toml`, then the operator's file, then `[shaping]` in the
//! configuration, then the stream's own `[streams.X.shaping]`), matching a
//! destination to its provider, reply rules and the stepwise recovery of a
//! throttled provider. [`runtime`] applies it to deliveries.

pub mod runtime;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

pub use runtime::{Admission, Shaper};

/// The built-in table, shipped as data.
pub const DEFAULTS: &str = include_str!("defaults.toml");

/// The provider name of destinations no provider matches.
pub const DEFAULT_PROVIDER: &str = "default";

/// After a throttle without a base rate to return to, the rate doubles
/// this many times, one step each `recover_every`, before it is lifted.
const STEPS_TO_LIFT: u32 = 6;

/// A rate: `N/s`, `N/sec`, `N/min`, `N/m`, `N/h`, `N/hr`, `N/hour`, `N/d`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    per_second: f64,
}

impl Rate {
    pub fn per_second(self) -> f64 {
        self.per_second
    }

    pub fn from_per_second(per_second: f64) -> Rate {
        Rate { per_second }
    }

    /// # Errors
    /// Not `NUMBER/UNIT`, a number that isn't positive, or an unknown unit.
    pub fn parse(s: &str) -> anyhow::Result<Rate> {
        let (n, unit) = s
            .split_once('/')
            .with_context(|| format!("rate {s:?}: expected N/s, N/min or N/h"))?;
        let n: f64 = n
            .trim()
            .parse()
            .with_context(|| format!("rate {s:?}: {n:?} is not a number"))?;
        anyhow::ensure!(n.is_finite() && n > 0.0, "rate {s:?}: must be more than 0");
        let secs = match unit.trim() {
            "s" | "sec" | "second" => 1.0,
            "m" | "min" | "minute" => 60.0,
            "h" | "hr" | "hour" => 3600.0,
            "d" | "day" => 86_400.0,
            other => anyhow::bail!("rate {s:?}: unknown unit {other:?} (s, min, h, d)"),
        };
        Ok(Rate {
            per_second: n / secs,
        })
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = self.per_second;
        if p >= 1.0 {
            write!(f, "{}/s", round(p))
        } else if p * 60.0 >= 1.0 {
            write!(f, "{}/min", round(p * 60.0))
        } else {
            write!(f, "{}/h", round(p * 3600.0))
        }
    }
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Rate::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One provider's limits, all set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Limits {
    /// Open connections at once, across every relay on the database.
    pub max_connections: u32,
    /// Messages sent on one connection before it is closed and a new one
    /// opened.
    pub max_deliveries_per_connection: u32,
    /// Messages started per unit of time (shared out among the live relays);
    /// None: no limit.
    pub message_rate: Option<Rate>,
    /// New connections per unit of time (shared out likewise); None: no limit.
    pub connection_rate: Option<Rate>,
    /// How long an unused connection is kept (with its slot) for the next
    /// message. While another relay waits for a slot of this provider, idle
    /// connections close after 100 ms whatever this says.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

/// Limits as written: each field optional, laid over what is below it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsPatch {
    pub max_connections: Option<u32>,
    pub max_deliveries_per_connection: Option<u32>,
    pub message_rate: Option<RateOrNone>,
    pub connection_rate: Option<RateOrNone>,
    #[serde(default, with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
}

/// A rate, or `"none"` to lift a limit set below.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateOrNone {
    Rate(Rate),
    None,
}

impl<'de> Deserialize<'de> for RateOrNone {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "none" {
            return Ok(RateOrNone::None);
        }
        Rate::parse(&s)
            .map(RateOrNone::Rate)
            .map_err(serde::de::Error::custom)
    }
}

impl LimitsPatch {
    fn over(&self, base: &Limits) -> Limits {
        let rate = |p: Option<RateOrNone>, b: Option<Rate>| match p {
            Some(RateOrNone::Rate(r)) => Some(r),
            Some(RateOrNone::None) => None,
            None => b,
        };
        Limits {
            max_connections: self.max_connections.unwrap_or(base.max_connections),
            max_deliveries_per_connection: self
                .max_deliveries_per_connection
                .unwrap_or(base.max_deliveries_per_connection),
            message_rate: rate(self.message_rate, base.message_rate),
            connection_rate: rate(self.connection_rate, base.connection_rate),
            idle_timeout: self.idle_timeout.unwrap_or(base.idle_timeout),
        }
    }

    fn then(&mut self, other: &LimitsPatch) {
        self.max_connections = other.max_connections.or(self.max_connections);
        self.max_deliveries_per_connection = other
            .max_deliveries_per_connection
            .or(self.max_deliveries_per_connection);
        self.message_rate = other.message_rate.or(self.message_rate);
        self.connection_rate = other.connection_rate.or(self.connection_rate);
        self.idle_timeout = other.idle_timeout.or(self.idle_timeout);
    }
}

/// A provider as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderPatch {
    /// MX host name suffixes (`google.com` matches `aspmx.l.google.com`).
    #[serde(default)]
    pub mx_suffixes: Vec<String>,
    /// Recipient domains known to be this provider's, matched before any
    /// MX lookup (and used to count queued mail per provider).
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(flatten)]
    pub limits: LimitsPatch,
}

/// What a matching reply does to its provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Nothing beyond the recipient's own retry (a per-mailbox reply).
    None,
    /// Send at most `rate` for `duration`, then recover stepwise.
    Throttle,
    /// Send nothing for `duration`, then resume at `rate` and recover
    /// stepwise.
    Suspend,
}

/// A reply rule as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    /// Only replies from this provider; none: any.
    pub provider: Option<String>,
    pub code: Option<u16>,
    /// A prefix of the enhanced status code (`4.7.28`, `4.2.`).
    pub enhanced: Option<String>,
    /// A regular expression on the reply text, case-insensitive.
    pub text: Option<String>,
    pub action: Action,
    /// Throttle: the rate while throttled; suspend: the rate resumed at
    /// (default 1/s).
    pub rate: Option<Rate>,
    #[serde(default, with = "humantime_serde")]
    pub duration: Option<Duration>,
    /// How often the rate doubles once the period is over (default 10m).
    #[serde(default, with = "humantime_serde")]
    pub recover_every: Option<Duration>,
}

/// A shaping layer: the built-in file, an operator's file, `[shaping]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShapingPatch {
    #[serde(default)]
    pub default: LimitsPatch,
    #[serde(default)]
    pub provider: BTreeMap<String, ProviderPatch>,
    #[serde(default)]
    pub rule: Vec<RuleSpec>,
}

/// `[shaping]` in the configuration: an optional file, then inline layers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShapingSettings {
    /// A shaping file laid over the built-in one (same format).
    pub file: Option<PathBuf>,
    #[serde(flatten)]
    pub inline: ShapingPatch,
}

/// A matched provider: its name and limits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Provider {
    pub name: String,
    pub mx_suffixes: Vec<String>,
    pub domains: Vec<String>,
    pub limits: Limits,
}

/// A compiled reply rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub provider: Option<String>,
    pub code: Option<u16>,
    pub enhanced: Option<String>,
    pub text: Option<regex::Regex>,
    pub action: Action,
    pub rate: Option<Rate>,
    pub duration: Duration,
    pub recover_every: Duration,
}

/// One stream's shaping: every provider with its limits, and the rules.
#[derive(Debug, Clone)]
pub struct ShapingTable {
    pub default: Provider,
    /// By name.
    pub providers: BTreeMap<String, Provider>,
    /// First match wins: the configuration's rules before the file's
    /// before the built-in ones.
    pub rules: Vec<Rule>,
}

impl ShapingTable {
    /// The table from its layers, lowest first (the built-in one first).
    ///
    /// # Errors
    /// A provider has no way to match, a limit is 0, or a rule is incomplete
    /// or its regular expression doesn't compile.
    pub fn build(layers: &[&ShapingPatch]) -> anyhow::Result<ShapingTable> {
        let mut default = LimitsPatch::default();
        let mut providers: BTreeMap<String, ProviderPatch> = BTreeMap::new();
        let mut rules: Vec<Rule> = Vec::new();
        for layer in layers {
            default.then(&layer.default);
            for (name, p) in &layer.provider {
                let entry = providers.entry(name.clone()).or_default();
                if !p.mx_suffixes.is_empty() {
                    entry.mx_suffixes.clone_from(&p.mx_suffixes);
                }
                if !p.domains.is_empty() {
                    entry.domains.clone_from(&p.domains);
                }
                entry.limits.then(&p.limits);
            }
            // A higher layer's rules come first.
            let mut compiled = layer
                .rule
                .iter()
                .map(Rule::compile)
                .collect::<anyhow::Result<Vec<_>>>()?;
            compiled.append(&mut rules);
            rules = compiled;
        }
        let base = Limits {
            max_connections: 10,
            max_deliveries_per_connection: 100,
            message_rate: None,
            connection_rate: None,
            idle_timeout: Duration::from_secs(5),
        };
        let default_limits = default.over(&base);
        check_limits(DEFAULT_PROVIDER, &default_limits)?;
        let default = Provider {
            name: DEFAULT_PROVIDER.into(),
            mx_suffixes: Vec::new(),
            domains: Vec::new(),
            limits: default_limits.clone(),
        };
        let mut out = BTreeMap::new();
        for (name, p) in providers {
            anyhow::ensure!(
                name != DEFAULT_PROVIDER,
                "shaping: write the default provider's limits under [default], not [provider.default]"
            );
            anyhow::ensure!(
                !p.mx_suffixes.is_empty() || !p.domains.is_empty(),
                "shaping: provider {name:?} has neither mx_suffixes nor domains to match by"
            );
            let limits = p.limits.over(&default_limits);
            check_limits(&name, &limits)?;
            let norm = |v: &[String]| {
                v.iter()
                    .map(|s| s.trim_matches('.').to_ascii_lowercase())
                    .collect()
            };
            out.insert(
                name.clone(),
                Provider {
                    mx_suffixes: norm(&p.mx_suffixes),
                    domains: norm(&p.domains),
                    name,
                    limits,
                },
            );
        }
        for r in &rules {
            if let Some(p) = &r.provider {
                anyhow::ensure!(
                    p == DEFAULT_PROVIDER || out.contains_key(p),
                    "shaping rule {:?}: no provider {p:?}",
                    r.name
                );
            }
        }
        Ok(ShapingTable {
            default,
            providers: out,
            rules,
        })
    }

    /// The built-in table alone.
    pub fn defaults() -> ShapingTable {
        let patch: ShapingPatch = toml::from_str(DEFAULTS).expect("built-in shaping file parses");
        ShapingTable::build(&[&patch]).expect("built-in shaping file is valid")
    }

    /// The provider a recipient domain belongs to by name alone, if listed.
    pub fn by_domain(&self, domain: &str) -> Option<&Provider> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        self.providers
            .values()
            .find(|p| p.domains.contains(&domain))
    }

    /// The provider of a destination: a listed recipient domain, else the
    /// longest MX suffix matching the best MX host, else the default.
    pub fn provider_for(&self, domain: &str, mx_host: Option<&str>) -> &Provider {
        if let Some(p) = self.by_domain(domain) {
            return p;
        }
        let Some(host) = mx_host else {
            return &self.default;
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.providers
            .values()
            .flat_map(|p| p.mx_suffixes.iter().map(move |s| (p, s)))
            .filter(|(_, s)| {
                host == **s
                    || (host.len() > s.len()
                        && host.ends_with(s.as_str())
                        && host.as_bytes()[host.len() - s.len() - 1] == b'.')
            })
            .max_by_key(|(_, s)| s.len())
            .map_or(&self.default, |(p, _)| p)
    }

    pub fn get(&self, name: &str) -> Option<&Provider> {
        if name == DEFAULT_PROVIDER {
            return Some(&self.default);
        }
        self.providers.get(name)
    }

    /// Every provider, the default last.
    pub fn all(&self) -> impl Iterator<Item = &Provider> {
        self.providers
            .values()
            .chain(std::iter::once(&self.default))
    }

    /// The first rule matching a reply from `provider`.
    pub fn rule_for(&self, provider: &str, code: Option<u16>, text: &str) -> Option<&Rule> {
        let enhanced = enhanced_code(text);
        self.rules.iter().find(|r| {
            r.provider.as_deref().is_none_or(|p| p == provider)
                && r.code.is_none_or(|c| Some(c) == code)
                && r.enhanced
                    .as_deref()
                    .is_none_or(|e| enhanced.is_some_and(|x| x.starts_with(e)))
                && r.text.as_ref().is_none_or(|re| re.is_match(text))
        })
    }
}

fn check_limits(name: &str, l: &Limits) -> anyhow::Result<()> {
    anyhow::ensure!(
        l.max_connections >= 1 && l.max_deliveries_per_connection >= 1,
        "shaping: provider {name:?}: max_connections and max_deliveries_per_connection must be at least 1"
    );
    Ok(())
}

impl Rule {
    fn compile(spec: &RuleSpec) -> anyhow::Result<Rule> {
        let name = &spec.name;
        anyhow::ensure!(
            spec.code.is_some() || spec.enhanced.is_some() || spec.text.is_some(),
            "shaping rule {name:?}: give at least one of code, enhanced, text"
        );
        let text = spec
            .text
            .as_deref()
            .map(|t| {
                regex::RegexBuilder::new(t)
                    .case_insensitive(true)
                    .size_limit(1 << 20)
                    .build()
                    .with_context(|| format!("shaping rule {name:?}: text"))
            })
            .transpose()?;
        let duration = match spec.action {
            Action::None => Duration::ZERO,
            _ => spec
                .duration
                .filter(|d| !d.is_zero())
                .with_context(|| format!("shaping rule {name:?}: needs a duration"))?,
        };
        anyhow::ensure!(
            spec.action != Action::Throttle || spec.rate.is_some(),
            "shaping rule {name:?}: a throttle needs a rate"
        );
        let recover_every = spec.recover_every.unwrap_or(Duration::from_secs(600));
        anyhow::ensure!(
            !recover_every.is_zero(),
            "shaping rule {name:?}: recover_every must be positive"
        );
        Ok(Rule {
            name: name.clone(),
            provider: spec.provider.clone(),
            code: spec.code,
            enhanced: spec.enhanced.clone(),
            text,
            action: spec.action,
            rate: spec.rate,
            duration,
            recover_every,
        })
    }
}

/// The first RFC 3463 enhanced status code in a reply's text.
pub fn enhanced_code(text: &str) -> Option<&str> {
    static CODE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?:^|[^\w.])([245]\.\d{1,3}\.\d{1,3})(?:$|[^\w.]|\.(?:$|\D))")
            .expect("valid regex")
    });
    CODE.captures(text)
        .and_then(|c| c.get(1))
        .map(|m| m.as_str())
}

/// A provider's stored state on one stream: a suspension, a throttle and
/// its recovery. Shared by every relay through the store.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DestinationState {
    pub suspended_until: Option<i64>,
    /// Messages per second while throttled (and the rate recovery starts
    /// from).
    pub throttle_rate: Option<f64>,
    /// The end of the throttle's full period; recovery steps follow.
    pub throttled_until: Option<i64>,
    pub recover_every_ms: i64,
    pub reason: String,
    /// The rule's name, or `api:KEY` / `cli:USER` for a hand-set one.
    pub set_by: String,
    pub updated_at: i64,
}

/// What a provider may do at `now`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Allowed {
    /// Nothing until this time.
    Suspended { until: i64 },
    /// At most this many messages per second (None: the base limit, which
    /// may be none).
    Rate(Option<f64>),
}

impl DestinationState {
    /// Applies the state to a provider's base rate at `now`: suspended,
    /// throttled, recovering (the rate doubling every `recover_every`
    /// after the throttle's end) or back to the base.
    pub fn allowed(&self, base: Option<f64>, now: i64) -> Allowed {
        if let Some(until) = self.suspended_until
            && now < until
        {
            return Allowed::Suspended { until };
        }
        let (Some(rate), Some(until)) = (self.throttle_rate, self.throttled_until) else {
            return Allowed::Rate(base);
        };
        if now < until {
            return Allowed::Rate(Some(base.map_or(rate, |b| rate.min(b))));
        }
        let steps =
            u32::try_from((now - until) / self.recover_every_ms.max(1) + 1).unwrap_or(u32::MAX);
        match base {
            None if steps > STEPS_TO_LIFT => Allowed::Rate(None),
            None => Allowed::Rate(Some(rate * f64::from(1u32 << steps))),
            Some(b) => {
                let r = rate * 2f64.powi(i32::try_from(steps.min(60)).unwrap_or(60));
                Allowed::Rate(Some(r.min(b)))
            }
        }
    }

    /// Whether the state no longer changes anything at `now`.
    pub fn spent(&self, base: Option<f64>, now: i64) -> bool {
        self.allowed(base, now) == Allowed::Rate(base)
    }

    /// The state a rule's action sets at `now`.
    pub fn from_rule(rule: &Rule, reply: &str, now: i64) -> Option<DestinationState> {
        let ms = rule.duration.as_millis() as i64;
        let reason = format!(
            "{}: {}",
            rule.name,
            reply.chars().take(200).collect::<String>()
        );
        let recover_every_ms = rule.recover_every.as_millis() as i64;
        match rule.action {
            Action::None => None,
            Action::Throttle => Some(DestinationState {
                suspended_until: None,
                throttle_rate: rule.rate.map(Rate::per_second),
                throttled_until: Some(now + ms),
                recover_every_ms,
                reason,
                set_by: format!("rule:{}", rule.name),
                updated_at: now,
            }),
            Action::Suspend => Some(DestinationState {
                suspended_until: Some(now + ms),
                throttle_rate: Some(rule.rate.map_or(1.0, Rate::per_second)),
                throttled_until: Some(now + ms),
                recover_every_ms,
                reason,
                set_by: format!("rule:{}", rule.name),
                updated_at: now,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print() {
        assert_eq!(Rate::parse("100/s").unwrap().per_second(), 100.0);
        assert_eq!(Rate::parse("60/min").unwrap().per_second(), 1.0);
        assert_eq!(Rate::parse("3600/h").unwrap().per_second(), 1.0);
        assert_eq!(Rate::parse("10/min").unwrap().to_string(), "10/min");
        for bad in ["", "10", "0/s", "-1/s", "x/s", "10/fortnight", "NaN/s"] {
            assert!(Rate::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_built_in_table_matches_providers_by_domain_and_mx_suffix() {
        let t = ShapingTable::defaults();
        assert_eq!(t.provider_for("gmail.com", None).name, "google");
        // Google Workspace: any domain whose MX is Google's.
        assert_eq!(
            t.provider_for("shop.example", Some("ASPMX.L.GOOGLE.COM."))
                .name,
            "google"
        );
        assert_eq!(
            t.provider_for(
                "corp.example",
                Some("corp-example.mail.protection.outlook.com")
            )
            .name,
            "office365"
        );
        assert_eq!(
            t.provider_for("x.example", Some("mta5.am0.yahoodns.net"))
                .name,
            "yahoo"
        );
        // A suffix matches at a label boundary only.
        assert_eq!(
            t.provider_for("x.example", Some("mx.notgoogle.com")).name,
            "default"
        );
        assert_eq!(t.provider_for("x.example", None).name, "default");
        let g = t.get("google").unwrap();
        assert_eq!(
            (
                g.limits.max_connections,
                g.limits.max_deliveries_per_connection
            ),
            (5, 50)
        );
        // Unset in the provider: the default's.
        assert_eq!(g.limits.message_rate, t.default.limits.message_rate);
        assert_eq!(
            t.get("apple").unwrap().limits.max_deliveries_per_connection,
            5
        );
    }

    #[test]
    fn layers_override_field_by_field_and_their_rules_come_first() {
        let over: ShapingPatch = toml::from_str(
            r#"
            [default]
            message_rate = "none"
            [provider.google]
            max_connections = 2
            [provider.sink]
            mx_suffixes = ["localhost"]
            max_connections = 3
            [[rule]]
            name = "mine"
            enhanced = "4.7.28"
            action = "suspend"
            duration = "5m"
            "#,
        )
        .unwrap();
        let base: ShapingPatch = toml::from_str(DEFAULTS).unwrap();
        let t = ShapingTable::build(&[&base, &over]).unwrap();
        let g = t.get("google").unwrap();
        assert_eq!(g.limits.max_connections, 2);
        assert_eq!(g.limits.max_deliveries_per_connection, 50, "kept");
        assert_eq!(g.mx_suffixes, ["google.com", "googlemail.com"], "kept");
        assert_eq!(t.default.limits.message_rate, None, "lifted");
        assert_eq!(t.provider_for("a.test", Some("localhost")).name, "sink");
        let r = t
            .rule_for("google", Some(421), "4.7.28 unusual rate")
            .unwrap();
        assert_eq!(r.name, "mine");
    }

    #[test]
    fn bad_tables_are_refused_with_the_reason() {
        for (text, want) in [
            (
                "[provider.x]\nmax_connections = 1",
                "neither mx_suffixes nor domains",
            ),
            ("[default]\nmax_connections = 0", "at least 1"),
            (
                "[[rule]]\nname = \"r\"\naction = \"suspend\"\nduration = \"1m\"",
                "at least one of",
            ),
            (
                "[[rule]]\nname = \"r\"\ntext = \"(\"\naction = \"none\"",
                "text",
            ),
            (
                "[[rule]]\nname = \"r\"\ncode = 421\naction = \"throttle\"\nduration = \"1m\"",
                "needs a rate",
            ),
            (
                "[[rule]]\nname = \"r\"\ncode = 421\nprovider = \"nope\"\naction = \"none\"",
                "no provider",
            ),
        ] {
            let p: ShapingPatch = toml::from_str(text).unwrap();
            let err = format!("{:#}", ShapingTable::build(&[&p]).unwrap_err());
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn built_in_rules_tell_provider_throttles_from_per_recipient_replies() {
        let t = ShapingTable::defaults();
        let rule = |p: &str, code: u16, text: &str| {
            t.rule_for(p, Some(code), text)
                .map(|r| (r.name.as_str(), r.action))
        };
        assert_eq!(
            rule(
                "google",
                421,
                "4.7.28 Our system has detected an unusual rate of unsolicited mail"
            ),
            Some(("google-unusual-rate", Action::Throttle))
        );
        // The same code from another provider is not Google's throttle.
        assert_eq!(rule("yahoo", 421, "4.7.28 unusual rate"), None);
        assert_eq!(
            rule(
                "google",
                450,
                "4.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional messages"
            ),
            Some(("per-recipient", Action::None))
        );
        assert_eq!(
            rule(
                "yahoo",
                421,
                "4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints"
            ),
            Some(("yahoo-tss04", Action::Suspend))
        );
        assert_eq!(
            rule(
                "outlook",
                550,
                "5.7.1 Unfortunately, messages from [192.0.2.1] weren't sent. (S3150)"
            ),
            Some(("microsoft-s3150", Action::Throttle))
        );
        assert_eq!(rule("default", 451, "4.3.0 try again later"), None);
    }

    #[test]
    fn enhanced_codes_are_found_in_reply_text() {
        assert_eq!(enhanced_code("4.7.28 unusual rate"), Some("4.7.28"));
        assert_eq!(
            enhanced_code("transient error (421): 4.7.0 [TSS04] x"),
            Some("4.7.0")
        );
        assert_eq!(enhanced_code("from 192.168.1.1 deferred"), None);
        assert_eq!(enhanced_code("version 4.7.28a"), None);
        assert_eq!(enhanced_code(""), None);
        assert_eq!(enhanced_code("5."), None);
    }

    #[test]
    fn a_throttle_recovers_stepwise_not_in_one_cliff() {
        let s = DestinationState {
            suspended_until: Some(1_000),
            throttle_rate: Some(1.0),
            throttled_until: Some(1_000),
            recover_every_ms: 100,
            reason: String::new(),
            set_by: String::new(),
            updated_at: 0,
        };
        assert_eq!(
            s.allowed(Some(10.0), 500),
            Allowed::Suspended { until: 1_000 }
        );
        assert_eq!(s.allowed(Some(10.0), 1_000), Allowed::Rate(Some(2.0)));
        assert_eq!(s.allowed(Some(10.0), 1_150), Allowed::Rate(Some(4.0)));
        assert_eq!(s.allowed(Some(10.0), 1_250), Allowed::Rate(Some(8.0)));
        assert_eq!(s.allowed(Some(10.0), 1_350), Allowed::Rate(Some(10.0)));
        assert!(s.spent(Some(10.0), 1_350));
        // No base rate: doubles STEPS_TO_LIFT times, then lifted.
        assert_eq!(s.allowed(None, 1_000), Allowed::Rate(Some(2.0)));
        assert_eq!(s.allowed(None, 1_550), Allowed::Rate(Some(64.0)));
        assert_eq!(s.allowed(None, 1_650), Allowed::Rate(None));
        // While throttled, never above the base.
        let t = DestinationState {
            suspended_until: None,
            throttled_until: Some(5_000),
            throttle_rate: Some(50.0),
            ..s
        };
        assert_eq!(t.allowed(Some(10.0), 0), Allowed::Rate(Some(10.0)));
    }
}
