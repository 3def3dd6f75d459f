//! JSON-RPC 2.0 and MCP error codes (protocol digest §7.2).

/// The body is not valid JSON.
pub const PARSE_ERROR: i32 = -32700;
/// Valid JSON, but not a valid JSON-RPC message, or a message not allowed here.
pub const INVALID_REQUEST: i32 = -32600;
/// Unknown method, or a method gated behind a capability the server did not declare.
pub const METHOD_NOT_FOUND: i32 = -32601;
/// Malformed params, unknown tool/prompt/task, bad cursor, missing per-request `_meta`.
pub const INVALID_PARAMS: i32 = -32602;
/// An unexpected failure inside the server.
pub const INTERNAL_ERROR: i32 = -32603;
/// Resource not found (handshake era only; 2026-07-28 uses [`INVALID_PARAMS`]).
pub const RESOURCE_NOT_FOUND: i32 = -32002;
/// 2026-07-28: a standard HTTP header is missing or disagrees with the body.
pub const HEADER_MISMATCH: i32 = -32020;
/// 2026-07-28: the request needs a client capability it did not declare.
pub const MISSING_REQUIRED_CLIENT_CAPABILITY: i32 = -32021;
/// 2026-07-28: the requested protocol version is not implemented.
pub const UNSUPPORTED_PROTOCOL_VERSION: i32 = -32022;
