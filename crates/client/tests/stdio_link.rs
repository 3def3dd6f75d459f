//! The stdio link against a real child process: `cat`, which sends back every line it reads, so
//! what the client wrote arrives again as messages from the "server", in the order written.

use std::time::Duration;

use serde_json::json;
use taskwire_client::{Client, Incoming, StdioCommand};

/// A child that reads nothing for a while (its input pipe fills, and the client must queue
/// behind it and then wait), then echoes everything.
fn slow_echo() -> StdioCommand {
    StdioCommand::new("sh", ["-c", "sleep 0.3; exec cat"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_from_many_tasks_reach_the_child_whole_and_each_task_in_order() {
    let (client, mut incoming) = Client::spawn(slow_echo()).expect("sh and cat are on every Unix");
    // ~3 MiB in all: more than the pipe holds and more than the client queues before senders
    // wait, so the direct write, the queue and the wait for room are all used.
    let (tasks, each) = (8, 400);
    let pad = "x".repeat(1000);
    let mut senders = Vec::new();
    for task in 0..tasks {
        let (client, pad) = (client.clone(), pad.clone());
        senders.push(tokio::spawn(async move {
            for n in 0..each {
                let params = json!({"task": task, "n": n, "pad": pad});
                client.notify("test/line", Some(&params)).await.expect("the child is alive");
            }
        }));
    }
    let mut next = vec![0u64; tasks];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for _ in 0..tasks * each {
        let message = tokio::time::timeout_at(deadline, incoming.recv())
            .await
            .expect("every line comes back within a minute")
            .expect("the child stays up");
        let Incoming::Notification { method, params } = message else { panic!("expected the echoed notification") };
        assert_eq!(method, "test/line");
        let params: serde_json::Value = serde_json::from_str(params.expect("params").get()).expect("whole JSON");
        let task = params["task"].as_u64().expect("task") as usize;
        assert_eq!(params["n"], next[task], "task {task}'s lines came out of order");
        assert_eq!(params["pad"].as_str().map(str::len), Some(1000), "a line was cut");
        next[task] += 1;
    }
    for sender in senders {
        sender.await.expect("no sender panicked");
    }
}

#[tokio::test]
async fn sending_to_a_child_that_exited_fails_with_closed() {
    let (client, _incoming) = Client::spawn(StdioCommand::new("true", Vec::<String>::new())).expect("true exists");
    client.closed().await;
    let mut last = Ok(());
    // The first writes may still land in the pipe's buffer before the kernel reports it broken.
    for _ in 0..100 {
        last = client.notify("test/late", None).await;
        if last.is_err() {
            break;
        }
    }
    assert!(last.is_err(), "writing to an exited child kept succeeding");
}
