//! One stream's delivery loop: claim due recipients with a lease, deliver
//! each under a concurrency limit and a rate limit, record outcomes in
//! batches. Each stream runs its own worker with its own settings and
//! [`Sender`]: a backlog on one stream never holds up the other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lettre::address::Envelope;
use list_hygiene::bounce::BouncePolicy;
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::time::Instant;
use tracing::{Instrument as _, debug, error, info, info_span, warn};

use super::smtp::{Refusal, Sender};
use crate::config::StreamSettings;
use crate::domain::{EmailAddress, Outcome, Reply, Stream};
use crate::hygiene::Hygiene;
use crate::store::{Claimed, Payload, Store, now_ms};
use crate::suppression::Suppressions;
use crate::telemetry::redact_addresses;

/// How long an idle worker sleeps at most before looking again; other
/// processes sharing the database enqueue without notifying this one.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// How long a worker with a few free slots waits for more before claiming.
const CLAIM_GATHER: Duration = Duration::from_millis(5);
/// Outcomes recorded per transaction at most.
const FINISH_BATCH: usize = 256;
/// How long shutdown waits for deliveries in flight before releasing them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

pub struct Worker {
    pub stream: Stream,
    pub settings: StreamSettings,
    pub store: Store,
    pub sender: Arc<Sender>,
    /// Woken by the enqueuer when this stream has new mail.
    pub wake: Arc<Notify>,
    /// Wakes the webhook dispatcher when outcomes queue events.
    pub events: Arc<Notify>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Bounces the worker sees go through the bounce policy onto this.
    pub suppressions: Arc<Suppressions>,
    pub bounce_policy: BouncePolicy,
    /// Signs the VERP return path's tag.
    pub links: Arc<crate::unsubscribe::Links>,
    /// This process's node id: its leases carry it (see [`crate::node`]).
    pub node: crate::node::NodeId,
    /// True while `run` runs, for `/readyz`.
    pub running: Arc<std::sync::atomic::AtomicBool>,
}

type Key = (String, i64);

/// What became of one claimed recipient.
#[derive(Debug)]
enum Done {
    /// Attempted: the outcome to record.
    Attempted(Outcome),
    /// Not attempted: shaping held it back until `until` (see
    /// [`super::shaping`]); back to the queue, the attempt not counted.
    Postponed { until: i64, why: String },
}

impl Worker {
    /// Runs until `shutdown` turns true; then stops claiming, lets deliveries
    /// in flight finish (up to a grace period) and releases the rest.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        // Down again when this returns, or if it panics and unwinds.
        struct Running(Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Running {
            fn drop(&mut self) {
                self.0.store(false, std::sync::atomic::Ordering::Relaxed);
            }
        }
        self.running
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let _running = Running(self.running.clone());
        let stream = self.stream;
        let concurrency = self.settings.concurrency;
        let sem = Arc::new(Semaphore::new(concurrency));
        let inflight: Arc<Mutex<HashMap<Key, Claimed>>> = Arc::default();
        let (done_tx, done_rx) =
            mpsc::channel::<(Claimed, i64, Done)>(concurrency * 4 + FINISH_BATCH);
        let finisher = tokio::spawn(
            Finisher {
                store: self.store.clone(),
                stream,
                events: self.events.clone(),
                metrics: self.metrics.clone(),
                suppressions: self.suppressions.clone(),
                bounce_policy: self.bounce_policy,
            }
            .run(done_rx, inflight.clone())
            .instrument(info_span!("finisher", %stream)),
        );
        let lease = self.settings.lease.as_millis() as i64;
        let mut pacer = Pacer::new(self.settings.rate_limit);
        // Shared by every delivery task rather than cloned into each.
        let shared_settings = Arc::new(self.settings.clone());
        let mut backoff = Duration::from_millis(100);
        let min_batch = (concurrency / 4).max(1);
        info!(%stream, concurrency, route = ?self.sender.route(), "worker started");

        while !*shutdown.borrow() {
            self.sender.reap_idle();
            if sem.available_permits() < min_batch {
                // Claiming one slot at a time costs a write transaction per
                // message: wait for one slot, then briefly for a batch.
                tokio::select! {
                    _ = async {
                        drop(sem.acquire().await);
                        let _ = tokio::time::timeout(CLAIM_GATHER, sem.acquire_many(min_batch as u32)).await;
                    } => {}
                    _ = shutdown.changed() => continue,
                }
            }
            // With a rate limit, claim about a second of work at a time, so
            // claimed rows don't wait out their lease behind the pacer.
            let free = match self.settings.rate_limit {
                0 => sem.available_permits(),
                rate => sem.available_permits().min(rate as usize),
            };
            if free == 0 {
                continue;
            }
            let now = now_ms();
            let token = uuid::Uuid::now_v7().simple().to_string();
            let claimed = match self
                .store
                .claim(stream, now, now + lease, free, &token, self.node.as_str())
                .await
            {
                Ok(c) => {
                    backoff = Duration::from_millis(100);
                    c
                }
                Err(e) => {
                    error!(%stream, error = %e, cause = ?e, "claiming failed; backing off");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            };
            if claimed.is_empty() {
                let wait = match self.store.next_due(stream).await {
                    Ok(Some(t)) => Duration::from_millis(
                        (t - now).clamp(1, IDLE_POLL.as_millis() as i64) as u64,
                    ),
                    _ => IDLE_POLL,
                };
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            debug!(%stream, n = claimed.len(), "claimed");
            {
                let mut map = inflight.lock().expect("inflight lock");
                for c in &claimed {
                    map.insert((c.message_id.clone(), c.idx), c.clone());
                }
            }
            let ids: Vec<&str> = claimed.iter().map(|c| c.message_id.as_str()).collect();
            let payloads = match self.store.delivery_payloads(&ids).await {
                Ok(p) => p,
                Err(e) => {
                    // The leases expire and the rows fall due again.
                    error!(%stream, error = %e, "loading messages failed; backing off");
                    {
                        let mut map = inflight.lock().expect("inflight lock");
                        for c in &claimed {
                            map.remove(&(c.message_id.clone(), c.idx));
                        }
                    }
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            };
            for c in claimed {
                let payload = payloads.get(&c.message_id).cloned();
                // Whatever is not started when shutdown comes stays in
                // `inflight` and is released below.
                tokio::select! {
                    _ = pacer.wait() => {}
                    _ = shutdown.changed() => break,
                }
                let permit = sem
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("semaphore never closed");
                let attempt = Attempt {
                    stream,
                    settings: shared_settings.clone(),
                    sender: self.sender.clone(),
                    links: self.links.clone(),
                };
                let done = done_tx.clone();
                let span = info_span!("delivery", message_id = %c.message_id, %stream, domain = %c.domain, attempt = c.attempts);
                tokio::spawn(
                    async move {
                        let started = now_ms();
                        let finish = attempt.deliver(&c, payload.as_deref()).await;
                        let _ = done.send((c, started, finish)).await;
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
        }

        info!(%stream, "worker stopping: waiting for deliveries in flight");
        let all = u32::try_from(concurrency).unwrap_or(u32::MAX);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, sem.acquire_many(all))
            .await
            .is_ok();
        drop(done_tx);
        let _ = finisher.await;
        let left: Vec<Claimed> = inflight
            .lock()
            .expect("inflight lock")
            .drain()
            .map(|(_, c)| c)
            .collect();
        if !left.is_empty() {
            warn!(%stream, n = left.len(), drained, "releasing unfinished deliveries");
            if let Err(e) = self.store.release(&left).await {
                // Their leases expire by themselves; nothing is lost.
                error!(%stream, error = %e, "releasing leases failed; they will expire");
            }
        }
        info!(%stream, "worker stopped");
    }
}

/// The stream's rate limit: delivery starts spaced evenly at `rate` per
/// second, no bursts (a leaky bucket). A rate of 0 never waits.
struct Pacer {
    step: Option<Duration>,
    next: Instant,
}

impl Pacer {
    fn new(rate: u32) -> Self {
        Pacer {
            step: (rate > 0).then(|| Duration::from_secs_f64(1.0 / f64::from(rate))),
            next: Instant::now(),
        }
    }

    async fn wait(&mut self) {
        if let Some(step) = self.step {
            self.next = self.next.max(Instant::now());
            tokio::time::sleep_until(self.next).await;
            self.next += step;
        }
    }
}

/// Records outcomes in batches; retries a failed batch with backoff, since
/// an unrecorded outcome only means a duplicate delivery once the lease ends.
struct Finisher {
    store: Store,
    stream: Stream,
    events: Arc<Notify>,
    metrics: Arc<crate::metrics::Metrics>,
    suppressions: Arc<Suppressions>,
    bounce_policy: BouncePolicy,
}

impl Finisher {
    async fn run(
        self,
        mut rx: mpsc::Receiver<(Claimed, i64, Done)>,
        inflight: Arc<Mutex<HashMap<Key, Claimed>>>,
    ) {
        let hygiene = Hygiene {
            store: &self.store,
            suppressions: &self.suppressions,
            policy: self.bounce_policy,
            // The worker's own replies are always attributed.
            suppress_unattributed: false,
            events: &self.events,
        };
        let mut received = Vec::with_capacity(FINISH_BATCH);
        let mut batch = Vec::with_capacity(FINISH_BATCH);
        let mut postponed = Vec::new();
        while rx.recv_many(&mut received, FINISH_BATCH).await > 0 {
            for (c, started, done) in received.drain(..) {
                match done {
                    Done::Attempted(outcome) => batch.push((c, started, outcome)),
                    Done::Postponed { until, why } => postponed.push((c, until, why)),
                }
            }
            if !postponed.is_empty() {
                let mut backoff = Duration::from_millis(50);
                while let Err(e) = self.store.postpone(&postponed).await {
                    error!(error = %e, n = postponed.len(), "postponing shaped deliveries failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
                let mut map = inflight.lock().expect("inflight lock");
                for (c, _, _) in postponed.drain(..) {
                    map.remove(&(c.message_id, c.idx));
                }
            }
            if batch.is_empty() {
                continue;
            }
            let mut backoff = Duration::from_millis(50);
            loop {
                match self.store.finish_batch(&batch).await {
                    Ok(recorded) => {
                        let mut done = Vec::with_capacity(batch.len());
                        for ((c, _, outcome), ok) in batch.iter().zip(recorded) {
                            if ok {
                                done.push((c, outcome));
                            } else {
                                warn!(message_id = %c.message_id, idx = c.idx, outcome = outcome.state().as_str(), "lease lost before the outcome was recorded");
                            }
                        }
                        super::outcomes::after(
                            hygiene,
                            self.stream,
                            &self.events,
                            &self.metrics,
                            &done,
                        )
                        .await;
                        break;
                    }
                    Err(e) => {
                        error!(error = %e, cause = ?e, n = batch.len(), "recording outcomes failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
            }
            let mut map = inflight.lock().expect("inflight lock");
            for (c, _, _) in batch.drain(..) {
                map.remove(&(c.message_id, c.idx));
            }
        }
    }
}

struct Attempt {
    stream: Stream,
    settings: Arc<StreamSettings>,
    sender: Arc<Sender>,
    links: Arc<crate::unsubscribe::Links>,
}

impl Attempt {
    async fn deliver(&self, c: &Claimed, payload: Option<&Payload>) -> Done {
        let max_age = self.settings.max_age.as_millis() as i64;
        if now_ms() > c.created_at + max_age {
            info!("expired before delivery");
            return Done::Attempted(Outcome::Expired {
                reason: format!("not delivered within the {} stream's max_age", self.stream),
            });
        }
        let Some(Payload { sender, raw }) = payload else {
            error!("message row missing for a queued recipient");
            return Done::Attempted(Outcome::Expired {
                reason: "message content missing from the store".into(),
            });
        };
        // Data read back is parsed again: a row that no longer parses is
        // failed with its cause, never a panic.
        let envelope = match self.envelope(c, sender) {
            Ok(e) => e,
            Err(why) => {
                error!(why = %redact_addresses(&why), "stored recipient no longer valid");
                return Done::Attempted(Outcome::bounced(Reply::local(why)));
            }
        };
        match self.sender.send(&envelope, raw, &c.domain).await {
            Ok(reply) => {
                info!(code = ?reply.code, host = reply.host.as_deref().unwrap_or(""), "delivered");
                Done::Attempted(Outcome::Delivered(reply))
            }
            Err(Refusal {
                reply,
                postponed_until: Some(until),
                ..
            }) => {
                debug!(why = %reply.text, until, "postponed by shaping");
                Done::Postponed {
                    until,
                    why: reply.text,
                }
            }
            Err(Refusal {
                reply,
                permanent: true,
                ..
            }) => {
                let outcome = Outcome::bounced(reply);
                let class = outcome.class().map_or("", |c| c.as_str());
                info!(code = ?outcome.reply().and_then(|r| r.code), reply = %redact_addresses(outcome.text()), class, "bounced");
                Done::Attempted(outcome)
            }
            Err(Refusal { reply, .. }) => Done::Attempted(self.deferred(c, reply, max_age)),
        }
    }

    /// A temporary failure: retried on the stream's schedule, or expired
    /// when the retry would fall past `max_age`.
    fn deferred(&self, c: &Claimed, reply: Reply, max_age: i64) -> Outcome {
        let now = now_ms();
        let attempts = u32::try_from(c.attempts).unwrap_or(u32::MAX);
        let retry_at = now + self.settings.retry_delay(attempts).as_millis() as i64;
        let text = redact_addresses(&reply.text);
        if retry_at > c.created_at + max_age {
            info!(code = ?reply.code, reply = %text, "deferred past max_age: expired");
            Outcome::Expired {
                reason: format!(
                    "gave up after {attempts} attempts (max_age); last reply: {}",
                    reply.text
                ),
            }
        } else {
            info!(code = ?reply.code, reply = %text, retry_in_ms = retry_at - now, "deferred");
            Outcome::Deferred { reply, retry_at }
        }
    }

    /// The SMTP envelope: the tagged VERP return path
    /// `bounces+ID-IDX-TAG@RETURN_PATH` (see `list_hygiene::verp`), so an
    /// asynchronous bounce names its message and recipient, provably.
    fn envelope(&self, c: &Claimed, sender: &str) -> Result<Envelope, String> {
        let rcpt = EmailAddress::parse(&c.address)
            .map_err(|e| format!("stored address {:?}: {e}", c.address))?;
        let from =
            EmailAddress::parse(sender).map_err(|e| format!("stored sender {sender:?}: {e}"))?;
        let rp_domain = if self.settings.return_path.is_empty() {
            from.domain().to_string()
        } else {
            self.settings.return_path.clone()
        };
        let id = uuid::Uuid::parse_str(&c.message_id)
            .map_err(|e| format!("stored message id {:?}: {e}", c.message_id))?;
        let idx = u16::try_from(c.idx).map_err(|e| format!("stored recipient index: {e}"))?;
        let local = list_hygiene::verp::local_part(self.links.signer(), &id, idx);
        let return_path =
            lettre::Address::new(local, rp_domain).map_err(|e| format!("return path: {e}"))?;
        Envelope::new(Some(return_path), vec![rcpt.as_lettre().clone()]).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lower bounds only: a sleep never ends early, so these can't flake.
    #[tokio::test]
    async fn the_rate_limit_spaces_starts_evenly_and_saves_up_no_burst() {
        let mut p = Pacer::new(20);
        let t0 = Instant::now();
        for _ in 0..9 {
            p.wait().await;
        }
        // Nine starts at 20/s: the first at once, then every 50 ms.
        assert!(
            t0.elapsed() >= Duration::from_millis(400),
            "{:?}",
            t0.elapsed()
        );
        // Idle time is not saved up into a burst.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t1 = Instant::now();
        p.wait().await;
        p.wait().await;
        p.wait().await;
        assert!(
            t1.elapsed() >= Duration::from_millis(100),
            "{:?}",
            t1.elapsed()
        );
    }

    #[tokio::test]
    async fn a_rate_of_zero_means_no_limit() {
        let mut p = Pacer::new(0);
        for _ in 0..1000 {
            p.wait().await;
        }
        assert!(p.step.is_none());
    }
}
