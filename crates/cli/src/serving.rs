//! `serve` and `proxy`: build a server, give it a durable engine, serve it on stdio or HTTP.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use taskwire_engine::{Engine, EngineConfig};
use taskwire_server::Server;
use taskwire_transport::http::HttpConfig;
use taskwire_transport::stdio::StdioConfig;
use taskwire_webhook::{WebhookSettings, Webhooks};
use tokio_util::sync::CancellationToken;

use crate::{Failure, ServeFlags};

/// `taskwire serve --config FILE`.
pub async fn serve(config_path: PathBuf, flags: ServeFlags) -> Result<(), Failure> {
    let config = taskwire_command::load(&config_path).map_err(|e| Failure::Usage(e.to_string()))?;
    let engine = engine(&flags)?;
    let name = config.server.name.clone().unwrap_or_else(|| "taskwire".into());
    let mut builder = Server::builder(&name, env!("CARGO_PKG_VERSION")).tasks(engine.clone());
    if let Some(text) = &config.server.instructions {
        builder = builder.instructions(text);
    }
    if let Some(n) = config.server.max_running {
        builder = builder.max_running(n);
    }
    if config.server.job_tools || flags.job_tools {
        builder = builder.job_control_tools();
    }
    let webhooks = webhooks(&flags)?;
    builder = builder.callback_guard(Arc::new(webhooks.sender.clone()));
    for spec in &config.tools {
        // A tool's own webhook is the operator's: refused, it is a configuration error now,
        // not a dead letter per task later.
        if let Some(callback) = &spec.webhook
            && let Err(e) = webhooks.sender.check(&callback.url, None).await
        {
            return Err(Failure::Usage(format!("{}: tool {:?}: webhook: {e}", config_path.display(), spec.name)));
        }
        builder = builder.tool(taskwire_command::tool(spec.clone()));
    }
    let server = builder.build();
    webhooks.start(engine.clone(), CancellationToken::new());
    engine.start_sweeper();
    run(server, &flags, &format!("serving {} tools from {}", config.tools.len(), config_path.display())).await
}

/// `taskwire proxy … -- COMMAND` or `--upstream URL`.
pub async fn proxy(
    target: taskwire_proxy::Target,
    mut options: taskwire_proxy::ProxyOptions,
    flags: ServeFlags,
) -> Result<(), Failure> {
    let engine = engine(&flags)?;
    let webhooks = webhooks(&flags)?;
    options.callback_guard = Some(Arc::new(webhooks.sender.clone()));
    let server = taskwire_proxy::build(target, options, engine.clone()).await.map_err(Failure::Connection)?;
    webhooks.start(engine.clone(), CancellationToken::new());
    engine.start_sweeper();
    run(server, &flags, "proxying").await
}

/// Completion webhooks: callers subscribe per call under `_meta["dev.taskwire/webhook"]` (and
/// `serve`'s tools may carry one); the outbox is drained for as long as the server runs.
fn webhooks(flags: &ServeFlags) -> Result<Webhooks, Failure> {
    let settings = WebhookSettings {
        secrets: flags.webhook_secret.iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect(),
        allow: flags.webhook_allow.clone(),
        attempts: flags.webhook_attempts,
        ..WebhookSettings::default()
    };
    Webhooks::new(&settings).map_err(|e| Failure::Usage(format!("--webhook-secret (or TASKWIRE_WEBHOOK_SECRET): {e}")))
}

fn engine(flags: &ServeFlags) -> Result<Engine, Failure> {
    let spec = match &flags.store {
        Some(s) => s.clone(),
        None => format!("sqlite:{}", default_store_path()?.display()),
    };
    let store = taskwire_store_sqlite::open_spec(&spec).map_err(|e| Failure::Usage(format!("--store {e}")))?;
    Ok(Engine::new(store, EngineConfig::default()))
}

/// `$XDG_DATA_HOME/taskwire/tasks.db`, else `~/.local/share/taskwire/tasks.db`.
fn default_store_path() -> Result<PathBuf, Failure> {
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/share")))
        .ok_or_else(|| {
            Failure::Usage("no data directory (neither XDG_DATA_HOME nor HOME is set): pass --store sqlite:PATH".into())
        })?;
    let dir = data.join("taskwire");
    std::fs::create_dir_all(&dir)
        .map_err(|e| Failure::Usage(format!("cannot create {}: {e}; pass --store sqlite:PATH", dir.display())))?;
    Ok(dir.join("tasks.db"))
}

async fn run(server: Server, flags: &ServeFlags, what: &str) -> Result<(), Failure> {
    let Some(addr) = flags.http else {
        eprintln!("taskwire: {what} on standard input and output");
        return taskwire_transport::stdio::serve_stdio(server, StdioConfig::default())
            .await
            .map_err(|e| Failure::Connection(format!("standard input or output failed: {e}")));
    };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        Failure::Usage(format!("cannot listen on {addr}: {e} (is the port taken? port 0 picks a free one)"))
    })?;
    let bound = listener.local_addr().map_err(|e| Failure::Connection(e.to_string()))?;
    let mut config = HttpConfig::default();
    if flags.any_host {
        config.allowed_hosts = None;
    }
    if let Some(path) = &flags.auth_tokens {
        let tokens = taskwire_transport::http::read_bearer_tokens(path).map_err(Failure::Usage)?;
        config.bearer_tokens = Some(Arc::new(tokens));
    }
    eprintln!("taskwire: {what}; listening on http://{bound}{}", config.path);
    let shutdown = CancellationToken::new();
    tokio::spawn(taskwire_transport::stop_on_signal(shutdown.clone()));
    taskwire_transport::http::serve(server, listener, config, shutdown)
        .await
        .map_err(|e| Failure::Connection(e.to_string()))
}
