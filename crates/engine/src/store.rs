//! The store trait every backend implements (the in-memory store is in [`crate::memory`]).
//!
//! A store is a map of task records with a few rules it must enforce itself, because several
//! processes may share one (PostgreSQL): a transition is applied only if it is legal from the
//! record's *current* status (compare-and-set), and terminal records never change. The contract
//! tests in [`crate::contract`] hold every store to these rules.

use std::future::Future;
use std::pin::Pin;

use crate::outbox::{Delivery, Settlement, event_for};
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
