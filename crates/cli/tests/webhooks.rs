//! Completion webhooks from the `taskwire` binary: a tool's configured webhook in `serve`, a
//! caller's `_meta` subscription through `proxy`, signatures checked by the `standardwebhooks`
//! crate, and a refused destination stopping `serve` at start. Loopback only.

mod support;

#[path = "../../webhook/tests/support/receiver.rs"]
mod receiver;

use std::time::Duration;

use receiver::Receiver;
use serde_json::{Value, json};
use support::{LineClient, python};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const BIN: &str = env!("CARGO_BIN_EXE_taskwire");

/// A config with one tool whose tasks report to `url`, in a directory of the test's own.
fn config_with_webhook(test: &str, url: &str) -> String {
    let dir = std::env::temp_dir().join(format!("taskwire-cli-webhooks-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let path = dir.join("hooks.toml");
    let text = format!(
        "[[tool]]\nname = \"hello\"\ndescription = \"Greets.\"\ncommand = [\"echo\", \"hello\", \"{{name}}\"]\n\
         webhook = {{ url = \"{url}\", events = \"terminal\" }}\n"
    );
    std::fs::write(&path, text).expect("write the config");
    path.display().to_string()
}

async fn initialized(client: &mut LineClient) {
    let init = client
        .request(
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}),
        )
        .await;
    assert!(init.get("result").is_some(), "{init}");
    client.notify("notifications/initialized", json!({})).await;
}

fn task_id(created: &Value) -> String {
    created["result"]["task"]["taskId"].as_str().unwrap_or_else(|| panic!("not a task: {created}")).to_owned()
}

/// The one event that arrived, checked against the task it reports.
fn the_event_for(received: &std::collections::HashMap<String, receiver::Received>, id: &str) -> Value {
    let events: Vec<&Value> = received.values().map(|r| &r.body).filter(|b| b["data"]["taskId"] == id).collect();
    assert_eq!(events.len(), 1, "one event for {id}: {received:?}");
    events[0].clone()
}

#[tokio::test]
async fn serve_posts_a_tools_configured_webhook_signed() {
    let receiver = Receiver::start(SECRET, 0).await;
    let config = config_with_webhook("serve", &receiver.url);
    let args = ["serve", "--config", &config, "--store", "memory", "--webhook-allow", "127.0.0.0/8"];
    let mut client = LineClient::spawn(BIN, &args, &[("TASKWIRE_WEBHOOK_SECRET", SECRET)]).await;
    initialized(&mut client).await;
    let created =
        client.request("tools/call", json!({"name": "hello", "arguments": {"name": "hook"}, "task": {}})).await;
    let id = task_id(&created);
    let received = receiver.wait_for(1, Duration::from_secs(15)).await;
    let event = the_event_for(&received, &id);
    assert_eq!(event["type"], "task.completed", "{event}");
    assert_eq!(event["data"]["tool"], "hello", "{event}");
    let text = event["data"]["result"]["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.contains("hello hook"), "the result is inline: {event}");
    assert_eq!(receiver.bad_signatures(), 0, "every POST verified with the configured secret");
}

#[tokio::test]
async fn proxy_posts_a_callers_webhook_and_refuses_private_ones_at_creation() {
    let receiver = Receiver::start(SECRET, 0).await;
    let stub = format!("{}/tests/support/vendor_upstream.py", env!("CARGO_MANIFEST_DIR"));
    let py = python();
    let args =
        ["proxy", "--stdio", "--all-tools", "--store", "memory", "--webhook-allow", "127.0.0.0/8", "--", &py, &stub];
    let mut client = LineClient::spawn(BIN, &args, &[("TASKWIRE_WEBHOOK_SECRET", SECRET)]).await;
    initialized(&mut client).await;

    let subscribe = |url: &str| json!({"dev.taskwire/webhook": {"url": url, "events": "terminal"}});
    let created = client
        .request(
            "tools/call",
            json!({"name": "echo", "arguments": {"text": "t"}, "task": {}, "_meta": subscribe(&receiver.url)}),
        )
        .await;
    let id = task_id(&created);
    let received = receiver.wait_for(1, Duration::from_secs(15)).await;
    let event = the_event_for(&received, &id);
    assert_eq!(event["type"], "task.completed", "{event}");
    assert_eq!(receiver.bad_signatures(), 0);

    // 10.0.0.0/8 is not allowlisted: refused at creation (the guard classifies; nothing is dialled).
    let refused = client
        .request(
            "tools/call",
            json!({"name": "echo", "arguments": {"text": "t"}, "task": {}, "_meta": subscribe("http://10.0.0.1/hook")}),
        )
        .await;
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("10.0.0.1 is a private address"), "{refused}");
}

#[test]
fn serve_stops_at_start_on_a_tool_webhook_the_guard_refuses() {
    let config = config_with_webhook("refused", "http://169.254.169.254/latest");
    let out = std::process::Command::new(BIN)
        .args(["serve", "--config", &config, "--store", "memory"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run taskwire");
    assert!(!out.status.success(), "serve must not start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tool \"hello\": webhook: refusing to send webhooks to 169.254.169.254"), "{stderr}");
}
