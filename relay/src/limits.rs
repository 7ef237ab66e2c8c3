//! Abuse protection in front of the API: token-bucket rate limits and the
//! lockout of client addresses that keep presenting bad keys.
//!
//! State is per process (memory, bounded by LRU): with several relay
//! processes behind a balancer each enforces its own share. Defaults are in
//! docs/configuration.md (`[limits]`).

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::config::LimitsSettings;

/// Most clients or keys tracked at once by each limiter; the least
/// recently seen is forgotten first (it starts again with a full bucket).
const TRACKED: usize = 100_000;

/// `rate` tokens a second up to `burst`; one request (or message) takes one.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets by key.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<LruCache<String, Bucket>>,
}

impl RateLimiter {
    /// `rate` per second, bursts of `burst`. A rate of 0 never limits.
    pub fn new(rate: f64, burst: f64) -> RateLimiter {
        RateLimiter {
            rate,
            burst: burst.max(1.0),
            buckets: Mutex::new(LruCache::new(NonZeroUsize::new(TRACKED).expect("non-zero"))),
        }
    }

    /// Takes a token for `key`, or says how long until one is there.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = buckets.get_or_insert_mut(key.to_string(), || Bucket {
            tokens: self.burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.rate))
        }
    }
}

#[derive(Debug, Default)]
struct Failures {
    /// Failure times within the window, oldest first.
    times: std::collections::VecDeque<Instant>,
    locked_until: Option<Instant>,
}

/// Counts failed authentications per client address; `limit` of them
/// within `window` lock the address out for `cooldown`. Only the address
/// is refused: a key holder elsewhere is unaffected.
pub struct Lockout {
    limit: usize,
    window: Duration,
    cooldown: Duration,
    clients: Mutex<LruCache<IpAddr, Failures>>,
}

impl Lockout {
    pub fn new(limit: u32, window: Duration, cooldown: Duration) -> Lockout {
        Lockout {
            limit: limit.max(1) as usize,
            window,
            cooldown,
            clients: Mutex::new(LruCache::new(NonZeroUsize::new(TRACKED).expect("non-zero"))),
        }
    }

    /// How long `ip` stays locked out, if it is.
    pub fn locked(&self, ip: IpAddr) -> Option<Duration> {
        self.locked_at(ip, Instant::now())
    }

    fn locked_at(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let f = clients.get_mut(&ip)?;
        match f.locked_until {
            Some(until) if until > now => Some(until - now),
            Some(_) => {
                // Served its time: start clean.
                clients.pop(&ip);
                None
            }
            None => None,
        }
    }

    /// Records a failure; true when it locks the address out.
    pub fn failed(&self, ip: IpAddr) -> bool {
        self.failed_at(ip, Instant::now())
    }

    fn failed_at(&self, ip: IpAddr, now: Instant) -> bool {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let f = clients.get_or_insert_mut(ip, Failures::default);
        while f
            .times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > self.window)
        {
            f.times.pop_front();
        }
        f.times.push_back(now);
        if f.times.len() >= self.limit && f.locked_until.is_none_or(|u| u <= now) {
            f.locked_until = Some(now + self.cooldown);
            f.times.clear();
            return true;
        }
        false
    }
}

/// Every limiter the API uses.
pub struct Limits {
    pub lockout: Lockout,
    /// API requests per key.
    pub requests: RateLimiter,
    /// Inbound webhook requests per key: their own budget, so a flood of
    /// bounces can't starve sending or the other way round.
    pub webhooks: RateLimiter,
    /// Public pages (`/u/`, `/c/`) per client address.
    pub public: RateLimiter,
    /// Messages per hour per key and stream (0: none), one limiter per stream.
    pub messages: [RateLimiter; 2],
    /// Take the client address from `X-Forwarded-For` (behind a proxy).
    pub trust_forwarded_for: bool,
}

impl Limits {
    pub fn new(s: &LimitsSettings, messages_per_hour: [u32; 2]) -> Limits {
        let hourly = |n: u32| RateLimiter::new(f64::from(n) / 3600.0, f64::from(n));
        Limits {
            lockout: Lockout::new(s.auth_failures, s.auth_failure_window, s.lockout),
            requests: RateLimiter::new(f64::from(s.requests_per_second), f64::from(s.burst)),
            webhooks: RateLimiter::new(
                f64::from(s.webhook_requests_per_second),
                f64::from(s.webhook_requests_per_second) * 2.0,
            ),
            public: RateLimiter::new(
                f64::from(s.public_requests_per_second),
                f64::from(s.public_requests_per_second) * 4.0,
            ),
            messages: messages_per_hour.map(hourly),
            trust_forwarded_for: s.trust_forwarded_for,
        }
    }

    /// The client's address: the peer, or with `trust_forwarded_for` the
    /// first `X-Forwarded-For` hop.
    pub fn client_ip(
        &self,
        headers: &axum::http::HeaderMap,
        peer: Option<IpAddr>,
    ) -> Option<IpAddr> {
        if self.trust_forwarded_for
            && let Some(ip) = headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim().parse::<IpAddr>().ok())
        {
            return Some(ip);
        }
        peer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let l = RateLimiter::new(2.0, 3.0);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.check_at("k", t0).is_ok());
        }
        let wait = l.check_at("k", t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        // Another key has its own bucket.
        assert!(l.check_at("other", t0).is_ok());
        // Half a second later one token is back, not two.
        let t1 = t0 + Duration::from_millis(500);
        assert!(l.check_at("k", t1).is_ok());
        assert!(l.check_at("k", t1).is_err());
        assert!(RateLimiter::new(0.0, 0.0).check_at("k", t0).is_ok());
    }

    #[test]
    fn repeated_failures_lock_out_one_address_for_the_cooldown() {
        let l = Lockout::new(3, Duration::from_secs(60), Duration::from_secs(900));
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t0 = Instant::now();
        assert!(!l.failed_at(a, t0));
        assert!(!l.failed_at(a, t0));
        // Failures that fall out of the window don't count.
        let late = t0 + Duration::from_secs(61);
        assert!(!l.failed_at(a, late));
        assert!(!l.failed_at(a, late));
        assert!(l.failed_at(a, late), "third within the window locks");
        assert_eq!(l.locked_at(a, late), Some(Duration::from_secs(900)));
        assert_eq!(l.locked_at(b, late), None, "another address is unaffected");
        let after = late + Duration::from_secs(901);
        assert_eq!(l.locked_at(a, after), None);
        assert!(!l.failed_at(a, after), "a fresh start after the cooldown");
    }
}
