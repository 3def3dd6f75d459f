//! The stdio link: a child process speaking newline-delimited JSON-RPC.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;

use taskwire_protocol::lines::{LineRead, read_line, trim_line};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::mpsc;

use crate::{Client, ClientError};

/// The longest line read from the server (4 MiB, as the server side accepts).
const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;

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

pub(crate) struct StdioLink {
    outgoing: mpsc::Sender<Vec<u8>>,
}

/// The halves of the child's I/O, started once the client exists.
pub(crate) struct StdioIo {
    child: Child,
    group: ProcessGroup,
    stdin: ChildStdin,
    stdout: ChildStdout,
    outgoing: mpsc::Receiver<Vec<u8>>,
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
        let (tx, rx) = mpsc::channel(1024);
        Ok((StdioLink { outgoing: tx }, StdioIo { child, group, stdin, stdout, outgoing: rx, name }))
    }

    pub(crate) async fn send(&self, mut message: Vec<u8>) -> Result<(), ClientError> {
        message.push(b'\n');
        self.outgoing.send(message).await.map_err(|_| ClientError::Closed("the server process has exited".into()))
    }
}

impl StdioIo {
    /// Starts the reader and the writer. The reader holds only a weak reference to the client,
    /// so dropping the last [`Client`] ends the writer, closes the child's input and kills it.
    pub(crate) fn start(self, client: Client) {
        let StdioIo { mut child, group, mut stdin, stdout, mut outgoing, name } = self;
        tokio::spawn(async move {
            while let Some(first) = outgoing.recv().await {
                let mut buf = first;
                while let Ok(more) = outgoing.try_recv() {
                    buf.extend_from_slice(&more);
                }
                if stdin.write_all(&buf).await.is_err() || stdin.flush().await.is_err() {
                    break;
                }
            }
        });
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
