//! One execution of a tool under its controls (design §5): wait for a slot, run each attempt
//! under the timeout, retry transient failures with backoff and jitter, stop on cancellation
//! after a grace period, run the cleanup hooks. Inline calls and tasks share this path; they
//! differ only in how the outcome is answered.

use std::time::Duration;

use serde_json::json;
use taskwire_engine::{Admission, Permit, Refusal, RetryPolicy};
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::error::ToolError;
use crate::model::{Object, ToolOutput, text_content};
use crate::registry::{Tool, human_duration};
use crate::server::Server;

/// `_meta` key of a refusal's retry-after hint, in milliseconds.
pub const RETRY_AFTER_META: &str = "dev.taskwire/retryAfterMs";

/// How long an execution may take.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bounds {
    /// Each attempt is stopped after this.
    pub timeout: Option<Duration>,
    /// After a cancellation, how long the work may take to stop by itself (0 for inline calls:
    /// nobody waits for their answer).
    pub grace: Duration,
}

/// Runs `tool` with `args` once admitted: the context's cancellation token is the work's, and
/// must be the execution's own (a child of the request's or task's), since a timeout cancels it.
pub(crate) async fn execute(
    server: &Server,
    tool: &Tool,
    ctx: Context,
    args: Object,
    admission: Admission,
    bounds: Bounds,
) -> Result<ToolOutput, ToolError> {
    let cancel = ctx.cancellation_token().clone();
    let outcome = match wait_for_slot(tool, &ctx, admission, &cancel).await {
        Ok(permit) => {
            let outcome = attempts(server, tool, &ctx, args, &cancel, bounds).await;
            drop(permit);
            outcome
        }
        Err(e) => Err(e),
    };
    // However the work ended, if it was told to stop (cancel, timeout), its hooks run.
    if cancel.is_cancelled() {
        ctx.run_cancel_hooks();
    }
    outcome
}

async fn wait_for_slot(
    tool: &Tool,
    ctx: &Context,
    admission: Admission,
    cancel: &CancellationToken,
) -> Result<Permit, ToolError> {
    if !admission.must_wait() {
        return Ok(admission.acquire().await);
    }
    if let (Some(task), Some(position)) = (ctx.task(), admission.position()) {
        task.set_status_message(position.message(&tool.name));
    }
    let permit = tokio::select! {
        permit = admission.acquire() => permit,
        _ = cancel.cancelled() => return Err(ToolError::Cancelled),
    };
    if let Some(task) = ctx.task() {
        task.set_status_message("running");
    }
    Ok(permit)
}

async fn attempts(
    server: &Server,
    tool: &Tool,
    ctx: &Context,
    args: Object,
    cancel: &CancellationToken,
    bounds: Bounds,
) -> Result<ToolOutput, ToolError> {
    let policy = tool.retryable.then_some(tool.controls.retry);
    let mut args = Some(args);
    loop {
        let attempt = ctx.attempt();
        let retry = policy.filter(|p| attempt < p.max_attempts);
        // The arguments are copied only when another attempt may follow.
        let this_run = match retry {
            Some(_) => args.clone().unwrap_or_default(),
            None => args.take().unwrap_or_default(),
        };
        let work = server.run_handler(tool, ctx.clone(), this_run);
        match bounded(work, ctx, cancel, bounds).await {
            Err(ToolError::Transient(reason)) => {
                let Some(policy) = retry else {
                    let reason =
                        if attempt > 1 { format!("{reason} (gave up after {attempt} attempts)") } else { reason };
                    return Err(ToolError::Execution(reason));
                };
                let delay = policy.delay(attempt, RetryPolicy::random_unit());
                let next = attempt + 1;
                let note = format!(
                    "attempt {attempt} of {} failed transiently ({reason}); attempt {next} starts in {} ms",
                    policy.max_attempts,
                    delay.as_millis()
                );
                match ctx.task() {
                    Some(task) => task.begin_attempt(next, note).await,
                    None => ctx.set_attempt(next),
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = cancel.cancelled() => return Err(ToolError::Cancelled),
                }
            }
            other => return other,
        }
    }
}

/// One attempt: its outcome, or a timeout, or — once cancelled — whatever it produces within
/// the grace period.
async fn bounded(
    work: impl std::future::Future<Output = Result<ToolOutput, ToolError>>,
    ctx: &Context,
    cancel: &CancellationToken,
    bounds: Bounds,
) -> Result<ToolOutput, ToolError> {
    let mut work = std::pin::pin!(work);
    let deadline = async {
        match bounds.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        outcome = &mut work => outcome,
        _ = deadline => {
            // Stops blocking handlers (they see the flag) and children; the future is dropped.
            cancel.cancel();
            let after = bounds.timeout.unwrap_or_default();
            Err(ToolError::TimedOut { after, partial: ctx.take_partial_output().map(Box::new) })
        }
        _ = cancel.cancelled() => tokio::time::timeout(bounds.grace, &mut work).await.unwrap_or(Err(ToolError::Cancelled)),
    }
}

/// The tool error a refused call gets: what happened, what to do, and for a rate limit the
/// retry-after hint in `_meta`.
pub(crate) fn refusal_output(tool: &str, refusal: &Refusal) -> ToolOutput {
    let output = ToolOutput::error(refusal.message(tool));
    match refusal.retry_after() {
        Some(after) => output.meta(json!({ RETRY_AFTER_META: after.as_millis().max(1) as u64 })),
        None => output,
    }
}

/// The sentence of a timeout.
pub(crate) fn timeout_message(tool: &str, after: Duration) -> String {
    format!("tool {tool} ran past its timeout of {} and was stopped", human_duration(after))
}

/// A timeout as a tool error result: the sentence, then the partial output's content.
pub(crate) fn timeout_output(tool: &str, after: Duration, partial: Option<ToolOutput>) -> ToolOutput {
    let mut content = vec![text_content(timeout_message(tool, after) + ". Partial output, if any, follows.")];
    if let Some(partial) = partial {
        let partial = partial.into_object();
        if let Some(serde_json::Value::Array(items)) = partial.get("content") {
            content.extend(items.iter().cloned());
        }
    }
    ToolOutput::content(content).as_error()
}
