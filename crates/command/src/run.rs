//! One execution of a command-backed tool: validate, fill the argv, start the program in its own
//! process group, stream its output into the call, and end with bounded tails.

use std::collections::VecDeque;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use taskwire_protocol::lines::{LineRead, read_line};
use taskwire_server::model::{Object, ToolOutput};
use taskwire_server::{Context, ToolError};
use tokio::io::{AsyncRead, BufReader};
use tokio::sync::mpsc;

use crate::config::CommandSpec;

/// The longest output line looked at whole; longer lines are cut in the tails.
const MAX_LINE_BYTES: usize = 64 * 1024;
/// How long a program has after SIGTERM before the group gets SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// How long output may still come after the program exited (a background child holding the
/// pipe open does not keep the call waiting longer).
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);
/// The longest status message taken from an output line.
const STATUS_CHARS: usize = 200;
/// How often the partial output kept for a timeout is refreshed.
const PARTIAL_EVERY: Duration = Duration::from_millis(100);

/// The argv, directory and environment a call runs with.
#[derive(Debug, PartialEq, Eq)]
pub struct Invocation {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Working directory.
    pub cwd: std::path::PathBuf,
}

/// Checks the arguments against the schema and fills the templates.
pub fn prepare(spec: &CommandSpec, args: &Object) -> Result<Invocation, ToolError> {
    let instance = Value::Object(args.clone());
    let problems: Vec<String> = spec
        .validator
        .iter_errors(&instance)
        .take(5)
        .map(|e| {
            let at = e.instance_path.to_string();
            if at.is_empty() { e.to_string() } else { format!("{at}: {e}") }
        })
        .collect();
    if !problems.is_empty() {
        return Err(ToolError::Execution(format!("invalid arguments for {}: {}", spec.name, problems.join("; "))));
    }
    let mut argv = Vec::with_capacity(spec.argv.len());
    for t in &spec.argv {
        t.render_into(args, &mut argv).map_err(ToolError::Execution)?;
    }
    let cwd = match &spec.cwd {
        Some(t) => match t.render_one(args).map_err(ToolError::Execution)? {
            Some(dir) => spec.base_dir.join(dir),
            None => spec.base_dir.clone(),
        },
        None => spec.base_dir.clone(),
    };
    Ok(Invocation { argv, cwd })
}

/// Runs one call to completion (or until cancelled, timed out or dropped: the process group is
/// stopped in every case).
pub async fn execute(spec: &CommandSpec, ctx: Context, args: Object) -> Result<ToolOutput, ToolError> {
    let inv = prepare(spec, &args)?;
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new(&inv.argv[0]);
    cmd.args(&inv.argv[1..])
        .current_dir(&inv.cwd)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    for var in &spec.env_pass {
        if let Some(v) = std::env::var_os(var) {
            cmd.env(var, v);
        }
    }
    cmd.envs(&spec.env_set);
    let mut child = cmd
        .spawn()
        .map_err(|e| ToolError::Execution(format!("cannot start {:?} in {}: {e}", inv.argv[0], inv.cwd.display())))?;
    let group = GroupGuard::new(child.id());
    let (tx, mut lines) = mpsc::channel::<(Stream, String)>(256);
    if let Some(out) = child.stdout.take() {
        tokio::spawn(forward_lines(out, Stream::Stdout, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(forward_lines(err, Stream::Stderr, tx.clone()));
    }
    drop(tx);
    let mut out = Output::new(spec.tail_bytes);
    let mut last_partial = Instant::now();
    let mut last_progress = f64::NEG_INFINITY;
    let status = loop {
        tokio::select! {
            line = lines.recv() => match line {
                Some((stream, text)) => {
                    report_line(spec, &ctx, &text, &mut last_progress).await;
                    out.push(stream, text);
                    if last_partial.elapsed() >= PARTIAL_EVERY {
                        ctx.set_partial_output(out.partial());
                        last_partial = Instant::now();
                    }
                }
                // Both pipes closed: the program is ending.
                None => break child.wait().await,
            },
            status = child.wait() => {
                // Output written just before exit is still in the pipes; a background child
                // holding them open does not keep us past the drain deadline.
                let deadline = tokio::time::Instant::now() + DRAIN_AFTER_EXIT;
                while let Ok(Some((stream, text))) = tokio::time::timeout_at(deadline, lines.recv()).await {
                    out.push(stream, text);
                }
                break status;
            }
            _ = ctx.cancelled() => {
                ctx.set_partial_output(out.partial());
                return Err(ToolError::Cancelled);
            }
        }
    };
    // Whatever the program left running in its group ends with it.
    drop(group);
    let status = status.map_err(|e| ToolError::Execution(format!("cannot wait for {:?}: {e}", inv.argv[0])))?;
    let elapsed = started.elapsed();
    let code = status.code();
    let how = match (code, std::os::unix::process::ExitStatusExt::signal(&status)) {
        (Some(0), _) => None,
        (Some(c), _) => Some(format!("{} exited with code {c}", inv.argv[0])),
        (None, Some(sig)) => Some(format!("{} was killed by signal {sig}", inv.argv[0])),
        (None, None) => Some(format!("{} ended abnormally", inv.argv[0])),
    };
    if let (Some(how), Some(c)) = (&how, code)
        && spec.retry.is_some()
        && spec.retry_exit_codes.contains(&c)
    {
        return Err(ToolError::transient(format!("{how} (a code this tool retries)")));
    }
    Ok(out.result(how, code, elapsed))
}

/// Progress from a line: the status message always, a progress notification when the pattern
/// matches and the value moves forward (MCP progress must increase).
async fn report_line(spec: &CommandSpec, ctx: &Context, line: &str, last: &mut f64) {
    let status: String = line.chars().take(STATUS_CHARS).collect();
    let Some(re) = &spec.progress else {
        ctx.status(status);
        return;
    };
    let Some(caps) = re.captures(line) else {
        ctx.status(status);
        return;
    };
    let number = |i: usize| caps.get(i).and_then(|m| m.as_str().parse::<f64>().ok());
    let (current, total) = match caps.len() {
        3 => (number(1), number(2)),
        _ => (number(1), Some(100.0)),
    };
    match current {
        Some(c) if c > *last => {
            *last = c;
            ctx.progress(c, total, Some(&status)).await;
        }
        _ => ctx.status(status),
    }
}

#[derive(Clone, Copy, Debug)]
enum Stream {
    Stdout,
    Stderr,
}

async fn forward_lines(pipe: impl AsyncRead + Unpin, stream: Stream, tx: mpsc::Sender<(Stream, String)>) {
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::with_capacity(1024);
    loop {
        buf.clear();
        let text = match read_line(&mut reader, &mut buf, MAX_LINE_BYTES).await {
            Ok(LineRead::Eof) | Err(_) => return,
            Ok(LineRead::TooLong) => format!("[a line longer than {MAX_LINE_BYTES} bytes was cut]"),
            Ok(LineRead::Line) => String::from_utf8_lossy(trim_end(&buf)).into_owned(),
        };
        if tx.send((stream, text)).await.is_err() {
            return;
        }
    }
}

/// The line without its line ending (blanks are output too, unlike in JSON-RPC framing).
fn trim_end(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    &line[..end]
}

/// The ends of both streams, each bounded in bytes.
struct Output {
    stdout: Tail,
    stderr: Tail,
}

struct Tail {
    lines: VecDeque<String>,
    bytes: usize,
    limit: usize,
    dropped: u64,
}

impl Tail {
    fn new(limit: usize) -> Self {
        Tail { lines: VecDeque::new(), bytes: 0, limit, dropped: 0 }
    }

    fn push(&mut self, line: String) {
        self.bytes += line.len() + 1;
        self.lines.push_back(line);
        while self.bytes > self.limit && self.lines.len() > 1 {
            if let Some(old) = self.lines.pop_front() {
                self.bytes -= old.len() + 1;
                self.dropped += 1;
            }
        }
    }

    fn text(&self) -> String {
        let mut s = String::with_capacity(self.bytes);
        if self.dropped > 0 {
            s.push_str(&format!("[{} earlier lines omitted]\n", self.dropped));
        }
        for l in &self.lines {
            s.push_str(l);
            s.push('\n');
        }
        s
    }
}

impl Output {
    fn new(limit: usize) -> Self {
        Output { stdout: Tail::new(limit), stderr: Tail::new(limit) }
    }

    fn push(&mut self, stream: Stream, line: String) {
        match stream {
            Stream::Stdout => self.stdout.push(line),
            Stream::Stderr => self.stderr.push(line),
        }
    }

    fn text(&self) -> String {
        let (out, err) = (self.stdout.text(), self.stderr.text());
        match (out.is_empty(), err.is_empty()) {
            (_, true) => out,
            (true, false) => format!("[stderr]\n{err}"),
            (false, false) => format!("{out}[stderr]\n{err}"),
        }
    }

    fn partial(&self) -> ToolOutput {
        ToolOutput::text(self.text())
    }

    fn result(&self, failure: Option<String>, code: Option<i32>, elapsed: Duration) -> ToolOutput {
        let structured = json!({
            "exitCode": code,
            "stdout": self.stdout.text(),
            "stderr": self.stderr.text(),
            "stdoutLinesOmitted": self.stdout.dropped,
            "stderrLinesOmitted": self.stderr.dropped,
            "durationMs": u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        });
        let body = self.text();
        match failure {
            None => {
                ToolOutput::text(if body.is_empty() { "(no output)".to_owned() } else { body }).structured(structured)
            }
            Some(how) => ToolOutput::error(format!("{how}\n{body}")).structured(structured),
        }
    }
}

/// Stops the program's process group when dropped: SIGTERM at once, SIGKILL after a grace
/// period to whatever is left. Runs on completion too, so background children never outlive
/// their call.
struct GroupGuard(Option<nix::unistd::Pid>);

impl GroupGuard {
    fn new(pid: Option<u32>) -> Self {
        GroupGuard(pid.and_then(|p| i32::try_from(p).ok()).map(nix::unistd::Pid::from_raw))
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, killpg};
        let Some(pgid) = self.0 else { return };
        // ESRCH: the group is already gone, which is the common case after a clean exit.
        if killpg(pgid, Signal::SIGTERM).is_err() {
            return;
        }
        let kill_later = async move {
            tokio::time::sleep(KILL_GRACE).await;
            let _ = killpg(pgid, Signal::SIGKILL);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(kill_later);
            }
            Err(_) => {
                let _ = killpg(pgid, Signal::SIGKILL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_keep_the_end_and_count_what_they_drop() {
        let mut t = Tail::new(10);
        for l in ["aaaa", "bbbb", "cccc"] {
            t.push(l.to_owned());
        }
        assert_eq!(t.text(), "[1 earlier lines omitted]\nbbbb\ncccc\n");
    }

    #[test]
    fn trim_end_keeps_leading_blanks() {
        assert_eq!(trim_end(b"  x \r\n"), b"  x ");
        assert_eq!(trim_end(b"\n"), b"");
    }
}
