//! Transports for a [`taskwire_server::Server`]. They only move JSON-RPC messages and map
//! connection events (end of input, closed streams, resumption) onto the server.
//!
//! * [`stdio`] — newline-delimited JSON on standard input/output, both eras on one process.
//! * [`http`] — Streamable HTTP on axum: handshake-era sessions with resumable SSE, a
//!   sessionless handshake mode, and the stateless 2026-07-28 POST path.

pub mod http;
pub mod stdio;
