//! Both task wires over the one engine (design invariant 7): the 2025-11-25 core tasks
//! (`params.task`, nested `CreateTaskResult`, `tasks/get|result|list|cancel`) and the 2026-07-28
//! extension `io.modelcontextprotocol/tasks` (server-directed creation, flat `CreateTaskResult`,
//! `tasks/get|update|cancel`). A client sees the shapes of the era it speaks.

use serde_json::{Value, json};
use taskwire_engine::{EngineError, Owner, TaskHandle, TaskId, TaskRecord, TaskStatus, rfc3339};
use taskwire_protocol::{ErrorObject, codes, meta};

use crate::context::Channel;
use crate::error::ToolError;
use crate::model::{Object, ToolOutput};
use crate::registry::{TaskSupport, Tool};

/// How one `tools/call` runs.
pub(crate) enum TaskMode {
    /// Inline: the answer is the tool's result.
    Inline,
    /// As a task created before the handler starts.
    Immediate { ttl_ms: Option<u64> },
    /// Inline until the handler promotes itself ([`crate::Context::promote_to_task`]) or its
    /// inline deadline passes ([`crate::Tool::inline_deadline`]).
    OnPromotion { ttl_ms: Option<u64> },
    /// As a task for a client that knows no tasks: the answer is a job id in plain text and the
    /// job-control tools follow it.
    Job { ttl_ms: Option<u64> },
}

/// Whether a per-request client declared the tasks extension in this very request.
pub(crate) fn declares_tasks(client_capabilities: &Value) -> bool {
    client_capabilities.get("extensions").and_then(|e| e.get(meta::TASKS_EXTENSION)).is_some()
}

pub(crate) fn tasks_capability_required() -> ErrorObject {
    ErrorObject::missing_client_capability(json!({"extensions": {meta::TASKS_EXTENSION: {}}}))
}

/// Decides how a call runs, from the tool's declaration and what the client can take.
pub(crate) fn task_mode(
    tool: &Tool,
    params: &Object,
    channel: &Channel,
    job_control: bool,
) -> Result<TaskMode, ToolError> {
    let mode = task_mode_without_jobs(tool, params, channel);
    // A client that cannot take a task still gets the work done in the background, as a job.
    let cannot_take_task = match &mode {
        Ok(TaskMode::Inline) => tool.task_support != TaskSupport::Forbidden,
        Err(_) => tool.task_support == TaskSupport::Required,
        Ok(_) => false,
    };
    if job_control && cannot_take_task {
        return Ok(TaskMode::Job { ttl_ms: None });
    }
    mode
}

fn task_mode_without_jobs(tool: &Tool, params: &Object, channel: &Channel) -> Result<TaskMode, ToolError> {
    match channel {
        Channel::Handshake(version) => {
            // Core tasks exist from 2025-11-25 on; earlier clients cannot augment a call.
            let asked = params
                .get("task")
                .filter(|t| t.is_object() && *version >= taskwire_protocol::ProtocolVersion::V2025_11_25);
            match (tool.task_support, asked) {
                (TaskSupport::Forbidden, Some(_)) => Err(ErrorObject::new(
                    codes::METHOD_NOT_FOUND,
                    format!("tool {} does not run as a task; call it without params.task", tool.name),
                )
                .into()),
                (TaskSupport::Required, None) => Err(ErrorObject::new(
                    codes::METHOD_NOT_FOUND,
                    format!("tool {} runs only as a task; call it with params.task (e.g. \"task\": {{}})", tool.name),
                )
                .into()),
                (_, None) => Ok(TaskMode::Inline),
                (_, Some(t)) => {
                    let ttl_ms = t.get("ttl").and_then(Value::as_u64);
                    // Sync-first: a fast answer stays inline even though a task was asked for.
                    if tool.controls.inline_deadline.is_some() {
                        Ok(TaskMode::OnPromotion { ttl_ms })
                    } else {
                        Ok(TaskMode::Immediate { ttl_ms })
                    }
                }
            }
        }
        Channel::PerRequest { client_capabilities, .. } => {
            // A legacy params.task is ignored here: creation is the server's decision.
            match (tool.task_support, declares_tasks(client_capabilities)) {
                (TaskSupport::Forbidden, _) | (TaskSupport::Optional, false) => Ok(TaskMode::Inline),
                (TaskSupport::Required, false) => Err(tasks_capability_required().into()),
                (_, true) if tool.task_on_promotion || tool.controls.inline_deadline.is_some() => {
                    Ok(TaskMode::OnPromotion { ttl_ms: None })
                }
                (_, true) => Ok(TaskMode::Immediate { ttl_ms: None }),
            }
        }
    }
}

/// The 2025-11-25 `Task` object.
pub(crate) fn legacy_task(r: &TaskRecord) -> Value {
    let mut t = json!({
        "taskId": r.id.as_str(),
        "status": r.status.as_str(),
        "createdAt": rfc3339(r.created_at_ms),
        "lastUpdatedAt": rfc3339(r.updated_at_ms),
        "ttl": r.ttl_ms,
        "pollInterval": r.poll_interval_ms,
    });
    if let Some(m) = &r.status_message {
        t["statusMessage"] = json!(m);
    }
    t
}

/// The 2026-07-28 extension's `Task` object.
pub(crate) fn modern_task(r: &TaskRecord) -> Value {
    let mut t = json!({
        "taskId": r.id.as_str(),
        "status": r.status.as_str(),
        "createdAt": rfc3339(r.created_at_ms),
        "lastUpdatedAt": rfc3339(r.updated_at_ms),
        "ttlMs": r.ttl_ms,
        "pollIntervalMs": r.poll_interval_ms,
    });
    if let Some(m) = &r.status_message {
        t["statusMessage"] = json!(m);
    }
    t
}

fn parse_raw(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// Adds `"key": raw` to a serialized JSON object without re-encoding `raw`: stored results
/// reach the client byte for byte as the tool produced them.
pub(crate) fn splice_raw(object_json: &mut String, key: &str, raw: &str) {
    append_members(object_json, &format!("{}:{raw}", Value::String(key.to_owned())));
}

/// Appends already-serialized members (`"a":1,"b":2`) to a serialized JSON object.
pub(crate) fn append_members(object_json: &mut String, members: &str) {
    if object_json.ends_with('}') {
        object_json.pop();
        if !object_json.ends_with('{') {
            object_json.push(',');
        }
        object_json.push_str(members);
        object_json.push('}');
    }
}

/// The extension's `DetailedTask` (without `resultType`/`_meta`), and, for a completed task,
/// the stored result to splice in raw once those are added.
pub(crate) fn detailed_task(r: &TaskRecord) -> (Value, Option<&str>) {
    let mut t = modern_task(r);
    let mut raw_result = None;
    match r.status {
        TaskStatus::InputRequired => {
            t["inputRequests"] = r.input_requests.as_deref().map(parse_raw).unwrap_or_else(|| json!({}));
        }
        TaskStatus::Completed => raw_result = Some(r.result.as_deref().unwrap_or("{}")),
        TaskStatus::Failed => {
            t["error"] = match (&r.error, &r.result) {
                (Some(e), _) => parse_raw(e),
                // Failed with a tool-error result (a task created on the 2025-11-25 wire).
                (None, Some(result)) => json!({
                    "code": codes::INTERNAL_ERROR, "message": "the tool reported an error", "data": parse_raw(result)
                }),
                (None, None) => json!({"code": codes::INTERNAL_ERROR, "message": "the task failed"}),
            };
        }
        TaskStatus::Working | TaskStatus::Cancelled => {}
    }
    (t, raw_result)
}

/// The answer to the call that created a task.
pub(crate) fn create_task_result(r: &TaskRecord, per_request: bool) -> Value {
    if per_request {
        let mut t = modern_task(r);
        t["resultType"] = json!("task");
        t
    } else {
        json!({"task": legacy_task(r)})
    }
}

/// Records the outcome of a task's work. On 2025-11-25 a tool error ends the task `failed`
/// (keeping the result for `tasks/result`); on 2026-07-28 it ends `completed` with
/// `result.isError`, and `failed` is reserved for protocol errors — and timeouts, which end
/// `failed` on both wires with the partial output kept.
pub(crate) async fn finish(handle: &TaskHandle, tool: &str, outcome: Result<ToolOutput, ToolError>, per_request: bool) {
    let outcome = match outcome {
        Err(ToolError::Execution(message) | ToolError::Transient(message)) => Ok(ToolOutput::error(message)),
        Err(ToolError::TimedOut { after, partial }) => {
            let partial = partial.map(|p| *p);
            if per_request {
                let error = json!({
                    "code": codes::INTERNAL_ERROR,
                    "message": crate::execution::timeout_message(tool, after),
                    "data": {
                        "reason": "timeout",
                        "timeoutMs": after.as_millis() as u64,
                        "partialOutput": partial.map(ToolOutput::into_value),
                    },
                });
                return handle.fail(error.to_string()).await;
            }
            let output = crate::execution::timeout_output(tool, after, partial);
            return handle.fail_with_result(output.into_value().to_string()).await;
        }
        other => other,
    };
    match outcome {
        Ok(output) if output.is_error() && !per_request => {
            handle.fail_with_result(output.into_value().to_string()).await
        }
        Ok(output) => handle.complete(output.into_value().to_string()).await,
        Err(ToolError::Protocol(e)) => handle.fail(serde_json::to_string(&e).unwrap_or_default()).await,
        Err(ToolError::Cancelled) => {
            // Cancelled through tasks/cancel, it is `cancelled` already and this is ignored; a
            // handler that gave up on its own must still not leave the task working forever.
            handle
                .fail(
                    json!({"code": codes::INTERNAL_ERROR, "message": "the work stopped without a result"}).to_string(),
                )
                .await
        }
        Err(
            e @ (ToolError::InputRequired(_)
            | ToolError::Execution(_)
            | ToolError::Transient(_)
            | ToolError::TimedOut { .. }),
        ) => handle.fail(json!({"code": codes::INTERNAL_ERROR, "message": e.to_string()}).to_string()).await,
    }
}

/// `_meta` key under which a caller names an idempotency key (a string of 1 to 256 characters):
/// for the task's time to live, the same owner calling the same tool with the same key gets the
/// existing task instead of a new run.
pub const IDEMPOTENCY_KEY_META: &str = "dev.taskwire/idempotencyKey";

/// The caller's idempotency key, if it sent one.
pub(crate) fn idempotency_key(params: &Object) -> Result<Option<String>, ToolError> {
    match params.get("_meta").and_then(|m| m.get(IDEMPOTENCY_KEY_META)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(k)) if !k.is_empty() && k.chars().count() <= 256 => Ok(Some(k.clone())),
        Some(_) => Err(ErrorObject::invalid_params(format!(
            "_meta[\"{IDEMPOTENCY_KEY_META}\"] must be a string of 1 to 256 characters"
        ))
        .into()),
    }
}

pub(crate) fn task_id_param(params: &Object) -> Result<TaskId, ToolError> {
    params
        .get("taskId")
        .and_then(Value::as_str)
        .map(TaskId::from_wire)
        .ok_or_else(|| ErrorObject::invalid_params("params.taskId (a string) is required").into())
}

pub(crate) fn engine_error(e: EngineError) -> ToolError {
    match e {
        EngineError::NotFound => {
            ErrorObject::invalid_params("Failed to retrieve task: Task not found (unknown, expired, or not yours)")
                .into()
        }
        EngineError::AlreadyTerminal(s) => {
            ErrorObject::invalid_params(format!("Cannot cancel task: it has already ended ({})", s.as_str())).into()
        }
        EngineError::Store(e) => ErrorObject::internal(format!("task storage failed: {e}")).into(),
    }
}

/// Sends `notifications/tasks/status` (2025-11-25) on the session's standalone stream whenever
/// the task's status changes, until it ends. Optional for clients, which poll anyway.
pub(crate) fn notify_status_changes(
    engine: taskwire_engine::Engine,
    owner: Owner,
    id: TaskId,
    session: std::sync::Arc<crate::session::Session>,
) {
    tokio::spawn(async move {
        let mut last = None;
        loop {
            // Subscribe before reading, so that no change slips between the two.
            let changes = engine.watch(&id);
            let Ok(record) = engine.get(&owner, &id).await else { return };
            if last != Some(record.status) {
                last = Some(record.status);
                if let Some(sink) = session.standalone() {
                    let mut out = Vec::with_capacity(256);
                    taskwire_protocol::jsonrpc::write_notification(
                        &mut out,
                        "notifications/tasks/status",
                        &legacy_task(&record).to_string(),
                    );
                    let _ = sink.send(crate::session::Outgoing::Message(out.into())).await;
                }
            }
            if record.status.is_terminal() {
                return;
            }
            match changes {
                Some(mut rx) => {
                    let _ = rx.changed().await;
                }
                None => return,
            }
        }
    });
}

/// Sends `notifications/tasks` (2026-07-28) for `ids` on the listen request's stream on every
/// status change, until every task has ended or the client goes away.
pub(crate) async fn stream_task_notifications(
    engine: &taskwire_engine::Engine,
    owner: &Owner,
    ids: Vec<TaskId>,
    tag: &Value,
    ctx: &crate::context::Context,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<(), ToolError> {
    let mut last: std::collections::HashMap<TaskId, TaskStatus> = std::collections::HashMap::new();
    let mut open = ids;
    while !open.is_empty() {
        let mut waits = Vec::new();
        let mut still_open = Vec::new();
        for id in open {
            let changes = engine.watch(&id);
            let Ok(record) = engine.get(owner, &id).await else { continue };
            if last.get(&id) != Some(&record.status) {
                last.insert(id.clone(), record.status);
                let (mut task, raw) = detailed_task(&record);
                task["_meta"] = tag.clone();
                let mut params = task.to_string();
                if let Some(raw) = raw {
                    splice_raw(&mut params, "result", raw);
                }
                ctx.notify_raw("notifications/tasks", &params).await;
            }
            if !record.status.is_terminal() {
                if let Some(mut rx) = changes {
                    waits.push(Box::pin(async move {
                        let _ = rx.changed().await;
                    })
                        as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>);
                }
                still_open.push(id);
            }
        }
        open = still_open;
        if open.is_empty() {
            break;
        }
        // A task run by another process has no local watch: poll it now and then.
        let any_change = async {
            if waits.is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            } else {
                futures_util::future::select_all(waits).await;
            }
        };
        tokio::select! {
            _ = any_change => {}
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = cancel.cancelled() => return Err(ToolError::Cancelled),
        }
    }
    Ok(())
}

/// The owner of tasks created or read by a request.
pub(crate) fn owner(principal: &Option<String>, scope: Option<&str>) -> Owner {
    Owner { principal: principal.clone(), scope: scope.unwrap_or_default().to_owned() }
}
