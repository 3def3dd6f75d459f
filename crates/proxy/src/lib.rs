//! The taskwire gateway: put it in front of any MCP server and that server's slow tools become
//! durable tasks on both task wires, with the engine's limits, while everything else passes
//! through unchanged.
//!
//! * The upstream is a child process ([`Target::Stdio`]) or a Streamable HTTP endpoint
//!   ([`Target::Http`]). A child that exits is restarted with backoff; calls in flight fail with
//!   an error that says so (or, with [`ProxyOptions::retry_on_crash`], are retried once it is back).
//! * Tools are listed as the upstream lists them, unknown members included. The chosen ones
//!   ([`TaskTools`]) become task-capable and say so in their descriptions; the rest keep their
//!   descriptions untouched and run inline.
//! * Progress from the upstream becomes progress (and, in a task, the task's status); log
//!   messages, sampling and elicitation during a call are relayed to the client that made it;
//!   cancelling a call sends `notifications/cancelled` upstream.
//! * Resources, prompts, completions and unknown methods are forwarded with their results
//!   unchanged ([`taskwire_server::Passthrough`]); resource updates reach subscribed sessions.
//!
//! ```no_run
//! # async fn demo() -> Result<(), String> {
//! use taskwire_client::StdioCommand;
//! use taskwire_proxy::{ProxyOptions, TaskTools, Target};
//! let engine = taskwire_engine::Engine::new(
//!     std::sync::Arc::new(taskwire_engine::MemoryStore::new()),
//!     Default::default(),
//! );
//! let target = Target::Stdio(StdioCommand::new("npx", ["-y", "@modelcontextprotocol/server-everything"]));
//! let options = ProxyOptions { task_tools: TaskTools::All, ..Default::default() };
//! let server = taskwire_proxy::build(target, options, engine).await?;
//! # let _ = server; Ok(()) }
//! ```

mod relay;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use taskwire_client::{HttpOptions, StdioCommand};
use taskwire_engine::{Engine, RetryPolicy};
use taskwire_server::webhooks::CallbackGuard;
use taskwire_server::{Server, TaskSupport, Tool};

pub use upstream::Upstream;

/// The server the proxy fronts.
#[derive(Clone, Debug)]
pub enum Target {
    /// A program speaking MCP on its standard input and output.
    Stdio(StdioCommand),
    /// A Streamable HTTP endpoint.
    Http {
        /// Its URL (`http://host:port/mcp`).
        url: String,
        /// Authentication and timeouts.
        options: HttpOptions,
    },
}

/// Which upstream tools become task-capable.
#[derive(Clone, Debug, Default)]
pub enum TaskTools {
    /// None: the proxy only passes through.
    #[default]
    None,
    /// Every tool.
    All,
    /// The named tools.
    Named(Vec<String>),
}

impl TaskTools {
    fn includes(&self, name: &str) -> bool {
        match self {
            TaskTools::None => false,
            TaskTools::All => true,
            TaskTools::Named(names) => names.iter().any(|n| n == name),
        }
    }
}

/// How the proxy serves.
#[derive(Clone, Default)]
pub struct ProxyOptions {
    /// Which tools become task-capable.
    pub task_tools: TaskTools,
    /// Re-run a task tool's call when the upstream died under it (once restarted), up to three
    /// attempts, instead of failing it. Only for tools that are safe to run twice.
    pub retry_on_crash: bool,
    /// Offer job-control tools (`task_status`, `task_result`, …) to clients without tasks.
    pub job_tools: bool,
    /// At most this many task-tool executions at once (the rest wait in a queue).
    pub max_running: Option<usize>,
    /// Stop a task tool's call after this long.
    pub timeout: Option<Duration>,
    /// Checks callers' completion-webhook subscriptions (`_meta["dev.taskwire/webhook"]`);
    /// without one they are refused.
    pub callback_guard: Option<Arc<dyn CallbackGuard>>,
}

/// Connects to the upstream, lists its tools and builds the server that fronts it. The engine's
/// sweeper is the caller's to start (after this returns, so re-runs find their tools).
pub async fn build(target: Target, options: ProxyOptions, engine: Engine) -> Result<Server, String> {
    let (upstream, events) = Upstream::connect(target, options.retry_on_crash).await.map_err(|e| e.to_string())?;
    let listed = upstream.list_tools().await.map_err(|e| format!("cannot list the upstream's tools: {e}"))?;
    if let TaskTools::Named(names) = &options.task_tools {
        let missing: Vec<&str> = names
            .iter()
            .filter(|n| !listed.iter().any(|t| t.get("name").and_then(Value::as_str) == Some(n.as_str())))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "--task-tools names tools the upstream does not list: {} (it lists: {})",
                missing.join(", "),
                listed.iter().filter_map(|t| t.get("name").and_then(Value::as_str)).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    let info = upstream.server_info();
    let name = info.get("name").and_then(Value::as_str).unwrap_or("taskwire-proxy").to_owned();
    let version = info.get("version").and_then(Value::as_str).unwrap_or("0").to_owned();
    let mut builder = Server::builder(&name, &version).tasks(engine).passthrough(upstream.clone());
    if let Some(text) = upstream.instructions() {
        builder = builder.instructions(text);
    }
    if options.job_tools {
        builder = builder.job_control_tools();
    }
    if let Some(n) = options.max_running {
        builder = builder.max_running(n);
    }
    if let Some(guard) = &options.callback_guard {
        builder = builder.callback_guard(guard.clone());
    }
    for definition in listed {
        let Some(tool) = Tool::from_definition(definition) else { continue };
        builder = builder.tool(proxied_tool(tool, &upstream, &options));
    }
    let server = builder.build();
    tokio::spawn(relay::route_events(server.clone(), events));
    upstream.supervise();
    Ok(server)
}

fn proxied_tool(tool: Tool, upstream: &Arc<Upstream>, options: &ProxyOptions) -> Tool {
    let name = tool.name().to_owned();
    let mut tool = if options.task_tools.includes(&name) {
        let mut t = tool.task(TaskSupport::Optional);
        if options.retry_on_crash {
            t = t.retry(RetryPolicy { max_attempts: 3, ..RetryPolicy::default() });
        }
        if let Some(timeout) = options.timeout {
            t = t.timeout(timeout);
        }
        t
    } else {
        tool.keep_description()
    };
    let upstream = upstream.clone();
    tool = tool.handler(move |ctx, args| {
        let (upstream, name) = (upstream.clone(), name.clone());
        async move { relay::call_tool(&upstream, ctx, &name, args).await }
    });
    tool
}
