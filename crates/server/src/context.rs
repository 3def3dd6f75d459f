//! What a handler can do while it runs: report progress, log, notice cancellation, ask the
//! client for input.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};
use taskwire_protocol::{ErrorObject, Id, ProtocolVersion, jsonrpc};
use tokio_util::sync::CancellationToken;

use crate::error::{InputRequest, ToolError};
use crate::model::{LogLevel, Object};
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
}

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
        Self(Arc::new(Inner { session, request_id, progress_token, sink, cancel, channel }))
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

    /// Sends `notifications/progress` if the client asked for progress (sent a `progressToken`).
    pub async fn progress(&self, progress: f64, total: Option<f64>, message: Option<&str>) {
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

    /// Sends a notification on this request's stream.
    pub async fn notify(&self, method: &str, params: &Value) {
        let Some(sink) = self.sink() else { return };
        let mut out = Vec::with_capacity(128);
        jsonrpc::write_notification(&mut out, method, &params.to_string());
        // A closed stream means the client is gone; the handler learns it through cancellation.
        let _ = sink.send(Outgoing::Message(Bytes::from(out))).await;
    }

    fn sink(&self) -> Option<Sink> {
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
        match &self.0.channel {
            Channel::PerRequest { answers, client_capabilities, .. } => {
                let missing: Vec<InputRequest> =
                    requests.iter().filter(|r| !answers.contains_key(&r.key)).cloned().collect();
                // A per-request client only gets input requests it declared it can answer.
                for r in &missing {
                    if let Some(cap) = capability_for(&r.method)
                        && client_capabilities.get(cap).is_none()
                    {
                        return Err(ToolError::Protocol(ErrorObject::missing_client_capability(json!({ cap: {} }))));
                    }
                }
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
