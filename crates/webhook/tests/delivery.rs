//! Completion webhooks end to end on loopback: the engine's outbox, the dispatcher, the sender,
//! and a receiver that verifies every signature with the `standardwebhooks` crate.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use support::receiver::Receiver;
use taskwire_engine::{
    Callback, Creation, DeliveryState, Engine, MemoryStore, NewTask, Owner, RetryPolicy, TaskId, TaskWire,
};
use taskwire_webhook::guard::{BoxFuture, Resolve};
use taskwire_webhook::{
    Dial, Dispatcher, DispatcherConfig, Guard, GuardConfig, PoolConfig, Refusal, Secret, SendError, Sender,
    SenderConfig, Signer, TcpDial,
};
use tokio_util::sync::CancellationToken;

const OLD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn fast_retries(max_attempts: u32) -> DispatcherConfig {
    DispatcherConfig {
        retry: RetryPolicy { max_attempts, base: Duration::from_millis(10), cap: Duration::from_millis(50) },
        poll: Duration::from_millis(50),
        ..DispatcherConfig::default()
    }
}

fn loopback_sender() -> Sender {
    Sender::with_dialer(
        Guard::new(GuardConfig::default().allow_loopback()),
        SenderConfig::default(),
        Arc::new(LoopbackOnly::default()),
    )
}

/// A dialer that fails the test if it is ever asked for a non-loopback address, and counts.
#[derive(Default)]
struct LoopbackOnly {
    dials: AtomicUsize,
}

impl Dial for LoopbackOnly {
    fn dial(&self, addr: SocketAddr) -> BoxFuture<'_, std::io::Result<tokio::net::TcpStream>> {
        assert!(addr.ip().is_loopback(), "the sender tried to dial {addr}, which is not loopback");
        self.dials.fetch_add(1, Ordering::Relaxed);
        TcpDial.dial(addr)
    }
}

/// A dialer that fails the test whenever it is asked to dial at all.
struct NeverDial;

impl Dial for NeverDial {
    fn dial(&self, addr: SocketAddr) -> BoxFuture<'_, std::io::Result<tokio::net::TcpStream>> {
        panic!("the guard let a connection to {addr} through");
    }
}

/// Names that resolve without DNS.
struct StubResolver;

impl Resolve for StubResolver {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, std::io::Result<Vec<SocketAddr>>> {
        let ip = match host {
            "metadata.test" => "169.254.169.254",
            "intranet.test" => "10.0.0.1",
            "mixed.test" => "93.184.216.34",
            _ => return Box::pin(async { Err(std::io::Error::other("unknown name")) }),
        };
        let mut addrs = vec![SocketAddr::new(ip.parse().unwrap(), port)];
        if host == "mixed.test" {
            addrs.push(SocketAddr::new("192.168.1.1".parse().unwrap(), port));
        }
        Box::pin(async move { Ok(addrs) })
    }
}

async fn finished_task(engine: &Engine, url: &str, result: &str) -> TaskId {
    let owner = Owner::anonymous("s");
    let new = NewTask {
        owner: &owner,
        tool: "report",
        ttl_ms: None,
        arguments: None,
        wire: TaskWire::Extension,
        idempotency_key: None,
        callback: Some(Callback { url: url.into(), every_status: false }),
    };
    let Ok(Creation::Started(task)) = engine.create_task(new).await else { panic!("a new task") };
    task.complete(result.into()).await;
    task.id().clone()
}

async fn wait_for_state(engine: &Engine, id: &TaskId, state: DeliveryState) -> taskwire_engine::Delivery {
    for _ in 0..500 {
        let deliveries = engine.store().deliveries(id).await.unwrap();
        if let Some(d) = deliveries.last()
            && d.state == state
        {
            return d.clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the delivery never became {state:?}: {:?}", engine.store().deliveries(id).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_signed_and_verify_with_the_standardwebhooks_crate_during_a_key_rotation() {
    // The receiver knows only the old secret; the server signs with the new one and the old.
    let receiver = Receiver::start(OLD_SECRET, 0).await;
    let engine = Engine::new(Arc::new(MemoryStore::new()), Default::default());
    let new_secret = Secret::generate();
    let signer = Signer::new(vec![Secret::parse(&new_secret).unwrap(), Secret::parse(OLD_SECRET).unwrap()]);
    let stop = CancellationToken::new();
    Dispatcher::new(engine.clone(), loopback_sender(), signer, fast_retries(3)).spawn(stop.clone());

    let id = finished_task(&engine, &receiver.url, r#"{"content":[{"type":"text","text":"report ready"}]}"#).await;
    let received = receiver.wait_for(1, Duration::from_secs(10)).await;
    let (webhook_id, message) = received.iter().next().unwrap();
    assert!(webhook_id.starts_with("msg_"));
    assert_eq!(message.body["type"], "task.completed");
    assert_eq!(message.body["data"]["taskId"], id.as_str());
    assert_eq!(message.body["data"]["result"]["content"][0]["text"], "report ready");
    assert_eq!(receiver.bad_signatures(), 0);
    let d = wait_for_state(&engine, &id, DeliveryState::Delivered).await;
    assert_eq!((&d.id, d.attempts), (webhook_id, 1));

    // A receiver holding only the new secret accepts the same scheme too.
    let newer = Receiver::start(&new_secret, 0).await;
    finished_task(&engine, &newer.url, "{}").await;
    newer.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(newer.bad_signatures(), 0);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_caught_by_the_receiver() {
    let receiver = Receiver::start(OLD_SECRET, 0).await;
    let engine = Engine::new(Arc::new(MemoryStore::new()), Default::default());
    let signer = Signer::new(vec![Secret::parse(&Secret::generate()).unwrap()]);
    let stop = CancellationToken::new();
    Dispatcher::new(engine.clone(), loopback_sender(), signer, fast_retries(2)).spawn(stop.clone());
    let id = finished_task(&engine, &receiver.url, "{}").await;
    let d = wait_for_state(&engine, &id, DeliveryState::Dead).await;
    assert_eq!(receiver.bad_signatures(), 2, "both attempts were refused by the receiver");
    assert!(d.last_error.as_deref().is_some_and(|e| e.contains("HTTP 401")), "{d:?}");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_are_retried_with_backoff_until_delivered() {
    let receiver = Receiver::start(OLD_SECRET, 3).await;
    let engine = Engine::new(Arc::new(MemoryStore::new()), Default::default());
    let signer = Signer::new(vec![Secret::parse(OLD_SECRET).unwrap()]);
    let stop = CancellationToken::new();
    Dispatcher::new(engine.clone(), loopback_sender(), signer, fast_retries(5)).spawn(stop.clone());
    let id = finished_task(&engine, &receiver.url, "{}").await;
    let d = wait_for_state(&engine, &id, DeliveryState::Delivered).await;
    assert_eq!(d.attempts, 4, "three refusals, then the delivery");
    assert_eq!(receiver.attempts(&d.id), 4);
    assert_eq!(receiver.received()[&d.id].deliveries, 1);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spent_attempts_leave_a_dead_letter_with_the_last_error() {
    let receiver = Receiver::start(OLD_SECRET, u32::MAX).await;
    let engine = Engine::new(Arc::new(MemoryStore::new()), Default::default());
    let signer = Signer::new(vec![Secret::parse(OLD_SECRET).unwrap()]);
    let stop = CancellationToken::new();
    Dispatcher::new(engine.clone(), loopback_sender(), signer, fast_retries(3)).spawn(stop.clone());
    let id = finished_task(&engine, &receiver.url, "{}").await;
    let d = wait_for_state(&engine, &id, DeliveryState::Dead).await;
    assert_eq!((d.attempts, receiver.attempts(&d.id)), (3, 3));
    assert!(d.last_error.as_deref().is_some_and(|e| e.ends_with("answered HTTP 503")), "{d:?}");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_loopback_and_metadata_destinations_are_refused_without_dialling() {
    let sender = Sender::with_dialer(
        Guard::with_resolver(GuardConfig::default(), Arc::new(StubResolver)),
        SenderConfig::default(),
        Arc::new(NeverDial),
    );
    let cases = [
        ("http://127.0.0.1:9/hook", "127.0.0.1 is a loopback address"),
        ("http://[::1]:9/hook", "::1 is a loopback address"),
        ("http://10.0.0.1/hook", "10.0.0.1 is a private address"),
        ("http://192.168.1.1/hook", "192.168.1.1 is a private address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a cloud metadata address"),
        ("http://[fd00::1]/hook", "fd00::1 is a unique-local address"),
        ("http://[::ffff:10.0.0.1]/hook", "10.0.0.1 is a private address"),
        ("http://metadata.test/hook", "169.254.169.254 is a cloud metadata address"),
        ("http://intranet.test/hook", "10.0.0.1 is a private address"),
        // One private address among public ones is enough to refuse.
        ("http://mixed.test/hook", "192.168.1.1 is a private address"),
    ];
    for (url, why) in cases {
        match sender.post(url, None, HeaderMap::new(), Bytes::from_static(b"{}")).await {
            Err(SendError::Refused(Refusal::Forbidden { .. })) => {}
            other => panic!("{url}: expected a refusal, got {other:?}"),
        }
        let message = sender.guard().admit(url, None).await.unwrap_err().to_string();
        assert!(message.contains(why) && message.contains("allowlist"), "{url}: {message}");
    }
    for (url, why) in [
        ("ftp://example.com/x", "must be http:// or https://"),
        ("http://user:pw@example.com/x", "must not carry credentials"),
        ("not a url", "is not a URL"),
    ] {
        let message = sender.guard().admit(url, None).await.unwrap_err().to_string();
        assert!(message.contains(why), "{url}: {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_resolving_to_loopback_is_refused_by_the_system_resolver_path() {
    let sender = Sender::with_dialer(Guard::new(GuardConfig::default()), SenderConfig::default(), Arc::new(NeverDial));
    let refusal = sender.guard().admit("http://localhost:9/hook", None).await.unwrap_err();
    assert!(
        matches!(refusal, Refusal::Forbidden { class: taskwire_webhook::guard::AddressClass::Loopback, .. }),
        "{refusal}"
    );
    assert!(refusal.to_string().starts_with("refusing to send webhooks to localhost:"), "{refusal}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed() {
    let receiver = Receiver::start(OLD_SECRET, 0).await;
    let dialer = Arc::new(LoopbackOnly::default());
    let sender = Sender::with_dialer(
        Guard::new(GuardConfig::default().allow_loopback()),
        SenderConfig::default(),
        dialer.clone(),
    );
    let outcome = sender.post(&receiver.redirect_url, None, HeaderMap::new(), Bytes::from_static(b"{}")).await;
    match outcome {
        Err(e @ SendError::Redirect { status: 302, .. }) => {
            assert!(e.to_string().contains("do not follow redirects"), "{e}");
        }
        other => panic!("expected a redirect error, got {other:?}"),
    }
    // One dial (to the receiver); the private Location was never dialled (LoopbackOnly asserts).
    assert_eq!(dialer.dials.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_destination_is_a_dead_letter_at_once() {
    // A tool-configured callback is checked at delivery: refused there, it is not retried.
    let engine = Engine::new(Arc::new(MemoryStore::new()), Default::default());
    let sender = Sender::with_dialer(Guard::new(GuardConfig::default()), SenderConfig::default(), Arc::new(NeverDial));
    let stop = CancellationToken::new();
    Dispatcher::new(engine.clone(), sender, None, fast_retries(5)).spawn(stop.clone());
    let id = finished_task(&engine, "http://10.0.0.1/hook", "{}").await;
    let d = wait_for_state(&engine, &id, DeliveryState::Dead).await;
    assert_eq!(d.attempts, 1);
    assert!(d.last_error.as_deref().is_some_and(|e| e.contains("10.0.0.1 is a private address")), "{d:?}");
    stop.cancel();
}

/// `n` signed posts, one after another; each must be answered 2xx.
async fn post_n(sender: &Sender, url: &str, n: usize) {
    let signer = Signer::new(vec![Secret::parse(OLD_SECRET).expect("secret")]);
    for i in 0..n {
        let body = Bytes::from(format!("{{\"n\":{i}}}"));
        let headers = taskwire_webhook::signing::standard_headers(&format!("msg_{i}"), &body, signer.as_ref());
        if let Err(e) = sender.post(url, None, headers, body).await {
            panic!("post {i} to {url} failed: {e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_posts_reuse_one_kept_alive_connection() {
    let receiver = Receiver::start(OLD_SECRET, 0).await;
    let dialer = Arc::new(LoopbackOnly::default());
    let guard = Guard::new(GuardConfig::default().allow_loopback());
    let sender = Sender::with_dialer(guard.clone(), SenderConfig::default(), dialer.clone());
    post_n(&sender, &receiver.url, 20).await;
    assert_eq!(dialer.dials.load(Ordering::Relaxed), 1, "20 posts in a row should share one connection");

    let no_reuse =
        SenderConfig { pool: PoolConfig { per_destination: 0, ..PoolConfig::default() }, ..SenderConfig::default() };
    let dialer = Arc::new(LoopbackOnly::default());
    post_n(&Sender::with_dialer(guard, no_reuse, dialer.clone()), &receiver.url, 5).await;
    assert_eq!(dialer.dials.load(Ordering::Relaxed), 5, "with reuse off, every post dials");
}

/// A receiver that answers one request per connection and then closes it without saying so
/// (no `Connection: close`), as a receiver whose keep-alive lapsed does. Counts connections.
async fn one_shot_receiver() -> (String, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                // Read the head and the body (these posts are a few bytes, sent with Content-Length).
                while let Ok(n @ 1..) = socket.read(&mut buf).await {
                    seen.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&seen);
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                            })
                            .and_then(|v| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        if seen.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (url, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_the_receiver_closed_is_replaced_and_nothing_is_lost() {
    let (url, accepted) = one_shot_receiver().await;
    let dialer = Arc::new(LoopbackOnly::default());
    let sender = Sender::with_dialer(
        Guard::new(GuardConfig::default().allow_loopback()),
        SenderConfig::default(),
        dialer.clone(),
    );
    // Back to back, so some posts find the pooled connection before its close is noticed.
    post_n(&sender, &url, 10).await;
    assert_eq!(accepted.load(Ordering::Relaxed), 10, "each post needed a connection of its own");
    assert!(dialer.dials.load(Ordering::Relaxed) >= 10);
}
