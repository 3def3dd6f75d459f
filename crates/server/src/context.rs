//! What a handler can do while it runs: report progress, log, notice cancellation, ask the
//! client for input.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use serde_json::{Value, json};
use taskwire_engine::TaskHandle;
use taskwire_protocol::{ErrorObject, Id, ProtocolVersion, jsonrpc};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::error::{InputRequest, ToolError};
use crate::model::{LogLevel, Object, ToolOutput};
use crate::session::{Outgoing, Session, Sink};

/// How a request reached the server, which decides how input requests travel.
#[derive(Clone, Debug)]
pub(crate) enum Channel {
    /// Handshake era: server→client requests on the request's stream.
    Handshake(ProtocolVersion),
    /// 2026-07-28: input comes back in a retried request (MRTR); `answers` holds what the
    /// client already answered (from `inputResponses` and the sealed `requestState`).
    PerRequest { log_level: Option<LogLevel>, answers: Object, client_capabilities: Value },
}

struct Inner {
    session: Arc<Session>,
    request_id: Id,
    progress_token: Option<Value>,
    sink: Option<Sink>,
    cancel: CancellationToken,
    channel: Channel,
    /// Set once the call runs as a task: progress becomes the status message, input requests
    /// park the task in `input_required`.
    task: OnceLock<TaskHandle>,
    /// The authenticated principal, if any.
    principal: Option<String>,
    /// Present while the handler may still turn the call into a task ([`Context::promote_to_task`]).
    promote: Mutex<Option<oneshot::Sender<oneshot::Sender<()>>>>,
    /// Which start of the work this is, when it is not a task (a task's handle counts).
    attempt: AtomicU32,
    /// What the handler reported so far, kept if it times out.
    partial: Mutex<Option<ToolOutput>>,
    /// Run once if the work is cancelled or times out.
    cleanup: Mutex<Vec<CleanupHook>>,
}

type CleanupHook = Box<dyn FnOnce() + Send>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How a promotion request reaches the dispatcher: it answers once the task exists.
pub(crate) type PromoteRequest = oneshot::Sender<()>;

/// The handle a handler receives. Cheap to clone; every clone speaks for the same request.
#[derive(Clone)]
pub struct Context(Arc<Inner>);

impl Context {
    pub(crate) fn new(
        session: Arc<Session>,
        request_id: Id,
        progress_token: Option<Value>,
        sink: Option<Sink>,
        cancel: CancellationToken,
        channel: Channel,
    ) -> Self {
        Self(Arc::new(Inner {
            session,
            request_id,
            progress_token,
            sink,
            cancel,
            channel,
            task: OnceLock::new(),
            promote: Mutex::new(None),
            principal: None,
            attempt: AtomicU32::new(1),
            partial: Mutex::new(None),
            cleanup: Mutex::new(Vec::new()),
        }))
    }

    pub(crate) fn with_principal(mut self, principal: Option<String>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.0) {
            inner.principal = principal;
        }
        self
    }

    /// Who is calling: the authenticated principal, else the session or connection (the owner
    /// of the tasks this request creates or may list).
    pub fn owner(&self) -> taskwire_engine::Owner {
        taskwire_engine::Owner { principal: self.0.principal.clone(), scope: self.0.session.scope().to_owned() }
    }

    pub(crate) fn allow_promotion(&self) -> oneshot::Receiver<PromoteRequest> {
        let (tx, rx) = oneshot::channel();
        *self.0.promote.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        rx
    }

    pub(crate) fn bind_task(&self, handle: TaskHandle) {
        let _ = self.0.task.set(handle);
    }

    fn per_request(&self) -> bool {
        matches!(self.0.channel, Channel::PerRequest { .. })
    }

    /// Which start of the work this is: 1, then more for each retry after a transient failure
    /// ([`ToolError::Transient`]) or re-run after a crash.
    pub fn attempt(&self) -> u32 {
        self.0.task.get().map_or_else(|| self.0.attempt.load(Ordering::Acquire), |t| t.attempt())
    }

    pub(crate) fn task(&self) -> Option<&TaskHandle> {
        self.0.task.get()
    }

    pub(crate) fn set_attempt(&self, attempt: u32) {
        self.0.attempt.store(attempt, Ordering::Release);
    }

    /// Keeps `output` as what the work produced so far: if the tool runs past its timeout, the
    /// timeout error carries it (on a task: `error.data.partialOutput`, or the content of the
    /// 2025-11-25 error result). Each call replaces the previous one.
    pub fn set_partial_output(&self, output: ToolOutput) {
        *lock(&self.0.partial) = Some(output);
    }

    pub(crate) fn take_partial_output(&self) -> Option<ToolOutput> {
        lock(&self.0.partial).take()
    }

    /// Runs `hook` once if the work is cancelled or times out — also when an async handler is
    /// dropped mid-await, where its own code would never run again. Typical use: remove a
    /// temporary file, release an external lock, tell a remote job to stop.
    pub fn on_cancel(&self, hook: impl FnOnce() + Send + 'static) {
        lock(&self.0.cleanup).push(Box::new(hook));
    }

    pub(crate) fn run_cancel_hooks(&self) {
        let hooks = std::mem::take(&mut *lock(&self.0.cleanup));
        for hook in hooks {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(hook)).is_err() {
                tracing::warn!("a cancellation hook panicked");
            }
        }
    }

    /// Runs `work` in the background as a child of this call: when the call is cancelled or
    /// times out, the child is stopped too (its future is dropped; it can also watch
    /// `cancellation_token().child_token()` to stop cleanly). The handle yields `None` if the
    /// child was stopped.
    ///
    /// ```no_run
    /// # async fn f(ctx: taskwire_server::Context) {
    /// let shards: Vec<_> = (0..4).map(|i| ctx.spawn_child(async move { i * 2 })).collect();
    /// for shard in shards {
    ///     let _doubled: Option<i32> = shard.await.ok().flatten();
    /// }
    /// # }
    /// ```
    pub fn spawn_child<F>(&self, work: F) -> tokio::task::JoinHandle<Option<F::Output>>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let cancel = self.0.cancel.clone();
        tokio::spawn(async move {
            tokio::select! {
                out = work => Some(out),
                _ = cancel.cancelled() => None,
            }
        })
    }

    /// The task this call runs as, if it became one.
    pub fn task_id(&self) -> Option<&str> {
        self.0.task.get().map(|t| t.id().as_str())
    }

    /// Turns the rest of this call into a task: the client gets a `CreateTaskResult` now and
    /// the handler goes on in the background. Only tools declared with
    /// [`crate::Tool::task_on_promotion`] can promote, and only when the client can receive a
    /// task (a 2026-07-28 request that declared the tasks extension); otherwise this does nothing
    /// and the call simply goes on inline. Typical use: finish multi-round-trip input first,
    /// then promote before the long part.
    pub async fn promote_to_task(&self) {
        let request = self.0.promote.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(request) = request {
            let (ack, done) = oneshot::channel();
            if request.send(ack).is_ok() {
                let _ = done.await;
            }
        }
    }

    /// The JSON-RPC id of the request being handled.
    pub fn request_id(&self) -> &Id {
        &self.0.request_id
    }

    /// The protocol version this request is served at.
    pub fn protocol_version(&self) -> ProtocolVersion {
        match &self.0.channel {
            Channel::Handshake(v) => *v,
            Channel::PerRequest { .. } => ProtocolVersion::V2026_07_28,
        }
    }

    /// Whether the request was cancelled (by `notifications/cancelled`, or on the 2026-07-28
    /// HTTP wire by the client closing the stream). Blocking handlers poll this between steps.
    pub fn is_cancelled(&self) -> bool {
        self.0.cancel.is_cancelled()
    }

    /// Resolves when the request is cancelled.
    pub async fn cancelled(&self) {
        self.0.cancel.cancelled().await
    }

    /// The cancellation token, for handing to child work.
    pub fn cancellation_token(&self) -> &CancellationToken {
        &self.0.cancel
    }

    /// Sets the task's status message (writes are coalesced, so calling this per output line is
    /// cheap). Outside a task it does nothing: an inline call has no status to show.
    pub fn status(&self, message: impl Into<String>) {
        if let Some(task) = self.0.task.get() {
            task.set_status_message(message);
        }
    }

    /// Sends `notifications/progress` if the client asked for progress (sent a `progressToken`).
    ///
    /// In a task, progress also becomes the task's status message; on 2026-07-28 tasks it is
    /// the only progress channel (the extension has no progress notifications on tasks).
    pub async fn progress(&self, progress: f64, total: Option<f64>, message: Option<&str>) {
        if let Some(task) = self.0.task.get() {
            let text = match (message, total) {
                (Some(m), _) => m.to_owned(),
                (None, Some(t)) => format!("{progress}/{t}"),
                (None, None) => format!("{progress}"),
            };
            task.set_status_message(text);
            if self.per_request() {
                return;
            }
        }
        let Some(token) = &self.0.progress_token else {
            return;
        };
        let mut params = json!({"progressToken": token, "progress": progress});
        if let Some(t) = total {
            params["total"] = json!(t);
        }
        if let Some(m) = message {
            params["message"] = json!(m);
        }
        self.notify("notifications/progress", &params).await;
    }

    /// Sends `notifications/message` if the client wants messages at this level: in the
    /// handshake era per `logging/setLevel`; in 2026-07-28 only when the request opted in.
    pub async fn log(&self, level: LogLevel, logger: Option<&str>, data: Value) {
        let wanted = match &self.0.channel {
            Channel::Handshake(_) => self.0.session.logs(level),
            // The tasks extension carries no log messages for tasks.
            Channel::PerRequest { .. } if self.0.task.get().is_some() => false,
            Channel::PerRequest { log_level, .. } => log_level.is_some_and(|min| level >= min),
        };
        if !wanted {
            return;
        }
        let mut params = json!({"level": level.as_str(), "data": data});
        if let Some(l) = logger {
            params["logger"] = json!(l);
        }
        self.notify("notifications/message", &params).await;
    }

    /// Sends a notification on this request's stream (for a task: the session's standalone
    /// stream, tagged with the task's related-task `_meta`).
    pub async fn notify(&self, method: &str, params: &Value) {
        let Some(sink) = self.sink() else { return };
        let mut params = params.clone();
        if let Some(task) = self.0.task.get()
            && let Some(p) = params.as_object_mut()
        {
            let meta = p.entry("_meta").or_insert_with(|| json!({}));
            meta[taskwire_protocol::meta::RELATED_TASK] = json!({"taskId": task.id().as_str()});
        }
        let mut out = Vec::with_capacity(128);
        jsonrpc::write_notification(&mut out, method, &params.to_string());
        // A closed stream means the client is gone; the handler learns it through cancellation.
        let _ = sink.send(Outgoing::Message(Bytes::from(out))).await;
    }

    /// Sends a notification whose params are already serialized (no related-task tagging).
    pub(crate) async fn notify_raw(&self, method: &str, params_json: &str) {
        let Some(sink) = self.sink() else { return };
        let mut out = Vec::with_capacity(params_json.len() + 64);
        jsonrpc::write_notification(&mut out, method, params_json);
        let _ = sink.send(Outgoing::Message(Bytes::from(out))).await;
    }

    fn sink(&self) -> Option<Sink> {
        // A task outlives the request that created it: its messages use the session's stream.
        if self.0.task.get().is_some() {
            return self.0.session.standalone();
        }
        self.0.sink.clone().or_else(|| self.0.session.standalone())
    }

    /// Closes the current SSE connection and asks the client to resume after `retry_ms`
    /// (2025-11-25 SSE polling, SEP-1699). Messages sent meanwhile are replayed on resume.
    pub async fn close_sse_stream(&self, retry_ms: u64) {
        if let Some(sink) = &self.0.sink {
            let _ = sink.send(Outgoing::CloseStream { retry_ms }).await;
        }
    }

    /// Asks the client for input: `method` is `elicitation/create`, `sampling/createMessage` or
    /// `roots/list`; the answer is the client's result object.
    ///
    /// In the handshake era this sends a server→client request on the request's stream and
    /// waits. In 2026-07-28 it returns the answer if the client already gave it under `key`,
    /// else [`ToolError::InputRequired`]: propagate it with `?` and the server answers with an
    /// `InputRequiredResult`; the client retries the call with the answer. Handlers must
    /// therefore be deterministic up to their input requests, and use stable keys.
    pub async fn request_input(&self, key: &str, method: &str, params: Value) -> Result<Value, ToolError> {
        let mut answers =
            self.request_inputs(vec![InputRequest { key: key.into(), method: method.into(), params }]).await?;
        Ok(answers.pop().unwrap_or(Value::Null))
    }

    /// Asks for several inputs at once; the answers come back in the order asked.
    pub async fn request_inputs(&self, requests: Vec<InputRequest>) -> Result<Vec<Value>, ToolError> {
        if let Some(task) = self.0.task.get() {
            self.check_input_capabilities(&requests)?;
            let asked: serde_json::Map<String, Value> =
                requests.iter().map(|r| (r.key.clone(), json!({"method": r.method, "params": r.params}))).collect();
            let mut answers = task.request_inputs(asked).await.ok_or(ToolError::Cancelled)?;
            return Ok(requests.iter().map(|r| answers.remove(&r.key).unwrap_or(Value::Null)).collect());
        }
        match &self.0.channel {
            Channel::PerRequest { answers, .. } => {
                let missing: Vec<InputRequest> =
                    requests.iter().filter(|r| !answers.contains_key(&r.key)).cloned().collect();
                self.check_input_capabilities(&missing)?;
                if !missing.is_empty() {
                    return Err(ToolError::InputRequired(missing));
                }
                Ok(requests.iter().map(|r| answers[&r.key].clone()).collect())
            }
            Channel::Handshake(_) => {
                let mut out = Vec::with_capacity(requests.len());
                for r in requests {
                    out.push(self.ask_client(&r.method, &r.params).await?);
                }
                Ok(out)
            }
        }
    }

    /// A per-request client only gets input requests it declared it can answer.
    fn check_input_capabilities(&self, requests: &[InputRequest]) -> Result<(), ToolError> {
        let Channel::PerRequest { client_capabilities, .. } = &self.0.channel else { return Ok(()) };
        for r in requests {
            if let Some(cap) = capability_for(&r.method)
                && client_capabilities.get(cap).is_none()
            {
                return Err(ToolError::Protocol(ErrorObject::missing_client_capability(json!({ cap: {} }))));
            }
        }
        Ok(())
    }

    /// Whether the client declared a capability (e.g. `"elicitation"`, `"sampling"`).
    pub fn client_supports(&self, capability: &str) -> bool {
        match &self.0.channel {
            Channel::Handshake(_) => self.0.session.client_capabilities().get(capability).is_some(),
            Channel::PerRequest { client_capabilities, .. } => client_capabilities.get(capability).is_some(),
        }
    }

    async fn ask_client(&self, method: &str, params: &Value) -> Result<Value, ToolError> {
        let sink = self.sink().ok_or_else(|| {
            ToolError::Protocol(ErrorObject::internal("no stream to the client is open to send the request on"))
        })?;
        let session = &self.0.session;
        let (id, answer) = session.expect_answer();
        let mut out = Vec::with_capacity(256);
        jsonrpc::write_request(&mut out, &id, method, &params.to_string());
        if sink.send(Outgoing::Message(Bytes::from(out))).await.is_err() {
            session.forget_answer(&id);
            return Err(ToolError::Cancelled);
        }
        tokio::select! {
            outcome = answer => match outcome {
                Ok(Ok(result)) => Ok(result),
                Ok(Err(e)) => Err(ToolError::Protocol(ErrorObject::internal(format!(
                    "the client answered {method} with an error: {e}"
                )))),
                Err(_) => Err(ToolError::Cancelled),
            },
            _ = self.0.cancel.cancelled() => {
                session.forget_answer(&id);
                Err(ToolError::Cancelled)
            }
        }
    }
}

/// The client capability a server→client request method needs.
fn capability_for(method: &str) -> Option<&'static str> {
    match method {
        "elicitation/create" => Some("elicitation"),
        "sampling/createMessage" => Some("sampling"),
        "roots/list" => Some("roots"),
        _ => None,
    }
}
