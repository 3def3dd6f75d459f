//! The dispatcher: drains the outbox. It claims due deliveries (leased, so that several
//! processes sharing a store never send one twice at once), signs and POSTs each, and settles it:
//! delivered, retried after an exponential backoff with full jitter, or dead once its attempts
//! are spent. A permanent refusal (the guard, an unsupported scheme) is dead at once.
//!
//! Concurrency is bounded twice: `max_in_flight` attempts in all, `per_destination` per
//! `host:port`, so one slow receiver cannot hold up the others. Leases of running attempts are
//! renewed; a dispatcher that dies leaves its deliveries to be claimed again when they lapse.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use taskwire_engine::outbox::{Delivery, Settlement};
use taskwire_engine::{Engine, RetryPolicy, now_ms};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::send::Sender;
use crate::signing::{Signer, standard_headers};

/// Dispatcher settings.
#[derive(Clone, Debug)]
pub struct DispatcherConfig {
    /// Attempts per delivery and the backoff between them (default: 8 attempts, first delay up
    /// to 1 s, doubling to at most 10 min — about 20 minutes in all).
    pub retry: RetryPolicy,
    /// Attempts running at once to one `host:port` (default 8).
    pub per_destination: usize,
    /// Attempts running at once in all (default 256).
    pub max_in_flight: usize,
    /// How often the store is looked at for deliveries enqueued by other processes (default 1 s).
    pub poll: Duration,
    /// How long a claim holds before another dispatcher may take the delivery (default 30 s,
    /// renewed every third while the attempt runs).
    pub lease: Duration,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            retry: RetryPolicy { max_attempts: 8, base: Duration::from_secs(1), cap: Duration::from_secs(600) },
            per_destination: 8,
            max_in_flight: 256,
            poll: Duration::from_secs(1),
            lease: Duration::from_secs(30),
        }
    }
}

/// Drains an engine's outbox. Start it with [`Dispatcher::spawn`].
pub struct Dispatcher {
    shared: Arc<Shared>,
}

struct Shared {
    engine: Engine,
    sender: Sender,
    signer: Option<Signer>,
    config: DispatcherConfig,
    holder: String,
    in_flight: Arc<Semaphore>,
    slot_freed: Notify,
    destinations: Mutex<HashMap<String, Arc<Semaphore>>>,
    running: Mutex<HashSet<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Dispatcher {
    /// A dispatcher for `engine`'s outbox, posting with `sender`, signing with `signer` (none:
    /// unsigned, for receivers that check nothing — not recommended).
    pub fn new(engine: Engine, sender: Sender, signer: Option<Signer>, config: DispatcherConfig) -> Self {
        let in_flight = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
        Self {
            shared: Arc::new(Shared {
                engine,
                sender,
                signer,
                holder: format!("webhooks-{}", uuid::Uuid::new_v4().simple()),
                in_flight,
                slot_freed: Notify::new(),
                destinations: Mutex::new(HashMap::new()),
                running: Mutex::new(HashSet::new()),
                config,
            }),
        }
    }

    /// Runs until `shutdown`; attempts running then finish or lapse (and are claimed again by the
    /// next dispatcher).
    pub fn spawn(self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let shared = self.shared;
        tokio::spawn(async move {
            let wake = shared.engine.outbox_wake();
            let mut renew = tokio::time::interval((shared.config.lease / 3).max(Duration::from_millis(10)));
            renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let claimed = match shared.claim_and_start().await {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!("webhook outbox: {e}");
                        0
                    }
                };
                if claimed > 0 && shared.in_flight.available_permits() > 0 {
                    continue; // more may be due
                }
                let next = shared.engine.store().next_delivery_at().await.ok().flatten();
                let now = now_ms();
                let poll = shared.config.poll;
                let wait = next.map_or(poll, |at| Duration::from_millis(at.saturating_sub(now)).min(poll));
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = shared.slot_freed.notified() => {}
                    _ = tokio::time::sleep(wait), if shared.in_flight.available_permits() > 0 => {}
                    _ = renew.tick() => shared.renew_leases().await,
                    _ = shutdown.cancelled() => return,
                }
            }
        })
    }
}

impl Shared {
    /// Claims as many due deliveries as there are free slots and starts them.
    async fn claim_and_start(self: &Arc<Self>) -> Result<usize, taskwire_engine::StoreError> {
        let free = self.in_flight.available_permits();
        if free == 0 {
            return Ok(0);
        }
        let now = now_ms();
        let until = now + self.config.lease.as_millis() as u64;
        let due = self.engine.store().claim_deliveries(now, &self.holder, until, free.min(64)).await?;
        let n = due.len();
        for delivery in due {
            let Ok(slot) = self.in_flight.clone().try_acquire_owned() else {
                // Cannot happen (we claimed no more than the free slots); the lease lapses and
                // another pass takes it.
                break;
            };
            lock(&self.running).insert(delivery.id.clone());
            let this = self.clone();
            tokio::spawn(async move {
                this.attempt(delivery).await;
                drop(slot);
                this.slot_freed.notify_one();
            });
        }
        Ok(n)
    }

    async fn renew_leases(&self) {
        let ids: Vec<String> = lock(&self.running).iter().cloned().collect();
        if ids.is_empty() {
            return;
        }
        let until = now_ms() + self.config.lease.as_millis() as u64;
        if let Err(e) = self.engine.store().renew_delivery_leases(&self.holder, &ids, until).await {
            tracing::warn!("webhook leases: {e}");
        }
    }

    fn destination_slots(&self, url: &str) -> Arc<Semaphore> {
        let key = url::Url::parse(url)
            .map(|u| format!("{}:{}", u.host_str().unwrap_or_default(), u.port_or_known_default().unwrap_or(0)))
            .unwrap_or_else(|_| url.to_owned());
        let mut map = lock(&self.destinations);
        if map.len() > 4096 {
            // Forget idle destinations (nobody holds their semaphore).
            map.retain(|_, s| Arc::strong_count(s) > 1);
        }
        map.entry(key).or_insert_with(|| Arc::new(Semaphore::new(self.config.per_destination.max(1)))).clone()
    }

    async fn attempt(&self, delivery: Delivery) {
        let slots = self.destination_slots(&delivery.url);
        let _slot = slots.acquire_owned().await;
        let headers = standard_headers(&delivery.id, delivery.event.as_bytes(), self.signer.as_ref());
        let body = Bytes::from(delivery.event.clone());
        let outcome = self.sender.post(&delivery.url, None, headers, body).await;
        let now = now_ms();
        let retry = &self.config.retry;
        let settlement = match outcome {
            Ok(_) => Settlement::Delivered,
            Err(e) if e.is_permanent() || delivery.attempts >= retry.max_attempts => {
                tracing::warn!(delivery = %delivery.id, "webhook dead after {} attempt(s): {e}", delivery.attempts);
                Settlement::Dead { error: e.to_string() }
            }
            Err(e) => {
                let delay = retry.delay(delivery.attempts, RetryPolicy::random_unit());
                tracing::debug!(delivery = %delivery.id, "webhook attempt {} failed: {e}; next in {delay:?}", delivery.attempts);
                Settlement::Retry { at_ms: now + delay.as_millis() as u64, error: e.to_string() }
            }
        };
        if let Err(e) = self.engine.store().settle_delivery(&delivery.id, settlement, now).await {
            tracing::warn!(delivery = %delivery.id, "cannot record the webhook attempt: {e}");
        }
        lock(&self.running).remove(&delivery.id);
    }
}
