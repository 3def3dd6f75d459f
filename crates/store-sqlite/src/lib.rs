//! The embedded SQLite task store.
//!
//! * **One writer thread, group commit.** Every write is a job sent to one thread, which runs all
//!   the jobs waiting at that moment in one transaction and answers each only after the commit:
//!   a durable write costs one fsync per batch instead of one per task (dependencies.md §2.1
//!   measured 25–90×). A job's answer therefore means "committed".
//! * **Separate read connections** (WAL lets them read while the writer writes), used from the
//!   blocking pool so that the reactor never waits on disk.
//! * The schema is one table whose columns are the task record; results and errors are stored
//!   as the JSON text they arrived as.
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! let dir = std::env::temp_dir().join(format!("taskwire-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let store = taskwire_store_sqlite::SqliteStore::open(dir.join("tasks.db"), Default::default()).unwrap();
//! taskwire_engine::contract::run_all(&store).await;
//! # std::fs::remove_dir_all(&dir).ok();
//! # });
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use taskwire_engine::outbox::{Delivery, DeliveryState, Settlement};
use taskwire_engine::store::{BoxFuture, Created, Page, StoreError, TaskStore, Update, decode_cursor, encode_cursor};
use taskwire_engine::{Callback, Owner, TaskId, TaskRecord, TaskStatus, TaskWire};
use tokio::sync::{mpsc, oneshot};

/// How hard SQLite works to make a commit survive power loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// `synchronous=FULL`: a commit survives power loss (the default).
    #[default]
    Full,
    /// `synchronous=NORMAL`: in WAL mode a commit survives a process crash, but the last
    /// commits may be lost on power loss.
    Normal,
}

/// Settings of the SQLite store.
#[derive(Clone, Debug)]
pub struct SqliteConfig {
    /// Durability of commits (default [`Synchronous::Full`]).
    pub synchronous: Synchronous,
    /// The most jobs committed in one transaction (default 512).
    pub max_batch: usize,
    /// Read connections (default 4).
    pub readers: usize,
    /// Writes that may wait for the writer (default 8192); beyond it, writers wait for room.
    pub queue: usize,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self { synchronous: Synchronous::Full, max_batch: 512, readers: 4, queue: 8192 }
    }
}

type Deliver = Box<dyn FnOnce(Option<String>) + Send>;
type Job = Box<dyn FnOnce(&Transaction<'_>) -> Deliver + Send>;

/// Task records in a SQLite file.
pub struct SqliteStore {
    writer: mpsc::Sender<Job>,
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: AtomicUsize,
    path: PathBuf,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS tasks (
    id               TEXT PRIMARY KEY,
    principal        TEXT,              -- NULL: created without authentication
    scope            TEXT NOT NULL,     -- session or connection that created it
    tool             TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('working', 'input_required', 'completed', 'failed', 'cancelled')),
    status_message   TEXT,
    created_at_ms    INTEGER NOT NULL,
    updated_at_ms    INTEGER NOT NULL,
    ttl_ms           INTEGER,           -- NULL: kept forever
    expires_at_ms    INTEGER,           -- created_at_ms + ttl_ms
    poll_interval_ms INTEGER NOT NULL,
    result           TEXT,              -- JSON, byte for byte as produced
    error            TEXT,              -- JSON-RPC error object
    input_requests   TEXT,              -- JSON object {key: {method, params}}
    attempt          INTEGER NOT NULL,
    cancel_requested INTEGER NOT NULL,
    arguments        TEXT,              -- JSON object, for a re-run after a crash
    wire             TEXT NOT NULL CHECK (wire IN ('core', 'extension')),
    lease_holder     TEXT,              -- the engine running the work
    lease_until_ms   INTEGER            -- past this, the work is presumed dead
) STRICT;
-- Listings (replaced in version 4 by one index per kind of caller).
CREATE INDEX IF NOT EXISTS tasks_by_owner ON tasks (principal, scope, created_at_ms, id);
-- The sweeper: what has expired.
CREATE INDEX IF NOT EXISTS tasks_by_expiry ON tasks (expires_at_ms) WHERE expires_at_ms IS NOT NULL;
-- Recovery: unfinished tasks by lease, to find the lapsed ones.
CREATE INDEX IF NOT EXISTS tasks_unfinished_by_lease ON tasks (lease_until_ms) WHERE status IN ('working', 'input_required');
"#;

/// Version 2 adds idempotency keys.
const IDEMPOTENCY_UPGRADE: &str = r#"
ALTER TABLE tasks ADD COLUMN idempotency_key TEXT;  -- the caller's key: one live task per owner, tool and key
-- Idempotent creation: the task a key already names.
CREATE INDEX IF NOT EXISTS tasks_by_idempotency_key ON tasks (tool, idempotency_key) WHERE idempotency_key IS NOT NULL;
"#;

/// Version 3 adds completion webhooks: the task's subscription, and the outbox. An event row is
/// written in the same transaction as the status change it reports.
const WEBHOOKS: &str = r#"
ALTER TABLE tasks ADD COLUMN callback_url TEXT;                -- NULL: no webhook
ALTER TABLE tasks ADD COLUMN callback_every_status INTEGER;    -- 1: an event per status change
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id              TEXT PRIMARY KEY,  -- the webhook-id header: the same on every attempt
    task_id         TEXT NOT NULL,
    url             TEXT NOT NULL,
    event           TEXT NOT NULL,     -- the JSON body, signed and sent byte for byte
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL,  -- attempts started (counted when claimed)
    next_attempt_ms INTEGER NOT NULL,
    lease_holder    TEXT,              -- the dispatcher attempting it now
    lease_until_ms  INTEGER,
    last_error      TEXT,
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL
) STRICT;
-- The dispatcher: pending deliveries by when they fall due.
CREATE INDEX IF NOT EXISTS deliveries_due ON webhook_deliveries (next_attempt_ms) WHERE state = 'pending';
-- A task's deliveries (tasks/get shows their state; deleting a task deletes them).
CREATE INDEX IF NOT EXISTS deliveries_by_task ON webhook_deliveries (task_id);
"#;

/// Version 4 indexes listings by the caller they are for: an authenticated caller lists its
/// principal's tasks, an anonymous one its scope's (`Owner::lists_for`). The index it replaces,
/// `(principal, scope, created_at_ms, id)`, could serve neither in creation order, so every
/// listing page sorted all of the caller's tasks (an anonymous caller's: every anonymous task in
/// the store) in a temporary B-tree. Each task has an entry in exactly one of the two.
const LISTINGS: &str = r#"
DROP INDEX IF EXISTS tasks_by_owner;
-- An authenticated caller's listing: its principal's tasks in creation order.
CREATE INDEX IF NOT EXISTS tasks_by_principal ON tasks (principal, created_at_ms, id) WHERE principal IS NOT NULL;
-- An anonymous caller's listing: its session's or connection's tasks in creation order.
CREATE INDEX IF NOT EXISTS tasks_by_scope ON tasks (scope, created_at_ms, id) WHERE principal IS NULL;
"#;

/// Version 5 writes the checks on `status` and `state` as comparisons joined by `OR`. SQLite
/// evaluates `x IN (…)` with three or more values by building a temporary B-tree of the list,
/// on every insert and every update of a row: about 16k instructions per write, a third of the
/// writer's work for a task (callgrind, one ephemeral table per task write). SQLite cannot
/// change a CHECK in place, so both tables are rebuilt: a new table, the rows copied, the old
/// one dropped with its indexes, the new one renamed and indexed. **These are the tables' current
/// definitions**; the versions above are the history a file may have to come through.
const COMPARED_CHECKS: &str = r#"
CREATE TABLE tasks_v5 (
    id                    TEXT PRIMARY KEY,
    principal             TEXT,              -- NULL: created without authentication
    scope                 TEXT NOT NULL,     -- session or connection that created it
    tool                  TEXT NOT NULL,
    status                TEXT NOT NULL CHECK (status = 'working' OR status = 'input_required'
                              OR status = 'completed' OR status = 'failed' OR status = 'cancelled'),
    status_message        TEXT,
    created_at_ms         INTEGER NOT NULL,
    updated_at_ms         INTEGER NOT NULL,
    ttl_ms                INTEGER,           -- NULL: kept forever
    expires_at_ms         INTEGER,           -- created_at_ms + ttl_ms
    poll_interval_ms      INTEGER NOT NULL,
    result                TEXT,              -- JSON, byte for byte as produced
    error                 TEXT,              -- JSON-RPC error object
    input_requests        TEXT,              -- JSON object {key: {method, params}}
    attempt               INTEGER NOT NULL,
    cancel_requested      INTEGER NOT NULL,
    arguments             TEXT,              -- JSON object, for a re-run after a crash
    wire                  TEXT NOT NULL CHECK (wire = 'core' OR wire = 'extension'),
    lease_holder          TEXT,              -- the engine running the work
    lease_until_ms        INTEGER,           -- past this, the work is presumed dead
    idempotency_key       TEXT,              -- the caller's key: one live task per owner, tool and key
    callback_url          TEXT,              -- NULL: no webhook
    callback_every_status INTEGER            -- 1: an event per status change
) STRICT;
INSERT INTO tasks_v5 SELECT id, principal, scope, tool, status, status_message, created_at_ms, updated_at_ms,
    ttl_ms, expires_at_ms, poll_interval_ms, result, error, input_requests, attempt, cancel_requested, arguments,
    wire, lease_holder, lease_until_ms, idempotency_key, callback_url, callback_every_status FROM tasks;
DROP TABLE tasks;
ALTER TABLE tasks_v5 RENAME TO tasks;
-- The sweeper: what has expired.
CREATE INDEX tasks_by_expiry ON tasks (expires_at_ms) WHERE expires_at_ms IS NOT NULL;
-- Recovery: unfinished tasks by lease, to find the lapsed ones.
CREATE INDEX tasks_unfinished_by_lease ON tasks (lease_until_ms) WHERE status IN ('working', 'input_required');
-- Idempotent creation: the task a key already names.
CREATE INDEX tasks_by_idempotency_key ON tasks (tool, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- An authenticated caller's listing: its principal's tasks in creation order.
CREATE INDEX tasks_by_principal ON tasks (principal, created_at_ms, id) WHERE principal IS NOT NULL;
-- An anonymous caller's listing: its session's or connection's tasks in creation order.
CREATE INDEX tasks_by_scope ON tasks (scope, created_at_ms, id) WHERE principal IS NULL;

CREATE TABLE webhook_deliveries_v5 (
    id              TEXT PRIMARY KEY,  -- the webhook-id header: the same on every attempt
    task_id         TEXT NOT NULL,
    url             TEXT NOT NULL,
    event           TEXT NOT NULL,     -- the JSON body, signed and sent byte for byte
    state           TEXT NOT NULL CHECK (state = 'pending' OR state = 'delivered' OR state = 'dead'),
    attempts        INTEGER NOT NULL,  -- attempts started (counted when claimed)
    next_attempt_ms INTEGER NOT NULL,
    lease_holder    TEXT,              -- the dispatcher attempting it now
    lease_until_ms  INTEGER,
    last_error      TEXT,
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL
) STRICT;
INSERT INTO webhook_deliveries_v5 SELECT id, task_id, url, event, state, attempts, next_attempt_ms, lease_holder,
    lease_until_ms, last_error, created_at_ms, updated_at_ms FROM webhook_deliveries;
DROP TABLE webhook_deliveries;
ALTER TABLE webhook_deliveries_v5 RENAME TO webhook_deliveries;
-- The dispatcher: pending deliveries by when they fall due.
CREATE INDEX deliveries_due ON webhook_deliveries (next_attempt_ms) WHERE state = 'pending';
-- A task's deliveries (tasks/get shows their state; deleting a task deletes them).
CREATE INDEX deliveries_by_task ON webhook_deliveries (task_id);
"#;

/// Every upgrade, as (the version it makes, its SQL), in order; a file runs those past its own.
const UPGRADES: &[(i64, &str)] = &[(2, IDEMPOTENCY_UPGRADE), (3, WEBHOOKS), (4, LISTINGS), (5, COMPARED_CHECKS)];

/// The schema version this code writes (`PRAGMA user_version`). A database of another version
/// is refused with a message rather than misread; older versions are upgraded in place.
const SCHEMA_VERSION: i64 = 5;
const _: () = assert!(UPGRADES[UPGRADES.len() - 1].0 == SCHEMA_VERSION, "the last upgrade makes SCHEMA_VERSION");

const COLUMNS: &str = "id, principal, scope, tool, status, status_message, created_at_ms, updated_at_ms, ttl_ms, \
                       poll_interval_ms, result, error, input_requests, attempt, cancel_requested, arguments, wire, \
                       lease_holder, lease_until_ms, idempotency_key, callback_url, callback_every_status";

const DELIVERY_COLUMNS: &str = "id, task_id, url, event, state, attempts, next_attempt_ms, lease_holder, \
                                lease_until_ms, last_error, created_at_ms, updated_at_ms";

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn record_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TaskRecord> {
    let status: String = row.get(4)?;
    Ok(TaskRecord {
        id: TaskId::from_wire(&row.get::<_, String>(0)?),
        owner: Owner { principal: row.get(1)?, scope: row.get(2)? },
        tool: row.get(3)?,
        status: TaskStatus::parse(&status).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                4,
                rusqlite::types::Type::Text,
                format!("unknown status {status}").into(),
            )
        })?,
        status_message: row.get(5)?,
        created_at_ms: row.get::<_, i64>(6)? as u64,
        updated_at_ms: row.get::<_, i64>(7)? as u64,
        ttl_ms: row.get::<_, Option<i64>>(8)?.map(|t| t as u64),
        poll_interval_ms: row.get::<_, i64>(9)? as u64,
        result: row.get(10)?,
        error: row.get(11)?,
        input_requests: row.get(12)?,
        attempt: row.get::<_, i64>(13)? as u32,
        cancel_requested: row.get::<_, i64>(14)? != 0,
        arguments: row.get(15)?,
        wire: {
            let wire: String = row.get(16)?;
            TaskWire::parse(&wire).ok_or_else(|| {
                rusqlite::Error::FromSqlConversionFailure(
                    16,
                    rusqlite::types::Type::Text,
                    format!("unknown wire {wire}").into(),
                )
            })?
        },
        lease_holder: row.get(17)?,
        lease_until_ms: row.get::<_, Option<i64>>(18)?.map(|t| t as u64),
        idempotency_key: row.get(19)?,
        callback: match row.get::<_, Option<String>>(20)? {
            Some(url) => Some(Callback { url, every_status: row.get::<_, Option<i64>>(21)?.unwrap_or(0) != 0 }),
            None => None,
        },
    })
}

fn delivery_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
    let state: String = row.get(4)?;
    Ok(Delivery {
        id: row.get(0)?,
        task_id: row.get(1)?,
        url: row.get(2)?,
        event: row.get(3)?,
        state: DeliveryState::parse(&state).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                4,
                rusqlite::types::Type::Text,
                format!("unknown delivery state {state}").into(),
            )
        })?,
        attempts: row.get::<_, i64>(5)? as u32,
        next_attempt_ms: row.get::<_, i64>(6)? as u64,
        lease_holder: row.get(7)?,
        lease_until_ms: row.get::<_, Option<i64>>(8)?.map(|t| t as u64),
        last_error: row.get(9)?,
        created_at_ms: row.get::<_, i64>(10)? as u64,
        updated_at_ms: row.get::<_, i64>(11)? as u64,
    })
}

fn insert_delivery(txn: &Transaction<'_>, d: &Delivery) -> Result<(), StoreError> {
    txn.prepare_cached(&format!(
        "INSERT INTO webhook_deliveries ({DELIVERY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    ))
    .and_then(|mut stmt| {
        stmt.execute(params![
            d.id,
            d.task_id,
            d.url,
            d.event,
            d.state.as_str(),
            d.attempts as i64,
            d.next_attempt_ms as i64,
            d.lease_holder,
            d.lease_until_ms.map(|t| t as i64),
            d.last_error,
            d.created_at_ms as i64,
            d.updated_at_ms as i64,
        ])
    })
    .map(drop)
    .map_err(backend)
}

fn configure(conn: &Connection, sync: Synchronous) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", if sync == Synchronous::Full { "FULL" } else { "NORMAL" })?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` and starts its writer thread.
    pub fn open(path: impl AsRef<Path>, config: SqliteConfig) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let open = || Connection::open(&path).map_err(|e| backend(format!("cannot open {}: {e}", path.display())));
        let writer_conn = open()?;
        configure(&writer_conn, config.synchronous).map_err(backend)?;
        migrate(&writer_conn).map_err(|e| backend(format!("{}: {e}", path.display())))?;
        let mut readers = Vec::with_capacity(config.readers.max(1));
        for _ in 0..config.readers.max(1) {
            let c = open()?;
            configure(&c, config.synchronous).map_err(backend)?;
            readers.push(Mutex::new(c));
        }
        // The writer never checkpoints inline (copying the WAL into the database and syncing
        // it would stall every commit waiting behind it): a thread of its own does.
        writer_conn.pragma_update(None, "wal_autocheckpoint", 0).map_err(backend)?;
        writer_conn.pragma_update(None, "cache_size", WRITER_CACHE_KIB).map_err(backend)?;
        let checkpoint_conn = open()?;
        configure(&checkpoint_conn, config.synchronous).map_err(backend)?;
        let (committed, commits) = std::sync::mpsc::sync_channel::<()>(1);
        let oversized = Arc::new(AtomicBool::new(false));
        let checkpointer = Checkpointer { committed, oversized: oversized.clone() };
        std::thread::Builder::new()
            .name("taskwire-sqlite-checkpointer".into())
            .spawn(move || checkpoint_loop(checkpoint_conn, commits, oversized))
            .map_err(backend)?;
        let (tx, rx) = mpsc::channel::<Job>(config.queue.max(1));
        let max_batch = config.max_batch.max(1);
        std::thread::Builder::new()
            .name("taskwire-sqlite-writer".into())
            .spawn(move || writer_loop(writer_conn, rx, max_batch, checkpointer))
            .map_err(backend)?;
        Ok(Self { writer: tx, readers: Arc::new(readers), next_reader: AtomicUsize::new(0), path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` inside the writer's next transaction; resolves after the commit.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |txn| {
            let outcome = f(txn);
            Box::new(move |commit_error: Option<String>| {
                let _ = tx.send(match commit_error {
                    None => outcome,
                    Some(e) => Err(StoreError::Backend(format!("commit failed: {e}"))),
                });
            })
        });
        self.writer.send(job).await.map_err(|_| backend("the SQLite writer thread has stopped"))?;
        rx.await.map_err(|_| backend("the SQLite writer thread stopped before answering"))?
    }

    /// Runs `f` on a read connection on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = self.readers.clone();
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % readers.len();
        tokio::task::spawn_blocking(move || {
            let conn = readers[i].lock().unwrap_or_else(|p| p.into_inner());
            f(&conn)
        })
        .await
        .map_err(backend)?
        .map_err(backend)
    }
}

/// Creates the schema in a new database, or upgrades an older one in place (one transaction per
/// step), or refuses a newer or foreign one.
fn migrate(conn: &Connection) -> Result<(), String> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(|e| e.to_string())?;
    let from = match version {
        0 => {
            let has_tables: i64 = conn
                .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table'", [], |r| r.get(0))
                .map_err(|e| e.to_string())?;
            if has_tables > 0 {
                return Err("this file holds tables that are not a taskwire task store; use another path".into());
            }
            // A v1 schema, then every upgrade: one path for new and old files.
            conn.execute_batch(SCHEMA).map_err(|e| format!("cannot create the schema: {e}"))?;
            1
        }
        1..=SCHEMA_VERSION => version,
        other => {
            return Err(format!(
                "the task store has schema version {other}, this taskwire knows version {SCHEMA_VERSION}; use a matching taskwire"
            ));
        }
    };
    for (to, sql) in UPGRADES.iter().filter(|(to, _)| *to > from) {
        let step = format!("BEGIN IMMEDIATE; {sql} PRAGMA user_version = {to}; COMMIT;");
        conn.execute_batch(&step).map_err(|e| format!("cannot upgrade the schema to version {to}: {e}"))?;
    }
    Ok(())
}

/// The writer's page cache, in KiB (SQLite's `cache_size` takes a negative number for KiB).
/// Task ids start with their creation time, so creations and completions touch the right edge
/// of each index and the newest table pages: a few hundred hot pages, whatever the number of
/// retained tasks. Bigger is slower: every commit after a B-tree rebalance that swapped pages
/// (through the temporary page number of the lock page) walks the cache's whole hash table,
/// one bucket per cached page. With 32 MiB that walk was 5 % of a durable server's CPU under
/// load; 4 MiB gave 4-9 % more durable creations per second (bench/NOTES.md, session 15).
const WRITER_CACHE_KIB: i64 = -4 * 1024;

/// Frames the WAL may hold before the writer checkpoints it itself, blocking: background
/// checkpoints can trail a writer that never pauses, and the WAL would grow without end.
const WAL_FRAMES_LIMIT: i64 = 64 * 1024;

/// The writer's side of the checkpointer thread.
struct Checkpointer {
    /// One pending signal at most: "the WAL has grown".
    committed: std::sync::mpsc::SyncSender<()>,
    /// Set by the checkpointer when the WAL is past [`WAL_FRAMES_LIMIT`].
    oversized: Arc<AtomicBool>,
}

fn writer_loop(mut conn: Connection, mut rx: mpsc::Receiver<Job>, max_batch: usize, checkpointer: Checkpointer) {
    let mut batch: Vec<Job> = Vec::with_capacity(max_batch);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        take_waiting(&mut rx, &mut batch, max_batch);
        if batch.len() < max_batch {
            // The first job's wake-up may have cut in on the runtime thread while it was still
            // turning ready requests into jobs (on a shared CPU it does). Yielding once lets it
            // finish, so they join this commit rather than each waiting out the next one: one
            // durable HTTP server on one CPU made 14 % more creations per second (bench/NOTES.md,
            // session 15). Where no other thread wants the CPU it returns at once.
            std::thread::yield_now();
            take_waiting(&mut rx, &mut batch, max_batch);
        }
        let txn = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!("the SQLite writer cannot begin a transaction: {e}");
                // Dropping a job drops its answer channel: each waiting writer gets an error.
                batch.clear();
                continue;
            }
        };
        let deliveries: Vec<Deliver> = batch.drain(..).map(|job| job(&txn)).collect();
        let commit_error = txn.commit().err().map(|e| e.to_string());
        for deliver in deliveries {
            deliver(commit_error.clone());
        }
        let _ = checkpointer.committed.try_send(());
        if checkpointer.oversized.swap(false, Ordering::Relaxed)
            && let Err(e) = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))
        {
            tracing::warn!("the SQLite writer could not checkpoint its oversized WAL: {e}");
        }
    }
}

/// Moves the jobs already queued into `batch`, up to `max_batch`.
fn take_waiting(rx: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>, max_batch: usize) {
    while batch.len() < max_batch {
        match rx.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
}

/// Copies committed WAL frames into the database while the writer goes on (a `PASSIVE`
/// checkpoint never blocks it), at most every few milliseconds so that one pass carries many
/// commits. Ends when the writer does.
fn checkpoint_loop(conn: Connection, commits: std::sync::mpsc::Receiver<()>, oversized: Arc<AtomicBool>) {
    while commits.recv().is_ok() {
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get::<_, i64>(1)) {
            Ok(wal_frames) => oversized.store(wal_frames > WAL_FRAMES_LIMIT, Ordering::Relaxed),
            Err(e) => {
                tracing::warn!("SQLite checkpoint failed (the writer goes on; the WAL grows until one works): {e}")
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Built once: `prepare_cached` finds the statement by its text, and every creation asks.
static INSERT_TASK: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "INSERT INTO tasks ({COLUMNS}, expires_at_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)"
    )
});

/// `tasks/get` polls read one record by id, often.
static SELECT_TASK: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("SELECT {COLUMNS} FROM tasks WHERE id = ?1"));

fn insert(txn: &Transaction<'_>, r: &TaskRecord) -> Result<(), StoreError> {
    let result = txn.prepare_cached(&INSERT_TASK).and_then(|mut stmt| {
        stmt.execute(params![
            r.id.as_str(),
            r.owner.principal,
            r.owner.scope,
            r.tool,
            r.status.as_str(),
            r.status_message,
            r.created_at_ms as i64,
            r.updated_at_ms as i64,
            r.ttl_ms.map(|t| t as i64),
            r.poll_interval_ms as i64,
            r.result,
            r.error,
            r.input_requests,
            r.attempt as i64,
            r.cancel_requested as i64,
            r.arguments,
            r.wire.as_str(),
            r.lease_holder,
            r.lease_until_ms.map(|t| t as i64),
            r.idempotency_key,
            r.callback.as_ref().map(|c| c.url.as_str()),
            r.callback.as_ref().map(|c| c.every_status as i64),
            r.expires_at_ms().map(|e| e as i64),
        ])
    });
    match result {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
            Err(StoreError::Duplicate)
        }
        Err(e) => Err(backend(e)),
    }
}

/// The newest record `record` would duplicate under its idempotency key (same caller: the
/// principal when authenticated, else the scope).
fn idempotent_twin(conn: &Connection, record: &TaskRecord) -> rusqlite::Result<Option<TaskRecord>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM tasks WHERE tool = ?1 AND idempotency_key = ?2 AND principal IS ?3 \
         AND (?3 IS NOT NULL OR scope = ?4) ORDER BY created_at_ms DESC LIMIT 1"
    ))?
    .query_row(
        params![record.tool, record.idempotency_key, record.owner.principal, record.owner.scope],
        record_from_row,
    )
    .optional()
}

/// Runs a lease renewal (`?1` the new end, `?2` an id, `?3` the holder) for each id; returns how
/// many rows it renewed. Tasks and webhook deliveries are leased alike.
fn renew_each(
    txn: &Transaction<'_>,
    sql: &str,
    ids: &[String],
    holder: &str,
    until_ms: u64,
) -> Result<usize, StoreError> {
    let mut stmt = txn.prepare_cached(sql).map_err(backend)?;
    let mut n = 0;
    for id in ids {
        n += stmt.execute(params![until_ms as i64, id, holder]).map_err(backend)?;
    }
    Ok(n)
}

/// The listing query for a caller (`?1` its principal when `authenticated`, else its scope;
/// `?2` the page size), from the start or past a cursor (`?3`, `?4`). Each form reads one range
/// of the caller's listing index in order (`LISTINGS`); a single query with `principal IS ?1 AND
/// (?1 IS NOT NULL OR scope = ?2)` could use neither, and sorted instead.
fn listing_sql(authenticated: bool, after_cursor: bool) -> &'static str {
    static FORMS: std::sync::LazyLock<[String; 4]> = std::sync::LazyLock::new(|| {
        let form = |i: usize| {
            let caller = if i & 2 != 0 { "principal = ?1" } else { "principal IS NULL AND scope = ?1" };
            let after = if i & 1 != 0 { " AND (created_at_ms, id) > (?3, ?4)" } else { "" };
            format!("SELECT {COLUMNS} FROM tasks WHERE {caller}{after} ORDER BY created_at_ms, id LIMIT ?2")
        };
        [form(0), form(1), form(2), form(3)]
    });
    &FORMS[usize::from(authenticated) * 2 + usize::from(after_cursor)]
}

fn select_one(conn: &Connection, id: &str) -> rusqlite::Result<Option<TaskRecord>> {
    conn.prepare_cached(&SELECT_TASK)?.query_row([id], record_from_row).optional()
}

impl TaskStore for SqliteStore {
    fn create(&self, record: TaskRecord) -> BoxFuture<'_, Result<Created, StoreError>> {
        // The writer's transaction is IMMEDIATE, so the look-up and the insert are one atomic
        // step even for several processes sharing the file.
        Box::pin(self.write(move |txn| {
            if record.idempotency_key.is_some()
                && let Some(existing) = idempotent_twin(txn, &record).map_err(backend)?
            {
                if existing.expires_at_ms().is_none_or(|e| e > record.created_at_ms) {
                    return Ok(Created::Existing(Box::new(existing)));
                }
                txn.execute("DELETE FROM tasks WHERE id = ?1", [existing.id.as_str()]).map_err(backend)?;
            }
            insert(txn, &record).map(|()| Created::New)
        }))
    }

    fn get<'a>(&'a self, id: &'a TaskId) -> BoxFuture<'a, Result<Option<TaskRecord>, StoreError>> {
        let id = id.as_str().to_owned();
        Box::pin(self.read(move |conn| select_one(conn, &id)))
    }

    fn update<'a>(
        &'a self,
        id: &'a TaskId,
        update: Update,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<Option<TaskRecord>, StoreError>> {
        let id = id.as_str().to_owned();
        Box::pin(self.write(move |txn| {
            let Some(mut record) = select_one(txn, &id).map_err(backend)? else { return Ok(None) };
            if let Some(event) = update.apply_with_event(&mut record, now_ms)? {
                insert_delivery(txn, &event)?;
            }
            txn.prepare_cached(
                "UPDATE tasks SET status = ?2, status_message = ?3, updated_at_ms = ?4, result = ?5, error = ?6, \
                 input_requests = ?7, cancel_requested = ?8, attempt = ?9 WHERE id = ?1",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    id,
                    record.status.as_str(),
                    record.status_message,
                    record.updated_at_ms as i64,
                    record.result,
                    record.error,
                    record.input_requests,
                    record.cancel_requested as i64,
                    record.attempt as i64,
                ])
            })
            .map_err(backend)?;
            Ok(Some(record))
        }))
    }

    fn list<'a>(
        &'a self,
        caller: &'a Owner,
        cursor: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Page, StoreError>> {
        let caller = caller.clone();
        let after = cursor.and_then(decode_cursor).map(|(ms, id)| (ms as i64, id.as_str().to_owned()));
        Box::pin(async move {
            let mut tasks = self
                .read(move |conn| {
                    let lister = match &caller.principal {
                        Some(principal) => principal,
                        None => &caller.scope,
                    };
                    let mut stmt = conn.prepare_cached(listing_sql(caller.principal.is_some(), after.is_some()))?;
                    let rows = match &after {
                        Some((ms, id)) => {
                            stmt.query_map(params![lister, (limit + 1) as i64, ms, id], record_from_row)?
                        }
                        None => stmt.query_map(params![lister, (limit + 1) as i64], record_from_row)?,
                    };
                    rows.collect::<rusqlite::Result<Vec<_>>>()
                })
                .await?;
            let more = tasks.len() > limit;
            tasks.truncate(limit);
            let next_cursor = if more { tasks.last().map(encode_cursor) } else { None };
            Ok(Page { tasks, next_cursor })
        })
    }

    fn expired(&self, now_ms: u64, limit: usize) -> BoxFuture<'_, Result<Vec<TaskRecord>, StoreError>> {
        Box::pin(self.read(move |conn| {
            let mut stmt =
                conn.prepare_cached(&format!("SELECT {COLUMNS} FROM tasks WHERE expires_at_ms <= ?1 LIMIT ?2"))?;
            let rows = stmt.query_map(params![now_ms as i64, limit as i64], record_from_row)?;
            rows.collect()
        }))
    }

    fn delete<'a>(&'a self, ids: &'a [TaskId]) -> BoxFuture<'a, Result<usize, StoreError>> {
        let ids: Vec<String> = ids.iter().map(|i| i.as_str().to_owned()).collect();
        Box::pin(self.write(move |txn| {
            let mut stmt = txn.prepare_cached("DELETE FROM tasks WHERE id = ?1").map_err(backend)?;
            let mut drop_deliveries =
                txn.prepare_cached("DELETE FROM webhook_deliveries WHERE task_id = ?1").map_err(backend)?;
            let mut n = 0;
            for id in &ids {
                n += stmt.execute([id]).map_err(backend)?;
                drop_deliveries.execute([id]).map_err(backend)?;
            }
            Ok(n)
        }))
    }

    fn claim_orphans<'a>(
        &'a self,
        now_ms: u64,
        holder: &'a str,
        lease_until_ms: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<TaskRecord>, StoreError>> {
        let holder = holder.to_owned();
        // In the writer: the claim and its read are one transaction, so two engines sharing
        // the file cannot both take a record.
        Box::pin(self.write(move |txn| {
            let mut stmt = txn
                .prepare_cached(&format!(
                    "UPDATE tasks SET lease_holder = ?1, lease_until_ms = ?2, attempt = attempt + 1 \
                     WHERE id IN (SELECT id FROM tasks WHERE status IN ('working', 'input_required') \
                                  AND (lease_until_ms IS NULL OR lease_until_ms < ?3) LIMIT ?4) \
                     RETURNING {COLUMNS}"
                ))
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![holder, lease_until_ms as i64, now_ms as i64, limit as i64], record_from_row)
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
        }))
    }

    fn renew_leases<'a>(
        &'a self,
        holder: &'a str,
        ids: &'a [TaskId],
        lease_until_ms: u64,
    ) -> BoxFuture<'a, Result<usize, StoreError>> {
        let holder = holder.to_owned();
        let ids: Vec<String> = ids.iter().map(|i| i.as_str().to_owned()).collect();
        Box::pin(self.write(move |txn| {
            let sql = "UPDATE tasks SET lease_until_ms = ?1 WHERE id = ?2 AND lease_holder = ?3 \
                       AND status IN ('working', 'input_required')";
            renew_each(txn, sql, &ids, &holder, lease_until_ms)
        }))
    }

    fn claim_deliveries<'a>(
        &'a self,
        now_ms: u64,
        holder: &'a str,
        lease_until_ms: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Delivery>, StoreError>> {
        let holder = holder.to_owned();
        // In the writer: claim and read are one transaction, as for orphaned tasks.
        Box::pin(self.write(move |txn| {
            let mut stmt = txn
                .prepare_cached(&format!(
                    "UPDATE webhook_deliveries SET lease_holder = ?1, lease_until_ms = ?2, attempts = attempts + 1 \
                     WHERE id IN (SELECT id FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_ms <= ?3 \
                                  AND (lease_until_ms IS NULL OR lease_until_ms <= ?3) \
                                  ORDER BY next_attempt_ms LIMIT ?4) \
                     RETURNING {DELIVERY_COLUMNS}"
                ))
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![holder, lease_until_ms as i64, now_ms as i64, limit as i64], delivery_from_row)
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
        }))
    }

    fn settle_delivery<'a>(
        &'a self,
        id: &'a str,
        settlement: Settlement,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let id = id.to_owned();
        Box::pin(self.write(move |txn| {
            let select = format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = ?1");
            let found = txn
                .prepare_cached(&select)
                .and_then(|mut stmt| stmt.query_row([&id], delivery_from_row).optional())
                .map_err(backend)?;
            let Some(mut d) = found else { return Ok(false) };
            settlement.apply(&mut d, now_ms);
            txn.prepare_cached(
                "UPDATE webhook_deliveries SET state = ?2, next_attempt_ms = ?3, lease_holder = NULL, \
                 lease_until_ms = NULL, last_error = ?4, updated_at_ms = ?5 WHERE id = ?1",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![id, d.state.as_str(), d.next_attempt_ms as i64, d.last_error, now_ms as i64])
            })
            .map_err(backend)?;
            Ok(true)
        }))
    }

    fn renew_delivery_leases<'a>(
        &'a self,
        holder: &'a str,
        ids: &'a [String],
        lease_until_ms: u64,
    ) -> BoxFuture<'a, Result<usize, StoreError>> {
        let holder = holder.to_owned();
        let ids = ids.to_vec();
        Box::pin(self.write(move |txn| {
            let sql = "UPDATE webhook_deliveries SET lease_until_ms = ?1 WHERE id = ?2 AND lease_holder = ?3 \
                       AND state = 'pending'";
            renew_each(txn, sql, &ids, &holder, lease_until_ms)
        }))
    }

    fn deliveries<'a>(&'a self, task: &'a TaskId) -> BoxFuture<'a, Result<Vec<Delivery>, StoreError>> {
        let task = task.as_str().to_owned();
        Box::pin(self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE task_id = ?1 ORDER BY created_at_ms, rowid"
            ))?;
            let rows = stmt.query_map([task], delivery_from_row)?;
            rows.collect()
        }))
    }

    fn next_delivery_at(&self) -> BoxFuture<'_, Result<Option<u64>, StoreError>> {
        Box::pin(self.read(|conn| {
            conn.query_row(
                "SELECT min(max(next_attempt_ms, coalesce(lease_until_ms, 0))) FROM webhook_deliveries \
                 WHERE state = 'pending'",
                [],
                |row| row.get::<_, Option<i64>>(0),
            )
            .map(|at| at.map(|t| t as u64))
        }))
    }
}

/// Opens the store a `--store` flag names: `memory` (lost on exit) or `sqlite:PATH` (durable).
/// The error says what was wrong with the spec (callers prefix the flag's name).
///
/// ```
/// let store = taskwire_store_sqlite::open_spec("memory").unwrap();
/// # let _ = store;
/// assert!(taskwire_store_sqlite::open_spec("postgres://x").is_err());
/// ```
pub fn open_spec(spec: &str) -> Result<Arc<dyn taskwire_engine::TaskStore>, String> {
    if spec == "memory" {
        return Ok(Arc::new(taskwire_engine::MemoryStore::new()));
    }
    match spec.strip_prefix("sqlite:") {
        Some(path) if !path.is_empty() => {
            Ok(Arc::new(SqliteStore::open(path, SqliteConfig::default()).map_err(|e| format!("{spec}: {e}"))?))
        }
        _ => Err(format!("{spec:?} is not understood: use memory or sqlite:PATH (e.g. sqlite:tasks.db)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every listing form reads its caller's index range in order: no scan of other callers'
    /// tasks and no sort, however many tasks the store retains.
    #[test]
    fn listings_read_one_index_range_in_order() {
        let dir = std::env::temp_dir().join(format!("taskwire-plan-{}", TaskId::random().as_str()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tasks.db");
        let _store = SqliteStore::open(&path, SqliteConfig::default()).unwrap();
        let conn = Connection::open(&path).unwrap();
        for (authenticated, index) in [(true, "tasks_by_principal"), (false, "tasks_by_scope")] {
            for after_cursor in [false, true] {
                let sql = listing_sql(authenticated, after_cursor);
                // NULL for every parameter: the plan does not depend on their values.
                let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
                let nulls = rusqlite::params_from_iter(vec![rusqlite::types::Null; stmt.parameter_count()]);
                let plan: Vec<String> =
                    stmt.query_map(nulls, |row| row.get(3)).unwrap().collect::<rusqlite::Result<_>>().unwrap();
                let plan = plan.join(" / ");
                assert!(plan.contains(&format!("USING INDEX {index}")), "{sql}: {plan}");
                assert!(!plan.contains("TEMP B-TREE"), "{sql} sorts: {plan}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Writing a task or a delivery builds no temporary table (a CHECK with `IN (…)` of three or
    /// more values made one per write: `COMPARED_CHECKS`), and the checks still refuse what
    /// they must.
    #[test]
    fn writes_build_no_temporary_table_and_checks_still_hold() {
        let dir = std::env::temp_dir().join(format!("taskwire-checks-{}", TaskId::random().as_str()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tasks.db");
        let _store = SqliteStore::open(&path, SqliteConfig::default()).unwrap();
        let conn = Connection::open(&path).unwrap();
        let writes = [
            INSERT_TASK.clone(),
            "UPDATE tasks SET status = ?2, updated_at_ms = ?3 WHERE id = ?1".to_owned(),
            format!(
                "INSERT INTO webhook_deliveries ({DELIVERY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            ),
            "UPDATE webhook_deliveries SET state = ?2 WHERE id = ?1".to_owned(),
        ];
        for sql in writes {
            let mut stmt = conn.prepare(&format!("EXPLAIN {sql}")).unwrap();
            let nulls = rusqlite::params_from_iter(vec![rusqlite::types::Null; stmt.parameter_count()]);
            let ops: Vec<String> =
                stmt.query_map(nulls, |row| row.get(1)).unwrap().collect::<rusqlite::Result<_>>().unwrap();
            assert!(!ops.iter().any(|op| op == "OpenEphemeral"), "{sql} builds a temporary table: {ops:?}");
        }
        conn.execute(
            "INSERT INTO tasks (id, scope, tool, status, created_at_ms, updated_at_ms, poll_interval_ms, attempt, \
             cancel_requested, wire) VALUES ('a', 's', 't', 'working', 1, 1, 1, 1, 0, 'core')",
            [],
        )
        .expect("a valid row is taken");
        for bad in ["UPDATE tasks SET status = 'done' WHERE id = 'a'", "UPDATE tasks SET wire = 'x' WHERE id = 'a'"] {
            let err = conn.execute(bad, []).expect_err(bad).to_string();
            assert!(err.contains("CHECK constraint failed"), "{bad}: {err}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
