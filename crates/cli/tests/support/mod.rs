//! Helpers for driving the `taskwire` binary in tests.
#![allow(dead_code)]

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// How long any single answer may take before the test fails.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(15);

/// The Python interpreter for the stub upstream.
pub fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// A child speaking newline-delimited JSON-RPC, driven line by line.
pub struct LineClient {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    next_id: i64,
}

impl LineClient {
    pub async fn spawn(program: &str, args: &[&str], env: &[(&str, &str)]) -> LineClient {
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let stdin = child.stdin.take().expect("stdin");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        LineClient { child, stdin, lines, next_id: 1000 }
    }

    pub async fn send(&mut self, message: Value) {
        let mut line = message.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.expect("write to the server");
        self.stdin.flush().await.expect("flush");
    }

    pub async fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({"jsonrpc": "2.0", "method": method, "params": params})).await;
    }

    pub async fn recv(&mut self) -> Value {
        let line = tokio::time::timeout(ANSWER_WITHIN, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no message within {ANSWER_WITHIN:?}"))
            .expect("read from the server")
            .unwrap_or_else(|| panic!("the server closed its output (exit: {:?})", self.child.try_wait()));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// Sends a request and returns its response, with every other message that came first.
    pub async fn request_collecting(&mut self, method: &str, params: Value) -> (Value, Vec<Value>) {
        self.next_id += 1;
        let id = self.next_id;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await;
        let mut others = Vec::new();
        loop {
            let m = self.recv().await;
            if m.get("id") == Some(&json!(id)) && m.get("method").is_none() {
                return (m, others);
            }
            others.push(m);
        }
    }

    pub async fn request(&mut self, method: &str, params: Value) -> Value {
        self.request_collecting(method, params).await.0
    }
}
