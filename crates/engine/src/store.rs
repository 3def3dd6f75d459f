//! The store trait every backend implements, and the in-memory store.
//!
//! A store is a map of task records with a few rules it must enforce itself, because several
//! processes may share one (PostgreSQL): a transition is applied only if it is legal from the
//! record's *current* status (compare-and-set), and terminal records never change. The contract
//! tests in [`crate::contract`] hold every store to these rules.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use crate::outbox::{Delivery, DeliveryState, Settlement, event_for};
use crate::task::{Owner, TaskId, TaskRecord, TaskStatus};

/// A boxed, sendable future borrowing from the store.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StoreError {
    /// The change is not allowed from the record's current status.
    #[error("a {from} task cannot become {to}", from = .from.as_str(), to = .to.map_or("changed", |t| t.as_str()))]
    IllegalTransition {
        /// The current status.
        from: TaskStatus,
        /// The requested status (`None`: a change to a terminal task's fields).
        to: Option<TaskStatus>,
    },
    /// A record with this id exists already.
    #[error("a task with this id exists already")]
    Duplicate,
    /// The backend failed (I/O, database).
    #[error("task storage failed: {0}")]
    Backend(String),
}

/// A change to a record. Fields left `None` keep their value.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Update {
    /// A new status (must be a legal transition).
    pub status: Option<TaskStatus>,
    /// A new status message (`Some(None)` clears it).
    pub status_message: Option<Option<String>>,
    /// The result object, JSON text.
    pub result: Option<String>,
    /// The error object, JSON text.
    pub error: Option<String>,
    /// New outstanding input requests (`Some(None)` clears them).
    pub input_requests: Option<Option<String>>,
    /// Marks the task as cancel-requested.
    pub cancel_requested: bool,
    /// A new attempt number (the work starts again after a transient failure).
    pub attempt: Option<u32>,
}

impl Update {
    /// A status change.
    pub fn status(status: TaskStatus) -> Self {
        Self { status: Some(status), ..Self::default() }
    }

    /// Applies the update to `record` at `now_ms`, enforcing the state machine.
    pub fn apply(self, record: &mut TaskRecord, now_ms: u64) -> Result<(), StoreError> {
        if record.status.is_terminal() {
            return Err(StoreError::IllegalTransition { from: record.status, to: self.status });
        }
        if let Some(next) = self.status {
            if !record.status.can_become(next) {
                return Err(StoreError::IllegalTransition { from: record.status, to: Some(next) });
            }
            record.status = next;
            if next != TaskStatus::InputRequired {
                record.input_requests = None;
            }
        }
        if let Some(m) = self.status_message {
            record.status_message = m;
        }
        if let Some(r) = self.result {
            record.result = Some(r);
        }
        if let Some(e) = self.error {
            record.error = Some(e);
        }
        if let Some(i) = self.input_requests {
            record.input_requests = i;
        }
        record.cancel_requested |= self.cancel_requested;
        if let Some(a) = self.attempt {
            record.attempt = a;
        }
        record.updated_at_ms = now_ms.max(record.updated_at_ms);
        Ok(())
    }

    /// [`Update::apply`], and the webhook event the change enqueues, if any
    /// ([`crate::outbox::event_for`]). Stores call this and store both in one atomic step.
    pub fn apply_with_event(self, record: &mut TaskRecord, now_ms: u64) -> Result<Option<Delivery>, StoreError> {
        let before = record.status;
        self.apply(record, now_ms)?;
        Ok(event_for(before, record, now_ms))
    }
}

/// One page of a listing.
#[derive(Debug, Default)]
pub struct Page {
    /// The records, oldest first.
    pub tasks: Vec<TaskRecord>,
    /// The cursor of the next page, if there is one.
    pub next_cursor: Option<String>,
}

/// What [`TaskStore::create`] did.
#[derive(Debug, PartialEq)]
pub enum Created {
    /// The record was stored.
    New,
    /// A live record of the same owner, tool and idempotency key exists; nothing was stored.
    Existing(Box<TaskRecord>),
}

/// Where task records live.
pub trait TaskStore: Send + Sync + 'static {
    /// Stores a new record. It must be durable (committed) when the future resolves.
    ///
    /// Idempotency: when the record carries an `idempotency_key` and an unexpired record of the
    /// same owner, tool and key exists, nothing is stored and that record is returned — atomically,
    /// so that concurrent creations with one key store exactly one record. An expired one (not
    /// yet swept) is replaced.
    fn create(&self, record: TaskRecord) -> BoxFuture<'_, Result<Created, StoreError>>;
    /// Reads a record.
    fn get<'a>(&'a self, id: &'a TaskId) -> BoxFuture<'a, Result<Option<TaskRecord>, StoreError>>;
    /// Applies `update` atomically; `Ok(None)` if there is no such record.
    fn update<'a>(
        &'a self,
        id: &'a TaskId,
        update: Update,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<Option<TaskRecord>, StoreError>>;
    /// Lists the records `caller` may see ([`Owner::lists_for`]), oldest first, after `cursor`.
    fn list<'a>(
        &'a self,
        caller: &'a Owner,
        cursor: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Page, StoreError>>;
    /// Records whose retention ended at or before `now_ms`, at most `limit`.
    fn expired(&self, now_ms: u64, limit: usize) -> BoxFuture<'_, Result<Vec<TaskRecord>, StoreError>>;
    /// Deletes records.
    fn delete<'a>(&'a self, ids: &'a [TaskId]) -> BoxFuture<'a, Result<usize, StoreError>>;
    /// Atomically takes over unfinished records whose lease lapsed before `now_ms` (their holder
    /// died): sets `holder` and `lease_until_ms`, adds one to `attempt`, and returns them. Two
    /// engines claiming at once never both get the same record.
    fn claim_orphans<'a>(
        &'a self,
        now_ms: u64,
        holder: &'a str,
        lease_until_ms: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<TaskRecord>, StoreError>>;
    /// Extends the leases `holder` has on `ids` (unfinished ones only). Returns how many.
    fn renew_leases<'a>(
        &'a self,
        holder: &'a str,
        ids: &'a [TaskId],
        lease_until_ms: u64,
    ) -> BoxFuture<'a, Result<usize, StoreError>>;

    // The webhook outbox (see [`crate::outbox`]). `update` enqueues; `delete` drops the
    // deliveries of the deleted tasks, whatever their state: retention is the task's.

    /// Atomically takes pending deliveries due at `now_ms` that nobody holds (or whose holder's
    /// lease lapsed), earliest first: sets the lease, adds one to `attempts`, returns them.
    fn claim_deliveries<'a>(
        &'a self,
        now_ms: u64,
        holder: &'a str,
        lease_until_ms: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Delivery>, StoreError>>;
    /// Records how an attempt ended ([`Settlement::apply`]); `Ok(false)` if the delivery is gone.
    fn settle_delivery<'a>(
        &'a self,
        id: &'a str,
        settlement: Settlement,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Extends the leases `holder` has on pending deliveries `ids` (attempts still running).
    fn renew_delivery_leases<'a>(
        &'a self,
        holder: &'a str,
        ids: &'a [String],
        lease_until_ms: u64,
    ) -> BoxFuture<'a, Result<usize, StoreError>>;
    /// A task's deliveries, oldest first.
    fn deliveries<'a>(&'a self, task: &'a TaskId) -> BoxFuture<'a, Result<Vec<Delivery>, StoreError>>;
    /// When the earliest pending delivery is due (held ones count from their lease's end).
    fn next_delivery_at(&self) -> BoxFuture<'_, Result<Option<u64>, StoreError>>;
}

/// Whether a claim may take `r` over at `now_ms`.
pub fn is_orphan(r: &TaskRecord, now_ms: u64) -> bool {
    !r.status.is_terminal() && r.lease_until_ms.is_none_or(|until| until < now_ms)
}

/// A cursor: the creation time and id of the last record of the previous page.
pub fn encode_cursor(record: &TaskRecord) -> String {
    format!("{}-{}", record.created_at_ms, record.id.as_str())
}

/// Decodes a cursor from [`encode_cursor`]; `None` for anything else (the caller answers -32602).
pub fn decode_cursor(cursor: &str) -> Option<(u64, TaskId)> {
    let (ms, id) = cursor.split_once('-')?;
    Some((ms.parse().ok()?, TaskId::from_wire(id)))
}

/// Task records in memory: for tests and ephemeral servers. Nothing survives a restart.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<MemoryInner>,
}

#[derive(Default)]
struct MemoryInner {
    tasks: HashMap<TaskId, TaskRecord>,
    by_creation: BTreeSet<(u64, TaskId)>,
    /// Records with a TTL by expiry: the sweeper reads the front instead of scanning every
    /// record under the lock each second (that scan was the p99 spike with many retained tasks).
    by_expiry: BTreeSet<(u64, TaskId)>,
    by_idempotency_key: HashMap<(String, String, String), TaskId>,
    deliveries: HashMap<String, Delivery>,
    /// Pending deliveries by when they may be claimed next (due time, or lease end if held).
    deliveries_due: BTreeSet<(u64, String)>,
    deliveries_by_task: HashMap<String, Vec<String>>,
}

impl MemoryInner {
    /// Removes a record and its index entries; false if there was none.
    fn remove(&mut self, id: &TaskId) -> bool {
        let Some(r) = self.tasks.remove(id) else { return false };
        for d in self.deliveries_by_task.remove(r.id.as_str()).unwrap_or_default() {
            self.take_delivery(&d);
        }
        self.by_creation.remove(&(r.created_at_ms, r.id.clone()));
        if let Some(expiry) = r.expires_at_ms() {
            self.by_expiry.remove(&(expiry, r.id.clone()));
        }
        if let Some(key) = r.idempotency_key {
            let slot = (r.owner.key(), r.tool, key);
            if self.by_idempotency_key.get(&slot) == Some(&r.id) {
                self.by_idempotency_key.remove(&slot);
            }
        }
        true
    }

    /// The live record `record` would duplicate under its idempotency key.
    fn idempotent_twin(&self, record: &TaskRecord) -> Option<TaskRecord> {
        let key = record.idempotency_key.clone()?;
        let id = self.by_idempotency_key.get(&(record.owner.key(), record.tool.clone(), key))?;
        let existing = self.tasks.get(id)?;
        let live = existing.expires_at_ms().is_none_or(|e| e > record.created_at_ms);
        live.then(|| existing.clone())
    }
}

/// When a pending delivery may next be claimed.
fn claimable_at(d: &Delivery) -> u64 {
    d.lease_until_ms.map_or(d.next_attempt_ms, |until| until.max(d.next_attempt_ms))
}

impl MemoryInner {
    /// Stores a new delivery.
    fn enqueue(&mut self, d: Delivery) {
        self.deliveries_by_task.entry(d.task_id.clone()).or_default().push(d.id.clone());
        self.put(d);
    }

    /// Takes a delivery out with its due-index entry, to change it and [`MemoryInner::put`] it back.
    fn take_delivery(&mut self, id: &str) -> Option<Delivery> {
        let d = self.deliveries.remove(id)?;
        self.deliveries_due.remove(&(claimable_at(&d), d.id.clone()));
        Some(d)
    }

    /// Stores a changed delivery (taken out with [`MemoryInner::take_delivery`]).
    fn put(&mut self, d: Delivery) {
        if d.state == DeliveryState::Pending {
            self.deliveries_due.insert((claimable_at(&d), d.id.clone()));
        }
        self.deliveries.insert(d.id.clone(), d);
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl TaskStore for MemoryStore {
    fn create(&self, record: TaskRecord) -> BoxFuture<'_, Result<Created, StoreError>> {
        let mut inner = self.lock();
        let result = if inner.tasks.contains_key(&record.id) {
            Err(StoreError::Duplicate)
        } else if let Some(existing) = inner.idempotent_twin(&record) {
            Ok(Created::Existing(Box::new(existing)))
        } else {
            if let Some(key) = record.idempotency_key.clone() {
                let slot = (record.owner.key(), record.tool.clone(), key);
                if let Some(stale) = inner.by_idempotency_key.insert(slot, record.id.clone()) {
                    inner.remove(&stale);
                }
            }
            inner.by_creation.insert((record.created_at_ms, record.id.clone()));
            if let Some(expiry) = record.expires_at_ms() {
                inner.by_expiry.insert((expiry, record.id.clone()));
            }
            inner.tasks.insert(record.id.clone(), record);
            Ok(Created::New)
        };
        Box::pin(std::future::ready(result))
    }

    fn get<'a>(&'a self, id: &'a TaskId) -> BoxFuture<'a, Result<Option<TaskRecord>, StoreError>> {
        let found = self.lock().tasks.get(id).cloned();
        Box::pin(std::future::ready(Ok(found)))
    }

    fn update<'a>(
        &'a self,
        id: &'a TaskId,
        update: Update,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<Option<TaskRecord>, StoreError>> {
        let mut inner = self.lock();
        let result = match inner.tasks.get(id) {
            None => Ok(None),
            Some(record) => {
                let mut next = record.clone();
                update.apply_with_event(&mut next, now_ms).map(|event| {
                    inner.tasks.insert(id.clone(), next.clone());
                    if let Some(event) = event {
                        inner.enqueue(event);
                    }
                    Some(next)
                })
            }
        };
        Box::pin(std::future::ready(result))
    }

    fn list<'a>(
        &'a self,
        caller: &'a Owner,
        cursor: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Page, StoreError>> {
        let inner = self.lock();
        let start = cursor.and_then(decode_cursor);
        let mut tasks = Vec::with_capacity(limit.min(128));
        let mut more = false;
        let range = inner.by_creation.iter().filter(|key| start.as_ref().is_none_or(|s| *key > s));
        for (_, id) in range {
            let Some(record) = inner.tasks.get(id) else { continue };
            if !record.owner.lists_for(caller) {
                continue;
            }
            if tasks.len() == limit {
                more = true;
                break;
            }
            tasks.push(record.clone());
        }
        let next_cursor = if more { tasks.last().map(encode_cursor) } else { None };
        Box::pin(std::future::ready(Ok(Page { tasks, next_cursor })))
    }

    fn expired(&self, now_ms: u64, limit: usize) -> BoxFuture<'_, Result<Vec<TaskRecord>, StoreError>> {
        let inner = self.lock();
        let found = inner
            .by_expiry
            .iter()
            .take_while(|(expiry, _)| *expiry <= now_ms)
            .filter_map(|(_, id)| inner.tasks.get(id))
            .take(limit)
            .cloned()
            .collect();
        Box::pin(std::future::ready(Ok(found)))
    }

    fn claim_orphans<'a>(
        &'a self,
        now_ms: u64,
        holder: &'a str,
        lease_until_ms: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<TaskRecord>, StoreError>> {
        let mut inner = self.lock();
        let claimed = inner
            .tasks
            .values_mut()
            .filter(|r| is_orphan(r, now_ms))
            .take(limit)
            .map(|r| {
                r.lease_holder = Some(holder.to_owned());
                r.lease_until_ms = Some(lease_until_ms);
                r.attempt += 1;
                r.clone()
            })
            .collect();
        Box::pin(std::future::ready(Ok(claimed)))
    }

    fn renew_leases<'a>(
        &'a self,
        holder: &'a str,
        ids: &'a [TaskId],
        lease_until_ms: u64,
    ) -> BoxFuture<'a, Result<usize, StoreError>> {
        let mut inner = self.lock();
        let mut n = 0;
        for id in ids {
            if let Some(r) = inner.tasks.get_mut(id)
                && !r.status.is_terminal()
                && r.lease_holder.as_deref() == Some(holder)
            {
                r.lease_until_ms = Some(lease_until_ms);
                n += 1;
            }
        }
        Box::pin(std::future::ready(Ok(n)))
    }

    fn delete<'a>(&'a self, ids: &'a [TaskId]) -> BoxFuture<'a, Result<usize, StoreError>> {
        let mut inner = self.lock();
        let mut n = 0;
        for id in ids {
            if inner.remove(id) {
                n += 1;
            }
        }
        Box::pin(std::future::ready(Ok(n)))
    }

    fn claim_deliveries<'a>(
        &'a self,
        now_ms: u64,
        holder: &'a str,
        lease_until_ms: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Delivery>, StoreError>> {
        let mut inner = self.lock();
        let due: Vec<(u64, String)> =
            inner.deliveries_due.iter().take_while(|(at, _)| *at <= now_ms).take(limit).cloned().collect();
        let mut claimed = Vec::with_capacity(due.len());
        for (_, id) in due {
            let Some(mut d) = inner.take_delivery(&id) else { continue };
            d.lease_holder = Some(holder.to_owned());
            d.lease_until_ms = Some(lease_until_ms);
            d.attempts += 1;
            claimed.push(d.clone());
            inner.put(d);
        }
        Box::pin(std::future::ready(Ok(claimed)))
    }

    fn settle_delivery<'a>(
        &'a self,
        id: &'a str,
        settlement: Settlement,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let mut inner = self.lock();
        let found = match inner.take_delivery(id) {
            None => false,
            Some(mut d) => {
                settlement.apply(&mut d, now_ms);
                inner.put(d);
                true
            }
        };
        Box::pin(std::future::ready(Ok(found)))
    }

    fn renew_delivery_leases<'a>(
        &'a self,
        holder: &'a str,
        ids: &'a [String],
        lease_until_ms: u64,
    ) -> BoxFuture<'a, Result<usize, StoreError>> {
        let mut inner = self.lock();
        let mut n = 0;
        for id in ids {
            let held = inner
                .deliveries
                .get(id)
                .is_some_and(|d| d.state == DeliveryState::Pending && d.lease_holder.as_deref() == Some(holder));
            if !held {
                continue;
            }
            let Some(mut d) = inner.take_delivery(id) else { continue };
            d.lease_until_ms = Some(lease_until_ms);
            inner.put(d);
            n += 1;
        }
        Box::pin(std::future::ready(Ok(n)))
    }

    fn deliveries<'a>(&'a self, task: &'a TaskId) -> BoxFuture<'a, Result<Vec<Delivery>, StoreError>> {
        let inner = self.lock();
        let ids = inner.deliveries_by_task.get(task.as_str()).map(Vec::as_slice).unwrap_or_default();
        let found: Vec<Delivery> = ids.iter().filter_map(|id| inner.deliveries.get(id)).cloned().collect();
        Box::pin(std::future::ready(Ok(found)))
    }

    fn next_delivery_at(&self) -> BoxFuture<'_, Result<Option<u64>, StoreError>> {
        let next = self.lock().deliveries_due.first().map(|(at, _)| *at);
        Box::pin(std::future::ready(Ok(next)))
    }
}
