//! What a tool handler can fail with.

use serde_json::Value;
use taskwire_protocol::ErrorObject;

/// A failure that is not a tool execution error.
///
/// Tool execution errors (the model should read them and adapt) are successful results with
/// `isError: true`: return [`crate::model::ToolOutput::error`]. A `ToolError` is for what the
/// protocol itself must report.
#[derive(Debug)]
pub enum ToolError {
    /// A tool execution error, answered as a result with `isError: true` so the model can read it
    /// and correct itself (SEP-1303: invalid arguments are reported this way).
    Execution(String),
    /// Answer with this JSON-RPC error.
    Protocol(ErrorObject),
    /// 2026-07-28 multi-round-trip: the call needs these client inputs before it can go on.
    /// Produced by [`crate::Context::request_input`]; propagate it with `?`.
    InputRequired(Vec<InputRequest>),
    /// The request was cancelled; no answer is sent.
    Cancelled,
    /// A failure that may pass if the work runs again (a flaky network, a busy peer). A tool
    /// declared [`crate::Tool::retryable`] is retried with backoff; otherwise, or once no attempt
    /// is left, it is answered like [`ToolError::Execution`].
    Transient(String),
    /// The tool ran past its timeout ([`crate::Tool::timeout`]); produced by the server, which
    /// keeps whatever partial output the handler reported ([`crate::Context::set_partial_output`]).
    TimedOut {
        /// The timeout that passed.
        after: std::time::Duration,
        /// The partial output, if any.
        partial: Option<Box<crate::model::ToolOutput>>,
    },
}

impl ToolError {
    /// A transient failure: see [`ToolError::Transient`].
    pub fn transient(message: impl Into<String>) -> Self {
        ToolError::Transient(message.into())
    }
}

/// One input a handler needs from the client: a key unique within the call, and the
/// server→client request (`elicitation/create`, `sampling/createMessage`, `roots/list`).
#[derive(Debug, Clone)]
pub struct InputRequest {
    /// Key under which the client answers.
    pub key: String,
    /// The request method.
    pub method: String,
    /// The request params.
    pub params: Value,
}

impl From<ErrorObject> for ToolError {
    fn from(e: ErrorObject) -> Self {
        ToolError::Protocol(e)
    }
}

impl std::fmt::Display for ToolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ToolError::Execution(m) => f.write_str(m),
            ToolError::Protocol(e) => write!(f, "{e}"),
            ToolError::InputRequired(r) => write!(f, "{} client input(s) required", r.len()),
            ToolError::Cancelled => f.write_str("cancelled"),
            ToolError::Transient(m) => f.write_str(m),
            ToolError::TimedOut { after, .. } => write!(f, "timed out after {} ms", after.as_millis()),
        }
    }
}

impl std::error::Error for ToolError {}
