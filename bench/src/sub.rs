//! One subscribed client for either target: connects, subscribes to one
//! image, then reads and verifies every event (seq continuity per image,
//! end-to-end latency from the timestamp in the broadcastId) until told to
//! stop or until it has seen the final seq of its image.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::stats::ConnStats;
use crate::util::{dial, now_us, us_at};
use crate::ws::{WsConn, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};

/// Events received by every subscriber of this process (for progress lines).
pub static DELIVERED: AtomicU64 = AtomicU64::new(0);

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const MAX_MISSING: usize = 100_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// imagechat: REST writes, /api/v1/ws with hello/subscribe
    Imagechat,
    /// the Socket.IO 4 peer in bench/socketio
    Socketio,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Imagechat => "imagechat",
            Target::Socketio => "socketio",
        }
    }
}

/// Sent to every subscriber: the last seq of each image once the writes are
/// over (a subscriber stops when it has it), or a plain stop.
#[derive(Clone, Default)]
pub struct Control {
    pub finals: Option<Arc<HashMap<String, u64>>>,
    pub stop: bool,
}

#[derive(Clone)]
pub struct Spec {
    pub target: Target,
    pub addr: SocketAddr,
    /// Session token (imagechat).
    pub token: Arc<str>,
    pub url_id: String,
    pub idx: usize,
    pub total: usize,
}

#[derive(Deserialize)]
struct Msg<'a> {
    #[serde(rename = "type", default, borrow)]
    ty: Option<&'a str>,
    #[serde(rename = "urlId", default, borrow)]
    url_id: Option<&'a str>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(rename = "broadcastId", default, borrow)]
    broadcast_id: Option<&'a str>,
    #[serde(default)]
    epoch: Option<String>,
    #[serde(default)]
    recovered: Option<bool>,
    #[serde(default)]
    code: Option<String>,
}

enum Out {
    Text(Vec<u8>),
    Pong(Vec<u8>),
}

/// What a resubscribe answered `recovered: false` leads to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum NotRecovered {
    /// The run fails: the scenario expects every resume to be recovered.
    Fail,
    /// The protocol's path (§12.2): events are buffered while the snapshot
    /// is read, then those the snapshot holds are dropped.
    Snapshot,
}

/// Everything but the socket, so frames can be handled while the socket's
/// buffer is borrowed.
struct State {
    target: Target,
    url_id: String,
    subscribed: bool,
    /// (epoch, seq) sent with the pending subscribe, when resuming.
    resuming: bool,
    /// The pending resubscribe sends no position (a page reload).
    forget: bool,
    not_recovered: NotRecovered,
    /// `recovered: false` arrived: events wait in `buffer` until the
    /// snapshot is read.
    loading: bool,
    buffer: Vec<u64>,
    /// The seq a `recovered: false` subscribe answered: events after it
    /// stream in whether or not the snapshot already holds them.
    subscribed_at: u64,
    /// Events the snapshot held that the socket had not delivered yet when
    /// it was read: each may still arrive once and is dropped then (§12.2),
    /// not counted as a duplicate.
    held_by_snapshot: BTreeSet<u64>,
    /// Close code of the server's close frame, when it sent one.
    closed_with: Option<u16>,
    epoch: Option<String>,
    last: u64,
    missing: BTreeSet<u64>,
    catch_up_to: Option<u64>,
    out: Vec<Out>,
    stats: ConnStats,
}

pub struct Subscriber {
    spec: Spec,
    ws: Option<WsConn>,
    st: State,
}

fn sent_at(bid: &str) -> Option<(bool, u64)> {
    let measured = match bid.as_bytes().first() {
        Some(b'm') => true,
        Some(b'w') => false,
        _ => return None,
    };
    let us = bid[1..].split('-').next()?.parse().ok()?;
    Some((measured, us))
}

impl State {
    /// A subscriber's state before its first `subscribed`.
    fn new(target: Target, url_id: String) -> State {
        State {
            target,
            url_id,
            subscribed: false,
            resuming: false,
            forget: false,
            not_recovered: NotRecovered::Fail,
            loading: false,
            buffer: Vec::new(),
            subscribed_at: 0,
            held_by_snapshot: BTreeSet::new(),
            closed_with: None,
            epoch: None,
            last: 0,
            missing: BTreeSet::new(),
            catch_up_to: None,
            out: Vec::new(),
            stats: ConnStats::default(),
        }
    }

    fn on_event(&mut self, url: Option<&str>, seq: Option<u64>, bid: Option<&str>, now: u64) {
        let (Some(url), Some(seq)) = (url, seq) else {
            self.stats.unexpected += 1;
            return;
        };
        if url != self.url_id || !self.subscribed {
            self.stats.unexpected += 1;
            return;
        }
        self.stats.events += 1;
        if self.loading {
            self.buffer.push(seq);
            return;
        }
        self.apply(seq, bid, now);
    }

    /// The snapshot of a `recovered: false` subscribe was read at `seq`:
    /// it becomes the position, buffered events it holds are dropped, and
    /// those the socket still owes are dropped when they come (§12.2).
    fn snapshot_read(&mut self, seq: u64, epoch: String, now: u64) {
        let buffered: BTreeSet<u64> = self.buffer.iter().copied().collect();
        self.held_by_snapshot.clear();
        let first = self.subscribed_at.max(self.last).saturating_add(1);
        for s in first..=seq {
            if self.held_by_snapshot.len() >= MAX_MISSING {
                break;
            }
            if !buffered.contains(&s) {
                self.held_by_snapshot.insert(s);
            }
        }
        self.last = self.last.max(seq);
        self.epoch = Some(epoch);
        self.loading = false;
        for s in std::mem::take(&mut self.buffer) {
            if s > self.last {
                // No latency: these waited for the snapshot.
                self.apply(s, None, now);
            }
        }
    }

    /// Checks one event's seq against the last one applied.
    fn apply(&mut self, seq: u64, bid: Option<&str>, now: u64) {
        if seq == self.last + 1 {
            self.last = seq;
        } else if seq > self.last + 1 {
            self.stats.lost += seq - self.last - 1;
            let reconnects = self.stats.reconnects;
            let e = format!(
                "gap: expected seq {} of {}, got {seq} (after {reconnects} reconnect(s))",
                self.last + 1,
                self.url_id
            );
            self.stats.error(e);
            let mut s = self.last + 1;
            while s < seq && self.missing.len() < MAX_MISSING {
                self.missing.insert(s);
                s += 1;
            }
            self.last = seq;
        } else if self.missing.remove(&seq) {
            self.stats.lost -= 1;
            self.stats.reordered += 1;
        } else if self.held_by_snapshot.remove(&seq) {
            // Delivered after the snapshot that holds it was read: dropped.
            return;
        } else {
            self.stats.duplicated += 1;
        }
        if let Some((true, t)) = bid.and_then(sent_at) {
            self.stats.measured += 1;
            // Events replayed after a resume waited for the client: not
            // the delivery latency.
            if self.catch_up_to.is_none_or(|to| seq > to) {
                self.stats.hist.record(now.saturating_sub(t));
            }
        }
        if let Some(t) = self.catch_up_to {
            if self.last >= t {
                self.stats.caught_up_us = Some(now);
                self.catch_up_to = None;
            }
        }
    }

    fn on_subscribed(
        &mut self,
        url: Option<&str>,
        seq: Option<u64>,
        epoch: Option<String>,
        recovered: Option<bool>,
        now: u64,
    ) -> Result<(), String> {
        if url != Some(self.url_id.as_str()) {
            return Err(format!("subscribed answer for another image: {url:?}"));
        }
        let seq = seq.ok_or("subscribed without seq")?;
        if self.resuming && recovered != Some(true) {
            self.stats.not_recovered += 1;
            if self.not_recovered == NotRecovered::Fail {
                return Err("resubscribe was not recovered from (epoch, seq)".into());
            }
            self.loading = true;
            self.buffer.clear();
            self.subscribed_at = seq;
            self.resuming = false;
        } else if self.resuming {
            self.stats.recovered += 1;
            if epoch.is_some() && epoch != self.epoch {
                return Err("the epoch changed on resubscribe".into());
            }
            if self.last >= seq {
                self.stats.caught_up_us = Some(now);
            } else {
                self.catch_up_to = Some(seq);
            }
            self.resuming = false;
        } else {
            self.last = seq;
            self.epoch = epoch;
        }
        self.subscribed = true;
        Ok(())
    }

    fn on_imagechat(&mut self, m: Msg<'_>, now: u64) -> Result<(), String> {
        match m.ty {
            Some("new-image-chat" | "image-chat-updated" | "deleted-image-chat") => {
                self.on_event(m.url_id, m.seq, m.broadcast_id, now)
            }
            Some("subscribed") => self.on_subscribed(m.url_id, m.seq, m.epoch, m.recovered, now)?,
            Some("welcome" | "presence" | "pong" | "unsubscribed") => {}
            Some("error") => {
                let code = m.code.unwrap_or_default();
                if code == "unauthorized" || code == "forbidden" || !self.subscribed {
                    return Err(format!("server error {code}"));
                }
                self.stats.error(format!("server error {code}"));
            }
            _ => self.stats.unexpected += 1,
        }
        Ok(())
    }

    fn subscribe_message(&self) -> Vec<u8> {
        match self.target {
            Target::Imagechat => {
                let mut m = serde_json::json!({"type": "subscribe", "id": 1, "urlId": self.url_id});
                if self.resuming && !self.forget {
                    m["epoch"] = serde_json::json!(self.epoch);
                    m["seq"] = serde_json::json!(self.last);
                }
                m.to_string().into_bytes()
            }
            Target::Socketio => {
                let arr = serde_json::json!(["subscribe", self.url_id]);
                format!("42{arr}").into_bytes()
            }
        }
    }

    fn on_socketio(&mut self, p: &[u8], now: u64) -> Result<(), String> {
        match p {
            b"2" => self.out.push(Out::Text(b"3".to_vec())),
            [b'0', ..] => self.out.push(Out::Text(b"40".to_vec())),
            [b'4', b'0', ..] => {
                let m = self.subscribe_message();
                self.out.push(Out::Text(m));
            }
            [b'4', b'2', rest @ ..] => {
                let (name, m): (&str, Msg<'_>) = serde_json::from_slice(rest)
                    .map_err(|e| format!("bad Socket.IO event: {e}"))?;
                match name {
                    "new-image-chat" | "image-chat-updated" | "deleted-image-chat" => {
                        self.on_event(m.url_id, m.seq, m.broadcast_id, now)
                    }
                    "subscribed" => self.on_subscribed(m.url_id, m.seq, None, Some(true), now)?,
                    _ => self.stats.unexpected += 1,
                }
            }
            [b'4', b'1', ..] | [b'1', ..] => return Err("Socket.IO server disconnected us".into()),
            [b'4', b'4', ..] => {
                return Err(format!(
                    "Socket.IO connect error: {}",
                    String::from_utf8_lossy(p)
                ))
            }
            _ => self.stats.unexpected += 1,
        }
        Ok(())
    }

    fn on_text(&mut self, p: &[u8], wire: usize, now: u64) -> Result<(), String> {
        let ev0 = self.stats.events;
        let m0 = self.stats.measured;
        match self.target {
            Target::Imagechat => {
                let first = p.iter().find(|b| !b.is_ascii_whitespace());
                if first == Some(&b'[') {
                    let v: Vec<Msg<'_>> =
                        serde_json::from_slice(p).map_err(|e| format!("bad frame: {e}"))?;
                    for m in v {
                        self.on_imagechat(m, now)?;
                    }
                } else {
                    let m: Msg<'_> =
                        serde_json::from_slice(p).map_err(|e| format!("bad frame: {e}"))?;
                    self.on_imagechat(m, now)?;
                }
            }
            Target::Socketio => self.on_socketio(p, now)?,
        }
        if self.stats.events > ev0 {
            self.stats.event_frames += 1;
            self.stats.event_bytes += wire as u64;
            DELIVERED.fetch_add(self.stats.events - ev0, Ordering::Relaxed);
        } else {
            self.stats.other_frames += 1;
        }
        if self.stats.measured > m0 {
            self.stats.measured_frames += 1;
            self.stats.measured_bytes += wire as u64;
        }
        Ok(())
    }
}

enum Wake {
    Read(std::io::Result<usize>),
    Control(bool),
    Drop,
    Deadline,
}

impl Subscriber {
    /// Connects and subscribes; returns once `subscribed` has arrived.
    pub async fn connect(spec: Spec) -> Result<Subscriber, String> {
        let st = State::new(spec.target, spec.url_id.clone());
        let mut s = Subscriber { spec, ws: None, st };
        s.open().await?;
        Ok(s)
    }

    async fn open(&mut self) -> Result<(), String> {
        match tokio::time::timeout(CONNECT_TIMEOUT, self.open_inner()).await {
            Ok(r) => r,
            Err(_) => Err("timed out connecting and subscribing".into()),
        }
    }

    async fn open_inner(&mut self) -> Result<(), String> {
        self.st.subscribed = false;
        let t0 = Instant::now();
        let tcp = dial(self.spec.addr, self.spec.idx, self.spec.total)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let t_tcp = t0.elapsed();
        let path = match self.spec.target {
            Target::Imagechat => "/api/v1/ws",
            Target::Socketio => "/socket.io/?EIO=4&transport=websocket",
        };
        let mut ws = WsConn::handshake(tcp, self.spec.addr, path, self.spec.idx as u64)
            .await
            .map_err(|e| format!("upgrade: {e}"))?;
        let t_up = t0.elapsed();
        if self.spec.target == Target::Imagechat {
            let hello = serde_json::json!({"type": "hello", "token": &*self.spec.token});
            ws.send_text(hello.to_string().as_bytes())
                .await
                .map_err(|e| format!("send hello: {e}"))?;
            ws.send_text(&self.st.subscribe_message())
                .await
                .map_err(|e| format!("send subscribe: {e}"))?;
        }
        self.ws = Some(ws);
        while !self.st.subscribed {
            self.drain().await?;
            if self.st.subscribed {
                break;
            }
            let ws = self.ws.as_mut().ok_or("not connected")?;
            match ws.fill().await {
                Ok(0) => return Err("closed before subscribed".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        if std::env::var_os("IMAGECHAT_BENCH_SLOW_CONNECTS").is_some()
            && t0.elapsed() > Duration::from_millis(200)
        {
            eprintln!(
                "slow connect #{}: tcp {:?}, upgraded {:?}, subscribed {:?}",
                self.spec.idx,
                t_tcp,
                t_up,
                t0.elapsed()
            );
        }
        Ok(())
    }

    /// Handles every complete frame in the buffer, then sends any answers.
    pub async fn drain(&mut self) -> Result<(), String> {
        let ws = self.ws.as_mut().ok_or("not connected")?;
        let now = now_us();
        loop {
            let f = match ws.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return Err(e.to_string()),
            };
            match f.opcode {
                OP_TEXT => self.st.on_text(ws.payload(&f), f.wire, now)?,
                OP_PING => self.st.out.push(Out::Pong(ws.payload(&f).to_vec())),
                OP_PONG => {}
                OP_CLOSE => {
                    let p = ws.payload(&f);
                    let code = if p.len() >= 2 {
                        u16::from_be_bytes([p[0], p[1]])
                    } else {
                        1005
                    };
                    self.st.closed_with = Some(code);
                    return Err(format!("server closed the WebSocket with {code}"));
                }
                OP_BINARY => self.st.stats.unexpected += 1,
                _ => return Err(format!("unknown opcode {}", f.opcode)),
            }
            ws.consume(&f);
        }
        for o in self.st.out.drain(..) {
            let r = match o {
                Out::Text(t) => ws.send_text(&t).await,
                Out::Pong(p) => ws.send(crate::ws::OP_PONG, &p).await,
            };
            r.map_err(|e| format!("send: {e}"))?;
        }
        Ok(())
    }

    pub fn done(&self, c: &Control) -> bool {
        if c.stop {
            return true;
        }
        match &c.finals {
            Some(f) => self.st.last >= f.get(&self.st.url_id).copied().unwrap_or(0),
            None => false,
        }
    }

    /// Reads until `ctl` says stop, or the image's final seq is reached, or
    /// `deadline`. With `drop_at`, the connection is dropped at that instant
    /// and resumed from (epoch, seq) on a new one.
    pub async fn run(
        mut self,
        mut ctl: watch::Receiver<Control>,
        mut drop_at: Option<Instant>,
        deadline: Instant,
    ) -> ConnStats {
        loop {
            if let Err(e) = self.drain().await {
                self.st.stats.error(e);
                break;
            }
            if self.done(&ctl.borrow()) {
                break;
            }
            let Some(ws) = self.ws.as_mut() else { break };
            let wake = tokio::select! {
                r = ws.fill() => Wake::Read(r),
                c = ctl.changed() => Wake::Control(c.is_ok()),
                _ = tokio::time::sleep_until(drop_at.unwrap_or(deadline).into()), if drop_at.is_some() => Wake::Drop,
                _ = tokio::time::sleep_until(deadline.into()) => Wake::Deadline,
            };
            match wake {
                Wake::Read(Ok(0)) => {
                    self.st.stats.error("the server closed the connection");
                    break;
                }
                Wake::Read(Ok(_)) => {}
                Wake::Read(Err(e)) => {
                    self.st.stats.error(format!("read: {e}"));
                    break;
                }
                Wake::Control(true) => {}
                Wake::Control(false) => break,
                Wake::Drop => {
                    drop_at = None;
                    // An abrupt drop: no close frame, the socket just goes away.
                    self.ws = None;
                    self.st.stats.reconnects += 1;
                    self.st.resuming = true;
                    self.st.catch_up_to = None;
                    if let Err(e) = self.open().await {
                        self.st.stats.error(format!("reconnect: {e}"));
                        break;
                    }
                }
                Wake::Deadline => break,
            }
        }
        let c = ctl.borrow().clone();
        if let Some(f) = &c.finals {
            let fin = f.get(&self.st.url_id).copied().unwrap_or(0);
            if self.st.last < fin {
                self.st.stats.lost += fin - self.st.last;
                self.st.stats.short += 1;
                let (idx, last) = (self.spec.idx, self.st.last);
                self.st.stats.error(format!(
                    "subscriber #{idx} stopped at seq {last} of {fin}: the rest never arrived"
                ));
            }
        }
        if let Some(t) = self.st.catch_up_to {
            self.st
                .stats
                .error(format!("never caught up to seq {t} (at {})", self.st.last));
        }
        if let Some(mut ws) = self.ws.take() {
            if !c.stop {
                ws.close().await;
            }
        }
        self.st.stats
    }
}

/// What the soak needs: a subscriber that moves between nodes, is told when
/// to drop, and follows the snapshot path when a resume is not recovered.
impl Subscriber {
    /// A resubscribe answered `recovered: false` reads the snapshot and
    /// continues from its seq, instead of failing.
    pub fn snapshot_when_not_recovered(&mut self) {
        self.st.not_recovered = NotRecovered::Snapshot;
    }

    pub fn url_id(&self) -> &str {
        &self.st.url_id
    }

    /// The connection's number among those of the run.
    pub fn idx(&self) -> usize {
        self.spec.idx
    }

    /// The seq of the last event applied.
    pub fn last(&self) -> u64 {
        self.st.last
    }

    pub fn stats_mut(&mut self) -> &mut ConnStats {
        &mut self.st.stats
    }

    pub fn into_stats(self) -> ConnStats {
        self.st.stats
    }

    pub fn is_connected(&self) -> bool {
        self.ws.is_some()
    }

    /// Reads more bytes (cancel-safe); `Ok(0)` at EOF.
    pub async fn read(&mut self) -> std::io::Result<usize> {
        match self.ws.as_mut() {
            Some(ws) => ws.fill().await,
            None => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }

    /// The code of the close frame the server sent, if it sent one (once).
    pub fn take_close_code(&mut self) -> Option<u16> {
        self.st.closed_with.take()
    }

    /// Drops the socket abruptly: no close frame, it just goes away.
    pub fn disconnect(&mut self) {
        self.ws = None;
    }

    /// Connects to `addr` and subscribes again, with the (epoch, seq) last
    /// applied, or with no position when `forget` (a page reload). Answered
    /// `recovered: false`, it reads the snapshot and continues from its seq
    /// (see [`Subscriber::snapshot_when_not_recovered`]). Returns whether
    /// the resume was recovered. On error the subscriber is disconnected
    /// and may try again.
    pub async fn resume(&mut self, addr: SocketAddr, forget: bool) -> Result<bool, String> {
        self.ws = None;
        self.spec.addr = addr;
        self.st.resuming = true;
        self.st.forget = forget;
        self.st.loading = false;
        self.st.buffer.clear();
        // What the old socket still owed is not coming: forget it.
        self.st.held_by_snapshot.clear();
        self.st.catch_up_to = None;
        self.st.closed_with = None;
        let r = self.open().await;
        self.st.forget = false;
        if let Err(e) = r {
            self.ws = None;
            self.st.resuming = true;
            return Err(e);
        }
        if !self.st.loading {
            self.st.stats.reconnects += 1;
            return Ok(true);
        }
        if let Err(e) = self.load_snapshot().await {
            self.ws = None;
            self.st.resuming = true;
            return Err(e);
        }
        self.st.stats.reconnects += 1;
        Ok(false)
    }

    /// §12.2, `recovered: false`: the snapshot's seq replaces the position,
    /// and of the events buffered meanwhile those it holds are dropped.
    async fn load_snapshot(&mut self) -> Result<(), String> {
        #[derive(Deserialize)]
        struct Snapshot {
            epoch: String,
            seq: u64,
        }
        let path = format!("/api/v1/chats?urlId={}", percent_encode(&self.st.url_id));
        let answer = tokio::time::timeout(
            CONNECT_TIMEOUT,
            crate::http::once(self.spec.addr, "GET", &path, Some(&self.spec.token), None),
        )
        .await
        .map_err(|_| "snapshot: no answer within 15 s".to_string())?
        .map_err(|e| format!("snapshot: {e}"))?;
        if answer.status != 200 {
            return Err(format!("snapshot answered {}", answer.status));
        }
        let snap: Snapshot = serde_json::from_slice(&answer.body)
            .map_err(|e| format!("snapshot without epoch and seq: {e}"))?;
        if snap.seq < self.st.last {
            let e = format!(
                "the snapshot of {} is at seq {} but events up to {} had arrived",
                self.st.url_id, snap.seq, self.st.last
            );
            self.st.stats.error(e);
        }
        self.st.snapshot_read(snap.seq, snap.epoch, now_us());
        Ok(())
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// For callers that time things against the same origin as the subscribers.
pub fn instant_us(t: Instant) -> u64 {
    us_at(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        let mut st = State::new(Target::Imagechat, "u".into());
        st.subscribed = true;
        st.not_recovered = NotRecovered::Snapshot;
        st.loading = true;
        st
    }

    #[test]
    fn events_the_snapshot_holds_are_dropped_once_wherever_they_arrive() {
        let mut st = state();
        // Subscribed (not recovered) at 5; event 6 arrives while the
        // snapshot is read, which is at 8; 7 and 8 arrive after it.
        st.subscribed_at = 5;
        st.on_event(Some("u"), Some(6), None, 0);
        st.snapshot_read(8, "e".into(), 0);
        for seq in [7, 8, 9] {
            st.on_event(Some("u"), Some(seq), None, 0);
        }
        assert_eq!((st.stats.duplicated, st.stats.lost, st.last), (0, 0, 9));
        // A second copy of one of them is a duplicate.
        st.on_event(Some("u"), Some(8), None, 0);
        assert_eq!(st.stats.duplicated, 1);
    }
}
