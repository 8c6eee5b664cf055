//! What the hub hands its subscribers, and how often: a [`Batch`] of an
//! image's messages for every [`Subscriber`], paced by a [`Pacer`].

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes};

/// Messages of one image, in order, sent to its viewers as one unit and
/// shared by all of them. A transport encodes it once ([`Batch::encoded`]):
/// the first viewer that needs the bytes makes them, the others share them.
pub struct Batch {
    messages: Vec<Bytes>,
    encoded: OnceLock<Bytes>,
}

impl Batch {
    /// `messages`: at least one, each a JSON object.
    pub fn new(messages: Vec<Bytes>) -> Batch {
        Batch {
            messages,
            encoded: OnceLock::new(),
        }
    }

    pub fn messages(&self) -> &[Bytes] {
        &self.messages
    }

    /// Length of the JSON text [`Batch::write_payload`] writes.
    pub fn payload_len(&self) -> usize {
        match self.messages.as_slice() {
            [one] => one.len(),
            many => 1 + many.iter().map(|m| m.len() + 1).sum::<usize>(),
        }
    }

    /// The JSON text: the message itself when alone, else a JSON array of
    /// them (protocol §7: clients accept both).
    pub fn write_payload(&self, buf: &mut impl BufMut) {
        match self.messages.as_slice() {
            [one] => buf.put_slice(one),
            many => {
                buf.put_u8(b'[');
                for (i, m) in many.iter().enumerate() {
                    if i > 0 {
                        buf.put_u8(b',');
                    }
                    buf.put_slice(m);
                }
                buf.put_u8(b']');
            }
        }
    }

    /// The transport's encoding of this batch, made by `encode` the first
    /// time it is asked for.
    pub fn encoded(&self, encode: impl FnOnce(&Batch) -> Bytes) -> &Bytes {
        self.encoded.get_or_init(|| encode(self))
    }
}

/// One viewer of an image, as the hub sees it. Neither call may block: a
/// subscriber that cannot keep up drops itself (and recovers by seq).
pub trait Subscriber: Send + Sync {
    /// A message for this subscriber only (`subscribed`).
    fn send(&self, msg: &[u8]);
    /// A batch shared with the image's other viewers.
    fn deliver(&self, batch: &Batch);
}

/// Sends an image may save up: two events close together on a quiet image
/// both go out at once.
const SEND_BURST: f64 = 2.0;

/// One image's send credit: one send earned per batch window, at most
/// `SEND_BURST` saved.
#[derive(Default)]
pub(super) struct Pacer {
    credit: f64,
    at: Option<Instant>,
}

impl Pacer {
    pub(super) fn refill(&mut self, now: Instant, window: Duration) {
        self.credit = match self.at {
            Some(at) if !window.is_zero() => (self.credit
                + now.duration_since(at).as_secs_f64() / window.as_secs_f64())
            .min(SEND_BURST),
            _ => SEND_BURST,
        };
        self.at = Some(now);
    }

    /// When the next send may go: now, or once a whole send is earned.
    pub(super) fn due(&self, now: Instant, window: Duration) -> Instant {
        if self.credit >= 1.0 {
            now
        } else {
            now + window.mul_f64(1.0 - self.credit)
        }
    }

    pub(super) fn spend(&mut self) {
        self.credit = (self.credit - 1.0).max(0.0);
    }
}
