//! Zero-work task latency on the 2026-07-28 tasks extension: on one keep-alive connection,
//! N times: `tools/call zero` (a task), then `tasks/get` back to back until `completed`.
//! Prints `create_p50_us create_p99_us total_p50_us total_p99_us polls_p50`.
//! usage: taskbench PORT N
use std::time::Instant;

use taskwire_bench_peers::probe::{Conn, pct};

const META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"extensions":{"io.modelcontextprotocol/tasks":{}}}}"#;

fn call(conn: &mut Conn, method: &str, name: &str, params: &str) -> serde_json::Value {
    let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{{params},{META}}}}}"#);
    let headers = [("MCP-Protocol-Version", "2026-07-28"), ("Mcp-Method", method), ("Mcp-Name", name)];
    conn.post("/mcp", &headers, &body).json()
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let port: u16 = a[1].parse().expect("PORT");
    let n: usize = a[2].parse().expect("N");
    let mut conn = Conn::open(port);
    let (mut create, mut total, mut polls) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n + 20 {
        let t0 = Instant::now();
        let created = call(&mut conn, "tools/call", "zero", r#""name":"zero","arguments":{}"#);
        let t_create = t0.elapsed();
        let id = created["result"]["taskId"].as_str().unwrap_or_else(|| panic!("not a task: {created}")).to_owned();
        let mut count = 0;
        loop {
            count += 1;
            let got = call(&mut conn, "tasks/get", &id, &format!(r#""taskId":"{id}""#));
            match got["result"]["status"].as_str() {
                Some("completed") => break,
                Some("working") => {}
                other => panic!("unexpected status {other:?}: {got}"),
            }
        }
        if i >= 20 {
            create.push(t_create.as_secs_f64() * 1e6);
            total.push(t0.elapsed().as_secs_f64() * 1e6);
            polls.push(count as f64);
        }
    }
    println!(
        "create_p50_us={:.0} create_p99_us={:.0} total_p50_us={:.0} total_p99_us={:.0} polls_p50={:.0}",
        pct(&mut create, 50),
        pct(&mut create, 99),
        pct(&mut total, 50),
        pct(&mut total, 99),
        pct(&mut polls, 50)
    );
}
