//! Limits, running and queued counts, and rate-limit state, for models and people: the
//! `taskwire://limits` resource, and the `task_limits` job-control tool. Both open with a
//! one-line summary, then the structured data. A caller sees its own rate buckets, no one else's.

use std::sync::Arc;

use serde_json::{Value, json};
use taskwire_engine::{Rate, Scheduler, Snapshot, WhenRateLimited};

use crate::context::Context;
use crate::model::ToolOutput;
use crate::registry::{Resource, ResourceBody, Tool};

/// The URI of the limits resource.
pub const LIMITS_URI: &str = "taskwire://limits";

/// One line: each limited tool's running and queued counts and the caller's tokens.
pub(crate) fn summary(s: &Snapshot) -> String {
    let mut parts: Vec<String> = s
        .tools
        .iter()
        .map(|t| {
            let mut p = match t.limits.max_running {
                Some(max) => format!("{}: {} of {max} running, {} queued", t.tool, t.running, t.queued),
                None => format!("{}: {} running, {} queued", t.tool, t.running, t.queued),
            };
            if let (Some(rate), Some(tokens)) = (t.limits.rate_per_owner, t.owner_tokens) {
                p.push_str(&format!(", your rate {} with {:.1} calls available now", rate.describe(), tokens.max(0.0)));
            }
            if let (Some(rate), Some(tokens)) = (t.limits.rate_per_tool, t.tool_tokens) {
                p.push_str(&format!(", tool rate {} with {:.1} calls available now", rate.describe(), tokens.max(0.0)));
            }
            p
        })
        .collect();
    parts.push(format!("all limited tools: {} running, {} queued", s.running, s.queued));
    parts.join("; ")
}

fn rate(r: Option<Rate>, tokens: Option<f64>) -> Value {
    match r {
        Some(r) => json!({"perSecond": r.per_second, "burst": r.burst, "tokensAvailable": tokens.map(|t| t.max(0.0))}),
        None => Value::Null,
    }
}

/// The structured data.
pub(crate) fn structured(s: &Snapshot) -> Value {
    let tools: Vec<Value> = s
        .tools
        .iter()
        .map(|t| {
            json!({
                "name": t.tool,
                "maxRunning": t.limits.max_running,
                "maxQueued": t.limits.queue_bound(),
                "running": t.running,
                "queued": t.queued,
                "ratePerCaller": rate(t.limits.rate_per_owner, t.owner_tokens),
                "ratePerTool": rate(t.limits.rate_per_tool, t.tool_tokens),
                "whenRateLimited": match t.limits.when_rate_limited {
                    WhenRateLimited::Refuse => "refuse",
                    WhenRateLimited::Wait => "wait",
                },
            })
        })
        .collect();
    json!({
        "global": {"maxRunning": s.global.max_running, "maxQueued": s.global.max_queued, "running": s.running, "queued": s.queued},
        "tools": tools,
    })
}

/// `taskwire://limits`: the summary line, a blank line, then the JSON.
pub(crate) fn limits_resource(scheduler: Arc<Scheduler>) -> Resource {
    Resource::dynamic(LIMITS_URI, "limits", "text/plain", move |ctx: Context, _uri| {
        let snapshot = scheduler.snapshot(&ctx.owner().key());
        async move {
            let body = format!("{}\n\n{:#}", summary(&snapshot), structured(&snapshot));
            Ok(ResourceBody::Text(body))
        }
    })
    .with("description", json!("Limits of the tools that have them, how many calls run and wait, and your rate-limit state. The first line sums it up."))
}

/// `task_limits`: the same as a tool, for clients that only call tools.
pub(crate) fn limits_tool(scheduler: Arc<Scheduler>) -> Tool {
    Tool::new(
        "task_limits",
        "Show the limits of tools that have them: how many calls run and wait, and how many calls you may start now. Call it when a tool says it is busy or rate limited.",
    )
    .input_schema(json!({"type": "object", "properties": {}}))
    .handler(move |ctx, _args| {
        let snapshot = scheduler.snapshot(&ctx.owner().key());
        async move { Ok(ToolOutput::text(summary(&snapshot)).structured(structured(&snapshot))) }
    })
}
