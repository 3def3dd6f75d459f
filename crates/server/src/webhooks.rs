//! Completion webhooks as the server sees them: which callback a new task gets, whether it may
//! have it, and what `tasks/get` says about its deliveries. Sending lives in `taskwire-webhook`.
//!
//! A caller names a callback per call in `_meta`:
//!
//! ```json
//! {"name": "build", "arguments": {}, "task": {},
//!  "_meta": {"dev.taskwire/webhook": {"url": "https://ci.example/hooks/taskwire", "events": "terminal"}}}
//! ```
//!
//! `events` is `"terminal"` (the default: one event when the task ends) or `"all"` (an event on
//! every status change). A tool may also carry a callback of its own ([`crate::Tool::webhook`]);
//! the caller's wins. A callback the server's [`CallbackGuard`] refuses fails the call with
//! -32602 and a message saying why — at creation, never as a silent drop later.

use std::future::Future;
use std::pin::Pin;

use serde_json::{Value, json};
use taskwire_engine::{Callback, DeliveryState, Engine, Owner, TaskRecord};
use taskwire_protocol::ErrorObject;

use crate::error::ToolError;
use crate::registry::Tool;

/// `_meta` key under which a caller names a completion webhook, and under which `tasks/get`
/// reports where its deliveries stand.
pub const WEBHOOK_META: &str = "dev.taskwire/webhook";

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Decides whether a caller may have events sent to a URL (the SSRF guard of
/// `taskwire-webhook` implements it). Without one, a server refuses callbacks named by callers.
pub trait CallbackGuard: Send + Sync + 'static {
    /// `Ok` if tasks of `owner` may post to `url`; else what is wrong, for the caller.
    fn check<'a>(&'a self, owner: &'a Owner, url: &'a str) -> BoxFuture<'a, Result<(), String>>;
}

/// The callback of a task about to be created: the caller's (checked), else the tool's.
pub(crate) async fn callback_for(
    params: &serde_json::Map<String, Value>,
    tool: &Tool,
    owner: &Owner,
    guard: Option<&dyn CallbackGuard>,
) -> Result<Option<Callback>, ToolError> {
    let Some(named) = params.get("_meta").and_then(|m| m.get(WEBHOOK_META)) else {
        return Ok(tool.callback.clone());
    };
    let invalid =
        |why: String| ToolError::from(ErrorObject::invalid_params(format!("_meta[\"{WEBHOOK_META}\"]: {why}")));
    let url = named.get("url").and_then(Value::as_str).ok_or_else(|| {
        invalid(r#"must be an object with a "url" string, e.g. {"url": "https://example.com/hook"}"#.into())
    })?;
    let every_status = match named.get("events").map(|e| e.as_str()) {
        None | Some(Some("terminal")) => false,
        Some(Some("all")) => true,
        Some(_) => return Err(invalid(r#""events" must be "terminal" or "all""#.into())),
    };
    let guard = guard.ok_or_else(|| invalid("this server does not send webhooks".into()))?;
    guard.check(owner, url).await.map_err(invalid)?;
    Ok(Some(Callback { url: url.to_owned(), every_status }))
}

/// Where a task's webhook deliveries stand, for `tasks/get`'s `_meta` (`None` without a
/// callback): the newest delivery's state, its attempts and last error, and how many events
/// were enqueued. A `dead` state is the dead letter: every attempt failed.
pub(crate) async fn delivery_meta(engine: &Engine, record: &TaskRecord) -> Option<serde_json::Map<String, Value>> {
    record.callback.as_ref()?;
    let deliveries = engine.store().deliveries(&record.id).await.ok()?;
    let mut summary = json!({"events": deliveries.len()});
    if let Some(last) = deliveries.last() {
        summary["state"] = json!(last.state.as_str());
        summary["attempts"] = json!(last.attempts);
        if let Some(e) = &last.last_error {
            summary["lastError"] = json!(e);
        }
        summary["dead"] = json!(deliveries.iter().filter(|d| d.state == DeliveryState::Dead).count());
    }
    Some(serde_json::Map::from_iter([(WEBHOOK_META.to_owned(), summary)]))
}
