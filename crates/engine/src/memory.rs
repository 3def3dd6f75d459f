//! The in-memory store: for tests and ephemeral servers. Nothing survives a restart.
//!
//! It must stay as fast with a million retained records as with ten, so nothing here walks
//! every record or moves them all at once:
//! * records live in [`Records`], a map split into shards that grow one at a time. One map
//!   doubling at a million records moved ~400 MB under the store's lock, a 160–460 ms stall for
//!   every caller (bench/NOTES.md);
//! * every lookup has an ordered index of its own: listings (`by_lister`, one caller's tasks in
//!   creation order, so a page costs the page and not every retained record), the TTL sweeper
//!   (`by_expiry`), crash recovery (`by_lease`, which replaced a scan of every record once a
//!   second) and webhook deliveries (`deliveries_due`).

use std::collections::{BTreeSet, HashMap};
use std::hash::BuildHasher;
use std::ops::Bound;
use std::sync::Mutex;

use crate::outbox::{Delivery, DeliveryState, Settlement};
use crate::store::{BoxFuture, Created, Page, StoreError, TaskStore, Update, decode_cursor, encode_cursor, is_orphan};
use crate::task::{Owner, TaskId, TaskRecord};

/// Task records in memory: for tests and ephemeral servers. Nothing survives a restart.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use taskwire_engine::{MemoryStore, Owner, TaskStore};
/// let store = MemoryStore::new();
/// let record = taskwire_engine::contract::sample_record(&Owner::anonymous("s"), 1_000);
/// store.create(record.clone()).await.unwrap();
/// assert_eq!(store.get(&record.id).await.unwrap(), Some(record));
/// # });
/// ```
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<MemoryInner>,
}

#[derive(Default)]
struct MemoryInner {
    tasks: Records,
    /// Records by who lists them ([`lister_of`]), then in creation order: a listing reads its
    /// caller's range from the cursor on. (A single creation-ordered set, filtered by owner,
    /// walked every retained record under the lock for each page.)
    by_lister: BTreeSet<ListingKey>,
    /// Records with a TTL by expiry: the sweeper reads the front instead of scanning every
    /// record under the lock each second (that scan was the p99 spike with many retained tasks).
    by_expiry: BTreeSet<(u64, TaskId)>,
    /// Unfinished records by the end of their lease ([`lease_slot`]): crash recovery reads the
    /// lapsed front.
    by_lease: BTreeSet<(u64, TaskId)>,
    by_idempotency_key: HashMap<(String, String, String), TaskId>,
    deliveries: HashMap<String, Delivery>,
    /// Pending deliveries by when they may be claimed next (due time, or lease end if held).
    deliveries_due: BTreeSet<(u64, String)>,
    deliveries_by_task: HashMap<String, Vec<String>>,
}

/// How many maps [`Records`] splits into. With 64, the largest single move at 1M records is
/// about 16k records (~6 MB), a few milliseconds, once per shard per doubling.
const SHARDS: usize = 64;

/// Task records by id, split into [`SHARDS`] maps by a hash of the id's last bytes.
///
/// A map grows by doubling, which moves every record it holds. Split in 64, each doubling moves
/// a 64th of the records, and the shards double at different moments.
struct Records {
    /// foldhash, seeded per process, as for the other maps a request touches: SipHash was the
    /// largest cost of a lookup here.
    shards: Box<[foldhash::HashMap<TaskId, Box<TaskRecord>>]>,
}

impl Default for Records {
    fn default() -> Self {
        Self { shards: (0..SHARDS).map(|_| foldhash::HashMap::default()).collect() }
    }
}

impl Records {
    /// FNV-1a over the id's last eight bytes: the random end of a generated id, and still a
    /// spread for ids of any other shape that arrive from the wire.
    fn shard_of(id: &TaskId) -> usize {
        let bytes = id.as_str().as_bytes();
        let tail = &bytes[bytes.len().saturating_sub(8)..];
        let hash =
            tail.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
        (hash % SHARDS as u64) as usize
    }

    fn get(&self, id: &TaskId) -> Option<&TaskRecord> {
        self.shards[Self::shard_of(id)].get(id).map(|r| &**r)
    }

    fn get_mut(&mut self, id: &TaskId) -> Option<&mut TaskRecord> {
        self.shards[Self::shard_of(id)].get_mut(id).map(|r| &mut **r)
    }

    fn contains(&self, id: &TaskId) -> bool {
        self.shards[Self::shard_of(id)].contains_key(id)
    }

    /// Stores a record whose id is not taken (the caller checked with [`Records::contains`]).
    fn insert(&mut self, record: TaskRecord) {
        self.shards[Self::shard_of(&record.id)].insert(record.id.clone(), Box::new(record));
    }

    fn remove(&mut self, id: &TaskId) -> Option<TaskRecord> {
        self.shards[Self::shard_of(id)].remove(id).map(|r| *r)
    }
}

/// A record's place in `by_lister`: its lister ([`lister_of`]), creation time and id.
type ListingKey = (u64, u64, TaskId);

fn listing_key(r: &TaskRecord) -> ListingKey {
    (lister_of(&r.owner), r.created_at_ms, r.id.clone())
}

/// Who lists a record, as a number: a hash of its principal when authenticated, else of its
/// scope (the caller [`Owner::lists_for`] admits). A number rather than [`Owner::key`]'s text
/// keeps an allocation and string comparisons off every creation; a listing skips the rare
/// record of another lister whose hash is equal.
fn lister_of(owner: &Owner) -> u64 {
    const HASHER: foldhash::fast::FixedState = foldhash::fast::FixedState::with_seed(0x7461_736b_7769_7265);
    match &owner.principal {
        Some(principal) => HASHER.hash_one((true, principal)),
        None => HASHER.hash_one((false, &owner.scope)),
    }
}

/// Where an unfinished record sits in `by_lease`: the end of its lease, 0 when it has none (it
/// may be claimed at once, as [`is_orphan`] says). Finished records are not indexed.
fn lease_slot(r: &TaskRecord) -> Option<u64> {
    (!r.status.is_terminal()).then(|| r.lease_until_ms.unwrap_or(0))
}

impl MemoryInner {
    /// Changes a record in place with `change`, keeping `by_lease` in step with its status and
    /// lease. Every change to a stored record goes through here (or [`MemoryInner::remove`]).
    fn change<R>(&mut self, id: &TaskId, change: impl FnOnce(&mut TaskRecord) -> R) -> Option<R> {
        let record = self.tasks.get_mut(id)?;
        let before = lease_slot(record);
        let outcome = change(record);
        let after = lease_slot(record);
        if before != after {
            if let Some(at) = before {
                self.by_lease.remove(&(at, id.clone()));
            }
            if let Some(at) = after {
                self.by_lease.insert((at, id.clone()));
            }
        }
        Some(outcome)
    }

    /// Removes a record and its index entries; false if there was none.
    fn remove(&mut self, id: &TaskId) -> bool {
        let Some(r) = self.tasks.remove(id) else { return false };
        for d in self.deliveries_by_task.remove(r.id.as_str()).unwrap_or_default() {
            self.take_delivery(&d);
        }
        self.by_lister.remove(&listing_key(&r));
        if let Some(expiry) = r.expires_at_ms() {
            self.by_expiry.remove(&(expiry, r.id.clone()));
        }
        if let Some(at) = lease_slot(&r) {
            self.by_lease.remove(&(at, r.id.clone()));
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

/// When a pending delivery may next be claimed.
fn claimable_at(d: &Delivery) -> u64 {
    d.lease_until_ms.map_or(d.next_attempt_ms, |until| until.max(d.next_attempt_ms))
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
        let result = if inner.tasks.contains(&record.id) {
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
            inner.by_lister.insert(listing_key(&record));
            if let Some(expiry) = record.expires_at_ms() {
                inner.by_expiry.insert((expiry, record.id.clone()));
            }
            if let Some(at) = lease_slot(&record) {
                inner.by_lease.insert((at, record.id.clone()));
            }
            inner.tasks.insert(record);
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
        let changed = inner.change(id, |record| {
            // On a copy: a refused change must leave the record as it was.
            let mut next = record.clone();
            let event = update.apply_with_event(&mut next, now_ms)?;
            *record = next.clone();
            Ok((next, event))
        });
        let result = match changed {
            None => Ok(None),
            Some(Err(e)) => Err(e),
            Some(Ok((next, event))) => {
                if let Some(event) = event {
                    inner.enqueue(event);
                }
                Ok(Some(next))
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
        let lister = lister_of(caller);
        let from = match cursor.and_then(decode_cursor) {
            Some((ms, id)) => Bound::Excluded((lister, ms, id)),
            None => Bound::Included((lister, 0, TaskId::from_wire(""))),
        };
        let mut tasks = Vec::with_capacity(limit.min(128));
        let mut more = false;
        for (_, _, id) in inner.by_lister.range((from, Bound::Unbounded)).take_while(|(l, ..)| *l == lister) {
            let Some(record) = inner.tasks.get(id).filter(|r| r.owner.lists_for(caller)) else { continue };
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
        let lapsed: Vec<TaskId> =
            inner.by_lease.iter().take_while(|(at, _)| *at < now_ms).take(limit).map(|(_, id)| id.clone()).collect();
        let claimed = lapsed
            .iter()
            .filter_map(|id| {
                inner.change(id, |r| {
                    debug_assert!(is_orphan(r, now_ms), "by_lease holds only unfinished records");
                    r.lease_holder = Some(holder.to_owned());
                    r.lease_until_ms = Some(lease_until_ms);
                    r.attempt += 1;
                    r.clone()
                })
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
            let renewed = inner.change(id, |r| {
                let held = !r.status.is_terminal() && r.lease_holder.as_deref() == Some(holder);
                if held {
                    r.lease_until_ms = Some(lease_until_ms);
                }
                held
            });
            n += usize::from(renewed == Some(true));
        }
        Box::pin(std::future::ready(Ok(n)))
    }

    fn delete<'a>(&'a self, ids: &'a [TaskId]) -> BoxFuture<'a, Result<usize, StoreError>> {
        let mut inner = self.lock();
        let n = ids.iter().filter(|id| inner.remove(id)).count();
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
