//! `taskwire tasks watch`: one progress bar per task until every task has ended.
//!
//! It polls `tasks/get` (at the server's `pollInterval`, between 100 ms and 1 s): progress
//! notifications reach only the connection that created a task, while a status message is
//! readable by anyone holding the id. A status message such as "step 3/10" (what command tools
//! and `Context::progress` write) moves the bar; any other is shown beside a spinner.

use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use taskwire_client::Client;

use crate::Failure;

const TERMINAL: [&str; 3] = ["completed", "failed", "cancelled"];

struct Watched {
    id: String,
    bar: ProgressBar,
    last: Option<(String, String)>,
    outcome: Option<Result<(), String>>,
}

pub async fn watch(client: &Client, ids: &[String], json_out: bool) -> Result<(), Failure> {
    let fraction =
        regex::Regex::new(r"(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)").map_err(|e| Failure::Usage(e.to_string()))?;
    let multi = MultiProgress::new();
    if json_out {
        multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let spinner = ProgressStyle::with_template("{prefix:.bold} {spinner} {wide_msg}")
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let bar_style = ProgressStyle::with_template("{prefix:.bold} [{bar:30.cyan/blue}] {pos}/{len} {wide_msg}")
        .map_err(|e| Failure::Usage(e.to_string()))?
        .progress_chars("=> ");
    let mut watched: Vec<Watched> = ids
        .iter()
        .map(|id| {
            let bar = multi.add(ProgressBar::new_spinner().with_style(spinner.clone()));
            bar.set_prefix(short(id));
            bar.enable_steady_tick(Duration::from_millis(120));
            Watched { id: id.clone(), bar, last: None, outcome: None }
        })
        .collect();
    loop {
        let mut poll = Duration::from_secs(1);
        for w in watched.iter_mut().filter(|w| w.outcome.is_none()) {
            let task = match client.request("tasks/get", Some(&json!({"taskId": w.id}))).await {
                Ok(raw) => serde_json::from_str::<Value>(raw.get()).unwrap_or_default(),
                Err(taskwire_client::ClientError::Rpc(e)) => {
                    w.bar.abandon_with_message(format!("error: {}", e.message));
                    w.outcome = Some(Err(format!("{}: {}", w.id, e.message)));
                    continue;
                }
                Err(e) => {
                    multi.clear().ok();
                    return Err(e.into());
                }
            };
            let status = task.get("status").and_then(Value::as_str).unwrap_or("unknown").to_owned();
            let message = task.get("statusMessage").and_then(Value::as_str).unwrap_or("").to_owned();
            if let Some(ms) = task.get("pollInterval").and_then(Value::as_u64) {
                poll = poll.min(Duration::from_millis(ms.clamp(100, 1000)));
            }
            let current = Some((status.clone(), message.clone()));
            if w.last != current {
                if json_out {
                    println!("{}", json!({"taskId": w.id, "status": status, "statusMessage": message}));
                }
                w.last = current;
            }
            if let Some(c) = fraction.captures(&message) {
                let n = |i: usize| c.get(i).and_then(|m| m.as_str().parse::<f64>().ok()).unwrap_or(0.0);
                let (pos, len) = (n(1), n(2));
                if len > 0.0 {
                    w.bar.set_style(bar_style.clone());
                    w.bar.set_length(len as u64);
                    w.bar.set_position(pos.min(len) as u64);
                }
            }
            w.bar.set_message(format!("{status}  {message}"));
            if TERMINAL.contains(&status.as_str()) {
                if status == "completed" {
                    if let Some(len) = w.bar.length() {
                        w.bar.set_position(len);
                    }
                    w.bar.finish_with_message(format!("completed  {message}"));
                    w.outcome = Some(Ok(()));
                } else {
                    w.bar.abandon_with_message(format!("{status}  {message}"));
                    w.outcome = Some(Err(format!("task {} {status}: {message}", w.id)));
                }
            }
        }
        if watched.iter().all(|w| w.outcome.is_some()) {
            break;
        }
        tokio::time::sleep(poll).await;
    }
    let failures: Vec<String> = watched.iter().filter_map(|w| w.outcome.clone()?.err()).collect();
    if failures.is_empty() { Ok(()) } else { Err(Failure::Tool(failures.join("; "))) }
}

/// The first characters of an id: enough to tell tasks apart on a line.
fn short(id: &str) -> String {
    id.chars().take(8).collect()
}
