//! The in-process broker of a single node: publishing hands the event straight
//! to this node's hub inbox.

use std::collections::HashSet;
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{Broker, BrokerError, BrokerMessage, TopicKey};

pub struct MemoryBroker {
    inbox: mpsc::Sender<BrokerMessage>,
    /// Topics with local subscribers: others are not worth a channel hop.
    topics: Mutex<HashSet<TopicKey>>,
}

impl MemoryBroker {
    pub fn new(inbox: mpsc::Sender<BrokerMessage>) -> Self {
        MemoryBroker {
            inbox,
            topics: Mutex::new(HashSet::new()),
        }
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn publish(&self, msg: BrokerMessage) -> Result<(), BrokerError> {
        let wanted = self
            .topics
            .lock()
            .map(|t| t.contains(&msg.topic))
            .unwrap_or(true);
        if wanted {
            // The inbox is bounded: a writer waits here rather than the node
            // buffering without limit when the hub falls behind.
            self.inbox
                .send(msg)
                .await
                .map_err(|_| BrokerError::Unavailable("the hub has stopped".into()))?;
        }
        Ok(())
    }

    async fn subscribe(&self, topic: &TopicKey) -> Result<(), BrokerError> {
        if let Ok(mut t) = self.topics.lock() {
            t.insert(topic.clone());
        }
        Ok(())
    }

    async fn unsubscribe(&self, topic: &TopicKey) -> Result<(), BrokerError> {
        if let Ok(mut t) = self.topics.lock() {
            t.remove(topic);
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        if self.inbox.is_closed() {
            return Err(BrokerError::Unavailable("the hub has stopped".into()));
        }
        Ok(())
    }
}
