//! Reserved `_meta` keys.

/// Per-request protocol version (2026-07-28, required on every request).
pub const PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// Per-request client capabilities (2026-07-28, required on every request).
pub const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// Per-request client identity (2026-07-28, optional).
pub const CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
/// Per-request opt-in to `notifications/message` (2026-07-28).
pub const LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
/// Server identity attached to 2026-07-28 results.
pub const SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
/// Tag on every notification delivered on a `subscriptions/listen` stream.
pub const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";
/// Legacy (2025-11-25) related-task metadata.
pub const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";
/// Progress token (both eras; unprefixed).
pub const PROGRESS_TOKEN: &str = "progressToken";
/// The tasks extension identifier (SEP-2663).
pub const TASKS_EXTENSION: &str = "io.modelcontextprotocol/tasks";
