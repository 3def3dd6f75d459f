//! Both task wires over the one engine (design invariant 7): the 2025-11-25 core tasks
//! (`params.task`, nested `CreateTaskResult`, `tasks/get|result|list|cancel`) and the 2026-07-28
//! extension `io.modelcontextprotocol/tasks` (server-directed creation, flat `CreateTaskResult`,
//! `tasks/get|update|cancel`). A client sees the shapes of the era it speaks.

use serde_json::{Value, json};
use taskwire_engine::{EngineError, Owner, TaskHandle, TaskId, TaskRecord, TaskStatus, write_rfc3339};
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

/// Which wire's `Task` object to write: the 2025-11-25 core tasks (`ttl`, `pollInterval`) or
/// the 2026-07-28 extension (`ttlMs`, `pollIntervalMs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    Core,
    Extension,
}

/// A `Task` object as JSON text, written straight from the record: it is most of every
/// creation's answer, and building it as a `Value` (a map of owned keys, two formatted
/// timestamps, then serialized) cost a zero-work task ~9k instructions of ~90k (callgrind).
/// Add members with [`append_members`].
pub(crate) fn task_json(r: &TaskRecord, shape: Shape) -> String {
    let mut out = Vec::with_capacity(256);
    write_task(&mut out, r, shape);
    String::from_utf8(out).unwrap_or_default()
}

fn write_task(out: &mut Vec<u8>, r: &TaskRecord, shape: Shape) {
    let (ttl, poll_interval) = match shape {
        Shape::Core => (&br#","ttl":"#[..], &br#","pollInterval":"#[..]),
        Shape::Extension => (&br#","ttlMs":"#[..], &br#","pollIntervalMs":"#[..]),
    };
    out.extend_from_slice(br#"{"taskId":"#);
    write_json_str(out, r.id.as_str());
    out.extend_from_slice(br#","status":""#);
    out.extend_from_slice(r.status.as_str().as_bytes());
    out.push(b'"');
    if let Some(m) = &r.status_message {
        out.extend_from_slice(br#","statusMessage":"#);
        write_json_str(out, m);
    }
    out.extend_from_slice(br#","createdAt":""#);
    write_rfc3339(out, r.created_at_ms);
    out.extend_from_slice(br#"","lastUpdatedAt":""#);
    write_rfc3339(out, r.updated_at_ms);
    out.push(b'"');
    out.extend_from_slice(ttl);
    match r.ttl_ms {
        Some(ms) => out.extend_from_slice(itoa::Buffer::new().format(ms).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(poll_interval);
    out.extend_from_slice(itoa::Buffer::new().format(r.poll_interval_ms).as_bytes());
    out.push(b'}');
}

fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // Writing a string into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// The 2025-11-25 `tasks/list` result: `{"tasks":[…],"nextCursor":…}`.
pub(crate) fn core_task_list(tasks: &[TaskRecord], next_cursor: Option<&str>) -> String {
    let mut out = Vec::with_capacity(32 + 256 * tasks.len());
    out.extend_from_slice(br#"{"tasks":["#);
    for (i, task) in tasks.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_task(&mut out, task, Shape::Core);
    }
    out.push(b']');
    if let Some(cursor) = next_cursor {
        out.extend_from_slice(br#","nextCursor":"#);
        write_json_str(&mut out, cursor);
    }
    out.push(b'}');
    String::from_utf8(out).unwrap_or_default()
}

/// Stored JSON text as it is, or `null` if it does not parse (a store is trusted, not blindly).
fn stored_json(text: &str) -> &str {
    if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() { text } else { "null" }
}

/// The extension's `DetailedTask` (without `resultType`/`_meta`): the task object with its
/// `inputRequests`, its stored `result` byte for byte, or its `error`, by status.
pub(crate) fn detailed_task(r: &TaskRecord) -> String {
    let mut t = task_json(r, Shape::Extension);
    match r.status {
        TaskStatus::InputRequired => {
            splice_raw(&mut t, "inputRequests", r.input_requests.as_deref().map_or("{}", stored_json));
        }
        TaskStatus::Completed => splice_raw(&mut t, "result", r.result.as_deref().unwrap_or("{}")),
        TaskStatus::Failed => match (&r.error, &r.result) {
            (Some(e), _) => splice_raw(&mut t, "error", stored_json(e)),
            // Failed with a tool-error result (a task created on the 2025-11-25 wire).
            (None, Some(result)) => {
                let error = format!(
                    r#"{{"code":{},"message":"the tool reported an error","data":{}}}"#,
                    codes::INTERNAL_ERROR,
                    stored_json(result)
                );
                splice_raw(&mut t, "error", &error);
            }
            (None, None) => {
                let error = json!({"code": codes::INTERNAL_ERROR, "message": "the task failed"}).to_string();
                splice_raw(&mut t, "error", &error);
            }
        },
        TaskStatus::Working | TaskStatus::Cancelled => {}
    }
    t
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

/// The 2025-11-25 answer to the call that created a task: `{"task":{…}}`. (The extension's
/// flat form is the task object plus the server's per-request members.)
pub(crate) fn core_create_task_result(r: &TaskRecord) -> String {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(br#"{"task":"#);
    write_task(&mut out, r, Shape::Core);
    out.push(b'}');
    String::from_utf8(out).unwrap_or_default()
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
            return handle.fail_with_result(output.into_json()).await;
        }
        other => other,
    };
    match outcome {
        Ok(output) if output.is_error() && !per_request => handle.fail_with_result(output.into_json()).await,
        Ok(output) => handle.complete(output.into_json()).await,
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
                        &task_json(&record, Shape::Core),
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
                let mut params = detailed_task(&record);
                splice_raw(&mut params, "_meta", &tag.to_string());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: TaskStatus) -> TaskRecord {
        TaskRecord {
            id: TaskId::from_wire("019ae9a2b7c0f3b7a4d25c7e4e8f9a0b1c2d3e4f5a6b"),
            status,
            status_message: Some("step \"2\"\nof 3".into()),
            updated_at_ms: 1_795_255_201_000,
            ..taskwire_engine::contract::sample_record(&Owner::anonymous("s"), 1_795_255_200_123)
        }
    }

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    #[test]
    fn a_task_object_has_its_wires_member_names() {
        let r = record(TaskStatus::Working);
        let common = json!({
            "taskId": "019ae9a2b7c0f3b7a4d25c7e4e8f9a0b1c2d3e4f5a6b",
            "status": "working",
            "statusMessage": "step \"2\"\nof 3",
            "createdAt": "2026-11-21T10:00:00.123Z",
            "lastUpdatedAt": "2026-11-21T10:00:01.000Z",
        });
        let mut core = common.clone();
        core["ttl"] = json!(60_000);
        core["pollInterval"] = json!(500);
        assert_eq!(parse(&task_json(&r, Shape::Core)), core);
        let mut extension = common;
        extension["ttlMs"] = json!(60_000);
        extension["pollIntervalMs"] = json!(500);
        assert_eq!(parse(&task_json(&r, Shape::Extension)), extension);

        let unlimited = TaskRecord { ttl_ms: None, status_message: None, ..r };
        let t = parse(&task_json(&unlimited, Shape::Core));
        assert_eq!(t["ttl"], Value::Null, "an unlimited TTL is null, not absent");
        assert!(t.get("statusMessage").is_none());
        assert_eq!(parse(&core_create_task_result(&unlimited))["task"], t);
    }

    #[test]
    fn a_detailed_task_carries_its_outcome_by_status() {
        let completed = TaskRecord { result: Some(r#"{"z":1,"a":[2]}"#.into()), ..record(TaskStatus::Completed) };
        let text = detailed_task(&completed);
        assert!(text.contains(r#""result":{"z":1,"a":[2]}"#), "the stored result byte for byte: {text}");

        let failed =
            TaskRecord { error: Some(r#"{"code":-32603,"message":"boom"}"#.into()), ..record(TaskStatus::Failed) };
        assert_eq!(parse(&detailed_task(&failed))["error"], json!({"code": -32603, "message": "boom"}));

        let tool_error = TaskRecord { result: Some(r#"{"isError":true}"#.into()), ..record(TaskStatus::Failed) };
        let error = &parse(&detailed_task(&tool_error))["error"];
        assert_eq!(error["code"], json!(codes::INTERNAL_ERROR));
        assert_eq!(error["data"], json!({"isError": true}));

        let corrupt = TaskRecord { error: Some("{not json".into()), ..record(TaskStatus::Failed) };
        assert_eq!(parse(&detailed_task(&corrupt))["error"], Value::Null, "a damaged store answers null");

        let asking = TaskRecord {
            input_requests: Some(r#"{"k":{"method":"elicitation/create","params":{}}}"#.into()),
            ..record(TaskStatus::InputRequired)
        };
        assert_eq!(parse(&detailed_task(&asking))["inputRequests"]["k"]["method"], json!("elicitation/create"));

        let working = parse(&detailed_task(&record(TaskStatus::Working)));
        assert!(working.get("result").is_none() && working.get("error").is_none());
    }

    #[test]
    fn a_core_listing_holds_every_task_and_the_cursor() {
        let tasks = [record(TaskStatus::Working), record(TaskStatus::Cancelled)];
        let page = parse(&core_task_list(&tasks, Some("next \"page\"")));
        assert_eq!(page["tasks"].as_array().map(Vec::len), Some(2));
        assert_eq!(page["tasks"][1]["status"], json!("cancelled"));
        assert_eq!(page["nextCursor"], json!("next \"page\""));
        let empty = parse(&core_task_list(&[], None));
        assert_eq!(empty, json!({"tasks": []}));
    }
}
