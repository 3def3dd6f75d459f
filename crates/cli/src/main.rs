//! `taskwire`: durable, asynchronous MCP tools from the command line.
//!
//! ```text
//! taskwire serve --config tools.toml [--stdio | --http ADDR]      # command-backed tools as tasks
//! taskwire proxy [--stdio | --http ADDR] --all-tools -- npx -y @modelcontextprotocol/server-everything
//! taskwire tasks list|get|result|cancel|watch … --server URL      # inspect tasks
//! taskwire call TOOL key=value n:=3 --task --wait --server URL    # one call
//! ```
//!
//! Exit codes: 0 success, 1 the tool failed (an `isError` result, a failed or cancelled task),
//! 2 bad usage or configuration, 3 the server answered a protocol error, 4 the server could not
//! be reached or the connection broke.

mod client_commands;
mod serving;
mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "taskwire", version, about = "Durable, asynchronous MCP tools: serve, proxy, inspect and call tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the command-backed tools a TOML file declares (see examples/devtools.toml).
    Serve {
        /// The tools file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        #[command(flatten)]
        serving: ServeFlags,
    },
    /// Front an existing MCP server: everything passes through, chosen tools become tasks.
    Proxy {
        /// Make these tools task-capable (comma-separated names).
        #[arg(long, value_delimiter = ',', value_name = "NAMES", conflicts_with = "all_tools")]
        task_tools: Vec<String>,
        /// Make every tool task-capable.
        #[arg(long)]
        all_tools: bool,
        /// Reach a Streamable HTTP server at URL instead of starting COMMAND.
        #[arg(long, value_name = "URL", conflicts_with = "command")]
        upstream: Option<String>,
        /// Bearer token for --upstream.
        #[arg(long, value_name = "TOKEN", env = "TASKWIRE_UPSTREAM_TOKEN", requires = "upstream")]
        upstream_token: Option<String>,
        /// Re-run a task whose upstream died under it once the upstream is back (only for tools
        /// that are safe to run twice); without it such a task fails with a clear error.
        #[arg(long)]
        retry_on_crash: bool,
        /// Stop a task tool's call after this long (e.g. 30s, 10m).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        timeout: Option<std::time::Duration>,
        /// At most this many task-tool calls run at once; the rest wait in a queue.
        #[arg(long, value_name = "N")]
        max_running: Option<usize>,
        #[command(flatten)]
        serving: ServeFlags,
        /// The upstream server's command and arguments (after --).
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Inspect and control tasks on a server.
    Tasks {
        #[command(subcommand)]
        action: TasksAction,
    },
    /// Call a tool once: arguments as key=value (a string) or key:=JSON (a number, list, …).
    Call {
        /// The tool.
        tool: String,
        /// Arguments: key=value for strings, key:=JSON for anything else.
        #[arg(value_name = "ARG")]
        args: Vec<String>,
        /// Ask for the call to run as a task (prints its id unless --wait).
        #[arg(long)]
        task: bool,
        /// With --task: follow the task with a progress bar and print its result.
        #[arg(long, requires = "task")]
        wait: bool,
        #[command(flatten)]
        connect: ConnectFlags,
    },
}

#[derive(Subcommand, Debug)]
enum TasksAction {
    /// The caller's tasks (with --token: the principal's; otherwise only this connection's).
    List {
        #[command(flatten)]
        connect: ConnectFlags,
    },
    /// One task's status.
    Get {
        /// The task id.
        id: String,
        #[command(flatten)]
        connect: ConnectFlags,
    },
    /// Wait for a task to end and print its result.
    Result {
        /// The task id.
        id: String,
        #[command(flatten)]
        connect: ConnectFlags,
    },
    /// Cancel a task.
    Cancel {
        /// The task id.
        id: String,
        #[command(flatten)]
        connect: ConnectFlags,
    },
    /// Show live progress bars until every task has ended.
    Watch {
        /// The task ids.
        #[arg(required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        connect: ConnectFlags,
    },
}

/// How `serve` and `proxy` serve.
#[derive(Args, Debug, Clone)]
struct ServeFlags {
    /// Serve newline-delimited JSON-RPC on standard input and output (the default).
    #[arg(long, conflicts_with = "http")]
    stdio: bool,
    /// Serve Streamable HTTP at http://ADDR/mcp (port 0 picks a free port; the address is printed).
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// Where tasks live: sqlite:PATH or memory. Default: tasks.db in the user's data directory.
    #[arg(long, value_name = "sqlite:PATH|memory")]
    store: Option<String>,
    /// HTTP only: require `Authorization: Bearer TOKEN`; FILE holds `TOKEN PRINCIPAL` lines.
    #[arg(long, value_name = "FILE", requires = "http")]
    auth_tokens: Option<PathBuf>,
    /// HTTP only: accept any Host and Origin, not only loopback names.
    #[arg(long, requires = "http")]
    any_host: bool,
    /// Offer task_status, task_result, task_cancel and task_list tools to clients without tasks.
    #[arg(long)]
    job_tools: bool,
    /// Let completion webhooks go to this non-public network (e.g. 10.1.0.0/16, or 127.0.0.0/8
    /// for a receiver on this machine); repeatable. Loopback, private, link-local and
    /// cloud-metadata destinations are refused otherwise.
    #[arg(long, value_name = "CIDR")]
    webhook_allow: Vec<ipnet::IpNet>,
    /// Sign completion webhooks with these Standard Webhooks secrets (whsec_…), comma-separated,
    /// newest first (several during a key rotation). Best given in the environment, which `ps`
    /// does not show.
    #[arg(
        long,
        value_name = "SECRETS",
        env = "TASKWIRE_WEBHOOK_SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    webhook_secret: Vec<String>,
    /// Attempts per webhook delivery before it is dead (the delay between them doubles from up
    /// to 1 s to at most 10 min).
    #[arg(long, value_name = "N", default_value_t = 8)]
    webhook_attempts: u32,
}

/// How the client commands reach a server.
#[derive(Args, Debug, Clone)]
struct ConnectFlags {
    /// The server's Streamable HTTP endpoint (e.g. http://127.0.0.1:3000/mcp).
    #[arg(long, value_name = "URL", env = "TASKWIRE_SERVER", conflicts_with = "stdio")]
    server: Option<String>,
    /// Start the server given after -- and talk to it on its standard input and output.
    #[arg(long)]
    stdio: bool,
    /// Bearer token (for servers started with --auth-tokens).
    #[arg(long, value_name = "TOKEN", env = "TASKWIRE_TOKEN")]
    token: Option<String>,
    /// Print JSON (one document, or one line per update for watch) instead of text.
    #[arg(long)]
    json: bool,
    /// With --stdio: the server's command and arguments.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// How a command ended badly; each kind has its own exit code.
#[derive(Debug)]
enum Failure {
    /// The tool or task failed (1).
    Tool(String),
    /// Bad usage or configuration (2).
    Usage(String),
    /// The server answered with a protocol error (3).
    Protocol(String),
    /// The server could not be reached, or the connection broke (4).
    Connection(String),
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Tool(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Protocol(_) => 3,
            Failure::Connection(_) => 4,
        }
    }

    fn message(&self) -> &str {
        match self {
            Failure::Tool(m) | Failure::Usage(m) | Failure::Protocol(m) | Failure::Connection(m) => m,
        }
    }
}

impl From<taskwire_client::ClientError> for Failure {
    fn from(e: taskwire_client::ClientError) -> Self {
        use taskwire_client::ClientError as E;
        match e {
            E::Rpc(_) | E::Invalid(_) => Failure::Protocol(e.to_string()),
            E::Connect(_) | E::Closed(_) | E::Http { .. } | E::Cancelled => Failure::Connection(e.to_string()),
        }
    }
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    taskwire_command::config::parse_duration(s)
}

/// mimalloc, as the benchmark peers use: a request's few dozen short-lived allocations cost
/// about half what they cost in glibc's allocator (measured per stdio call with callgrind, in
/// bench/NOTES.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet_default = matches!(cli.command, Command::Tasks { .. } | Command::Call { .. });
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TASKWIRE_LOG")
                .unwrap_or_else(|_| if quiet_default { "error".into() } else { "warn".into() }),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("taskwire: cannot start the async runtime: {e}");
            return ExitCode::from(4);
        }
    };
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Serve { config, serving } => serving::serve(config, serving).await,
            Command::Proxy {
                task_tools,
                all_tools,
                upstream,
                upstream_token,
                retry_on_crash,
                timeout,
                max_running,
                serving,
                command,
            } => {
                let selection = if all_tools {
                    taskwire_proxy::TaskTools::All
                } else if task_tools.is_empty() {
                    taskwire_proxy::TaskTools::None
                } else {
                    taskwire_proxy::TaskTools::Named(task_tools)
                };
                let target = match (upstream, command.split_first()) {
                    (Some(url), _) => taskwire_proxy::Target::Http {
                        url,
                        options: taskwire_client::HttpOptions { bearer_token: upstream_token, ..Default::default() },
                    },
                    (None, Some((program, args))) => {
                        taskwire_proxy::Target::Stdio(taskwire_client::StdioCommand::new(program, args))
                    }
                    (None, None) => {
                        return Err(Failure::Usage(
                            "say which server to front: `taskwire proxy [flags] -- COMMAND ARGS…` or --upstream URL"
                                .into(),
                        ));
                    }
                };
                let options = taskwire_proxy::ProxyOptions {
                    task_tools: selection,
                    retry_on_crash,
                    job_tools: serving.job_tools,
                    max_running,
                    timeout,
                    callback_guard: None,
                };
                serving::proxy(target, options, serving).await
            }
            Command::Tasks { action } => client_commands::tasks(action).await,
            Command::Call { tool, args, task, wait, connect } => {
                client_commands::call(&tool, &args, task, wait, connect).await
            }
        }
    });
    // Children (a --stdio server, a proxied upstream) are killed with the runtime.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("taskwire: {}", failure.message());
            ExitCode::from(failure.exit_code())
        }
    }
}
