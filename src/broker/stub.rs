//! An in-process bus joining several nodes (hubs) in one test process, and
//! misbehaving on purpose: it drops, duplicates and reorders messages with
//! set probabilities (from a seeded generator, so a run repeats), and can go
//! down and come back (then every node is told to `Resync`), so what sits
//! above any bus is tested without Redis.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{BrokerError, Bus, Envelope, ImageKey, Inbound};

/// What goes wrong, each a probability in 0..=1 per delivery.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    pub drop: f64,
    pub duplicate: f64,
    /// Held back and delivered after the node's next message.
    pub reorder: f64,
}

struct Node {
    inbox: mpsc::Sender<Inbound>,
    topics: HashMap<ImageKey, usize>,
    held: Vec<Inbound>,
}

struct Net {
    nodes: Vec<Node>,
    faults: Faults,
    down: bool,
    rng: u64,
    /// Deliveries dropped, duplicated and held back so far.
    done: [u64; 3],
}

impl Net {
    /// xorshift64*: enough randomness for fault injection, repeatable.
    fn roll(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The network the stub buses share.
pub struct StubNet(Mutex<Net>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl StubNet {
    pub fn new(seed: u64) -> Arc<StubNet> {
        Arc::new(StubNet(Mutex::new(Net {
            nodes: Vec::new(),
            faults: Faults::default(),
            down: false,
            rng: seed.max(1),
            done: [0; 3],
        })))
    }

    /// A new node's bus; what it receives goes to `inbox`.
    pub fn node(self: &Arc<Self>, inbox: mpsc::Sender<Inbound>) -> Arc<StubBus> {
        let mut net = lock(&self.0);
        net.nodes.push(Node {
            inbox,
            topics: HashMap::new(),
            held: Vec::new(),
        });
        Arc::new(StubBus {
            net: Arc::clone(self),
            id: net.nodes.len() - 1,
        })
    }

    /// Deliveries dropped, duplicated and reordered so far.
    pub fn faults_done(&self) -> [u64; 3] {
        lock(&self.0).done
    }

    pub fn set_faults(&self, f: Faults) {
        lock(&self.0).faults = f;
    }

    /// Publishes fail while down.
    pub fn go_down(&self) {
        lock(&self.0).down = true;
    }

    /// Back up: every node is told it may have missed messages.
    pub async fn come_back(&self) {
        let inboxes: Vec<_> = {
            let mut net = lock(&self.0);
            net.down = false;
            net.nodes.iter().map(|n| n.inbox.clone()).collect()
        };
        for i in inboxes {
            let _ = i.send(Inbound::Resync).await;
        }
    }

    /// Delivers what is held back for reordering.
    pub async fn flush(&self) {
        let out: Vec<_> = {
            let mut net = lock(&self.0);
            net.nodes
                .iter_mut()
                .flat_map(|n| {
                    let inbox = n.inbox.clone();
                    std::mem::take(&mut n.held)
                        .into_iter()
                        .map(move |m| (inbox.clone(), m))
                })
                .collect()
        };
        for (inbox, m) in out {
            let _ = inbox.send(m).await;
        }
    }
}

/// One node's end of a [`StubNet`].
pub struct StubBus {
    net: Arc<StubNet>,
    id: usize,
}

#[async_trait]
impl Bus for StubBus {
    async fn publish(&self, msg: Envelope) -> Result<(), BrokerError> {
        let topic = match &msg {
            Envelope::Event(m) => m.topic.clone(),
            Envelope::Presence(t) => t.clone(),
            Envelope::User(m) => {
                // To every node, without faults.
                let inboxes: Vec<_> = lock(&self.net.0)
                    .nodes
                    .iter()
                    .map(|n| n.inbox.clone())
                    .collect();
                for i in inboxes {
                    let _ = i.send(Inbound::User(m.clone())).await;
                }
                return Ok(());
            }
        };
        let sends = {
            let mut guard = lock(&self.net.0);
            let net = &mut *guard;
            if net.down {
                return Err(BrokerError::Unavailable("the stub bus is down".into()));
            }
            let mut sends = Vec::new();
            for i in 0..net.nodes.len() {
                if !net.nodes[i].topics.contains_key(&topic) {
                    continue;
                }
                let f = net.faults;
                let (drop, dup, reorder) = (net.roll(), net.roll(), net.roll());
                if drop < f.drop {
                    net.done[0] += 1;
                    continue;
                }
                let m = Inbound::from(msg.clone());
                if reorder < f.reorder {
                    net.done[2] += 1;
                    net.nodes[i].held.push(m);
                    continue;
                }
                let node = &mut net.nodes[i];
                sends.push((node.inbox.clone(), m.clone()));
                if dup < f.duplicate {
                    net.done[1] += 1;
                    sends.push((node.inbox.clone(), m));
                }
                for held in node.held.drain(..) {
                    sends.push((node.inbox.clone(), held));
                }
            }
            sends
        };
        for (inbox, m) in sends {
            let _ = inbox.send(m).await;
        }
        Ok(())
    }

    async fn subscribe(&self, topic: &ImageKey) -> Result<(), BrokerError> {
        let mut net = lock(&self.net.0);
        *net.nodes[self.id].topics.entry(topic.clone()).or_default() += 1;
        Ok(())
    }

    async fn unsubscribe(&self, topic: &ImageKey) -> Result<(), BrokerError> {
        let mut net = lock(&self.net.0);
        let topics = &mut net.nodes[self.id].topics;
        if let Some(n) = topics.get_mut(topic) {
            *n -= 1;
            if *n == 0 {
                topics.remove(topic);
            }
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        if lock(&self.net.0).down {
            return Err(BrokerError::Unavailable("the stub bus is down".into()));
        }
        Ok(())
    }
}
