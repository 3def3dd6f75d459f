//! Start-to-first-answer: spawns a server, polls `tools/call echo` on 127.0.0.1:PORT/mcp every
//! millisecond until it answers, prints `ready_ms=… rss_kb=…`, kills the server.
//! usage: ready PORT -- command args…
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let port: u16 = a[1].parse().expect("PORT");
    let sep = a.iter().position(|x| x == "--").expect("-- command");
    let body =
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"ready-probe"}}}"#;
    let req = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-06-18\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let t0 = Instant::now();
    let mut child = Command::new(&a[sep + 1])
        .args(&a[sep + 2..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    loop {
        assert!(t0.elapsed() < Duration::from_secs(60), "the server did not answer within 60 s");
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            if s.write_all(req.as_bytes()).is_ok() {
                let mut buf = Vec::new();
                let _ = s.read_to_end(&mut buf);
                let r = String::from_utf8_lossy(&buf);
                if r.starts_with("HTTP/1.1 200") && r.contains("ready-probe") {
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    let rss = status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).unwrap_or("0");
    println!("ready_ms={ms:.1} rss_kb={rss}");
    let _ = child.kill();
    let _ = child.wait();
}
