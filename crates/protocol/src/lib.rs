//! The MCP wire protocol, without I/O.
//!
//! * [`jsonrpc`] — the JSON-RPC 2.0 envelope. Parsing is lossless (unknown members survive a
//!   parse → serialize round trip) and cheap (`params` and `result` stay raw JSON until a handler
//!   asks for them).
//! * [`version`] — protocol revisions and their eras (handshake vs. per-request metadata).
//! * [`codes`] — JSON-RPC and MCP error codes.
//! * [`meta`] — reserved `_meta` keys and per-request metadata of the 2026-07-28 revision.
//! * [`headers`] — validation of the 2026-07-28 Streamable HTTP request headers
//!   (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`).
//! * `lines` (feature `tokio`) — bounded newline-delimited framing for stdio peers.
//!
//! ```
//! use taskwire_protocol::jsonrpc::Message;
//!
//! let msg = Message::parse(br#"{"jsonrpc":"2.0","id":1,"method":"ping","x-vendor":true}"#).unwrap();
//! let Message::Request(req) = &msg else { panic!("a request") };
//! assert_eq!(req.method, "ping");
//! // The unknown member survives the round trip.
//! assert!(msg.to_json().contains(r#""x-vendor":true"#));
//! ```

pub mod codes;
pub mod headers;
pub mod jsonrpc;
#[cfg(feature = "tokio")]
pub mod lines;
pub mod meta;
pub mod version;

pub use jsonrpc::{ErrorObject, Id, Message};
pub use version::{Era, ProtocolVersion};
