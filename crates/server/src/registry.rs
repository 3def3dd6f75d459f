//! What a server offers: tools, resources, resource templates, prompts and completions.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use taskwire_engine::{RetryPolicy, ToolLimits};
use taskwire_protocol::ErrorObject;

use crate::context::Context;
use crate::error::ToolError;
use crate::model::{Object, ToolOutput};

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// An async tool handler.
pub type AsyncToolFn = Arc<dyn Fn(Context, Object) -> BoxFuture<Result<ToolOutput, ToolError>> + Send + Sync>;
/// A blocking tool handler.
pub type BlockingToolFn = Arc<dyn Fn(Context, Object) -> Result<ToolOutput, ToolError> + Send + Sync>;
/// Reads a resource template given the variables of the matched URI.
pub type TemplateReadFn = Arc<dyn Fn(Context, Object) -> BoxFuture<Result<ResourceBody, ToolError>> + Send + Sync>;

/// How a tool's handler runs.
#[derive(Clone)]
pub(crate) enum ToolHandler {
    /// An async function, polled on the reactor.
    Async(AsyncToolFn),
    /// A blocking or CPU-bound function, run on the bounded blocking pool.
    Blocking(BlockingToolFn),
}

/// Whether a tool runs as a task.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TaskSupport {
    /// Always inline (the default).
    #[default]
    Forbidden,
    /// As a task when the client can take one (2025-11-25: it sent `params.task`; 2026-07-28: the
    /// request declared the tasks extension), else inline.
    Optional,
    /// Only as a task: a client that cannot take one gets an error (2025-11-25: -32601;
    /// 2026-07-28: -32021 naming the tasks extension).
    Required,
}

impl TaskSupport {
    /// The 2025-11-25 `execution.taskSupport` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Forbidden => "forbidden",
            Self::Optional => "optional",
            Self::Required => "required",
        }
    }
}

/// A tool: its listing and its handler.
///
/// ```
/// use taskwire_server::{Tool, model::ToolOutput};
/// let echo = Tool::new("echo", "Echo the text back.")
///     .input_schema(serde_json::json!({"type":"object","properties":{"text":{"type":"string"}}}))
///     .handler(|_ctx, args| async move {
///         Ok(ToolOutput::text(args.get("text").and_then(|t| t.as_str()).unwrap_or_default()))
///     });
/// assert_eq!(echo.name(), "echo");
/// ```
#[derive(Clone)]
pub struct Tool {
    pub(crate) name: String,
    pub(crate) definition: Object,
    pub(crate) handler: ToolHandler,
    pub(crate) param_headers: Vec<(String, String)>,
    pub(crate) task_support: TaskSupport,
    pub(crate) task_on_promotion: bool,
    pub(crate) retryable: bool,
    pub(crate) controls: Controls,
    /// Whether the server appends how the tool runs to its description.
    pub(crate) describe_execution: bool,
    /// The completion webhook of its tasks when the caller names none.
    pub(crate) callback: Option<taskwire_engine::Callback>,
}

/// How a tool's executions are bounded: the scheduler's limits plus what the executor enforces.
#[derive(Clone, Debug, Default)]
pub(crate) struct Controls {
    pub(crate) limits: ToolLimits,
    pub(crate) timeout: Option<Duration>,
    pub(crate) retry: RetryPolicy,
    pub(crate) inline_deadline: Option<Duration>,
}

impl Tool {
    /// A tool with a name and a description (every tool needs one: clients list them to models).
    pub fn new(name: impl Into<String>, description: impl Into<String>) -> Self {
        let name = name.into();
        let mut definition = Object::new();
        definition.insert("name".into(), Value::String(name.clone()));
        definition.insert("description".into(), Value::String(description.into()));
        definition.insert("inputSchema".into(), json!({"type": "object", "properties": {}}));
        Self {
            name,
            definition,
            handler: ToolHandler::Async(Arc::new(|_, _| {
                Box::pin(async { Err(ToolError::Protocol(ErrorObject::internal("tool has no handler"))) })
            })),
            param_headers: Vec::new(),
            task_support: TaskSupport::Forbidden,
            task_on_promotion: false,
            retryable: false,
            controls: Controls::default(),
            describe_execution: true,
            callback: None,
        }
    }

    /// A tool listed exactly as `definition` says (a `Tool` object as a server lists it, with
    /// whatever members it has); `None` when it has no string `name`. A proxy re-serves a
    /// server's tools this way. An `execution` member is dropped: task support is what this
    /// server offers ([`Tool::task`]), not what the definition's author did.
    ///
    /// ```
    /// use taskwire_server::Tool;
    /// let def = serde_json::json!({"name": "t", "description": "d", "inputSchema": {"type": "object"}, "x-extra": 1});
    /// let tool = Tool::from_definition(def.as_object().unwrap().clone()).unwrap();
    /// assert_eq!(tool.name(), "t");
    /// ```
    pub fn from_definition(mut definition: Object) -> Option<Self> {
        let name = definition.get("name")?.as_str()?.to_owned();
        definition.remove("execution");
        let mut tool = Tool::new(name, "");
        if let Some(schema) = definition.get("inputSchema") {
            tool.param_headers = taskwire_protocol::headers::param_headers(schema);
        }
        tool.definition = definition;
        Some(tool)
    }

    /// Keeps the description exactly as given: the server does not append how the tool runs
    /// (for a proxy's pass-through tools, whose descriptions are another server's).
    pub fn keep_description(mut self) -> Self {
        self.describe_execution = false;
        self
    }

    /// Bounds how many executions run and wait, and how often callers may start one (see
    /// [`ToolLimits`]). Over a limit, a call is refused with a tool error (`isError: true`)
    /// that says why and, for a rate limit, carries `_meta["dev.taskwire/retryAfterMs"]`; no
    /// task is created.
    ///
    /// ```
    /// use taskwire_server::Tool;
    /// use taskwire_engine::{Rate, ToolLimits};
    /// let tool = Tool::new("deploy", "Deploy the site.")
    ///     .limits(ToolLimits::default().max_running(1).max_queued(10).rate_per_owner(Rate::per_second(1.0)));
    /// # let _ = tool;
    /// ```
    pub fn limits(mut self, limits: ToolLimits) -> Self {
        self.controls.limits = limits;
        self
    }

    /// Stops an execution after `timeout`: a task ends `failed` with a timeout error that keeps
    /// the partial output the handler reported ([`Context::set_partial_output`]); an inline call
    /// gets a tool error. The handler's cancellation token fires, so blocking handlers and
    /// children stop too, and [`Context::on_cancel`] hooks run.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.controls.timeout = Some(timeout);
        self
    }

    /// Sets the retry policy for transient failures ([`ToolError::Transient`]) and declares the
    /// tool [`Tool::retryable`].
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.controls.retry = RetryPolicy { max_attempts: policy.max_attempts.max(1), ..policy };
        self.retryable = true;
        self
    }

    /// Sync-first promotion: the call starts inline and answers inline if it finishes within
    /// `deadline`; otherwise it becomes a task and the client gets a `CreateTaskResult`. On
    /// 2026-07-28 the server decides this whenever the request declared the tasks extension; on
    /// 2025-11-25 only a call that asked for a task (`params.task`) can be promoted, any other
    /// keeps running inline. Implies at least [`TaskSupport::Optional`].
    pub fn inline_deadline(mut self, deadline: Duration) -> Self {
        self.controls.inline_deadline = Some(deadline);
        if self.task_support == TaskSupport::Forbidden {
            self.task_support = TaskSupport::Optional;
        }
        self
    }

    /// The sentence a tool's description gets about how it runs and its limits (seed 002: a
    /// tool's documentation says whether it runs inline or as a task).
    pub(crate) fn execution_summary(&self) -> String {
        let c = &self.controls;
        let mut s = match (self.task_support, c.inline_deadline) {
            (TaskSupport::Forbidden, _) => "Runs inline.".to_owned(),
            (_, Some(d)) => {
                format!("Answers inline when done within {}, else continues as a background task.", human_duration(d))
            }
            (TaskSupport::Optional, None) => "Runs as a background task when the client supports tasks.".to_owned(),
            (TaskSupport::Required, None) => "Runs only as a background task.".to_owned(),
        };
        let l = &c.limits;
        let mut limits = Vec::new();
        if let Some(n) = l.max_running {
            limits.push(format!("at most {n} at once (up to {} more wait in a queue)", l.queue_bound()));
        }
        if let Some(r) = l.rate_per_owner {
            limits.push(format!("{} per caller", r.describe()));
        }
        if let Some(r) = l.rate_per_tool {
            limits.push(format!("{} for all callers", r.describe()));
        }
        if let Some(t) = c.timeout {
            limits.push(format!("times out after {}", human_duration(t)));
        }
        if self.retryable && c.retry.max_attempts > 1 {
            limits.push(format!("retried up to {} attempts on transient failures", c.retry.max_attempts));
        }
        if !limits.is_empty() {
            s.push_str(" Limits: ");
            s.push_str(&limits.join("; "));
            s.push('.');
        }
        s
    }

    /// Declares that the tool may safely run again with the same arguments: when the process
    /// running one of its tasks dies, another process (or the restarted one) re-runs it once the
    /// task's lease lapses, up to `EngineConfig::max_attempts` starts in all. Tools with side
    /// effects that must not repeat stay non-retryable: their tasks end `failed` instead.
    ///
    /// A retryable tool's transient failures ([`ToolError::Transient`]) are retried too, with the
    /// default [`RetryPolicy`] unless [`Tool::retry`] sets another.
    pub fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// Posts a signed event to `url` when one of the tool's tasks ends (`every_status`: on every
    /// status change), unless the caller names its own callback (see [`crate::webhooks`]). The
    /// server needs a webhook dispatcher (`taskwire-webhook`), which checks the destination
    /// before every delivery.
    ///
    /// ```
    /// use taskwire_server::{TaskSupport, Tool};
    /// let tool = Tool::new("deploy", "Deploys").task(TaskSupport::Required).webhook("https://ci.example/hook", false);
    /// # let _ = tool;
    /// ```
    pub fn webhook(mut self, url: impl Into<String>, every_status: bool) -> Self {
        self.callback = Some(taskwire_engine::Callback { url: url.into(), every_status });
        self
    }

    /// Declares whether the tool runs as a task (needs a server built with
    /// [`crate::ServerBuilder::tasks`]).
    pub fn task(mut self, support: TaskSupport) -> Self {
        self.task_support = support;
        self
    }

    /// On 2026-07-28, starts the call inline and makes it a task only when the handler calls
    /// [`Context::promote_to_task`] (typically after gathering input with multi-round trips).
    /// Implies at least [`TaskSupport::Optional`].
    pub fn task_on_promotion(mut self) -> Self {
        self.task_on_promotion = true;
        if self.task_support == TaskSupport::Forbidden {
            self.task_support = TaskSupport::Optional;
        }
        self
    }

    /// How the tool runs as a task.
    pub fn task_support(&self) -> TaskSupport {
        self.task_support
    }

    /// The tool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets the JSON Schema of the arguments. It is listed exactly as given (2020-12 keywords
    /// such as `$defs` and `$ref` are kept).
    pub fn input_schema(mut self, schema: Value) -> Self {
        self.param_headers = taskwire_protocol::headers::param_headers(&schema);
        self.definition.insert("inputSchema".into(), schema);
        self
    }

    /// Sets the JSON Schema of `structuredContent`.
    pub fn output_schema(mut self, schema: Value) -> Self {
        self.definition.insert("outputSchema".into(), schema);
        self
    }

    /// Sets any other member of the tool's listing (`title`, `annotations`, `icons`, …).
    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.definition.insert(key.into(), value);
        self
    }

    /// Sets an async handler.
    pub fn handler<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Context, Object) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ToolOutput, ToolError>> + Send + 'static,
    {
        self.handler = ToolHandler::Async(Arc::new(move |ctx, args| Box::pin(f(ctx, args))));
        self
    }

    /// Sets a blocking handler. It runs off the reactor on the server's bounded blocking pool;
    /// it can check [`Context::is_cancelled`] between steps.
    pub fn blocking<F>(mut self, f: F) -> Self
    where
        F: Fn(Context, Object) -> Result<ToolOutput, ToolError> + Send + Sync + 'static,
    {
        self.handler = ToolHandler::Blocking(Arc::new(f));
        self
    }
}

/// `250 ms`, `2 s`, `1.5 s`, `3 min`.
pub(crate) fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms.is_multiple_of(60_000) {
        format!("{} min", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// The contents of a resource read: text or base64 blob.
#[derive(Clone, Debug)]
pub enum ResourceBody {
    /// Text content.
    Text(String),
    /// Binary content, base64-encoded.
    Blob(String),
}

/// Produces a resource's body on each read.
pub type ReadFn = Arc<dyn Fn(Context, String) -> BoxFuture<Result<ResourceBody, ToolError>> + Send + Sync>;

/// A resource with a fixed URI.
#[derive(Clone)]
pub struct Resource {
    pub(crate) uri: String,
    pub(crate) mime_type: Option<String>,
    pub(crate) definition: Object,
    pub(crate) read: ReadFn,
}

impl Resource {
    /// A resource with fixed content.
    ///
    /// ```
    /// use taskwire_server::{Resource, registry::ResourceBody};
    /// let r = Resource::new("test://a", "a", "text/plain", ResourceBody::Text("hi".into()));
    /// assert_eq!(r.uri(), "test://a");
    /// ```
    pub fn new(uri: &str, name: &str, mime_type: &str, body: ResourceBody) -> Self {
        Self::dynamic(uri, name, mime_type, move |_, _| {
            let body = body.clone();
            async move { Ok(body) }
        })
    }

    /// A resource whose content is computed on every read.
    pub fn dynamic<F, Fut>(uri: &str, name: &str, mime_type: &str, read: F) -> Self
    where
        F: Fn(Context, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ResourceBody, ToolError>> + Send + 'static,
    {
        let mut definition = Object::new();
        definition.insert("uri".into(), json!(uri));
        definition.insert("name".into(), json!(name));
        definition.insert("mimeType".into(), json!(mime_type));
        Self {
            uri: uri.into(),
            mime_type: Some(mime_type.into()),
            definition,
            read: Arc::new(move |ctx, uri| Box::pin(read(ctx, uri))),
        }
    }

    /// Sets any other member of the listing (`description`, `title`, `annotations`, …).
    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.definition.insert(key.into(), value);
        self
    }

    /// The URI.
    pub fn uri(&self) -> &str {
        &self.uri
    }
}

/// A parameterized resource (RFC 6570 level-1 template such as `test://template/{id}/data`).
#[derive(Clone)]
pub struct ResourceTemplate {
    pub(crate) template: String,
    pub(crate) mime_type: Option<String>,
    pub(crate) definition: Object,
    pub(crate) read: TemplateReadFn,
}

impl ResourceTemplate {
    /// A template whose reads receive the matched variables.
    ///
    /// ```
    /// use taskwire_server::{ResourceTemplate, registry::ResourceBody};
    /// let t = ResourceTemplate::new("test://t/{id}", "t", "text/plain", |_ctx, vars| async move {
    ///     Ok(ResourceBody::Text(format!("id={}", vars["id"].as_str().unwrap_or_default())))
    /// });
    /// assert!(t.matches("test://t/42").is_some());
    /// ```
    pub fn new<F, Fut>(template: &str, name: &str, mime_type: &str, read: F) -> Self
    where
        F: Fn(Context, Object) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ResourceBody, ToolError>> + Send + 'static,
    {
        let mut definition = Object::new();
        definition.insert("uriTemplate".into(), json!(template));
        definition.insert("name".into(), json!(name));
        definition.insert("mimeType".into(), json!(mime_type));
        Self {
            template: template.into(),
            mime_type: Some(mime_type.into()),
            definition,
            read: Arc::new(move |ctx, vars| Box::pin(read(ctx, vars))),
        }
    }

    /// Sets any other member of the listing.
    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.definition.insert(key.into(), value);
        self
    }

    /// The variables of `uri` if it matches this template.
    pub fn matches(&self, uri: &str) -> Option<Object> {
        match_template(&self.template, uri)
    }
}

/// Matches a URI against a template with `{name}` variables, each matching a non-empty run of
/// characters other than `/`.
fn match_template(template: &str, uri: &str) -> Option<Object> {
    let mut vars = Object::new();
    let mut rest = uri;
    let mut tpl = template;
    while !tpl.is_empty() {
        if let Some(after_open) = tpl.strip_prefix('{') {
            let close = after_open.find('}')?;
            let name = &after_open[..close];
            tpl = &after_open[close + 1..];
            let literal_end = tpl.find('{').unwrap_or(tpl.len());
            let next_literal = &tpl[..literal_end];
            let end =
                if next_literal.is_empty() { rest.find('/').unwrap_or(rest.len()) } else { rest.find(next_literal)? };
            let value = &rest[..end];
            if value.is_empty() || value.contains('/') {
                return None;
            }
            vars.insert(name.into(), Value::String(value.into()));
            rest = &rest[end..];
        } else {
            let literal_end = tpl.find('{').unwrap_or(tpl.len());
            rest = rest.strip_prefix(&tpl[..literal_end])?;
            tpl = &tpl[literal_end..];
        }
    }
    rest.is_empty().then_some(vars)
}

/// Produces a prompt's messages from its arguments.
pub type PromptFn = Arc<dyn Fn(Context, Object) -> BoxFuture<Result<Value, ToolError>> + Send + Sync>;

/// A prompt template.
#[derive(Clone)]
pub struct Prompt {
    pub(crate) name: String,
    pub(crate) definition: Object,
    pub(crate) get: PromptFn,
}

impl Prompt {
    /// A prompt; `get` returns the `GetPromptResult` object (`{messages, description?}`). It may
    /// ask the client for input through its [`Context`] like a tool.
    ///
    /// ```
    /// use taskwire_server::Prompt;
    /// let p = Prompt::new("hello", "Say hello.", |_ctx, _args| async move {
    ///     Ok(serde_json::json!({"messages": [{"role":"user","content":{"type":"text","text":"hello"}}]}))
    /// });
    /// assert_eq!(p.name(), "hello");
    /// ```
    pub fn new<F, Fut>(name: &str, description: &str, get: F) -> Self
    where
        F: Fn(Context, Object) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, ToolError>> + Send + 'static,
    {
        let mut definition = Object::new();
        definition.insert("name".into(), json!(name));
        definition.insert("description".into(), json!(description));
        Self { name: name.into(), definition, get: Arc::new(move |ctx, args| Box::pin(get(ctx, args))) }
    }

    /// Declares an argument.
    pub fn argument(mut self, name: &str, description: &str, required: bool) -> Self {
        let args = self.definition.entry("arguments").or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = args {
            list.push(json!({"name": name, "description": description, "required": required}));
        }
        self
    }

    /// The prompt's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Answers `completion/complete`: given the `ref` and the `argument` objects, the candidate values.
pub type CompletionFn = Arc<dyn Fn(&Value, &Value) -> Vec<String> + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_only_whole_uris_with_nonempty_segments() {
        let vars = match_template("test://template/{id}/data", "test://template/123/data").unwrap();
        assert_eq!(vars["id"], "123");
        assert!(match_template("test://template/{id}/data", "test://template//data").is_none());
        assert!(match_template("test://template/{id}/data", "test://template/1/2/data").is_none());
        assert!(match_template("test://template/{id}/data", "test://template/1/data/x").is_none());
        let vars = match_template("x://{a}/{b}", "x://1/2").unwrap();
        assert_eq!((vars["a"].as_str(), vars["b"].as_str()), (Some("1"), Some("2")));
    }
}
