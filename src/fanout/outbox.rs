//! One connection's bounded outbound queue.
//!
//! Producers (the hub, the connection's own reader) push already-serialized
//! messages; the connection's writer takes everything waiting at once and
//! sends it as one frame. When the queue is full the connection is a slow
//! consumer: the queue is dropped and the connection closed with 4408, so it
//! never holds up anyone else. It reconnects and recovers by seq.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::Notify;

pub const CLOSE_SLOW_CONSUMER: u16 = 4408;

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Bytes>,
    /// Payload of a ping to answer: only the latest matters.
    pong: Option<Bytes>,
    /// A heartbeat ping is due.
    ping: bool,
    close: Option<(u16, &'static str)>,
}

/// Everything the writer has to do next, taken in one lock.
#[derive(Debug, Default)]
pub struct Drained {
    pub messages: VecDeque<Bytes>,
    pub pong: Option<Bytes>,
    pub ping: bool,
    pub close: Option<(u16, &'static str)>,
}

#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    notify: Notify,
    capacity: usize,
    /// Seconds (server clock) of the last frame read from the peer.
    last_seen: AtomicU64,
}

impl Outbox {
    pub fn new(capacity: usize, now_secs: u64) -> Self {
        Outbox {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            capacity: capacity.max(1),
            last_seen: AtomicU64::new(now_secs),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        // A poisoned lock only means another thread panicked mid-push; the
        // queue itself is still a valid VecDeque.
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// Queues one message. `false` when the connection is closing (or just
    /// overflowed and is now closing).
    pub fn push(&self, msg: Bytes) -> bool {
        let (accepted, wake) = self.with(|s| {
            if s.close.is_some() {
                return (false, false);
            }
            if s.queue.len() >= self.capacity {
                s.queue = VecDeque::new();
                s.close = Some((CLOSE_SLOW_CONSUMER, "slow consumer"));
                return (false, true);
            }
            s.queue.push_back(msg);
            (true, s.queue.len() == 1)
        });
        if wake {
            self.notify.notify_one();
        }
        accepted
    }

    pub fn pong(&self, payload: Bytes) {
        self.with(|s| s.pong = Some(payload));
        self.notify.notify_one();
    }

    pub fn ping(&self) {
        self.with(|s| s.ping = true);
        self.notify.notify_one();
    }

    /// Asks the writer to send a close frame and stop; the first reason wins.
    pub fn close(&self, code: u16, reason: &'static str) {
        self.with(|s| {
            if s.close.is_none() {
                s.close = Some((code, reason));
            }
        });
        self.notify.notify_one();
    }

    pub fn is_closing(&self) -> bool {
        self.with(|s| s.close.is_some())
    }

    /// Waits until there is something to do, then takes all of it.
    pub async fn next(&self) -> Drained {
        self.ready().await;
        self.take()
    }

    /// Waits until there is something to do, without taking it.
    pub async fn ready(&self) {
        loop {
            let busy = self
                .with(|s| !s.queue.is_empty() || s.pong.is_some() || s.ping || s.close.is_some());
            if busy {
                return;
            }
            self.notify.notified().await;
        }
    }

    /// Takes everything waiting now (possibly nothing).
    pub fn take(&self) -> Drained {
        self.with(|s| Drained {
            messages: std::mem::take(&mut s.queue),
            pong: s.pong.take(),
            ping: std::mem::take(&mut s.ping),
            close: s.close,
        })
    }

    pub fn touch(&self, now_secs: u64) {
        self.last_seen.store(now_secs, Ordering::Relaxed);
    }

    pub fn last_seen(&self) -> u64 {
        self.last_seen.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn overflow_closes_with_4408_and_drops_the_queue() {
        let o = Outbox::new(2, 0);
        assert!(o.push(Bytes::from_static(b"1")));
        assert!(o.push(Bytes::from_static(b"2")));
        assert!(!o.push(Bytes::from_static(b"3")));
        let d = o.next().await;
        assert!(d.messages.is_empty());
        assert_eq!(d.close, Some((CLOSE_SLOW_CONSUMER, "slow consumer")));
        assert!(!o.push(Bytes::from_static(b"4")));
    }

    #[tokio::test]
    async fn next_takes_everything_waiting_in_order() {
        let o = Outbox::new(10, 0);
        for m in ["a", "b", "c"] {
            o.push(Bytes::from(m));
        }
        o.ping();
        let d = o.next().await;
        assert_eq!(
            d.messages,
            vec![Bytes::from("a"), Bytes::from("b"), Bytes::from("c")]
        );
        assert!(d.ping && d.close.is_none());
    }
}
