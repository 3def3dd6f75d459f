//! Durable creations straight against the SQLite store, without HTTP in the way: how many task
//! records per second commit with `synchronous=FULL`, and how long a commit makes its writer
//! wait. The benchmark harness (`bench/drive.py`, section `tasks`) runs it beside the HTTP load so
//! that the disk and the protocol can be told apart.
//!
//! ```text
//! cargo run --release -p taskwire-store-sqlite --example durable_creations -- DIR SECONDS LOAD [zero-work]
//! ```
//!
//! `LOAD` is either a number of creations kept in flight (closed loop: the store's saturation
//! rate, and the commit wait that rate costs) or a rate such as `30000/s` (open loop: creations
//! start on a schedule whether or not earlier ones have committed, so the commit wait is what a
//! store serving that rate makes each caller wait). A target of the form "N creations/s with
//! commit p99 ≤ T" is a statement about the second: at saturation, every closed loop's wait is
//! its queue (Little's law), whatever the store.
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
    eprintln!("usage: durable_creations DIR SECONDS (IN_FLIGHT | RATE/s) [zero-work]");
    std::process::exit(2)
}

/// How creations are started.
#[derive(Clone, Copy)]
enum Load {
    /// This many callers, each starting its next creation when the last one committed.
    InFlight(usize),
    /// Creations started on a fixed schedule of this many per second.
    Rate(u64),
}

impl Load {
    fn parse(s: &str) -> Option<Load> {
        match s.strip_suffix("/s") {
            Some(rate) => rate.parse().ok().filter(|r| *r > 0).map(Load::Rate),
            None => s.parse().ok().filter(|n| *n > 0).map(Load::InFlight),
        }
    }
}

/// One task's writes; returns how long its `create` waited for the commit, in microseconds.
async fn create_one(store: &SqliteStore, owner: &Owner, zero_work: bool) -> u64 {
    let r = sample_record(owner, now_ms());
    let id = r.id.clone();
    let start = Instant::now();
    store.create(r).await.expect("create");
    let waited = start.elapsed().as_micros() as u64;
    if zero_work {
        let done = Update { result: Some("{\"content\":[]}".into()), ..Update::status(TaskStatus::Completed) };
        store.update(&id, done, now_ms()).await.expect("complete");
    }
    waited
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, seconds, load, rest @ ..] = args.as_slice() else { usage() };
    let seconds: u64 = seconds.parse().unwrap_or_else(|_| usage());
    let load = Load::parse(load).unwrap_or_else(|| usage());
    let zero_work = rest.iter().any(|a| a == "zero-work");
    let path = std::path::Path::new(dir).join(format!("creations-{}.db", std::process::id()));
    let store = Arc::new(SqliteStore::open(&path, SqliteConfig::default()).unwrap_or_else(|e| {
        eprintln!("durable_creations: {e}");
        std::process::exit(1)
    }));
    let owner = Owner::anonymous("bench");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut waits = match load {
        Load::InFlight(n) => closed_loop(&store, &owner, zero_work, n, deadline).await,
        Load::Rate(rate) => open_loop(&store, &owner, zero_work, rate, deadline).await,
    };
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

async fn closed_loop(
    store: &Arc<SqliteStore>,
    owner: &Owner,
    zero_work: bool,
    in_flight: usize,
    deadline: Instant,
) -> Vec<u64> {
    let callers: Vec<_> = (0..in_flight)
        .map(|_| {
            let (store, owner) = (store.clone(), owner.clone());
            tokio::spawn(async move {
                let mut waits = Vec::new();
                while Instant::now() < deadline {
                    waits.push(create_one(&store, &owner, zero_work).await);
                }
                waits
            })
        })
        .collect();
    let mut waits = Vec::new();
    for caller in callers {
        waits.extend(caller.await.expect("caller"));
    }
    waits
}

/// Starts creations every millisecond, as many as the schedule says are due; a late tick starts
/// the ones it missed at once, so the offered rate holds even when the runtime falls behind.
async fn open_loop(store: &Arc<SqliteStore>, owner: &Owner, zero_work: bool, rate: u64, deadline: Instant) -> Vec<u64> {
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut creations = tokio::task::JoinSet::new();
    let mut waits = Vec::new();
    let mut issued: u64 = 0;
    while Instant::now() < deadline {
        tick.tick().await;
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        for _ in issued..due {
            let (store, owner) = (store.clone(), owner.clone());
            creations.spawn(async move { create_one(&store, &owner, zero_work).await });
        }
        issued = issued.max(due);
        while let Some(done) = creations.try_join_next() {
            waits.push(done.expect("creation"));
        }
    }
    while let Some(done) = creations.join_next().await {
        waits.push(done.expect("creation"));
    }
    waits
}
