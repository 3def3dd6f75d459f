//! The connection to the upstream server: connect and initialize, restart a child process that
//! exits (with backoff), and hand the current client to calls.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use serde_json::{Value, json};
use taskwire_client::{Client, ClientError, Incoming};
use taskwire_server::model::Object;
use taskwire_server::{Context, Passthrough, ToolError};
use tokio::sync::{mpsc, watch};

use crate::Target;

/// How long a call waits for a restarting upstream before it fails.
const WAIT_FOR_RESTART: Duration = Duration::from_secs(30);
/// The first and the longest pause between restarts.
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// An upstream that stayed up this long restarts with the first pause again.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// The upstream server and its current connection.
pub struct Upstream {
    target: Target,
    current: watch::Sender<Option<Client>>,
    initialized: Mutex<Value>,
    events: mpsc::Sender<Incoming>,
    pub(crate) retry_on_crash: bool,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").field("target", &self.target).finish_non_exhaustive()
    }
}

/// What the proxy declares it can answer when the upstream asks (it relays to its own clients).
fn client_capabilities() -> Value {
    json!({"sampling": {}, "elicitation": {}, "roots": {"listChanged": true}})
}

impl Upstream {
    /// Connects and initializes. Messages the upstream sends outside any call arrive on the
    /// returned receiver (across restarts).
    pub async fn connect(
        target: Target,
        retry_on_crash: bool,
    ) -> Result<(Arc<Upstream>, mpsc::Receiver<Incoming>), ClientError> {
        let (events, events_rx) = mpsc::channel(1024);
        let (client, initialized) = open(&target, &events).await?;
        let upstream = Upstream {
            target,
            current: watch::Sender::new(Some(client)),
            initialized: Mutex::new(initialized),
            events,
            retry_on_crash,
        };
        Ok((Arc::new(upstream), events_rx))
    }

    fn initialized(&self) -> Value {
        self.initialized.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The upstream's `serverInfo`.
    pub fn server_info(&self) -> Object {
        self.initialized().get("serverInfo").and_then(Value::as_object).cloned().unwrap_or_default()
    }

    /// The upstream's `instructions`.
    pub fn instructions(&self) -> Option<String> {
        self.initialized().get("instructions").and_then(Value::as_str).map(str::to_owned)
    }

    /// Every tool the upstream lists (following `nextCursor`), as raw objects.
    pub async fn list_tools(&self) -> Result<Vec<Object>, ClientError> {
        let client = self.client().await?;
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..1000 {
            let params = match &cursor {
                Some(c) => json!({"cursor": c}),
                None => json!({}),
            };
            let raw = client.request("tools/list", Some(&params)).await?;
            let page: Value = serde_json::from_str(raw.get()).map_err(|e| ClientError::Invalid(e.to_string()))?;
            if let Some(list) = page.get("tools").and_then(Value::as_array) {
                tools.extend(list.iter().filter_map(|t| t.as_object().cloned()));
            }
            cursor = page.get("nextCursor").and_then(Value::as_str).map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
        Ok(tools)
    }

    /// The live connection; while the upstream restarts, waits for it (up to 30 s).
    pub async fn client(&self) -> Result<Client, ClientError> {
        live_client(self.current.subscribe()).await
    }

    /// Restarts a child-process upstream whenever it exits, with exponential backoff.
    pub(crate) fn supervise(self: &Arc<Self>) {
        if !matches!(self.target, Target::Stdio(_)) {
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut pause = BACKOFF_FIRST;
            loop {
                let Some(this) = weak.upgrade() else { return };
                let Some(client) = this.current.borrow().clone() else { return };
                let up_since = Instant::now();
                drop(this);
                client.closed().await;
                let reason = client.closed_reason().unwrap_or("it exited").to_owned();
                drop(client);
                if up_since.elapsed() > HEALTHY_AFTER {
                    pause = BACKOFF_FIRST;
                }
                loop {
                    tracing::warn!("the upstream server stopped ({reason}); restarting it in {} ms", pause.as_millis());
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(BACKOFF_MAX);
                    let Some(this) = weak.upgrade() else { return };
                    match open(&this.target, &this.events).await {
                        Ok((client, initialized)) => {
                            *this.initialized.lock().unwrap_or_else(|p| p.into_inner()) = initialized;
                            this.current.send_replace(Some(client));
                            tracing::info!("the upstream server is back");
                            break;
                        }
                        Err(e) => tracing::warn!("restarting the upstream server failed: {e}"),
                    }
                }
            }
        });
    }
}

async fn live_client(mut rx: watch::Receiver<Option<Client>>) -> Result<Client, ClientError> {
    let waited = tokio::time::timeout(WAIT_FOR_RESTART, async {
        loop {
            if let Some(c) = rx.borrow_and_update().as_ref().filter(|c| c.closed_reason().is_none()) {
                return Some(c.clone());
            }
            if rx.changed().await.is_err() {
                return None;
            }
        }
    })
    .await;
    match waited {
        Ok(Some(c)) => Ok(c),
        _ => Err(ClientError::Closed(format!(
            "the upstream server is down and did not come back within {} s",
            WAIT_FOR_RESTART.as_secs()
        ))),
    }
}

/// Starts (or reaches) the upstream, initializes it, and pumps what it sends outside calls into
/// `events`.
async fn open(target: &Target, events: &mpsc::Sender<Incoming>) -> Result<(Client, Value), ClientError> {
    let (client, mut incoming) = match target {
        Target::Stdio(cmd) => Client::spawn(cmd.clone())?,
        Target::Http { url, options } => Client::connect_http(url, options.clone())?,
    };
    let initialized = client.initialize(client_capabilities()).await?;
    let events = events.clone();
    tokio::spawn(async move {
        while let Some(message) = incoming.recv().await {
            if events.send(message).await.is_err() {
                return;
            }
        }
    });
    Ok((client, initialized))
}

impl Passthrough for Upstream {
    fn capabilities(&self) -> Object {
        self.initialized().get("capabilities").and_then(Value::as_object).cloned().unwrap_or_default()
    }

    fn forward(
        &self,
        ctx: Context,
        method: String,
        params: Object,
    ) -> taskwire_server::registry::BoxFuture<Result<String, ToolError>> {
        let client = live_client(self.current.subscribe());
        Box::pin(async move {
            let client = client.await.map_err(|e| ToolError::Protocol(crate::relay::unavailable(&e)))?;
            let raw = crate::relay::relay(&client, &ctx, &method, crate::relay::upstream_params(params), false).await?;
            Ok(raw.get().to_owned())
        })
    }

    fn notify(&self, method: &str, params: Option<&RawValue>) {
        let Some(client) = self.current.borrow().clone() else { return };
        let method = method.to_owned();
        let params: Option<Value> = params.and_then(|p| serde_json::from_str(p.get()).ok());
        tokio::spawn(async move {
            let _ = client.notify(&method, params.as_ref()).await;
        });
    }
}
