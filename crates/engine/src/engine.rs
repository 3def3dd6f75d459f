//! The engine: creates tasks durably, runs their work, carries cancellation and client input to
//! it, coalesces status messages, and expires tasks after their TTL.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::scheduler::Scheduler;
use crate::store::{Created, Page, StoreError, TaskStore, Update};
use crate::task::{Callback, Owner, TaskId, TaskRecord, TaskStatus, TaskWire, now_ms};

/// The error a task gets when the process running it stopped before it finished.
pub const RESTART_ERROR: &str = r#"{"code":-32603,"message":"the server restarted while this task was running; its work was lost. Call the tool again to start over."}"#;

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Retention when the client asks for none (default one hour).
    pub default_ttl_ms: u64,
    /// The longest retention granted (default one day); longer requests are capped.
    pub max_ttl_ms: u64,
    /// Suggested milliseconds between polls (default 500).
    pub poll_interval_ms: u64,
    /// How often the sweeper looks for expired tasks (default one second).
    pub sweep_every: Duration,
    /// How long status-message updates are gathered before one store write (default 100 ms).
    pub coalesce: Duration,
    /// After a cancellation, how long the work may take to stop by itself before it is aborted
    /// (default 5 s). Blocking work cannot be aborted; it sees the cancellation flag.
    pub cancel_grace: Duration,
    /// How long a running task's lease lasts (default 30 s); it is renewed every third of that
    /// while the work runs. When the process dies, its tasks are taken over once the lease lapses.
    pub lease: Duration,
    /// How many times a retryable task's work may start in all (default 3).
    pub max_attempts: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            default_ttl_ms: 60 * 60 * 1000,
            max_ttl_ms: 24 * 60 * 60 * 1000,
            poll_interval_ms: 500,
            sweep_every: Duration::from_secs(1),
            coalesce: Duration::from_millis(100),
            cancel_grace: Duration::from_secs(5),
            lease: Duration::from_secs(30),
            max_attempts: 3,
        }
    }
}

/// Why an engine operation failed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EngineError {
    /// No task with this id is visible to the caller (unknown, expired, or another owner's).
    #[error("task not found")]
    NotFound,
    /// The task has already ended.
    #[error("the task has already ended ({status})", status = .0.as_str())]
    AlreadyTerminal(TaskStatus),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// In-process state of a task whose work runs here.
struct Live {
    cancel: CancellationToken,
    /// Bumped on every change; `tasks/result` waiters watch it.
    changed: watch::Sender<u64>,
    /// Answers the client gave to input requests, by key, not yet taken by the work.
    answers: Mutex<Map<String, Value>>,
    /// Outstanding input requests, by key.
    outstanding: Mutex<Map<String, Value>>,
    answered: Notify,
    /// The newest status message not yet written to the store.
    pending_message: Mutex<Option<String>>,
    flush_scheduled: AtomicBool,
    /// Which start of the work is running (changes when a transient failure is retried).
    attempt: AtomicU32,
}

/// Restarts the work of a task taken over from a dead process; returns false when the work
/// cannot be restarted (the tool is not retryable, or unknown here).
pub type Resumer = Arc<dyn Fn(TaskRecord, TaskHandle) -> bool + Send + Sync>;

/// What a new task is.
#[derive(Clone, Debug)]
pub struct NewTask<'a> {
    /// Who owns it.
    pub owner: &'a Owner,
    /// The tool it runs.
    pub tool: &'a str,
    /// The client's wish for its retention.
    pub ttl_ms: Option<u64>,
    /// The tool's arguments (JSON object text), kept for a re-run.
    pub arguments: Option<String>,
    /// The wire that creates it.
    pub wire: TaskWire,
    /// The caller's idempotency key: while a task of the same owner, tool and key lives, it is
    /// returned instead of a new one.
    pub idempotency_key: Option<String>,
    /// Where to POST a signed event when the task ends (checked by the caller beforehand).
    pub callback: Option<Callback>,
}

/// What [`Engine::create_task`] did.
pub enum Creation {
    /// A new task: run its work with this handle.
    Started(TaskHandle),
    /// The idempotency key names a live task: this one. Nothing new runs.
    Existing(TaskRecord),
}

impl Live {
    fn new(attempt: u32) -> Self {
        Self {
            cancel: CancellationToken::new(),
            changed: watch::channel(0).0,
            answers: Mutex::new(Map::new()),
            outstanding: Mutex::new(Map::new()),
            answered: Notify::new(),
            pending_message: Mutex::new(None),
            flush_scheduled: AtomicBool::new(false),
            attempt: AtomicU32::new(attempt),
        }
    }
}

struct Inner {
    store: Arc<dyn TaskStore>,
    config: EngineConfig,
    live: Mutex<foldhash::HashMap<TaskId, Arc<Live>>>,
    /// This engine's identity as a lease holder.
    holder: String,
    resumer: Mutex<Option<Resumer>>,
    /// Where waiting tasks stand; `get` reports a queued task's live position.
    scheduler: std::sync::OnceLock<Arc<Scheduler>>,
    /// Woken when a change may have enqueued a webhook delivery.
    outbox_wake: Arc<Notify>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The task engine. Cheap to clone.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use taskwire_engine::{Engine, EngineConfig, MemoryStore, Owner, TaskStatus};
/// let engine = Engine::new(Arc::new(MemoryStore::new()), EngineConfig::default());
/// let owner = Owner::anonymous("session-1");
/// let task = engine.create(&owner, "build", None).await.unwrap();
/// let id = task.id().clone();
/// task.complete(r#"{"content":[]}"#.into()).await;
/// let record = engine.get(&owner, &id).await.unwrap();
/// assert_eq!(record.status, TaskStatus::Completed);
/// # });
/// ```
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// An engine over `store`. Call [`Engine::start_sweeper`] inside a runtime to expire tasks.
    pub fn new(store: Arc<dyn TaskStore>, config: EngineConfig) -> Self {
        let holder = format!("engine-{}", uuid::Uuid::new_v4().simple());
        Self {
            inner: Arc::new(Inner {
                store,
                config,
                live: Mutex::new(foldhash::HashMap::default()),
                holder,
                resumer: Mutex::new(None),
                scheduler: std::sync::OnceLock::new(),
                outbox_wake: Arc::new(Notify::new()),
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The store (the webhook dispatcher works on its outbox directly).
    pub fn store(&self) -> &Arc<dyn TaskStore> {
        &self.inner.store
    }

    /// Notified after a status change of a task with a callback: a webhook delivery may be due
    /// now. (Deliveries enqueued by another process are found by polling.)
    pub fn outbox_wake(&self) -> Arc<Notify> {
        self.inner.outbox_wake.clone()
    }

    /// Every change goes through here: the store applies it (and enqueues its webhook event in
    /// the same step); a status change of a subscribed task wakes the dispatcher.
    async fn write(&self, id: &TaskId, update: Update, now: u64) -> Result<Option<TaskRecord>, StoreError> {
        let status_change = update.status.is_some();
        let written = self.inner.store.update(id, update, now).await;
        if status_change
            && let Ok(Some(record)) = &written
            && record.callback.is_some()
        {
            self.inner.outbox_wake.notify_one();
        }
        written
    }

    /// Lets `get` report the live queue position of tasks waiting in `scheduler` as their status
    /// message (positions change with every start; writing each change would cost a store write
    /// per waiting task per start). Set once; later calls are ignored.
    pub fn set_scheduler(&self, scheduler: Arc<Scheduler>) {
        let _ = self.inner.scheduler.set(scheduler);
    }

    /// Sets how work taken over from a dead process restarts (the server knows the tools).
    pub fn set_resumer(&self, resumer: Resumer) {
        *lock(&self.inner.resumer) = Some(resumer);
    }

    /// Spawns the sweeper: every `sweep_every` it expires tasks past their TTL (failing running
    /// ones and cancelling their work) and takes over tasks whose lease lapsed; it renews this
    /// engine's leases every third of a lease. It stops when the last engine handle is dropped.
    pub fn start_sweeper(&self) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let every = self.inner.config.sweep_every;
        let renew_every = self.inner.config.lease / 3;
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every.min(renew_every));
            let mut last_renewal = tokio::time::Instant::now();
            loop {
                ticker.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let engine = Engine { inner };
                if last_renewal.elapsed() >= renew_every {
                    last_renewal = tokio::time::Instant::now();
                    if let Err(e) = engine.renew_leases().await {
                        tracing::warn!("task leases: {e}");
                    }
                }
                let now = now_ms();
                if let Err(e) = engine.sweep(now).await {
                    tracing::warn!("task sweeper: {e}");
                }
                if let Err(e) = engine.recover_orphans(now).await {
                    tracing::warn!("task recovery: {e}");
                }
            }
        });
    }

    fn lease_until(&self, now: u64) -> u64 {
        now + self.inner.config.lease.as_millis() as u64
    }

    /// Extends the leases of every task running here.
    pub async fn renew_leases(&self) -> Result<usize, EngineError> {
        let ids: Vec<TaskId> = lock(&self.inner.live).keys().cloned().collect();
        if ids.is_empty() {
            return Ok(0);
        }
        Ok(self.inner.store.renew_leases(&self.inner.holder, &ids, self.lease_until(now_ms())).await?)
    }

    /// One sweep at `now`: returns how many records were deleted.
    pub async fn sweep(&self, now: u64) -> Result<usize, EngineError> {
        let expired = self.inner.store.expired(now, 1000).await?;
        let mut ids = Vec::with_capacity(expired.len());
        for record in expired {
            if !record.status.is_terminal() {
                let error = r#"{"code":-32603,"message":"task expired: its time to live ended before it finished"}"#;
                let update =
                    Update { status: Some(TaskStatus::Failed), error: Some(error.into()), ..Update::default() };
                let _ = self.write(&record.id, update, now).await;
                if let Some(live) = self.live(&record.id) {
                    live.cancel.cancel();
                }
            }
            self.forget(&record.id);
            ids.push(record.id);
        }
        Ok(self.inner.store.delete(&ids).await?)
    }

    /// Takes over tasks whose lease lapsed at `now` (their process died): a task whose tool can
    /// run again (the [`Resumer`] says so) and has attempts left restarts with attempt + 1; every
    /// other one ends `failed` with [`RESTART_ERROR`] — never `working` forever. Returns
    /// (restarted, failed).
    pub async fn recover_orphans(&self, now: u64) -> Result<(usize, usize), EngineError> {
        let (mut restarted, mut failed) = (0, 0);
        loop {
            let orphans = self.inner.store.claim_orphans(now, &self.inner.holder, self.lease_until(now), 500).await?;
            if orphans.is_empty() {
                return Ok((restarted, failed));
            }
            let resumer = lock(&self.inner.resumer).clone();
            for record in orphans {
                let can_retry = record.attempt <= self.inner.config.max_attempts;
                if let (true, Some(resume)) = (can_retry, &resumer) {
                    let handle = self.adopt(record.clone());
                    if resume(record.clone(), handle.clone()) {
                        restarted += 1;
                        continue;
                    }
                    self.forget(handle.id());
                }
                let update = Update {
                    status: Some(TaskStatus::Failed),
                    status_message: Some(Some("the server restarted while this task was running".into())),
                    error: Some(RESTART_ERROR.into()),
                    ..Update::default()
                };
                if let Ok(Some(_)) = self.write(&record.id, update, now_ms()).await {
                    failed += 1;
                }
            }
        }
    }

    /// Registers a task taken over from another process as running here.
    fn adopt(&self, record: TaskRecord) -> TaskHandle {
        let live = Arc::new(Live::new(record.attempt));
        let id = record.id.clone();
        lock(&self.inner.live).insert(id.clone(), live.clone());
        TaskHandle { engine: self.clone(), id, record, live }
    }

    fn live(&self, id: &TaskId) -> Option<Arc<Live>> {
        lock(&self.inner.live).get(id).cloned()
    }

    fn forget(&self, id: &TaskId) {
        if let Some(live) = lock(&self.inner.live).remove(id) {
            live.changed.send_modify(|v| *v += 1);
        }
    }

    fn notify_change(&self, id: &TaskId) {
        if let Some(live) = self.live(id) {
            live.changed.send_modify(|v| *v += 1);
        }
    }

    /// Creates a task without arguments on the extension wire (see [`Engine::create_task`]).
    pub async fn create(&self, owner: &Owner, tool: &str, ttl_ms: Option<u64>) -> Result<TaskHandle, EngineError> {
        let new = NewTask {
            owner,
            tool,
            ttl_ms,
            arguments: None,
            wire: TaskWire::Extension,
            idempotency_key: None,
            callback: None,
        };
        match self.create_task(new).await? {
            Creation::Started(handle) => Ok(handle),
            Creation::Existing(_) => Err(EngineError::Store(StoreError::Backend(
                "the store answered a creation without idempotency key with an existing task".into(),
            ))),
        }
    }

    /// Creates a task, durably: when this returns, `get` on the id succeeds from any handle on
    /// the same store. The TTL is the client's wish, capped by the configuration; this engine
    /// holds the task's lease. With an idempotency key naming a live task of the same owner and
    /// tool, nothing is created and that task is returned.
    pub async fn create_task(&self, new: NewTask<'_>) -> Result<Creation, EngineError> {
        let config = &self.inner.config;
        let now = now_ms();
        let ttl_ms = new.ttl_ms;
        let record = TaskRecord {
            id: TaskId::random(),
            owner: new.owner.clone(),
            tool: new.tool.to_owned(),
            status: TaskStatus::Working,
            status_message: None,
            created_at_ms: now,
            updated_at_ms: now,
            ttl_ms: Some(ttl_ms.unwrap_or(config.default_ttl_ms).clamp(1, config.max_ttl_ms)),
            poll_interval_ms: config.poll_interval_ms,
            result: None,
            error: None,
            input_requests: None,
            attempt: 1,
            cancel_requested: false,
            arguments: new.arguments,
            wire: new.wire,
            lease_holder: Some(self.inner.holder.clone()),
            lease_until_ms: Some(self.lease_until(now)),
            idempotency_key: new.idempotency_key,
            callback: new.callback,
        };
        if let Created::Existing(existing) = self.inner.store.create(record.clone()).await? {
            return Ok(Creation::Existing(*existing));
        }
        let live = Arc::new(Live::new(record.attempt));
        let id = record.id.clone();
        lock(&self.inner.live).insert(id.clone(), live.clone());
        Ok(Creation::Started(TaskHandle { engine: self.clone(), id, record, live }))
    }

    /// The task, if `caller` may see it.
    pub async fn get(&self, caller: &Owner, id: &TaskId) -> Result<TaskRecord, EngineError> {
        match self.inner.store.get(id).await? {
            Some(mut record) if record.owner.admits(caller) => {
                if record.status == TaskStatus::Working
                    && let Some(position) = self.inner.scheduler.get().and_then(|s| s.queue_position(id))
                {
                    record.status_message = Some(position.message(&record.tool));
                }
                Ok(record)
            }
            _ => Err(EngineError::NotFound),
        }
    }

    /// The tasks `caller` may list, oldest first. A cursor not produced by this engine yields
    /// an empty page.
    pub async fn list(&self, caller: &Owner, cursor: Option<&str>, limit: usize) -> Result<Page, EngineError> {
        Ok(self.inner.store.list(caller, cursor, limit.clamp(1, 1000)).await?)
    }

    /// Cancels a task: it becomes `cancelled` at once (before this returns), and its work is
    /// told to stop. Cancelling an ended task is [`EngineError::AlreadyTerminal`].
    pub async fn cancel(&self, caller: &Owner, id: &TaskId) -> Result<TaskRecord, EngineError> {
        let record = self.get(caller, id).await?;
        if record.status.is_terminal() {
            return Err(EngineError::AlreadyTerminal(record.status));
        }
        let update = Update {
            status: Some(TaskStatus::Cancelled),
            status_message: Some(Some("cancelled by the client".into())),
            cancel_requested: true,
            ..Update::default()
        };
        let updated = match self.write(id, update, now_ms()).await {
            Ok(Some(r)) => r,
            Ok(None) => return Err(EngineError::NotFound),
            // It ended between the read and the write: cancelling an ended task.
            Err(StoreError::IllegalTransition { from, .. }) => return Err(EngineError::AlreadyTerminal(from)),
            Err(e) => return Err(e.into()),
        };
        if let Some(live) = self.live(id) {
            live.cancel.cancel();
            live.answered.notify_waiters();
        }
        self.notify_change(id);
        Ok(updated)
    }

    /// Delivers the client's answers to outstanding input requests. Keys that are not
    /// outstanding (never asked, already answered) are ignored. Returns the keys accepted.
    pub async fn answer(
        &self,
        caller: &Owner,
        id: &TaskId,
        responses: Map<String, Value>,
    ) -> Result<Vec<String>, EngineError> {
        let record = self.get(caller, id).await?;
        let Some(live) = self.live(id) else {
            return if record.status.is_terminal() { Ok(Vec::new()) } else { Err(EngineError::NotFound) };
        };
        let (accepted, remaining) = {
            let mut outstanding = lock(&live.outstanding);
            let mut answers = lock(&live.answers);
            let mut accepted = Vec::new();
            for (key, value) in responses {
                if outstanding.remove(&key).is_some() {
                    answers.insert(key.clone(), value);
                    accepted.push(key);
                }
            }
            (accepted, outstanding.clone())
        };
        if !accepted.is_empty() {
            let update = if remaining.is_empty() {
                Update { status: Some(TaskStatus::Working), ..Update::default() }
            } else {
                Update { input_requests: Some(Some(Value::Object(remaining).to_string())), ..Update::default() }
            };
            // A task that ended meanwhile keeps its terminal state.
            let _ = self.write(id, update, now_ms()).await;
            live.answered.notify_waiters();
            self.notify_change(id);
        }
        Ok(accepted)
    }

    /// Waits until the task changes after `seen` (a value from [`Engine::watch`]), or ends, or is
    /// no longer running in this process.
    pub fn watch(&self, id: &TaskId) -> Option<watch::Receiver<u64>> {
        self.live(id).map(|l| l.changed.subscribe())
    }
}

/// The running side of one task: what its work uses to report and to finish.
#[derive(Clone)]
pub struct TaskHandle {
    engine: Engine,
    id: TaskId,
    record: TaskRecord,
    live: Arc<Live>,
}

impl TaskHandle {
    /// The task id.
    pub fn id(&self) -> &TaskId {
        &self.id
    }

    /// The record as created (or as taken over, for a re-run).
    pub fn created(&self) -> &TaskRecord {
        &self.record
    }

    /// Which start of the work this is: 1, then more for each retry after a transient failure
    /// or re-run after a crash.
    pub fn attempt(&self) -> u32 {
        self.live.attempt.load(Ordering::Acquire)
    }

    /// Records that the work starts again as `attempt`, with a status message saying why (one
    /// store write, not coalesced: retries are rare and the count must survive a crash).
    pub async fn begin_attempt(&self, attempt: u32, message: impl Into<String>) {
        self.live.attempt.store(attempt, Ordering::Release);
        lock(&self.live.pending_message).take();
        let update = Update { attempt: Some(attempt), status_message: Some(Some(message.into())), ..Update::default() };
        if self.engine.write(&self.id, update, now_ms()).await.is_ok() {
            self.engine.notify_change(&self.id);
        }
    }

    /// Fires when the task is cancelled (or expires).
    pub fn cancellation_token(&self) -> &CancellationToken {
        &self.live.cancel
    }

    /// Sets the status message. Writes are coalesced: a burst of messages costs one store write
    /// per `coalesce` interval, carrying the newest.
    pub fn set_status_message(&self, message: impl Into<String>) {
        *lock(&self.live.pending_message) = Some(message.into());
        if self.live.flush_scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(this.engine.inner.config.coalesce).await;
            this.flush_message().await;
        });
    }

    async fn flush_message(&self) {
        self.live.flush_scheduled.store(false, Ordering::Release);
        let Some(message) = lock(&self.live.pending_message).take() else { return };
        let update = Update { status_message: Some(Some(message)), ..Update::default() };
        if self.engine.write(&self.id, update, now_ms()).await.is_ok() {
            self.engine.notify_change(&self.id);
        }
    }

    /// Asks the client for input: the task becomes `input_required` with these requests
    /// (`{method, params}` by key) until every key is answered, then `working` again. Returns the
    /// answers by key, or `None` if the task was cancelled meanwhile.
    pub async fn request_inputs(&self, requests: Map<String, Value>) -> Option<Map<String, Value>> {
        let keys: Vec<String> = requests.keys().cloned().collect();
        {
            let mut outstanding = lock(&self.live.outstanding);
            outstanding.extend(requests);
        }
        let all = Value::Object(lock(&self.live.outstanding).clone()).to_string();
        let update =
            Update { status: Some(TaskStatus::InputRequired), input_requests: Some(Some(all)), ..Update::default() };
        if self.engine.write(&self.id, update, now_ms()).await.is_err() {
            return None;
        }
        self.engine.notify_change(&self.id);
        loop {
            let answered = self.live.answered.notified();
            if self.live.cancel.is_cancelled() {
                return None;
            }
            {
                let answers = lock(&self.live.answers);
                if keys.iter().all(|k| answers.contains_key(k)) {
                    drop(answers);
                    let mut answers = lock(&self.live.answers);
                    return Some(keys.iter().filter_map(|k| answers.remove_entry(k)).collect());
                }
            }
            answered.await;
        }
    }

    /// Ends the task `completed` with a result object (JSON text). Ignored if it already ended.
    pub async fn complete(&self, result: String) {
        self.finish(TaskStatus::Completed, Update { result: Some(result), ..Update::default() }).await;
    }

    /// Ends the task `failed` with an error object (JSON text). Ignored if it already ended.
    pub async fn fail(&self, error: String) {
        self.finish(TaskStatus::Failed, Update { error: Some(error), ..Update::default() }).await;
    }

    /// Ends the task `failed` while keeping the result the work produced (a 2025-11-25 tool call
    /// whose result has `isError: true` ends `failed`, and `tasks/result` returns that result).
    pub async fn fail_with_result(&self, result: String) {
        self.finish(TaskStatus::Failed, Update { result: Some(result), ..Update::default() }).await;
    }

    async fn finish(&self, status: TaskStatus, mut update: Update) {
        update.status = Some(status);
        update.input_requests = Some(None);
        // The latest status message is kept with the final state.
        if let Some(m) = lock(&self.live.pending_message).take() {
            update.status_message = Some(Some(m));
        }
        match self.engine.write(&self.id, update, now_ms()).await {
            Ok(_) | Err(StoreError::IllegalTransition { .. }) => {}
            Err(e) => tracing::error!(task = %self.id, "could not store the task's outcome: {e}"),
        }
        self.engine.forget(&self.id);
    }
}
