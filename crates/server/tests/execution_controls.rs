//! Execution controls, driven through `Server::prepare` + `Server::run` with tools the tests own,
//! so that what is asserted (how many ran at once, when each attempt started, what a cleanup
//! hook saw) is observed by the test, never reported by the code under test.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use taskwire_engine::{Engine, EngineConfig, MemoryStore, Owner, TaskId, TaskStatus, TaskStore};
use taskwire_protocol::jsonrpc::Message;
use taskwire_protocol::meta::ServerParams;
use taskwire_server::model::ToolOutput;
use taskwire_server::{RequestEnv, RetryPolicy, Server, Session, TaskSupport, Tool, ToolError, ToolLimits};

const LIMIT: Duration = Duration::from_secs(20);

fn engine() -> (Engine, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let config = EngineConfig { cancel_grace: Duration::from_millis(200), ..EngineConfig::default() };
    (Engine::new(store.clone(), config), store)
}

/// A 2025-11-25 session of one owner.
fn session(scope: &str) -> Arc<Session> {
    let s = Arc::new(Session::new(Some(scope.into())));
    s.set_negotiated(taskwire_protocol::ProtocolVersion::V2025_11_25, json!({}));
    s
}

async fn send(server: &Server, session: &Arc<Session>, body: Value) -> Value {
    let text = body.to_string();
    let Message::Request(req) = Message::<ServerParams>::read(text.as_bytes()).expect("valid JSON-RPC") else {
        panic!("not a request: {text}")
    };
    let prepared = server.prepare(req, None).unwrap_or_else(|_| panic!("rejected: {text}"));
    let env = RequestEnv { session: session.clone(), sink: None, cancel: Default::default(), principal: None };
    let reply = tokio::time::timeout(LIMIT, server.run(prepared, env)).await.expect("answered in time");
    serde_json::from_slice(&reply.to_bytes().expect("an answer")).expect("JSON")
}

/// A 2026-07-28 call that declared the tasks extension (the server decides about tasks).
fn modern_call(tool: &str, args: Value) -> Value {
    json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":tool,"arguments":args,"_meta":{
        "io.modelcontextprotocol/protocolVersion":"2026-07-28",
        "io.modelcontextprotocol/clientCapabilities":{"extensions":{"io.modelcontextprotocol/tasks":{}}}
    }}})
}

fn task_call(tool: &str, args: Value) -> Value {
    json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":tool,"arguments":args,"task":{}}})
}

fn inline_call(tool: &str, args: Value) -> Value {
    json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":tool,"arguments":args}})
}

fn task_id(answer: &Value) -> TaskId {
    let id = answer["result"]["task"]["taskId"].as_str().or(answer["result"]["taskId"].as_str());
    TaskId::from_wire(id.unwrap_or_else(|| panic!("no task id in {answer}")))
}

async fn wait_until_ended(engine: &Engine, owner: &Owner, id: &TaskId) -> taskwire_engine::TaskRecord {
    let deadline = Instant::now() + LIMIT;
    loop {
        let record = engine.get(owner, id).await.expect("the task exists");
        if record.status.is_terminal() {
            return record;
        }
        assert!(Instant::now() < deadline, "task still {:?}", record.status);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Counts how many of its calls run at once, from inside the handler.
#[derive(Clone, Default)]
struct Gauge {
    now: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
}

impl Gauge {
    fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
    }
    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts the drops of its values: a child future dropped is a child stopped.
struct CountOnDrop(Arc<AtomicUsize>);

impl Drop for CountOnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_with_the_documented_error_and_stores_nothing() {
    let (engine, store) = engine();
    let release = Arc::new(tokio::sync::Notify::new());
    let held = release.clone();
    let server = Server::builder("t", "1")
        .tasks(engine.clone())
        .tool(
            Tool::new("one_at_a_time", "Holds its slot until released.")
                .task(TaskSupport::Optional)
                .limits(ToolLimits::default().max_running(1).max_queued(2))
                .handler(move |_, _| {
                    let held = held.clone();
                    async move {
                        held.notified().await;
                        Ok(ToolOutput::text("released"))
                    }
                }),
        )
        .build();
    let s = session("owner-a");
    let owner = Owner::anonymous("owner-a");
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(task_id(&send(&server, &s, task_call("one_at_a_time", json!({}))).await));
    }
    // The third waits second in line, and tasks/get says so.
    let queued = engine.get(&owner, &ids[2]).await.unwrap();
    assert_eq!(
        queued.status_message.as_deref(),
        Some("queued: position 2 of 2 waiting for tool one_at_a_time (1 running)"),
        "{queued:?}"
    );
    let refused = send(&server, &s, task_call("one_at_a_time", json!({}))).await;
    assert_eq!(refused["result"]["isError"], true, "a tool error, not a task: {refused}");
    let text = refused["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("is busy") && text.contains("2 waiting calls"), "{text}");
    let page = store.list(&owner, None, 100).await.unwrap();
    assert_eq!(page.tasks.len(), 3, "the refused call left no record");
    // Everything queued runs once slots free up.
    for id in &ids {
        release.notify_one();
        let ended = wait_until_ended(&engine, &owner, id).await;
        assert_eq!(ended.status, TaskStatus::Completed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_never_exceeds_the_tool_and_global_limits() {
    let (engine, _) = engine();
    let (a, b) = (Gauge::default(), Gauge::default());
    let total = Gauge::default();
    let tool = |name: &str, gauge: Gauge, total: Gauge| {
        Tool::new(name, "Counts itself.")
            .task(TaskSupport::Optional)
            .limits(ToolLimits::default().max_running(2))
            .handler(move |_, _| {
                let (gauge, total) = (gauge.clone(), total.clone());
                async move {
                    gauge.enter();
                    total.enter();
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    total.leave();
                    gauge.leave();
                    Ok(ToolOutput::text("done"))
                }
            })
    };
    let server = Server::builder("t", "1")
        .tasks(engine.clone())
        .max_running(3)
        .tool(tool("a", a.clone(), total.clone()))
        .tool(tool("b", b.clone(), total.clone()))
        .build();
    let mut clients = Vec::new();
    for c in 0..20 {
        let (server, engine) = (server.clone(), engine.clone());
        clients.push(tokio::spawn(async move {
            let s = session(&format!("client-{c}"));
            let owner = Owner::anonymous(format!("client-{c}"));
            let mut ids = Vec::new();
            for i in 0..10 {
                let name = if (c + i) % 2 == 0 { "a" } else { "b" };
                ids.push(task_id(&send(&server, &s, task_call(name, json!({}))).await));
            }
            for id in ids {
                assert_eq!(wait_until_ended(&engine, &owner, &id).await.status, TaskStatus::Completed);
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    assert!(a.max.load(Ordering::SeqCst) <= 2 && b.max.load(Ordering::SeqCst) <= 2, "a tool ran more than 2 at once");
    let most = total.max.load(Ordering::SeqCst);
    assert!(most <= 3, "{most} ran at once past the global limit of 3");
    assert!(most > 1, "nothing ran concurrently, so the limit was never tested");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_fails_the_task_on_time_keeps_partial_output_and_stops_the_work() {
    let (engine, _) = engine();
    let hook_ran = Arc::new(AtomicUsize::new(0));
    let child_stopped = Arc::new(AtomicUsize::new(0));
    let (hook, child) = (hook_ran.clone(), child_stopped.clone());
    let server = Server::builder("t", "1")
        .tasks(engine.clone())
        .tool(
            Tool::new("hangs", "Reports partial output, then hangs.")
                .task(TaskSupport::Optional)
                .timeout(Duration::from_millis(300))
                .handler(move |ctx, _| {
                    let (hook, child) = (hook.clone(), child.clone());
                    async move {
                        ctx.set_partial_output(ToolOutput::text("step 1 of 3 done"));
                        ctx.on_cancel(move || {
                            hook.fetch_add(1, Ordering::SeqCst);
                        });
                        let stopped = CountOnDrop(child);
                        ctx.spawn_child(async move {
                            let _stopped = stopped;
                            std::future::pending::<()>().await;
                        });
                        std::future::pending::<()>().await;
                        Ok(ToolOutput::text("never"))
                    }
                }),
        )
        .build();
    // 2026-07-28: failed with a timeout error carrying the partial output.
    let s = Arc::new(Session::new(None));
    let started = Instant::now();
    let answer = send(&server, &s, modern_call("hangs", json!({}))).await;
    let id = task_id(&answer);
    let owner = Owner::anonymous(s.scope());
    let record = wait_until_ended(&engine, &owner, &id).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed <= Duration::from_millis(350),
        "timed out after {elapsed:?}, not 300 ms ± 50 ms"
    );
    assert_eq!(record.status, TaskStatus::Failed);
    let error: Value = serde_json::from_str(record.error.as_deref().unwrap()).unwrap();
    assert_eq!(error["data"]["reason"], "timeout");
    assert_eq!(error["data"]["partialOutput"]["content"][0]["text"], "step 1 of 3 done");
    assert!(error["message"].as_str().unwrap().contains("timeout of 300 ms"), "{error}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(hook_ran.load(Ordering::SeqCst), 1, "the cleanup hook ran once");
    assert_eq!(child_stopped.load(Ordering::SeqCst), 1, "the child was stopped");

    // 2025-11-25: failed too, and tasks/result gives the error result with the partial output.
    let s = session("legacy");
    let id = task_id(&send(&server, &s, task_call("hangs", json!({}))).await);
    let record = wait_until_ended(&engine, &Owner::anonymous("legacy"), &id).await;
    assert_eq!(record.status, TaskStatus::Failed);
    let result: Value = serde_json::from_str(record.result.as_deref().unwrap()).unwrap();
    assert_eq!(result["isError"], true);
    assert_eq!(result["content"][1]["text"], "step 1 of 3 done", "{result}");

    // Inline: a tool error with the partial output.
    let inline = send(&server, &s, inline_call("hangs", json!({}))).await;
    assert_eq!(inline["result"]["isError"], true, "{inline}");
    assert_eq!(inline["result"]["content"][1]["text"], "step 1 of 3 done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_within_the_backoff_bounds_and_counted() {
    let (engine, _) = engine();
    let starts: Arc<Mutex<Vec<(u32, Instant)>>> = Arc::default();
    let seen = starts.clone();
    let policy = RetryPolicy { max_attempts: 4, base: Duration::from_millis(40), cap: Duration::from_millis(100) };
    let server = Server::builder("t", "1")
        .tasks(engine.clone())
        .tool(
            Tool::new("flaky", "Fails transiently until told otherwise.")
                .task(TaskSupport::Optional)
                .retry(policy)
                .handler(move |ctx, args| {
                    let seen = seen.clone();
                    async move {
                        seen.lock().unwrap().push((ctx.attempt(), Instant::now()));
                        let fail_times = args.get("fail_times").and_then(Value::as_u64).unwrap_or(0);
                        if u64::from(ctx.attempt()) <= fail_times {
                            return Err(ToolError::transient("the peer is busy"));
                        }
                        Ok(ToolOutput::text(format!("attempt {}", ctx.attempt())))
                    }
                }),
        )
        .build();
    let s = session("retry");
    let owner = Owner::anonymous("retry");
    let id = task_id(&send(&server, &s, task_call("flaky", json!({"fail_times": 3}))).await);
    let record = wait_until_ended(&engine, &owner, &id).await;
    assert_eq!(record.status, TaskStatus::Completed);
    assert_eq!(record.attempt, 4, "the record counts the attempts");
    let status = record.status_message.clone().unwrap_or_default();
    assert!(
        status.starts_with("attempt 3 of 4 failed transiently (the peer is busy); attempt 4 starts in"),
        "{status}"
    );
    assert!(record.result.unwrap().contains("attempt 4"));
    let first_run = std::mem::take(&mut *starts.lock().unwrap());
    assert_eq!(first_run.iter().map(|(a, _)| *a).collect::<Vec<_>>(), [1, 2, 3, 4], "four attempts in order");
    for (n, pair) in first_run.windows(2).enumerate() {
        let gap = pair[1].1 - pair[0].1;
        // Full jitter: anything from zero to the ceiling, plus scheduling slack.
        let ceiling = policy.ceiling(n as u32 + 1);
        assert!(gap <= ceiling + Duration::from_millis(30), "gap {gap:?} after attempt {} above {ceiling:?}", n + 1);
    }

    // Out of attempts: a tool error that says so; never more than max_attempts starts.
    let id = task_id(&send(&server, &s, task_call("flaky", json!({"fail_times": 10}))).await);
    let record = wait_until_ended(&engine, &owner, &id).await;
    assert_eq!(record.status, TaskStatus::Failed, "2025-11-25: a tool error fails the task");
    assert!(record.result.unwrap().contains("gave up after 4 attempts"));
    assert_eq!(starts.lock().unwrap().len(), 4, "exactly max_attempts starts");

    // Inline calls are retried the same way.
    let inline = send(&server, &s, inline_call("flaky", json!({"fail_times": 1}))).await;
    assert_eq!(inline["result"]["content"][0]["text"], "attempt 2", "{inline}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_calls_with_one_idempotency_key_create_one_task() {
    let (engine, store) = engine();
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let server = Server::builder("t", "1")
        .tasks(engine.clone())
        .tool(Tool::new("deploy", "Deploys once.").task(TaskSupport::Optional).handler(move |_, _| {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(ToolOutput::text("deployed"))
            }
        }))
        .build();
    let s = session("deployer");
    let keyed = |key: &str| {
        json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"deploy","arguments":{},"task":{},
            "_meta":{"dev.taskwire/idempotencyKey": key}}})
    };
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let (server, s, body) = (server.clone(), s.clone(), keyed("release-42"));
            tokio::spawn(async move { task_id(&send(&server, &s, body).await) })
        })
        .collect();
    let mut ids = Vec::new();
    for c in calls {
        ids.push(c.await.unwrap());
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "all 20 callers got the same task id");
    let owner = Owner::anonymous("deployer");
    assert_eq!(store.list(&owner, None, 100).await.unwrap().tasks.len(), 1, "exactly one task was stored");
    wait_until_ended(&engine, &owner, &ids[0]).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the work ran once");
    // Another key, or another owner with the same key, is another task.
    let other_key = task_id(&send(&server, &s, keyed("release-43")).await);
    let other_owner = task_id(&send(&server, &session("someone-else"), keyed("release-42")).await);
    assert!(other_key != ids[0] && other_owner != ids[0]);
    // A key that is not a short string is the caller's mistake.
    let bad = send(
        &server,
        &s,
        json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"deploy",
        "task":{},"_meta":{"dev.taskwire/idempotencyKey": 7}}}),
    )
    .await;
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_deadline_answers_fast_calls_inline_and_promotes_slow_ones() {
    let (engine, _) = engine();
    // `held` ends only when the test releases it, so "answered at the deadline, not at the end"
    // is shown by order rather than by a time bound a loaded machine could miss.
    let release = Arc::new(tokio::sync::Notify::new());
    let gate = release.clone();
    let server = Server::builder("t", "1")
        .tasks(engine.clone())
        .tool(Tool::new("report", "Takes ms milliseconds.").inline_deadline(Duration::from_millis(100)).handler(
            |_, args| async move {
                let ms = args.get("ms").and_then(Value::as_u64).unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(ToolOutput::text(format!("took {ms} ms")))
            },
        ))
        .tool(Tool::new("held", "Ends when released.").inline_deadline(Duration::from_millis(100)).handler(
            move |_, _| {
                let gate = gate.clone();
                async move {
                    gate.notified().await;
                    Ok(ToolOutput::text("released"))
                }
            },
        ))
        .build();
    // 2026-07-28: the server decides.
    let s = Arc::new(Session::new(None));
    let fast = send(&server, &s, modern_call("report", json!({"ms": 5}))).await;
    assert_eq!(fast["result"]["resultType"], "complete", "{fast}");
    assert_eq!(fast["result"]["content"][0]["text"], "took 5 ms");
    // `send` bounds the wait (LIMIT): a server that held the answer until the work ended fails.
    let slow = send(&server, &s, modern_call("held", json!({}))).await;
    assert_eq!(slow["result"]["resultType"], "task", "{slow}");
    let owner = Owner::anonymous(s.scope());
    let running = engine.get(&owner, &task_id(&slow)).await.expect("the task exists");
    assert!(!running.status.is_terminal(), "answered before the work ended: {:?}", running.status);
    release.notify_one();
    let record = wait_until_ended(&engine, &owner, &task_id(&slow)).await;
    assert!(record.result.unwrap().contains("released"), "the work went on as the task");
    // 2025-11-25 without params.task: inline however long it takes.
    let legacy = session("legacy");
    let inline = send(&server, &legacy, inline_call("report", json!({"ms": 200}))).await;
    assert_eq!(inline["result"]["content"][0]["text"], "took 200 ms", "{inline}");
    // With params.task: fast stays inline, slow becomes a task.
    let fast = send(&server, &legacy, task_call("report", json!({"ms": 5}))).await;
    assert_eq!(fast["result"]["content"][0]["text"], "took 5 ms", "{fast}");
    let slow = send(&server, &legacy, task_call("report", json!({"ms": 300}))).await;
    assert_eq!(slow["result"]["task"]["status"], "working", "{slow}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_task_stops_its_children_runs_its_hooks_and_raises_the_blocking_flag() {
    let (engine, _) = engine();
    let (child_stopped, hook_ran, blocking_saw) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (child, hook, saw) = (child_stopped.clone(), hook_ran.clone(), blocking_saw.clone());
    let server = Server::builder("t", "1")
        .tasks(engine.clone())
        .tool(Tool::new("fan_out", "Starts children.").task(TaskSupport::Optional).handler(move |ctx, _| {
            let (child, hook) = (child.clone(), hook.clone());
            async move {
                ctx.on_cancel(move || {
                    hook.fetch_add(1, Ordering::SeqCst);
                });
                let mut children = Vec::new();
                for _ in 0..3 {
                    let stopped = CountOnDrop(child.clone());
                    children.push(ctx.spawn_child(async move {
                        let _stopped = stopped;
                        std::future::pending::<()>().await;
                    }));
                }
                for c in children {
                    let _ = c.await;
                }
                Ok(ToolOutput::text("children done"))
            }
        }))
        .tool(Tool::new("grind", "Blocking steps.").task(TaskSupport::Optional).blocking(move |ctx, _| {
            while !ctx.is_cancelled() {
                std::thread::sleep(Duration::from_millis(5));
            }
            saw.fetch_add(1, Ordering::SeqCst);
            Err(ToolError::Cancelled)
        }))
        .build();
    let s = session("c");
    let owner = Owner::anonymous("c");
    let fan = task_id(&send(&server, &s, task_call("fan_out", json!({}))).await);
    let grind = task_id(&send(&server, &s, task_call("grind", json!({}))).await);
    tokio::time::sleep(Duration::from_millis(50)).await;
    engine.cancel(&owner, &fan).await.unwrap();
    engine.cancel(&owner, &grind).await.unwrap();
    let deadline = Instant::now() + LIMIT;
    while child_stopped.load(Ordering::SeqCst) < 3 || blocking_saw.load(Ordering::SeqCst) < 1 {
        assert!(Instant::now() < deadline, "the cancellation did not reach the children or the blocking handler");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The hook runs once the work has stopped (here: the handler returns after its children).
    while hook_ran.load(Ordering::SeqCst) < 1 {
        assert!(Instant::now() < deadline, "the cleanup hook never ran");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(engine.get(&owner, &fan).await.unwrap().status, TaskStatus::Cancelled);
    assert_eq!(hook_ran.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_refuse_with_a_retry_after_hint_or_wait_when_configured() {
    let (engine, _) = engine();
    let server = Server::builder("t", "1")
        .tasks(engine)
        .tool(
            Tool::new("strict", "Refuses over its rate.")
                .limits(ToolLimits::default().rate_per_owner(taskwire_server::Rate::per_second(10.0).burst(2)))
                .handler(|_, _| async { Ok(ToolOutput::text("ok")) }),
        )
        .tool(
            Tool::new("patient", "Waits for its token.")
                .limits(
                    ToolLimits::default()
                        .rate_per_tool(taskwire_server::Rate::per_second(20.0).burst(1))
                        .wait_when_rate_limited(),
                )
                .handler(|_, _| async { Ok(ToolOutput::text("ok")) }),
        )
        .build();
    let s = session("r");
    for _ in 0..2 {
        let ok = send(&server, &s, inline_call("strict", json!({}))).await;
        assert_eq!(ok["result"]["content"][0]["text"], "ok");
    }
    let refused = send(&server, &s, inline_call("strict", json!({}))).await;
    assert_eq!(refused["result"]["isError"], true, "{refused}");
    let hint = refused["result"]["_meta"]["dev.taskwire/retryAfterMs"].as_u64().expect("a retry-after hint");
    assert!((1..=100).contains(&hint), "retry after {hint} ms at 10/s");
    assert!(refused["result"]["content"][0]["text"].as_str().unwrap().contains(&format!("retry after {hint} ms")));
    // Another caller has its own bucket.
    let other = send(&server, &session("r2"), inline_call("strict", json!({}))).await;
    assert_eq!(other["result"]["content"][0]["text"], "ok");
    // Waiting instead: five calls at 20/s with burst 1 take at least 200 ms, and all succeed.
    let started = Instant::now();
    for _ in 0..5 {
        let ok = send(&server, &s, inline_call("patient", json!({}))).await;
        assert_eq!(ok["result"]["content"][0]["text"], "ok", "{ok}");
    }
    assert!(started.elapsed() >= Duration::from_millis(195), "did not wait for tokens: {:?}", started.elapsed());
}

#[tokio::test]
async fn descriptions_and_the_limits_resource_tell_a_model_how_tools_run() {
    let (engine, _) = engine();
    let server = Server::builder("t", "1")
        .tasks(engine)
        .job_control_tools()
        .tool(Tool::new("quick", "Answers at once.").handler(|_, _| async { Ok(ToolOutput::text("ok")) }))
        .tool(
            Tool::new("build", "Builds the project.")
                .task(TaskSupport::Optional)
                .timeout(Duration::from_secs(600))
                .limits(
                    ToolLimits::default()
                        .max_running(2)
                        .max_queued(100)
                        .rate_per_owner(taskwire_server::Rate::per_second(5.0).burst(5)),
                )
                .handler(|_, _| async { Ok(ToolOutput::text("built")) }),
        )
        .build();
    let s = session("d");
    let list = send(&server, &s, json!({"jsonrpc":"2.0","id":1,"method":"tools/list"})).await;
    let description = |name: &str| {
        list["result"]["tools"].as_array().unwrap().iter().find(|t| t["name"] == name).unwrap()["description"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(description("quick"), "Answers at once. Runs inline.");
    assert_eq!(
        description("build"),
        "Builds the project. Runs as a background task when the client supports tasks. Limits: at most 2 at once \
         (up to 100 more wait in a queue); 5/s (burst 5) per caller; times out after 10 min."
    );
    let read = send(
        &server,
        &s,
        json!({"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"taskwire://limits"}}),
    )
    .await;
    let text = read["result"]["contents"][0]["text"].as_str().expect("text contents");
    let (summary, data) = text.split_once("\n\n").expect("a summary line, then the data");
    assert_eq!(
        summary,
        "build: 0 of 2 running, 0 queued, your rate 5/s (burst 5) with 5.0 calls available now; all limited tools: 0 running, 0 queued"
    );
    let data: Value = serde_json::from_str(data).unwrap();
    assert_eq!(data["tools"][0]["maxRunning"], 2);
    assert_eq!(data["tools"][0]["ratePerCaller"]["tokensAvailable"], 5.0);
    let tool = send(&server, &s, inline_call("task_limits", json!({}))).await;
    assert_eq!(tool["result"]["content"][0]["text"], summary);
    assert_eq!(tool["result"]["structuredContent"], data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_timeout_bounds_inline_calls_of_tools_without_their_own() {
    let server = Server::builder("t", "1")
        .request_timeout(Duration::from_millis(150))
        .tool(Tool::new("dawdle", "Never answers.").handler(|_, _| async {
            std::future::pending::<()>().await;
            Ok(ToolOutput::text("never"))
        }))
        .tool(Tool::new("patient", "Has its own timeout.").timeout(Duration::from_millis(400)).handler(|_, _| async {
            tokio::time::sleep(Duration::from_millis(250)).await;
            Ok(ToolOutput::text("made it"))
        }))
        .build();
    let s = session("t");
    let started = Instant::now();
    // The handler never answers: only the request timeout can end the call. The outer bound is
    // generous, so that a loaded machine cannot fail the test (a tight one did: 286 ms in CI).
    let answer = tokio::time::timeout(Duration::from_secs(10), send(&server, &s, inline_call("dawdle", json!({}))))
        .await
        .expect("the request timeout ends a call whose handler never answers");
    assert!(started.elapsed() >= Duration::from_millis(150), "ended before its timeout: {:?}", started.elapsed());
    assert_eq!(answer["result"]["isError"], true);
    assert!(answer["result"]["content"][0]["text"].as_str().unwrap().contains("timeout of 150 ms"), "{answer}");
    let own = send(&server, &s, inline_call("patient", json!({}))).await;
    assert_eq!(own["result"]["content"][0]["text"], "made it", "the tool's own timeout wins: {own}");
}
