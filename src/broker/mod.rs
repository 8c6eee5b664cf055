//! Fan-out between nodes: one `Broker` trait, chosen once at start-up from the
//! broker URL. A broker carries already-serialized events; it may drop or
//! reorder them (the hub detects gaps by seq and fills them from the store),
//! so it never has to be more reliable than Redis pub/sub.

pub mod memory;

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
}

/// Opens the broker named by a URL; received events go to `inbox`.
pub async fn open(
    url: &str,
    inbox: mpsc::Sender<BrokerMessage>,
) -> anyhow::Result<Arc<dyn Broker>> {
    match url {
        "memory" | "memory://" => Ok(Arc::new(memory::MemoryBroker::new(inbox))),
        _ => anyhow::bail!("unsupported broker URL {url:?}: expected memory"),
    }
}
