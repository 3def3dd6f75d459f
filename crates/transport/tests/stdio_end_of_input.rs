//! What the stdio transport does with requests still running when input ends: quick ones are
//! answered, ones that outlast the drain period are cancelled (their cancel hooks run) and
//! the server returns.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use taskwire_server::model::ToolOutput;
use taskwire_server::{Server, Tool};
use taskwire_transport::stdio::{StdioConfig, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Notify;

const CALL: &str =
    "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{\"name\":\"work\",\"arguments\":{}}}\n";

/// A server with one tool, `work`, that says when it has started, then runs for `runs`.
fn server(started: Arc<Notify>, runs: Duration, cancelled: Arc<AtomicBool>) -> Server {
    let tool = Tool::new("work", "Runs for a while.").handler(move |ctx, _args| {
        let (started, cancelled) = (started.clone(), cancelled.clone());
        async move {
            ctx.on_cancel(move || cancelled.store(true, Ordering::SeqCst));
            started.notify_one();
            tokio::time::sleep(runs).await;
            Ok(ToolOutput::text("done"))
        }
    });
    Server::builder("s", "1").tool(tool).build()
}

/// Serves until input ends after one `work` call that has started; the output lines.
async fn end_input_while_working(runs: Duration, drain: Duration) -> (Vec<Value>, bool) {
    let (started, cancelled) = (Arc::new(Notify::new()), Arc::new(AtomicBool::new(false)));
    let server = server(started.clone(), runs, cancelled.clone());
    let (mut input, server_input) = tokio::io::duplex(4096);
    let (server_output, mut output) = tokio::io::duplex(64 * 1024);
    let config = StdioConfig { drain, ..StdioConfig::default() };
    let serving = tokio::spawn(serve(server, BufReader::new(server_input), server_output, config));
    input.write_all(CALL.as_bytes()).await.expect("write the call");
    tokio::time::timeout(Duration::from_secs(10), started.notified()).await.expect("the tool starts within 10 s");
    drop(input);
    tokio::time::timeout(Duration::from_secs(10), serving)
        .await
        .expect("the server returns within 10 s of the end of input")
        .expect("the serving task")
        .expect("serve");
    let mut text = String::new();
    output.read_to_string(&mut text).await.expect("read the output");
    let lines = text.lines().map(|l| serde_json::from_str(l).expect("each output line is JSON")).collect();
    (lines, cancelled.load(Ordering::SeqCst))
}

#[tokio::test]
async fn a_call_that_finishes_within_the_drain_period_is_answered() {
    let (lines, cancelled) = end_input_while_working(Duration::from_millis(50), Duration::from_secs(5)).await;
    assert!(!cancelled, "the call was cancelled although it finished in time");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["id"], 7);
    assert_eq!(lines[0]["result"]["content"][0]["text"], "done", "{:?}", lines[0]);
}

#[tokio::test]
async fn a_call_that_outlasts_the_drain_period_is_cancelled_and_not_answered() {
    let (lines, cancelled) = end_input_while_working(Duration::from_secs(3600), Duration::from_millis(50)).await;
    assert!(cancelled, "the call's cancel hook did not run");
    assert!(lines.is_empty(), "a cancelled call gets no answer: {lines:?}");
}

/// A cancel read right behind its request reaches it, however late the request starts: the
/// input below arrives in one read, so every line is read before the call runs.
#[tokio::test]
async fn a_cancel_right_behind_its_request_reaches_it() {
    let (started, cancelled) = (Arc::new(Notify::new()), Arc::new(AtomicBool::new(false)));
    let server = server(started, Duration::from_secs(3600), cancelled);
    let cancel = "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":7}}\n";
    let ping = "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"ping\"}\n";
    let input = [CALL, cancel, ping].concat();
    let (server_output, mut output) = tokio::io::duplex(64 * 1024);
    let config = StdioConfig { drain: Duration::from_secs(3600), ..StdioConfig::default() };
    let serving = serve(server, input.as_bytes(), server_output, config);
    tokio::time::timeout(Duration::from_secs(10), serving)
        .await
        .expect("the cancelled call ends, so the server returns at once")
        .expect("serve");
    let mut text = String::new();
    output.read_to_string(&mut text).await.expect("read the output");
    assert_eq!(text, "{\"jsonrpc\":\"2.0\",\"id\":8,\"result\":{}}\n", "only the ping is answered");
}
