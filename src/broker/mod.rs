//! What nodes share besides the database: one `Broker` trait, chosen once at
//! start-up from the broker URL. A broker carries already-serialized events;
//! it may drop or reorder them (the hub detects gaps by seq and fills them
//! from the store), so it never has to be more reliable than Redis pub/sub.
//! It also holds the little state that must be global: viewer counts,
//! connection counts and write-rate buckets.

pub mod memory;
pub mod redis;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

/// Names one image's event stream: tenant and urlId. A urlId never holds a
/// control character, so a newline separates the two unambiguously.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicKey(Arc<str>);

impl TopicKey {
    pub fn new(tenant: &str, url_id: &str) -> Self {
        TopicKey(format!("{tenant}\n{url_id}").into())
    }
    pub fn tenant(&self) -> &str {
        self.0.split_once('\n').map_or("", |(t, _)| t)
    }
    pub fn url_id(&self) -> &str {
        self.0.split_once('\n').map_or("", |(_, u)| u)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One logged event in transit.
#[derive(Debug, Clone)]
pub struct BrokerMessage {
    pub topic: TopicKey,
    pub seq: u64,
    pub body: Bytes,
}

/// What a broker hands to its node's hub.
#[derive(Debug, Clone)]
pub enum Inbound {
    Event(BrokerMessage),
    /// Some node's viewer count of this image changed: recount.
    Presence(TopicKey),
    /// Messages may have been lost (the broker reconnected): check every
    /// subscribed image against the store.
    Resync,
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Sends an event to every node subscribed to its topic (this one included).
    async fn publish(&self, msg: BrokerMessage) -> Result<(), BrokerError>;
    /// Starts receiving a topic's events on this node's inbox.
    async fn subscribe(&self, topic: &TopicKey) -> Result<(), BrokerError>;
    async fn unsubscribe(&self, topic: &TopicKey) -> Result<(), BrokerError>;
    async fn ping(&self) -> Result<(), BrokerError>;

    /// Records this node's viewer count of an image and tells the other
    /// nodes subscribed to it.
    async fn announce_viewers(&self, topic: &TopicKey, local: usize) -> Result<(), BrokerError>;
    /// Viewers of an image across all live nodes, given this node's count.
    async fn viewers(&self, topic: &TopicKey, local: usize) -> Result<usize, BrokerError>;
    /// Records this node's open connections of a tenant; the count across
    /// all live nodes.
    async fn connections(&self, tenant: &str, local: u64) -> Result<u64, BrokerError>;
    /// Takes one write from a shared token bucket: `Ok(None)` when this
    /// broker keeps no shared buckets (one node: the local limiter decides),
    /// `Ok(Some(Err(secs)))` when the bucket is empty.
    async fn take_write(
        &self,
        key: &str,
        per_minute: u32,
        burst: u32,
    ) -> Result<Option<Result<(), u64>>, BrokerError>;
}

/// Opens the broker named by a URL; received events go to `inbox`.
pub async fn open(url: &str, inbox: mpsc::Sender<Inbound>) -> anyhow::Result<Arc<dyn Broker>> {
    match url {
        "memory" | "memory://" => Ok(Arc::new(memory::MemoryBroker::new(inbox))),
        u if u.starts_with("redis://") || u.starts_with("rediss://") => {
            Ok(redis::RedisBroker::open(u, inbox).await?)
        }
        _ => anyhow::bail!("unsupported broker URL: expected memory or redis://…"),
    }
}
