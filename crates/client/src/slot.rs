//! What a request in flight shares with the link that answers it: the answer, and the messages
//! that belong to the request until then.
//!
//! One allocation and one lock a call, where a `oneshot` for the answer and a bounded `mpsc` for
//! the messages were three allocations (the channel's first block holds 32 slots) and two wake-up
//! paths to poll on every turn: most calls get their answer and nothing else, and a proxied call
//! paid ~2k instructions for channels it never used.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use serde_json::value::RawValue;
use tokio::sync::Notify;

use crate::{CallEvent, ClientError, EVENT_BUFFER, Incoming, lock};

/// The answer as the link delivers it.
pub(crate) type Answer = Result<Box<RawValue>, ClientError>;

#[derive(Debug, Default)]
pub(crate) struct CallSlot {
    state: Mutex<SlotState>,
    /// Signalled when a queued message is taken or the call goes away: a link waiting for room
    /// (backpressure, as a full bounded channel would make it wait) tries again.
    room: Notify,
}

#[derive(Debug, Default)]
struct SlotState {
    answer: Option<Answer>,
    messages: VecDeque<Incoming>,
    /// The call's task, waiting for either.
    waker: Option<Waker>,
    /// The call was dropped: messages for it go elsewhere.
    gone: bool,
}

impl CallSlot {
    /// Delivers the answer (the first one counts) and wakes the call.
    pub(crate) fn answer(&self, answer: Answer) {
        let waker = {
            let mut state = lock(&self.state);
            if state.answer.is_some() {
                return;
            }
            state.answer = Some(answer);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Queues a message for the call, waiting while [`EVENT_BUFFER`] are queued already. Gives
    /// the message back if the call is gone.
    pub(crate) async fn deliver(&self, message: Incoming) -> Result<(), Incoming> {
        loop {
            // Made before the check: a `notify_one` in between leaves a permit that it takes.
            let room = self.room.notified();
            {
                let mut state = lock(&self.state);
                if state.gone {
                    return Err(message);
                }
                if state.messages.len() < EVENT_BUFFER {
                    state.messages.push_back(message);
                    let waker = state.waker.take();
                    drop(state);
                    if let Some(waker) = waker {
                        waker.wake();
                    }
                    return Ok(());
                }
            }
            room.await;
        }
    }

    /// The next message, else the answer; messages first, in the order they came.
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<CallEvent> {
        let mut state = lock(&self.state);
        if let Some(message) = state.messages.pop_front() {
            drop(state);
            self.room.notify_one();
            return Poll::Ready(CallEvent::Incoming(message));
        }
        if let Some(answer) = state.answer.take() {
            return Poll::Ready(CallEvent::Done(answer));
        }
        match &mut state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            waker => *waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The call was dropped: queued messages are dropped with it, a link waiting for room
    /// stops waiting, and later messages go elsewhere.
    pub(crate) fn forget(&self) {
        let queued = {
            let mut state = lock(&self.state);
            state.gone = true;
            std::mem::take(&mut state.messages)
        };
        drop(queued);
        self.room.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn note(n: usize) -> Incoming {
        Incoming::Notification { method: format!("n{n}"), params: None }
    }

    async fn next(slot: &CallSlot) -> CallEvent {
        std::future::poll_fn(|cx| slot.poll_next(cx)).await
    }

    #[tokio::test]
    async fn messages_come_in_order_before_the_answer() {
        let slot = CallSlot::default();
        slot.deliver(note(1)).await.unwrap();
        slot.deliver(note(2)).await.unwrap();
        slot.answer(Ok(RawValue::from_string("{}".into()).unwrap()));
        slot.answer(Err(ClientError::Cancelled));
        for expected in ["n1", "n2"] {
            match next(&slot).await {
                CallEvent::Incoming(m) => assert_eq!(m.method(), expected),
                other => panic!("expected {expected}, got {other:?}"),
            }
        }
        assert!(matches!(next(&slot).await, CallEvent::Done(Ok(raw)) if raw.get() == "{}"), "the first answer counts");
    }

    /// A slot holding as many messages as it takes, and a link trying to deliver one more.
    async fn full_slot_and_a_waiting_link() -> (Arc<CallSlot>, tokio::task::JoinHandle<Result<(), Incoming>>) {
        let slot = Arc::new(CallSlot::default());
        for n in 0..EVENT_BUFFER {
            slot.deliver(note(n)).await.unwrap();
        }
        let waiting = tokio::spawn({
            let slot = slot.clone();
            async move { slot.deliver(note(EVENT_BUFFER)).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "a full slot took one more message");
        (slot, waiting)
    }

    #[tokio::test]
    async fn a_full_slot_makes_the_link_wait_until_a_message_is_taken() {
        let (slot, waiting) = full_slot_and_a_waiting_link().await;
        assert!(matches!(next(&slot).await, CallEvent::Incoming(m) if m.method() == "n0"));
        assert!(waiting.await.unwrap().is_ok(), "the waiting message was not taken once there was room");
    }

    #[tokio::test]
    async fn a_forgotten_call_gives_messages_back_and_frees_a_waiting_link() {
        let (slot, waiting) = full_slot_and_a_waiting_link().await;
        slot.forget();
        assert!(waiting.await.unwrap().is_err(), "the waiting message was not given back");
        assert!(slot.deliver(note(0)).await.is_err());
    }
}
