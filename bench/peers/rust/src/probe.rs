//! A blocking HTTP/1.1 keep-alive connection for the probes. Fixed-length bodies only: the
//! servers measured here answer JSON with `Content-Length`, and a probe that met anything else
//! should stop loudly rather than measure it.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

/// An HTTP answer: status, headers (names lowercased), body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// The first header of that (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The body as JSON (panics with the body if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("answer is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// One keep-alive connection to `127.0.0.1:port`, Nagle off.
pub struct Conn {
    port: u16,
    write: TcpStream,
    read: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(port: u16) -> Conn {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("connect to :{port}: {e}"));
        stream.set_nodelay(true).expect("nodelay");
        Conn { port, write: stream.try_clone().expect("clone"), read: BufReader::new(stream) }
    }

    /// POSTs `body` as JSON to `path` with the extra headers and reads the whole answer.
    pub fn post(&mut self, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n",
            self.port,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        self.write.write_all(req.as_bytes()).expect("write");
        let mut line = String::new();
        self.read.read_line(&mut line).expect("read status line");
        let status =
            line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("status line {line:?}"));
        let (mut headers, mut length) = (Vec::new(), 0usize);
        loop {
            line.clear();
            self.read.read_line(&mut line).expect("read head");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
                if k == "content-length" {
                    length = v.parse().expect("length");
                }
                headers.push((k, v));
            }
        }
        let mut body = vec![0u8; length];
        self.read.read_exact(&mut body).expect("body (this probe needs answers with Content-Length)");
        Answer { status, headers, body }
    }
}

/// The `p`th percentile (nearest rank) of `v`; sorts it.
pub fn pct(v: &mut [f64], p: usize) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[(v.len() * p / 100).min(v.len() - 1)]
}
