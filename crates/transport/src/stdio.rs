//! The stdio transport: one JSON-RPC message per line, both eras.
//!
//! * `server/discover` is answered at any time and never pins the era, so a probing client may
//!   still `initialize` afterwards (protocol digest §2.4).
//! * The era is pinned by the first successful era-distinctive request: `initialize` pins the
//!   handshake era, any other request carrying 2026-07-28 `_meta` pins the per-request era.
//! * Every request runs concurrently: a slow tool never delays `ping` or other requests.
//! * A line longer than the limit is discarded unread and answered with `-32600`.
//! * End of input stops reading. Requests in flight still get their answers if they finish
//!   within [`StdioConfig::drain`]; what runs longer is cancelled, and the server returns once
//!   every answer is written. So `cat requests.jsonl | server` answers every quick request,
//!   and a client that closes stdin and waits (the SDKs wait 2 s, then send SIGTERM) sees its
//!   long calls' cancel hooks run — a command's process group killed — before the signal.

use std::sync::{Arc, Mutex};

use crate::Message;
use bytes::Bytes;
use taskwire_protocol::jsonrpc;
use taskwire_protocol::lines::{LineRead, read_line, trim_line};
use taskwire_protocol::{Era, ErrorObject};
use taskwire_server::{Outgoing, RequestEnv, Server, Session};
use tokio::io::{AsyncBufRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Settings of the stdio transport.
#[derive(Clone, Debug)]
pub struct StdioConfig {
    /// The longest line accepted, in bytes (default 4 MiB).
    pub max_line_bytes: usize,
    /// How long requests in flight at the end of input may still run before they are cancelled
    /// (default 1 s: under the 2 s that the official SDK clients wait before SIGTERM).
    pub drain: std::time::Duration,
}

impl Default for StdioConfig {
    fn default() -> Self {
        Self { max_line_bytes: 4 * 1024 * 1024, drain: std::time::Duration::from_secs(1) }
    }
}

/// Serves `server` on the process's standard input and output until input ends. When they are
/// pipes (as MCP clients spawn servers), the reactor drives them ([`crate::std_pipes`]).
///
/// The reading loop runs as a task of the runtime, wherever this is awaited from. Awaited inside
/// `block_on`, as a `main` does, it would otherwise read on the main thread while the requests
/// it spawns run on a worker: two threads woken per call instead of one (3.9 context switches
/// per call against 1.0, measured one call at a time on one CPU).
pub async fn serve_stdio(server: Server, config: StdioConfig) -> std::io::Result<()> {
    #[cfg(unix)]
    let (input, output) = (crate::std_pipes::stdin(), crate::std_pipes::stdout());
    #[cfg(not(unix))]
    let (input, output) = (tokio::io::stdin(), tokio::io::stdout());
    let serving = tokio::spawn(serve(server, BufReader::with_capacity(64 * 1024, input), output, config));
    match serving.await {
        Ok(outcome) => outcome,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(std::io::Error::other(format!("the stdio server stopped: {e}"))),
    }
}

/// Serves `server` over any line-oriented byte stream pair.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use tokio::io::AsyncReadExt;
/// use taskwire_server::Server;
/// use taskwire_transport::stdio::{serve, StdioConfig};
/// let input: &[u8] = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n";
/// let (writer, mut reader) = tokio::io::duplex(4096);
/// serve(Server::builder("s", "1").build(), input, writer, StdioConfig::default()).await.unwrap();
/// let mut output = Vec::new();
/// reader.read_to_end(&mut output).await.unwrap();
/// assert_eq!(output, b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n");
/// # });
/// ```
pub async fn serve<R, W>(server: Server, mut reader: R, writer: W, config: StdioConfig) -> std::io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Outgoing>(1024);
    let writer_task = tokio::spawn(write_lines(writer, rx));
    // The connection's id scopes unauthenticated task listings to this process's client.
    let session = Arc::new(Session::new(Some(format!("stdio-{}", uuid::Uuid::new_v4().simple()))));
    session.set_standalone(Some(tx.clone()));
    let pinned: Arc<Mutex<Option<Era>>> = Arc::new(Mutex::new(None));
    let tracker = TaskTracker::new();
    let mut line = Vec::with_capacity(4096);
    loop {
        line.clear();
        match read_line(&mut reader, &mut line, config.max_line_bytes).await? {
            LineRead::Eof => break,
            LineRead::TooLong => {
                let err = ErrorObject::invalid_request(format!(
                    "Invalid Request: line longer than {} bytes was discarded",
                    config.max_line_bytes
                ));
                send_error(&tx, None, &err).await;
            }
            LineRead::Line => {
                let text = trim_line(&line);
                if text.is_empty() {
                    continue;
                }
                match Message::read(text) {
                    Err(e) => send_error(&tx, e.id(), &e.to_error()).await,
                    Ok(Message::Notification(n)) => server.notification(&session, &n.method, n.params.as_deref()),
                    Ok(answer @ (Message::Response(_) | Message::Error(_))) => {
                        session.answer_message(answer);
                    }
                    Ok(Message::Request(req)) => {
                        let is_probe = req.method == "server/discover";
                        let is_initialize = req.method == "initialize";
                        let prepared = match server.prepare(req, None) {
                            Ok(p) => p,
                            Err(rejected) => {
                                send_error(&tx, Some(&rejected.id), &rejected.error).await;
                                continue;
                            }
                        };
                        let era = prepared.era();
                        let current = *pinned.lock().unwrap_or_else(|p| p.into_inner());
                        if let Some(conflict) = era_conflict(current, era, is_probe, is_initialize) {
                            send_error(&tx, Some(prepared.id()), &conflict).await;
                            continue;
                        }
                        // Requests of both eras are cancelled through the connection's
                        // notifications/cancelled; a per-request session only isolates state.
                        // Registered here, before the next line is read, so that a cancel
                        // right behind its request finds it however late the request starts.
                        let cancel = CancellationToken::new();
                        let in_flight = session.begin(prepared.id(), cancel.clone());
                        let (server, session, tx, pinned) =
                            (server.clone(), session.clone(), tx.clone(), pinned.clone());
                        tracker.spawn(async move {
                            let session_for_request = match era {
                                Era::Handshake => session.clone(),
                                Era::PerRequest => Arc::new(per_request_session(&tx)),
                            };
                            let env = RequestEnv {
                                session: session_for_request,
                                sink: Some(tx.clone()),
                                cancel,
                                principal: None,
                            };
                            let reply = server.run(prepared, env).await;
                            drop(in_flight);
                            let succeeded = matches!(reply.outcome, Some(Ok(_)));
                            if succeeded && !is_probe {
                                pinned.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(era);
                            }
                            if let Some(bytes) = reply.to_bytes() {
                                let _ = tx.send(Outgoing::Message(Bytes::from(bytes))).await;
                            }
                        });
                    }
                }
            }
        }
    }
    tracker.close();
    if tokio::time::timeout(config.drain, tracker.wait()).await.is_err() {
        session.cancel_all();
        tracker.wait().await;
    }
    session.set_standalone(None);
    drop(tx);
    writer_task.await.map_err(std::io::Error::other)?
}

/// A fresh session for one 2026-07-28 request: nothing carries over between requests.
fn per_request_session(tx: &mpsc::Sender<Outgoing>) -> Session {
    let s = Session::new(None);
    s.set_standalone(Some(tx.clone()));
    s
}

/// The error for a request of the other era on a pinned connection, if any.
fn era_conflict(pinned: Option<Era>, era: Era, is_probe: bool, is_initialize: bool) -> Option<ErrorObject> {
    match (pinned?, era) {
        _ if is_probe => None,
        (Era::Handshake, Era::PerRequest) => Some(ErrorObject::invalid_request(
            "Invalid Request: this connection was initialized with the handshake era; 2026-07-28 requests need a new connection",
        )),
        (Era::PerRequest, Era::Handshake) if is_initialize => Some(ErrorObject::invalid_request(
            "Invalid Request: this connection already speaks 2026-07-28 (per-request _meta); initialize needs a new connection",
        )),
        _ => None,
    }
}

async fn send_error(tx: &mpsc::Sender<Outgoing>, id: Option<&taskwire_protocol::Id>, error: &ErrorObject) {
    let mut out = Vec::with_capacity(128);
    jsonrpc::write_error(&mut out, id, error);
    let _ = tx.send(Outgoing::Message(Bytes::from(out))).await;
}

/// Writes each message as one line, flushing only when no more messages are waiting.
async fn write_lines<W: AsyncWrite + Unpin>(mut writer: W, mut rx: mpsc::Receiver<Outgoing>) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Some(first) = rx.recv().await {
        push_line(&mut buf, first);
        while let Ok(next) = rx.try_recv() {
            push_line(&mut buf, next);
            if buf.len() > 256 * 1024 {
                break;
            }
        }
        writer.write_all(&buf).await?;
        writer.flush().await?;
        buf.clear();
    }
    writer.flush().await
}

fn push_line(buf: &mut Vec<u8>, out: Outgoing) {
    if let Outgoing::Message(bytes) = out {
        buf.extend_from_slice(&bytes);
        buf.push(b'\n');
    }
}
