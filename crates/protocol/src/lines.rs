//! Newline-delimited framing with a bound (stdio transports, child processes' output): a line
//! longer than the bound is skipped through its newline without ever being held in memory.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// What [`read_line`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineRead {
    /// A line (with its newline, if any) is in the buffer.
    Line,
    /// The line was longer than the bound and was skipped.
    TooLong,
    /// The input ended.
    Eof,
}

/// Reads one line into `buf`, never holding more than `max` bytes: an overlong line is skipped
/// through to its newline without being stored.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<LineRead> {
    let mut too_long = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(match (too_long, buf.is_empty()) {
                (true, _) => LineRead::TooLong,
                (false, true) => LineRead::Eof,
                (false, false) => LineRead::Line,
            });
        }
        let (chunk, found) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let used = chunk.len();
        if !too_long {
            if buf.len() + used > max + 1 {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        reader.consume(used);
        if found {
            return Ok(if too_long { LineRead::TooLong } else { LineRead::Line });
        }
    }
}

/// The line without its line ending and surrounding blanks.
pub fn trim_line(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r' | b' ' | b'\t') {
        end -= 1;
    }
    let start = line[..end].iter().position(|b| !matches!(b, b' ' | b'\t')).unwrap_or(end);
    &line[start..end]
}
