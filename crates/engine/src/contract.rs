//! The contract every [`TaskStore`] must honour, as one test suite that each store runs
//! against itself (the in-memory store in this crate's tests; durable stores in theirs).
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! taskwire_engine::contract::run_all(&taskwire_engine::MemoryStore::new()).await;
//! # });
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use crate::outbox::{DeliveryState, Settlement};
use crate::store::{Created, StoreError, TaskStore, Update};
use crate::task::{Callback, Owner, TaskId, TaskRecord, TaskStatus};

/// A `working` record of tool `tool` with a fresh id, a one-minute TTL, a lease of one second and
/// small arguments: what the contract checks start from, and what store benchmarks create.
///
/// ```
/// let owner = taskwire_engine::Owner::anonymous("session-1");
/// let r = taskwire_engine::contract::sample_record(&owner, 1_000);
/// assert_eq!(r.status, taskwire_engine::TaskStatus::Working);
/// assert_eq!(r.created_at_ms, 1_000);
/// ```
pub fn sample_record(owner: &Owner, created_at_ms: u64) -> TaskRecord {
    TaskRecord {
        id: TaskId::random(),
        owner: owner.clone(),
        tool: "tool".into(),
        status: TaskStatus::Working,
        status_message: None,
        created_at_ms,
        updated_at_ms: created_at_ms,
        ttl_ms: Some(60_000),
        poll_interval_ms: 500,
        result: None,
        error: None,
        input_requests: None,
        attempt: 1,
        cancel_requested: false,
        arguments: Some(r#"{"a":1}"#.into()),
        wire: crate::task::TaskWire::Extension,
        lease_holder: Some("creator".into()),
        lease_until_ms: Some(created_at_ms + 1_000),
        idempotency_key: None,
        callback: None,
    }
}

/// Runs every contract check; panics on the first violation.
pub async fn run_all(store: &dyn TaskStore) {
    create_then_get_returns_the_same_record(store).await;
    results_are_stored_byte_for_byte(store).await;
    duplicate_ids_are_refused(store).await;
    terminal_records_never_change(store).await;
    illegal_transitions_are_refused(store).await;
    listings_are_scoped_and_paginated(store).await;
    expired_records_are_found_and_deleted(store).await;
    orphans_are_claimed_once(store).await;
    idempotency_keys_return_the_live_task(store).await;
    concurrent_creations_with_one_key_store_one_record(store).await;
    status_changes_enqueue_their_webhook_event(store).await;
    deliveries_are_claimed_once_retried_and_settled(store).await;
    deleting_a_task_drops_its_deliveries(store).await;
}

fn subscribed(every_status: bool, created_at_ms: u64) -> TaskRecord {
    let mut r = sample_record(&Owner::anonymous("outbox"), created_at_ms);
    r.callback = Some(Callback { url: "http://127.0.0.1:9/hook".into(), every_status });
    r
}

fn finish(result: &str) -> Update {
    Update { status: Some(TaskStatus::Completed), result: Some(result.into()), ..Update::default() }
}

/// A terminal change of a subscribed task enqueues exactly one event, carrying the result, in
/// the same step; non-terminal changes only when every status was asked for; unsubscribed tasks
/// and refused changes enqueue nothing.
pub async fn status_changes_enqueue_their_webhook_event(store: &dyn TaskStore) {
    let now = 3_000_000_000;
    let quiet = subscribed(false, now);
    store.create(quiet.clone()).await.expect("create");
    store.update(&quiet.id, Update::status(TaskStatus::InputRequired), now + 1).await.expect("update");
    store.update(&quiet.id, Update::status(TaskStatus::Working), now + 2).await.expect("update");
    assert!(store.deliveries(&quiet.id).await.expect("deliveries").is_empty(), "no event before the end");
    store.update(&quiet.id, finish(r#"{"content":[],"n":7}"#), now + 3).await.expect("update");
    let _ = store.update(&quiet.id, Update::status(TaskStatus::Cancelled), now + 4).await;
    let events = store.deliveries(&quiet.id).await.expect("deliveries");
    assert_eq!(events.len(), 1, "one event for the one terminal change");
    let d = &events[0];
    assert_eq!(
        (d.state, d.attempts, d.next_attempt_ms, d.url.as_str()),
        (DeliveryState::Pending, 0, now + 3, "http://127.0.0.1:9/hook")
    );
    let body: serde_json::Value = serde_json::from_str(&d.event).expect("event JSON");
    assert_eq!((body["type"].as_str(), body["data"]["result"]["n"].as_u64()), (Some("task.completed"), Some(7)));

    let chatty = subscribed(true, now);
    store.create(chatty.clone()).await.expect("create");
    store.update(&chatty.id, Update::status(TaskStatus::InputRequired), now + 1).await.expect("update");
    store.update(&chatty.id, finish("{}"), now + 2).await.expect("update");
    let kinds: Vec<String> = store
        .deliveries(&chatty.id)
        .await
        .expect("deliveries")
        .iter()
        .map(|d| serde_json::from_str::<serde_json::Value>(&d.event).expect("JSON")["type"].to_string())
        .collect();
    assert_eq!(kinds, [r#""task.input_required""#, r#""task.completed""#]);

    let plain = sample_record(&Owner::anonymous("outbox"), now);
    store.create(plain.clone()).await.expect("create");
    store.update(&plain.id, finish("{}"), now + 1).await.expect("update");
    assert!(store.deliveries(&plain.id).await.expect("deliveries").is_empty());
}

/// A claim takes a due delivery once (leased, attempts + 1); it comes back when the lease lapses
/// (the dispatcher died) or when a retry falls due; delivered and dead ones never come back.
pub async fn deliveries_are_claimed_once_retried_and_settled(store: &dyn TaskStore) {
    let now = 3_100_000_000;
    let task = subscribed(false, now);
    store.create(task.clone()).await.expect("create");
    store.update(&task.id, finish("{}"), now).await.expect("update");
    let id = store.deliveries(&task.id).await.expect("deliveries")[0].id.clone();
    let ours = |claimed: Vec<crate::outbox::Delivery>| claimed.into_iter().filter(|d| d.id == id).collect::<Vec<_>>();

    assert!(store.next_delivery_at().await.expect("next").is_some_and(|at| at <= now));
    let (a, b) = (store.claim_deliveries(now, "a", now + 100, 1000), store.claim_deliveries(now, "b", now + 100, 1000));
    let both = join_all(vec![a, b]).await;
    let claimed: Vec<_> = both.into_iter().flat_map(|r| ours(r.expect("claim"))).collect();
    assert_eq!(claimed.len(), 1, "two dispatchers claiming at once never both get a delivery");
    assert_eq!((claimed[0].attempts, claimed[0].lease_until_ms), (1, Some(now + 100)));
    assert!(ours(store.claim_deliveries(now + 50, "c", now + 150, 1000).await.expect("claim")).is_empty(), "held");
    // Only the holder renews its lease.
    let holder = claimed[0].lease_holder.clone().expect("a holder");
    let other = if holder == "a" { "b" } else { "a" };
    assert_eq!(store.renew_delivery_leases(other, std::slice::from_ref(&id), now + 90).await.expect("renew"), 0);
    assert_eq!(store.renew_delivery_leases(&holder, std::slice::from_ref(&id), now + 100).await.expect("renew"), 1);

    // The holder died: after the lease the delivery is claimed again, the attempt counted.
    let again = ours(store.claim_deliveries(now + 101, "c", now + 200, 1000).await.expect("claim"));
    assert_eq!(again.iter().map(|d| d.attempts).collect::<Vec<_>>(), [2]);

    let retry = Settlement::Retry { at_ms: now + 500, error: "HTTP 503".into() };
    assert!(store.settle_delivery(&id, retry, now + 102).await.expect("settle"));
    assert!(ours(store.claim_deliveries(now + 499, "c", now + 600, 1000).await.expect("claim")).is_empty());
    let third = ours(store.claim_deliveries(now + 500, "c", now + 600, 1000).await.expect("claim"));
    assert_eq!(
        third.iter().map(|d| (d.attempts, d.last_error.as_deref())).collect::<Vec<_>>(),
        [(3, Some("HTTP 503"))]
    );

    assert!(
        store.settle_delivery(&id, Settlement::Dead { error: "HTTP 503".into() }, now + 501).await.expect("settle")
    );
    assert!(ours(store.claim_deliveries(now + 10_000, "c", now + 20_000, 1000).await.expect("claim")).is_empty());
    let dead = &store.deliveries(&task.id).await.expect("deliveries")[0];
    assert_eq!((dead.state, dead.attempts, dead.lease_holder.as_deref()), (DeliveryState::Dead, 3, None));
    assert!(!store.settle_delivery("msg_unknown", Settlement::Delivered, now).await.expect("settle"));
}

/// Deliveries live as long as their task.
pub async fn deleting_a_task_drops_its_deliveries(store: &dyn TaskStore) {
    let now = 3_200_000_000;
    let task = subscribed(false, now);
    store.create(task.clone()).await.expect("create");
    store.update(&task.id, finish("{}"), now).await.expect("update");
    assert_eq!(store.deliveries(&task.id).await.expect("deliveries").len(), 1);
    store.delete(std::slice::from_ref(&task.id)).await.expect("delete");
    assert!(store.deliveries(&task.id).await.expect("deliveries").is_empty());
    let left = store.claim_deliveries(u64::MAX / 2, "x", u64::MAX / 2, 100_000).await.expect("claim");
    assert!(left.iter().all(|d| d.task_id != task.id.as_str()), "a deleted task's delivery was claimed");
}

fn keyed(owner: &Owner, created_at_ms: u64, tool: &str, key: &str) -> TaskRecord {
    let mut r = sample_record(owner, created_at_ms);
    r.tool = tool.into();
    r.idempotency_key = Some(key.into());
    r
}

/// The same owner, tool and key gives the live record back; any other combination, or an
/// expired twin, stores a new one.
pub async fn idempotency_keys_return_the_live_task(store: &dyn TaskStore) {
    let unique = TaskId::random();
    let alice = Owner::anonymous(format!("idem-{}", unique.as_str()));
    let now = 2_000_000_000;
    let first = keyed(&alice, now, "deploy", "k1");
    assert_eq!(store.create(first.clone()).await.expect("create"), Created::New);
    match store.create(keyed(&alice, now + 5, "deploy", "k1")).await.expect("create") {
        Created::Existing(existing) => assert_eq!(existing.id, first.id),
        Created::New => panic!("a second task was stored under the same idempotency key"),
    }
    let others = [
        keyed(&alice, now + 6, "deploy", "k2"),
        keyed(&alice, now + 7, "build", "k1"),
        keyed(&Owner::anonymous(format!("idem-other-{}", unique.as_str())), now + 8, "deploy", "k1"),
    ];
    for other in others {
        assert_eq!(store.create(other).await.expect("create"), Created::New, "a different owner, tool or key");
    }
    // An authenticated owner is the principal, whatever session it calls from.
    let principal = format!("idem-principal-{}", unique.as_str());
    let in_one_session = Owner { principal: Some(principal.clone()), scope: "s1".into() };
    let in_another = Owner { principal: Some(principal), scope: "s2".into() };
    let mine = keyed(&in_one_session, now, "deploy", "k1");
    store.create(mine.clone()).await.expect("create");
    match store.create(keyed(&in_another, now + 1, "deploy", "k1")).await.expect("create") {
        Created::Existing(existing) => assert_eq!(existing.id, mine.id),
        Created::New => panic!("the same principal in another session got a second task"),
    }
    // Past its TTL (60 s) the key is free again, even before the sweeper deleted the record.
    let later = keyed(&alice, now + 60_001, "deploy", "k1");
    assert_eq!(store.create(later.clone()).await.expect("create"), Created::New);
    match store.create(keyed(&alice, now + 60_002, "deploy", "k1")).await.expect("create") {
        Created::Existing(existing) => assert_eq!(existing.id, later.id),
        Created::New => panic!("the replacement is not found by its key"),
    }
}

/// Twenty creations racing with one key store exactly one record and all name it.
pub async fn concurrent_creations_with_one_key_store_one_record(store: &dyn TaskStore) {
    let owner = Owner::anonymous(format!("idem-race-{}", TaskId::random().as_str()));
    let attempts: Vec<TaskRecord> = (0..20).map(|i| keyed(&owner, 2_000_000_000 + i, "deploy", "race")).collect();
    let outcomes = join_all(attempts.iter().map(|r| store.create(r.clone())).collect()).await;
    let mut stored = Vec::new();
    let mut named = Vec::new();
    for (attempt, outcome) in attempts.iter().zip(outcomes) {
        match outcome.expect("create") {
            Created::New => stored.push(attempt.id.clone()),
            Created::Existing(existing) => named.push(existing.id),
        }
    }
    assert_eq!(stored.len(), 1, "exactly one of 20 racing creations stores a record");
    assert!(named.iter().all(|id| *id == stored[0]), "every other creation names the stored record");
}

/// Polls every future to completion, concurrently (the engine does not depend on `futures`).
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(v) => *output = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending { Poll::Pending } else { Poll::Ready(()) }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// Only unfinished records with a lapsed lease are claimed, by one claimant, with the attempt
/// counted; renewing keeps a live holder's records out of reach.
pub async fn orphans_are_claimed_once(store: &dyn TaskStore) {
    let owner = Owner::anonymous(format!("orphans-{}", TaskId::random().as_str()));
    // Far in the future, so that records of other checks (leases near 1,000–20,000) stay out.
    let base = 1_000_000_000;
    let mut lapsed = sample_record(&owner, base);
    lapsed.lease_until_ms = Some(base + 10);
    let mut renewed = sample_record(&owner, base);
    renewed.lease_until_ms = Some(base + 10);
    let mut done = sample_record(&owner, base);
    done.lease_until_ms = Some(base + 10);
    for r in [&lapsed, &renewed, &done] {
        store.create(r.clone()).await.expect("create");
    }
    store.update(&done.id, Update::status(TaskStatus::Completed), base + 1).await.expect("end").expect("exists");
    assert_eq!(
        store.renew_leases("creator", std::slice::from_ref(&renewed.id), base + 60_000).await.expect("renew"),
        1
    );
    assert_eq!(
        store.renew_leases("someone-else", std::slice::from_ref(&lapsed.id), base + 60_000).await.expect("renew"),
        0
    );
    let claimed = store.claim_orphans(base + 100, "heir", base + 30_000, 100_000).await.expect("claim");
    let mine: Vec<_> = claimed.iter().filter(|r| r.owner == owner).collect();
    assert_eq!(mine.len(), 1, "only the lapsed, unfinished record: {mine:?}");
    assert_eq!(mine[0].id, lapsed.id);
    assert_eq!((mine[0].attempt, mine[0].lease_holder.as_deref()), (2, Some("heir")));
    assert_eq!(mine[0].arguments.as_deref(), Some(r#"{"a":1}"#), "the arguments come back for the re-run");
    let again = store.claim_orphans(base + 200, "other-heir", base + 30_000, 100_000).await.expect("claim");
    assert!(!again.iter().any(|r| r.id == lapsed.id), "a claimed record is not claimed twice");
}

/// A created record reads back equal; an unknown id reads as absent.
pub async fn create_then_get_returns_the_same_record(store: &dyn TaskStore) {
    let r = sample_record(&Owner::anonymous("s"), 1_000);
    store.create(r.clone()).await.expect("create");
    assert_eq!(store.get(&r.id).await.expect("get"), Some(r));
    assert_eq!(store.get(&TaskId::random()).await.expect("get unknown"), None);
}

/// Result JSON comes back exactly as stored (spacing, escapes, number spelling).
pub async fn results_are_stored_byte_for_byte(store: &dyn TaskStore) {
    let r = sample_record(&Owner::anonymous("s"), 2_000);
    store.create(r.clone()).await.expect("create");
    let raw = r#"{"content":[{"type":"text","text":"caf\u00e9 \ud83d\ude00"}], "n": 1.50e3}"#;
    let update = Update { status: Some(TaskStatus::Completed), result: Some(raw.into()), ..Update::default() };
    store.update(&r.id, update, 2_001).await.expect("update").expect("exists");
    assert_eq!(store.get(&r.id).await.expect("get").expect("exists").result.as_deref(), Some(raw));
}

/// Creating an id twice fails.
pub async fn duplicate_ids_are_refused(store: &dyn TaskStore) {
    let r = sample_record(&Owner::anonymous("s"), 3_000);
    store.create(r.clone()).await.expect("create");
    assert_eq!(store.create(r).await, Err(StoreError::Duplicate));
}

/// Once terminal, no update applies.
pub async fn terminal_records_never_change(store: &dyn TaskStore) {
    for end in [TaskStatus::Completed, TaskStatus::Failed, TaskStatus::Cancelled] {
        let r = sample_record(&Owner::anonymous("s"), 4_000);
        store.create(r.clone()).await.expect("create");
        store.update(&r.id, Update::status(end), 4_001).await.expect("end").expect("exists");
        for next in [TaskStatus::Working, TaskStatus::Completed, TaskStatus::Cancelled] {
            assert!(store.update(&r.id, Update::status(next), 4_002).await.is_err(), "{end:?} -> {next:?}");
        }
        let msg = Update { status_message: Some(Some("late".into())), ..Update::default() };
        assert!(store.update(&r.id, msg, 4_003).await.is_err());
        assert_eq!(store.get(&r.id).await.expect("get").expect("exists").status, end);
    }
}

/// A status may not "become" itself, and updates of unknown ids report absence.
pub async fn illegal_transitions_are_refused(store: &dyn TaskStore) {
    let r = sample_record(&Owner::anonymous("s"), 5_000);
    store.create(r.clone()).await.expect("create");
    assert!(store.update(&r.id, Update::status(TaskStatus::Working), 5_001).await.is_err());
    let ir = store.update(&r.id, Update::status(TaskStatus::InputRequired), 5_002).await.expect("ok").expect("exists");
    assert_eq!(ir.status, TaskStatus::InputRequired);
    assert_eq!(ir.updated_at_ms, 5_002);
    assert_eq!(store.update(&TaskId::random(), Update::status(TaskStatus::Completed), 5_003).await, Ok(None));
}

/// Listings show the caller's tasks only, oldest first (ties by id), in pages that join up
/// exactly. An authenticated caller lists its principal's tasks whatever session created them;
/// an anonymous one lists its scope's, and never an authenticated caller's of the same scope.
pub async fn listings_are_scoped_and_paginated(store: &dyn TaskStore) {
    let unique = TaskId::random();
    let scope = format!("x-{}", unique.as_str());
    let alice = Owner { principal: Some(format!("alice-{}", unique.as_str())), scope: scope.clone() };
    let alice_elsewhere = Owner { principal: alice.principal.clone(), scope: format!("y-{}", unique.as_str()) };
    let bob = Owner { principal: Some(format!("bob-{}", unique.as_str())), scope: scope.clone() };
    let anonymous = Owner::anonymous(scope.clone());
    let mut expected: std::collections::HashMap<&str, Vec<(u64, TaskId)>> = Default::default();
    for i in 0..7 {
        // Two of each caller's tasks share a creation time, so pages must break ties by id.
        let at = 10_000 + i / 2;
        for (name, owner) in [("alice", &alice), ("alice", &alice_elsewhere), ("bob", &bob), ("anonymous", &anonymous)]
        {
            let r = sample_record(owner, at);
            store.create(r.clone()).await.expect("create");
            expected.entry(name).or_default().push((at, r.id));
        }
    }
    for (name, caller) in [("alice", &alice_elsewhere), ("bob", &bob), ("anonymous", &anonymous)] {
        let mut mine = expected.remove(name).expect("created above");
        mine.sort();
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = store.list(caller, cursor.as_deref(), 3).await.expect("list");
            assert!(page.tasks.len() <= 3);
            assert!(page.tasks.iter().all(|t| t.owner.lists_for(caller)), "another caller's task listed to {name}");
            seen.extend(page.tasks.into_iter().map(|t| (t.created_at_ms, t.id)));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen, mine, "{name}'s listing");
    }
    let stranger = Owner::anonymous(format!("z-{}", unique.as_str()));
    assert!(store.list(&stranger, None, 10).await.expect("list").tasks.is_empty());
}

/// Records past their TTL are reported and can be deleted.
pub async fn expired_records_are_found_and_deleted(store: &dyn TaskStore) {
    let owner = Owner::anonymous(format!("ttl-{}", TaskId::random().as_str()));
    let mut old = sample_record(&owner, 1);
    old.ttl_ms = Some(10);
    let mut forever = sample_record(&owner, 1);
    forever.ttl_ms = None;
    store.create(old.clone()).await.expect("create");
    store.create(forever.clone()).await.expect("create");
    let expired = store.expired(1_000, 10_000).await.expect("expired");
    assert!(expired.iter().any(|r| r.id == old.id));
    assert!(!expired.iter().any(|r| r.id == forever.id), "a task without TTL never expires");
    assert_eq!(store.delete(std::slice::from_ref(&old.id)).await.expect("delete"), 1);
    assert_eq!(store.get(&old.id).await.expect("get"), None);
    assert!(store.get(&forever.id).await.expect("get").is_some());
}
