//! The webhook outbox: events about task status changes, waiting to be POSTed.
//!
//! A task created with a [`Callback`](crate::task::Callback) gets an event enqueued **in the same
//! atomic step** as the status change it reports (every store calls [`Update::apply_with_event`]
//! inside its write), so a crash can lose neither the change nor its event: the transactional
//! outbox pattern. A dispatcher (the `taskwire-webhook` crate) claims due deliveries with a lease,
//! POSTs them, and settles each one: delivered, retry later, or dead.
//!
//! ```text
//!             claim (lease, attempts + 1)          2xx
//!  pending ─────────────────────────────► sending ─────► delivered
//!     ▲                                      │
//!     └───────── retry at next_attempt ──────┤ error, attempts left
//!                                            └─────────► dead       (no attempts left)
//! ```
//!
//! A claimed delivery whose dispatcher dies is claimed again once its lease lapses: delivery is
//! at-least-once, and receivers deduplicate by the delivery id (the `webhook-id` header), which
//! never changes between attempts.
//!
//! [`Update::apply_with_event`]: crate::store::Update::apply_with_event

use serde_json::{Value, json};

use crate::task::{TaskRecord, TaskStatus, TaskWire, rfc3339};

/// Results larger than this are not inlined in an event; the event says how to fetch them.
pub const MAX_INLINE_RESULT: usize = 64 * 1024;

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// Waiting for its next attempt (or being attempted, under a lease).
    Pending,
    /// A receiver answered 2xx.
    Delivered,
    /// Every attempt failed; it will not be tried again (the dead-letter state).
    Dead,
}

impl DeliveryState {
    /// The stored spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "delivered" => Self::Delivered,
            "dead" => Self::Dead,
            _ => return None,
        })
    }
}

/// One event for one destination.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    /// The delivery id, sent as `webhook-id` (`msg_` and 32 hex digits); the same on every attempt.
    pub id: String,
    /// The task the event is about.
    pub task_id: String,
    /// The destination.
    pub url: String,
    /// The JSON body, sent byte for byte as stored (it is what the signature covers).
    pub event: String,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts started so far (counted when claimed, so a dispatcher that dies mid-attempt
    /// still uses one up).
    pub attempts: u32,
    /// When the next attempt is due, milliseconds since the Unix epoch.
    pub next_attempt_ms: u64,
    /// The dispatcher attempting it now.
    pub lease_holder: Option<String>,
    /// Until when that dispatcher vouches for the attempt.
    pub lease_until_ms: Option<u64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the event was enqueued.
    pub created_at_ms: u64,
    /// Last change.
    pub updated_at_ms: u64,
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Settlement {
    /// The receiver answered 2xx.
    Delivered,
    /// It failed; try again at `at_ms`.
    Retry {
        /// When the next attempt is due.
        at_ms: u64,
        /// What went wrong.
        error: String,
    },
    /// It failed and no attempt is left.
    Dead {
        /// What went wrong last.
        error: String,
    },
}

impl Settlement {
    /// Applies the settlement to a claimed delivery (every store calls this).
    pub fn apply(self, d: &mut Delivery, now_ms: u64) {
        match self {
            Self::Delivered => {
                d.state = DeliveryState::Delivered;
                d.last_error = None;
            }
            Self::Retry { at_ms, error } => {
                d.next_attempt_ms = at_ms;
                d.last_error = Some(error);
            }
            Self::Dead { error } => {
                d.state = DeliveryState::Dead;
                d.last_error = Some(error);
            }
        }
        d.lease_holder = None;
        d.lease_until_ms = None;
        d.updated_at_ms = now_ms;
    }
}

/// The event type for a status.
pub const fn event_type(status: TaskStatus) -> &'static str {
    match status {
        TaskStatus::Working => "task.working",
        TaskStatus::InputRequired => "task.input_required",
        TaskStatus::Completed => "task.completed",
        TaskStatus::Failed => "task.failed",
        TaskStatus::Cancelled => "task.cancelled",
    }
}

/// The delivery a status change from `before` to `record.status` enqueues: none without a
/// callback, none when the status did not change, none for a non-terminal change unless the
/// subscriber asked for every status.
pub fn event_for(before: TaskStatus, record: &TaskRecord, now_ms: u64) -> Option<Delivery> {
    let callback = record.callback.as_ref()?;
    if before == record.status || !(record.status.is_terminal() || callback.every_status) {
        return None;
    }
    Some(Delivery {
        id: format!("msg_{}", uuid::Uuid::new_v4().simple()),
        task_id: record.id.as_str().to_owned(),
        url: callback.url.clone(),
        event: event_body(record, now_ms),
        state: DeliveryState::Pending,
        attempts: 0,
        next_attempt_ms: now_ms,
        lease_holder: None,
        lease_until_ms: None,
        last_error: None,
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
    })
}

/// The event body (Standard Webhooks' recommended `{type, timestamp, data}` shape):
///
/// ```json
/// {"type": "task.completed", "timestamp": "2026-11-21T10:00:00.123Z",
///  "data": {"taskId": "…", "tool": "build", "status": "completed", "statusMessage": "…",
///           "createdAt": "…", "lastUpdatedAt": "…", "result": {…}}}
/// ```
///
/// `data.result` (the tool result) or `data.error` (a JSON-RPC error) come inline up to
/// [`MAX_INLINE_RESULT`] bytes; beyond, `data.resultTooLarge` is `true` and `data.fetch` names
/// the request that returns it (`tasks/result` on the 2025-11-25 wire, `tasks/get` on the
/// extension).
fn event_body(r: &TaskRecord, now_ms: u64) -> String {
    let mut data = json!({
        "taskId": r.id.as_str(),
        "tool": r.tool,
        "status": r.status.as_str(),
        "createdAt": rfc3339(r.created_at_ms),
        "lastUpdatedAt": rfc3339(r.updated_at_ms),
    });
    if let Some(m) = &r.status_message {
        data["statusMessage"] = json!(m);
    }
    let outcome = [("result", &r.result), ("error", &r.error)];
    for (key, raw) in outcome {
        let Some(raw) = raw else { continue };
        if raw.len() > MAX_INLINE_RESULT {
            let method = if r.wire == TaskWire::Core { "tasks/result" } else { "tasks/get" };
            data["resultTooLarge"] = json!(true);
            data["fetch"] = json!({"method": method, "params": {"taskId": r.id.as_str()}});
        } else {
            data[key] = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.clone()));
        }
    }
    json!({"type": event_type(r.status), "timestamp": rfc3339(now_ms), "data": data}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{Callback, Owner, TaskId};

    fn record(status: TaskStatus, every_status: bool) -> TaskRecord {
        TaskRecord {
            id: TaskId::random(),
            owner: Owner::anonymous("s"),
            tool: "build".into(),
            status,
            status_message: Some("done".into()),
            created_at_ms: 1_000,
            updated_at_ms: 2_000,
            ttl_ms: None,
            poll_interval_ms: 500,
            result: Some(r#"{"content":[{"type":"text","text":"ok"}]}"#.into()),
            error: None,
            input_requests: None,
            attempt: 1,
            cancel_requested: false,
            arguments: None,
            wire: TaskWire::Extension,
            lease_holder: None,
            lease_until_ms: None,
            idempotency_key: None,
            callback: Some(Callback { url: "http://127.0.0.1:9/hook".into(), every_status }),
        }
    }

    #[test]
    fn terminal_changes_enqueue_one_event_with_the_result_inline() {
        let r = record(TaskStatus::Completed, false);
        let d = event_for(TaskStatus::Working, &r, 3_000).expect("an event");
        assert!(d.id.starts_with("msg_") && d.id.len() == 36, "{}", d.id);
        assert_eq!((d.state, d.attempts, d.next_attempt_ms), (DeliveryState::Pending, 0, 3_000));
        let body: Value = serde_json::from_str(&d.event).unwrap();
        assert_eq!(body["type"], "task.completed");
        assert_eq!(body["data"]["taskId"], r.id.as_str());
        assert_eq!(body["data"]["result"]["content"][0]["text"], "ok");
        assert_eq!(body["data"]["statusMessage"], "done");
    }

    #[test]
    fn non_terminal_changes_enqueue_only_when_every_status_was_asked_for() {
        let quiet = record(TaskStatus::InputRequired, false);
        assert!(event_for(TaskStatus::Working, &quiet, 1).is_none());
        let chatty = record(TaskStatus::InputRequired, true);
        assert!(event_for(TaskStatus::Working, &chatty, 1).is_some());
        // No change, no event.
        assert!(event_for(TaskStatus::InputRequired, &chatty, 1).is_none());
        let mut silent = record(TaskStatus::Completed, true);
        silent.callback = None;
        assert!(event_for(TaskStatus::Working, &silent, 1).is_none());
    }

    #[test]
    fn large_results_are_named_not_inlined() {
        let mut r = record(TaskStatus::Completed, false);
        r.wire = TaskWire::Core;
        r.result = Some(format!(r#"{{"content":[{{"type":"text","text":"{}"}}]}}"#, "x".repeat(MAX_INLINE_RESULT)));
        let body: Value = serde_json::from_str(&event_for(TaskStatus::Working, &r, 1).unwrap().event).unwrap();
        assert!(body["data"].get("result").is_none());
        assert_eq!(body["data"]["resultTooLarge"], true);
        assert_eq!(body["data"]["fetch"]["method"], "tasks/result");
    }

    #[test]
    fn settlements_release_the_lease() {
        let r = record(TaskStatus::Completed, false);
        let mut d = event_for(TaskStatus::Working, &r, 1).unwrap();
        d.lease_holder = Some("x".into());
        d.lease_until_ms = Some(10);
        Settlement::Retry { at_ms: 50, error: "HTTP 500".into() }.apply(&mut d, 5);
        assert_eq!((d.state, d.next_attempt_ms, d.lease_holder.as_deref()), (DeliveryState::Pending, 50, None));
        Settlement::Dead { error: "HTTP 500".into() }.apply(&mut d, 60);
        assert_eq!((d.state, d.last_error.as_deref()), (DeliveryState::Dead, Some("HTTP 500")));
    }
}
