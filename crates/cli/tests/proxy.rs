//! `taskwire proxy` in front of a stub upstream (tests/support/vendor_upstream.py) that puts
//! vendor fields everywhere: they must reach the client unchanged, cancellation must reach the
//! upstream, and an upstream that dies must be restarted.

mod support;

use serde_json::json;
use support::{LineClient, python};

async fn proxy(extra_env: &[(&str, &str)]) -> LineClient {
    let stub = format!("{}/tests/support/vendor_upstream.py", env!("CARGO_MANIFEST_DIR"));
    let mut args = vec!["proxy", "--stdio", "--all-tools", "--store", "memory", "--"];
    let py = python();
    args.push(&py);
    args.push(&stub);
    let mut client = LineClient::spawn(env!("CARGO_BIN_EXE_taskwire"), &args, extra_env).await;
    let init = client
        .request(
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}),
        )
        .await;
    assert_eq!(init["result"]["serverInfo"]["name"], "vendor-stub", "{init}");
    client.notify("notifications/initialized", json!({})).await;
    client
}

#[tokio::test]
async fn vendor_fields_pass_through_unchanged() {
    let mut c = proxy(&[]).await;
    let init = c
        .request(
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}),
        )
        .await;
    let caps = &init["result"]["capabilities"];
    assert!(caps.get("x-vendor-capability").is_some(), "upstream capabilities are declared: {caps}");
    assert!(caps.get("resources").is_some() && caps.get("tasks").is_some(), "{caps}");
    assert_eq!(init["result"]["instructions"], "stub instructions");

    let list = c.request("tools/list", json!({})).await;
    let echo = list["result"]["tools"].as_array().unwrap().iter().find(|t| t["name"] == "echo").unwrap().clone();
    assert_eq!(echo["x-vendor-tool"], json!({"owner": "stub", "n": 1}), "{echo}");
    assert_eq!(echo["annotations"]["x-vendor-hint"], "kept", "{echo}");
    assert_eq!(echo["_meta"]["com.example/tool"], true, "{echo}");
    assert_eq!(echo["execution"]["taskSupport"], "optional", "--all-tools makes it task-capable: {echo}");

    let (result, seen) = c
        .request_collecting(
            "tools/call",
            json!({"name": "echo", "arguments": {"text": "hi"}, "_meta": {"progressToken": "tok-1"}}),
        )
        .await;
    let r = &result["result"];
    assert_eq!(r["x-vendor-result"], json!({"trace": "abc"}), "{result}");
    assert_eq!(r["content"][0]["x-vendor-item"], "item-kept", "{result}");
    assert_eq!(r["_meta"]["com.example/cost"], 3, "{result}");
    let trace = seen
        .iter()
        .find(|m| m["method"] == "notifications/x-vendor/trace")
        .expect("the vendor notification is relayed");
    assert_eq!(trace["params"]["x-vendor-note"], 7, "{trace}");
    let progress = seen.iter().find(|m| m["method"] == "notifications/progress").expect("progress is relayed");
    assert_eq!(progress["params"]["progressToken"], "tok-1", "progress carries the client's own token: {progress}");
    assert_eq!(progress["params"]["message"], "half way");

    let resources = c.request("resources/list", json!({})).await;
    assert_eq!(resources["result"]["resources"][0]["x-vendor-resource"], json!([1, 2]), "{resources}");
    let read = c.request("resources/read", json!({"uri": "stub://a"})).await;
    assert_eq!(read["result"]["contents"][0]["x-vendor-content"], json!({"deep": {"er": null}}), "{read}");
    let custom = c.request("vendor/custom", json!({"a": [1, {"b": null}]})).await;
    assert_eq!(custom["result"], json!({"echoed": {"a": [1, {"b": null}]}, "x-vendor": true}), "{custom}");

    // As a task: the stored result keeps the vendor fields too.
    let created = c.request("tools/call", json!({"name": "echo", "arguments": {"text": "t"}, "task": {}})).await;
    let id = created["result"]["task"]["taskId"].as_str().unwrap_or_else(|| panic!("a task: {created}")).to_owned();
    let result = c.request("tasks/result", json!({"taskId": id})).await;
    assert_eq!(result["result"]["x-vendor-result"], json!({"trace": "abc"}), "{result}");
    assert_eq!(result["result"]["content"][0]["x-vendor-item"], "item-kept", "{result}");
}

#[tokio::test]
async fn upstream_errors_keep_their_code_and_the_proxy_keeps_serving() {
    let mut c = proxy(&[]).await;
    let err = c.request("nonexistent/method", json!({})).await;
    assert_eq!(err["error"]["code"], -32601, "{err}");
    let err = c.request("tools/call", json!({"name": "no-such-tool", "arguments": {}})).await;
    assert_eq!(err["error"]["code"], -32602, "{err}");
    let ok = c.request("ping", json!({})).await;
    assert_eq!(ok["result"], json!({}));
}

#[tokio::test]
async fn cancelling_a_call_cancels_it_upstream() {
    let log = std::env::temp_dir().join(format!("taskwire-cancel-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let mut c = proxy(&[("STUB_CANCEL_LOG", log.to_str().unwrap())]).await;
    c.send(json!({"jsonrpc": "2.0", "id": 77, "method": "tools/call", "params": {"name": "slow", "arguments": {"seconds": 30}}}))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    c.notify("notifications/cancelled", json!({"requestId": 77, "reason": "test"})).await;
    let mut seen = String::new();
    for _ in 0..100 {
        seen = std::fs::read_to_string(&log).unwrap_or_default();
        if !seen.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(seen.contains("requestId"), "the upstream never received notifications/cancelled (log: {seen:?})");
    // The cancelled request gets no answer, and the proxy still serves.
    let ok = c.request("ping", json!({})).await;
    assert_eq!(ok["result"], json!({}), "{ok}");
    let _ = std::fs::remove_file(&log);
}

#[tokio::test]
async fn a_crashed_upstream_is_restarted_and_the_call_fails_clearly() {
    let mut c = proxy(&[]).await;
    let crashed = c.request("tools/call", json!({"name": "crash", "arguments": {}})).await;
    assert_eq!(crashed["result"]["isError"], true, "{crashed}");
    let text = crashed["result"]["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.contains("upstream server failed during crash"), "{crashed}");
    // The next call waits for the restart (backoff starts at 250 ms) and succeeds.
    let echoed = c.request("tools/call", json!({"name": "echo", "arguments": {"text": "back"}})).await;
    assert_eq!(echoed["result"]["content"][0]["text"], "back", "{echoed}");
}

/// `--upstream URL`: the proxy reaches a Streamable HTTP server (here `taskwire serve --http`).
#[tokio::test]
async fn an_http_upstream_is_fronted_too() {
    let devtools = format!("{}/../../examples/devtools.toml", env!("CARGO_MANIFEST_DIR"));
    let mut upstream = tokio::process::Command::new(env!("CARGO_BIN_EXE_taskwire"))
        .args(["serve", "--config", &devtools, "--http", "127.0.0.1:0", "--store", "memory"])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start taskwire serve");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(upstream.stderr.take().unwrap()));
    let url = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(at) = line.find("listening on ") {
                return line[at + "listening on ".len()..].trim().to_owned();
            }
        }
        panic!("taskwire serve exited before listening");
    })
    .await
    .expect("taskwire serve prints its address");
    let mut c = LineClient::spawn(
        env!("CARGO_BIN_EXE_taskwire"),
        &["proxy", "--stdio", "--task-tools", "progress_demo", "--store", "memory", "--upstream", &url],
        &[],
    )
    .await;
    let init = c
        .request(
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}),
        )
        .await;
    assert_eq!(init["result"]["serverInfo"]["name"], "devtools", "{init}");
    c.notify("notifications/initialized", json!({})).await;
    let echoed = c.request("tools/call", json!({"name": "echo_args", "arguments": {"args": ["a;b", "$(x)"]}})).await;
    assert_eq!(echoed["result"]["content"][0]["text"], "a;b\n$(x)\n", "{echoed}");
    // Progress over the upstream's SSE stream reaches the client with its own token.
    let (done, seen) = c
        .request_collecting(
            "tools/call",
            json!({"name": "progress_demo", "arguments": {"steps": 3, "seconds": 0.05}, "_meta": {"progressToken": 5}}),
        )
        .await;
    assert!(done["result"]["content"][0]["text"].as_str().unwrap_or_default().contains("counted to 3"), "{done}");
    let progress: Vec<&serde_json::Value> = seen.iter().filter(|m| m["method"] == "notifications/progress").collect();
    assert!(!progress.is_empty() && progress.iter().all(|p| p["params"]["progressToken"] == 5), "{seen:?}");
    drop(upstream);
}
