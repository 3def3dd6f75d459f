//! The JSON-RPC envelope: parsing requests and large responses, and writing answers.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use taskwire_protocol::jsonrpc::{Id, Message, write_response};
use taskwire_protocol::meta::{RequestParams, ServerParams};

const TOOLS_CALL: &str = r#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"echo","arguments":{"text":"0123456789012345678901234567890123456789012345678901234567890123"},"_meta":{"progressToken":"p-42"}}}"#;

fn large_response() -> String {
    let text = "x".repeat(10 * 1024);
    format!(r#"{{"jsonrpc":"2.0","id":7,"result":{{"content":[{{"type":"text","text":"{text}"}}],"isError":false}}}}"#)
}

fn envelope(c: &mut Criterion) {
    let mut g = c.benchmark_group("envelope");
    g.throughput(Throughput::Bytes(TOOLS_CALL.len() as u64));
    g.bench_function("parse tools/call request (158 B)", |b| {
        b.iter(|| Message::parse(black_box(TOOLS_CALL.as_bytes())))
    });
    // What a server does: its params parsed in the envelope's pass, against the two passes
    // (envelope with raw params, then the params) it replaced.
    g.bench_function("parse tools/call request with its params (one pass)", |b| {
        b.iter(|| Message::<ServerParams>::read(black_box(TOOLS_CALL.as_bytes())))
    });
    g.bench_function("parse tools/call request with its params (two passes)", |b| {
        b.iter(|| match Message::parse(black_box(TOOLS_CALL.as_bytes())) {
            Ok(Message::Request(r)) => r.params.map(|p| RequestParams::parse(p.get()).is_ok()),
            _ => None,
        })
    });
    let large = large_response();
    g.throughput(Throughput::Bytes(large.len() as u64));
    g.bench_function("parse 10 KiB response (result kept raw)", |b| {
        b.iter(|| Message::parse(black_box(large.as_bytes())))
    });
    let parsed = Message::parse(TOOLS_CALL.as_bytes()).unwrap();
    g.throughput(Throughput::Bytes(TOOLS_CALL.len() as u64));
    g.bench_function("serialize a parsed request", |b| b.iter(|| black_box(&parsed).to_json()));
    let result =
        r#"{"content":[{"type":"text","text":"0123456789012345678901234567890123456789012345678901234567890123"}]}"#;
    let mut out = Vec::with_capacity(256);
    g.bench_function("write a tools/call response", |b| {
        b.iter(|| {
            out.clear();
            write_response(&mut out, black_box(&Id::Number(42)), black_box(result));
        })
    });
    g.finish();
}

criterion_group!(benches, envelope);
criterion_main!(benches);
