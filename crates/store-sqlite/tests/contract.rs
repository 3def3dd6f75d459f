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

/// A version-1 file (before idempotency keys) is upgraded in place and keeps its records.
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
    assert_eq!(record.idempotency_key, None);
    taskwire_engine::contract::idempotency_keys_return_the_live_task(&store).await;
}
