//! MCP server semantics for taskwire, independent of any transport.
//!
//! A [`Server`] holds tools, resources, resource templates, prompts and a completion function,
//! and answers every MCP method in both eras: the handshake era (2024-11-05 … 2025-11-25,
//! state in a [`Session`]) and 2026-07-28 (stateless, per-request `_meta`). Transports call
//! [`Server::prepare`] (synchronous checks) then [`Server::run`] (the work), and feed client
//! notifications and answers to [`Server::notification`] and [`Session::answer`].
//!
//! ```
//! use std::sync::Arc;
//! use taskwire_protocol::jsonrpc::Message;
//! use taskwire_protocol::meta::ServerParams;
//! use taskwire_server::{RequestEnv, Server, Session, Tool, model::ToolOutput};
//!
//! # tokio_test_block_on(async {
//! let server = Server::builder("demo", "0.1.0")
//!     .tool(Tool::new("hello", "Say hello.").handler(|_ctx, _args| async { Ok(ToolOutput::text("hello")) }))
//!     .build();
//! let Message::Request(req) = Message::<ServerParams>::read(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hello"}}"#).unwrap()
//! else { unreachable!() };
//! let prepared = server.prepare(req, None).unwrap();
//! let env = RequestEnv { session: Arc::new(Session::new(None)), sink: None, cancel: Default::default(), principal: None };
//! let reply = server.run(prepared, env).await;
//! assert!(String::from_utf8(reply.to_bytes().unwrap()).unwrap().contains("hello"));
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```

pub mod context;
pub mod error;
mod execution;
mod introspection;
mod jobs;
pub mod model;
pub mod mrtr;
pub mod passthrough;
pub mod registry;
mod server;
pub mod session;
mod tasks;
pub mod webhooks;

pub use context::Context;
pub use error::{InputRequest, ToolError};
pub use execution::RETRY_AFTER_META;
pub use introspection::LIMITS_URI;
pub use passthrough::Passthrough;
pub use registry::{Prompt, Resource, ResourceTemplate, TaskSupport, Tool};
pub use server::{PerRequestMeta, Prepared, Rejected, Reply, RequestEnv, RequestEra, Server, ServerBuilder};
pub use session::{InFlightRequest, Outgoing, Session, Sink};
pub use tasks::IDEMPOTENCY_KEY_META;
/// The execution controls' settings, from the engine.
pub use taskwire_engine::{GlobalLimits, Rate, RetryPolicy, ToolLimits};
pub use webhooks::{CallbackGuard, WEBHOOK_META};
