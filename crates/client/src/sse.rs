//! A small Server-Sent Events parser: bytes in, `data` payloads out (event ids are kept for
//! `Last-Event-ID`). Lines and events are bounded so that a hostile server cannot make us hold
//! unbounded memory.

/// The largest event we accept (bytes of `data`).
const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

#[derive(Default)]
pub(crate) struct SseParser {
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    oversized: bool,
    /// The last `id:` seen.
    pub(crate) last_event_id: Option<String>,
}

impl SseParser {
    /// Feeds a chunk; calls `emit` with the `data` of every complete event.
    pub(crate) fn feed(&mut self, chunk: &[u8], mut emit: impl FnMut(&[u8])) {
        for &b in chunk {
            if b != b'\n' {
                if self.line.len() <= MAX_EVENT_BYTES {
                    self.line.push(b);
                }
                continue;
            }
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.is_empty() {
                if self.has_data && !self.oversized {
                    emit(&self.data);
                }
                self.data.clear();
                self.has_data = false;
                self.oversized = false;
            } else {
                self.field(&line);
            }
            line.clear();
            self.line = line;
        }
    }

    fn field(&mut self, line: &[u8]) {
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(0) => return, // a comment
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &[][..]),
        };
        match name {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.has_data = true;
                if self.data.len() + value.len() > MAX_EVENT_BYTES {
                    self.oversized = true;
                } else {
                    self.data.extend_from_slice(value);
                }
            }
            b"id" => self.last_event_id = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(chunks: &[&[u8]]) -> Vec<String> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, |d| out.push(String::from_utf8_lossy(d).into_owned()));
        }
        out
    }

    #[test]
    fn events_split_across_chunks_and_crlf() {
        let got = events(&[b"id: 1\r\nda", b"ta: {\"a\":1}\r\n\r\n: comment\n\ndata: x\ndata: y\n\n"]);
        assert_eq!(got, vec!["{\"a\":1}", "x\ny"]);
    }

    #[test]
    fn an_event_without_data_is_not_emitted_and_ids_are_kept() {
        let mut p = SseParser::default();
        let mut n = 0;
        p.feed(b"id: 42\nretry: 10\n\n", |_| n += 1);
        assert_eq!(n, 0);
        assert_eq!(p.last_event_id.as_deref(), Some("42"));
    }
}
