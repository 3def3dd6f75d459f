//! The stdio link: a child process speaking newline-delimited JSON-RPC.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use taskwire_protocol::lines::{LineRead, read_line, trim_line};
use tokio::io::BufReader;
use tokio::net::unix::pipe;
use tokio::process::{Child, ChildStdout};
use tokio::sync::Notify;

use crate::{Client, ClientError, lock};

/// The longest line read from the server (4 MiB, as the server side accepts).
const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;

/// How many bytes may wait for a slow server to read its input before senders wait too.
const OUTBOX_LIMIT: usize = 1024 * 1024;

/// What to start: a program and its arguments (never through a shell).
#[derive(Clone, Debug)]
pub struct StdioCommand {
    /// The program.
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Its working directory (the current one when `None`).
    pub cwd: Option<PathBuf>,
}

impl StdioCommand {
    /// `program` with `args`.
    pub fn new(program: impl Into<OsString>, args: impl IntoIterator<Item = impl Into<OsString>>) -> Self {
        Self { program: program.into(), args: args.into_iter().map(Into::into).collect(), cwd: None }
    }
}

/// The child's input. A message is written by the task that sends it when nothing is queued
/// before it (one `write`, no hand-over to another task); while the pipe is full, messages queue
/// in order and a task writes them out as the child reads.
pub(crate) struct StdioLink {
    input: Arc<Input>,
}

struct Input {
    pipe: pipe::Sender,
    outbox: Mutex<Outbox>,
    /// Signalled as the queue drains, for senders waiting on a full one.
    drained: Notify,
}

#[derive(Default)]
struct Outbox {
    queued: Vec<u8>,
    /// A task is writing the queue out; new messages go behind it.
    draining: bool,
    /// Writing failed: the child is gone.
    broken: bool,
}

/// The halves of the child's I/O, started once the client exists.
pub(crate) struct StdioIo {
    child: Child,
    group: ProcessGroup,
    stdout: ChildStdout,
    name: String,
}

impl StdioLink {
    pub(crate) fn spawn(command: &StdioCommand) -> Result<(StdioLink, StdioIo), ClientError> {
        let name = command.program.to_string_lossy().into_owned();
        let mut cmd = tokio::process::Command::new(&command.program);
        cmd.args(&command.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            // Its own process group: a Ctrl-C meant for us does not reach it before we decide.
            .process_group(0);
        if let Some(dir) = &command.cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().map_err(|e| ClientError::Connect(format!("cannot start {name}: {e}")))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(ClientError::Connect(format!("{name} has no standard input or output")));
        };
        let group = ProcessGroup(child.id());
        let pipe = stdin
            .into_owned_fd()
            .and_then(pipe::Sender::from_owned_fd)
            .map_err(|e| ClientError::Connect(format!("cannot drive the input of {name}: {e}")))?;
        let input = Arc::new(Input { pipe, outbox: Mutex::default(), drained: Notify::new() });
        Ok((StdioLink { input }, StdioIo { child, group, stdout, name }))
    }

    pub(crate) async fn send(&self, mut message: Vec<u8>) -> Result<(), ClientError> {
        message.push(b'\n');
        loop {
            // Made before the offer: a drain finishing in between still wakes this sender.
            let drained = self.input.drained.notified();
            if self.input.offer(&message)? {
                return Ok(());
            }
            drained.await;
        }
    }
}

impl Input {
    /// Writes `message` now when nothing is queued before it (queueing what the pipe did not
    /// take, behind a drain task), else queues it; `false` when the queue is full.
    fn offer(self: &Arc<Self>, message: &[u8]) -> Result<bool, ClientError> {
        let mut outbox = lock(&self.outbox);
        if outbox.broken {
            return Err(gone());
        }
        if outbox.draining {
            if outbox.queued.len() >= OUTBOX_LIMIT {
                return Ok(false);
            }
            outbox.queued.extend_from_slice(message);
            return Ok(true);
        }
        let written = match self.pipe.try_write(message) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(_) => {
                outbox.broken = true;
                return Err(gone());
            }
        };
        if written < message.len() {
            outbox.queued.extend_from_slice(&message[written..]);
            outbox.draining = true;
            tokio::spawn(drain(self.clone()));
        }
        Ok(true)
    }
}

/// `write_all` through a shared reference (the senders try writes of their own on it).
async fn write_all(pipe: &pipe::Sender, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        pipe.writable().await?;
        match pipe.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn gone() -> ClientError {
    ClientError::Closed("the server process has exited".into())
}

/// Writes the queue out as the child reads it, then hands writing back to the senders.
async fn drain(input: Arc<Input>) {
    loop {
        let chunk = {
            let mut outbox = lock(&input.outbox);
            if outbox.queued.is_empty() {
                outbox.draining = false;
                break;
            }
            std::mem::take(&mut outbox.queued)
        };
        let written = write_all(&input.pipe, &chunk).await;
        input.drained.notify_waiters();
        if written.is_err() {
            lock(&input.outbox).broken = true;
            break;
        }
    }
    input.drained.notify_waiters();
}

impl StdioIo {
    /// Starts the reader. It holds only a weak reference to the client, so dropping the last
    /// [`Client`] closes the child's input (a draining task holds it only until the queue is
    /// written) and ends the child.
    pub(crate) fn start(self, client: Client) {
        let StdioIo { mut child, group, stdout, name } = self;
        let weak = std::sync::Arc::downgrade(&client.shared);
        drop(client);
        tokio::spawn(async move {
            let mut reader = BufReader::with_capacity(64 * 1024, stdout);
            let mut line = Vec::with_capacity(4096);
            let reason = loop {
                line.clear();
                match read_line(&mut reader, &mut line, MAX_LINE_BYTES).await {
                    Ok(LineRead::Eof) => break None,
                    Err(e) => break Some(format!("reading from {name} failed: {e}")),
                    Ok(LineRead::TooLong) => {
                        tracing::warn!("{name} sent a line longer than {MAX_LINE_BYTES} bytes; it was dropped");
                    }
                    Ok(LineRead::Line) => {
                        let text = trim_line(&line);
                        if text.is_empty() {
                            continue;
                        }
                        let Some(shared) = weak.upgrade() else { break None };
                        Client { shared }.route(text, None).await;
                    }
                }
            };
            let Some(shared) = weak.upgrade() else { return };
            let _group = group;
            let status = match tokio::time::timeout(std::time::Duration::from_secs(2), child.wait()).await {
                Ok(Ok(status)) => format!("{name} exited ({status})"),
                Ok(Err(e)) => format!("{name} could not be waited for: {e}"),
                Err(_) => {
                    let _ = child.start_kill();
                    format!("{name} closed its output and was killed")
                }
            };
            let reason = match reason {
                Some(r) => format!("{r}; {status}"),
                None => status,
            };
            Client { shared }.mark_closed(reason);
        });
    }
}

/// The child's process group, killed when dropped: a server started through `npx` or a shell
/// leaves no grandchildren behind.
struct ProcessGroup(Option<u32>);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Some(pid) = self.0.and_then(|p| i32::try_from(p).ok()) {
            // The group may be gone already; nothing to do then.
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}
