//! Server-sent event streams: the body of a request answered over SSE, and the resumable
//! per-session event buffers behind `GET` + `Last-Event-ID`.
//!
//! A request's SSE body ([`CallStream`]) drives the request's handler itself. The common call —
//! a handler that finishes on its first poll — therefore costs no task spawn, no channel hop
//! between tasks, and goes out in one write together with its priming event. Only when the
//! client goes away before the handler has finished is the rest of the work moved to a task of
//! its own, which keeps storing events so that the client can resume (handshake sessions) or
//! cancels the work (2026-07-28, where closing the stream is the cancellation).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use futures_util::StreamExt as _;
use http::{HeaderName, HeaderValue, header};
use taskwire_server::{Outgoing, Reply};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::hold::{Hold, HoldClock};
use super::lock;
use taskwire_server::session::SINK_CAPACITY;

/// One frame of an SSE body.
enum Frame {
    Event { id: Option<(u64, u64)>, data: Bytes },
    Retry(u64),
}

impl Frame {
    fn encode(&self) -> Bytes {
        match self {
            Frame::Event { id, data } => {
                let mut out = Vec::with_capacity(data.len() + 32);
                write_event(&mut out, *id, data);
                Bytes::from(out)
            }
            Frame::Retry(ms) => {
                let mut out = Vec::with_capacity(24);
                write_retry(&mut out, *ms);
                Bytes::from(out)
            }
        }
    }
}

/// A resumable SSE stream: a bounded buffer of its events and the connection currently
/// reading it, if any. Every push and every (re)attachment happens under one lock, so a resumed
/// connection sees each event exactly once, in order.
pub(super) struct EventStream {
    pub(super) id: u64,
    state: Mutex<StreamState>,
}

struct StreamState {
    events: VecDeque<(u64, Bytes)>,
    next_seq: u64,
    capacity: usize,
    live: Option<mpsc::Sender<Frame>>,
    finished: bool,
}

impl EventStream {
    pub(super) fn new(id: u64, capacity: usize) -> Self {
        Self {
            id,
            state: Mutex::new(StreamState {
                events: VecDeque::new(),
                next_seq: 0,
                capacity,
                live: None,
                finished: false,
            }),
        }
    }

    /// Stores an event and forwards it to the live connection, if one reads; returns its
    /// sequence number.
    pub(super) fn push(&self, data: Bytes) -> u64 {
        let mut st = lock(&self.state);
        let seq = st.next_seq;
        st.next_seq += 1;
        if st.events.len() == st.capacity {
            st.events.pop_front();
        }
        st.events.push_back((seq, data.clone()));
        if let Some(live) = &st.live
            && live.try_send(Frame::Event { id: Some((self.id, seq)), data }).is_err()
        {
            // Gone or too slow: the client resumes from its Last-Event-ID.
            st.live = None;
        }
        seq
    }

    fn finish(&self) {
        let mut st = lock(&self.state);
        st.finished = true;
        st.live = None;
    }

    /// Ends the live connection after a `retry` hint; the stream itself goes on.
    fn close_live(&self, retry_ms: u64) {
        let mut st = lock(&self.state);
        if let Some(live) = st.live.take() {
            let _ = live.try_send(Frame::Retry(retry_ms));
        }
    }

    /// An SSE response that replays every stored event after `after`, then follows the stream
    /// live until it finishes (or the server shuts down).
    pub(super) fn follow(&self, after: Option<u64>, keep_alive: Duration, shutdown: CancellationToken) -> Response {
        sse_response(sse_body(self.attach(after, SINK_CAPACITY), keep_alive, shutdown))
    }

    /// Attaches a connection, first replaying every stored event after `after`.
    fn attach(&self, after: Option<u64>, capacity: usize) -> mpsc::Receiver<Frame> {
        let mut st = lock(&self.state);
        let replay: Vec<(u64, Bytes)> =
            st.events.iter().filter(|(seq, _)| after.is_none_or(|a| *seq > a)).cloned().collect();
        let (tx, rx) = mpsc::channel(capacity.max(replay.len() + SINK_CAPACITY));
        for (seq, data) in replay {
            let _ = tx.try_send(Frame::Event { id: Some((self.id, seq)), data });
        }
        if !st.finished {
            st.live = Some(tx);
        }
        rx
    }
}

/// Asks nginx-style reverse proxies not to buffer the stream. A constant: a name given as `&str`
/// is parsed on every insert (~1.5k instructions per response).
const X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

pub(super) fn sse_response(body: Body) -> Response {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(X_ACCEL_BUFFERING, HeaderValue::from_static("no"));
    resp
}

/// An SSE body from a frame receiver, with keep-alive comments, ending when the receiver closes
/// or on shutdown.
fn sse_body(mut rx: mpsc::Receiver<Frame>, keep_alive: Duration, shutdown: CancellationToken) -> Body {
    let stream = async_stream(move |yield_tx| async move {
        // Not `interval(..)` + a first `tick()`: tokio rounds even an immediate deadline up to its
        // 1 ms timer tick, which would delay every SSE response by up to a millisecond.
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + keep_alive, keep_alive);
        loop {
            tokio::select! {
                frame = rx.recv() => match frame {
                    // The stream ends when its producer lets go (a response delivered, or an
                    // SSE-polling close after a retry hint), never on a frame by itself.
                    Some(f) => {
                        if yield_tx.send(f.encode()).await.is_err() {
                            break;
                        }
                    }
                    None => break,
                },
                _ = ticker.tick() => {
                    if yield_tx.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() {
                        break;
                    }
                }
                _ = shutdown.cancelled() => break,
            }
        }
    });
    Body::from_stream(stream.map(Ok::<_, std::convert::Infallible>))
}

/// A stream fed by a producer future through a small channel; the producer stops when the
/// stream is dropped (its sends fail).
fn async_stream<F, Fut>(producer: F) -> impl futures_util::Stream<Item = Bytes> + Send + 'static
where
    F: FnOnce(mpsc::Sender<Bytes>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(producer(tx));
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) })
}

/// How long a resumable stream holds back its response head and priming event while the
/// handler has nothing else to send.
///
/// A call that waits on something (a proxied upstream, a disk) but answers within this window
/// goes out as one write, head and priming event and answer together, instead of two. Each write
/// wakes the client, which costs the server ~15 µs of loopback delivery on this machine's kind;
/// a proxied call paid it twice (bench/NOTES.md, gateway). Longer calls still get their priming
/// event, one to two of these late (plus the timer's 1 ms rounding): SEP-1699 asks for it
/// promptly so that a client cut off later can resume, and a millisecond or two keeps that
/// promise. The streams share one clock ([`HoldClock`]) rather than a timer each.
pub(super) const HEAD_HOLD: Duration = Duration::from_millis(1);

/// The handler of one request, run by the body that answers it.
pub(super) type Work = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// Appends `data` as an event to `out`, first storing it under its id if the stream is resumable.
fn emit(store: Option<&EventStream>, out: &mut Vec<u8>, data: Bytes) {
    match store {
        Some(store) => {
            let seq = store.push(data.clone());
            write_event(out, Some((store.id, seq)), &data);
        }
        None => write_event(out, None, &data),
    }
}

/// Appends an SSE `retry` hint (milliseconds before a client reconnects) to `out`.
fn write_retry(out: &mut Vec<u8>, retry_ms: u64) {
    out.extend_from_slice(b"retry: ");
    out.extend_from_slice(itoa::Buffer::new().format(retry_ms).as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// Appends one SSE event (`id:` line if any, `data:` line, blank line) to `out`.
fn write_event(out: &mut Vec<u8>, id: Option<(u64, u64)>, data: &[u8]) {
    if let Some((stream, seq)) = id {
        // itoa, not `write!`: the formatting machinery cost 1.2k instructions per event.
        let mut digits = itoa::Buffer::new();
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(digits.format(stream).as_bytes());
        out.push(b'-');
        out.extend_from_slice(digits.format(seq).as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
}

/// The SSE body of one request: it polls the request's handler and its outgoing messages
/// itself and yields everything that is ready as one chunk (so one write).
///
/// Dropped before the handler finished (the client went away, the server shuts down, or the
/// handler asked to close the stream for SSE polling), it hands the rest of the work to a task:
/// on a resumable stream that task keeps storing events for `GET` + `Last-Event-ID`; otherwise
/// it lets the work run out, after cancelling it if `cancel_on_disconnect` says closing the
/// stream is the cancellation.
pub(super) struct CallStream {
    work: Option<Work>,
    outgoing: Option<mpsc::Receiver<Outgoing>>,
    /// Resumable streams store every event under an id.
    store: Option<Arc<EventStream>>,
    /// Bytes to send before anything else (the priming event, or a message already received).
    head: Vec<u8>,
    /// How long a head that is only the priming event waits for company ([`HEAD_HOLD`]);
    /// taken on the first poll that finds the handler busy, dropped once the head went out.
    hold: Option<Hold>,
    /// The clock to hold by while the head may still be held (resumable streams, before their
    /// first chunk).
    hold_clock: Option<Arc<HoldClock>>,
    cancel_on_disconnect: Option<CancellationToken>,
    keep_alive: Duration,
    /// Armed only once the body has to wait: a call answered at once never touches the timer.
    ticker: Option<Pin<Box<tokio::time::Sleep>>>,
    shutdown: CancellationToken,
    shutdown_wait: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    ended: bool,
}

impl CallStream {
    /// A resumable stream (2025-11-25 sessions): it opens with a priming event, an id the
    /// client can resume from even before anything else was sent, and the retry hint.
    pub(super) fn resumable(
        store: Arc<EventStream>,
        work: Work,
        outgoing: mpsc::Receiver<Outgoing>,
        retry_ms: u64,
        keep_alive: Duration,
        shutdown: CancellationToken,
        hold_clock: &Arc<HoldClock>,
    ) -> Self {
        let mut head = Vec::with_capacity(256);
        let seq = store.push(Bytes::new());
        write_event(&mut head, Some((store.id, seq)), b"");
        write_retry(&mut head, retry_ms);
        let mut stream = Self::new(Some(store), head, work, outgoing, None, keep_alive, shutdown);
        stream.hold_clock = Some(hold_clock.clone());
        stream
    }

    /// A stream to this connection only, opening with `first`, a message the handler sent
    /// before its result.
    pub(super) fn live(
        first: Bytes,
        work: Work,
        outgoing: mpsc::Receiver<Outgoing>,
        cancel_on_disconnect: Option<CancellationToken>,
        keep_alive: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        let mut head = Vec::with_capacity(first.len() + 256);
        write_event(&mut head, None, &first);
        Self::new(None, head, work, outgoing, cancel_on_disconnect, keep_alive, shutdown)
    }

    fn new(
        store: Option<Arc<EventStream>>,
        head: Vec<u8>,
        work: Work,
        outgoing: mpsc::Receiver<Outgoing>,
        cancel_on_disconnect: Option<CancellationToken>,
        keep_alive: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            work: Some(work),
            outgoing: Some(outgoing),
            store,
            head,
            hold: None,
            hold_clock: None,
            cancel_on_disconnect,
            keep_alive,
            ticker: None,
            shutdown,
            shutdown_wait: None,
            ended: false,
        }
    }

    /// The response: sent once the body has its first chunk, so that the head and that chunk
    /// leave in one write (a resumable stream's first chunk may wait up to [`HEAD_HOLD`]).
    /// Dropped while waiting (the client left), the rest of the work moves to a task as usual.
    pub(super) async fn into_response(mut self) -> Response {
        let first = self.next().await;
        if self.ended {
            // Everything is in the first chunk (the common call, answered at once): a body of
            // known length goes out with `Content-Length`, not chunked, and is never polled again.
            return sse_response(first.map(Body::from).unwrap_or_else(Body::empty));
        }
        let body = futures_util::stream::iter(first).chain(self);
        sse_response(Body::from_stream(body.map(Ok::<_, std::convert::Infallible>)))
    }

    /// Whether a head that is only the priming event should wait a little longer for the
    /// handler ([`HEAD_HOLD`]); arms the hold on first use.
    fn holds_head(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(clock) = &self.hold_clock else { return false };
        if !self.hold.get_or_insert_with(|| clock.hold()).poll_over(cx) {
            return true;
        }
        self.hold_clock = None;
        self.hold = None;
        false
    }

    /// Takes every message already queued; `true` if one of them closes the stream.
    fn drain_outgoing(&mut self, out: &mut Vec<u8>, cx: &mut Context<'_>) -> bool {
        while let Some(outgoing) = &mut self.outgoing {
            match outgoing.poll_recv(cx) {
                Poll::Ready(Some(Outgoing::Message(data))) => emit(self.store.as_deref(), out, data),
                // SSE polling: end this connection after the retry hint; the work goes on.
                Poll::Ready(Some(Outgoing::CloseStream { retry_ms })) if self.store.is_some() => {
                    write_retry(out, retry_ms);
                    return true;
                }
                Poll::Ready(Some(Outgoing::CloseStream { .. })) => {}
                Poll::Ready(None) => self.outgoing = None,
                Poll::Pending => break,
            }
        }
        false
    }

    /// Waits for the keep-alive interval or the server's shutdown; `Ready(true)` ends the body.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        let shutdown = self.shutdown_wait.get_or_insert_with(|| Box::pin(self.shutdown.clone().cancelled_owned()));
        if shutdown.as_mut().poll(cx).is_ready() {
            return Poll::Ready(true);
        }
        let keep_alive = self.keep_alive;
        let ticker = self.ticker.get_or_insert_with(|| Box::pin(tokio::time::sleep(keep_alive)));
        if ticker.as_mut().poll(cx).is_ready() {
            ticker.as_mut().reset(tokio::time::Instant::now() + keep_alive);
            return Poll::Ready(false);
        }
        Poll::Pending
    }
}

impl futures_util::Stream for CallStream {
    type Item = Bytes;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let mut out = std::mem::take(&mut this.head);
        let head_len = out.len();
        this.ended = this.drain_outgoing(&mut out, cx);
        if !this.ended
            && let Some(work) = &mut this.work
            && let Poll::Ready(reply) = work.as_mut().poll(cx)
        {
            this.work = None;
            // What the handler sent before its result goes first.
            if let Some(outgoing) = &mut this.outgoing {
                while let Ok(message) = outgoing.try_recv() {
                    if let Outgoing::Message(data) = message {
                        emit(this.store.as_deref(), &mut out, data);
                    }
                }
            }
            if let Some(bytes) = reply.to_bytes() {
                emit(this.store.as_deref(), &mut out, Bytes::from(bytes));
            }
            if let Some(store) = &this.store {
                store.finish();
            }
            this.ended = true;
        }
        if out.len() == head_len && head_len > 0 && !this.ended && this.holds_head(cx) {
            this.head = out;
            return Poll::Pending;
        }
        if !out.is_empty() {
            // The head goes out: nothing to hold any more.
            this.hold_clock = None;
            this.hold = None;
            return Poll::Ready(Some(Bytes::from(out)));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        match this.poll_idle(cx) {
            Poll::Ready(true) => {
                this.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(false) => Poll::Ready(Some(Bytes::from_static(b": keep-alive\n\n"))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for CallStream {
    fn drop(&mut self) {
        let Some(work) = self.work.take() else { return };
        if let Some(cancel) = &self.cancel_on_disconnect {
            cancel.cancel();
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (outgoing, store) = (self.outgoing.take(), self.store.take());
        runtime.spawn(finish_detached(work, outgoing, store));
    }
}

/// The rest of a request whose connection has gone: on a resumable stream every event (and
/// the result) is stored for a client that resumes; otherwise the messages have nowhere to go
/// and the work just runs out.
async fn finish_detached(mut work: Work, outgoing: Option<mpsc::Receiver<Outgoing>>, store: Option<Arc<EventStream>>) {
    let Some(store) = store else {
        // Nowhere to send messages: closing the channel makes the handler's sends fail at once.
        drop(outgoing);
        work.await;
        return;
    };
    let reply = match outgoing {
        None => work.await,
        Some(mut outgoing) => loop {
            tokio::select! {
                biased;
                message = outgoing.recv() => match message {
                    Some(Outgoing::Message(data)) => { store.push(data); }
                    Some(Outgoing::CloseStream { retry_ms }) => store.close_live(retry_ms),
                    None => break work.await,
                },
                reply = &mut work => {
                    while let Ok(message) = outgoing.try_recv() {
                        if let Outgoing::Message(data) = message {
                            store.push(data);
                        }
                    }
                    break reply;
                }
            }
        },
    };
    if let Some(bytes) = reply.to_bytes() {
        store.push(Bytes::from(bytes));
    }
    store.finish();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_stream_replays_only_what_followed_the_last_event() {
        let s = EventStream::new(3, 8);
        s.push(Bytes::from_static(b"a"));
        s.push(Bytes::from_static(b"b"));
        s.push(Bytes::from_static(b"c"));
        let mut rx = s.attach(Some(0), 8);
        let mut got = Vec::new();
        while let Ok(frame) = rx.try_recv() {
            got.push(frame.encode());
        }
        assert_eq!(got, vec![Bytes::from_static(b"id: 3-1\ndata: b\n\n"), Bytes::from_static(b"id: 3-2\ndata: c\n\n")]);
    }
}
