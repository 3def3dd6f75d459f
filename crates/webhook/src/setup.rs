//! Webhooks for a whole server from a handful of settings: the guarded sender (which also
//! checks callers' callbacks at task creation), the signer, and the dispatcher that drains the
//! outbox. What the `taskwire` CLI and the fixture server share.

use std::time::Duration;

use ipnet::IpNet;
use taskwire_engine::{Engine, RetryPolicy};
use tokio_util::sync::CancellationToken;

use crate::dispatch::{Dispatcher, DispatcherConfig};
use crate::guard::{Guard, GuardConfig};
use crate::send::{Sender, SenderConfig};
use crate::signing::{Secret, Signer};

/// What an operator decides about webhooks.
#[derive(Clone, Debug)]
pub struct WebhookSettings {
    /// Standard Webhooks secrets (`whsec_…`), newest first; several during a key rotation.
    /// None: events go unsigned.
    pub secrets: Vec<String>,
    /// Non-public networks destinations may be in (e.g. `10.1.0.0/16`).
    pub allow: Vec<IpNet>,
    /// Attempts per delivery before it is dead (at least 1).
    pub attempts: u32,
    /// The ceiling of the first retry delay; it doubles per attempt up to 10 minutes.
    pub first_retry: Duration,
    /// How long a dispatcher's claim on a delivery holds before another may take it.
    pub lease: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        let d = DispatcherConfig::default();
        Self {
            secrets: Vec::new(),
            allow: Vec::new(),
            attempts: d.retry.max_attempts,
            first_retry: d.retry.base,
            lease: d.lease,
        }
    }
}

/// A server's webhooks, ready to start.
///
/// ```
/// # async fn run(engine: taskwire_engine::Engine) -> Result<(), String> {
/// use std::sync::Arc;
/// use taskwire_webhook::{WebhookSettings, Webhooks};
/// let settings = WebhookSettings { secrets: vec!["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()], ..Default::default() };
/// let webhooks = Webhooks::new(&settings)?;
/// let server = taskwire_server::Server::builder("demo", "1.0")
///     .tasks(engine.clone())
///     .callback_guard(Arc::new(webhooks.sender.clone()))
///     .build();
/// webhooks.start(engine, tokio_util::sync::CancellationToken::new());
/// # let _ = server;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Webhooks {
    /// Posts behind the SSRF guard; give it to the server as its callback guard.
    pub sender: Sender,
    /// Signs every POST when secrets were given.
    pub signer: Option<Signer>,
    dispatcher: DispatcherConfig,
}

impl Webhooks {
    /// Checks the settings (each secret must be a `whsec_` secret) and builds the sender.
    pub fn new(settings: &WebhookSettings) -> Result<Self, String> {
        let secrets = settings
            .secrets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Secret::parse(s).map_err(|e| format!("webhook secret {} of {}: {e}", i + 1, settings.secrets.len()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let dispatcher = DispatcherConfig {
            retry: RetryPolicy {
                max_attempts: settings.attempts.max(1),
                base: settings.first_retry,
                cap: Duration::from_secs(600),
            },
            lease: settings.lease,
            ..DispatcherConfig::default()
        };
        let guard = GuardConfig { allow: settings.allow.clone(), ..GuardConfig::default() };
        Ok(Self {
            sender: Sender::new(Guard::new(guard), SenderConfig::default()),
            signer: Signer::new(secrets),
            dispatcher,
        })
    }

    /// Starts delivering `engine`'s outbox until `shutdown`.
    pub fn start(&self, engine: Engine, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        Dispatcher::new(engine, self.sender.clone(), self.signer.clone(), self.dispatcher.clone()).spawn(shutdown)
    }
}
