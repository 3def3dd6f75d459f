//! stdio round trips: spawns a server, initializes, then N `tools/call echo` one at a time
//! (window 1) or with W in flight; prints `rps=… p50_us=… p99_us=…`.
//! usage: stdiobench N W -- command args…
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let n: usize = a[1].parse().expect("N");
    let w: usize = a[2].parse().expect("W");
    let sep = a.iter().position(|x| x == "--").expect("-- command");
    let mut child = Command::new(&a[sep + 1])
        .args(&a[sep + 2..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    writeln!(stdin, r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"2025-11-25","capabilities":{{}},"clientInfo":{{"name":"b","version":"1"}}}}}}"#).unwrap();
    stdin.flush().unwrap();
    loop {
        line.clear();
        out.read_line(&mut line).unwrap();
        if line.contains("\"id\":0") {
            break;
        }
    }
    writeln!(stdin, r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#).unwrap();
    let text = "x".repeat(64);
    let req = |id: usize| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{text}"}}}}}}"#
        )
    };
    for i in 1..=200 {
        writeln!(stdin, "{}", req(i)).unwrap();
        stdin.flush().unwrap();
        loop {
            line.clear();
            out.read_line(&mut line).unwrap();
            if line.contains("result") && line.contains(&format!("\"id\":{i}")) {
                break;
            }
        }
    }
    let mut lats = Vec::with_capacity(n);
    let mut sent_at = HashMap::new();
    let start = Instant::now();
    let (mut next, end, mut done) = (1000usize, 1000 + n, 0);
    while next < end && sent_at.len() < w {
        sent_at.insert(next, Instant::now());
        writeln!(stdin, "{}", req(next)).unwrap();
        next += 1;
    }
    stdin.flush().unwrap();
    while done < n {
        line.clear();
        out.read_line(&mut line).unwrap();
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        let Some(id) = v.get("id").and_then(|x| x.as_u64()) else { continue };
        if let Some(t) = sent_at.remove(&(id as usize)) {
            assert!(line.contains(&text), "bad reply {line}");
            lats.push(t.elapsed().as_secs_f64() * 1e6);
            done += 1;
            if next < end {
                sent_at.insert(next, Instant::now());
                writeln!(stdin, "{}", req(next)).unwrap();
                stdin.flush().unwrap();
                next += 1;
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    lats.sort_by(|a, b| a.total_cmp(b));
    println!("rps={:.0} p50_us={:.0} p99_us={:.0}", n as f64 / elapsed, lats[n / 2], lats[n * 99 / 100]);
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
}
