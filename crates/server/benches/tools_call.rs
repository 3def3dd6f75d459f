//! An in-process `tools/call` round trip (parse → prepare → run → serialize), in both eras, with
//! the number of heap allocations per call counted by a counting allocator and printed first, so
//! that allocation regressions show as numbers.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use taskwire_protocol::jsonrpc::Message;
use taskwire_protocol::meta::ServerParams;
use taskwire_server::model::ToolOutput;
use taskwire_server::{RequestEnv, Server, Session, Tool};

struct Counting;
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is a relaxed
// atomic increment, which cannot allocate or fail.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const HANDSHAKE_CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"0123456789012345678901234567890123456789012345678901234567890123"}}}"#;
const PER_REQUEST_CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"0123456789012345678901234567890123456789012345678901234567890123"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;

fn server() -> Server {
    Server::builder("bench", "1")
        .tool(Tool::new("echo", "Echo.").handler(|_, args| async move {
            Ok(ToolOutput::text(args.get("text").and_then(|t| t.as_str()).unwrap_or_default()))
        }))
        .build()
}

/// One full call: what a transport does for a request body.
async fn round_trip(server: &Server, session: &Arc<Session>, body: &str) -> Vec<u8> {
    let Ok(Message::Request(req)) = Message::<ServerParams>::read(body.as_bytes()) else {
        unreachable!("a valid request")
    };
    let prepared = server.prepare(req, None).expect("valid");
    let env = RequestEnv { session: session.clone(), sink: None, cancel: Default::default(), principal: None };
    server.run(prepared, env).await.to_bytes().expect("an answer")
}

fn tools_call(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let server = server();
    let session = Arc::new(Session::new(Some("bench".into())));
    session.set_negotiated(taskwire_protocol::ProtocolVersion::V2025_11_25, serde_json::json!({}));
    for (label, body) in [("handshake era", HANDSHAKE_CALL), ("2026-07-28", PER_REQUEST_CALL)] {
        const N: u64 = 10_000;
        rt.block_on(round_trip(&server, &session, body));
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for _ in 0..N {
            black_box(rt.block_on(round_trip(&server, &session, body)));
        }
        let per_call = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / N as f64;
        println!("allocations per in-process tools/call ({label}): {per_call:.1}");
    }
    let mut g = c.benchmark_group("tools/call in process");
    g.bench_function("handshake era", |b| {
        b.iter(|| rt.block_on(round_trip(&server, &session, black_box(HANDSHAKE_CALL))))
    });
    g.bench_function("2026-07-28", |b| {
        b.iter(|| rt.block_on(round_trip(&server, &session, black_box(PER_REQUEST_CALL))))
    });
    g.finish();
}

criterion_group!(benches, tools_call);
criterion_main!(benches);
