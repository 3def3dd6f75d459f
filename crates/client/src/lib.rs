//! A lossless MCP client: the half of taskwire that talks *to* MCP servers.
//!
//! The proxy uses it to reach the server it fronts, the CLI to drive a server from the command
//! line. Results stay raw JSON ([`RawValue`]) so that nothing a server sends is lost on the way
//! through, and whatever the server sends that is not a response arrives as [`Incoming`]: on the
//! [`Call`] it belongs to when that can be known, else on the client's own receiver.
//!
//! Two links: a child process speaking newline-delimited JSON-RPC on its standard streams
//! ([`Client::spawn`]), and Streamable HTTP ([`Client::connect_http`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), taskwire_client::ClientError> {
//! use taskwire_client::{Client, HttpOptions};
//! let (client, _incoming) = Client::connect_http("http://127.0.0.1:3000/mcp", HttpOptions::default())?;
//! client.initialize(serde_json::json!({})).await?;
//! let result = client.request("tools/list", None).await?;
//! println!("{}", result.get());
//! # Ok(()) }
//! ```

mod http;
mod slot;
mod sse;
mod stdio;

use foldhash::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use taskwire_protocol::jsonrpc::{self, ErrorObject, Id, Message};
use tokio::sync::mpsc;

use slot::CallSlot;

pub use http::HttpOptions;
pub use stdio::StdioCommand;

/// The protocol revision the client asks for in `initialize`.
pub const CLIENT_PROTOCOL_VERSION: &str = "2025-11-25";

/// How many messages wait on a receiver before the link stops reading (backpressure).
const EVENT_BUFFER: usize = 256;

/// What went wrong talking to a server.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached or started.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The connection ended (the process exited, the stream closed) before the answer came.
    #[error("the connection closed: {0}")]
    Closed(String),
    /// The server answered with a JSON-RPC error.
    #[error("the server answered error {}: {}", .0.code, .0.message)]
    Rpc(ErrorObject),
    /// The server answered HTTP with a status that carries no JSON-RPC message.
    #[error("the server answered HTTP {status}: {body}")]
    Http {
        /// The HTTP status code.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The server sent something that is not the JSON-RPC it should be.
    #[error("the server sent invalid JSON-RPC: {0}")]
    Invalid(String),
    /// The request was cancelled by this client.
    #[error("the request was cancelled")]
    Cancelled,
}

/// A message from the server that is not a response: a notification, or a request the client
/// must answer with [`ServerRequest::respond`].
#[derive(Debug)]
pub enum Incoming {
    /// A notification.
    Notification {
        /// Its method.
        method: String,
        /// Its params, raw.
        params: Option<Box<RawValue>>,
    },
    /// A server→client request (sampling, elicitation, roots, ping).
    Request(ServerRequest),
}

impl Incoming {
    /// The method of the notification or request.
    pub fn method(&self) -> &str {
        match self {
            Incoming::Notification { method, .. } => method,
            Incoming::Request(r) => &r.method,
        }
    }
}

/// A request from the server, to be answered once.
#[derive(Debug)]
pub struct ServerRequest {
    /// The server's id for it.
    pub id: Id,
    /// Its method.
    pub method: String,
    /// Its params, raw.
    pub params: Option<Box<RawValue>>,
    client: Client,
}

impl ServerRequest {
    /// Sends the answer (a result object or an error) back to the server.
    pub async fn respond(self, outcome: Result<Value, ErrorObject>) -> Result<(), ClientError> {
        let mut out = Vec::with_capacity(128);
        match outcome {
            Ok(result) => jsonrpc::write_response(&mut out, &self.id, &result.to_string()),
            Err(error) => jsonrpc::write_error(&mut out, Some(&self.id), &error),
        }
        self.client.shared.link.send(&self.client, out, None).await
    }
}

/// A request in flight: its answer, and what the server sent that belongs to it.
#[derive(Debug)]
pub struct Call {
    id: i64,
    slot: Arc<CallSlot>,
    client: Client,
}

impl Drop for Call {
    fn drop(&mut self) {
        self.slot.forget();
    }
}

impl Call {
    /// The id this client gave the request.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// The next message that belongs to this call (its progress; over HTTP, everything sent on
    /// its stream; over stdio, log messages, sampling and elicitation while it is the newest call),
    /// or the final answer.
    pub async fn next(&mut self) -> CallEvent {
        std::future::poll_fn(|cx| self.slot.poll_next(cx)).await
    }

    /// Waits for the answer, dropping whatever else arrives for the call.
    pub async fn result(mut self) -> Result<Box<RawValue>, ClientError> {
        loop {
            if let CallEvent::Done(r) = self.next().await {
                return r;
            }
        }
    }

    /// Sends `notifications/cancelled` for this request; its answer becomes
    /// [`ClientError::Cancelled`].
    pub async fn cancel(&self, reason: &str) {
        self.client.cancel(self.id, reason).await;
    }
}

/// What [`Call::next`] yields.
#[derive(Debug)]
pub enum CallEvent {
    /// A notification or server request that belongs to the call.
    Incoming(Incoming),
    /// The answer.
    Done(Result<Box<RawValue>, ClientError>),
}

pub(crate) struct Shared {
    link: Link,
    next_id: AtomicI64,
    /// Every request still waiting for its answer. Whoever takes one out answers it.
    pending: Mutex<HashMap<i64, Arc<CallSlot>>>,
    incoming: mpsc::Sender<Incoming>,
    closed: OnceLock<String>,
    closed_signal: tokio::sync::Notify,
    negotiated: OnceLock<String>,
}

enum Link {
    Stdio(stdio::StdioLink),
    Http(http::HttpLink),
}

impl Link {
    /// Boxed, because routing an HTTP answer can send again (answering a server request), and
    /// the compiler cannot see that a recursive future is `Send` unless it is spelled out.
    fn send<'a>(
        &'a self,
        client: &'a Client,
        message: Vec<u8>,
        call: Option<i64>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ClientError>> + Send + 'a>> {
        match self {
            Link::Stdio(l) => Box::pin(l.send(message)),
            Link::Http(l) => Box::pin(l.send(client, message, call)),
        }
    }
}

/// A connection to one MCP server. Cheap to clone; the connection ends when the last clone
/// is dropped (a child process is killed).
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Client {
    fn with_link(link: Link) -> (Client, mpsc::Receiver<Incoming>) {
        let (incoming, rx) = mpsc::channel(EVENT_BUFFER);
        let shared = Shared {
            link,
            next_id: AtomicI64::new(1),
            pending: Mutex::new(HashMap::default()),
            incoming,
            closed: OnceLock::new(),
            closed_signal: tokio::sync::Notify::new(),
            negotiated: OnceLock::new(),
        };
        (Client { shared: Arc::new(shared) }, rx)
    }

    /// Starts `command` as a child process (in its own process group, killed when the client is
    /// dropped) and speaks JSON-RPC on its standard input and output. Its standard error is
    /// inherited.
    pub fn spawn(command: StdioCommand) -> Result<(Client, mpsc::Receiver<Incoming>), ClientError> {
        let (link, io) = stdio::StdioLink::spawn(&command)?;
        let (client, rx) = Self::with_link(Link::Stdio(link));
        io.start(client.clone());
        Ok((client, rx))
    }

    /// Talks Streamable HTTP to the endpoint at `url` (nothing is sent until the first request).
    pub fn connect_http(url: &str, options: HttpOptions) -> Result<(Client, mpsc::Receiver<Incoming>), ClientError> {
        let link = http::HttpLink::new(url, options)?;
        Ok(Self::with_link(Link::Http(link)))
    }

    /// The handshake: `initialize` with the given client capabilities, then
    /// `notifications/initialized`. Returns the server's `InitializeResult`.
    pub async fn initialize(&self, capabilities: Value) -> Result<Value, ClientError> {
        let params = json!({
            "protocolVersion": CLIENT_PROTOCOL_VERSION,
            "capabilities": capabilities,
            "clientInfo": {"name": "taskwire", "version": env!("CARGO_PKG_VERSION")},
        });
        let raw = self.request("initialize", Some(&params)).await?;
        let result: Value = serde_json::from_str(raw.get()).map_err(|e| ClientError::Invalid(e.to_string()))?;
        let version = result.get("protocolVersion").and_then(Value::as_str).unwrap_or(CLIENT_PROTOCOL_VERSION);
        let _ = self.shared.negotiated.set(version.to_owned());
        self.notify("notifications/initialized", None).await?;
        if let Link::Http(l) = &self.shared.link {
            l.open_listen_stream(self.clone());
        }
        Ok(result)
    }

    /// The protocol revision `initialize` settled on.
    pub fn negotiated_version(&self) -> Option<&str> {
        self.shared.negotiated.get().map(String::as_str)
    }

    /// Sends a request and waits for its answer, dropping anything else that belongs to it.
    /// `params` must be a JSON object (MCP's params always are) or absent.
    pub async fn request(&self, method: &str, params: Option<&Value>) -> Result<Box<RawValue>, ClientError> {
        let params = match params {
            None => Map::new(),
            Some(Value::Object(object)) => object.clone(),
            Some(_) => return Err(ClientError::Invalid("request params must be a JSON object".into())),
        };
        self.start(method, params, false).await?.result().await
    }

    /// Sends a request and returns it in flight. With `progress`, or when `params._meta` already
    /// has a `progressToken`, a token of the client's own goes in its place, so that progress
    /// from the server reaches this [`Call`]; otherwise the params go out as they are.
    ///
    /// The params are an object rather than text so that the token goes in without parsing and
    /// serializing them twice (that was a tenth of a proxied call's instructions).
    pub async fn start(
        &self,
        method: &str,
        mut params: Map<String, Value>,
        progress: bool,
    ) -> Result<Call, ClientError> {
        if self.shared.closed.get().is_some() {
            return Err(self.closed_error());
        }
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let mut out = Vec::with_capacity(256);
        jsonrpc::write_request_head(&mut out, &Id::Number(id), method);
        if progress || has_progress_token(&params) {
            write_params_with_progress_token(&mut out, &mut params, id);
        } else {
            // A map of JSON values with string keys always serializes.
            let _ = serde_json::to_writer(&mut out, &params);
        }
        out.push(b'}');
        let slot = Arc::new(CallSlot::default());
        lock(&self.shared.pending).insert(id, slot.clone());
        if let Err(e) = self.shared.link.send(self, out, Some(id)).await {
            lock(&self.shared.pending).remove(&id);
            return Err(e);
        }
        Ok(Call { id, slot, client: self.clone() })
    }

    /// Sends a notification.
    pub async fn notify(&self, method: &str, params: Option<&Value>) -> Result<(), ClientError> {
        let mut out = Vec::with_capacity(64);
        let params = match params {
            Some(p) => serde_json::to_string(p).map_err(|e| ClientError::Invalid(e.to_string()))?,
            None => "{}".to_owned(),
        };
        jsonrpc::write_notification(&mut out, method, &params);
        self.shared.link.send(self, out, None).await
    }

    /// Cancels request `id` (`notifications/cancelled`); its answer becomes
    /// [`ClientError::Cancelled`].
    pub async fn cancel(&self, id: i64, reason: &str) {
        if let Some(slot) = lock(&self.shared.pending).remove(&id) {
            slot.answer(Err(ClientError::Cancelled));
        }
        let _ = self.notify("notifications/cancelled", Some(&json!({"requestId": id, "reason": reason}))).await;
    }

    /// Whether the connection has ended, and why.
    pub fn closed_reason(&self) -> Option<&str> {
        self.shared.closed.get().map(String::as_str)
    }

    /// Waits until the connection ends (a child process exits). An HTTP connection has no end
    /// of its own: each request succeeds or fails by itself.
    pub async fn closed(&self) {
        loop {
            let notified = self.shared.closed_signal.notified();
            if self.shared.closed.get().is_some() {
                return;
            }
            notified.await;
        }
    }

    fn closed_error(&self) -> ClientError {
        ClientError::Closed(self.shared.closed.get().cloned().unwrap_or_else(|| "the connection ended".into()))
    }

    /// Ends the connection: every request still waiting gets [`ClientError::Closed`].
    pub(crate) fn mark_closed(&self, reason: String) {
        let _ = self.shared.closed.set(reason);
        self.shared.closed_signal.notify_waiters();
        let pending: Vec<Arc<CallSlot>> = lock(&self.shared.pending).drain().map(|(_, slot)| slot).collect();
        for slot in pending {
            slot.answer(Err(self.closed_error()));
        }
    }

    /// Routes one message from the server. `stream_of` names the call whose HTTP response
    /// stream carried it (none for stdio and the standalone stream).
    pub(crate) async fn route(&self, bytes: &[u8], stream_of: Option<i64>) {
        let message = match Message::parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("ignoring a message the server sent that is not JSON-RPC: {e}");
                return;
            }
        };
        match message {
            Message::Response(r) => self.answer(&r.id, Ok(r.result)),
            Message::Error(e) => match e.id {
                Some(id) => self.answer(&id, Err(ClientError::Rpc(e.error))),
                None => tracing::warn!("the server sent an error without an id: {}", e.error.message),
            },
            Message::Notification(n) => {
                let target = self.owner_of(&n.method, n.params.as_deref(), stream_of);
                self.deliver(target, Incoming::Notification { method: n.method, params: n.params }).await;
            }
            Message::Request(r) => {
                let target = self.owner_of(&r.method, None, stream_of);
                let request = ServerRequest { id: r.id, method: r.method, params: r.params, client: self.clone() };
                self.deliver(target, Incoming::Request(request)).await;
            }
        }
    }

    fn is_pending(&self, id: i64) -> bool {
        lock(&self.shared.pending).contains_key(&id)
    }

    fn answer(&self, id: &Id, outcome: Result<Box<RawValue>, ClientError>) {
        let Id::Number(n) = id else { return };
        let slot = lock(&self.shared.pending).remove(n);
        if let Some(slot) = slot {
            slot.answer(outcome);
        }
    }

    /// Which call a message belongs to. Progress names its call by token; a message on a call's
    /// HTTP stream belongs to that call; over stdio, where nothing else tells, everything but
    /// session-level notifications (list changes, resource updates, task status) goes to the
    /// newest call in flight: exact when one call runs at a time, a guess otherwise.
    fn owner_of(&self, method: &str, params: Option<&RawValue>, stream_of: Option<i64>) -> Option<Arc<CallSlot>> {
        let pending = lock(&self.shared.pending);
        if method == "notifications/progress" {
            let token = params
                .and_then(|p| serde_json::from_str::<Value>(p.get()).ok())
                .and_then(|v| v.get("progressToken").and_then(Value::as_str).and_then(call_of_progress_token));
            if let Some(id) = token {
                return pending.get(&id).cloned();
            }
        }
        if let Some(id) = stream_of {
            return pending.get(&id).cloned();
        }
        if !is_session_level(method) && matches!(self.shared.link, Link::Stdio(_)) {
            return pending.iter().max_by_key(|(id, _)| **id).map(|(_, slot)| slot.clone());
        }
        None
    }

    async fn deliver(&self, target: Option<Arc<CallSlot>>, incoming: Incoming) {
        let incoming = match target {
            Some(slot) => match slot.deliver(incoming).await {
                Ok(()) => return,
                Err(back) => back,
            },
            None => incoming,
        };
        if let Err(mpsc::error::SendError(Incoming::Request(r))) = self.shared.incoming.send(incoming).await {
            // Nobody listens: say so rather than leave the server waiting.
            let _ = r.respond(Err(ErrorObject::method_not_found("this client handles no server requests"))).await;
        }
    }
}

/// Notifications about the session rather than any one request.
fn is_session_level(method: &str) -> bool {
    method.ends_with("/list_changed")
        || matches!(method, "notifications/resources/updated" | "notifications/tasks/status" | "roots/list" | "ping")
}

/// This client's progress tokens name their call: the prefix, then the request id.
const PROGRESS_TOKEN_PREFIX: &str = "taskwire-";

/// The request a progress token of this client's names.
fn call_of_progress_token(token: &str) -> Option<i64> {
    token.strip_prefix(PROGRESS_TOKEN_PREFIX)?.parse().ok()
}

/// Writes `params` with `_meta.progressToken` set to the token of call `id`. Without a `_meta`
/// (what a proxied `tools/call` sends) the token is written in front of the serialized members,
/// so the map is neither changed nor searched; with one, the token goes into it, replacing the
/// caller's and keeping the rest.
fn write_params_with_progress_token(out: &mut Vec<u8>, params: &mut Map<String, Value>, id: i64) {
    let mut token = String::with_capacity(PROGRESS_TOKEN_PREFIX.len() + 20);
    token.push_str(PROGRESS_TOKEN_PREFIX);
    token.push_str(itoa::Buffer::new().format(id));
    if params.contains_key("_meta") {
        insert_progress_token(params, &token);
        let _ = serde_json::to_writer(&mut *out, params);
        return;
    }
    out.extend_from_slice(br#"{"_meta":{"progressToken":""#);
    out.extend_from_slice(token.as_bytes());
    out.extend_from_slice(br#""}"#);
    let members = out.len();
    // Serialized, a map starts with `{`: it becomes the comma after `_meta`.
    let _ = serde_json::to_writer(&mut *out, params);
    if params.is_empty() {
        out.truncate(members);
        out.push(b'}');
    } else {
        out[members] = b',';
    }
}

fn has_progress_token(params: &Map<String, Value>) -> bool {
    params.get("_meta").and_then(|m| m.get("progressToken")).is_some()
}

/// Puts `progressToken` into `params._meta`, replacing the caller's and keeping the rest.
fn insert_progress_token(params: &mut Map<String, Value>, token: &str) {
    let meta = params.entry("_meta").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    if let Value::Object(m) = meta {
        m.insert("progressToken".into(), Value::String(token.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written_with_token(params: Value, id: i64) -> Value {
        let Value::Object(mut params) = params else { panic!("params must be an object") };
        let mut out = Vec::new();
        write_params_with_progress_token(&mut out, &mut params, id);
        serde_json::from_slice(&out).expect("the params written are JSON")
    }

    #[test]
    fn the_progress_token_is_written_in_front_of_params_without_meta() {
        assert_eq!(
            written_with_token(json!({"name": "x", "arguments": {"a": [1]}}), 42),
            json!({"_meta": {"progressToken": "taskwire-42"}, "name": "x", "arguments": {"a": [1]}})
        );
        assert_eq!(written_with_token(json!({}), 7), json!({"_meta": {"progressToken": "taskwire-7"}}));
        assert_eq!(
            written_with_token(json!({"_meta": {"progressToken": 1, "k": 2}}), 8),
            json!({"_meta": {"progressToken": "taskwire-8", "k": 2}})
        );
        assert_eq!(call_of_progress_token("taskwire-42"), Some(42));
        assert_eq!(call_of_progress_token("other-42"), None);
        assert_eq!(call_of_progress_token("taskwire-x"), None);
    }

    #[test]
    fn progress_token_replaces_the_callers_and_keeps_other_meta() {
        let Value::Object(mut params) = json!({"name": "x", "_meta": {"progressToken": 7, "k": 1}}) else { panic!() };
        assert!(has_progress_token(&params));
        insert_progress_token(&mut params, "taskwire-3");
        assert_eq!(Value::Object(params), json!({"name": "x", "_meta": {"progressToken": "taskwire-3", "k": 1}}));
    }

    #[test]
    fn a_progress_token_gets_a_meta_object_when_there_is_none_or_it_is_not_one() {
        for start in [json!({"name": "x"}), json!({"name": "x", "_meta": 5})] {
            let Value::Object(mut params) = start else { panic!() };
            assert!(!has_progress_token(&params));
            insert_progress_token(&mut params, "t");
            assert_eq!(params["_meta"], json!({"progressToken": "t"}));
        }
    }

    #[tokio::test]
    async fn params_that_are_not_an_object_are_refused() {
        let (client, _incoming) = Client::connect_http("http://127.0.0.1:9/mcp", HttpOptions::default()).unwrap();
        let refused = client.request("tools/list", Some(&json!([1]))).await;
        assert!(matches!(refused, Err(ClientError::Invalid(_))), "{refused:?}");
    }
}
