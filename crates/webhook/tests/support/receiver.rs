//! A webhook receiver on loopback for tests: checks every signature with the `standardwebhooks`
//! crate (the reference implementation), fails the first `fail_first` attempts of each message
//! with 503, and records deliveries by `webhook-id`. Shared by the webhook crate's tests and the
//! fixture server's (included with `#[path]`).

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;

/// One message as received (its first successful delivery).
#[derive(Clone, Debug)]
pub struct Received {
    /// The event body.
    pub body: serde_json::Value,
    /// Successful deliveries of this id (more than one: a redelivery).
    pub deliveries: u32,
    /// When it first arrived.
    pub at: Instant,
}

#[derive(Default)]
struct Inner {
    attempts: HashMap<String, u32>,
    received: HashMap<String, Received>,
}

struct Shared {
    verifier: standardwebhooks::Webhook,
    fail_first: u32,
    inner: Mutex<Inner>,
    bad_signatures: AtomicUsize,
}

/// The running receiver.
pub struct Receiver {
    /// `http://127.0.0.1:PORT/hook`.
    pub url: String,
    /// `http://127.0.0.1:PORT/redirect`: answers 302 to a private address.
    pub redirect_url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hook(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    if let Err(e) = shared.verifier.verify(&body, &headers) {
        shared.bad_signatures.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::UNAUTHORIZED, format!("signature: {e}"));
    }
    let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok()).map(str::to_owned) else {
        return (StatusCode::BAD_REQUEST, "no webhook-id".into());
    };
    let mut inner = shared.inner.lock().unwrap();
    let attempts = inner.attempts.entry(id.clone()).or_default();
    *attempts += 1;
    if *attempts <= shared.fail_first {
        return (StatusCode::SERVICE_UNAVAILABLE, "try again".into());
    }
    let Ok(body) = serde_json::from_slice(&body) else { return (StatusCode::BAD_REQUEST, "not JSON".into()) };
    inner.received.entry(id).and_modify(|r| r.deliveries += 1).or_insert(Received {
        body,
        deliveries: 1,
        at: Instant::now(),
    });
    (StatusCode::NO_CONTENT, String::new())
}

async fn redirect() -> impl IntoResponse {
    (StatusCode::FOUND, [(header::LOCATION, "http://10.0.0.1/hook")])
}

impl Receiver {
    /// Starts a receiver verifying with `secret`.
    pub async fn start(secret: &str, fail_first: u32) -> Self {
        let shared = Arc::new(Shared {
            verifier: standardwebhooks::Webhook::new(secret).expect("a whsec_ secret"),
            fail_first,
            inner: Mutex::new(Inner::default()),
            bad_signatures: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .route("/hook", post(hook))
            .route("/redirect", post(redirect))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let addr = listener.local_addr().expect("address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url: format!("http://{addr}/hook"), redirect_url: format!("http://{addr}/redirect"), shared, task }
    }

    /// Messages received, by `webhook-id`.
    pub fn received(&self) -> HashMap<String, Received> {
        self.shared.inner.lock().unwrap().received.clone()
    }

    /// Attempts seen for a message (failed ones included).
    pub fn attempts(&self, id: &str) -> u32 {
        self.shared.inner.lock().unwrap().attempts.get(id).copied().unwrap_or(0)
    }

    /// Requests whose signature did not verify.
    pub fn bad_signatures(&self) -> usize {
        self.shared.bad_signatures.load(Ordering::Relaxed)
    }

    /// Waits until `n` distinct messages arrived, or panics after `within`.
    pub async fn wait_for(&self, n: usize, within: Duration) -> HashMap<String, Received> {
        let deadline = Instant::now() + within;
        loop {
            let received = self.received();
            if received.len() >= n {
                return received;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} webhook messages arrived within {within:?} ({} bad signatures)",
                received.len(),
                self.bad_signatures()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
