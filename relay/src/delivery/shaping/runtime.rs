//! Shaping applied to one stream's deliveries.
//!
//! Before a message goes to a provider: is it suspended, and may one more
//! message start under its (possibly throttled) rate? Before a connection
//! opens: a connection slot, taken locally (a semaphore of
//! `max_connections`) and in the shared `destination_slots` table, so the
//! limit holds across every relay on the database. Rates are shared out
//! instead: each relay enforces rate / live relays, which costs no database
//! round trip per message. After each reply: the first matching rule may
//! suspend or throttle the provider, stored so every relay (and a restart)
//! obeys it.
//!
//! Nothing here waits long. A delivery that would wait more than
//! [`MAX_WAIT`] for a rate token or a slot is postponed instead — given
//! back to the queue, due when the wait would end, its attempt not counted
//! — so a slow provider never holds the stream's workers.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tracing::{info, warn};

use super::{Allowed, DestinationState, Provider, ShapingTable};
use crate::domain::{Reply, Stream};
use crate::node::NodeId;
use crate::store::{Store, now_ms};

/// The longest a delivery waits in process for a rate token or a slot.
pub const MAX_WAIT: Duration = Duration::from_secs(1);
/// How often a waiting delivery looks for a slot another relay freed.
const SLOT_POLL: Duration = Duration::from_millis(50);
/// How often each relay re-reads the stored suspensions and throttles: a
/// change made on one relay (or by the CLI) holds everywhere within this.
pub const REFRESH: Duration = Duration::from_secs(1);
/// How long a relay's word that it waits for a slot holds; renewed (at
/// most once per [`DEMAND_RENEW`]) while it keeps finding none free.
const DEMAND_HOLDS: Duration = Duration::from_secs(3);
const DEMAND_RENEW: Duration = Duration::from_secs(1);
/// Replies kept per provider for `GET /v1/destinations`.
const LAST_REPLIES: usize = 5;

/// Whether a delivery may go ahead now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Go,
    /// Not now: back to the queue, due at `until`.
    Postpone {
        until: i64,
        why: String,
    },
}

/// A reply seen from a provider, for the operator.
#[derive(Debug, Clone, Serialize)]
pub struct SeenReply {
    pub at: i64,
    pub code: Option<u16>,
    pub text: String,
    pub host: Option<String>,
}

/// A leaky bucket in the GCRA form: the theoretical arrival time of the
/// next message. No burst: starts are spaced `1/rate` apart.
#[derive(Debug, Default)]
struct Gcra {
    tat: i64,
}

impl Gcra {
    /// Reserves a start at `rate`/s: the wait before it (ms), or, when
    /// that would be longer than `max_wait`, Err with the wait and nothing
    /// reserved.
    fn reserve(&mut self, rate: f64, now: i64, max_wait: i64) -> Result<i64, i64> {
        let interval = (1000.0 / rate).max(0.0) as i64;
        let start = self.tat.max(now);
        let wait = start - now;
        if wait > max_wait {
            return Err(wait);
        }
        self.tat = start + interval;
        Ok(wait)
    }
}

/// One provider on one stream, in this process.
pub struct ProviderRuntime {
    pub provider: Provider,
    local: Arc<Semaphore>,
    slots_ready: tokio::sync::OnceCell<()>,
    messages: Mutex<Gcra>,
    connections: Mutex<Gcra>,
    pub in_flight: AtomicI64,
    pub open: AtomicI64,
    /// Another relay waits for a slot of this provider (read each
    /// [`REFRESH`]): this one keeps to its share and closes idle connections.
    wanted_elsewhere: AtomicBool,
    /// When this relay last said it waits for a slot (ms).
    demand_said: AtomicI64,
    last_replies: Mutex<VecDeque<SeenReply>>,
    /// `mailroom_destination_results_total` of this stream and provider.
    results: Results,
}

/// One provider's result counters, kept so a delivery counts without
/// building label strings.
struct Results {
    delivered: Counter,
    deferred: Counter,
    refused: Counter,
    postponed: Counter,
}

impl std::fmt::Debug for ProviderRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderRuntime")
            .field("provider", &self.provider.name)
            .finish_non_exhaustive()
    }
}

impl ProviderRuntime {
    /// Whether another relay waits for one of this provider's slots.
    pub fn wanted_elsewhere(&self) -> bool {
        self.wanted_elsewhere.load(Ordering::Relaxed)
    }

    /// This relay's share of the provider's connections: `max_connections`
    /// ÷ live relays, rounded up. Kept to only while another relay waits.
    fn share(&self, core: &ShaperCore) -> i64 {
        let live = core.live_nodes().max(1);
        u64::from(self.provider.limits.max_connections).div_ceil(live) as i64
    }

    pub fn last_replies(&self) -> Vec<SeenReply> {
        self.last_replies
            .lock()
            .expect("replies lock")
            .iter()
            .cloned()
            .collect()
    }
}

/// A connection's slot: held while the connection is open, freed (locally
/// and in the table) when dropped.
pub struct ConnectionSlot {
    provider: Arc<ProviderRuntime>,
    slot: i64,
    shaper: Arc<ShaperCore>,
    _permit: OwnedSemaphorePermit,
    /// Deliveries made on this connection.
    pub uses: u32,
}

impl ConnectionSlot {
    /// Whether the connection has carried its provider's
    /// `max_deliveries_per_connection`.
    pub fn used_up(&self) -> bool {
        self.uses >= self.provider.provider.limits.max_deliveries_per_connection
    }

    pub fn provider(&self) -> &str {
        &self.provider.provider.name
    }

    /// How long the connection may sit unused in the pool.
    pub fn idle_timeout(&self) -> Duration {
        self.provider.provider.limits.idle_timeout
    }

    /// Whether another relay waits for a slot of this provider: an idle
    /// connection should close rather than keep it.
    pub fn wanted_elsewhere(&self) -> bool {
        self.provider.wanted_elsewhere()
    }

    /// Whether the connection should close now rather than go back to the
    /// pool: it has carried its `max_deliveries_per_connection`, or another
    /// relay waits for a slot while this one holds more than its share.
    pub fn give_up(&self) -> bool {
        self.used_up() || (self.provider.wanted_elsewhere() && self.over_share())
    }

    fn over_share(&self) -> bool {
        self.provider.open.load(Ordering::Relaxed) > self.provider.share(&self.shaper)
    }
}

/// How a delivery waiting for a connection slot learns that one of its own
/// relay's connections to the same host came free — it takes that instead
/// of waiting on for a new one.
pub struct PoolWatch<'a> {
    /// Notified whenever a connection goes back to the pool.
    pub freed: &'a Notify,
    /// Whether the pool holds an idle connection for this host now.
    pub has_idle: &'a (dyn Fn() -> bool + Send + Sync),
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.provider.open.fetch_sub(1, Ordering::Relaxed);
        let (core, provider, slot) = (
            self.shaper.clone(),
            self.provider.provider.name.clone(),
            self.slot,
        );
        // The local permit goes back now; the shared row a moment later. If
        // this process dies first, the row's lease runs out (or the restart
        // frees it).
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = core
                    .store
                    .release_slot(core.stream.as_str(), &provider, slot, core.node.as_str())
                    .await
                {
                    warn!(error = %e, provider, slot, "freeing a connection slot failed; its lease will lapse");
                }
            });
        }
    }
}

/// What every slot needs to free itself and to know its relay's share.
struct ShaperCore {
    stream: Stream,
    store: Store,
    node: NodeId,
    /// Relays with a recent heartbeat, as of the last refresh: rates and
    /// connections are shared out among them.
    live_nodes: AtomicU64,
}

impl ShaperCore {
    fn live_nodes(&self) -> u64 {
        self.live_nodes.load(Ordering::Relaxed)
    }
}

/// One stream's shaping in this process.
pub struct Shaper {
    core: Arc<ShaperCore>,
    table: ShapingTable,
    lease: Duration,
    providers: Mutex<HashMap<String, Arc<ProviderRuntime>>>,
    /// This stream's stored states, refreshed from the store.
    states: RwLock<HashMap<String, DestinationState>>,
    /// Recipient domain → provider, learnt from MX lookups (bounded).
    domains: Mutex<lru::LruCache<String, String>>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl std::fmt::Debug for Shaper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shaper")
            .field("stream", &self.core.stream)
            .finish_non_exhaustive()
    }
}

impl Shaper {
    pub fn new(
        stream: Stream,
        table: ShapingTable,
        store: Store,
        node: NodeId,
        lease: Duration,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Shaper {
        Shaper {
            core: Arc::new(ShaperCore {
                stream,
                store,
                node,
                live_nodes: AtomicU64::new(1),
            }),
            table,
            lease,
            providers: Mutex::default(),
            states: RwLock::default(),
            domains: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(10_000).expect("non-zero"),
            )),
            metrics,
        }
    }

    pub fn stream(&self) -> Stream {
        self.core.stream
    }

    pub fn table(&self) -> &ShapingTable {
        &self.table
    }

    /// The runtime of the provider a destination belongs to.
    pub fn provider(&self, domain: &str, mx_host: Option<&str>) -> Arc<ProviderRuntime> {
        let p = self.table.provider_for(domain, mx_host);
        {
            let mut domains = self.domains.lock().expect("domains lock");
            // Most deliveries go to a domain seen before: no allocation then.
            if domains.get(domain).is_none_or(|known| *known != p.name) {
                domains.put(domain.to_ascii_lowercase(), p.name.clone());
            }
        }
        self.runtime(p)
    }

    /// The provider a recipient domain was last seen to belong to, if known.
    pub fn known_provider(&self, domain: &str) -> Option<String> {
        if let Some(p) = self.table.by_domain(domain) {
            return Some(p.name.clone());
        }
        self.domains
            .lock()
            .expect("domains lock")
            .peek(&domain.to_ascii_lowercase())
            .cloned()
    }

    fn runtime(&self, p: &Provider) -> Arc<ProviderRuntime> {
        let mut map = self.providers.lock().expect("providers lock");
        if let Some(rt) = map.get(&p.name) {
            return rt.clone();
        }
        let stream = self.core.stream.as_str();
        let counter = |result| self.metrics.destination_result(stream, &p.name, result);
        map.entry(p.name.clone())
            .or_insert_with(|| {
                Arc::new(ProviderRuntime {
                    local: Arc::new(Semaphore::new(p.limits.max_connections as usize)),
                    provider: p.clone(),
                    slots_ready: tokio::sync::OnceCell::new(),
                    messages: Mutex::default(),
                    connections: Mutex::default(),
                    in_flight: AtomicI64::new(0),
                    open: AtomicI64::new(0),
                    wanted_elsewhere: AtomicBool::new(false),
                    demand_said: AtomicI64::new(0),
                    last_replies: Mutex::default(),
                    results: Results {
                        delivered: counter("delivered"),
                        deferred: counter("deferred"),
                        refused: counter("refused"),
                        postponed: counter("postponed"),
                    },
                })
            })
            .clone()
    }

    /// The runtime of a provider by name, if this process has used it.
    pub fn used(&self, name: &str) -> Option<Arc<ProviderRuntime>> {
        self.providers
            .lock()
            .expect("providers lock")
            .get(name)
            .cloned()
    }

    /// The provider's state as last read from the store.
    pub fn state(&self, provider: &str) -> Option<DestinationState> {
        self.states
            .read()
            .expect("states lock")
            .get(provider)
            .cloned()
    }

    /// What the provider may do now, this relay's share of it.
    pub fn allowed(&self, p: &Provider, now: i64) -> Allowed {
        let base = p.limits.message_rate.map(super::Rate::per_second);
        let allowed = match self.state(&p.name) {
            Some(s) => s.allowed(base, now),
            None => Allowed::Rate(base),
        };
        match allowed {
            Allowed::Rate(Some(r)) => Allowed::Rate(Some(r / self.live_nodes().max(1) as f64)),
            other => other,
        }
    }

    pub fn live_nodes(&self) -> u64 {
        self.core.live_nodes()
    }

    /// May one more message start to this provider? Waits up to
    /// [`MAX_WAIT`] for the rate; postpones beyond that or while suspended.
    pub async fn admit(&self, p: &ProviderRuntime) -> Admission {
        let now = now_ms();
        let rate = match self.allowed(&p.provider, now) {
            Allowed::Suspended { until } => {
                p.results.postponed.inc();
                let why = self
                    .state(&p.provider.name)
                    .map(|s| s.reason)
                    .unwrap_or_default();
                return Admission::Postpone {
                    until,
                    why: format!(
                        "{} until {} ({why})",
                        crate::destinations::suspended_reply_prefix(
                            &p.provider.name,
                            self.core.stream
                        ),
                        crate::store::rfc3339(until)
                    ),
                };
            }
            Allowed::Rate(r) => r,
        };
        let Some(rate) = rate else {
            return Admission::Go;
        };
        let reserved =
            p.messages
                .lock()
                .expect("gcra lock")
                .reserve(rate, now, MAX_WAIT.as_millis() as i64);
        match reserved {
            Ok(0) => Admission::Go,
            Ok(wait) => {
                tokio::time::sleep(Duration::from_millis(wait as u64)).await;
                Admission::Go
            }
            Err(wait) => {
                p.results.postponed.inc();
                Admission::Postpone {
                    until: now + wait,
                    why: format!(
                        "not attempted: {} message rate ({}/s on this relay)",
                        p.provider.name,
                        (rate * 100.0).round() / 100.0
                    ),
                }
            }
        }
    }

    /// A slot for one new connection to the provider, waiting until
    /// `deadline` (at most [`MAX_WAIT`] from the delivery's first look) for
    /// one to free (here or on another relay). `Ok(None)`:
    /// while waiting, a connection of this relay's to the same host went
    /// back to its pool — use that. `Err` with a postponement when nothing
    /// frees in time, or the store can't be asked.
    ///
    /// A relay that finds every slot taken across relays says so in the
    /// store; the holders then close idle connections and keep to their
    /// share, so slots move to where the mail is.
    pub async fn connection_slot(
        &self,
        p: &Arc<ProviderRuntime>,
        pool: &PoolWatch<'_>,
        deadline: tokio::time::Instant,
    ) -> Result<Option<ConnectionSlot>, Admission> {
        let started = now_ms();
        let postpone = |why: String| Admission::Postpone {
            until: now_ms() + 250 + (rand::random::<u64>() % 750) as i64,
            why,
        };
        let limits = &p.provider.limits;
        let (stream, provider) = (self.core.stream.as_str(), p.provider.name.as_str());
        // Every wait below also ends when a pooled connection comes free.
        // The notification is armed before the pool is looked at, so a
        // check-in between the two is not missed.
        macro_rules! wait_or_pooled {
            ($fut:expr) => {{
                let freed = pool.freed.notified();
                tokio::pin!(freed);
                freed.as_mut().enable();
                if (pool.has_idle)() {
                    return Ok(None);
                }
                tokio::select! {
                    r = tokio::time::timeout_at(deadline, $fut) => r,
                    () = freed => return Ok(None),
                }
            }};
        }
        let permit = match wait_or_pooled!(p.local.clone().acquire_owned()) {
            Ok(Ok(permit)) => permit,
            _ => {
                p.results.postponed.inc();
                return Err(postpone(format!(
                    "not attempted: all {} connections to {provider} in use",
                    limits.max_connections
                )));
            }
        };
        let store = &self.core.store;
        let ready = p
            .slots_ready
            .get_or_try_init(|| store.ensure_slots(stream, provider, limits.max_connections))
            .await;
        if let Err(e) = ready {
            warn!(error = %e, provider, "setting up connection slots failed");
            return Err(postpone(format!("not attempted: connection slots: {e}")));
        }
        // The connection rate before the shared slot: a refusal then costs
        // no database write.
        if let Some(rate) = limits.connection_rate {
            let share = rate.per_second() / self.live_nodes().max(1) as f64;
            let r = p.connections.lock().expect("gcra lock").reserve(
                share,
                now_ms(),
                MAX_WAIT.as_millis() as i64,
            );
            match r {
                Ok(0) => {}
                Ok(wait) => tokio::time::sleep(Duration::from_millis(wait as u64)).await,
                Err(wait) => {
                    p.results.postponed.inc();
                    return Err(Admission::Postpone {
                        until: now_ms() + wait,
                        why: format!("not attempted: {provider} connection rate ({rate})"),
                    });
                }
            }
        }
        loop {
            // While another relay waits, take no slot beyond this relay's
            // share: wait for one of its own connections instead.
            let yield_to_others =
                p.wanted_elsewhere() && p.open.load(Ordering::Relaxed) >= p.share(&self.core);
            let taken = if yield_to_others {
                Ok(None)
            } else {
                // Not raced against the pool: a slot taken in the store
                // whose future was dropped would be held by nobody.
                let until = now_ms() + self.lease.as_millis() as i64;
                store
                    .acquire_slot(
                        stream,
                        provider,
                        limits.max_connections,
                        self.core.node.as_str(),
                        until,
                    )
                    .await
            };
            match taken {
                Ok(Some(slot)) => {
                    p.open.fetch_add(1, Ordering::Relaxed);
                    return Ok(Some(ConnectionSlot {
                        provider: p.clone(),
                        slot,
                        shaper: self.core.clone(),
                        _permit: permit,
                        uses: 0,
                    }));
                }
                Ok(None) => {
                    if !yield_to_others {
                        self.say_demand(p).await;
                    }
                    if tokio::time::Instant::now() + SLOT_POLL >= deadline {
                        p.results.postponed.inc();
                        return Err(postpone(format!(
                            "not attempted: all {} connections to {provider} in use across \
                             relays (waited {} ms)",
                            limits.max_connections,
                            now_ms() - started
                        )));
                    }
                    let _ = wait_or_pooled!(tokio::time::sleep(SLOT_POLL));
                }
                Err(e) => {
                    warn!(error = %e, provider, "taking a connection slot failed");
                    return Err(postpone(format!("not attempted: connection slot: {e}")));
                }
            }
        }
    }

    /// Tells the other relays that this one waits for a slot of `p` (at
    /// most once per [`DEMAND_RENEW`]; a failed write only logs: the slots
    /// still come free as connections finish).
    async fn say_demand(&self, p: &ProviderRuntime) {
        let now = now_ms();
        let last = p.demand_said.load(Ordering::Relaxed);
        if now - last < DEMAND_RENEW.as_millis() as i64
            || p.demand_said
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let until = now + DEMAND_HOLDS.as_millis() as i64;
        if let Err(e) = self
            .core
            .store
            .want_slot(
                self.core.stream.as_str(),
                &p.provider.name,
                self.core.node.as_str(),
                until,
            )
            .await
        {
            warn!(error = %e, provider = %p.provider.name, "saying this relay waits for a slot failed");
        }
    }

    /// Whether another delivery could get a local connection permit now.
    pub fn connection_free(&self, p: &ProviderRuntime) -> bool {
        p.local.available_permits() > 0
    }

    /// Learns from one attempt's reply: kept for the operator, counted, and
    /// matched against the rules; a matching suspend or throttle is stored.
    pub async fn observe(&self, p: &ProviderRuntime, reply: &Reply, accepted: bool) {
        let now = now_ms();
        let counter = if accepted {
            &p.results.delivered
        } else if reply.code.is_some_and(|c| c >= 500) {
            &p.results.refused
        } else {
            &p.results.deferred
        };
        counter.inc();
        if accepted {
            return;
        }
        {
            let mut last = p.last_replies.lock().expect("replies lock");
            if last.len() == LAST_REPLIES {
                last.pop_front();
            }
            last.push_back(SeenReply {
                at: now,
                code: reply.code,
                text: reply.text.chars().take(300).collect(),
                host: reply.host.clone(),
            });
        }
        let Some(rule) = self
            .table
            .rule_for(&p.provider.name, reply.code, &reply.text)
        else {
            return;
        };
        let Some(new) = DestinationState::from_rule(rule, &reply.text, now) else {
            return;
        };
        // A burst of the same reply writes once: only a state that extends
        // the current one by a tenth of the rule's duration is stored.
        let current = self.state(&p.provider.name);
        let extends = |c: &DestinationState| {
            let end = |s: &DestinationState| s.suspended_until.max(s.throttled_until).unwrap_or(0);
            end(&new) > end(c) + rule.duration.as_millis() as i64 / 10
        };
        if current.as_ref().is_some_and(|c| !extends(c)) {
            return;
        }
        let stream = self.core.stream.as_str();
        info!(provider = %p.provider.name, %stream, rule = %rule.name, action = ?rule.action, duration = ?rule.duration, "reply rule matched: shaping the provider");
        self.metrics
            .destination_rule(stream, &p.provider.name, &rule.name);
        if let Err(e) = self
            .core
            .store
            .set_destination_state(stream, &p.provider.name, &new)
            .await
        {
            warn!(error = %e, "storing a provider's throttle failed; applying it here only");
        }
        self.states
            .write()
            .expect("states lock")
            .insert(p.provider.name.clone(), new);
    }

    /// Forgets a provider's state here at once (a resume through this
    /// relay's API), ahead of the next refresh.
    pub fn forget_state(&self, provider: &str) {
        self.states.write().expect("states lock").remove(provider);
    }

    /// Reads this stream's stored states and the number of live relays.
    pub async fn refresh(&self, heartbeat: Duration) {
        match self.core.store.destination_states().await {
            Ok(rows) => {
                let mine: HashMap<String, DestinationState> = rows
                    .into_iter()
                    .filter(|(s, _, _)| s == self.core.stream.as_str())
                    .map(|(_, p, st)| (p, st))
                    .collect();
                *self.states.write().expect("states lock") = mine;
            }
            Err(e) => warn!(error = %e, "reading provider throttles failed"),
        }
        let since = now_ms() - 3 * heartbeat.as_millis() as i64;
        match self.core.store.live_nodes(since).await {
            Ok(n) => self.core.live_nodes.store(n, Ordering::Relaxed),
            Err(e) => warn!(error = %e, "counting live relays failed"),
        }
        let wanted = self
            .core
            .store
            .wanted_elsewhere(self.core.stream.as_str(), self.core.node.as_str())
            .await
            .unwrap_or_else(|e| {
                warn!(error = %e, "reading which providers other relays wait for failed");
                Vec::new()
            });
        for rt in self.providers.lock().expect("providers lock").values() {
            rt.wanted_elsewhere
                .store(wanted.contains(&rt.provider.name), Ordering::Relaxed);
        }
        let now = now_ms();
        for p in self.table.all() {
            let suspended = matches!(self.allowed(p, now), Allowed::Suspended { .. });
            self.metrics
                .destination_suspended(self.core.stream.as_str(), &p.name, suspended);
            if let Some(rt) = self.used(&p.name) {
                self.metrics.destination_connections(
                    self.core.stream.as_str(),
                    &p.name,
                    rt.open.load(Ordering::Relaxed),
                );
            }
        }
    }
}

/// Refreshes every shaper every second until `stop`.
pub async fn refresher(
    shapers: Vec<Arc<Shaper>>,
    heartbeat: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        for s in &shapers {
            s.refresh(heartbeat).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_spaces_starts_and_refuses_long_waits() {
        let mut g = Gcra::default();
        // 10/s: 100 ms apart.
        assert_eq!(g.reserve(10.0, 1_000, 1_000), Ok(0));
        assert_eq!(g.reserve(10.0, 1_000, 1_000), Ok(100));
        assert_eq!(g.reserve(10.0, 1_000, 1_000), Ok(200));
        // 1/min: the second start would wait a minute: refused, not reserved.
        let mut slow = Gcra::default();
        assert_eq!(slow.reserve(1.0 / 60.0, 0, 1_000), Ok(0));
        assert_eq!(slow.reserve(1.0 / 60.0, 0, 1_000), Err(60_000));
        assert_eq!(slow.reserve(1.0 / 60.0, 60_000, 1_000), Ok(0));
        // Idle time is not saved up into a burst.
        assert_eq!(g.reserve(10.0, 10_000, 1_000), Ok(0));
        assert_eq!(g.reserve(10.0, 10_000, 1_000), Ok(100));
    }
}
