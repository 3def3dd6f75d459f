//! Creations into the in-memory store as the number of retained records grows: whether a
//! creation stays as fast at a million records as at the first, and how long the slowest one
//! waits. This is the store's share of the `tasks` section's creation rounds in
//! `bench/drive.py`, without HTTP in the way.
//!
//! ```text
//! cargo run --release -p taskwire-engine --example retained_creations -- ROUNDS PER_ROUND
//! ```
//!
//! Prints one line per round: `retained` (records after the round), `rps`, and the `p99_us` and
//! `max_us` of a single `create` call.

use std::time::Instant;

use taskwire_engine::contract::sample_record;
use taskwire_engine::{MemoryStore, Owner, TaskStore, now_ms, time_ordered_unique};

fn usage() -> ! {
    eprintln!("usage: retained_creations ROUNDS PER_ROUND");
    std::process::exit(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [rounds, per_round] = args.as_slice() else { usage() };
    let rounds: usize = rounds.parse().unwrap_or_else(|_| usage());
    let per_round: usize = per_round.parse().unwrap_or_else(|_| usage());
    let store = MemoryStore::new();
    let mut waits = Vec::with_capacity(per_round);
    for round in 1..=rounds {
        waits.clear();
        let started = Instant::now();
        for _ in 0..per_round {
            // A scope of its own per creation, time first, as each sessionless HTTP request has
            // (`Session::scope`): the harness's creation rounds are such requests.
            let owner = Owner::anonymous(format!("anonymous-{}", time_ordered_unique()));
            let record = sample_record(&owner, now_ms());
            let start = Instant::now();
            store.create(record).await.expect("create");
            waits.push(start.elapsed().as_micros() as u64);
        }
        let elapsed = started.elapsed().as_secs_f64();
        waits.sort_unstable();
        println!(
            "retained={} rps={:.0} p99_us={} max_us={}",
            round * per_round,
            per_round as f64 / elapsed,
            waits[(waits.len() * 99 / 100).min(waits.len() - 1)],
            waits.last().copied().unwrap_or(0)
        );
    }
}
