//! rmcp 3.9.0 peer for tasks: a `zero` tool that runs as a SEP-2663 task and finishes at once,
//! on rmcp's `TaskManager`, stateless Streamable HTTP with JSON responses.
//! usage: rtasks PORT
use rmcp::{
    ErrorData as McpError, ServerHandler,
    model::*,
    service::{RequestContext, RoleServer},
    task_manager::{TaskManager, TaskOptions},
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    },
};

#[derive(Clone)]
struct Zero {
    tasks: TaskManager,
}

impl ServerHandler for Zero {
    async fn call_tool(
        &self,
        _r: CallToolRequestParams,
        _c: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let task = self.tasks.spawn(TaskOptions::new().with_poll_interval_ms(1), |_ctx| {
            Box::pin(async { Ok(CallToolResult::success(vec![ContentBlock::text("done")])) })
        });
        Ok(CallToolResponse::Task(CreateTaskResult::new(task)))
    }
    async fn list_tools(
        &self,
        _r: Option<PaginatedRequestParams>,
        _c: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::default())
    }
    async fn get_task(&self, r: GetTaskParams, _c: RequestContext<RoleServer>) -> Result<GetTaskResult, McpError> {
        Ok(GetTaskResult::new(self.tasks.get_task(&r.task_id)?))
    }
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().enable_tasks().build())
    }
}

// The allocator performance.md's baseline gave the peers, and taskwire's binaries use.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(8160);
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async move {
        let tm = TaskManager::new();
        let cfg = StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(true)
            .with_sse_keep_alive(None);
        let svc: StreamableHttpService<Zero, LocalSessionManager> =
            StreamableHttpService::new(move || Ok(Zero { tasks: tm.clone() }), Default::default(), cfg);
        let router = axum::Router::new().nest_service("/mcp", svc);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let listener = axum::serve::ListenerExt::tap_io(listener, |t: &mut tokio::net::TcpStream| {
            let _ = t.set_nodelay(true);
        });
        axum::serve(listener, router).await?;
        Ok(())
    })
}
