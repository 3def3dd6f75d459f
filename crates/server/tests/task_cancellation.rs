//! Cancelling a task: cooperative first (the handler's token fires), then the work is aborted
//! once the grace period ends, and its cleanup (drop) runs.

use std::sync::Arc;
use std::time::Duration;

use taskwire_engine::{Engine, EngineConfig, MemoryStore, Owner, TaskId, TaskStatus};
use taskwire_protocol::jsonrpc::Message;
use taskwire_protocol::meta::ServerParams;
use taskwire_server::model::ToolOutput;
use taskwire_server::{RequestEnv, Server, Session, TaskSupport, Tool};
use tokio::sync::mpsc;

struct SignalOnDrop(mpsc::UnboundedSender<&'static str>);
impl Drop for SignalOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send("dropped");
    }
}

#[tokio::test]
async fn a_handler_that_ignores_cancellation_is_aborted_after_the_grace_period() {
    let config = EngineConfig { cancel_grace: Duration::from_millis(100), ..EngineConfig::default() };
    let engine = Engine::new(Arc::new(MemoryStore::new()), config);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let server = Server::builder("t", "1")
        .tasks(engine.clone())
        .tool(Tool::new("stubborn", "Ignores cancellation.").task(TaskSupport::Optional).handler(move |ctx, _| {
            let guard = SignalOnDrop(tx.clone());
            let saw = tx.clone();
            async move {
                let _guard = guard;
                let token = ctx.cancellation_token().clone();
                tokio::spawn(async move {
                    token.cancelled().await;
                    let _ = saw.send("token fired");
                });
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(ToolOutput::text("never"))
            }
        }))
        .build();
    let session = Arc::new(Session::new(Some("s1".into())));
    session.set_negotiated(taskwire_protocol::ProtocolVersion::V2025_11_25, serde_json::json!({}));
    let Message::Request(req) = Message::<ServerParams>::read(
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"stubborn","task":{}}}"#,
    )
    .unwrap() else {
        unreachable!()
    };
    let prepared = server.prepare(req, None).unwrap();
    let env = RequestEnv { session, sink: None, cancel: Default::default(), principal: None };
    let reply = server.run(prepared, env).await;
    let body: serde_json::Value = serde_json::from_slice(&reply.to_bytes().unwrap()).unwrap();
    let id = TaskId::from_wire(body["result"]["task"]["taskId"].as_str().unwrap());
    let owner = Owner::anonymous("s1");
    let cancelled = engine.cancel(&owner, &id).await.unwrap();
    assert_eq!(cancelled.status, TaskStatus::Cancelled, "cancelled in the record before the answer");
    let limit = Duration::from_secs(10);
    assert_eq!(tokio::time::timeout(limit, rx.recv()).await.unwrap(), Some("token fired"), "cooperative first");
    assert_eq!(tokio::time::timeout(limit, rx.recv()).await.unwrap(), Some("dropped"), "then aborted, cleanup ran");
    assert_eq!(engine.get(&owner, &id).await.unwrap().status, TaskStatus::Cancelled);
}

/// A blocking handler runs as a task off the reactor, reports progress into the status message,
/// and sees cancellation as a flag it checks between steps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_handler_runs_as_a_task_and_sees_the_cancellation_flag() {
    let engine = Engine::new(Arc::new(MemoryStore::new()), EngineConfig::default());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let server = Server::builder("t", "1")
        .tasks(engine.clone())
        .tool(Tool::new("crunch", "CPU work in steps.").task(TaskSupport::Optional).blocking(move |ctx, args| {
            let steps = args.get("steps").and_then(|s| s.as_u64()).unwrap_or(1);
            for step in 0..steps {
                if ctx.is_cancelled() {
                    let _ = tx.send(step);
                    return Err(taskwire_server::ToolError::Cancelled);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(ToolOutput::text(format!("crunched {steps} steps")))
        }))
        .build();
    let call = |steps: u64| {
        let server = server.clone();
        async move {
            let session = Arc::new(Session::new(Some("s1".into())));
            session.set_negotiated(taskwire_protocol::ProtocolVersion::V2025_11_25, serde_json::json!({}));
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"crunch","arguments":{{"steps":{steps}}},"task":{{}}}}}}"#
            );
            let Message::Request(req) = Message::<ServerParams>::read(body.as_bytes()).unwrap() else { unreachable!() };
            let env = RequestEnv { session, sink: None, cancel: Default::default(), principal: None };
            let reply = server.run(server.prepare(req, None).unwrap(), env).await;
            let v: serde_json::Value = serde_json::from_slice(&reply.to_bytes().unwrap()).unwrap();
            TaskId::from_wire(v["result"]["task"]["taskId"].as_str().unwrap())
        }
    };
    let owner = Owner::anonymous("s1");
    let quick = call(3).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while engine.get(&owner, &quick).await.unwrap().status != TaskStatus::Completed {
        assert!(tokio::time::Instant::now() < deadline, "the blocking task did not complete");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(engine.get(&owner, &quick).await.unwrap().result.unwrap().contains("crunched 3 steps"));
    let long = call(10_000).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    engine.cancel(&owner, &long).await.unwrap();
    let stopped_at = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
    assert!(stopped_at < 10_000, "the handler saw the flag and stopped early");
    assert_eq!(engine.get(&owner, &long).await.unwrap().status, TaskStatus::Cancelled);
}
