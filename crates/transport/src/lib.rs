//! Transports for a [`taskwire_server::Server`]. They only move JSON-RPC messages and map
//! connection events (end of input, closed streams, resumption) onto the server.
//!
//! * [`stdio`] — newline-delimited JSON on standard input/output, both eras on one process.
//! * [`http`] — Streamable HTTP on axum: handshake-era sessions with resumable SSE, a
//!   sessionless handshake mode, and the stateless 2026-07-28 POST path.

pub mod http;
#[cfg(unix)]
mod std_pipes;
pub mod stdio;
pub mod webhook;

/// Cancels `shutdown` on Ctrl-C or SIGTERM: the way a server started from a terminal or a
/// service manager is asked to stop.
pub async fn stop_on_signal(shutdown: tokio_util::sync::CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                shutdown.cancel();
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    shutdown.cancel();
}

/// A message as the server transports read it: a request's params are parsed in the envelope's
/// own pass ([`taskwire_protocol::meta::ServerParams`]), not skipped over and parsed again.
type Message = taskwire_protocol::jsonrpc::Message<taskwire_protocol::meta::ServerParams>;
