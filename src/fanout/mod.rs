//! The hub: which connection listens to which image, and the delivery of each
//! image's events to them exactly once, in seq order, without gaps.
//!
//! Events reach the hub from the broker (publish order is not commit order,
//! and a broker may drop messages). Per image the hub remembers the last seq it
//! delivered: an event right after it is delivered at once, a later one waits
//! in a small reorder buffer while a gap fill fetches the missing seqs from the
//! store. Subscribing happens under the same per-image lock, so a subscriber's
//! catch-up from the log and the live events it receives join without a seam.
//!
//! Batching is per image, paced by a small credit: an image earns one send
//! per batch window and may save up two. An event goes out at once while
//! the image has credit; otherwise it waits until the image earns a send and
//! goes out with the others that arrived meanwhile, as one frame encoded
//! once and shared by every viewer. So a busy image costs each viewer one
//! write per window whatever its write rate, while a quiet one (even one
//! whose events come in pairs) adds no delay.
//!
//! The hub knows no sockets and no framing: it hands each [`Batch`] to
//! every viewer's [`Subscriber`] (for a WebSocket, its bounded outbox, which
//! encodes the batch once for all viewers and never blocks the hub).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;

use crate::broker::{Broker, ImageKey, Inbound};
use crate::domain::Seq;
use crate::protocol::ServerMessage;
use crate::store::{Store, StoreError};

mod batch;
#[cfg(test)]
mod tests;

use batch::Pacer;
pub use batch::{Batch, Subscriber};

/// A connection's id, unique within this process.
pub type ConnId = u64;

/// Most events a resubscribe replays; beyond it a snapshot is cheaper.
pub const MAX_REPLAY: u64 = 1000;

/// How long an image must be quiet after a write before the hub checks its
/// log head: long enough that the write's own event has arrived.
const QUIET: Duration = Duration::from_secs(1);
/// Most quiet images checked against the log per tick; the rest wait for
/// the next one.
const QUIET_CHECKS_PER_TICK: usize = 256;

/// Events one image's inbox may hold while its state is locked. Beyond it
/// an event is dropped and the image is checked against the log once it is
/// quiet (as for an event the broker lost), so nothing is lost, only late.
const MAX_INBOX: usize = 65_536;
/// Images checked against the log at once after a broker reconnect.
const RESYNC_CONCURRENCY: usize = 16;

/// Out-of-order events one image may hold while its gap is filled. Beyond it
/// they are dropped and the gap fill fetches them from the store instead.
const MAX_PENDING: usize = 4096;
/// Most messages one batch frame carries; a full batch is sent at once.
const MAX_BATCH: usize = 256;
/// Most events one replay frame carries.
const REPLAY_CHUNK: usize = 64;

struct Sub {
    conn: ConnId,
    out: Arc<dyn Subscriber>,
}

#[derive(Default)]
struct TopicState {
    /// `delivered` was read from the store and the broker subscribed.
    ready: bool,
    /// Removed from the map: a subscriber holding a stale `Arc` must retry.
    dead: bool,
    delivered: Seq,
    subs: Vec<Sub>,
    pending: BTreeMap<Seq, Bytes>,
    gap_fill_running: bool,
    /// The viewer count last sent to this node's subscribers.
    last_viewers: Option<usize>,
    /// Messages accepted in order but not yet sent (the batch window runs).
    batch: Vec<Bytes>,
    /// How soon the image may send again.
    pacer: Pacer,
    /// A task will send the batch when the image has earned a send.
    send_scheduled: bool,
}

struct Topic {
    key: ImageKey,
    /// Events waiting for the state lock; see `Hub::pump`.
    inbox: Mutex<VecDeque<(Seq, Bytes)>>,
    state: tokio::sync::Mutex<TopicState>,
}

/// How a subscription started.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscribed {
    pub seq: Seq,
    pub recovered: bool,
    pub viewers: usize,
}

pub struct Hub {
    topics: Mutex<HashMap<ImageKey, Arc<Topic>>>,
    /// Topics whose viewer count on this node changed since the last tick.
    presence_dirty: Mutex<HashSet<ImageKey>>,
    /// Topics whose count changed on some node: recount at the next tick.
    presence_recount: Mutex<HashSet<ImageKey>>,
    /// Images written or delivered to lately, with when: once quiet for
    /// `QUIET`, each is checked against the log once (see `Hub::committed`).
    recent: Mutex<HashMap<ImageKey, Instant>>,
    store: Arc<dyn Store>,
    broker: Arc<Broker>,
    gap_wait: Duration,
    window: Duration,
    /// Records, per batch, the time from its first event's commit to now.
    latency: metrics::Histogram,
    /// Signed-in users' open connections on this node, by
    /// `tenant \n user id`, for messages of one user (contract §13).
    users: Mutex<HashMap<String, UserConns>>,
}

/// One user's connections on this node.
type UserConns = Vec<(ConnId, Arc<dyn Subscriber>)>;

fn user_key(tenant: &str, user_id: &str) -> String {
    format!("{tenant}\n{user_id}")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An image's state, locked. Events that reach the image while it is locked
/// wait in its inbox (see `Hub::pump`); unlocking moves them in, so however
/// the lock was taken, no event is left waiting for the next one.
struct StateGuard<'a> {
    guard: Option<tokio::sync::MutexGuard<'a, TopicState>>,
    hub: &'a Arc<Hub>,
    topic: &'a Arc<Topic>,
}

impl std::ops::Deref for StateGuard<'_> {
    type Target = TopicState;
    fn deref(&self) -> &TopicState {
        // Only `drop` takes the guard out.
        self.guard.as_deref().unwrap_or_else(|| unreachable!())
    }
}

impl std::ops::DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut TopicState {
        self.guard.as_deref_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        self.guard = None;
        self.hub.pump(self.topic);
    }
}

impl Hub {
    /// `window`: how long after a send an image's next events wait to be
    /// batched (zero: never).
    pub fn new(
        store: Arc<dyn Store>,
        broker: Arc<Broker>,
        gap_wait: Duration,
        window: Duration,
        latency: metrics::Histogram,
    ) -> Arc<Self> {
        Arc::new(Hub {
            topics: Mutex::new(HashMap::new()),
            presence_dirty: Mutex::new(HashSet::new()),
            presence_recount: Mutex::new(HashSet::new()),
            recent: Mutex::new(HashMap::new()),
            store,
            broker,
            gap_wait,
            window,
            latency,
            users: Mutex::new(HashMap::new()),
        })
    }

    /// Registers a connection of a signed-in user for [`Hub::tell_user`].
    pub fn add_user(&self, tenant: &str, user_id: &str, conn: ConnId, to: Arc<dyn Subscriber>) {
        lock(&self.users)
            .entry(user_key(tenant, user_id))
            .or_default()
            .push((conn, to));
    }

    pub fn remove_user(&self, tenant: &str, user_id: &str, conn: ConnId) {
        let mut users = lock(&self.users);
        let key = user_key(tenant, user_id);
        if let Some(list) = users.get_mut(&key) {
            list.retain(|(c, _)| *c != conn);
            if list.is_empty() {
                users.remove(&key);
            }
        }
    }

    /// Sends a message to every connection of a user on this node; how
    /// many.
    pub fn tell_user(&self, tenant: &str, user_id: &str, body: &[u8]) -> usize {
        let to: Vec<Arc<dyn Subscriber>> = lock(&self.users)
            .get(&user_key(tenant, user_id))
            .map(|l| l.iter().map(|(_, s)| Arc::clone(s)).collect())
            .unwrap_or_default();
        for s in &to {
            s.send(body);
        }
        to.len()
    }

    /// Number of images with at least one subscriber on this node.
    pub fn topic_count(&self) -> usize {
        lock(&self.topics).len()
    }

    /// Locks an image's state; see `StateGuard`.
    async fn lock_state<'a>(self: &'a Arc<Self>, topic: &'a Arc<Topic>) -> StateGuard<'a> {
        StateGuard {
            guard: Some(topic.state.lock().await),
            hub: self,
            topic,
        }
    }

    /// Consumes the broker's inbox until it closes.
    pub async fn run_inbox(self: Arc<Self>, mut inbox: tokio::sync::mpsc::Receiver<Inbound>) {
        while let Some(m) = inbox.recv().await {
            match m {
                Inbound::Event(m) => self.on_event(m.topic, m.seq, m.body),
                Inbound::Presence(key) => {
                    tracing::debug!(url_id = key.url_id(), "presence changed elsewhere");
                    lock(&self.presence_recount).insert(key);
                }
                Inbound::User(m) => {
                    self.tell_user(&m.tenant, &m.user_id, &m.body);
                }
                Inbound::Resync => {
                    // Above any bus: what this node failed to publish goes
                    // out again, and what it may have missed is read back.
                    self.broker.republish().await;
                    self.resync_all();
                }
            }
        }
    }

    /// Checks every subscribed image against the store and delivers what
    /// the broker lost.
    pub fn resync_all(self: &Arc<Self>) {
        let topics: Vec<Arc<Topic>> = lock(&self.topics).values().cloned().collect();
        let permits = Arc::new(tokio::sync::Semaphore::new(RESYNC_CONCURRENCY));
        for topic in topics {
            let (hub, permits) = (Arc::clone(self), Arc::clone(&permits));
            tokio::spawn(async move {
                // At most RESYNC_CONCURRENCY reads of the store at once.
                let Ok(_permit) = permits.acquire_owned().await else {
                    return;
                };
                hub.catch_up(topic).await
            });
        }
    }

    async fn catch_up(self: Arc<Self>, topic: Arc<Topic>) {
        {
            let mut st = self.lock_state(&topic).await;
            if !st.ready || st.dead {
                return;
            }
            let latest = match self.store.latest_seq(&topic.key).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "resync could not read the store");
                    return;
                }
            };
            if latest > st.delivered {
                let want = u32::try_from(latest.since(st.delivered)).unwrap_or(u32::MAX);
                match self
                    .store
                    .events_since(&topic.key, st.delivered, want)
                    .await
                {
                    Ok(events) => {
                        for e in events {
                            self.accept(&topic, &mut st, e.seq, e.body);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "resync could not read the log"),
                }
            }
        }
        self.pump(&topic);
    }

    /// Notes that a write through this node committed on an image.
    /// Should its event never arrive (a publish lost between commit and
    /// broker), the image's next quiet check reads it from the log; so does
    /// an event that is the last of a burst and lost by the broker.
    pub fn committed(&self, key: &ImageKey) {
        if lock(&self.topics).contains_key(key) {
            self.mark_recent(key);
        }
    }

    fn mark_recent(&self, key: &ImageKey) {
        let mut recent = lock(&self.recent);
        match recent.get_mut(key) {
            Some(at) => *at = Instant::now(),
            None => {
                recent.insert(key.clone(), Instant::now());
            }
        }
    }

    /// Checks the log head of every image that has been quiet for `QUIET`
    /// since its last write or event, and delivers what it missed.
    pub async fn check_quiet(self: &Arc<Self>) {
        let now = Instant::now();
        let due: Vec<ImageKey> = {
            let mut recent = lock(&self.recent);
            let due: Vec<ImageKey> = recent
                .iter()
                .filter(|(_, &at)| now.duration_since(at) >= QUIET)
                .map(|(k, _)| k.clone())
                .take(QUIET_CHECKS_PER_TICK)
                .collect();
            for k in &due {
                recent.remove(k);
            }
            due
        };
        for key in due {
            let topic = lock(&self.topics).get(&key).cloned();
            if let Some(topic) = topic {
                Arc::clone(self).catch_up(topic).await;
            }
        }
    }

    /// Takes one event from the broker.
    pub fn on_event(self: &Arc<Self>, key: ImageKey, seq: Seq, body: Bytes) {
        let Some(topic) = lock(&self.topics).get(&key).cloned() else {
            return;
        };
        {
            let mut inbox = lock(&topic.inbox);
            if inbox.len() >= MAX_INBOX {
                drop(inbox);
                tracing::warn!(
                    url_id = key.url_id(),
                    "an image's inbox is full; reading from the log instead"
                );
                self.mark_recent(&key);
                return;
            }
            inbox.push_back((seq, body));
        }
        self.pump(&topic);
    }

    /// Moves queued events into the ordered state if nobody holds its lock.
    /// Whoever releases the lock calls this again, so no event is stranded.
    fn pump(self: &Arc<Self>, topic: &Arc<Topic>) {
        loop {
            let Ok(mut st) = topic.state.try_lock() else {
                return;
            };
            if st.ready {
                let batch = std::mem::take(&mut *lock(&topic.inbox));
                for (seq, body) in batch {
                    self.accept(topic, &mut st, seq, body);
                }
            }
            drop(st);
            if lock(&topic.inbox).is_empty() {
                return;
            }
        }
    }

    fn accept(self: &Arc<Self>, topic: &Arc<Topic>, st: &mut TopicState, seq: Seq, body: Bytes) {
        if st.dead || seq <= st.delivered {
            return; // a duplicate, or already covered by a snapshot or gap fill
        }
        if seq == st.delivered.next() {
            self.mark_recent(&topic.key);
            self.deliver(topic, st, body);
            st.delivered = seq;
            while let Some(next) = st.pending.remove(&st.delivered.next()) {
                self.deliver(topic, st, next);
                st.delivered = st.delivered.next();
            }
            return;
        }
        if st.pending.len() < MAX_PENDING {
            st.pending.insert(seq, body);
        }
        if !st.gap_fill_running {
            st.gap_fill_running = true;
            let hub = Arc::clone(self);
            let topic = Arc::clone(topic);
            tokio::spawn(async move { hub.fill_gap(topic).await });
        }
    }

    /// Waits briefly for the missing events to arrive on their own, then
    /// reads them from the store. Delivery stays in order throughout.
    async fn fill_gap(self: Arc<Self>, topic: Arc<Topic>) {
        loop {
            tokio::time::sleep(self.gap_wait).await;
            let mut st = self.lock_state(&topic).await;
            let Some(&last) = st.pending.keys().next_back() else {
                st.gap_fill_running = false;
                break;
            };
            let from = st.delivered;
            let want = u32::try_from(last.since(from)).unwrap_or(u32::MAX);
            match self.store.events_since(&topic.key, from, want).await {
                Ok(events) => {
                    for e in events {
                        self.accept(&topic, &mut st, e.seq, e.body);
                    }
                    st.pending.retain(|&s, _| s > from);
                }
                Err(e) => tracing::warn!(error = %e, "gap fill failed; retrying"),
            }
            if st.pending.is_empty() {
                st.gap_fill_running = false;
                break;
            }
        }
        self.pump(&topic);
    }

    /// Subscribes a connection to an image and queues, in this order, the
    /// `subscribed` reply, the replayed events (when recovering) and then live
    /// events. Resubscribing restarts from the given position.
    pub async fn subscribe(
        self: &Arc<Self>,
        conn: ConnId,
        out: &Arc<dyn Subscriber>,
        key: &ImageKey,
        request_id: &Option<Value>,
        resume: Option<(&str, Seq)>,
    ) -> Result<Subscribed, StoreError> {
        let (topic, result) = loop {
            let topic = Arc::clone(lock(&self.topics).entry(key.clone()).or_insert_with(|| {
                Arc::new(Topic {
                    key: key.clone(),
                    inbox: Mutex::new(VecDeque::new()),
                    state: tokio::sync::Mutex::new(TopicState::default()),
                })
            }));
            // Checked and joined under one lock: a copy found alive cannot
            // be retired (by the last viewer leaving) before this one joins.
            let st = self.lock_state(&topic).await;
            if st.dead {
                continue;
            }
            let result = self
                .subscribe_locked(st, &topic, conn, out, request_id, resume)
                .await;
            break (topic, result);
        };
        self.pump(&topic);
        if result.is_err() {
            self.drop_if_empty(&topic).await;
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn subscribe_locked(
        self: &Arc<Self>,
        mut st: StateGuard<'_>,
        topic: &Arc<Topic>,
        conn: ConnId,
        out: &Arc<dyn Subscriber>,
        request_id: &Option<Value>,
        resume: Option<(&str, Seq)>,
    ) -> Result<Subscribed, StoreError> {
        if !st.ready {
            // Subscribe at the broker before reading the position, so every
            // event after that position reaches this node.
            self.broker
                .subscribe(&topic.key)
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            st.delivered = self.store.latest_seq(&topic.key).await?;
            st.ready = true;
        }
        let head = st.delivered;
        let mut recovered = false;
        let mut replay = Vec::new();
        if let Some((epoch, from)) = resume {
            let missed = head.since(from);
            if epoch == self.store.epoch() && from <= head && missed <= MAX_REPLAY {
                let want = u32::try_from(missed).unwrap_or(u32::MAX);
                let events = self.store.events_since(&topic.key, from, want).await?;
                // The log may have been trimmed: recover only from a whole run.
                if events.len() as u64 == missed
                    && events
                        .iter()
                        .zip(from.get() + 1..)
                        .all(|(e, s)| e.seq == Seq(s))
                {
                    recovered = true;
                    replay = events;
                }
            }
        }
        self.finish_subscribe(
            &mut st, topic, conn, out, request_id, head, recovered, replay,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_subscribe(
        &self,
        st: &mut TopicState,
        topic: &Arc<Topic>,
        conn: ConnId,
        out: &Arc<dyn Subscriber>,
        request_id: &Option<Value>,
        head: Seq,
        recovered: bool,
        replay: Vec<crate::store::LoggedEvent>,
    ) -> Result<Subscribed, StoreError> {
        // What is batched precedes this subscriber's `seq`: send it first.
        send_batch(st, &self.latency);
        st.subs.retain(|s| s.conn != conn);
        st.subs.push(Sub {
            conn,
            out: Arc::clone(out),
        });
        let viewers = st.subs.len();
        out.send(
            &ServerMessage::Subscribed {
                id: request_id,
                url_id: topic.key.url_id(),
                epoch: self.store.epoch(),
                seq: head,
                recovered,
                viewers,
            }
            .to_bytes(),
        );
        let replay: Vec<Bytes> = replay.into_iter().map(|e| e.body).collect();
        for chunk in replay.chunks(REPLAY_CHUNK) {
            out.deliver(&Batch::new(chunk.to_vec()));
        }
        lock(&self.presence_dirty).insert(topic.key.clone());
        Ok(Subscribed {
            seq: head,
            recovered,
            viewers,
        })
    }

    pub async fn unsubscribe(self: &Arc<Self>, conn: ConnId, key: &ImageKey) {
        let Some(topic) = lock(&self.topics).get(key).cloned() else {
            return;
        };
        {
            let mut st = self.lock_state(&topic).await;
            let before = st.subs.len();
            st.subs.retain(|s| s.conn != conn);
            if st.subs.len() != before {
                lock(&self.presence_dirty).insert(key.clone());
            }
        }
        self.drop_if_empty(&topic).await;
    }

    /// Forgets an image nobody on this node listens to any more.
    async fn drop_if_empty(self: &Arc<Self>, topic: &Arc<Topic>) {
        let mut st = self.lock_state(topic).await;
        if !st.subs.is_empty() || st.dead {
            return;
        }
        st.dead = true;
        let was_ready = st.ready;
        drop(st);
        {
            let mut topics = lock(&self.topics);
            if topics
                .get(&topic.key)
                .is_some_and(|t| Arc::ptr_eq(t, topic))
            {
                topics.remove(&topic.key);
            }
        }
        lock(&self.recent).remove(&topic.key);
        if was_ready {
            if let Err(e) = self.broker.unsubscribe(&topic.key).await {
                tracing::warn!(error = %e, "broker unsubscribe failed");
            }
        }
    }

    /// Presence, once a second: announces this node's changed viewer counts,
    /// then sends the global count of every image whose count may have
    /// changed (here or on another node) to this node's subscribers, when it
    /// differs from what they last got. With `sweep`, every image is
    /// recounted, which is how the viewers of a dead node disappear.
    pub async fn presence_tick(self: &Arc<Self>, sweep: bool) {
        let dirty: Vec<ImageKey> = lock(&self.presence_dirty).drain().collect();
        let mut recount: HashSet<ImageKey> = lock(&self.presence_recount).drain().collect();
        if sweep {
            recount.extend(lock(&self.topics).keys().cloned());
        }
        for key in dirty {
            // An image this node no longer holds has no viewers here.
            let topic = lock(&self.topics).get(&key).cloned();
            let local = match topic {
                Some(t) => self.lock_state(&t).await.subs.len(),
                None => 0,
            };
            if let Err(e) = self.broker.announce_viewers(&key, local).await {
                tracing::debug!(error = %e, "could not announce viewers");
            }
            recount.insert(key);
        }
        for key in recount {
            let Some(topic) = lock(&self.topics).get(&key).cloned() else {
                continue;
            };
            let local = self.lock_state(&topic).await.subs.len();
            let viewers = match self.broker.viewers(&key, local).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "could not count viewers across nodes");
                    local
                }
            };
            tracing::debug!(url_id = key.url_id(), local, viewers, "presence recount");
            let mut st = self.lock_state(&topic).await;
            if st.dead || st.last_viewers == Some(viewers) {
                continue;
            }
            st.last_viewers = Some(viewers);
            let msg = ServerMessage::Presence {
                url_id: key.url_id(),
                viewers,
            }
            .to_bytes();
            self.deliver(&topic, &mut st, msg);
        }
    }
}

impl Hub {
    /// Sends a message to the image's viewers now when the image has send
    /// credit, else adds it to the batch that goes out once it has.
    fn deliver(self: &Arc<Self>, topic: &Arc<Topic>, st: &mut TopicState, body: Bytes) {
        st.batch.push(body);
        let now = Instant::now();
        st.pacer.refill(now, self.window);
        let due = if st.batch.len() >= MAX_BATCH {
            now
        } else {
            st.pacer.due(now, self.window)
        };
        if due <= now {
            st.pacer.spend();
            send_batch(st, &self.latency);
        } else if !st.send_scheduled {
            st.send_scheduled = true;
            let (hub, topic, window) = (Arc::clone(self), Arc::clone(topic), self.window);
            tokio::spawn(async move {
                tokio::time::sleep_until(due.into()).await;
                let mut st = hub.lock_state(&topic).await;
                st.send_scheduled = false;
                if !st.batch.is_empty() && !st.dead {
                    // Credit counts from the start of a send, however long
                    // the send takes.
                    st.pacer.refill(Instant::now(), window);
                    st.pacer.spend();
                    send_batch(&mut st, &hub.latency);
                }
            });
        }
    }
}

/// Sends the batch, shared by every viewer, and records how long after
/// its first event's commit that was.
fn send_batch(st: &mut TopicState, latency: &metrics::Histogram) {
    if st.batch.is_empty() {
        return;
    }
    let batch = Batch::new(std::mem::take(&mut st.batch));
    for s in &st.subs {
        s.out.deliver(&batch);
    }
    if let Some(at) = batch.messages().iter().find_map(|m| committed_at(m)) {
        let ms = crate::domain::now_ms().saturating_sub(at).max(0);
        latency.record(ms as f64 / 1000.0);
    }
}

/// The `at` (commit time, ms) of a logged event's JSON, which the store
/// writes last; `None` for other messages (presence).
fn committed_at(body: &[u8]) -> Option<i64> {
    const KEY: &[u8] = b"\"at\":";
    let tail = body.strip_suffix(b"}")?;
    let window = &tail[tail.len().saturating_sub(24)..];
    let pos = window.windows(KEY.len()).rposition(|w| w == KEY)?;
    std::str::from_utf8(&window[pos + KEY.len()..])
        .ok()?
        .parse()
        .ok()
}
