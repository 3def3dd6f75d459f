//! The process's standard input and output, driven by the reactor when they are pipes.
//!
//! Tokio's `stdin()` and `stdout()` run every read and write on its blocking pool, as they must
//! for a terminal or a file, which cannot be polled: two thread hops per round trip. MCP clients
//! spawn stdio servers with pipes, and a pipe can be polled, so our ends are registered with the
//! reactor instead (`O_NONBLOCK` set on them; tokio's `unix::pipe` checks that they are pipes).
//!
//! Two cases keep the blocking pool:
//! * anything that is not a pipe (a terminal, a file, a socket);
//! * stdout when stderr is the same pipe (`2>&1`): the flag belongs to the shared pipe end, and
//!   a log line written to a full non-blocking pipe would fail with `EAGAIN`.
//!
//! Dropping an end puts it back in blocking mode, so whatever uses the pipe after us (the next
//! command of a wrapper script) finds it as it was.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::unix::pipe;

/// Standard input: a reactor-driven pipe if it is one, else tokio's blocking-pool reader.
pub(crate) fn stdin() -> Box<dyn AsyncRead + Send + Unpin> {
    match io::stdin().as_fd().try_clone_to_owned().and_then(pipe::Receiver::from_owned_fd) {
        Ok(pipe) => Box::new(Restoring(Some(pipe))),
        Err(_) => Box::new(tokio::io::stdin()),
    }
}

/// Standard output: a reactor-driven pipe if it is one and stderr is not the same pipe, else
/// tokio's blocking-pool writer.
pub(crate) fn stdout() -> Box<dyn AsyncWrite + Send + Unpin> {
    let shared_with_stderr = same_file(io::stdout().as_fd(), io::stderr().as_fd()).unwrap_or(true);
    match io::stdout().as_fd().try_clone_to_owned().and_then(pipe::Sender::from_owned_fd) {
        Ok(pipe) if !shared_with_stderr => Box::new(Restoring(Some(pipe))),
        _ => Box::new(tokio::io::stdout()),
    }
}

fn same_file(a: std::os::fd::BorrowedFd<'_>, b: std::os::fd::BorrowedFd<'_>) -> io::Result<bool> {
    let (a, b) = (
        std::fs::File::from(a.try_clone_to_owned()?).metadata()?,
        std::fs::File::from(b.try_clone_to_owned()?).metadata()?,
    );
    Ok((a.dev(), a.ino()) == (b.dev(), b.ino()))
}

/// A pipe end that goes back to blocking mode when dropped.
struct Restoring<P: IntoBlocking>(Option<P>);

trait IntoBlocking {
    fn into_blocking(self) -> io::Result<OwnedFd>;
}

impl IntoBlocking for pipe::Receiver {
    fn into_blocking(self) -> io::Result<OwnedFd> {
        self.into_blocking_fd()
    }
}

impl IntoBlocking for pipe::Sender {
    fn into_blocking(self) -> io::Result<OwnedFd> {
        self.into_blocking_fd()
    }
}

impl<P: IntoBlocking> Restoring<P> {
    fn pipe(self: Pin<&mut Self>) -> Pin<&mut P>
    where
        P: Unpin,
    {
        // Only `Drop` takes the pipe out, so it is always here while the value is in use.
        Pin::new(self.get_mut().0.as_mut().expect("the pipe is only taken on drop"))
    }
}

impl<P: IntoBlocking> Drop for Restoring<P> {
    fn drop(&mut self) {
        if let Some(pipe) = self.0.take() {
            // The duplicate closes here; fds 0 and 1 stay open, back in blocking mode.
            let _ = pipe.into_blocking();
        }
    }
}

impl AsyncRead for Restoring<pipe::Receiver> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.pipe().poll_read(cx, buf)
    }
}

impl AsyncWrite for Restoring<pipe::Sender> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.pipe().poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.pipe().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.pipe().poll_shutdown(cx)
    }
}
