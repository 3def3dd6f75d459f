//! The SQLite store against the store contract, and durability across a reopen.

use taskwire_engine::{Engine, EngineConfig, Owner, TaskStatus, TaskStore};
use taskwire_store_sqlite::{SqliteConfig, SqliteStore};

fn temp_db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("taskwire-sqlite-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("tasks.db")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_honours_the_contract() {
    let store = SqliteStore::open(temp_db("contract"), SqliteConfig::default()).unwrap();
    taskwire_engine::contract::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_and_results_survive_a_reopen_byte_for_byte() {
    let path = temp_db("reopen");
    let owner = Owner::anonymous("s");
    let raw = r#"{"content":[{"type":"text","text":"done \u00e9"}],"n":1.0}"#;
    let id = {
        let store = std::sync::Arc::new(SqliteStore::open(&path, SqliteConfig::default()).unwrap());
        let engine = Engine::new(store, EngineConfig::default());
        let task = engine.create(&owner, "t", None).await.unwrap();
        task.complete(raw.into()).await;
        task.id().clone()
    };
    let store = SqliteStore::open(&path, SqliteConfig::default()).unwrap();
    let record = store.get(&id).await.unwrap().expect("the task survived");
    assert_eq!(record.status, TaskStatus::Completed);
    assert_eq!(record.result.as_deref(), Some(raw));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_are_group_committed_and_all_durable() {
    let path = temp_db("group");
    let store = std::sync::Arc::new(SqliteStore::open(&path, SqliteConfig::default()).unwrap());
    let engine = Engine::new(store, EngineConfig::default());
    let owner = Owner::anonymous("g");
    let mut handles = Vec::new();
    for _ in 0..500 {
        let (engine, owner) = (engine.clone(), owner.clone());
        handles.push(tokio::spawn(async move { engine.create(&owner, "t", None).await.unwrap().id().clone() }));
    }
    let mut ids = Vec::new();
    for h in handles {
        ids.push(h.await.unwrap());
    }
    drop(engine);
    let reopened = SqliteStore::open(&path, SqliteConfig::default()).unwrap();
    for id in &ids {
        assert!(reopened.get(id).await.unwrap().is_some(), "every acknowledged create is on disk");
    }
}

/// The writer never checkpoints inline; the checkpointer thread must copy commits into the
/// database file while the store is open (else the WAL would grow for ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_reach_the_database_file_while_the_store_is_open() {
    let path = temp_db("checkpoint");
    let store = std::sync::Arc::new(SqliteStore::open(&path, SqliteConfig::default()).unwrap());
    let size = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let before = size();
    let engine = Engine::new(store.clone(), EngineConfig::default());
    let owner = Owner::anonymous("c");
    let long_tool_name = "t".repeat(500);
    for _ in 0..40 {
        let creates: Vec<_> = (0..50)
            .map(|_| {
                let (engine, owner, tool) = (engine.clone(), owner.clone(), long_tool_name.clone());
                tokio::spawn(async move { engine.create(&owner, &tool, None).await.unwrap().id().clone() })
            })
            .collect();
        for c in creates {
            c.await.unwrap();
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while size() < before + 1_000_000 {
        assert!(
            std::time::Instant::now() < deadline,
            "2,000 tasks of 500+ bytes each are committed, but the database file grew only from {before} to {} bytes in 10 s: nothing checkpoints the WAL",
            size()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A version-1 file (before idempotency keys and webhooks) is upgraded in place, step by step, and
/// keeps its records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_file_is_upgraded_and_keeps_its_records() {
    let path = temp_db("upgrade");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE tasks (
                id TEXT PRIMARY KEY, principal TEXT, scope TEXT NOT NULL, tool TEXT NOT NULL,
                status TEXT NOT NULL, status_message TEXT, created_at_ms INTEGER NOT NULL,
                updated_at_ms INTEGER NOT NULL, ttl_ms INTEGER, expires_at_ms INTEGER,
                poll_interval_ms INTEGER NOT NULL, result TEXT, error TEXT, input_requests TEXT,
                attempt INTEGER NOT NULL, cancel_requested INTEGER NOT NULL, arguments TEXT,
                wire TEXT NOT NULL, lease_holder TEXT, lease_until_ms INTEGER) STRICT;
             INSERT INTO tasks VALUES ('0123456789abcdef0123456789abcdef', NULL, 's', 'build', 'completed', NULL,
                1, 2, NULL, NULL, 500, '{\"content\":[]}', NULL, NULL, 1, 0, NULL, 'core', NULL, NULL);
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path, SqliteConfig::default()).expect("a version-1 file opens");
    let id = taskwire_engine::TaskId::from_wire("0123456789abcdef0123456789abcdef");
    let record = store.get(&id).await.unwrap().expect("the old record survived the upgrade");
    assert_eq!(record.result.as_deref(), Some(r#"{"content":[]}"#));
    assert_eq!((record.idempotency_key, record.callback), (None, None));
    taskwire_engine::contract::idempotency_keys_return_the_live_task(&store).await;
    taskwire_engine::contract::status_changes_enqueue_their_webhook_event(&store).await;
}

/// The outbox is as durable as the tasks: an event enqueued by a terminal change, and its
/// attempts, are there after a reopen (a restart), and can be claimed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_deliveries_survive_a_reopen() {
    use taskwire_engine::{Callback, DeliveryState, TaskStore};
    let path = temp_db("outbox");
    let owner = taskwire_engine::Owner::anonymous("s");
    let engine_store = SqliteStore::open(&path, SqliteConfig::default()).unwrap();
    let engine = taskwire_engine::Engine::new(std::sync::Arc::new(engine_store), Default::default());
    let new = taskwire_engine::NewTask {
        owner: &owner,
        tool: "build",
        ttl_ms: None,
        arguments: None,
        wire: taskwire_engine::TaskWire::Extension,
        idempotency_key: None,
        callback: Some(Callback { url: "http://127.0.0.1:9/hook".into(), every_status: false }),
    };
    let taskwire_engine::Creation::Started(task) = engine.create_task(new).await.unwrap() else { panic!("new task") };
    let id = task.id().clone();
    task.complete(r#"{"content":[]}"#.into()).await;
    let claimed = engine.store().claim_deliveries(u64::MAX / 4, "gone", u64::MAX / 4 + 1, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    drop((task, engine));

    let reopened = SqliteStore::open(&path, SqliteConfig::default()).unwrap();
    let kept = reopened.deliveries(&id).await.unwrap();
    assert_eq!(kept.len(), 1, "the enqueued event survived the restart");
    assert_eq!((kept[0].state, kept[0].attempts), (DeliveryState::Pending, 1));
    // The dead dispatcher's lease lapses; the delivery is claimed again, the attempt counted.
    let again = reopened.claim_deliveries(u64::MAX / 4 + 2, "new", u64::MAX / 4 + 100, 10).await.unwrap();
    assert_eq!(again.iter().map(|d| (d.id.as_str(), d.attempts)).collect::<Vec<_>>(), [(kept[0].id.as_str(), 2)]);
}
