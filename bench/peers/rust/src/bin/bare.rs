//! The physical limits the MCP servers are measured against:
//! `bare raw PORT` (axum echo of the body), `bare jsonrpc PORT` (axum + serde_json parse + a
//! JSON-RPC result, no MCP), `bare stdio` (line echo of a tools/call result over pipes).
use axum::{Router, body::Bytes, http::header, response::IntoResponse, routing::post};

async fn raw(body: Bytes) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], body)
}

async fn jsonrpc(body: Bytes) -> impl IntoResponse {
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let text = v["params"]["arguments"]["text"].clone();
    let resp = serde_json::json!({"jsonrpc":"2.0","id":v["id"].clone(),
        "result":{"content":[{"type":"text","text":text}],"isError":false}});
    ([(header::CONTENT_TYPE, "application/json")], serde_json::to_vec(&resp).unwrap_or_default())
}

// The allocator performance.md's baseline gave the peers, and taskwire's binaries use.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).cloned().unwrap_or("raw".into());
    if mode == "stdio" {
        use std::io::{BufRead, Write};
        let stdin = std::io::stdin();
        let mut out = std::io::stdout().lock();
        for line in stdin.lock().lines() {
            let line = line?;
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
            if v.get("id").is_none() {
                continue;
            }
            let resp = if v["method"] == "initialize" {
                serde_json::json!({"jsonrpc":"2.0","id":v["id"].clone(),"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"bare","version":"0"}}})
            } else {
                serde_json::json!({"jsonrpc":"2.0","id":v["id"].clone(),"result":{"content":[{"type":"text","text":v["params"]["arguments"]["text"].clone()}],"isError":false}})
            };
            serde_json::to_writer(&mut out, &resp)?;
            out.write_all(b"\n")?;
            out.flush()?;
        }
        return Ok(());
    }
    let port: u16 = args.get(2).and_then(|p| p.parse().ok()).unwrap_or(8000);
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async move {
        let app = if mode == "raw" {
            Router::new().route("/mcp", post(raw))
        } else {
            Router::new().route("/mcp", post(jsonrpc))
        };
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let listener = axum::serve::ListenerExt::tap_io(listener, |t: &mut tokio::net::TcpStream| {
            let _ = t.set_nodelay(true);
        });
        axum::serve(listener, app).await?;
        Ok(())
    })
}
