//! Durable creations straight against the SQLite store, without HTTP in the way: how many task
//! records per second commit with `synchronous=FULL`, and how long a commit makes its writer
//! wait. The benchmark harness (`bench/drive.py`, section `tasks`) runs it beside the HTTP load so
//! that the disk and the protocol can be told apart.
//!
//! ```text
//! cargo run --release -p taskwire-store-sqlite --example durable_creations -- DIR SECONDS IN_FLIGHT [zero-work]
//! ```
//!
//! `zero-work` follows each creation with its completion (a second write), as a task whose work
//! ends at once does. Prints `key=value` pairs: `rps` (creations per second), `commit_p50_us`,
//! `commit_p99_us` and `commit_max_us` (the time one `create` call waits for its commit).

use std::sync::Arc;
use std::time::{Duration, Instant};

use taskwire_engine::contract::sample_record;
use taskwire_engine::{Owner, TaskStatus, TaskStore, Update, now_ms};
use taskwire_store_sqlite::{SqliteConfig, SqliteStore};

fn usage() -> ! {
    eprintln!("usage: durable_creations DIR SECONDS IN_FLIGHT [zero-work]");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, seconds, in_flight, rest @ ..] = args.as_slice() else { usage() };
    let seconds: u64 = seconds.parse().unwrap_or_else(|_| usage());
    let in_flight: usize = in_flight.parse().unwrap_or_else(|_| usage());
    let zero_work = rest.iter().any(|a| a == "zero-work");
    let path = std::path::Path::new(dir).join(format!("creations-{}.db", std::process::id()));
    let store = Arc::new(SqliteStore::open(&path, SqliteConfig::default()).unwrap_or_else(|e| {
        eprintln!("durable_creations: {e}");
        std::process::exit(1)
    }));
    let owner = Owner::anonymous("bench");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..in_flight)
        .map(|_| {
            let (store, owner) = (store.clone(), owner.clone());
            tokio::spawn(async move {
                let mut waits = Vec::new();
                while Instant::now() < deadline {
                    let r = sample_record(&owner, now_ms());
                    let id = r.id.clone();
                    let start = Instant::now();
                    store.create(r).await.expect("create");
                    waits.push(start.elapsed().as_micros() as u64);
                    if zero_work {
                        let done =
                            Update { result: Some("{\"content\":[]}".into()), ..Update::status(TaskStatus::Completed) };
                        store.update(&id, done, now_ms()).await.expect("complete");
                    }
                }
                waits
            })
        })
        .collect();
    let started = Instant::now();
    let mut waits = Vec::new();
    for w in workers {
        waits.extend(w.await.expect("worker"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    waits.sort_unstable();
    let pct = |p: f64| {
        waits.get(((waits.len() as f64 * p) as usize).min(waits.len().saturating_sub(1))).copied().unwrap_or(0)
    };
    println!(
        "rps={:.0} n={} commit_p50_us={} commit_p99_us={} commit_max_us={}",
        waits.len() as f64 / elapsed,
        waits.len(),
        pct(0.50),
        pct(0.99),
        waits.last().copied().unwrap_or(0)
    );
    drop(store);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}
