//! The in-memory store against the store contract, and the state machine under random updates.

use proptest::prelude::*;
use taskwire_engine::{MemoryStore, Owner, TaskId, TaskRecord, TaskStatus, TaskStore, Update};

#[tokio::test]
async fn memory_store_honours_the_contract() {
    taskwire_engine::contract::run_all(&MemoryStore::new()).await;
}

fn status() -> impl Strategy<Value = TaskStatus> {
    prop_oneof![
        Just(TaskStatus::Working),
        Just(TaskStatus::InputRequired),
        Just(TaskStatus::Completed),
        Just(TaskStatus::Failed),
        Just(TaskStatus::Cancelled),
    ]
}

proptest! {
    /// Whatever sequence of status changes is attempted, the store only ever takes legal steps,
    /// and the first terminal status it reaches is the one it keeps.
    #[test]
    fn only_legal_transitions_happen_and_the_first_end_is_final(steps in prop::collection::vec(status(), 1..24)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let store = MemoryStore::new();
            let id = TaskId::random();
            let record = TaskRecord {
                id: id.clone(), owner: Owner::anonymous("p"), tool: "t".into(), status: TaskStatus::Working,
                status_message: None, created_at_ms: 1, updated_at_ms: 1, ttl_ms: None, poll_interval_ms: 1,
                result: None, error: None, input_requests: None, attempt: 1, cancel_requested: false,
                arguments: None, wire: taskwire_engine::TaskWire::Extension, lease_holder: None, lease_until_ms: None, idempotency_key: None, callback: None,
            };
            store.create(record).await.unwrap();
            let mut model = TaskStatus::Working;
            for (i, next) in steps.into_iter().enumerate() {
                let outcome = store.update(&id, Update::status(next), 2 + i as u64).await;
                if model.can_become(next) {
                    prop_assert_eq!(outcome.unwrap().unwrap().status, next);
                    model = next;
                } else {
                    prop_assert!(outcome.is_err());
                }
                prop_assert_eq!(store.get(&id).await.unwrap().unwrap().status, model);
            }
            Ok(())
        })?;
    }
}

/// Cancel racing completion: exactly one wins, and the loser changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_racing_completion_has_one_winner() {
    use std::sync::Arc;
    use taskwire_engine::{Engine, EngineConfig, EngineError};
    for _ in 0..200 {
        let engine = Engine::new(Arc::new(MemoryStore::new()), EngineConfig::default());
        let owner = Owner::anonymous("race");
        let task = engine.create(&owner, "t", None).await.unwrap();
        let id = task.id().clone();
        let completer = tokio::spawn(async move { task.complete(r#"{"content":[]}"#.into()).await });
        let canceller = {
            let engine = engine.clone();
            let owner = owner.clone();
            let id = id.clone();
            tokio::spawn(async move { engine.cancel(&owner, &id).await })
        };
        completer.await.unwrap();
        let cancel = canceller.await.unwrap();
        let end = engine.get(&owner, &id).await.unwrap();
        match cancel {
            Ok(r) => {
                assert_eq!(r.status, TaskStatus::Cancelled);
                assert_eq!(end.status, TaskStatus::Cancelled);
                assert_eq!(end.result, None, "a cancelled task keeps no late result");
            }
            Err(EngineError::AlreadyTerminal(s)) => {
                assert_eq!(s, TaskStatus::Completed);
                assert_eq!(end.status, TaskStatus::Completed);
            }
            Err(e) => panic!("{e}"),
        }
    }
}
