//! The webhook transport's session table: capped, and idle sessions make room for new ones
//! (an abandoned client must not lock everybody out). Loopback only.

use std::time::Duration;

use serde_json::{Value, json};
use taskwire_server::Server;
use taskwire_transport::webhook::{WebhookTransportConfig, router};
use taskwire_webhook::{Guard, GuardConfig, Sender, SenderConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves `app` on a loopback port; returns its address.
async fn serve(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// One POST on a fresh connection; the status and the JSON body.
async fn post(addr: std::net::SocketAddr, client: &str, session: Option<&str>, body: &Value) -> (u16, Value) {
    let body = body.to_string();
    let session = session.map(|s| format!("X-Session-ID: {s}\r\n")).unwrap_or_default();
    let request = format!(
        "POST /mcp/request HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nX-Client-ID: {client}\r\n\
         {session}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer))
        .await
        .expect("an answer within 10 s")
        .expect("read");
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn initialize(webhook: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"},
        "_meta": {"webhookUrl": webhook}}})
}

#[tokio::test]
async fn at_the_cap_idle_sessions_make_room_and_busy_ones_do_not() {
    // A receiver for the sessions' messages (answers 200 to anything).
    let receiver = serve(axum::Router::new().route("/hook", axum::routing::post(|| async { "" }))).await;
    let webhook = format!("http://{receiver}/hook");
    let sender = Sender::new(Guard::new(GuardConfig::default().allow_loopback()), SenderConfig::default());
    let config = WebhookTransportConfig {
        max_sessions: 1,
        session_idle_timeout: Duration::from_millis(1500),
        ..WebhookTransportConfig::new(sender)
    };
    let addr = serve(router(Server::builder("t", "1").build(), config)).await;

    let (status, first) = post(addr, "a", None, &initialize(&webhook)).await;
    assert_eq!(status, 200, "{first}");
    let first = first["session_id"].as_str().expect("a session id").to_owned();

    // Full, and the only session is in use: refused.
    let (status, body) = post(addr, "b", None, &initialize(&webhook)).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("too many open sessions")), "{body}");

    // Still in use (its client keeps talking): still refused.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    assert_eq!(post(addr, "a", Some(&first), &ping).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(post(addr, "b", None, &initialize(&webhook)).await.0, 503, "used 1 s ago: not idle");

    // Idle past the timeout: evicted for the newcomer, and gone for its old client.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (status, body) = post(addr, "b", None, &initialize(&webhook)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(addr, "a", Some(&first), &ping).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "No active session found");
}
