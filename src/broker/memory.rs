//! The in-process bus and cluster state of a single node: publishing hands
//! the event straight to this node's hub inbox, and this node's counts are
//! the global ones.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{BrokerError, Bus, ClusterState, Envelope, ImageKey, Inbound};

pub struct MemoryBroker {
    inbox: mpsc::Sender<Inbound>,
    /// Topics with local subscribers (how many subscribe calls are
    /// outstanding): others are not worth a channel hop.
    topics: Mutex<HashMap<ImageKey, usize>>,
}

impl MemoryBroker {
    pub fn new(inbox: mpsc::Sender<Inbound>) -> Self {
        MemoryBroker {
            inbox,
            topics: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl Bus for MemoryBroker {
    async fn publish(&self, msg: Envelope) -> Result<(), BrokerError> {
        // One node: its own presence changes are counted where they happen.
        let msg = match msg {
            Envelope::Event(msg) => msg,
            Envelope::Presence(_) => return Ok(()),
            Envelope::User(m) => {
                return self
                    .inbox
                    .send(Inbound::User(m))
                    .await
                    .map_err(|_| BrokerError::Unavailable("the hub has stopped".into()));
            }
        };
        let wanted = self
            .topics
            .lock()
            .map(|t| t.contains_key(&msg.topic))
            .unwrap_or(true);
        if wanted {
            // The inbox is bounded: a writer waits here rather than the node
            // buffering without limit when the hub falls behind.
            self.inbox
                .send(Inbound::Event(msg))
                .await
                .map_err(|_| BrokerError::Unavailable("the hub has stopped".into()))?;
        }
        Ok(())
    }

    async fn subscribe(&self, topic: &ImageKey) -> Result<(), BrokerError> {
        if let Ok(mut t) = self.topics.lock() {
            *t.entry(topic.clone()).or_default() += 1;
        }
        Ok(())
    }

    async fn unsubscribe(&self, topic: &ImageKey) -> Result<(), BrokerError> {
        if let Ok(mut t) = self.topics.lock() {
            if let Some(n) = t.get_mut(topic) {
                *n -= 1;
                if *n == 0 {
                    t.remove(topic);
                }
            }
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

// One node: its own counts are the global ones, and its local limiter is
// the only one.
#[async_trait]
impl ClusterState for MemoryBroker {
    async fn set_viewers(&self, _topic: &ImageKey, _local: usize) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn viewers(&self, _topic: &ImageKey, local: usize) -> Result<usize, BrokerError> {
        Ok(local)
    }

    async fn connections(&self, _tenant: &str, local: u64) -> Result<u64, BrokerError> {
        Ok(local)
    }

    async fn take_write(
        &self,
        _key: &str,
        _per_minute: u32,
        _burst: u32,
    ) -> Result<Option<Result<(), u64>>, BrokerError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node may hold a dying and a fresh copy of one image at once; the
    /// dying one's unsubscribe must not cut the fresh one off.
    #[tokio::test]
    async fn subscriptions_are_counted() {
        let (tx, mut rx) = mpsc::channel(8);
        let b = MemoryBroker::new(tx);
        let k = ImageKey::new("t", "u");
        let msg = |seq| {
            Envelope::Event(super::super::BrokerMessage {
                topic: k.clone(),
                seq: crate::domain::Seq(seq),
                body: bytes::Bytes::from_static(b"{}"),
            })
        };
        b.subscribe(&k).await.unwrap();
        b.subscribe(&k).await.unwrap();
        b.unsubscribe(&k).await.unwrap();
        b.publish(msg(1)).await.unwrap();
        assert!(matches!(rx.try_recv(), Ok(Inbound::Event(m)) if m.seq.get() == 1));
        b.unsubscribe(&k).await.unwrap();
        b.publish(msg(2)).await.unwrap();
        assert!(rx.try_recv().is_err());
    }
}
