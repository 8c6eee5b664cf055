//! What nodes share besides the database, in two small traits chosen once
//! at start-up from the broker URL:
//!
//! - [`Bus`]: publish, subscribe, unsubscribe. It carries already-serialized
//!   events and may drop, duplicate or reorder them (the hub detects gaps by
//!   seq and fills them from the store), so it never has to be more reliable
//!   than Redis pub/sub. When it may have lost messages (it reconnected) it
//!   says so with [`Inbound::Resync`].
//! - [`ClusterState`]: the little state that must be global: viewer and
//!   connection counts and write-rate buckets.
//!
//! [`Broker`] joins the two and adds what any bus needs above it: the last
//! event of each image whose publish failed is published again when the bus
//! comes back, so other nodes see the gap and fill it (resync of this node's
//! images is the hub's, on `Resync`). Both are tested without Redis, over the
//! in-process stub bus of [`stub`].

pub mod memory;
pub mod redis;
#[cfg(test)]
pub mod stub;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

pub use crate::domain::ImageKey;
use crate::domain::Seq;

/// One logged event in transit.
#[derive(Debug, Clone)]
pub struct BrokerMessage {
    pub topic: ImageKey,
    pub seq: Seq,
    pub body: Bytes,
}

/// A message for every connection of one user, on whichever node
/// (contract §13's `notification` and `notifications`): not logged, so
/// at most once, like the bus.
#[derive(Debug, Clone, PartialEq)]
pub struct UserMessage {
    pub tenant: String,
    pub user_id: String,
    /// The exact JSON text sent to the user's connections.
    pub body: Bytes,
}

/// What travels on a bus.
#[derive(Debug, Clone)]
pub enum Envelope {
    Event(BrokerMessage),
    /// Some node's viewer count of this image changed: recount.
    Presence(ImageKey),
    /// For one user's connections on every node.
    User(UserMessage),
}

/// What a bus hands to its node's hub.
#[derive(Debug, Clone)]
pub enum Inbound {
    Event(BrokerMessage),
    /// Some node's viewer count of this image changed: recount.
    Presence(ImageKey),
    /// For one user's connections on this node.
    User(UserMessage),
    /// Messages may have been lost (the bus reconnected): publish again what
    /// failed, and check every subscribed image against the store.
    Resync,
}

impl From<Envelope> for Inbound {
    fn from(e: Envelope) -> Inbound {
        match e {
            Envelope::Event(m) => Inbound::Event(m),
            Envelope::Presence(t) => Inbound::Presence(t),
            Envelope::User(m) => Inbound::User(m),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

/// Pub/sub between nodes. At most once, in no promised order.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Sends to every node subscribed to the topic (this one included); a
    /// [`Envelope::User`] goes to every node.
    async fn publish(&self, msg: Envelope) -> Result<(), BrokerError>;
    /// Starts receiving a topic on this node's inbox. Counted: as many
    /// `unsubscribe`s as `subscribe`s end it (a dying and a fresh copy of
    /// one image may overlap).
    async fn subscribe(&self, topic: &ImageKey) -> Result<(), BrokerError>;
    async fn unsubscribe(&self, topic: &ImageKey) -> Result<(), BrokerError>;
    async fn ping(&self) -> Result<(), BrokerError>;
}

/// Counts and buckets shared by every node.
#[async_trait]
pub trait ClusterState: Send + Sync + 'static {
    /// Records this node's viewer count of an image.
    async fn set_viewers(&self, topic: &ImageKey, local: usize) -> Result<(), BrokerError>;
    /// Viewers of an image across all live nodes, given this node's count.
    async fn viewers(&self, topic: &ImageKey, local: usize) -> Result<usize, BrokerError>;
    /// Records this node's open connections of a tenant; the count across
    /// all live nodes.
    async fn connections(&self, tenant: &str, local: u64) -> Result<u64, BrokerError>;
    /// Takes one write from a shared token bucket: `Ok(None)` when no shared
    /// buckets are kept (one node: the local limiter decides),
    /// `Ok(Some(Err(secs)))` when the bucket is empty.
    async fn take_write(
        &self,
        key: &str,
        per_minute: u32,
        burst: u32,
    ) -> Result<Option<Result<(), u64>>, BrokerError>;
}

/// Most images remembered for publishing again after a failed publish.
const UNPUBLISHED_MAX: usize = 10_000;

/// A bus and the cluster state, with the republishing every bus needs.
pub struct Broker {
    bus: Arc<dyn Bus>,
    state: Arc<dyn ClusterState>,
    /// The last event of each image whose publish failed (bounded).
    unpublished: Mutex<HashMap<ImageKey, (Seq, Bytes)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Broker {
    pub fn new(bus: Arc<dyn Bus>, state: Arc<dyn ClusterState>) -> Arc<Broker> {
        Arc::new(Broker {
            bus,
            state,
            unpublished: Mutex::new(HashMap::new()),
        })
    }

    /// Publishes an event; on failure remembers it (the image's latest) to
    /// publish again when the bus is back ([`Broker::republish`]).
    pub async fn publish(&self, msg: BrokerMessage) -> Result<(), BrokerError> {
        let r = self.bus.publish(Envelope::Event(msg.clone())).await;
        if r.is_err() {
            self.remember(msg);
        }
        r
    }

    /// Remembers an event that was not published (the image's latest),
    /// for [`Broker::republish`].
    pub fn remember(&self, msg: BrokerMessage) {
        let mut u = lock(&self.unpublished);
        if u.len() < UNPUBLISHED_MAX || u.contains_key(&msg.topic) {
            let newer = u.get(&msg.topic).is_none_or(|(s, _)| *s < msg.seq);
            if newer {
                u.insert(msg.topic, (msg.seq, msg.body));
            }
        }
    }

    /// Whether some event waits for [`Broker::republish`].
    pub fn has_unpublished(&self) -> bool {
        !lock(&self.unpublished).is_empty()
    }

    /// Publishes again the last event of every image whose publish failed,
    /// so the nodes that missed it see a gap and fill it from the store.
    pub async fn republish(&self) {
        let pending: Vec<(ImageKey, (Seq, Bytes))> = lock(&self.unpublished).drain().collect();
        for (topic, (seq, body)) in pending {
            let _ = self.publish(BrokerMessage { topic, seq, body }).await;
        }
    }

    pub async fn subscribe(&self, topic: &ImageKey) -> Result<(), BrokerError> {
        self.bus.subscribe(topic).await
    }

    /// Sends a message to every connection of one user, on every node.
    pub async fn tell_user(&self, m: UserMessage) -> Result<(), BrokerError> {
        self.bus.publish(Envelope::User(m)).await
    }

    pub async fn unsubscribe(&self, topic: &ImageKey) -> Result<(), BrokerError> {
        self.bus.unsubscribe(topic).await
    }

    pub async fn ping(&self) -> Result<(), BrokerError> {
        self.bus.ping().await
    }

    /// Records this node's viewer count of an image and tells the other
    /// nodes subscribed to it.
    pub async fn announce_viewers(
        &self,
        topic: &ImageKey,
        local: usize,
    ) -> Result<(), BrokerError> {
        self.state.set_viewers(topic, local).await?;
        self.bus.publish(Envelope::Presence(topic.clone())).await
    }

    pub async fn viewers(&self, topic: &ImageKey, local: usize) -> Result<usize, BrokerError> {
        self.state.viewers(topic, local).await
    }

    pub async fn connections(&self, tenant: &str, local: u64) -> Result<u64, BrokerError> {
        self.state.connections(tenant, local).await
    }

    pub async fn take_write(
        &self,
        key: &str,
        per_minute: u32,
        burst: u32,
    ) -> Result<Option<Result<(), u64>>, BrokerError> {
        self.state.take_write(key, per_minute, burst).await
    }
}

/// Opens the broker named by a URL (`memory`, `redis://…`); what its bus
/// receives goes to `inbox`.
pub async fn open(url: &str, inbox: mpsc::Sender<Inbound>) -> anyhow::Result<Arc<Broker>> {
    match url {
        "memory" | "memory://" => {
            let m = Arc::new(memory::MemoryBroker::new(inbox));
            Ok(Broker::new(m.clone(), m))
        }
        u if u.starts_with("redis://") || u.starts_with("rediss://") => {
            let r = redis::RedisBroker::open(u, inbox).await?;
            Ok(Broker::new(r.clone(), r))
        }
        _ => anyhow::bail!("unsupported broker URL: expected memory or redis://…"),
    }
}

/// The same checks for every bus: what a subscriber of a topic receives,
/// what it does not, and counted subscriptions.
#[cfg(test)]
pub(crate) mod conformance {
    use std::time::Duration;

    use super::*;

    fn event(topic: &ImageKey, seq: u64) -> Envelope {
        Envelope::Event(BrokerMessage {
            topic: topic.clone(),
            seq: Seq(seq),
            body: Bytes::from(format!("{{\"seq\":{seq}}}")),
        })
    }

    /// The next event on `rx`, skipping `Resync`s, within `wait`.
    async fn next_event(rx: &mut mpsc::Receiver<Inbound>, wait: Duration) -> Option<BrokerMessage> {
        tokio::time::timeout(wait, async {
            loop {
                match rx.recv().await {
                    Some(Inbound::Event(m)) => return Some(m),
                    Some(_) => continue,
                    None => return None,
                }
            }
        })
        .await
        .ok()
        .flatten()
    }

    /// `publisher` and `bus` may be the same node's bus or two nodes'.
    pub(crate) async fn check(
        publisher: Arc<dyn Bus>,
        bus: Arc<dyn Bus>,
        rx: &mut mpsc::Receiver<Inbound>,
        wait: Duration,
    ) {
        let tag = crate::domain::random_id(6);
        let (a, b) = (
            ImageKey::new("t", &format!("a-{tag}")),
            ImageKey::new("t", &format!("b-{tag}")),
        );
        bus.ping().await.expect("ping");
        bus.subscribe(&a).await.expect("subscribe");
        publisher.publish(event(&a, 1)).await.expect("publish");
        let m = next_event(rx, wait)
            .await
            .expect("a subscriber receives its topic's events");
        assert_eq!(
            (m.topic.clone(), m.seq, &m.body[..]),
            (a.clone(), Seq(1), &b"{\"seq\":1}"[..])
        );
        publisher.publish(event(&b, 1)).await.expect("publish");
        publisher.publish(event(&a, 2)).await.expect("publish");
        let m = next_event(rx, wait).await.expect("the second event");
        assert_eq!(
            (m.topic.clone(), m.seq),
            (a.clone(), Seq(2)),
            "nothing of a topic not subscribed"
        );
        // Counted: two subscribes need two unsubscribes.
        bus.subscribe(&a).await.expect("subscribe");
        bus.unsubscribe(&a).await.expect("unsubscribe");
        publisher.publish(event(&a, 3)).await.expect("publish");
        assert_eq!(
            next_event(rx, wait).await.map(|m| m.seq.get()),
            Some(3),
            "still subscribed once"
        );
        bus.unsubscribe(&a).await.expect("unsubscribe");
        publisher.publish(event(&a, 4)).await.expect("publish");
        assert!(
            next_event(rx, wait / 4).await.is_none(),
            "nothing after the last unsubscribe"
        );
    }

    #[tokio::test]
    async fn the_memory_bus() {
        let (tx, mut rx) = mpsc::channel(64);
        let bus: Arc<dyn Bus> = Arc::new(memory::MemoryBroker::new(tx));
        check(bus.clone(), bus, &mut rx, Duration::from_millis(200)).await;
    }

    #[tokio::test]
    async fn the_stub_bus_between_two_nodes() {
        let net = stub::StubNet::new(1);
        let (tx_a, _rx_a) = mpsc::channel(64);
        let (tx_b, mut rx_b) = mpsc::channel(64);
        let (a, b) = (net.node(tx_a), net.node(tx_b));
        check(a, b, &mut rx_b, Duration::from_millis(200)).await;
    }

    /// Needs Redis (`IMAGECHAT_TEST_REDIS`, default 127.0.0.1:6379), as the
    /// cluster tests do; the test command starts it.
    #[tokio::test]
    async fn the_redis_bus_between_two_nodes() {
        let url = std::env::var("IMAGECHAT_TEST_REDIS")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let (tx_a, _rx_a) = mpsc::channel(64);
        let (tx_b, mut rx_b) = mpsc::channel(64);
        let a = redis::RedisBroker::open(&url, tx_a)
            .await
            .expect("Redis is reachable");
        let b = redis::RedisBroker::open(&url, tx_b)
            .await
            .expect("Redis is reachable");
        for _ in 0..100 {
            if b.ping().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        check(a, b, &mut rx_b, Duration::from_secs(2)).await;
    }

    /// A publish that fails is made again, the image's latest, when the bus
    /// is back: above any bus.
    #[tokio::test]
    async fn a_failed_publish_is_made_again_when_the_bus_is_back() {
        let net = stub::StubNet::new(2);
        let (tx_a, _rx_a) = mpsc::channel(64);
        let (tx_b, mut rx_b) = mpsc::channel(64);
        let (a, b) = (net.node(tx_a), net.node(tx_b));
        let (tx_state, _rx_state) = mpsc::channel(1);
        let broker = Broker::new(a, Arc::new(memory::MemoryBroker::new(tx_state)));
        let t = ImageKey::new("t", "u");
        b.subscribe(&t).await.unwrap();
        net.go_down();
        for seq in [5, 7, 6] {
            let Envelope::Event(m) = event(&t, seq) else {
                unreachable!()
            };
            assert!(broker.publish(m).await.is_err());
        }
        net.come_back().await;
        broker.republish().await;
        let m = next_event(&mut rx_b, Duration::from_millis(200))
            .await
            .expect("republished");
        assert_eq!(m.seq, Seq(7), "the image's latest");
        assert!(next_event(&mut rx_b, Duration::from_millis(50))
            .await
            .is_none());
    }
}
