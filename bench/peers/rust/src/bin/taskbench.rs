//! Zero-work task latency on the 2026-07-28 tasks extension: on one keep-alive connection,
//! N times: `tools/call zero` (a task), then `tasks/get` back to back until `completed`.
//! Prints `create_p50_us create_p99_us total_p50_us total_p99_us polls_p50`.
//! usage: taskbench PORT N
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

const META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"extensions":{"io.modelcontextprotocol/tasks":{}}}}"#;

struct Conn {
    port: u16,
    write: TcpStream,
    read: BufReader<TcpStream>,
}

impl Conn {
    fn call(&mut self, method: &str, name: &str, params: &str) -> serde_json::Value {
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{{params},{META}}}}}"#);
        let req = format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
             MCP-Protocol-Version: 2026-07-28\r\nMcp-Method: {method}\r\nMcp-Name: {name}\r\nContent-Length: {}\r\n\r\n{body}",
            self.port,
            body.len()
        );
        self.write.write_all(req.as_bytes()).expect("write");
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            self.read.read_line(&mut line).expect("read head");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().expect("length");
            }
        }
        let mut buf = vec![0u8; length];
        self.read.read_exact(&mut buf).expect("body (this probe needs JSON answers with Content-Length)");
        serde_json::from_slice(&buf).expect("JSON")
    }
}

fn pct(v: &mut [f64], p: usize) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[(v.len() * p / 100).min(v.len() - 1)]
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let port: u16 = a[1].parse().expect("PORT");
    let n: usize = a[2].parse().expect("N");
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut conn = Conn { port, write: stream.try_clone().expect("clone"), read: BufReader::new(stream) };
    let (mut create, mut total, mut polls) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n + 20 {
        let t0 = Instant::now();
        let created = conn.call("tools/call", "zero", r#""name":"zero","arguments":{}"#);
        let t_create = t0.elapsed();
        let id = created["result"]["taskId"].as_str().unwrap_or_else(|| panic!("not a task: {created}")).to_owned();
        let mut count = 0;
        loop {
            count += 1;
            let got = conn.call("tasks/get", &id, &format!(r#""taskId":"{id}""#));
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
