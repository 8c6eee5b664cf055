//! One connection's bounded outbound queue of encoded WebSocket frames: the
//! hub's [`Subscriber`] for a WebSocket connection.
//!
//! Producers push complete frames: the hub one shared batch per image to
//! every viewer (framed once, by the first viewer that needs it, and shared),
//! the connection's reader its replies. On a plain TCP
//! connection a push writes straight to the socket when nothing waits before
//! it, so a delivery costs one non-blocking `write` and wakes no task. What
//! the socket does not take at once waits here, in order, and the
//! connection's writer task sends it when the socket is writable again. On
//! other transports (TLS) the writer task sends everything.
//!
//! When the queue is full the connection is a slow consumer: the queue is
//! dropped (all but a frame already half sent) and the connection closed with
//! 4408, so it never holds up anyone else. It reconnects and recovers by seq.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Buf, BufMut, Bytes};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;

use crate::app::Connection;
use crate::fanout::{Batch, Subscriber};
use crate::protocol::CloseCode;
use crate::ws::frame::{self, OP_PING, OP_PONG, OP_TEXT};

/// Counts what a connection delivered. Given by the connection's owner, so
/// the queue knows nothing of metering.
pub trait Meter: Send + Sync {
    /// `messages` delivered in frames of `bytes` payload bytes in all.
    fn delivered(&self, messages: u64, bytes: u64);
}

/// Frames handed to one vectored write.
const WRITE_SLICES: usize = 64;

/// A socket a push may write to directly.
pub type Socket = Arc<OwnedWriteHalf>;

/// One encoded WebSocket frame and the messages it carries (for metering).
#[derive(Debug, Clone)]
pub struct Frame {
    bytes: Bytes,
    messages: u32,
    payload: u32,
}

impl Frame {
    /// A text frame holding one message.
    pub fn message(msg: &[u8]) -> Frame {
        Frame::text(msg.len(), 1, |b| b.put_slice(msg))
    }

    /// The text frame of a hub batch, encoded once for all its viewers.
    pub fn batch(batch: &Batch) -> Frame {
        let len = batch.payload_len();
        let bytes =
            batch.encoded(|b| frame::encode(OP_TEXT, len, |buf| b.write_payload(buf)).into());
        Frame {
            bytes: bytes.clone(),
            messages: batch.messages().len().min(u32::MAX as usize) as u32,
            payload: len.min(u32::MAX as usize) as u32,
        }
    }

    fn text(len: usize, messages: u32, body: impl FnOnce(&mut Vec<u8>)) -> Frame {
        Frame {
            bytes: frame::encode(OP_TEXT, len, body).into(),
            messages,
            payload: len.min(u32::MAX as usize) as u32,
        }
    }

    /// Control frames carry no messages and are not metered.
    fn control(op: u8, payload: &[u8]) -> Frame {
        let p = &payload[..payload.len().min(125)];
        Frame::unmetered(frame::encode(op, p.len(), |b| b.put_slice(p)))
    }

    fn close(code: CloseCode, reason: &str) -> Frame {
        Frame::unmetered(frame::encode_close(code.into(), reason))
    }

    fn unmetered(bytes: Vec<u8>) -> Frame {
        Frame {
            bytes: bytes.into(),
            messages: 0,
            payload: 0,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// Frames not yet (wholly) written, in order.
    queue: VecDeque<Bytes>,
    /// The front frame is partly written: it must not be dropped.
    front_started: bool,
    /// Set once: nothing more is accepted; the writer sends what is queued
    /// (the close frame last) and stops.
    close: Option<(CloseCode, &'static str)>,
    /// `Some` while pushes may write to the socket themselves.
    socket: Option<Socket>,
}

/// What the writer should do after sending what it could.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Everything is written: wait for more.
    Idle,
    /// The socket is full: wait until it is writable.
    Blocked,
    /// Everything is written and the connection is closing with this code.
    Done(CloseCode),
    /// The socket failed.
    Failed,
}

/// Everything waiting, taken at once by a writer that writes itself.
#[derive(Debug, Default)]
pub struct Drained {
    pub frames: VecDeque<Bytes>,
    pub close: Option<(CloseCode, &'static str)>,
}

pub struct Outbox {
    state: Mutex<State>,
    notify: Notify,
    capacity: usize,
    meter: Option<Arc<dyn Meter>>,
    /// Seconds (server clock) of the last frame read from the peer.
    last_seen: AtomicU64,
}

impl Outbox {
    /// `capacity` frames may wait; with `socket`, pushes write directly.
    pub fn new(
        capacity: usize,
        now_secs: u64,
        socket: Option<Socket>,
        meter: Option<Arc<dyn Meter>>,
    ) -> Self {
        Outbox {
            state: Mutex::new(State {
                socket,
                ..State::default()
            }),
            notify: Notify::new(),
            capacity: capacity.max(1),
            meter,
            last_seen: AtomicU64::new(now_secs),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        // A poisoned lock only means another thread panicked mid-push; the
        // queue itself is still valid.
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// Queues (or writes) one message as a frame of its own.
    pub fn push(&self, msg: &[u8]) -> bool {
        self.push_frame(&Frame::message(msg))
    }

    /// Queues (or writes) one frame. `false` when the connection is closing
    /// (or just overflowed and is now closing).
    pub fn push_frame(&self, frame: &Frame) -> bool {
        let (accepted, wake) = self.with(|s| {
            if s.close.is_some() {
                return (false, false);
            }
            if s.queue.is_empty() {
                if let Some(sock) = &s.socket {
                    match sock.try_write(&frame.bytes) {
                        Ok(n) if n == frame.bytes.len() => return (true, false),
                        Ok(n) => {
                            s.queue.push_back(frame.bytes.slice(n..));
                            s.front_started = n > 0;
                            return (true, true);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(_) => {
                            s.close = Some((CloseCode::Silent, ""));
                            s.socket = None;
                            return (false, true);
                        }
                    }
                }
            } else if s.queue.len() >= self.capacity {
                let started = s.front_started.then(|| s.queue.pop_front()).flatten();
                s.queue = started.into_iter().collect();
                s.queue
                    .push_back(Frame::close(CloseCode::SlowConsumer, "slow consumer").bytes);
                s.close = Some((CloseCode::SlowConsumer, "slow consumer"));
                return (false, true);
            }
            s.queue.push_back(frame.bytes.clone());
            (true, s.queue.len() == 1)
        });
        if accepted && frame.messages > 0 {
            if let Some(meter) = &self.meter {
                meter.delivered(u64::from(frame.messages), u64::from(frame.payload));
            }
        }
        if wake {
            self.notify.notify_one();
        }
        accepted
    }

    pub fn pong(&self, payload: &[u8]) {
        self.push_frame(&Frame::control(OP_PONG, payload));
    }

    pub fn ping(&self) {
        self.push_frame(&Frame::control(OP_PING, b""));
    }

    /// Asks the writer to send what is queued, then a close frame, and stop;
    /// the first reason wins. `CloseCode::Silent` drops the queue and sends
    /// nothing.
    pub fn close(&self, code: CloseCode, reason: &'static str) {
        self.with(|s| {
            if s.close.is_some() {
                return;
            }
            s.close = Some((code, reason));
            if code == CloseCode::Silent {
                s.queue.clear();
                s.socket = None;
            } else {
                s.queue.push_back(Frame::close(code, reason).bytes);
            }
        });
        self.notify.notify_one();
    }

    /// Waits until there is something to write or the connection closes.
    pub async fn ready(&self) {
        loop {
            if self.with(|s| !s.queue.is_empty() || s.close.is_some()) {
                return;
            }
            self.notify.notified().await;
        }
    }

    /// For a direct connection's writer: writes what the socket takes now.
    pub fn send_waiting(&self) -> Step {
        self.with(|s| {
            let Some(sock) = s.socket.clone() else {
                return match s.close {
                    Some((code, _)) => Step::Done(code),
                    None => Step::Failed,
                };
            };
            match write_queue(&sock, s) {
                Ok(true) => match s.close {
                    Some((code, _)) => {
                        s.socket = None;
                        Step::Done(code)
                    }
                    None => Step::Idle,
                },
                Ok(false) => Step::Blocked,
                Err(_) => {
                    s.queue.clear();
                    s.socket = None;
                    s.close.get_or_insert((CloseCode::Silent, ""));
                    Step::Failed
                }
            }
        })
    }

    /// The socket a direct connection's writer waits on.
    pub fn socket(&self) -> Option<Socket> {
        self.with(|s| s.socket.clone())
    }

    /// Gives up on the socket (it stalled or the connection ended).
    pub fn abandon(&self) {
        self.with(|s| {
            s.queue.clear();
            s.socket = None;
            s.close.get_or_insert((CloseCode::Silent, ""));
        });
    }

    /// For a writer that writes itself: takes everything waiting now.
    pub fn take(&self) -> Drained {
        self.with(|s| Drained {
            frames: std::mem::take(&mut s.queue),
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

impl Subscriber for Outbox {
    fn send(&self, msg: &[u8]) {
        self.push(msg);
    }
    fn deliver(&self, batch: &Batch) {
        self.push_frame(&Frame::batch(batch));
    }
}

impl Connection for Outbox {
    fn close(&self, code: CloseCode, reason: &'static str) {
        Outbox::close(self, code, reason);
    }
    fn ping(&self) {
        Outbox::ping(self);
    }
    fn last_seen(&self) -> u64 {
        Outbox::last_seen(self)
    }
}

/// Writes queued frames until the queue is empty (`true`) or the socket is
/// full (`false`).
fn write_queue(sock: &OwnedWriteHalf, s: &mut State) -> io::Result<bool> {
    while !s.queue.is_empty() {
        let mut slices = [IoSlice::new(&[]); WRITE_SLICES];
        let mut n = 0;
        for (slot, f) in slices.iter_mut().zip(s.queue.iter()) {
            *slot = IoSlice::new(f);
            n += 1;
        }
        let mut written = match sock.try_write_vectored(&slices[..n]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(w) => w,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        };
        while let Some(front) = s.queue.front_mut() {
            if written < front.len() {
                front.advance(written);
                s.front_started = written > 0 || s.front_started;
                break;
            }
            written -= front.len();
            s.queue.pop_front();
            s.front_started = false;
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(d: &Drained) -> Vec<Bytes> {
        d.frames.iter().cloned().collect()
    }

    #[tokio::test]
    async fn overflow_closes_with_4408_and_drops_the_queue() {
        let o = Outbox::new(2, 0, None, None);
        assert!(o.push(b"1"));
        assert!(o.push(b"2"));
        assert!(!o.push(b"3"));
        o.ready().await;
        let d = o.take();
        assert_eq!(
            frames(&d),
            vec![Frame::close(CloseCode::SlowConsumer, "slow consumer").bytes]
        );
        assert_eq!(d.close, Some((CloseCode::SlowConsumer, "slow consumer")));
        assert!(!o.push(b"4"));
    }

    #[tokio::test]
    async fn frames_wait_in_order_and_close_comes_last() {
        let o = Outbox::new(10, 0, None, None);
        for m in ["a", "b", "c"] {
            o.push(m.as_bytes());
        }
        o.ping();
        o.close(CloseCode::Normal, "bye");
        assert!(!o.push(b"late"));
        o.ready().await;
        let d = o.take();
        assert_eq!(
            frames(&d),
            vec![
                Frame::message(b"a").bytes,
                Frame::message(b"b").bytes,
                Frame::message(b"c").bytes,
                Frame::control(OP_PING, b"").bytes,
                Frame::close(CloseCode::Normal, "bye").bytes,
            ]
        );
    }

    #[test]
    fn a_batch_is_a_json_array_in_one_frame() {
        let f = Frame::batch(&Batch::new(vec![
            Bytes::from("{\"a\":1}"),
            Bytes::from("{\"b\":2}"),
        ]));
        assert_eq!(&f.bytes[2..], b"[{\"a\":1},{\"b\":2}]");
        assert_eq!((f.messages, f.payload), (2, 17));
        assert_eq!(f.bytes[..2], [0x81, 17]);
        let one = Frame::batch(&Batch::new(vec![Bytes::from("{}")]));
        assert_eq!(&one.bytes[..], b"\x81\x02{}");
    }

    /// A direct socket that stops taking bytes keeps every frame whole: what
    /// was half written is finished before anything else.
    #[tokio::test]
    async fn a_full_socket_keeps_frames_whole_and_in_order() {
        use tokio::io::AsyncReadExt;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (client, server) = tokio::join!(tokio::net::TcpStream::connect(addr), l.accept());
        let mut client = client.unwrap();
        let (_rd, wr) = server.unwrap().0.into_split();
        let o = Outbox::new(100_000, 0, Some(Arc::new(wr)), None);
        let big = vec![b'x'; 60_000];
        let mut pushed = 0;
        while o.with(|s| s.queue.len()) < 3 {
            assert!(o.push(&big));
            pushed += 1;
        }
        o.close(CloseCode::Normal, "");
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            client.read_to_end(&mut all).await.unwrap();
            all
        });
        loop {
            match o.send_waiting() {
                Step::Idle => o.ready().await,
                Step::Blocked => {
                    let s = o.socket().unwrap();
                    s.writable().await.unwrap();
                }
                Step::Done(code) => {
                    assert_eq!(code, CloseCode::Normal);
                    break;
                }
                Step::Failed => panic!("the socket failed"),
            }
        }
        drop(o);
        let all = reader.await.unwrap();
        let one = Frame::message(&big).bytes;
        let close = Frame::close(CloseCode::Normal, "").bytes;
        assert_eq!(all.len(), pushed * one.len() + close.len());
        for i in 0..pushed {
            assert_eq!(&all[i * one.len()..(i + 1) * one.len()], &one[..]);
        }
        assert_eq!(&all[pushed * one.len()..], &close[..]);
    }
}
