//! One clock for every SSE stream that holds back its head ([`super::sse`]'s `HEAD_HOLD`).
//!
//! A stream that armed a timer of its own paid for it on every call that waited on something:
//! registering a timer earlier than the runtime's next one makes tokio wake its I/O driver (an
//! `eventfd` write, then an extra event out of `epoll_wait`), two system calls on each proxied
//! call. One task ticking for all of them registers one timer a tick however many streams hold,
//! and none while nobody does.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::task::Context;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;

/// Idle ticks before the clock stops: under load, streams come and go between ticks, and a
/// clock restarted for each would register its first timer each time again.
const IDLE_TICKS: u32 = 8;

/// The shared clock of one HTTP server.
pub(crate) struct HoldClock {
    every: Duration,
    /// Ticks so far.
    ticks: AtomicU64,
    tick: Arc<Notify>,
    holders: AtomicUsize,
    running: AtomicBool,
}

impl HoldClock {
    /// A clock that ticks `every` while someone holds.
    pub(crate) fn new(every: Duration) -> Arc<Self> {
        Arc::new(Self {
            every,
            ticks: AtomicU64::new(0),
            tick: Arc::new(Notify::new()),
            holders: AtomicUsize::new(0),
            running: AtomicBool::new(false),
        })
    }

    /// A hold that ends on the second tick from now: after at least one period, at most two.
    pub(crate) fn hold(self: &Arc<Self>) -> Hold {
        self.holders.fetch_add(1, SeqCst);
        if !self.running.swap(true, SeqCst) {
            tokio::spawn(run(self.clone()));
        }
        // Made before the tick count is read: a `Notified` hears every `notify_waiters` from
        // its creation on, polled or not, so no tick falls between the two.
        let waiting = Box::pin(self.tick.clone().notified_owned());
        Hold { until: self.ticks.load(SeqCst) + 2, clock: self.clone(), waiting }
    }
}

async fn run(clock: Arc<HoldClock>) {
    let mut idle = 0;
    loop {
        tokio::time::sleep(clock.every).await;
        clock.ticks.fetch_add(1, SeqCst);
        clock.tick.notify_waiters();
        if clock.holders.load(SeqCst) > 0 {
            idle = 0;
            continue;
        }
        idle += 1;
        if idle < IDLE_TICKS {
            continue;
        }
        clock.running.store(false, SeqCst);
        // A holder that came in between saw the clock running and started none: go on for it,
        // unless it already started another.
        if clock.holders.load(SeqCst) == 0 || clock.running.swap(true, SeqCst) {
            return;
        }
        idle = 0;
    }
}

/// One stream's hold; dropping it (the head went out) lets the clock stop.
pub(crate) struct Hold {
    clock: Arc<HoldClock>,
    until: u64,
    waiting: Pin<Box<OwnedNotified>>,
}

impl Hold {
    /// Whether the hold is over; if not, `cx` is woken at the next tick.
    pub(crate) fn poll_over(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.clock.ticks.load(SeqCst) >= self.until {
                return true;
            }
            if self.waiting.as_mut().poll(cx).is_pending() {
                return false;
            }
            self.waiting = Box::pin(self.clock.tick.clone().notified_owned());
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.clock.holders.fetch_sub(1, SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn over(hold: &mut Hold) {
        std::future::poll_fn(
            |cx| if hold.poll_over(cx) { std::task::Poll::Ready(()) } else { std::task::Poll::Pending },
        )
        .await
    }

    #[tokio::test(start_paused = true)]
    async fn a_hold_ends_after_one_to_two_periods() {
        let clock = HoldClock::new(Duration::from_millis(1));
        let started = tokio::time::Instant::now();
        let mut hold = clock.hold();
        over(&mut hold).await;
        let held = started.elapsed();
        assert!(held >= Duration::from_millis(1) && held <= Duration::from_millis(2), "held {held:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_clock_stops_when_nobody_holds_and_starts_again_for_the_next() {
        let clock = HoldClock::new(Duration::from_millis(1));
        over(&mut clock.hold()).await;
        tokio::time::sleep(Duration::from_millis(u64::from(IDLE_TICKS) + 2)).await;
        assert!(!clock.running.load(SeqCst), "the clock kept ticking with nobody holding");
        let ticks = clock.ticks.load(SeqCst);
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(clock.ticks.load(SeqCst), ticks, "a stopped clock ticked");
        let mut hold = clock.hold();
        assert!(clock.running.load(SeqCst));
        over(&mut hold).await;
        assert!(clock.ticks.load(SeqCst) >= ticks + 2);
    }

    #[tokio::test(start_paused = true)]
    async fn many_streams_share_one_clock() {
        let clock = HoldClock::new(Duration::from_millis(1));
        let mut holds: Vec<Hold> = (0..100).map(|_| clock.hold()).collect();
        for hold in &mut holds {
            over(hold).await;
        }
        // Two ticks release every one of them: one timer a tick, not one a stream.
        assert!(clock.ticks.load(SeqCst) <= 3, "{} ticks for 100 holds", clock.ticks.load(SeqCst));
    }
}
