//! Job control for clients that know no tasks (the job pattern of seed 001): a long tool answers
//! at once with a job id and a sentence telling the model what to call next; four tools, scoped
//! to the caller, follow the job. Every answer is written for a model to read: a sentence first,
//! then the structured data.

use std::time::Duration;

use serde_json::{Value, json};
use taskwire_engine::{Engine, EngineError, TaskId, TaskRecord, TaskStatus, rfc3339};

use crate::context::Context;
use crate::error::ToolError;
use crate::model::{Object, ToolOutput};
use crate::registry::Tool;

/// The longest `wait_seconds` a `task_result` call may ask for.
pub const MAX_WAIT_SECONDS: u64 = 60;

fn summary(r: &TaskRecord) -> Value {
    let mut s = json!({
        "job_id": r.id.as_str(),
        "tool": r.tool,
        "status": r.status.as_str(),
        "created_at": rfc3339(r.created_at_ms),
        "updated_at": rfc3339(r.updated_at_ms),
    });
    if let Some(m) = &r.status_message {
        s["status_message"] = json!(m);
    }
    s
}

/// The answer to the call that started a job.
pub(crate) fn job_started(r: &TaskRecord) -> ToolOutput {
    let id = r.id.as_str();
    ToolOutput::text(format!(
        "Started job {id} for {tool}; it runs in the background. Call task_status with {{\"job_id\":\"{id}\"}} to follow it, \
         and task_result with {{\"job_id\":\"{id}\",\"wait_seconds\":30}} to get its result when it is done.",
        tool = r.tool
    ))
    .structured(summary(r))
}

fn job_id(args: &Object) -> Result<TaskId, ToolError> {
    args.get("job_id").and_then(Value::as_str).map(TaskId::from_wire).ok_or_else(|| {
        ToolError::Execution("job_id (a string, from the answer that started the job) is required".into())
    })
}

fn not_found(id: &TaskId) -> ToolError {
    ToolError::Execution(format!(
        "No job {} is visible to you: it never existed, expired, or belongs to someone else. Call task_list to see your jobs.",
        id.as_str()
    ))
}

fn lookup_error(id: &TaskId, e: EngineError) -> ToolError {
    match e {
        EngineError::NotFound => not_found(id),
        other => ToolError::Execution(format!("Could not read job {}: {other}", id.as_str())),
    }
}

fn describe(r: &TaskRecord) -> String {
    let id = r.id.as_str();
    let message = r.status_message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default();
    match r.status {
        TaskStatus::Working => format!(
            "Job {id} ({}) is still running{message}. Call task_result with a wait_seconds to wait for it.",
            r.tool
        ),
        TaskStatus::InputRequired => format!(
            "Job {id} ({}) is waiting for input that this client cannot give{message}; a client with task support can answer it. Call task_cancel to stop it.",
            r.tool
        ),
        TaskStatus::Completed => format!("Job {id} ({}) has finished. Call task_result to get its result.", r.tool),
        TaskStatus::Failed => format!("Job {id} ({}) failed{message}. Call task_result for the error.", r.tool),
        TaskStatus::Cancelled => format!("Job {id} ({}) was cancelled.", r.tool),
    }
}

/// The job-control tools over `engine`.
pub(crate) fn job_tools(engine: Engine) -> Vec<Tool> {
    let id_schema = json!({"type":"object","properties":{"job_id":{"type":"string","description":"The id from the answer that started the job"}},"required":["job_id"]});
    let (e1, e2, e3, e4) = (engine.clone(), engine.clone(), engine.clone(), engine);
    vec![
        Tool::new("task_status", "Reports whether a background job is running, waiting, finished, failed or cancelled.")
            .input_schema(id_schema.clone())
            .handler(move |ctx: Context, args| {
                let engine = e1.clone();
                async move {
                    let id = job_id(&args)?;
                    let r = engine.get(&ctx.owner(), &id).await.map_err(|e| lookup_error(&id, e))?;
                    Ok(ToolOutput::text(describe(&r)).structured(summary(&r)))
                }
            }),
        Tool::new(
            "task_result",
            "Returns a background job's result once it has finished; waits up to wait_seconds (at most 60) for it first.",
        )
        .input_schema(json!({"type":"object","properties":{
            "job_id":{"type":"string","description":"The id from the answer that started the job"},
            "wait_seconds":{"type":"integer","minimum":0,"maximum":MAX_WAIT_SECONDS,"description":"How long to wait for the job to finish (default 0)"}},
            "required":["job_id"]}))
        .handler(move |ctx: Context, args| {
            let engine = e2.clone();
            async move {
                let id = job_id(&args)?;
                let owner = ctx.owner();
                let wait = args.get("wait_seconds").and_then(Value::as_u64).unwrap_or(0).min(MAX_WAIT_SECONDS);
                let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
                let record = loop {
                    let mut changes = engine.watch(&id);
                    let r = engine.get(&owner, &id).await.map_err(|e| lookup_error(&id, e))?;
                    if r.status.is_terminal() || tokio::time::Instant::now() >= deadline {
                        break r;
                    }
                    let changed = async {
                        match changes.as_mut() {
                            Some(rx) => {
                                let _ = rx.changed().await;
                            }
                            None => tokio::time::sleep(Duration::from_millis(r.poll_interval_ms)).await,
                        }
                    };
                    tokio::select! {
                        _ = changed => {}
                        _ = tokio::time::sleep_until(deadline) => {}
                        _ = ctx.cancelled() => return Err(ToolError::Cancelled),
                    }
                };
                let stored = |text: &Option<String>| -> Option<Object> { text.as_deref().and_then(|t| serde_json::from_str(t).ok()) };
                match record.status {
                    TaskStatus::Completed | TaskStatus::Failed if record.result.is_some() => {
                        Ok(ToolOutput::from_result(stored(&record.result).unwrap_or_default()))
                    }
                    TaskStatus::Failed => {
                        let error = stored(&record.error).unwrap_or_default();
                        let message = error.get("message").and_then(Value::as_str).unwrap_or("no details");
                        Ok(ToolOutput::error(format!("Job {} failed: {message}", id.as_str())).structured(summary(&record)))
                    }
                    TaskStatus::Cancelled => Ok(ToolOutput::error(describe(&record)).structured(summary(&record))),
                    _ => Ok(ToolOutput::text(describe(&record)).structured(summary(&record))),
                }
            }
        }),
        Tool::new("task_cancel", "Cancels a background job.").input_schema(id_schema).handler(move |ctx: Context, args| {
            let engine = e3.clone();
            async move {
                let id = job_id(&args)?;
                match engine.cancel(&ctx.owner(), &id).await {
                    Ok(r) => Ok(ToolOutput::text(format!("Job {} was cancelled.", id.as_str())).structured(summary(&r))),
                    Err(EngineError::AlreadyTerminal(status)) => Ok(ToolOutput::text(format!(
                        "Job {} had already ended ({}); nothing to cancel.",
                        id.as_str(),
                        status.as_str()
                    ))),
                    Err(e) => Err(lookup_error(&id, e)),
                }
            }
        }),
        Tool::new("task_list", "Lists your background jobs, oldest first.")
            .input_schema(json!({"type":"object","properties":{"cursor":{"type":"string","description":"next_cursor of the previous page"}}}))
            .handler(move |ctx: Context, args| {
                let engine = e4.clone();
                async move {
                    let cursor = args.get("cursor").and_then(Value::as_str);
                    let page = engine.list(&ctx.owner(), cursor, 50).await.map_err(|e| ToolError::Execution(e.to_string()))?;
                    let lines: Vec<String> =
                        page.tasks.iter().map(|r| format!("- {} {} {}", r.id.as_str(), r.tool, r.status.as_str())).collect();
                    let text = if lines.is_empty() {
                        "You have no jobs.".to_owned()
                    } else {
                        format!("You have {} job(s):\n{}", lines.len(), lines.join("\n"))
                    };
                    let mut data = json!({"jobs": page.tasks.iter().map(summary).collect::<Vec<_>>()});
                    if let Some(c) = page.next_cursor {
                        data["next_cursor"] = json!(c);
                    }
                    Ok(ToolOutput::text(text).structured(data))
                }
            }),
    ]
}
