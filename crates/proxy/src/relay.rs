//! One request relayed upstream: what the upstream sends on the way reaches the client that made
//! the call, and cancelling the call cancels it upstream.

use serde_json::value::RawValue;
use serde_json::{Value, json};
use taskwire_client::{Call, CallEvent, Client, ClientError, Incoming, ServerRequest};
use taskwire_protocol::ErrorObject;
use taskwire_server::model::{Object, ToolOutput};
use taskwire_server::{Context, Server, ToolError};
use tokio::sync::mpsc;

use crate::upstream::Upstream;

/// Calls a tool upstream on behalf of `ctx`'s client.
pub(crate) async fn call_tool(
    upstream: &Upstream,
    ctx: Context,
    name: &str,
    args: Object,
) -> Result<ToolOutput, ToolError> {
    let client = upstream.client().await.map_err(|e| lost(upstream, name, &e))?;
    let mut params = Object::new();
    params.insert("name".into(), Value::String(name.to_owned()));
    params.insert("arguments".into(), Value::Object(args));
    match relay(&client, &ctx, "tools/call", params, true).await {
        Ok(raw) => ToolOutput::from_raw_result(raw).ok_or_else(|| {
            ToolError::Protocol(ErrorObject::internal(format!(
                "the upstream server answered tools/call {name} with something that is not a result object"
            )))
        }),
        Err(RelayError::Upstream(e @ (ClientError::Closed(_) | ClientError::Connect(_)))) => {
            Err(lost(upstream, name, &e))
        }
        Err(RelayError::Upstream(e)) => Err(ToolError::Protocol(as_protocol_error(e))),
        Err(RelayError::Cancelled) => Err(ToolError::Cancelled),
    }
}

/// A call the upstream's death took with it: retried when the proxy was told that tools are
/// safe to re-run, else a tool error that says what happened.
fn lost(upstream: &Upstream, name: &str, e: &ClientError) -> ToolError {
    let message = format!("the upstream server failed during {name}: {e}");
    if upstream.retry_on_crash { ToolError::transient(message) } else { ToolError::Execution(message) }
}

pub(crate) enum RelayError {
    Upstream(ClientError),
    Cancelled,
}

impl From<RelayError> for ToolError {
    fn from(e: RelayError) -> Self {
        match e {
            RelayError::Upstream(e) => ToolError::Protocol(as_protocol_error(e)),
            RelayError::Cancelled => ToolError::Cancelled,
        }
    }
}

fn as_protocol_error(e: ClientError) -> ErrorObject {
    match e {
        ClientError::Rpc(error) => error,
        other => unavailable(&other),
    }
}

/// The error a client gets when the upstream cannot be reached.
pub(crate) fn unavailable(e: &ClientError) -> ErrorObject {
    ErrorObject::internal(format!("the upstream server is unavailable: {e}"))
}

/// Params as the upstream should see them: the 2026-07-28 per-request members are this
/// server's business, not the (handshake-era) upstream's.
pub(crate) fn upstream_params(mut params: Object) -> Object {
    params.remove("requestState");
    params.remove("inputResponses");
    if let Some(Value::Object(meta)) = params.get_mut("_meta") {
        meta.retain(|k, _| !k.starts_with("io.modelcontextprotocol/"));
    }
    params
}

/// Sends `method` upstream and relays what comes back until the answer.
///
/// Tool calls always ask for progress (it becomes the task's status); other requests only when
/// the client asked.
pub(crate) async fn relay(
    client: &Client,
    ctx: &Context,
    method: &str,
    params: Object,
    progress: bool,
) -> Result<Box<RawValue>, RelayError> {
    let call = client.start(method, params, progress).await.map_err(RelayError::Upstream)?;
    let mut call = CancelOnDrop(Some(call));
    let mut asked = 0u32;
    loop {
        let Some(c) = call.0.as_mut() else { return Err(RelayError::Cancelled) };
        tokio::select! {
            event = c.next() => match event {
                CallEvent::Done(outcome) => {
                    call.0 = None;
                    return outcome.map_err(RelayError::Upstream);
                }
                CallEvent::Incoming(Incoming::Notification { method, params }) => pass_on(ctx, &method, params.as_deref()).await,
                CallEvent::Incoming(Incoming::Request(request)) => {
                    asked += 1;
                    tokio::spawn(ask_client(ctx.clone(), request, asked));
                }
            },
            _ = ctx.cancelled() => {
                if let Some(c) = call.0.take() {
                    c.cancel("the client cancelled the request").await;
                }
                return Err(RelayError::Cancelled);
            }
        }
    }
}

/// Sends `notifications/cancelled` upstream if the call is dropped unanswered (a timeout drops
/// the handler's future).
struct CancelOnDrop(Option<Call>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(call) = self.0.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move { call.cancel("the request ended at the proxy (timeout or cancellation)").await });
        }
    }
}

/// Progress keeps its meaning with the client's own token (and becomes the task's status);
/// anything else is relayed as sent.
async fn pass_on(ctx: &Context, method: &str, params: Option<&RawValue>) {
    let params: Value = params.and_then(|p| serde_json::from_str(p.get()).ok()).unwrap_or_else(|| json!({}));
    if method == "notifications/progress" {
        let Some(progress) = params.get("progress").and_then(Value::as_f64) else { return };
        let total = params.get("total").and_then(Value::as_f64);
        ctx.progress(progress, total, params.get("message").and_then(Value::as_str)).await;
        return;
    }
    ctx.notify(method, &params).await;
}

/// An upstream request during a call (sampling, elicitation) goes to the client that made the
/// call; its answer goes back upstream.
async fn ask_client(ctx: Context, request: ServerRequest, n: u32) {
    let params: Value =
        request.params.as_deref().and_then(|p| serde_json::from_str(p.get()).ok()).unwrap_or_else(|| json!({}));
    let method = request.method.clone();
    let outcome = match method.as_str() {
        "ping" => Ok(json!({})),
        _ => ctx.request_input(&format!("upstream-{n}"), &method, params).await.map_err(|e| match e {
            ToolError::Protocol(e) => e,
            other => ErrorObject::internal(other.to_string()),
        }),
    };
    let _ = request.respond(outcome).await;
}

/// What the upstream sends outside any call: resource updates reach the sessions subscribed
/// to them; `ping` and `roots/list` are answered here (roots belong to individual clients,
/// which a shared upstream connection cannot name).
pub(crate) async fn route_events(server: Server, mut events: mpsc::Receiver<Incoming>) {
    while let Some(event) = events.recv().await {
        match event {
            Incoming::Notification { method, params } if method == "notifications/resources/updated" => {
                let uri = params
                    .as_deref()
                    .and_then(|p| serde_json::from_str::<Value>(p.get()).ok())
                    .and_then(|v| v.get("uri").and_then(Value::as_str).map(str::to_owned));
                if let Some(uri) = uri {
                    server.resource_updated(&uri);
                }
            }
            Incoming::Notification { method, .. } => tracing::debug!("upstream notification outside a call: {method}"),
            Incoming::Request(request) => {
                let outcome = match request.method.as_str() {
                    "ping" => Ok(json!({})),
                    "roots/list" => Ok(json!({"roots": []})),
                    other => Err(ErrorObject::method_not_found(other)),
                };
                let _ = request.respond(outcome).await;
            }
        }
    }
}
