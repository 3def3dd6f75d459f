//! Command-backed MCP tools: the tools of `taskwire serve --config FILE`.
//!
//! A TOML file declares programs. Each call validates its arguments against the tool's JSON
//! Schema, fills the program's argv from them (never through a shell: an argument full of `;`,
//! `$(…)` or quotes reaches the program verbatim), starts it in its own process group with only
//! the environment the tool allows, streams every output line into the task's status (and into
//! progress when a pattern matches), and ends with the tails of stdout and stderr: a result when
//! the program exits 0, an `isError` result otherwise. Cancellation, timeouts and the end of the
//! call stop the whole process group (SIGTERM, then SIGKILL after 2 s).
//!
//! ```toml
//! [server]
//! name = "devtools"                 # how the server introduces itself (default "taskwire")
//! instructions = "Build and test the project."
//! max_running = 8                   # across all tools
//! job_tools = false                 # task_status/task_result/… tools for clients without tasks
//!
//! [[tool]]
//! name = "test"
//! description = "Run the project's tests."
//! command = ["cargo", "test", "--", "{filter}"]   # `{name}`: an argument; absent -> left out
//! cwd = "{project}"                 # relative to this file's directory (default: that directory)
//! env = ["PATH", "HOME"]            # passed through (default: PATH HOME USER LANG LC_ALL TMPDIR TERM)
//! set_env = { CARGO_TERM_COLOR = "never" }
//! progress = '(\d+)/(\d+)'          # one group: percent; two: current and total
//! tail_bytes = 16384                # of each stream, in the result (default 16 KiB)
//! timeout = "30m"                   # per attempt: 250ms, 30s, 5m, 1h30m
//! inline_deadline = "2s"            # answer inline when done in time, else become a task
//! max_running = 1                   # at once; more wait in a queue
//! max_queued = 20                   # then calls are refused
//! rate = "10/min"                   # per caller; rate_all = "100/h" for all callers
//! when_rate_limited = "refuse"      # or "wait"
//! retry = { attempts = 3, on_exit = [75], backoff = "1s", max_backoff = "30s" }
//! retryable = true                  # re-run after a crash (implied by retry)
//! task = "optional"                 # optional (default) | required | forbidden
//! webhook = { url = "https://hooks.example.com/ci", events = "terminal" }  # or "all"; signed
//! [tool.input_schema]               # default: every placeholder a required string
//! type = "object"
//! properties = { project = { type = "string" }, filter = { type = "string" } }
//! required = ["project"]
//! ```
//!
//! ```
//! let config = taskwire_command::config::parse(
//!     "[[tool]]\nname = \"hello\"\ndescription = \"Greets.\"\ncommand = [\"echo\", \"hello\", \"{name}\"]\n",
//!     "tools.toml",
//!     std::path::Path::new("."),
//! ).unwrap();
//! let tools = taskwire_command::tools(&config);
//! assert_eq!(tools[0].name(), "hello");
//! ```

pub mod config;
pub mod run;
pub mod template;

use std::sync::Arc;

use taskwire_server::Tool;

pub use config::{CommandSpec, Config, ConfigError, load};

/// The MCP tools a config declares, with their limits, timeouts, retries and task policy.
pub fn tools(config: &Config) -> Vec<Tool> {
    config.tools.iter().map(|spec| tool(spec.clone())).collect()
}

/// One command-backed tool.
pub fn tool(spec: Arc<CommandSpec>) -> Tool {
    let mut tool = Tool::new(&spec.name, &spec.description)
        .input_schema(spec.input_schema.clone())
        .task(spec.task)
        .limits(spec.limits.clone())
        .retryable(spec.retryable);
    if let Some(t) = spec.timeout {
        tool = tool.timeout(t);
    }
    if let Some(policy) = spec.retry {
        tool = tool.retry(policy);
    }
    if let Some(d) = spec.inline_deadline {
        tool = tool.inline_deadline(d);
    }
    if let Some(callback) = &spec.webhook {
        tool = tool.webhook(&callback.url, callback.every_status);
    }
    tool.handler(move |ctx, args| {
        let spec = spec.clone();
        async move { run::execute(&spec, ctx, args).await }
    })
}
