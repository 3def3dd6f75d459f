//! Completion webhooks for taskwire.
//!
//! * [`signing`]: Standard Webhooks signatures (`webhook-id`, `webhook-timestamp`,
//!   `webhook-signature: v1,…`, HMAC-SHA256 with `whsec_` secrets, several during a rotation).
//! * [`guard`]: the SSRF guard — no loopback, private, link-local, unique-local or metadata
//!   destinations unless allowlisted; optional per-owner host lists.
//! * [`send`]: one guarded POST that dials only admitted addresses (reusing kept-alive
//!   connections to them) and follows no redirects.
//! * [`setup`]: all of the above for a whole server from a few settings.
//! * [`dispatch`]: the dispatcher that drains the engine's durable outbox with retries,
//!   backoff, per-destination limits and a dead-letter state.
//!
//! Wiring it into a server:
//!
//! ```no_run
//! # async fn run(engine: taskwire_engine::Engine) {
//! use std::sync::Arc;
//! use taskwire_webhook::{Dispatcher, DispatcherConfig, Guard, GuardConfig, Secret, Sender, SenderConfig, Signer};
//! let sender = Sender::new(Guard::new(GuardConfig::default()), SenderConfig::default());
//! let signer = Signer::new(vec![Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()]);
//! let server = taskwire_server::Server::builder("demo", "1.0")
//!     .tasks(engine.clone())
//!     .callback_guard(Arc::new(sender.clone()))
//!     .build();
//! Dispatcher::new(engine, sender, signer, DispatcherConfig::default())
//!     .spawn(tokio_util::sync::CancellationToken::new());
//! # let _ = server;
//! # }
//! ```

pub mod dispatch;
pub mod guard;
mod pool;
pub mod send;
pub mod setup;
pub mod signing;

pub use dispatch::{Dispatcher, DispatcherConfig};
pub use guard::{Guard, GuardConfig, Refusal};
pub use pool::PoolConfig;
pub use send::{Answer, Dial, SendError, Sender, SenderConfig, TcpDial};
pub use setup::{WebhookSettings, Webhooks};
pub use signing::{Secret, Signer};
