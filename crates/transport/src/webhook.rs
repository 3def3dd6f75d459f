//! MCP over webhooks, compatible with asyncmcp 0.2.1's webhook client, and the link that posts a
//! session's messages to its webhook (shared with the Streamable HTTP hybrid, [`crate::http`]).
//!
//! The client POSTs one JSON-RPC message at a time to `/mcp/request` with `X-Client-ID`; every
//! answer, notification and server→client request is POSTed to the `webhookUrl` it named in
//! `initialize`'s `params._meta`, one message per POST, with `X-Session-ID`:
//!
//! | client sends | HTTP answer | then, by webhook |
//! | --- | --- | --- |
//! | no `X-Client-ID` | 400, JSON-RPC -32600 (id `"server-error"`) | — |
//! | `initialize` without `_meta.webhookUrl` | 400 `{"error": …}` | — |
//! | `initialize` to a refused destination | 400 `{"error": why}` | — |
//! | `initialize` | 200 `{"status":"session_created","session_id":S}`, `X-Session-ID: S` | the InitializeResult |
//! | anything else with a known `X-Session-ID` | 200 `{"status":"received"}` | its answer, progress, logs |
//! | unknown or missing `X-Session-ID` | 400 `{"error":"No active session found"}` | — |
//! | `DELETE` with `X-Session-ID` | 200 `{"status":"terminated"}` / 404 | — |
//!
//! Sessions are capped; at the cap, sessions idle for 30 minutes (no message from their client)
//! make room for new ones.
//!
//! Stricter than asyncmcp, and its client never notices: the server mints session ids (a
//! client-chosen `X-Session-ID` on `initialize` is ignored), a session answers only to the
//! `X-Client-ID` that opened it, messages are never routed by client id alone, every webhook
//! URL passes the SSRF guard, each session posts on its own link (a slow webhook delays only its
//! own session), and with a secret every POST carries Standard Webhooks signature headers.
//! The transport speaks the handshake era (what asyncmcp's clients speak).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Message;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use taskwire_protocol::jsonrpc;
use taskwire_protocol::{Era, ErrorObject};
use taskwire_server::{Outgoing, RequestEnv, Server, Session};
use taskwire_webhook::signing::standard_headers;
use taskwire_webhook::{Sender, Signer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Settings of the webhook transport.
#[derive(Clone)]
pub struct WebhookTransportConfig {
    /// Where clients POST (default `/mcp/request`, asyncmcp's default).
    pub path: String,
    /// Posts to webhooks, behind the SSRF guard.
    pub sender: Sender,
    /// Signs every webhook POST (Standard Webhooks headers) when set.
    pub signer: Option<Signer>,
    /// The largest request body, in bytes (default 4 MiB); larger gets 413.
    pub max_body_bytes: usize,
    /// The most sessions at once (default 10,000). At the limit, a new `initialize` first
    /// evicts sessions idle longer than `session_idle_timeout`, and gets 503 only if none is.
    pub max_sessions: usize,
    /// How long a session may go without a message from its client before it may be evicted
    /// (default 30 minutes, as for Streamable HTTP sessions).
    pub session_idle_timeout: Duration,
}

impl WebhookTransportConfig {
    /// Defaults around a sender.
    pub fn new(sender: Sender) -> Self {
        Self {
            path: "/mcp/request".into(),
            sender,
            signer: None,
            max_body_bytes: 4 * 1024 * 1024,
            max_sessions: 10_000,
            session_idle_timeout: Duration::from_secs(30 * 60),
        }
    }
}

const CLIENT_ID: HeaderName = HeaderName::from_static("x-client-id");
const SESSION_ID: HeaderName = HeaderName::from_static("x-session-id");
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const METHOD: HeaderName = HeaderName::from_static("x-method");

struct WebhookSession {
    client_id: String,
    mcp: Arc<Session>,
    link: mpsc::Sender<Outgoing>,
    /// When its client last sent a message.
    last_used: Mutex<Instant>,
}

impl WebhookSession {
    /// Ends the session: what it runs is cancelled, and nothing more goes to its webhook once
    /// the requests still answering have answered.
    fn end(&self) {
        self.mcp.cancel_all();
        self.mcp.set_standalone(None);
    }
}

struct Shared {
    server: Server,
    config: WebhookTransportConfig,
    sessions: Mutex<HashMap<String, Arc<WebhookSession>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The webhook transport's routes (`POST` and `DELETE` on the configured path), to merge with
/// the Streamable HTTP router.
pub fn router(server: Server, config: WebhookTransportConfig) -> Router {
    let path = config.path.clone();
    let limit = config.max_body_bytes;
    let shared = Arc::new(Shared { server, config, sessions: Mutex::new(HashMap::new()) });
    Router::new().route(&path, post(receive).delete(terminate)).layer(DefaultBodyLimit::max(limit)).with_state(shared)
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty())
}

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(client_id) = header_str(&headers, &CLIENT_ID) else {
        let error = json!({"jsonrpc": "2.0", "id": "server-error",
                           "error": {"code": -32600, "message": "Missing X-Client-ID header"}});
        return answer(StatusCode::BAD_REQUEST, error);
    };
    let message = match Message::read(&body) {
        Ok(m) => m,
        Err(e) => {
            let mut out = Vec::new();
            jsonrpc::write_error(&mut out, e.id(), &e.to_error());
            return (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "application/json")], out).into_response();
        }
    };
    if let Message::Request(req) = &message
        && req.method == "initialize"
    {
        let params = match &req.params {
            Some(Ok(p)) => Value::Object(p.object.clone()),
            _ => Value::Null,
        };
        return initialize(&shared, client_id, params, message).await;
    }
    let session = header_str(&headers, &SESSION_ID).and_then(|id| lock(&shared.sessions).get(id).cloned());
    let Some(session) = session.filter(|s| s.client_id == client_id) else {
        return answer(StatusCode::BAD_REQUEST, json!({"error": "No active session found"}));
    };
    *lock(&session.last_used) = Instant::now();
    let initialized = matches!(&message, Message::Notification(n) if n.method == "notifications/initialized");
    dispatch(&shared, &session, message);
    let status = if initialized { "initialized" } else { "received" };
    answer(StatusCode::OK, json!({ "status": status }))
}

async fn initialize(shared: &Arc<Shared>, client_id: &str, params: Value, message: Message) -> Response {
    let Some(url) = params.pointer("/_meta/webhookUrl").and_then(Value::as_str) else {
        return answer(StatusCode::BAD_REQUEST, json!({"error": "Missing webhookUrl in _meta field"}));
    };
    if let Err(refusal) = shared.config.sender.guard().admit(url, None).await {
        return answer(StatusCode::BAD_REQUEST, json!({"error": refusal.to_string()}));
    }
    if !shared.room_for_a_session() {
        return answer(StatusCode::SERVICE_UNAVAILABLE, json!({"error": "too many open sessions; retry later"}));
    }
    let session_id = uuid::Uuid::new_v4().simple().to_string();
    let link = spawn_link(
        shared.config.sender.clone(),
        shared.config.signer.clone(),
        url.to_owned(),
        (SESSION_ID, session_id.clone()),
    );
    let mcp = Arc::new(Session::new(Some(format!("webhook-{session_id}"))));
    mcp.set_standalone(Some(link.clone()));
    let session =
        Arc::new(WebhookSession { client_id: client_id.to_owned(), mcp, link, last_used: Mutex::new(Instant::now()) });
    lock(&shared.sessions).insert(session_id.clone(), session.clone());
    dispatch(shared, &session, message);
    let mut response = answer(StatusCode::OK, json!({"status": "session_created", "session_id": session_id.as_str()}));
    if let Ok(value) = HeaderValue::from_str(&session_id) {
        response.headers_mut().insert(SESSION_ID, value);
    }
    response
}

impl Shared {
    /// Whether another session fits, after evicting idle ones if the table is full.
    fn room_for_a_session(&self) -> bool {
        let mut sessions = lock(&self.sessions);
        if sessions.len() < self.config.max_sessions {
            return true;
        }
        let timeout = self.config.session_idle_timeout;
        sessions.retain(|_, s| {
            let idle = lock(&s.last_used).elapsed() >= timeout;
            if idle {
                s.end();
            }
            !idle
        });
        sessions.len() < self.config.max_sessions
    }
}

/// Hands a message to the server; requests run in the background and answer by webhook.
fn dispatch(shared: &Arc<Shared>, session: &Arc<WebhookSession>, message: Message) {
    match message {
        Message::Notification(n) => shared.server.notification(&session.mcp, &n.method, n.params.as_deref()),
        answer @ (Message::Response(_) | Message::Error(_)) => {
            session.mcp.answer_message(answer);
        }
        Message::Request(req) => {
            let link = session.link.clone();
            let prepared = match shared.server.prepare(req, None) {
                Ok(p) if p.era() == Era::Handshake => p,
                Ok(p) => {
                    let error = ErrorObject::invalid_request(
                        "Invalid Request: the webhook transport speaks the handshake era (initialize first); 2026-07-28 requests go to the Streamable HTTP endpoint",
                    );
                    return post_error(link, Some(p.id().clone()), error);
                }
                Err(rejected) => return post_error(link, Some(rejected.id), rejected.error),
            };
            let env = RequestEnv {
                session: session.mcp.clone(),
                sink: Some(link.clone()),
                cancel: CancellationToken::new(),
                principal: None,
            };
            run_to_link(shared.server.clone(), prepared, env, link);
        }
    }
}

/// Runs a request in the background; its answer goes through `link` after whatever the handler
/// sent on the way (the env's sink is the same link, so order is kept).
pub(crate) fn run_to_link(
    server: Server,
    prepared: taskwire_server::Prepared,
    env: RequestEnv,
    link: mpsc::Sender<Outgoing>,
) {
    let in_flight = env.session.begin(prepared.id(), env.cancel.clone());
    tokio::spawn(async move {
        let reply = server.run(prepared, env).await;
        drop(in_flight);
        if let Some(bytes) = reply.to_bytes() {
            let _ = link.send(Outgoing::Message(Bytes::from(bytes))).await;
        }
    });
}

fn post_error(link: mpsc::Sender<Outgoing>, id: Option<taskwire_protocol::Id>, error: ErrorObject) {
    let mut out = Vec::with_capacity(128);
    jsonrpc::write_error(&mut out, id.as_ref(), &error);
    tokio::spawn(async move {
        let _ = link.send(Outgoing::Message(Bytes::from(out))).await;
    });
}

async fn terminate(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let removed = header_str(&headers, &SESSION_ID).and_then(|id| lock(&shared.sessions).remove(id));
    match removed {
        Some(session) => {
            session.end();
            answer(StatusCode::OK, json!({"status": "terminated"}))
        }
        None => answer(StatusCode::NOT_FOUND, json!({"error": "No active session found"})),
    }
}

/// Attempts per message before a webhook link gives up on it (the client's webhook is down).
const LINK_ATTEMPTS: u32 = 3;

/// Starts a session's link: one task that POSTs its messages to `url` in order, each with the
/// session header, `X-Method` / `X-Request-ID` where they apply, and signature headers when
/// `signer` is set; a failed POST is retried twice, then dropped with a warning. Dropping every
/// sender of the returned channel ends the task.
pub(crate) fn spawn_link(
    sender: Sender,
    signer: Option<Signer>,
    url: String,
    session: (HeaderName, String),
) -> mpsc::Sender<Outgoing> {
    let (tx, mut rx) = mpsc::channel::<Outgoing>(256);
    tokio::spawn(async move {
        while let Some(out) = rx.recv().await {
            let Outgoing::Message(bytes) = out else { continue };
            let headers = link_headers(&bytes, &session, signer.as_ref());
            for attempt in 1..=LINK_ATTEMPTS {
                match sender.post(&url, None, headers.clone(), bytes.clone()).await {
                    Ok(_) => break,
                    Err(e) if e.is_permanent() || attempt == LINK_ATTEMPTS => {
                        tracing::warn!("webhook link: a message to the client's webhook was dropped: {e}");
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100 << (2 * attempt))).await,
                }
            }
        }
    });
    tx
}

fn link_headers(bytes: &[u8], session: &(HeaderName, String), signer: Option<&Signer>) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(6);
    if let Ok(v) = HeaderValue::from_str(&session.1) {
        headers.insert(session.0.clone(), v);
    }
    match jsonrpc::Message::parse(bytes) {
        Ok(jsonrpc::Message::Request(r)) => {
            if let Ok(v) = HeaderValue::from_str(&r.id.to_string()) {
                headers.insert(REQUEST_ID, v);
            }
            if let Ok(v) = HeaderValue::from_str(&r.method) {
                headers.insert(METHOD, v);
            }
        }
        Ok(jsonrpc::Message::Notification(n)) => {
            if let Ok(v) = HeaderValue::from_str(&n.method) {
                headers.insert(METHOD, v);
            }
        }
        _ => {}
    }
    if let Some(signer) = signer {
        let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
        headers.extend(standard_headers(&id, bytes, Some(signer)));
    }
    headers
}
