//! Where a server sends what it does not answer itself: the proxy's upstream server.
//!
//! With a [`Passthrough`], the server still answers the handshake, `ping`, tools (its own
//! registry, which a proxy fills from the upstream's listing) and tasks; resources, prompts,
//! completions, and any method it does not know go to the passthrough, and their results come
//! back unchanged (on 2026-07-28 the server adds what that revision requires of every result).

use serde_json::value::RawValue;

use crate::context::Context;
use crate::error::ToolError;
use crate::model::Object;
use crate::registry::BoxFuture;

/// The server behind a proxy, as the [`crate::Server`] sees it.
pub trait Passthrough: Send + Sync + 'static {
    /// What the upstream declared: every capability but `tools`, `logging`, `tasks` and
    /// `extensions` (which are the server's own) is declared as the server's.
    fn capabilities(&self) -> Object;

    /// Sends a request upstream and returns its result as JSON text, exactly as received.
    /// Notifications and requests the upstream sends meanwhile go through `ctx`.
    fn forward(&self, ctx: Context, method: String, params: Object) -> BoxFuture<Result<String, ToolError>>;

    /// Passes on a client notification the server does not handle itself.
    fn notify(&self, method: &str, params: Option<&RawValue>);
}
