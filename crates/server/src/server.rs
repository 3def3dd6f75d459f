//! The server: a registry plus the dispatch of every MCP method in both eras.
//!
//! Dispatch is split in two so that transports stay simple and hot paths stay cheap:
//! [`Server::prepare`] is synchronous (parse params once, classify the era, validate the
//! 2026-07-28 `_meta` and HTTP headers), and [`Server::run`] is the `'static` future that does
//! the work and produces the [`Reply`].

use foldhash::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};

use futures_util::FutureExt as _;
use http::HeaderMap;
use serde_json::{Value, json};
use taskwire_protocol::jsonrpc::{self, Request};
use taskwire_protocol::meta::{ParamsError, RequestParams, ServerParams};
use taskwire_protocol::{Era, ErrorObject, Id, ProtocolVersion, codes, headers, meta};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::context::{Channel, Context};
use crate::error::ToolError;
use crate::model::{LogLevel, Object, ToolOutput};
use crate::mrtr::StateSealer;
use crate::passthrough::Passthrough;
use crate::registry::{CompletionFn, Prompt, Resource, ResourceBody, ResourceTemplate, TaskSupport, Tool, ToolHandler};
use crate::session::{Session, Sink};
use crate::tasks::{self, TaskMode};
use crate::webhooks::{self, CallbackGuard};
use std::time::Duration;

use crate::execution::{self, Bounds};
use taskwire_engine::{Creation, Engine, GlobalLimits, NewTask, Scheduler, TaskRecord, TaskWire};

/// Builds a [`Server`].
///
/// ```
/// use taskwire_server::{Server, Tool, model::ToolOutput};
/// let server = Server::builder("demo", "0.1.0")
///     .instructions("Tools for demos.")
///     .tool(Tool::new("hello", "Say hello.").handler(|_ctx, _args| async { Ok(ToolOutput::text("hello")) }))
///     .build();
/// assert!(server.tool("hello").is_some());
/// ```
pub struct ServerBuilder {
    info: Object,
    instructions: Option<String>,
    tools: Vec<Tool>,
    resources: Vec<Resource>,
    templates: Vec<ResourceTemplate>,
    prompts: Vec<Prompt>,
    completion: Option<CompletionFn>,
    blocking_threads: usize,
    engine: Option<Engine>,
    job_control: bool,
    global_limits: GlobalLimits,
    request_timeout: Option<Duration>,
    passthrough: Option<Arc<dyn Passthrough>>,
    callback_guard: Option<Arc<dyn CallbackGuard>>,
}

impl ServerBuilder {
    /// Lets callers name completion webhooks for their tasks (`_meta["dev.taskwire/webhook"]`),
    /// each checked by `guard` at creation (see [`crate::webhooks`]).
    pub fn callback_guard(mut self, guard: Arc<dyn CallbackGuard>) -> Self {
        self.callback_guard = Some(guard);
        self
    }

    /// Sends what the server does not answer itself — resources, prompts, completions, unknown
    /// methods and notifications — to `upstream`, and declares its capabilities for those (see
    /// [`Passthrough`]). This is how `taskwire proxy` fronts another server.
    pub fn passthrough(mut self, upstream: Arc<dyn Passthrough>) -> Self {
        self.passthrough = Some(upstream);
        self
    }

    /// At most `n` executions of limited tools ([`Tool::limits`]) run at once, whatever the tool.
    pub fn max_running(mut self, n: usize) -> Self {
        self.global_limits.max_running = Some(n.max(1));
        self
    }

    /// At most `n` executions wait for a slot, whatever the tool (default 10,000).
    pub fn max_queued(mut self, n: usize) -> Self {
        self.global_limits.max_queued = n;
        self
    }

    /// Stops a call that does not run as a task after `timeout` (a tool's own
    /// [`Tool::timeout`] takes precedence); the client gets a tool error.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    /// For clients that know no tasks (most chat hosts): a task-capable tool they call answers
    /// at once with a job id and a sentence telling the model what to call next, and the tools
    /// `task_status`, `task_result`, `task_cancel` and `task_list` (scoped to the caller) follow
    /// the job. Needs [`ServerBuilder::tasks`].
    pub fn job_control_tools(mut self) -> Self {
        self.job_control = true;
        self
    }

    /// Runs task-capable tools as durable tasks in `engine`, and serves both task wires
    /// (2025-11-25 core tasks, the 2026-07-28 tasks extension).
    pub fn tasks(mut self, engine: Engine) -> Self {
        self.engine = Some(engine);
        self
    }

    /// Sets the instructions returned by `initialize` and `server/discover`.
    pub fn instructions(mut self, text: impl Into<String>) -> Self {
        self.instructions = Some(text.into());
        self
    }

    /// Adds a tool. A later tool with the same name replaces the earlier one.
    pub fn tool(mut self, tool: Tool) -> Self {
        self.tools.retain(|t| t.name != tool.name);
        self.tools.push(tool);
        self
    }

    /// Adds a resource.
    pub fn resource(mut self, resource: Resource) -> Self {
        self.resources.push(resource);
        self
    }

    /// Adds a resource template.
    pub fn resource_template(mut self, template: ResourceTemplate) -> Self {
        self.templates.push(template);
        self
    }

    /// Adds a prompt.
    pub fn prompt(mut self, prompt: Prompt) -> Self {
        self.prompts.push(prompt);
        self
    }

    /// Answers `completion/complete` with `f(ref, argument)`.
    pub fn completion(mut self, f: impl Fn(&Value, &Value) -> Vec<String> + Send + Sync + 'static) -> Self {
        self.completion = Some(Arc::new(f));
        self
    }

    /// How many blocking handlers may run at once (default 64). Excess calls wait for a slot.
    pub fn blocking_threads(mut self, n: usize) -> Self {
        self.blocking_threads = n.max(1);
        self
    }

    /// Finishes the server.
    pub fn build(mut self) -> Server {
        let job_control = self.job_control && self.engine.is_some();
        if let (true, Some(engine)) = (job_control, &self.engine) {
            for tool in crate::jobs::job_tools(engine.clone()) {
                self = self.tool(tool);
            }
        }
        let scheduler =
            Scheduler::new(self.global_limits, self.tools.iter().map(|t| (t.name.clone(), t.controls.limits.clone())));
        let limited = self.tools.iter().any(|t| t.controls.limits.is_limited());
        if limited {
            self.resources.push(crate::introspection::limits_resource(scheduler.clone()));
            if job_control {
                self = self.tool(crate::introspection::limits_tool(scheduler.clone()));
            }
        }
        // Only limited tools ever wait, so only then does `tasks/get` need to ask for positions.
        if let (true, Some(engine)) = (limited, &self.engine) {
            engine.set_scheduler(scheduler.clone());
        }
        // A task-capable server says in every description how the tool runs (seed 002).
        let describe = self.engine.is_some();
        for tool in self.tools.iter_mut().filter(|t| t.describe_execution) {
            if describe || tool.controls.limits.is_limited() || tool.controls.timeout.is_some() {
                let summary = tool.execution_summary();
                if let Some(Value::String(d)) = tool.definition.get_mut("description") {
                    if !d.is_empty() {
                        d.push(' ');
                    }
                    d.push_str(&summary);
                }
            }
        }
        let tool_index = self.tools.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        let list = |with_execution: bool| -> Object {
            let tools = self
                .tools
                .iter()
                .map(|t| {
                    let mut d = t.definition.clone();
                    // 2025-11-25 lists task support per tool; the 2026-07-28 Tool has no such field.
                    if with_execution && t.task_support != TaskSupport::Forbidden {
                        d.insert("execution".into(), json!({"taskSupport": t.task_support.as_str()}));
                    }
                    Value::Object(d)
                })
                .collect::<Vec<_>>();
            let mut o = Object::new();
            o.insert("tools".into(), Value::Array(tools));
            o
        };
        let tasks = self.engine.is_some();
        let info = Value::Object(self.info.clone());
        let identity = json!({ meta::SERVER_INFO: info });
        let complete_members = format!(r#""resultType":"complete","_meta":{identity}"#);
        let server = Server {
            inner: Arc::new(Inner {
                info: Value::Object(self.info),
                instructions: self.instructions,
                tool_index,
                tools_list_handshake: list(tasks),
                tools_list: list(false),
                engine: self.engine,
                job_control,
                task_members: format!(r#""resultType":"task","_meta":{identity}"#),
                complete_members: complete_members.clone(),
                cacheable_members: format!(r#"{complete_members},"ttlMs":0,"cacheScope":"private""#),
                tools: self.tools,
                resources: self.resources,
                templates: self.templates,
                prompts: self.prompts,
                completion: self.completion,
                blocking: Arc::new(Semaphore::new(self.blocking_threads)),
                scheduler,
                request_timeout: self.request_timeout,
                passthrough: self.passthrough,
                callback_guard: self.callback_guard,
                sealer: StateSealer::random(),
                subscribers: Mutex::new(HashMap::default()),
            }),
        };
        if let Some(engine) = &server.inner.engine {
            let weak = Arc::downgrade(&server.inner);
            engine.set_resumer(Arc::new(move |record, handle| {
                weak.upgrade().is_some_and(|inner| Server { inner }.resume(record, handle))
            }));
        }
        server
    }
}

struct Inner {
    info: Value,
    instructions: Option<String>,
    tools: Vec<Tool>,
    tool_index: HashMap<String, usize>,
    tools_list_handshake: Object,
    tools_list: Object,
    engine: Option<Engine>,
    job_control: bool,
    resources: Vec<Resource>,
    templates: Vec<ResourceTemplate>,
    prompts: Vec<Prompt>,
    completion: Option<CompletionFn>,
    blocking: Arc<Semaphore>,
    scheduler: Arc<Scheduler>,
    request_timeout: Option<Duration>,
    passthrough: Option<Arc<dyn Passthrough>>,
    callback_guard: Option<Arc<dyn CallbackGuard>>,
    sealer: StateSealer,
    /// Sessions subscribed to each resource URI (weak: a closed session unsubscribes itself).
    subscribers: Mutex<HashMap<String, Vec<Weak<Session>>>>,
    /// `"resultType":"complete","_meta":{serverInfo}`, serialized once.
    complete_members: String,
    /// The same for an extension `CreateTaskResult` (`"resultType":"task"`).
    task_members: String,
    /// The same plus the cache hints of cacheable results.
    cacheable_members: String,
}

/// An MCP server. Cheap to clone.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

/// The per-request metadata of a 2026-07-28 request.
#[derive(Clone, Debug)]
pub struct PerRequestMeta {
    /// `io.modelcontextprotocol/clientCapabilities`.
    pub client_capabilities: Value,
    /// `io.modelcontextprotocol/logLevel`, if the request opted in to log messages.
    pub log_level: Option<LogLevel>,
}

/// The era a request is served in.
#[derive(Clone, Debug)]
pub enum RequestEra {
    /// Handshake era (`initialize`, or a request on a handshake session).
    Handshake,
    /// 2026-07-28 with its validated per-request metadata.
    PerRequest(PerRequestMeta),
}

/// A request that passed the synchronous checks, ready to [`Server::run`].
#[derive(Debug)]
pub struct Prepared {
    id: Id,
    method: String,
    params: Object,
    era: RequestEra,
}

impl Prepared {
    /// The request id.
    pub fn id(&self) -> &Id {
        &self.id
    }
    /// The method.
    pub fn method(&self) -> &str {
        &self.method
    }
    /// The era the request is served in.
    pub fn era(&self) -> Era {
        match self.era {
            RequestEra::Handshake => Era::Handshake,
            RequestEra::PerRequest(_) => Era::PerRequest,
        }
    }
}

/// A `tools/call` result before it is serialized: a handler's output is written straight to
/// JSON ([`ToolOutput::into_json`]); a task creation's answer is written whole
/// ([`Server::creation_answer`]).
enum CallResult {
    Output(ToolOutput),
    Answer(String),
}

/// A request rejected by [`Server::prepare`]: the error and the era it belongs to (which decides
/// the HTTP status).
#[derive(Debug)]
pub struct Rejected {
    /// The request id.
    pub id: Id,
    /// The error to answer with.
    pub error: ErrorObject,
    /// The era the request was addressed to.
    pub era: Era,
}

/// The answer to a request.
#[derive(Debug)]
pub struct Reply {
    /// The request id.
    pub id: Id,
    /// The era it was served in.
    pub era: Era,
    /// The result object as JSON, or the error; `None` when no answer must be sent
    /// (the request was cancelled).
    pub outcome: Option<Result<String, ErrorObject>>,
}

impl Reply {
    /// The serialized JSON-RPC response, or `None` when nothing is to be sent.
    pub fn to_bytes(&self) -> Option<Vec<u8>> {
        // The envelope around a result is under 64 bytes with any realistic id: one allocation.
        let mut out = Vec::with_capacity(match &self.outcome {
            Some(Ok(result)) => result.len() + 64,
            _ => 256,
        });
        match self.outcome.as_ref()? {
            Ok(result) => jsonrpc::write_response(&mut out, &self.id, result),
            Err(e) => jsonrpc::write_error(&mut out, Some(&self.id), e),
        }
        Some(out)
    }

    /// The error code, if the reply is an error.
    pub fn error_code(&self) -> Option<i32> {
        match &self.outcome {
            Some(Err(e)) => Some(e.code),
            _ => None,
        }
    }
}

impl From<Rejected> for Reply {
    fn from(r: Rejected) -> Self {
        Reply { id: r.id, era: r.era, outcome: Some(Err(r.error)) }
    }
}

/// Everything [`Server::run`] needs besides the request.
#[derive(Clone)]
pub struct RequestEnv {
    /// The handshake session (a fresh one for 2026-07-28 requests).
    pub session: Arc<Session>,
    /// Where notifications and server→client requests for this request go.
    pub sink: Option<Sink>,
    /// Fires when the request is cancelled.
    pub cancel: CancellationToken,
    /// The authenticated principal, if the transport authenticated the caller.
    pub principal: Option<String>,
}

fn get_str<'a>(o: &'a Object, key: &str) -> Option<&'a str> {
    o.get(key).and_then(Value::as_str)
}

fn unsupported_version(requested: &str) -> ErrorObject {
    let supported: Vec<&str> = ProtocolVersion::ALL.iter().map(|v| v.as_str()).collect();
    ErrorObject::with_data(
        codes::UNSUPPORTED_PROTOCOL_VERSION,
        format!("Unsupported protocol version {requested:?}; this server supports {}", supported.join(", ")),
        &json!({"supported": supported, "requested": requested}),
    )
}

/// Methods the 2026-07-28 revision removed; a per-request call gets -32601 (HTTP 404).
const REMOVED_IN_2026: &[&str] = &[
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
    "tasks/result",
    "tasks/list",
];

impl Server {
    /// Starts building a server with its implementation name and version.
    pub fn builder(name: &str, version: &str) -> ServerBuilder {
        let mut info = Object::new();
        info.insert("name".into(), json!(name));
        info.insert("version".into(), json!(version));
        ServerBuilder {
            info,
            instructions: None,
            tools: Vec::new(),
            resources: Vec::new(),
            templates: Vec::new(),
            prompts: Vec::new(),
            completion: None,
            blocking_threads: 64,
            engine: None,
            job_control: false,
            global_limits: GlobalLimits::default(),
            request_timeout: None,
            passthrough: None,
            callback_guard: None,
        }
    }

    /// A registered tool.
    pub fn tool(&self, name: &str) -> Option<&Tool> {
        self.inner.tool_index.get(name).map(|&i| &self.inner.tools[i])
    }

    /// The synchronous half of dispatch: classifies the era of a request (read with
    /// [`ServerParams`], its params parsed in the envelope's pass) and validates 2026-07-28
    /// metadata and, when `http` is given, the standard headers.
    pub fn prepare(&self, request: Request<ServerParams>, http: Option<&HeaderMap>) -> Result<Prepared, Rejected> {
        let Request { id, method, params, .. } = request;
        let params = match params {
            None => RequestParams::default(),
            Some(Ok(p)) => p,
            Some(Err(ParamsError::NotAnObject)) => {
                let era = if method == "server/discover" { Era::PerRequest } else { Era::Handshake };
                return Err(Rejected { id, error: ErrorObject::invalid_params("params must be an object"), era });
            }
            Some(Err(ParamsError::Invalid(e))) => {
                return Err(Rejected {
                    id,
                    error: ErrorObject::invalid_params(format!("params are not valid: {e}")),
                    era: Era::Handshake,
                });
            }
        };
        // Routing (protocol digest §2.4, conformance server-stateless): an HTTP request whose
        // MCP-Protocol-Version header names no handshake revision is per-request, whatever its
        // method; otherwise `initialize` is the handshake, and `server/discover` or a body
        // carrying the per-request version is per-request.
        let found = http.map(headers::StandardHeaders::read);
        let header_says_per_request = found.and_then(|f| f.protocol_version.first()).is_some_and(|v| {
            v.to_str().ok().and_then(|s| s.parse::<ProtocolVersion>().ok()).is_none_or(|v| v.era() == Era::PerRequest)
        });
        let per_request = header_says_per_request
            || (method != "initialize" && (method == "server/discover" || params.protocol_version.is_some()));
        if !per_request {
            return Ok(Prepared { id, method, params: params.object, era: RequestEra::Handshake });
        }
        match self.validate_per_request(&method, params, http.zip(found)) {
            Ok((params, meta)) => Ok(Prepared { id, method, params, era: RequestEra::PerRequest(meta) }),
            Err(error) => Err(Rejected { id, error, era: Era::PerRequest }),
        }
    }

    /// Checks a 2026-07-28 request in the order the conformance suite probes: required `_meta`
    /// (-32602), header/body version agreement (-32020), supported version (-32022), then the
    /// other standard headers (-32020).
    fn validate_per_request(
        &self,
        method: &str,
        params: RequestParams,
        http: Option<(&HeaderMap, headers::StandardHeaders<'_>)>,
    ) -> Result<(Object, PerRequestMeta), ErrorObject> {
        let RequestParams { object: params, protocol_version, client_capabilities, log_level } = params;
        let version = match &protocol_version {
            Some(Value::String(v)) => v.as_str(),
            Some(_) => {
                return Err(ErrorObject::invalid_params(format!(
                    "_meta[{:?}] must be a string",
                    meta::PROTOCOL_VERSION
                )));
            }
            None => {
                return Err(ErrorObject::invalid_params(format!(
                    "missing required _meta[{:?}]: 2026-07-28 requests carry their protocol version",
                    meta::PROTOCOL_VERSION
                )));
            }
        };
        let client_capabilities = match client_capabilities {
            Some(c @ Value::Object(_)) => c,
            Some(_) => {
                return Err(ErrorObject::invalid_params(format!(
                    "_meta[{:?}] must be an object",
                    meta::CLIENT_CAPABILITIES
                )));
            }
            None => {
                return Err(ErrorObject::invalid_params(format!(
                    "missing required _meta[{:?}] (send {{}} when the client has none)",
                    meta::CLIENT_CAPABILITIES
                )));
            }
        };
        if let Some((_, found)) = &http {
            headers::validate_version(found, version)?;
        }
        match version.parse::<ProtocolVersion>() {
            Ok(v) if v.era() == Era::PerRequest => {}
            _ => return Err(unsupported_version(version)),
        }
        let log_level = match log_level {
            None => None,
            Some(v) => Some(v.as_str().and_then(LogLevel::parse).ok_or_else(|| {
                ErrorObject::invalid_params(format!(
                    "_meta[{:?}] must be a log level such as \"info\"",
                    meta::LOG_LEVEL
                ))
            })?),
        };
        if let Some((h, found)) = &http {
            headers::validate_method_and_name(found, method, Some(&params))?;
            if method == "tools/call"
                && let Some(tool) = get_str(&params, "name").and_then(|n| self.tool(n))
                && !tool.param_headers.is_empty()
            {
                headers::validate_params(h, &tool.param_headers, params.get("arguments").and_then(Value::as_object))?;
            }
        }
        Ok((params, PerRequestMeta { client_capabilities, log_level }))
    }

    /// The asynchronous half of dispatch. It leaves registering the request for
    /// `notifications/cancelled` ([`Session::begin`]) to the transport, which does it before
    /// reading its next message: here would be too late for a cancel right behind the request.
    pub async fn run(&self, prepared: Prepared, env: RequestEnv) -> Reply {
        let Prepared { id, method, params, era } = prepared;
        let reply_era = match era {
            RequestEra::Handshake => Era::Handshake,
            RequestEra::PerRequest(_) => Era::PerRequest,
        };
        let outcome = self.dispatch(&id, &method, params, era, &env).await;
        let outcome = match outcome {
            Ok(result) => Some(Ok(result)),
            Err(ToolError::Protocol(e)) => Some(Err(e)),
            Err(ToolError::Execution(message) | ToolError::Transient(message)) => {
                Some(Err(ErrorObject::internal(message)))
            }
            Err(e @ ToolError::TimedOut { .. }) => Some(Err(ErrorObject::internal(e.to_string()))),
            Err(ToolError::Cancelled) => None,
            Err(ToolError::InputRequired(_)) => {
                Some(Err(ErrorObject::internal("the handler asked for client input outside a 2026-07-28 request")))
            }
        };
        Reply { id, era: reply_era, outcome }
    }

    /// What the server declares. The 2026-07-28 declaration has no `listChanged`/`subscribe`
    /// flags: those promise `subscriptions/listen`, which this server does not offer yet.
    fn capabilities(&self, era: Era) -> Value {
        let mut caps = Object::new();
        let (list_changed, subscribe) = match era {
            Era::Handshake => (json!({"listChanged": true}), json!({"subscribe": true, "listChanged": true})),
            Era::PerRequest => (json!({}), json!({})),
        };
        caps.insert("tools".into(), list_changed.clone());
        if !self.inner.resources.is_empty() || !self.inner.templates.is_empty() {
            caps.insert("resources".into(), subscribe);
        }
        if !self.inner.prompts.is_empty() {
            caps.insert("prompts".into(), list_changed);
        }
        caps.insert("logging".into(), json!({}));
        if self.inner.completion.is_some() {
            caps.insert("completions".into(), json!({}));
        }
        if let Some(upstream) = &self.inner.passthrough {
            for (key, mut value) in upstream.capabilities() {
                // Tools, logging and tasks are this server's own; everything else the upstream
                // declared (vendor keys included) is what it will answer through us.
                if matches!(key.as_str(), "tools" | "logging" | "tasks" | "extensions") {
                    continue;
                }
                if era == Era::PerRequest
                    && let Value::Object(o) = &mut value
                {
                    o.remove("listChanged");
                    o.remove("subscribe");
                }
                caps.insert(key, value);
            }
        }
        if self.inner.engine.is_some() {
            match era {
                Era::Handshake => {
                    caps.insert("tasks".into(), json!({"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}));
                }
                Era::PerRequest => {
                    caps.insert("extensions".into(), json!({ meta::TASKS_EXTENSION: {} }));
                }
            }
        }
        Value::Object(caps)
    }

    /// The method's work, boxed: it nests every method's state machine and is kilobytes large.
    /// Unboxed, every future that awaits [`Server::run`] is as large, and a spawned request's
    /// future is copied whole several times on its way into its task (a tenth of a stdio call's
    /// instructions went to those copies). Boxed in a plain function, not inside `run`: an
    /// `async fn` keeps room for a value it moves into a box as if it held it.
    fn dispatch<'a>(
        &'a self,
        id: &'a Id,
        method: &'a str,
        params: Object,
        era: RequestEra,
        env: &'a RequestEnv,
    ) -> Pin<Box<dyn Future<Output = Result<String, ToolError>> + Send + 'a>> {
        match era {
            RequestEra::Handshake => Box::pin(self.run_handshake(id, method, params, env)),
            RequestEra::PerRequest(meta) => Box::pin(self.run_per_request(id, method, params, meta, env)),
        }
    }

    async fn run_handshake(
        &self,
        id: &Id,
        method: &str,
        params: Object,
        env: &RequestEnv,
    ) -> Result<String, ToolError> {
        let version = env.session.negotiated().unwrap_or(ProtocolVersion::HTTP_DEFAULT);
        let result: Value = match method {
            "initialize" => {
                let requested = get_str(&params, "protocolVersion")
                    .ok_or_else(|| ErrorObject::invalid_params("initialize needs params.protocolVersion (a string)"))?;
                let negotiated = ProtocolVersion::negotiate_handshake(requested);
                let caps = params.get("capabilities").cloned().unwrap_or_else(|| json!({}));
                env.session.set_negotiated(negotiated, caps);
                let mut result = json!({
                    "protocolVersion": negotiated.as_str(),
                    "capabilities": self.capabilities(Era::Handshake),
                    "serverInfo": self.inner.info,
                });
                if let Some(text) = &self.inner.instructions {
                    result["instructions"] = json!(text);
                }
                result
            }
            "ping" => json!({}),
            "logging/setLevel" => {
                let level = get_str(&params, "level").and_then(LogLevel::parse).ok_or_else(|| {
                    ErrorObject::invalid_params("logging/setLevel needs params.level: debug, info, notice, warning, error, critical, alert or emergency")
                })?;
                env.session.set_log_level(level);
                if self.inner.passthrough.is_some() {
                    // The upstream filters its own messages; one without logging still leaves
                    // this server's level set, so the client gets its answer either way.
                    let channel = Channel::Handshake(version);
                    if let Err(e) = self.forward(id, method, params, env, channel, Era::Handshake).await {
                        tracing::debug!("the upstream did not take logging/setLevel: {e:?}");
                    }
                }
                json!({})
            }
            "resources/subscribe" | "resources/unsubscribe" => {
                let uri = get_str(&params, "uri")
                    .ok_or_else(|| ErrorObject::invalid_params(format!("{method} needs params.uri")))?;
                if method == "resources/subscribe" {
                    env.session.subscribe(uri);
                    let mut subs = crate::session::lock(&self.inner.subscribers);
                    let list = subs.entry(uri.to_owned()).or_default();
                    list.retain(|w| w.strong_count() > 0);
                    list.push(Arc::downgrade(&env.session));
                } else {
                    env.session.unsubscribe(uri);
                }
                if self.inner.passthrough.is_some() {
                    return self.forward(id, method, params, env, Channel::Handshake(version), Era::Handshake).await;
                }
                json!({})
            }
            "tasks/get" | "tasks/result" | "tasks/list" | "tasks/cancel" if self.inner.engine.is_some() => {
                return self.legacy_tasks_method(id, method, params, env, version).await;
            }
            _ => {
                let channel = Channel::Handshake(version);
                return self.run_common(id, method, params, env, channel, Era::Handshake).await;
            }
        };
        Ok(jsonrpc::to_json(&result))
    }

    async fn run_per_request(
        &self,
        id: &Id,
        method: &str,
        params: Object,
        meta: PerRequestMeta,
        env: &RequestEnv,
    ) -> Result<String, ToolError> {
        if method == "subscriptions/listen" {
            return self.listen(id, &params, &meta, env).await;
        }
        if REMOVED_IN_2026.contains(&method) {
            return Err(ErrorObject::new(
                codes::METHOD_NOT_FOUND,
                format!("Method not found: {method} is not part of protocol 2026-07-28"),
            )
            .into());
        }
        if method == "server/discover" {
            let supported: Vec<&str> = ProtocolVersion::ALL.iter().map(|v| v.as_str()).collect();
            let mut result = json!({
                "supportedVersions": supported,
                "capabilities": self.capabilities(Era::PerRequest),
            });
            if let Some(text) = &self.inner.instructions {
                result["instructions"] = json!(text);
            }
            return Ok(self.finish_per_request(result, true));
        }
        if matches!(method, "tasks/get" | "tasks/update" | "tasks/cancel") && self.inner.engine.is_some() {
            if !tasks::declares_tasks(&meta.client_capabilities) {
                return Err(tasks::tasks_capability_required().into());
            }
            return self.modern_tasks_method(method, &params, env).await;
        }
        let answers = self.gather_answers(method, &params)?;
        // Kept for a possible InputRequiredResult: the target of the call, and every answer so
        // far (usually none, so the copy costs nothing).
        let target = get_str(&params, "name").or_else(|| get_str(&params, "uri")).unwrap_or_default().to_owned();
        let previous = answers.clone();
        let channel =
            Channel::PerRequest { log_level: meta.log_level, answers, client_capabilities: meta.client_capabilities };
        match self.run_common(id, method, params, env, channel, Era::PerRequest).await {
            Err(ToolError::InputRequired(requests)) => {
                // Everything answered so far travels sealed in requestState, so the retry can
                // be served by any process without server-side memory.
                let target = target.as_str();
                let mut input_requests = Object::new();
                for r in requests {
                    input_requests.insert(r.key, json!({"method": r.method, "params": r.params}));
                }
                let result = json!({
                    "resultType": "input_required",
                    "inputRequests": input_requests,
                    "requestState": self.inner.sealer.seal(method, target, &previous),
                });
                Ok(self.finish_per_request(result, false))
            }
            other => other,
        }
    }

    /// The answers a 2026-07-28 retry carries: earlier rounds from the sealed `requestState`,
    /// this round from `inputResponses`.
    fn gather_answers(&self, method: &str, params: &Object) -> Result<Object, ToolError> {
        let mut answers = match params.get("requestState") {
            None => Object::new(),
            Some(Value::String(state)) => {
                let target = get_str(params, "name").or_else(|| get_str(params, "uri")).unwrap_or_default();
                self.inner.sealer.open(method, target, state).ok_or_else(|| {
                    ErrorObject::invalid_params("requestState is not valid: it was altered, expired, or belongs to another request; start the call again without it")
                })?
            }
            Some(_) => return Err(ErrorObject::invalid_params("requestState must be a string").into()),
        };
        match params.get("inputResponses") {
            None => {}
            Some(Value::Object(responses)) => {
                for (k, v) in responses {
                    answers.insert(k.clone(), v.clone());
                }
            }
            Some(_) => {
                return Err(ErrorObject::invalid_params("inputResponses must be an object").into());
            }
        }
        Ok(answers)
    }

    /// A handler's `tools/call` result as the answer's JSON: written straight from the
    /// [`ToolOutput`], with the 2026-07-28 members appended when nothing needs merging.
    fn finish_output(&self, out: ToolOutput, era: Era) -> String {
        match era {
            Era::Handshake => out.into_json(),
            Era::PerRequest if out.is_plain() => self.with_per_request_members(out.into_json(), false),
            Era::PerRequest => self.finish_per_request(out.into_value(), false),
        }
    }

    /// Appends the members serialized once at build time (`resultType`, the server's identity,
    /// cache hints when `cacheable`) to a result object's JSON that has none of them.
    fn with_per_request_members(&self, mut json: String, cacheable: bool) -> String {
        let members = if cacheable { &self.inner.cacheable_members } else { &self.inner.complete_members };
        tasks::append_members(&mut json, members);
        json
    }

    /// The answer to the call that created a task, in its era's shape: `{"task":{…}}` on
    /// 2025-11-25, the flat task with `"resultType":"task"` and the server's identity on the
    /// extension.
    fn creation_answer(&self, created: &TaskRecord, per_request: bool) -> String {
        if per_request {
            let mut json = tasks::task_json(created, tasks::Shape::Extension);
            tasks::append_members(&mut json, &self.inner.task_members);
            json
        } else {
            tasks::core_create_task_result(created)
        }
    }

    /// Adds what every 2026-07-28 result carries: `resultType`, the server's identity, and cache
    /// hints on cacheable results.
    fn finish_per_request(&self, mut result: Value, cacheable: bool) -> String {
        // Hot path (most tool results): nothing to merge, so append the members to the
        // serialized text instead of rebuilding the object with a cloned server identity.
        if let Value::Object(o) = &result
            && !o.contains_key("resultType")
            && !o.contains_key("_meta")
            && !(cacheable && (o.contains_key("ttlMs") || o.contains_key("cacheScope")))
        {
            return self.with_per_request_members(jsonrpc::to_json(&result), cacheable);
        }
        if let Value::Object(o) = &mut result {
            o.entry("resultType").or_insert_with(|| json!("complete"));
            if cacheable {
                o.entry("ttlMs").or_insert_with(|| json!(0));
                o.entry("cacheScope").or_insert_with(|| json!("private"));
            }
            let meta = o.entry("_meta").or_insert_with(|| json!({}));
            if let Value::Object(m) = meta {
                m.insert(meta::SERVER_INFO.into(), self.inner.info.clone());
            }
        }
        jsonrpc::to_json(&result)
    }

    /// Methods whose semantics are the same in both eras.
    async fn run_common(
        &self,
        id: &Id,
        method: &str,
        params: Object,
        env: &RequestEnv,
        channel: Channel,
        era: Era,
    ) -> Result<String, ToolError> {
        let finish = |result: Value, cacheable: bool| -> String {
            match era {
                Era::Handshake => jsonrpc::to_json(&result),
                Era::PerRequest => self.finish_per_request(result, cacheable),
            }
        };
        let check_cursor = |params: &Object| -> Result<(), ToolError> {
            match params.get("cursor") {
                None | Some(Value::Null) => Ok(()),
                Some(_) => {
                    Err(ErrorObject::invalid_params("invalid cursor: this server lists everything in one page").into())
                }
            }
        };
        let forwarded = matches!(
            method,
            "resources/list" | "resources/templates/list" | "prompts/list" | "prompts/get" | "completion/complete"
        ) || (method == "resources/read" && !self.reads_locally(&params));
        if forwarded && self.inner.passthrough.is_some() {
            return self.forward(id, method, params, env, channel, era).await;
        }
        match method {
            "tools/list" => {
                check_cursor(&params)?;
                let list = match era {
                    Era::Handshake => &self.inner.tools_list_handshake,
                    Era::PerRequest => &self.inner.tools_list,
                };
                Ok(finish(Value::Object(list.clone()), true))
            }
            "tools/call" => Ok(match self.call_tool(id, params, env, channel).await? {
                CallResult::Answer(json) => json,
                CallResult::Output(out) => self.finish_output(out, era),
            }),
            "resources/list" => {
                check_cursor(&params)?;
                let list: Vec<Value> =
                    self.inner.resources.iter().map(|r| Value::Object(r.definition.clone())).collect();
                Ok(finish(json!({"resources": list}), true))
            }
            "resources/templates/list" => {
                check_cursor(&params)?;
                let list: Vec<Value> =
                    self.inner.templates.iter().map(|t| Value::Object(t.definition.clone())).collect();
                Ok(finish(json!({"resourceTemplates": list}), true))
            }
            "resources/read" => {
                let uri = get_str(&params, "uri")
                    .ok_or_else(|| ErrorObject::invalid_params("resources/read needs params.uri (a string)"))?;
                let ctx = self.context(id, &params, env, channel);
                let result = self.read_resource(ctx, uri, era).await?;
                Ok(finish(result, true))
            }
            "prompts/list" => {
                check_cursor(&params)?;
                let list: Vec<Value> = self.inner.prompts.iter().map(|p| Value::Object(p.definition.clone())).collect();
                Ok(finish(json!({"prompts": list}), true))
            }
            "prompts/get" => {
                let name = get_str(&params, "name")
                    .ok_or_else(|| ErrorObject::invalid_params("prompts/get needs params.name (a string)"))?;
                let prompt = self
                    .inner
                    .prompts
                    .iter()
                    .find(|p| p.name == name)
                    .ok_or_else(|| ErrorObject::invalid_params(format!("Unknown prompt: {name}")))?;
                let args = match params.get("arguments") {
                    None | Some(Value::Null) => Object::new(),
                    Some(Value::Object(a)) => a.clone(),
                    Some(_) => {
                        return Err(ErrorObject::invalid_params("prompts/get arguments must be an object").into());
                    }
                };
                let ctx = self.context(id, &params, env, channel);
                let result = (prompt.get)(ctx, args).await?;
                Ok(finish(result, false))
            }
            "completion/complete" => {
                let f = self.inner.completion.as_ref().ok_or_else(|| ErrorObject::method_not_found(method))?;
                let (Some(r), Some(a)) = (params.get("ref"), params.get("argument")) else {
                    return Err(ErrorObject::invalid_params(
                        "completion/complete needs params.ref and params.argument",
                    )
                    .into());
                };
                let values = f(r, a);
                let total = values.len();
                Ok(finish(json!({"completion": {"values": values, "total": total, "hasMore": false}}), false))
            }
            _ if self.inner.passthrough.is_some() => self.forward(id, method, params, env, channel, era).await,
            _ => Err(ErrorObject::method_not_found(method).into()),
        }
    }

    /// Whether `resources/read` names one of this server's own resources (a proxy serves its
    /// `taskwire://limits` itself and forwards every other URI).
    fn reads_locally(&self, params: &Object) -> bool {
        let Some(uri) = get_str(params, "uri") else { return true };
        self.inner.resources.iter().any(|r| r.uri() == uri)
            || self.inner.templates.iter().any(|t| t.matches(uri).is_some())
    }

    /// Sends a request to the passthrough and answers with its result, unchanged in the
    /// handshake era and completed with what 2026-07-28 requires otherwise.
    async fn forward(
        &self,
        id: &Id,
        method: &str,
        params: Object,
        env: &RequestEnv,
        channel: Channel,
        era: Era,
    ) -> Result<String, ToolError> {
        let Some(upstream) = &self.inner.passthrough else {
            return Err(ErrorObject::method_not_found(method).into());
        };
        let cacheable = method.ends_with("/list") || method == "resources/read";
        let ctx = self.context(id, &params, env, channel);
        let raw = upstream.forward(ctx, method.to_owned(), params).await?;
        match era {
            Era::Handshake => Ok(raw),
            Era::PerRequest => {
                let value = serde_json::from_str(&raw).map_err(|e| {
                    ErrorObject::internal(format!("the upstream server sent a result that is not JSON: {e}"))
                })?;
                Ok(self.finish_per_request(value, cacheable))
            }
        }
    }

    fn context(&self, id: &Id, params: &Object, env: &RequestEnv, channel: Channel) -> Context {
        let progress_token = params
            .get("_meta")
            .and_then(|m| m.get(meta::PROGRESS_TOKEN))
            .filter(|t| t.is_string() || t.is_i64() || t.is_u64())
            .cloned();
        Context::new(env.session.clone(), id.clone(), progress_token, env.sink.clone(), env.cancel.clone(), channel)
            .with_principal(env.principal.clone())
    }

    async fn call_tool(
        &self,
        id: &Id,
        mut params: Object,
        env: &RequestEnv,
        channel: Channel,
    ) -> Result<CallResult, ToolError> {
        let name = get_str(&params, "name")
            .ok_or_else(|| ErrorObject::invalid_params("tools/call needs params.name (a string)"))?;
        let tool = self.tool(name).ok_or_else(|| ErrorObject::invalid_params(format!("Unknown tool: {name}")))?;
        let name = tool.name.as_str();
        // Taken, not cloned: nothing after this reads params.arguments.
        let args = match params.remove("arguments") {
            None | Some(Value::Null) => Object::new(),
            Some(Value::Object(a)) => a,
            Some(_) => {
                return Err(ErrorObject::invalid_params("tools/call arguments must be an object").into());
            }
        };
        let mode = match &self.inner.engine {
            Some(_) => tasks::task_mode(tool, &params, &channel, self.inner.job_control)?,
            None => TaskMode::Inline,
        };
        // Admission comes first: a refused call leaves nothing behind, not even a task record.
        // An unlimited tool skips it (and the owner, whose scope may cost a random id).
        let admission = if self.inner.scheduler.limits(name).is_some() {
            let owner = tasks::owner(&env.principal, Some(env.session.scope()));
            match self.inner.scheduler.admit(name, &owner.key()) {
                Ok(admission) => admission,
                Err(refusal) => return Ok(CallResult::Output(execution::refusal_output(name, &refusal))),
            }
        } else {
            taskwire_engine::Admission::unlimited()
        };
        let per_request = matches!(channel, Channel::PerRequest { .. });
        match mode {
            TaskMode::Inline => self.call_inline(id, tool, params, args, env, channel, admission).await,
            TaskMode::Immediate { ttl_ms } | TaskMode::Job { ttl_ms } => {
                let as_job = matches!(mode, TaskMode::Job { .. });
                let engine = self.inner.engine.as_ref().ok_or_else(|| ErrorObject::internal("no task engine"))?;
                let owner = tasks::owner(&env.principal, Some(env.session.scope()));
                // Durable create: the id leaves only after the record is stored.
                let wire = if per_request || as_job { TaskWire::Extension } else { TaskWire::Core };
                let arguments = serde_json::to_string(&args).ok();
                let idempotency_key = tasks::idempotency_key(&params)?;
                let guard = self.inner.callback_guard.as_deref();
                let callback = webhooks::callback_for(&params, tool, &owner, guard).await?;
                let new = NewTask { owner: &owner, tool: name, ttl_ms, arguments, wire, idempotency_key, callback };
                let handle = match engine.create_task(new).await.map_err(tasks::engine_error)? {
                    Creation::Started(handle) => handle,
                    Creation::Existing(existing) => {
                        // The same call again: the caller gets the task that already exists.
                        return Ok(if as_job {
                            CallResult::Output(crate::jobs::job_started(&existing))
                        } else {
                            CallResult::Answer(self.creation_answer(&existing, per_request))
                        });
                    }
                };
                admission.attach(handle.id());
                let task_env = RequestEnv {
                    session: env.session.clone(),
                    sink: None,
                    cancel: handle.cancellation_token().child_token(),
                    principal: env.principal.clone(),
                };
                let ctx = self.context(id, &params, &task_env, channel);
                ctx.bind_task(handle.clone());
                // Written before the work starts, from the record as created: no copy of it.
                let answer = if as_job {
                    CallResult::Output(crate::jobs::job_started(handle.created()))
                } else {
                    CallResult::Answer(self.creation_answer(handle.created(), per_request))
                };
                let watched = (wire == TaskWire::Core && !as_job).then(|| handle.id().clone());
                self.spawn_task_work(tool, ctx, args, admission, handle, per_request);
                if let Some(task_id) = watched {
                    tasks::notify_status_changes(engine.clone(), owner, task_id, env.session.clone());
                }
                Ok(answer)
            }
            TaskMode::OnPromotion { ttl_ms } => {
                self.call_until_promoted(id, tool, params, args, env, channel, admission, ttl_ms).await
            }
        }
    }

    /// A call answered inline. Tools without controls take the shortest path.
    #[allow(clippy::too_many_arguments)]
    async fn call_inline(
        &self,
        id: &Id,
        tool: &Tool,
        params: Object,
        args: Object,
        env: &RequestEnv,
        channel: Channel,
        admission: taskwire_engine::Admission,
    ) -> Result<CallResult, ToolError> {
        let timeout = tool.controls.timeout.or(self.inner.request_timeout);
        let plain = timeout.is_none() && !tool.retryable && !admission.must_wait();
        let outcome = if plain {
            let ctx = self.context(id, &params, env, channel);
            let _permit = admission.acquire().await;
            tokio::select! {
                out = self.run_handler(tool, ctx.clone(), args) => out,
                _ = env.cancel.cancelled() => {
                    ctx.run_cancel_hooks();
                    return Err(ToolError::Cancelled);
                }
            }
        } else {
            // The work gets its own token: a timeout cancels the work, not the request.
            let work_env = RequestEnv { cancel: env.cancel.child_token(), ..env.clone() };
            let ctx = self.context(id, &params, &work_env, channel);
            let bounds = Bounds { timeout, grace: Duration::ZERO };
            execution::execute(self, tool, ctx, args, admission, bounds).await
        };
        Ok(CallResult::Output(inline_answer(&tool.name, outcome)?))
    }

    /// Runs a task's work in the background and records its outcome.
    fn spawn_task_work(
        &self,
        tool: &Tool,
        ctx: Context,
        args: Object,
        admission: taskwire_engine::Admission,
        handle: taskwire_engine::TaskHandle,
        per_request: bool,
    ) {
        let server = self.clone();
        let name = tool.name.clone();
        let grace = self.inner.engine.as_ref().map_or(Duration::ZERO, |e| e.config().cancel_grace);
        tokio::spawn(async move {
            let Some(tool) = server.tool(&name) else { return };
            let bounds = Bounds { timeout: tool.controls.timeout, grace };
            let outcome = execution::execute(&server, tool, ctx, args, admission, bounds).await;
            tasks::finish(&handle, &name, outcome, per_request).await;
        });
    }

    /// Runs a handler inline until it finishes (its result is the answer) or becomes a task —
    /// because it asked ([`Context::promote_to_task`]) or because its inline deadline passed
    /// ([`Tool::inline_deadline`]). Then the answer is a `CreateTaskResult` and the work goes on
    /// as the task.
    #[allow(clippy::too_many_arguments)]
    async fn call_until_promoted(
        &self,
        id: &Id,
        tool: &Tool,
        params: Object,
        args: Object,
        env: &RequestEnv,
        channel: Channel,
        admission: taskwire_engine::Admission,
        ttl_ms: Option<u64>,
    ) -> Result<CallResult, ToolError> {
        let engine = self.inner.engine.clone().ok_or_else(|| ErrorObject::internal("no task engine"))?;
        // The work outlives this request once promoted, so it gets its own token: the request's
        // cancellation reaches it only before promotion, the task's only after.
        let work_cancel = CancellationToken::new();
        let work_env = RequestEnv { cancel: work_cancel.clone(), ..env.clone() };
        let per_request = matches!(channel, Channel::PerRequest { .. });
        let ctx = self.context(id, &params, &work_env, channel);
        let mut promotion = ctx.allow_promotion();
        let kept_arguments = tool.controls.inline_deadline.and_then(|_| serde_json::to_string(&args).ok());
        let mut work = {
            let (server, name, ctx, grace) =
                (self.clone(), tool.name.clone(), ctx.clone(), engine.config().cancel_grace);
            tokio::spawn(async move {
                let Some(tool) = server.tool(&name) else {
                    return Err(ErrorObject::internal("the tool went away").into());
                };
                let bounds = Bounds { timeout: tool.controls.timeout, grace };
                execution::execute(&server, tool, ctx, args, admission, bounds).await
            })
        };
        let deadline = async {
            match tool.controls.inline_deadline {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        // Who asked for the promotion: the handler waits for an acknowledgement; the deadline
        // does not, and keeps the arguments (nothing was consumed inline, so a re-run is sound).
        let ack = tokio::select! {
            outcome = &mut work => {
                let outcome = outcome.map_err(|_| ErrorObject::internal(format!("tool {} panicked", tool.name)))?;
                return Ok(CallResult::Output(inline_answer(&tool.name, outcome)?));
            }
            request = &mut promotion => Some(request.map_err(|_| ErrorObject::internal("promotion channel closed"))?),
            _ = deadline => None,
            _ = env.cancel.cancelled() => {
                work_cancel.cancel();
                work.abort();
                return Err(ToolError::Cancelled);
            }
        };
        let owner = tasks::owner(&env.principal, Some(env.session.scope()));
        let wire = if per_request { TaskWire::Extension } else { TaskWire::Core };
        // After inline input, the arguments are not kept: a re-run could not reproduce the input
        // (such tools should not be retryable).
        let arguments = if ack.is_none() { kept_arguments } else { None };
        let new =
            NewTask { owner: &owner, tool: &tool.name, ttl_ms, arguments, wire, idempotency_key: None, callback: None };
        let handle = match engine.create_task(new).await {
            Ok(Creation::Started(h)) => h,
            Ok(Creation::Existing(_)) => {
                work_cancel.cancel();
                return Err(ErrorObject::internal("a promoted task cannot reuse an existing one").into());
            }
            Err(e) => {
                work_cancel.cancel();
                return Err(tasks::engine_error(e));
            }
        };
        ctx.bind_task(handle.clone());
        let task_token = handle.cancellation_token().clone();
        let answer = self.creation_answer(handle.created(), per_request);
        let task_id = handle.id().clone();
        let name = tool.name.clone();
        tokio::spawn(async move {
            if let Some(ack) = ack {
                let _ = ack.send(());
            }
            let outcome = tokio::select! {
                joined = work => joined.unwrap_or_else(|_| Err(ErrorObject::internal("the tool panicked").into())),
                _ = task_token.cancelled() => { work_cancel.cancel(); Err(ToolError::Cancelled) }
            };
            tasks::finish(&handle, &name, outcome, per_request).await;
        });
        if wire == TaskWire::Core {
            tasks::notify_status_changes(engine.clone(), owner, task_id, env.session.clone());
        }
        Ok(CallResult::Answer(answer))
    }

    /// Re-runs the work of a task taken over from a dead process, if its tool is retryable: the
    /// stored arguments, the owner's identity, the wire's semantics; nobody is connected, so
    /// progress only updates the status message.
    fn resume(&self, record: TaskRecord, handle: taskwire_engine::TaskHandle) -> bool {
        let Some(tool) = self.tool(&record.tool).filter(|t| t.retryable) else { return false };
        if record.attempt > tool.controls.retry.max_attempts.max(1) {
            return false;
        }
        let Some(args) = record.arguments.as_deref().and_then(|a| serde_json::from_str::<Object>(a).ok()) else {
            return false;
        };
        let per_request = record.wire == TaskWire::Extension;
        let channel = if per_request {
            Channel::PerRequest {
                log_level: None,
                answers: Object::new(),
                client_capabilities: json!({"extensions": {meta::TASKS_EXTENSION: {}}}),
            }
        } else {
            Channel::Handshake(ProtocolVersion::V2025_11_25)
        };
        let env = RequestEnv {
            session: Arc::new(Session::new(Some(record.owner.scope.clone()))),
            sink: None,
            cancel: handle.cancellation_token().child_token(),
            principal: record.owner.principal.clone(),
        };
        let ctx = self.context(&Id::String(format!("resume-{}", record.id.as_str())), &Object::new(), &env, channel);
        ctx.bind_task(handle.clone());
        // Accepted before the crash: it queues again, but no limit refuses it now.
        let admission = self.inner.scheduler.readmit(&tool.name, &record.owner.key());
        admission.attach(handle.id());
        self.spawn_task_work(tool, ctx, args, admission, handle, per_request);
        true
    }

    /// `subscriptions/listen` (2026-07-28): acknowledges the subset of the requested
    /// notifications this server honours (task ids the caller may see; no list-change
    /// notifications, which this server does not declare), then sends `notifications/tasks` on
    /// every status change of those tasks, each tagged with the subscription id. The listen ends
    /// with a complete result once every subscribed task has ended, or when the client closes.
    async fn listen(
        &self,
        id: &Id,
        params: &Object,
        meta: &PerRequestMeta,
        env: &RequestEnv,
    ) -> Result<String, ToolError> {
        let filter = params.get("notifications").and_then(Value::as_object).ok_or_else(|| {
            ErrorObject::invalid_params("subscriptions/listen needs params.notifications (an object)")
        })?;
        let asked: Vec<String> = match filter.get("taskIds") {
            None => Vec::new(),
            Some(Value::Array(ids)) => ids.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            Some(_) => {
                return Err(ErrorObject::invalid_params("notifications.taskIds must be an array of task ids").into());
            }
        };
        if !asked.is_empty() && !tasks::declares_tasks(&meta.client_capabilities) {
            return Err(tasks::tasks_capability_required().into());
        }
        let subscription = serde_json::to_value(id).unwrap_or(Value::Null);
        let owner = tasks::owner(&env.principal, Some(env.session.scope()));
        let mut watched = Vec::new();
        if let Some(engine) = &self.inner.engine {
            for task_id in asked {
                let task_id = taskwire_engine::TaskId::from_wire(&task_id);
                if engine.get(&owner, &task_id).await.is_ok() {
                    watched.push(task_id);
                }
            }
        }
        let tag = json!({ meta::SUBSCRIPTION_ID: subscription });
        let ack = json!({
            "notifications": {"taskIds": watched.iter().map(|t| t.as_str()).collect::<Vec<_>>()},
            "_meta": tag,
        });
        let ctx = self.context(
            id,
            params,
            env,
            Channel::PerRequest {
                log_level: None,
                answers: Object::new(),
                client_capabilities: meta.client_capabilities.clone(),
            },
        );
        ctx.notify("notifications/subscriptions/acknowledged", &ack).await;
        if let Some(engine) = &self.inner.engine {
            tasks::stream_task_notifications(engine, &owner, watched, &tag, &ctx, &env.cancel).await?;
        }
        Ok(self.finish_per_request(json!({"_meta": tag}), false))
    }

    /// `tasks/get|result|list|cancel` on the 2025-11-25 wire.
    async fn legacy_tasks_method(
        &self,
        id: &Id,
        method: &str,
        params: Object,
        env: &RequestEnv,
        version: ProtocolVersion,
    ) -> Result<String, ToolError> {
        let engine = self.inner.engine.as_ref().ok_or_else(|| ErrorObject::method_not_found(method))?;
        let owner = tasks::owner(&env.principal, Some(env.session.scope()));
        let result = match method {
            "tasks/list" => {
                let cursor = match params.get("cursor") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(c)) if taskwire_engine::store::decode_cursor(c).is_some() => Some(c.as_str()),
                    Some(_) => {
                        return Err(ErrorObject::invalid_params(
                            "invalid cursor: pass the nextCursor of the previous page",
                        )
                        .into());
                    }
                };
                let page = engine.list(&owner, cursor, 100).await.map_err(tasks::engine_error)?;
                tasks::core_task_list(&page.tasks, page.next_cursor.as_deref())
            }
            "tasks/get" => {
                let task_id = tasks::task_id_param(&params)?;
                let record = engine.get(&owner, &task_id).await.map_err(tasks::engine_error)?;
                let mut task = tasks::task_json(&record, tasks::Shape::Core);
                if let Some(meta) = webhooks::delivery_meta(engine, &record).await {
                    tasks::splice_raw(&mut task, "_meta", &jsonrpc::to_json(&Value::Object(meta)));
                }
                task
            }
            "tasks/cancel" => {
                let task_id = tasks::task_id_param(&params)?;
                let cancelled = engine.cancel(&owner, &task_id).await.map_err(tasks::engine_error)?;
                tasks::task_json(&cancelled, tasks::Shape::Core)
            }
            _ => {
                let task_id = tasks::task_id_param(&params)?;
                return self.legacy_task_result(id, &params, env, version, &owner, &task_id).await;
            }
        };
        Ok(result)
    }

    /// `tasks/result`: waits for the end, relaying the task's input requests to the client as
    /// server→client requests on this request's stream meanwhile.
    async fn legacy_task_result(
        &self,
        id: &Id,
        params: &Object,
        env: &RequestEnv,
        version: ProtocolVersion,
        owner: &taskwire_engine::Owner,
        task_id: &taskwire_engine::TaskId,
    ) -> Result<String, ToolError> {
        let engine = self.inner.engine.as_ref().ok_or_else(|| ErrorObject::method_not_found("tasks/result"))?;
        let ctx = self.context(id, params, env, Channel::Handshake(version));
        let related = json!({ meta::RELATED_TASK: {"taskId": task_id.as_str()} });
        let mut relayed: std::collections::HashSet<String> = std::collections::HashSet::new();
        loop {
            let mut changes = engine.watch(task_id);
            let record = engine.get(owner, task_id).await.map_err(tasks::engine_error)?;
            match record.status {
                taskwire_engine::TaskStatus::Completed | taskwire_engine::TaskStatus::Failed => {
                    if let Some(result) = &record.result {
                        let mut value: Value = serde_json::from_str(result).unwrap_or_else(|_| json!({}));
                        if let Value::Object(o) = &mut value {
                            let m = o.entry("_meta").or_insert_with(|| json!({}));
                            m[meta::RELATED_TASK] = related[meta::RELATED_TASK].clone();
                        }
                        return Ok(jsonrpc::to_json(&value));
                    }
                    let error: ErrorObject = record
                        .error
                        .as_deref()
                        .and_then(|e| serde_json::from_str(e).ok())
                        .unwrap_or_else(|| ErrorObject::internal("the task failed"));
                    return Err(error.into());
                }
                taskwire_engine::TaskStatus::Cancelled => {
                    return Err(ErrorObject::internal("the task was cancelled before it produced a result").into());
                }
                taskwire_engine::TaskStatus::InputRequired => {
                    let requests: Object =
                        record.input_requests.as_deref().and_then(|r| serde_json::from_str(r).ok()).unwrap_or_default();
                    for (key, request) in requests {
                        if !relayed.insert(key.clone()) {
                            continue;
                        }
                        let method = request.get("method").and_then(Value::as_str).unwrap_or_default().to_owned();
                        let mut request_params = request.get("params").cloned().unwrap_or_else(|| json!({}));
                        if let Value::Object(p) = &mut request_params {
                            let m = p.entry("_meta").or_insert_with(|| json!({}));
                            m[meta::RELATED_TASK] = related[meta::RELATED_TASK].clone();
                        }
                        let answer = ctx.request_input(&key, &method, request_params).await?;
                        let mut responses = Object::new();
                        responses.insert(key, answer);
                        engine.answer(owner, task_id, responses).await.map_err(tasks::engine_error)?;
                    }
                }
                taskwire_engine::TaskStatus::Working => {}
            }
            // Wake on the next change; poll now and then for tasks run by another process.
            let wait = async {
                match changes.as_mut() {
                    Some(rx) => {
                        let _ = rx.changed().await;
                    }
                    None => tokio::time::sleep(std::time::Duration::from_millis(record.poll_interval_ms)).await,
                }
            };
            tokio::select! {
                _ = wait => {}
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                _ = env.cancel.cancelled() => return Err(ToolError::Cancelled),
            }
        }
    }

    /// `tasks/get|update|cancel` of the 2026-07-28 tasks extension: the answer's result as JSON,
    /// with `resultType` and the server's identity (and a completed task's stored result, raw).
    async fn modern_tasks_method(&self, method: &str, params: &Object, env: &RequestEnv) -> Result<String, ToolError> {
        let engine = self.inner.engine.as_ref().ok_or_else(|| ErrorObject::method_not_found(method))?;
        let owner = tasks::owner(&env.principal, Some(env.session.scope()));
        let task_id = tasks::task_id_param(params)?;
        match method {
            "tasks/get" => {
                let record = engine.get(&owner, &task_id).await.map_err(tasks::engine_error)?;
                let mut task = tasks::detailed_task(&record);
                Ok(match webhooks::delivery_meta(engine, &record).await {
                    None => self.with_per_request_members(task, false),
                    Some(mut meta) => {
                        // The deliveries' summary and the server's identity share `_meta`.
                        meta.insert(meta::SERVER_INFO.into(), self.inner.info.clone());
                        let members = format!(r#""resultType":"complete","_meta":{}"#, Value::Object(meta));
                        tasks::append_members(&mut task, &members);
                        task
                    }
                })
            }
            "tasks/update" => {
                let responses = match params.get("inputResponses") {
                    Some(Value::Object(r)) => r.clone(),
                    _ => {
                        return Err(ErrorObject::invalid_params(
                            "tasks/update needs params.inputResponses (an object)",
                        )
                        .into());
                    }
                };
                engine.answer(&owner, &task_id, responses).await.map_err(tasks::engine_error)?;
                Ok(self.with_per_request_members("{}".to_owned(), false))
            }
            _ => match engine.cancel(&owner, &task_id).await {
                // Cancelling an ended task is acknowledged like any other (idempotent).
                Ok(_) | Err(taskwire_engine::EngineError::AlreadyTerminal(_)) => {
                    Ok(self.with_per_request_members("{}".to_owned(), false))
                }
                Err(e) => Err(tasks::engine_error(e)),
            },
        }
    }

    /// The handler's future, `'static`, with panics turned into `-32603` and blocking handlers
    /// moved to the bounded pool.
    pub(crate) fn run_handler(
        &self,
        tool: &Tool,
        ctx: Context,
        args: Object,
    ) -> impl std::future::Future<Output = Result<crate::model::ToolOutput, ToolError>> + Send + 'static {
        let handler = tool.handler.clone();
        let blocking = self.inner.blocking.clone();
        let name = tool.name.clone();
        async move {
            match handler {
                ToolHandler::Async(f) => AssertUnwindSafe(f(ctx, args))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| Err(ErrorObject::internal(format!("tool {name} panicked")).into())),
                ToolHandler::Blocking(f) => {
                    let permit =
                        blocking.acquire_owned().await.map_err(|_| ErrorObject::internal("server is shutting down"))?;
                    let handle = tokio::task::spawn_blocking(move || {
                        let _permit = permit;
                        f(ctx, args)
                    });
                    handle.await.unwrap_or_else(|_| Err(ErrorObject::internal(format!("tool {name} panicked")).into()))
                }
            }
        }
    }

    async fn read_resource(&self, ctx: Context, uri: &str, era: Era) -> Result<Value, ToolError> {
        let (body, mime) = if let Some(r) = self.inner.resources.iter().find(|r| r.uri == uri) {
            ((r.read)(ctx, uri.to_owned()).await?, r.mime_type.clone())
        } else if let Some((t, vars)) = self.inner.templates.iter().find_map(|t| t.matches(uri).map(|v| (t, v))) {
            ((t.read)(ctx, vars).await?, t.mime_type.clone())
        } else {
            let code = match era {
                Era::Handshake => codes::RESOURCE_NOT_FOUND,
                Era::PerRequest => codes::INVALID_PARAMS,
            };
            return Err(ErrorObject::with_data(code, format!("Resource not found: {uri}"), &json!({"uri": uri})).into());
        };
        let mut content = json!({"uri": uri});
        if let Some(m) = mime {
            content["mimeType"] = json!(m);
        }
        match body {
            ResourceBody::Text(t) => content["text"] = json!(t),
            ResourceBody::Blob(b) => content["blob"] = json!(b),
        }
        Ok(json!({"contents": [content]}))
    }

    /// Tells every session subscribed to `uri` that it changed (`notifications/resources/updated`,
    /// sent on the session's standalone stream: the stdio pipe, or the HTTP GET stream). Returns
    /// how many sessions were told; a session whose stream is full or closed is skipped.
    pub fn resource_updated(&self, uri: &str) -> usize {
        let sessions: Vec<Arc<Session>> = {
            let mut subs = crate::session::lock(&self.inner.subscribers);
            let Some(list) = subs.get_mut(uri) else { return 0 };
            list.retain(|w| w.strong_count() > 0);
            list.iter().filter_map(Weak::upgrade).collect()
        };
        let mut out = Vec::with_capacity(96);
        jsonrpc::write_notification(&mut out, "notifications/resources/updated", &json!({"uri": uri}).to_string());
        let message = bytes::Bytes::from(out);
        sessions
            .iter()
            .filter(|s| s.is_subscribed(uri))
            .filter_map(|s| s.standalone())
            .filter(|sink| sink.try_send(crate::session::Outgoing::Message(message.clone())).is_ok())
            .count()
    }

    /// Handles a notification from the client.
    pub fn notification(&self, session: &Session, method: &str, params: Option<&serde_json::value::RawValue>) {
        match method {
            "notifications/initialized" => session.mark_initialized(),
            "notifications/cancelled" => {
                let id = params
                    .and_then(|p| serde_json::from_str::<Value>(p.get()).ok())
                    .and_then(|v| v.get("requestId").cloned())
                    .and_then(|v| serde_json::from_value::<Id>(v).ok());
                if let Some(id) = id {
                    session.cancel(&id);
                }
            }
            _ => {
                if let Some(upstream) = &self.inner.passthrough {
                    upstream.notify(method, params);
                }
            }
        }
    }
}

/// What an inline call answers: tool errors (execution, transient, timeout) become results with
/// `isError: true`; protocol errors and cancellation stay errors.
fn inline_answer(
    tool: &str,
    outcome: Result<crate::model::ToolOutput, ToolError>,
) -> Result<crate::model::ToolOutput, ToolError> {
    match outcome {
        Err(ToolError::Execution(message) | ToolError::Transient(message)) => {
            Ok(crate::model::ToolOutput::error(message))
        }
        Err(ToolError::TimedOut { after, partial }) => Ok(execution::timeout_output(tool, after, partial.map(|p| *p))),
        other => other,
    }
}
