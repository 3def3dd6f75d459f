//! Webhook benchmarks. One process is both the load and the receiver (a loopback axum app), so
//! sending and receipt are timed on one clock.
//!
//! `hookbench completion PORT N CONC [RATE]`: N zero-work tasks (`tools/call zero` on the
//! 2026-07-28 tasks extension) created by CONC keep-alive connections (as fast as they can, or
//! paced to RATE creations/s in all, so latency can be read below saturation), each subscribing
//! a completion webhook under `_meta["dev.taskwire/webhook"]`. Waits (at most 120 s) until every task's event
//! has arrived. Prints `n received duplicates create_per_s deliver_per_s lat_p50_ms lat_p99_ms
//! answer_p50_ms answer_p99_ms`, where `lat` is receipt minus the event's `data.lastUpdatedAt`
//! (the completion; millisecond resolution, so it reads up to 1 ms high) and `answer` is receipt
//! minus the moment the creation was answered (microsecond resolution; includes running the task).
//!
//! `hookbench transport PORT SECONDS INFLIGHT SESSIONS`: asyncmcp's webhook wire. SESSIONS
//! sessions (`initialize` with `_meta.webhookUrl` POSTed to `/mcp/request`), then INFLIGHT
//! workers spread over them, each POSTing `tools/call echo` and waiting for its answer at the
//! webhook before the next, for SECONDS. Prints `calls rps p50_ms p99_ms lost` (a call whose
//! answer has not arrived 30 s after the run is lost).
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use taskwire_bench_peers::probe::{Conn, pct};

const TASKS_META: &str = r#""io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"extensions":{"io.modelcontextprotocol/tasks":{}}}"#;

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_micros() as u64
}

/// What arrived at the webhook: the raw body and when (parsed after the run, so the receiver
/// stays cheap while it counts).
#[derive(Default)]
struct Inbox {
    received: Mutex<Vec<(u64, Bytes)>>,
    count: AtomicUsize,
    /// transport mode: a worker per id range waits on its channel.
    workers: Mutex<Vec<mpsc::Sender<(u64, u64)>>>,
}

async fn receive(State(inbox): State<Arc<Inbox>>, body: Bytes) -> StatusCode {
    let at = now_us();
    let routed = {
        let workers = inbox.workers.lock().expect("inbox lock");
        if workers.is_empty() {
            None
        } else {
            serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|m| m["id"].as_u64())
                .map(|id| (id, workers[(id / ID_RANGE) as usize % workers.len()].clone()))
        }
    };
    match routed {
        Some((id, worker)) => {
            let _ = worker.send((id, at));
        }
        None => inbox.received.lock().expect("inbox lock").push((at, body)),
    }
    inbox.count.fetch_add(1, Ordering::Relaxed);
    StatusCode::NO_CONTENT
}

/// Starts the receiver on a loopback port of its own; returns the port.
fn start_receiver(inbox: Arc<Inbox>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(inbox);
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            axum::serve(listener, app).await.expect("receiver");
        });
    });
    port
}

/// `2026-11-21T10:00:00.123Z` → milliseconds since the epoch.
fn rfc3339_ms(s: &str) -> Option<u64> {
    let n = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<i64>().ok());
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss, ms) = (n(11..13)?, n(14..16)?, n(17..19)?, n(20..23).unwrap_or(0));
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Some((((days * 24 + hh) * 60 + mm) * 60 + ss) as u64 * 1000 + ms as u64)
}

fn completion(port: u16, n: usize, conc: usize, rate: Option<f64>) {
    let inbox = Arc::new(Inbox::default());
    let hook = format!("http://127.0.0.1:{}/hook", start_receiver(inbox.clone()));
    let answered: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let started = now_us();
    let creators: Vec<_> = (0..conc)
        .map(|w| {
            let (hook, answered) = (hook.clone(), answered.clone());
            let share = n / conc + usize::from(w < n % conc);
            std::thread::spawn(move || {
                let mut conn = Conn::open(port);
                let headers = [("MCP-Protocol-Version", "2026-07-28"), ("Mcp-Method", "tools/call"), ("Mcp-Name", "zero")];
                let body = format!(
                    r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"zero","arguments":{{}},"_meta":{{{TASKS_META},"dev.taskwire/webhook":{{"url":"{hook}"}}}}}}}}"#
                );
                let mut mine = Vec::with_capacity(share);
                let begun = Instant::now();
                for k in 0..share {
                    if let Some(rate) = rate {
                        // Open loop: the k-th creation of this connection is due at k / (rate / conc).
                        let due = begun + Duration::from_secs_f64(k as f64 * conc as f64 / rate);
                        std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    }
                    let created = conn.post("/mcp", &headers, &body).json();
                    let at = now_us();
                    let id = created["result"]["taskId"].as_str().unwrap_or_else(|| panic!("not a task: {created}"));
                    mine.push((id.to_owned(), at));
                }
                answered.lock().expect("lock").extend(mine);
            })
        })
        .collect();
    for c in creators {
        c.join().expect("creator");
    }
    let created_at = now_us();
    let deadline = Instant::now() + Duration::from_secs(120);
    let answered = std::mem::take(&mut *answered.lock().expect("lock"));
    let mut seen = HashSet::new();
    let (mut lat, mut from_answer, mut duplicates, mut last) = (Vec::new(), Vec::new(), 0, 0);
    while seen.len() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        for (at, body) in std::mem::take(&mut *inbox.received.lock().expect("lock")) {
            let event: serde_json::Value = serde_json::from_slice(&body).expect("event is JSON");
            let data = &event["data"];
            let id = data["taskId"].as_str().expect("data.taskId").to_owned();
            if !seen.insert(id.clone()) {
                duplicates += 1;
                continue;
            }
            last = last.max(at);
            let done = rfc3339_ms(data["lastUpdatedAt"].as_str().expect("data.lastUpdatedAt")).expect("rfc3339");
            lat.push((at as f64 / 1000.0 - done as f64).max(0.0));
            if let Some(a) = answered.get(&id) {
                from_answer.push(at.saturating_sub(*a) as f64 / 1000.0);
            }
        }
    }
    let create_s = (created_at - started) as f64 / 1e6;
    let deliver_s = (last.max(started + 1) - started) as f64 / 1e6;
    println!(
        "n={n} received={} duplicates={duplicates} create_per_s={:.0} deliver_per_s={:.0} lat_p50_ms={:.2} lat_p99_ms={:.2} answer_p50_ms={:.3} answer_p99_ms={:.3}",
        seen.len(),
        n as f64 / create_s,
        seen.len() as f64 / deliver_s,
        pct(&mut lat, 50),
        pct(&mut lat, 99),
        pct(&mut from_answer, 50),
        pct(&mut from_answer, 99),
    );
}

/// Ids of worker `w` are `w * ID_RANGE + k`, so the receiver routes an answer by its id alone.
const ID_RANGE: u64 = 1_000_000_000;

/// Opens a session; its InitializeResult carries `id`, so the receiver routes it to `rx`.
fn initialize(port: u16, hook: &str, client: &str, id: u64, rx: &mpsc::Receiver<(u64, u64)>) -> String {
    let mut conn = Conn::open(port);
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"initialize","params":{{"protocolVersion":"2025-06-18","capabilities":{{}},"clientInfo":{{"name":"hookbench","version":"1"}},"_meta":{{"webhookUrl":"{hook}"}}}}}}"#
    );
    let answer = conn.post("/mcp/request", &[("X-Client-ID", client)], &body);
    assert_eq!(answer.status, 200, "initialize: {}", String::from_utf8_lossy(&answer.body));
    let session = match answer.header("x-session-id") {
        Some(s) => s.to_owned(),
        None => answer.json()["session_id"].as_str().expect("a session id in the header or the body").to_owned(),
    };
    rx.recv_timeout(Duration::from_secs(10)).expect("the InitializeResult by webhook");
    let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let answer = conn.post("/mcp/request", &[("X-Client-ID", client), ("X-Session-ID", &session)], note);
    assert!(answer.status < 300, "notifications/initialized: {}", answer.status);
    session
}

fn transport(port: u16, seconds: u64, inflight: usize, sessions: usize) {
    let inbox = Arc::new(Inbox::default());
    let (mut senders, mut receivers) = (Vec::new(), Vec::new());
    for _ in 0..inflight.max(sessions) {
        let (tx, rx) = mpsc::channel();
        senders.push(tx);
        receivers.push(rx);
    }
    *inbox.workers.lock().expect("lock") = senders;
    let hook = format!("http://127.0.0.1:{}/hook", start_receiver(inbox));
    // Session s is opened by worker s: its InitializeResult's id is the first of s's range.
    let opened: Vec<(String, String)> = (0..sessions)
        .map(|s| {
            let client = format!("hookbench-{s}");
            let session = initialize(port, &hook, &client, s as u64 * ID_RANGE, &receivers[s]);
            (client, session)
        })
        .collect();
    let stop = Instant::now() + Duration::from_secs(seconds);
    let workers: Vec<_> = receivers
        .into_iter()
        .enumerate()
        .take(inflight)
        .map(|(w, rx)| {
            let (client, session) = opened[w % sessions].clone();
            std::thread::spawn(move || {
                let mut conn = Conn::open(port);
                let headers = [("X-Client-ID", client.as_str()), ("X-Session-ID", session.as_str())];
                let (mut lat, mut lost) = (Vec::new(), 0);
                for k in 1.. {
                    if Instant::now() >= stop {
                        break;
                    }
                    let id = w as u64 * ID_RANGE + k;
                    let body = format!(
                        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"hi"}}}}}}"#
                    );
                    let sent = now_us();
                    let answer = conn.post("/mcp/request", &headers, &body);
                    assert!(answer.status < 300, "tools/call: {} {}", answer.status, String::from_utf8_lossy(&answer.body));
                    match rx.recv_timeout(Duration::from_secs(30)) {
                        Ok((got, at)) if got == id => lat.push((at - sent) as f64 / 1000.0),
                        Ok((got, _)) => panic!("worker {w} waited for {id} and got {got}"),
                        Err(_) => {
                            lost += 1;
                            break;
                        }
                    }
                }
                (lat, lost)
            })
        })
        .collect();
    let (mut lat, mut lost) = (Vec::new(), 0);
    for w in workers {
        let (l, n) = w.join().expect("worker");
        lat.extend(l);
        lost += n;
    }
    let calls = lat.len();
    println!(
        "calls={calls} rps={:.1} p50_ms={:.2} p99_ms={:.2} lost={lost}",
        calls as f64 / seconds as f64,
        pct(&mut lat, 50),
        pct(&mut lat, 99)
    );
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let arg = |i: usize, what: &str| -> u64 {
        a.get(i).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("argument {i} ({what}) missing or not a number"))
    };
    match a.get(1).map(String::as_str) {
        Some("completion") => {
            let rate = a.get(5).map(|_| arg(5, "RATE") as f64);
            completion(arg(2, "PORT") as u16, arg(3, "N") as usize, arg(4, "CONC") as usize, rate)
        }
        Some("transport") => transport(
            arg(2, "PORT") as u16,
            arg(3, "SECONDS"),
            arg(4, "INFLIGHT") as usize,
            arg(5, "SESSIONS") as usize,
        ),
        _ => {
            eprintln!(
                "usage: hookbench completion PORT N CONC [RATE] | hookbench transport PORT SECONDS INFLIGHT SESSIONS"
            );
            std::process::exit(2);
        }
    }
}
