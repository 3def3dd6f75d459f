//! Connection-scoped state of the handshake era, and the channel messages leave through.

use std::collections::HashSet;

use foldhash::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::Value;
use taskwire_protocol::{ErrorObject, Id, ProtocolVersion};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::model::LogLevel;

/// What a transport sends on a stream besides the final response.
#[derive(Debug)]
pub enum Outgoing {
    /// A serialized JSON-RPC message (notification or server→client request).
    Message(Bytes),
    /// Close the current SSE connection after telling the client to reconnect in `retry_ms`
    /// (2025-11-25 SSE polling). Transports without SSE ignore it.
    CloseStream {
        /// Milliseconds the client waits before resuming.
        retry_ms: u64,
    },
}

/// Where a request's notifications and server→client requests go. Bounded: a slow reader
/// slows the handler down instead of growing memory.
pub type Sink = mpsc::Sender<Outgoing>;

/// How many outgoing messages may wait per stream.
pub const SINK_CAPACITY: usize = 64;

const LEVEL_UNSET: u8 = u8::MAX;

/// State of one handshake-era conversation: a stdio process or an HTTP session.
///
/// Per-request (2026-07-28) traffic uses a fresh, empty session per request: nothing may be
/// inferred from earlier requests.
#[derive(Debug, Default)]
pub struct Session {
    id: Option<String>,
    /// A unique scope for a session without an id, made only when first needed (it costs a
    /// random id, and most requests create or list no task).
    lazy_scope: std::sync::OnceLock<String>,
    negotiated: Mutex<Option<ProtocolVersion>>,
    client_capabilities: Mutex<Value>,
    initialized: AtomicBool,
    log_level: AtomicU8Level,
    subscriptions: Mutex<HashSet<String>>,
    in_flight: Mutex<InFlight>,
    pending: Mutex<HashMap<Id, oneshot::Sender<Result<Value, ErrorObject>>>>,
    next_request_id: AtomicI64,
    standalone: Mutex<Option<Sink>>,
}

/// Requests `notifications/cancelled` can reach, and whether the connection has ended: one lock,
/// so a request either is in the map that [`Session::cancel_all`] cancels or sees `ended`.
#[derive(Debug, Default)]
struct InFlight {
    requests: HashMap<Id, CancellationToken>,
    /// Set by `cancel_all`: a request that begins afterwards is cancelled at once.
    ended: bool,
}

/// A request registered with [`Session::begin`]; dropping it forgets the request.
#[derive(Debug)]
#[must_use = "the request is forgotten as soon as its registration is dropped"]
pub struct InFlightRequest {
    session: Arc<Session>,
    id: Id,
}

impl Drop for InFlightRequest {
    fn drop(&mut self) {
        lock(&self.session.in_flight).requests.remove(&self.id);
    }
}

#[derive(Debug)]
struct AtomicU8Level(AtomicU8);

impl Default for AtomicU8Level {
    fn default() -> Self {
        Self(AtomicU8::new(LEVEL_UNSET))
    }
}

impl Session {
    /// A session, optionally with an id (HTTP sessions have one, stdio does not).
    pub fn new(id: Option<String>) -> Self {
        Self { id, ..Self::default() }
    }

    /// The session id, if any.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// What scopes unauthenticated task listings: the session id, or a unique value for a
    /// session without one (so that its tasks are listed to nobody else).
    ///
    /// The unique value starts with the time, as task ids do: every sessionless request (the
    /// whole 2026-07-28 wire) has a scope of its own, and the durable store indexes tasks by
    /// scope, so random scopes would put each creation on a random page of that index (a page
    /// written per task; ordered ones share the index's last page).
    pub fn scope(&self) -> &str {
        match &self.id {
            Some(id) => id,
            None => self.lazy_scope.get_or_init(|| ["anonymous-", &taskwire_engine::time_ordered_unique()].concat()),
        }
    }

    /// The negotiated version, once `initialize` succeeded.
    pub fn negotiated(&self) -> Option<ProtocolVersion> {
        *lock(&self.negotiated)
    }

    /// Records the negotiated version and the client's capabilities (done by `initialize`, or by a
    /// sessionless transport from the `MCP-Protocol-Version` header).
    pub fn set_negotiated(&self, v: ProtocolVersion, caps: Value) {
        *lock(&self.negotiated) = Some(v);
        *lock(&self.client_capabilities) = caps;
    }

    /// The capabilities the client declared at `initialize`.
    pub fn client_capabilities(&self) -> Value {
        lock(&self.client_capabilities).clone()
    }

    pub(crate) fn mark_initialized(&self) {
        self.initialized.store(true, Ordering::Relaxed);
    }

    /// Whether `notifications/initialized` arrived.
    pub fn is_initialized(&self) -> bool {
        self.initialized.load(Ordering::Relaxed)
    }

    pub(crate) fn set_log_level(&self, level: LogLevel) {
        self.log_level.0.store(level as u8, Ordering::Relaxed);
    }

    /// Whether a log message at `level` should be sent (everything until the client sets a level).
    pub(crate) fn logs(&self, level: LogLevel) -> bool {
        let min = self.log_level.0.load(Ordering::Relaxed);
        min == LEVEL_UNSET || level as u8 >= min
    }

    pub(crate) fn subscribe(&self, uri: &str) {
        lock(&self.subscriptions).insert(uri.to_owned());
    }

    pub(crate) fn unsubscribe(&self, uri: &str) {
        lock(&self.subscriptions).remove(uri);
    }

    /// Whether the client subscribed to `uri`.
    pub fn is_subscribed(&self, uri: &str) -> bool {
        lock(&self.subscriptions).contains(uri)
    }

    /// Registers an in-flight request so that `notifications/cancelled` can reach it, until the
    /// returned registration is dropped. Transports register a request before they read the
    /// next message, so that a cancel right behind its request finds it; [`Server::run`] does
    /// not register.
    ///
    /// [`Server::run`]: crate::Server::run
    ///
    /// ```
    /// use std::sync::Arc;
    /// use taskwire_protocol::Id;
    /// use taskwire_server::Session;
    /// use tokio_util::sync::CancellationToken;
    ///
    /// let session = Arc::new(Session::new(None));
    /// let token = CancellationToken::new();
    /// let registered = session.begin(&Id::Number(7), token.clone());
    /// session.cancel(&Id::Number(7));
    /// assert!(token.is_cancelled());
    /// drop(registered); // the request is forgotten: a later cancel naming 7 finds nothing
    /// ```
    pub fn begin(self: &Arc<Self>, id: &Id, token: CancellationToken) -> InFlightRequest {
        let mut in_flight = lock(&self.in_flight);
        if in_flight.ended {
            token.cancel();
        } else {
            in_flight.requests.insert(id.clone(), token);
        }
        InFlightRequest { session: self.clone(), id: id.clone() }
    }

    /// Cancels an in-flight request (`notifications/cancelled`). Unknown ids are ignored.
    pub fn cancel(&self, id: &Id) {
        if let Some(token) = lock(&self.in_flight).requests.get(id) {
            token.cancel();
        }
    }

    /// Cancels every in-flight request and every one that begins later (the connection ended).
    pub fn cancel_all(&self) {
        let mut in_flight = lock(&self.in_flight);
        in_flight.ended = true;
        for token in in_flight.requests.values() {
            token.cancel();
        }
    }

    /// Registers a server→client request and returns its id and the receiver of its answer.
    pub(crate) fn expect_answer(&self) -> (Id, oneshot::Receiver<Result<Value, ErrorObject>>) {
        let id = Id::String(format!("tw-{}", self.next_request_id.fetch_add(1, Ordering::Relaxed)));
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id.clone(), tx);
        (id, rx)
    }

    pub(crate) fn forget_answer(&self, id: &Id) {
        lock(&self.pending).remove(id);
    }

    /// Delivers the client's answer to a server→client request. Returns false for unknown ids.
    pub fn answer(&self, id: &Id, outcome: Result<Value, ErrorObject>) -> bool {
        match lock(&self.pending).remove(id) {
            Some(tx) => tx.send(outcome).is_ok(),
            None => false,
        }
    }

    /// Delivers a response or error response the client sent to the server→client request it
    /// answers (every transport receives these the same way). False for other messages and
    /// unknown ids.
    pub fn answer_message<P>(&self, message: taskwire_protocol::jsonrpc::Message<P>) -> bool {
        use taskwire_protocol::jsonrpc::Message;
        match message {
            Message::Response(r) => self.answer(&r.id, Ok(serde_json::from_str(r.result.get()).unwrap_or_default())),
            Message::Error(e) => e.id.is_some_and(|id| self.answer(&id, Err(e.error))),
            Message::Request(_) | Message::Notification(_) => false,
        }
    }

    /// Sets where messages unrelated to any request go (the stdio writer, the HTTP GET stream).
    pub fn set_standalone(&self, sink: Option<Sink>) {
        *lock(&self.standalone) = sink;
    }

    /// The stream for messages unrelated to any request, if one is open.
    pub fn standalone(&self) -> Option<Sink> {
        lock(&self.standalone).clone()
    }
}

/// Locks a mutex, recovering the data if a holder panicked: every critical section here is a
/// single map or field update that cannot leave the data half-written.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session without an id gets a scope of its own that starts with the time it was made (so
    /// a store's scope index takes it at its end), and keeps it; a session with an id is scoped
    /// by its id.
    #[test]
    fn sessionless_scopes_are_unique_and_start_with_the_time() {
        let before = taskwire_engine::now_ms();
        let (a, b) = (Session::new(None), Session::new(None));
        let (scope_a, scope_b) = (a.scope().to_owned(), b.scope().to_owned());
        let after = taskwire_engine::now_ms();
        assert_ne!(scope_a, scope_b);
        assert_eq!(a.scope(), scope_a, "a session's scope never changes");
        for scope in [&scope_a, &scope_b] {
            let unique = scope.strip_prefix("anonymous-").expect("an anonymous scope");
            let made = u64::from_str_radix(&unique[..12], 16).expect("a hex time prefix");
            assert!((before..=after).contains(&made), "{scope} does not start with its creation time");
        }
        assert_eq!(Session::new(Some("sid".into())).scope(), "sid");
    }

    /// A request that begins after the connection ended is cancelled at once; one in flight is
    /// cancelled by the end; `notifications/cancelled` reaches only the request it names.
    #[test]
    fn cancel_all_reaches_requests_in_flight_and_those_that_begin_later() {
        let session = Arc::new(Session::new(None));
        let (first, second, late) = (CancellationToken::new(), CancellationToken::new(), CancellationToken::new());
        let _first = session.begin(&Id::Number(1), first.clone());
        let _second = session.begin(&Id::Number(2), second.clone());
        session.cancel(&Id::Number(1));
        assert!(first.is_cancelled() && !second.is_cancelled());
        session.cancel_all();
        assert!(second.is_cancelled());
        let _late = session.begin(&Id::Number(3), late.clone());
        assert!(late.is_cancelled(), "a request that began after the end runs cancelled");
    }

    /// A request whose registration is dropped is out of reach: a cancel naming its id later
    /// (an id the client may reuse) touches nothing, and the session holds no entry for it.
    #[test]
    fn a_dropped_registration_forgets_its_request() {
        let session = Arc::new(Session::new(None));
        let token = CancellationToken::new();
        drop(session.begin(&Id::Number(1), token.clone()));
        session.cancel(&Id::Number(1));
        assert!(!token.is_cancelled());
        assert!(lock(&session.in_flight).requests.is_empty());
    }
}
