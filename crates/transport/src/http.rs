//! Streamable HTTP on axum, both eras on one endpoint.
//!
//! Routing of a POST (protocol digest §6.3, "dual-era HTTP routing"):
//! * a body with `initialize` → handshake era; with sessions on, a new `Mcp-Session-Id`;
//! * a body carrying 2026-07-28 `_meta` (or `server/discover`) → served statelessly, headers
//!   validated, session ids ignored;
//! * anything else → handshake era on the session named by `Mcp-Session-Id` (sessions on), or
//!   statelessly at the `MCP-Protocol-Version` header's revision (sessions off).
//!
//! A request is answered with `application/json` when its handler finishes without sending
//! anything first, and upgraded to `text/event-stream` the moment it sends a notification or a
//! server→client request. Handshake-era SSE streams are stored in a bounded per-session event
//! buffer so a client can resume them with `GET` + `Last-Event-ID`.
//!
//! **Webhook hybrid** ([`HttpConfig::webhook_tools`]): a session whose `initialize` named
//! `params._meta.webhookUrl` gets the calls of the configured webhook tools answered `202
//! Accepted` at once; their progress and result are POSTed to that URL with `mcp-session-id`
//! (what asyncmcp's StreamableHTTP+webhook client expects). Everything else, and every session
//! without a webhook URL, is plain Streamable HTTP.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::Message;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::any;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt as _;
use taskwire_protocol::jsonrpc;
use taskwire_protocol::meta::ServerParams;
use taskwire_protocol::{Era, ErrorObject, Id, ProtocolVersion, codes, headers as mcp_headers};
use taskwire_server::session::SINK_CAPACITY;
use taskwire_server::{Outgoing, Prepared, Reply, RequestEnv, Server, Session};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod hold;
mod sse;
use sse::{CallStream, EventStream, sse_response};

/// Whether handshake-era clients get sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionMode {
    /// `initialize` mints an `Mcp-Session-Id`; later requests must carry it.
    Stateful,
    /// No sessions: every request stands alone (like rmcp's `NeverSessionManager`).
    Stateless,
}

/// Settings of the Streamable HTTP transport.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// The MCP endpoint path (default `/mcp`).
    pub path: String,
    /// Sessions for handshake-era clients (default on).
    pub sessions: SessionMode,
    /// The largest request body accepted, in bytes (default 4 MiB); larger gets 413.
    pub max_body_bytes: usize,
    /// Host names (without port) accepted in `Host` and `Origin`; `None` accepts any. The
    /// default accepts loopback names only, which defeats DNS rebinding of a local server.
    pub allowed_hosts: Option<Vec<String>>,
    /// The most handshake sessions kept at once (default 10,000); beyond it idle sessions are
    /// evicted, and if none is idle a new `initialize` gets 503.
    pub max_sessions: usize,
    /// How long an unused session lives (default 30 minutes).
    pub session_idle_timeout: Duration,
    /// Events kept per SSE stream for resumption (default 256).
    pub events_per_stream: usize,
    /// Streams kept per session for resumption (default 32).
    pub streams_per_session: usize,
    /// Interval of SSE keep-alive comments (default 15 s).
    pub keep_alive: Duration,
    /// The `retry` hint sent with priming events, in milliseconds (default 1000).
    pub retry_ms: u64,
    /// Static bearer tokens mapped to principals. When set, every request must carry
    /// `Authorization: Bearer TOKEN` (else 401), and tasks and sessions belong to the principal.
    pub bearer_tokens: Option<Arc<HashMap<String, String>>>,
    /// Tools whose results go by webhook to sessions that named one (the hybrid, above).
    pub webhook_tools: Option<WebhookTools>,
}

/// The webhook hybrid's settings.
#[derive(Clone)]
pub struct WebhookTools {
    /// The tools answered by webhook.
    pub tools: Vec<String>,
    /// Posts to webhooks, behind the SSRF guard.
    pub sender: taskwire_webhook::Sender,
    /// Signs every webhook POST when set.
    pub signer: Option<taskwire_webhook::Signer>,
}

impl std::fmt::Debug for WebhookTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTools").field("tools", &self.tools).field("signed", &self.signer.is_some()).finish()
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            path: "/mcp".into(),
            sessions: SessionMode::Stateful,
            max_body_bytes: 4 * 1024 * 1024,
            allowed_hosts: Some(vec!["localhost".into(), "127.0.0.1".into(), "[::1]".into()]),
            max_sessions: 10_000,
            session_idle_timeout: Duration::from_secs(30 * 60),
            events_per_stream: 256,
            streams_per_session: 32,
            keep_alive: Duration::from_secs(15),
            retry_ms: 1000,
            bearer_tokens: None,
            webhook_tools: None,
        }
    }
}

struct Shared {
    server: Server,
    config: HttpConfig,
    sessions: Mutex<foldhash::HashMap<String, Arc<HttpSession>>>,
    shutdown: CancellationToken,
    /// The clock resumable streams hold their head by.
    hold_clock: Arc<hold::HoldClock>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A handshake session over HTTP: its MCP state plus its resumable SSE streams.
struct HttpSession {
    mcp: Arc<Session>,
    /// The principal that opened the session; nobody else may use it.
    principal: Option<String>,
    streams: Mutex<StreamTable>,
    last_used: Mutex<Instant>,
    /// Where webhook tools' results go, if the session named a webhook.
    webhook: Mutex<Option<mpsc::Sender<Outgoing>>>,
}

/// A session's resumable streams: the standalone `GET` stream, and the newest request streams
/// in the order they opened (so by id; a deque, not a map: a call opens one and drops the oldest,
/// and only a resuming `GET` looks one up).
#[derive(Default)]
struct StreamTable {
    next_id: u64,
    standalone: Option<Arc<EventStream>>,
    requests: VecDeque<Arc<EventStream>>,
}

/// Stream id of the standalone GET stream.
const STANDALONE: u64 = 0;

impl HttpSession {
    fn touch(&self) {
        *lock(&self.last_used) = Instant::now();
    }

    fn new_stream(&self, keep: usize, capacity: usize) -> Arc<EventStream> {
        let mut table = lock(&self.streams);
        table.next_id += 1;
        let id = table.next_id;
        let stream = Arc::new(EventStream::new(id, capacity));
        if table.requests.len() >= keep {
            table.requests.pop_front();
        }
        if keep > 0 {
            table.requests.push_back(stream.clone());
        }
        stream
    }

    fn stream(&self, id: u64) -> Option<Arc<EventStream>> {
        let table = lock(&self.streams);
        if id == STANDALONE {
            return table.standalone.clone();
        }
        let at = table.requests.binary_search_by_key(&id, |s| s.id).ok()?;
        table.requests.get(at).cloned()
    }
}

/// Builds the axum router serving `server` at `config.path`.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use taskwire_server::Server;
/// use taskwire_transport::http::{router, HttpConfig};
/// let app = router(Server::builder("demo", "0.1.0").build(), HttpConfig::default());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// axum::serve(listener, app).await
/// # }
/// ```
pub fn router(server: Server, config: HttpConfig) -> Router {
    router_with_shutdown(server, config, CancellationToken::new())
}

/// Like [`router`], with a token that ends every open SSE stream when cancelled (so that a
/// graceful shutdown does not wait for idle streams).
pub fn router_with_shutdown(server: Server, config: HttpConfig, shutdown: CancellationToken) -> Router {
    let path = config.path.clone();
    let hold_clock = hold::HoldClock::new(sse::HEAD_HOLD);
    let shared = Arc::new(Shared { server, config, sessions: Mutex::default(), shutdown, hold_clock });
    Router::new().route(&path, any(endpoint)).with_state(shared)
}

/// Serves `server` on `listener` until `shutdown` is cancelled, with `TCP_NODELAY` on every
/// accepted socket; in-flight requests finish, open SSE streams end.
pub async fn serve(
    server: Server,
    listener: tokio::net::TcpListener,
    config: HttpConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = router_with_shutdown(server, config, shutdown.clone());
    serve_app(app, listener, shutdown).await
}

/// Serves an app built from [`router_with_shutdown`] (merged with more routes, such as the
/// webhook transport's) the way [`serve`] does: `TCP_NODELAY`, graceful shutdown.
pub async fn serve_app(
    app: Router,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt as _;
    let listener = listener.tap_io(|tcp| {
        // Small JSON-RPC answers must not wait for delayed ACKs (Nagle); see BENCHMARKS.md.
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn error_response(status: StatusCode, id: Option<&Id>, error: &ErrorObject) -> Response {
    let mut out = Vec::with_capacity(160);
    jsonrpc::write_error(&mut out, id, error);
    json_response(status, out)
}

fn bad_request(message: impl Into<String>) -> Response {
    error_response(StatusCode::BAD_REQUEST, None, &ErrorObject::invalid_request(message))
}

fn status_only(status: StatusCode) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status;
    resp
}

/// The host name of a `Host` or `Origin` authority, without port.
fn host_name(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.find(']').map_or(authority, |end| &authority[..=end]);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

/// DNS-rebinding defence: `Host` and, when present, `Origin` must name an allowed host.
#[allow(clippy::result_large_err, reason = "a rejection is the cold path; boxing it buys nothing")]
fn check_origin(config: &HttpConfig, headers: &HeaderMap) -> Result<(), Response> {
    let Some(allowed) = &config.allowed_hosts else {
        return Ok(());
    };
    let forbidden = |what: &str| {
        error_response(
            StatusCode::FORBIDDEN,
            None,
            &ErrorObject::invalid_request(format!("Forbidden: {what} is not an allowed host for this server")),
        )
    };
    let is_allowed = |host: &str| allowed.iter().any(|a| a.eq_ignore_ascii_case(host));
    if let Some(host) = headers.get(header::HOST) {
        let host = host.to_str().unwrap_or("");
        if !is_allowed(host_name(host)) {
            return Err(forbidden("the Host header"));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let authority = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
        if !authority.is_some_and(|a| is_allowed(host_name(a))) {
            return Err(forbidden("the Origin header"));
        }
    }
    Ok(())
}

/// The media types a request's `Accept` headers allow, of the two MCP answers with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Accepted {
    json: bool,
    event_stream: bool,
}

/// Reads every `Accept` header once, as bytes: every POST asks for both types, and splitting
/// and trimming `&str`s per wanted type cost ~2k instructions per call (callgrind). Media types
/// compare case-insensitively (RFC 9110 §8.3.1); parameters such as `q=` are ignored.
fn accepted(headers: &HeaderMap) -> Accepted {
    let mut found = Accepted::default();
    for value in headers.get_all(header::ACCEPT) {
        for item in value.as_bytes().split(|&b| b == b',') {
            let media = item.split(|&b| b == b';').next().unwrap_or_default().trim_ascii();
            let is = |name: &[u8]| media.eq_ignore_ascii_case(name);
            if is(b"*/*") {
                return Accepted { json: true, event_stream: true };
            }
            found.json |= is(b"application/json") || is(b"application/*");
            found.event_stream |= is(b"text/event-stream") || is(b"text/*");
        }
    }
    found
}

/// The caller's principal: `Ok(None)` without authentication configured.
#[allow(clippy::result_large_err, reason = "a rejection is the cold path; boxing it buys nothing")]
fn authenticate(config: &HttpConfig, headers: &HeaderMap) -> Result<Option<String>, Response> {
    let Some(tokens) = &config.bearer_tokens else { return Ok(None) };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    match presented.and_then(|t| tokens.get(t)) {
        Some(principal) => Ok(Some(principal.clone())),
        None => {
            let mut resp = error_response(
                StatusCode::UNAUTHORIZED,
                None,
                &ErrorObject::invalid_request(
                    "Unauthorized: send Authorization: Bearer <token> with a token this server knows",
                ),
            );
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"taskwire\""));
            Err(resp)
        }
    }
}

async fn endpoint(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    if let Err(resp) = check_origin(&shared.config, request.headers()) {
        return resp;
    }
    let principal = match authenticate(&shared.config, request.headers()) {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    match *request.method() {
        Method::POST => post(shared, request, principal).await,
        Method::GET => get(shared, request.headers(), principal.as_deref()),
        Method::DELETE => delete(&shared, request.headers(), principal.as_deref()),
        _ => status_only(StatusCode::METHOD_NOT_ALLOWED),
    }
}

fn session_header(headers: &HeaderMap) -> Option<&str> {
    headers.get(&mcp_headers::SESSION_ID).and_then(|v| v.to_str().ok())
}

impl Shared {
    /// The session, if it exists and belongs to `principal` (another principal's session is
    /// answered exactly like an unknown one).
    fn find_session(&self, id: &str, principal: Option<&str>) -> Option<Arc<HttpSession>> {
        let found = lock(&self.sessions).get(id).filter(|s| s.principal.as_deref() == principal).cloned();
        if let Some(s) = &found {
            s.touch();
        }
        found
    }

    fn create_session(&self, principal: Option<String>) -> Option<(String, Arc<HttpSession>)> {
        let mut sessions = lock(&self.sessions);
        if sessions.len() >= self.config.max_sessions {
            let timeout = self.config.session_idle_timeout;
            sessions.retain(|_, s| lock(&s.last_used).elapsed() < timeout);
            if sessions.len() >= self.config.max_sessions {
                return None;
            }
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let session = Arc::new(HttpSession {
            mcp: Arc::new(Session::new(Some(id.clone()))),
            principal,
            streams: Mutex::new(StreamTable::default()),
            last_used: Mutex::new(Instant::now()),
            webhook: Mutex::new(None),
        });
        sessions.insert(id.clone(), session.clone());
        Some((id, session))
    }
}

#[allow(clippy::result_large_err, reason = "a rejection is the cold path; boxing it buys nothing")]
fn check_protocol_header(headers: &HeaderMap) -> Result<Option<ProtocolVersion>, Response> {
    match headers.get(&mcp_headers::PROTOCOL_VERSION) {
        None => Ok(None),
        Some(v) => match v.to_str().ok().and_then(|s| s.parse::<ProtocolVersion>().ok()) {
            Some(v) => Ok(Some(v)),
            None => Err(bad_request(format!(
                "Bad Request: unsupported MCP-Protocol-Version {:?}; supported: {}",
                String::from_utf8_lossy(v.as_bytes()),
                ProtocolVersion::ALL.map(|v| v.as_str()).join(", ")
            ))),
        },
    }
}

async fn post(shared: Arc<Shared>, request: Request, principal: Option<String>) -> Response {
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let content_type_ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json"));
    if !content_type_ok {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
            &ErrorObject::invalid_request("Unsupported Media Type: POST bodies must be Content-Type: application/json"),
        );
    }
    if accepted(&headers) != (Accepted { json: true, event_stream: true }) {
        return error_response(
            StatusCode::NOT_ACCEPTABLE,
            None,
            &ErrorObject::invalid_request(
                "Not Acceptable: the Accept header must list both application/json and text/event-stream",
            ),
        );
    }
    let limit = shared.config.max_body_bytes;
    let bytes = match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                &ErrorObject::invalid_request(format!("Payload Too Large: the body exceeds {limit} bytes")),
            );
        }
        Err(_) => return bad_request("Bad Request: the body could not be read"),
    };
    let message = match Message::read(&bytes) {
        Ok(m) => m,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, e.id(), &e.to_error()),
    };
    match message {
        Message::Request(req) => post_request(shared, req, &headers, principal).await,
        Message::Notification(n) => {
            if let Some(session) = session_header(&headers).and_then(|id| shared.find_session(id, principal.as_deref()))
            {
                shared.server.notification(&session.mcp, &n.method, n.params.as_deref());
            }
            status_only(StatusCode::ACCEPTED)
        }
        Message::Response(_) | Message::Error(_) => post_answer(&shared, message, &headers, principal.as_deref()),
    }
}

/// A client's answer to a server→client request (handshake sessions only).
fn post_answer(shared: &Shared, message: Message, headers: &HeaderMap, principal: Option<&str>) -> Response {
    let Some(session) = session_header(headers).and_then(|id| shared.find_session(id, principal)) else {
        return bad_request(
            "Bad Request: a JSON-RPC response must be sent on the session (Mcp-Session-Id) of the request it answers",
        );
    };
    session.mcp.answer_message(message);
    status_only(StatusCode::ACCEPTED)
}

/// HTTP status of a per-request-era reply (rmcp's mapping, protocol digest §6.3).
fn per_request_status(code: Option<i32>, rejected: bool) -> StatusCode {
    match code {
        None => StatusCode::OK,
        Some(codes::METHOD_NOT_FOUND) => StatusCode::NOT_FOUND,
        Some(
            codes::HEADER_MISMATCH | codes::MISSING_REQUIRED_CLIENT_CAPABILITY | codes::UNSUPPORTED_PROTOCOL_VERSION,
        ) => StatusCode::BAD_REQUEST,
        Some(_) if rejected => StatusCode::BAD_REQUEST,
        Some(_) => StatusCode::OK,
    }
}

async fn post_request(
    shared: Arc<Shared>,
    req: jsonrpc::Request<ServerParams>,
    headers: &HeaderMap,
    principal: Option<String>,
) -> Response {
    let is_initialize = req.method == "initialize";
    let hybrid = match &shared.config.webhook_tools {
        Some(w) => match hybrid_role(w, &req).await {
            Ok(role) => role,
            Err(refusal) => {
                let error = ErrorObject::invalid_params(format!("_meta.webhookUrl: {refusal}"));
                return error_response(StatusCode::OK, Some(&req.id), &error);
            }
        },
        None => HybridRole::None,
    };
    let prepared = match shared.server.prepare(req, Some(headers)) {
        Ok(p) => p,
        Err(rejected) => {
            let status = match rejected.era {
                Era::PerRequest => per_request_status(Some(rejected.error.code), true),
                Era::Handshake => StatusCode::OK,
            };
            return error_response(status, Some(&rejected.id), &rejected.error);
        }
    };
    if prepared.era() == Era::PerRequest {
        let env = RequestEnv {
            session: Arc::new(Session::new(None)),
            sink: None,
            cancel: CancellationToken::new(),
            principal: principal.clone(),
        };
        return respond(&shared, prepared, env, None).await;
    }
    let header_version = match check_protocol_header(headers) {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    if header_version.is_some_and(|v| v.era() == Era::PerRequest) {
        return bad_request(
            "Bad Request: MCP-Protocol-Version 2026-07-28 requires the per-request _meta (io.modelcontextprotocol/protocolVersion and clientCapabilities) in the body",
        );
    }
    match shared.config.sessions {
        SessionMode::Stateless => {
            let session = Arc::new(Session::new(None));
            if !is_initialize {
                let version = header_version.unwrap_or(ProtocolVersion::HTTP_DEFAULT);
                session.set_negotiated(version, serde_json::json!({}));
            }
            let env =
                RequestEnv { session, sink: None, cancel: CancellationToken::new(), principal: principal.clone() };
            respond(&shared, prepared, env, None).await
        }
        SessionMode::Stateful if is_initialize => {
            let Some((id, session)) = shared.create_session(principal.clone()) else {
                return error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Some(prepared.id()),
                    &ErrorObject::internal("Service Unavailable: too many open sessions; retry later"),
                );
            };
            let env = RequestEnv {
                session: session.mcp.clone(),
                sink: None,
                cancel: CancellationToken::new(),
                principal: principal.clone(),
            };
            if let (HybridRole::Subscribe(url), Some(w)) = (hybrid, &shared.config.webhook_tools) {
                let link = crate::webhook::spawn_link(
                    w.sender.clone(),
                    w.signer.clone(),
                    url,
                    (http::HeaderName::from_static("mcp-session-id"), id.clone()),
                );
                *lock(&session.webhook) = Some(link);
            }
            let mut resp = respond(&shared, prepared, env, Some(session.clone())).await;
            let ok = resp.status().is_success();
            match HeaderValue::from_str(&id) {
                Ok(v) if ok => {
                    resp.headers_mut().insert(mcp_headers::SESSION_ID, v);
                }
                _ => {
                    lock(&shared.sessions).remove(&id);
                }
            }
            resp
        }
        SessionMode::Stateful => {
            let Some(id) = session_header(headers) else {
                return bad_request("Bad Request: Mcp-Session-Id header is required; send initialize first to get one");
            };
            let Some(session) = shared.find_session(id, principal.as_deref()) else {
                return error_response(
                    StatusCode::NOT_FOUND,
                    Some(prepared.id()),
                    &ErrorObject::invalid_request(
                        "Session not found: it ended or never existed; initialize a new session",
                    ),
                );
            };
            let link = lock(&session.webhook).clone().filter(|_| matches!(hybrid, HybridRole::WebhookCall));
            let env = RequestEnv {
                session: session.mcp.clone(),
                sink: link.clone(),
                cancel: CancellationToken::new(),
                principal: principal.clone(),
            };
            match link {
                Some(link) => answer_by_webhook(&shared, prepared, env, link),
                None => respond(&shared, prepared, env, Some(session.clone())).await,
            }
        }
    }
}

/// What a request means for the webhook hybrid.
enum HybridRole {
    None,
    /// An `initialize` naming a (checked) webhook URL.
    Subscribe(String),
    /// A call of a webhook tool.
    WebhookCall,
}

async fn hybrid_role(
    w: &WebhookTools,
    req: &jsonrpc::Request<ServerParams>,
) -> Result<HybridRole, taskwire_webhook::Refusal> {
    let is_call = req.method == "tools/call";
    if !is_call && req.method != "initialize" {
        return Ok(HybridRole::None);
    }
    let no_params = serde_json::Map::new();
    let params = match &req.params {
        Some(Ok(p)) => &p.object,
        _ => &no_params,
    };
    if is_call {
        let name = params.get("name").and_then(serde_json::Value::as_str).unwrap_or_default();
        return Ok(if w.tools.iter().any(|t| t == name) { HybridRole::WebhookCall } else { HybridRole::None });
    }
    match params.get("_meta").and_then(|m| m.get("webhookUrl")).and_then(serde_json::Value::as_str) {
        Some(url) => w.sender.guard().admit(url, None).await.map(|_| HybridRole::Subscribe(url.to_owned())),
        None => Ok(HybridRole::None),
    }
}

/// The hybrid's webhook call: `202 Accepted` now; progress (already routed to `link` by the
/// env's sink) and the result go by webhook.
fn answer_by_webhook(shared: &Shared, prepared: Prepared, env: RequestEnv, link: mpsc::Sender<Outgoing>) -> Response {
    crate::webhook::run_to_link(shared.server.clone(), prepared, env, link);
    status_only(StatusCode::ACCEPTED)
}

fn reply_response(reply: &Reply, rejected_status: bool) -> Response {
    let status = match reply.era {
        Era::PerRequest => per_request_status(reply.error_code(), rejected_status),
        Era::Handshake => StatusCode::OK,
    };
    match reply.to_bytes() {
        Some(body) => json_response(status, body),
        None => status_only(StatusCode::ACCEPTED),
    }
}

/// Runs a request and answers with JSON, upgrading to SSE as soon as the handler sends
/// anything before its result.
async fn respond(
    shared: &Arc<Shared>,
    prepared: Prepared,
    mut env: RequestEnv,
    session: Option<Arc<HttpSession>>,
) -> Response {
    let era = prepared.era();
    let (tx, mut outgoing) = mpsc::channel::<Outgoing>(SINK_CAPACITY);
    env.sink = Some(tx);
    let config = &shared.config;
    // Per-request era: a client that goes away cancels its request (closing the stream IS the
    // cancellation); this guard fires when the connection drops this future.
    let guard = (era == Era::PerRequest).then(|| env.cancel.clone().drop_guard());
    let server = shared.server.clone();
    // Registered for `notifications/cancelled` until the work ends or is dropped.
    let in_flight = env.session.begin(prepared.id(), env.cancel.clone());
    let mut work: sse::Work = Box::pin(async move {
        let _in_flight = in_flight;
        server.run(prepared, env).await
    });
    // 2025-11-25 sessions always answer on a resumable stream that opens with a priming event
    // (SEP-1699): a client can resume any request, not only those that happened to notify.
    // Webhook-hybrid sessions are asyncmcp's clients, whose SSE reader fails on a priming
    // event's empty data; their slow results come by webhook, so they answer in plain JSON.
    if let Some(session) = session
        .filter(|s| s.mcp.negotiated().is_some_and(|v| v >= ProtocolVersion::V2025_11_25) && lock(&s.webhook).is_none())
    {
        // A closed connection does not cancel the work: the client may resume.
        drop(guard);
        let store = session.new_stream(config.streams_per_session, config.events_per_stream);
        let body = CallStream::resumable(
            store,
            work,
            outgoing,
            config.retry_ms,
            config.keep_alive,
            shared.shutdown.clone(),
            &shared.hold_clock,
        );
        return body.into_response().await;
    }
    // JSON unless the handler sends a message before its result (a request to close the SSE
    // stream means nothing here: there is none).
    let first = loop {
        tokio::select! {
            biased;
            message = outgoing.recv() => match message {
                Some(Outgoing::Message(message)) => break Some(message),
                Some(Outgoing::CloseStream { .. }) => continue,
                None => break None,
            },
            reply = &mut work => {
                let sent = std::iter::from_fn(|| outgoing.try_recv().ok()).find_map(|m| match m {
                    Outgoing::Message(message) => Some(message),
                    Outgoing::CloseStream { .. } => None,
                });
                match sent {
                    // It sent something and finished at once: stream both.
                    Some(message) => {
                        work = Box::pin(std::future::ready(reply));
                        break Some(message);
                    }
                    None => return reply_response(&reply, false),
                }
            }
        }
    };
    match first {
        Some(first) => {
            let cancel_on_disconnect = guard.map(tokio_util::sync::DropGuard::disarm);
            let body = CallStream::live(
                first,
                work,
                outgoing,
                cancel_on_disconnect,
                config.keep_alive,
                shared.shutdown.clone(),
            );
            body.into_response().await
        }
        // Every sender is gone without a message: the answer is plain JSON.
        None => reply_response(&work.await, false),
    }
}

fn parse_event_id(value: &str) -> Option<(u64, u64)> {
    let (stream, seq) = value.split_once('-')?;
    Some((stream.parse().ok()?, seq.parse().ok()?))
}

fn get(shared: Arc<Shared>, headers: &HeaderMap, principal: Option<&str>) -> Response {
    if !accepted(headers).event_stream {
        return error_response(
            StatusCode::NOT_ACCEPTABLE,
            None,
            &ErrorObject::invalid_request("Not Acceptable: a GET stream needs Accept: text/event-stream"),
        );
    }
    if shared.config.sessions == SessionMode::Stateless {
        return status_only(StatusCode::METHOD_NOT_ALLOWED);
    }
    let Some(id) = session_header(headers) else {
        // No session: a 2026-07-28 client, or a legacy client without a session; neither has
        // a standalone stream here.
        return status_only(StatusCode::METHOD_NOT_ALLOWED);
    };
    let Some(session) = shared.find_session(id, principal) else {
        return error_response(
            StatusCode::NOT_FOUND,
            None,
            &ErrorObject::invalid_request("Session not found: initialize a new session"),
        );
    };
    let config = &shared.config;
    let last_event = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(parse_event_id);
    if let Some((stream_id, seq)) = last_event {
        return match session.stream(stream_id) {
            Some(stream) => stream.follow(Some(seq), config.keep_alive, shared.shutdown.clone()),
            // Nothing to resume: an empty stream that ends, so EventSource clients stop retrying.
            None => sse_response(Body::empty()),
        };
    }
    // The standalone stream: messages not tied to any request (list changes, resource updates).
    let stream = {
        let mut table = lock(&session.streams);
        table.standalone.get_or_insert_with(|| Arc::new(EventStream::new(STANDALONE, config.events_per_stream))).clone()
    };
    let response = stream.follow(Some(u64::MAX), config.keep_alive, shared.shutdown.clone());
    let (tx, mut rx) = mpsc::channel::<Outgoing>(SINK_CAPACITY);
    session.mcp.set_standalone(Some(tx));
    tokio::spawn(async move {
        while let Some(out) = rx.recv().await {
            if let Outgoing::Message(b) = out {
                stream.push(b);
            }
        }
    });
    response
}

fn delete(shared: &Shared, headers: &HeaderMap, principal: Option<&str>) -> Response {
    if shared.config.sessions == SessionMode::Stateless {
        return status_only(StatusCode::METHOD_NOT_ALLOWED);
    }
    let Some(id) = session_header(headers) else {
        return status_only(StatusCode::METHOD_NOT_ALLOWED);
    };
    let owned = shared.find_session(id, principal).is_some();
    match owned.then(|| lock(&shared.sessions).remove(id)).flatten() {
        Some(session) => {
            session.mcp.cancel_all();
            session.mcp.set_standalone(None);
            status_only(StatusCode::OK)
        }
        None => error_response(StatusCode::NOT_FOUND, None, &ErrorObject::invalid_request("Session not found")),
    }
}

/// Reads a bearer-token file for [`HttpConfig::bearer_tokens`]: one `TOKEN PRINCIPAL` pair per
/// line; blank lines and lines starting with `#` are skipped. Errors name the file and line.
pub fn read_bearer_tokens(path: &std::path::Path) -> Result<HashMap<String, String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("--auth-tokens {}: {e}", path.display()))?;
    let mut tokens = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next(), parts.next()) {
            (Some(token), Some(principal), None) => {
                tokens.insert(token.to_owned(), principal.to_owned());
            }
            _ => {
                return Err(format!(
                    "{}:{}: expected `TOKEN PRINCIPAL` (two words separated by spaces), found {line:?}",
                    path.display(),
                    n + 1
                ));
            }
        }
    }
    if tokens.is_empty() {
        return Err(format!("{}: no `TOKEN PRINCIPAL` lines; without tokens nobody could connect", path.display()));
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_drop_ports_and_keep_ipv6_brackets() {
        assert_eq!(host_name("localhost:3000"), "localhost");
        assert_eq!(host_name("[::1]:8080"), "[::1]");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
    }

    #[test]
    fn accept_matching_understands_wildcards_parameters_and_case() {
        let read = |accept: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, HeaderValue::from_static(accept));
            accepted(&h)
        };
        let both = Accepted { json: true, event_stream: true };
        assert_eq!(read("application/json;q=0.9, text/event-stream"), both);
        assert_eq!(read("*/*"), both);
        assert_eq!(read("Application/JSON , TEXT/Event-Stream;q=1"), both);
        assert_eq!(read("application/*, text/*"), both);
        assert_eq!(read("text/event-stream"), Accepted { json: false, event_stream: true });
        assert_eq!(read("application/json"), Accepted { json: true, event_stream: false });
        assert_eq!(read("text/html, application/jsonx"), Accepted::default());
        assert_eq!(accepted(&HeaderMap::new()), Accepted::default());
        // Several Accept headers count together.
        let mut h = HeaderMap::new();
        h.append(header::ACCEPT, HeaderValue::from_static("application/json"));
        h.append(header::ACCEPT, HeaderValue::from_static("text/event-stream"));
        assert_eq!(accepted(&h), both);
    }

    #[test]
    fn event_ids_name_the_stream_and_the_sequence() {
        assert_eq!(parse_event_id("3-2"), Some((3, 2)));
        assert_eq!(parse_event_id("3"), None);
    }
}
