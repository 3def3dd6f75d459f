//! rmcp 3.9.0 peer server with the same tools as taskwire-fixtures (echo, sleep_ms).
//! usage: peers http PORT [--stateful] [--nodelay=0] | peers stdio
// The same sleep as taskwire-fixtures' `sleep_ms` (the file says why), so that the
// `sleep_ms(10)` table compares servers, not timers.
#[path = "../../../../crates/fixtures/src/precise_sleep.rs"]
mod precise_sleep;

use rmcp::{
    ServiceExt,
    handler::server::wrapper::Parameters,
    schemars, tool, tool_router,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    },
};

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct EchoReq {
    pub text: String,
}
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct SleepReq {
    pub ms: u64,
}

#[derive(Clone)]
pub struct Bench;

#[tool_router(server_handler)]
impl Bench {
    #[tool(description = "Echo the input text")]
    async fn echo(&self, Parameters(EchoReq { text }): Parameters<EchoReq>) -> String {
        text
    }
    #[tool(description = "Sleep ms milliseconds")]
    async fn sleep_ms(&self, Parameters(SleepReq { ms }): Parameters<SleepReq>) -> String {
        precise_sleep::sleep(std::time::Duration::from_millis(ms)).await;
        "ok".to_string()
    }
}

// The allocator performance.md's baseline gave the peers, and taskwire's binaries use.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).cloned().unwrap_or_else(|| "http".into());
    let stateful = args.iter().any(|a| a == "--stateful");
    let nodelay = !args.iter().any(|a| a == "--nodelay=0");
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async move {
        if mode == "stdio" {
            let svc = Bench.serve(rmcp::transport::stdio()).await?;
            svc.waiting().await?;
            return Ok(());
        }
        let port: u16 = args.get(2).and_then(|p| p.parse().ok()).unwrap_or(8001);
        let cfg = StreamableHttpServerConfig::default()
            .with_legacy_session_mode(stateful)
            .with_json_response(!stateful)
            .with_sse_keep_alive(None);
        let service: StreamableHttpService<Bench, LocalSessionManager> =
            StreamableHttpService::new(|| Ok(Bench), Default::default(), cfg);
        let router = axum::Router::new().nest_service("/mcp", service);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let listener = axum::serve::ListenerExt::tap_io(listener, move |t: &mut tokio::net::TcpStream| {
            if nodelay {
                let _ = t.set_nodelay(true);
            }
        });
        axum::serve(listener, router).await?;
        Ok(())
    })
}
