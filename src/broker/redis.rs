//! Redis as the broker between nodes: pub/sub for events (one channel per
//! image, subscribed only while this node has viewers of it), hashes for
//! viewer and connection counts per node, and a Lua token bucket for write
//! rates.
//!
//! Redis pub/sub is at-most-once: after its subscriber connection comes
//! back this bus says `Resync`, and the layers above publish again what
//! failed and check every image against the store. Counts of a node that
//! stops refreshing its liveness key (20 s) are ignored and then removed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, PubSubSink};
use tokio::sync::mpsc;

use super::{
    BrokerError, BrokerMessage, Bus, ClusterState, Envelope, ImageKey, Inbound, UserMessage,
};
use crate::domain::Seq;

const EVENTS: &str = "imagechat:ev:";
/// The one channel of messages for users' connections; every node
/// subscribes to it.
const USERS: &str = "imagechat:users";
const VIEWERS: &str = "imagechat:viewers:";
const CONNECTIONS: &str = "imagechat:conns:";
const NODE: &str = "imagechat:node:";
const BUCKET: &str = "imagechat:rate:";
/// A node is alive while its key exists; it refreshes it every quarter of
/// this. With the hub's 5 s recount, a dead node's viewers are gone within
/// 25 s.
const NODE_TTL_SECS: u64 = 20;
/// The payload that says "a viewer count changed" rather than an event.
const PRESENCE_MARK: &[u8] = b"p";

/// Token bucket in Redis time: returns {allowed, seconds to wait}.
const TAKE_WRITE: &str = r#"
local rate = tonumber(ARGV[1]) / 60000.0
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1]) or burst
local at = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local ok, wait = 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  ok = 1
else
  wait = math.ceil((1 - tokens) / rate / 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate) + 1000)
return {ok, wait}
"#;

fn unavailable(e: redis::RedisError) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub struct RedisBroker {
    /// This node's name in shared counts.
    node: String,
    client: redis::Client,
    /// Commands and publishes; reconnects by itself.
    cmd: ConnectionManager,
    /// The subscriber connection's command half, while it is up.
    sink: tokio::sync::Mutex<Option<PubSubSink>>,
    /// Images this node wants events of, with how many subscribe calls are
    /// outstanding (a dying and a fresh copy of one image may overlap):
    /// restored after a reconnect.
    topics: Mutex<HashMap<ImageKey, usize>>,
    subscribed: AtomicBool,
    inbox: mpsc::Sender<Inbound>,
    take_write: redis::Script,
}

impl RedisBroker {
    pub async fn open(url: &str, inbox: mpsc::Sender<Inbound>) -> anyhow::Result<Arc<Self>> {
        let client = redis::Client::open(url)?;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        let cmd = tokio::time::timeout(
            Duration::from_secs(5),
            client.get_connection_manager_with_config(cfg),
        )
        .await
        .map_err(|_| anyhow::anyhow!("timed out connecting to Redis"))??;
        let broker = Arc::new(RedisBroker {
            node: crate::domain::random_id(9),
            client,
            cmd,
            sink: tokio::sync::Mutex::new(None),
            topics: Mutex::new(HashMap::new()),
            subscribed: AtomicBool::new(false),
            inbox,
            take_write: redis::Script::new(TAKE_WRITE),
        });
        broker.refresh_liveness().await;
        tokio::spawn(subscriber_loop(Arc::downgrade(&broker)));
        tokio::spawn(liveness_loop(Arc::downgrade(&broker)));
        Ok(broker)
    }

    fn channel(topic: &ImageKey) -> String {
        format!("{EVENTS}{}", topic.as_str())
    }

    async fn refresh_liveness(&self) {
        let r: redis::RedisResult<()> = redis::cmd("SET")
            .arg(format!("{NODE}{}", self.node))
            .arg(1)
            .arg("EX")
            .arg(NODE_TTL_SECS)
            .query_async(&mut self.cmd.clone())
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "could not refresh this node's liveness in Redis");
        }
    }

    /// Sets this node's field in a count hash and sums the fields of live
    /// nodes, dropping those of dead ones.
    async fn shared_count(&self, key: &str, local: u64) -> Result<u64, BrokerError> {
        let mut c = self.cmd.clone();
        let fields: HashMap<String, u64> = redis::pipe()
            .cmd("HSET")
            .arg(key)
            .arg(&self.node)
            .arg(local)
            .ignore()
            .cmd("EXPIRE")
            .arg(key)
            .arg(24 * 3600)
            .ignore()
            .cmd("HGETALL")
            .arg(key)
            .query_async::<(HashMap<String, u64>,)>(&mut c)
            .await
            .map_err(unavailable)?
            .0;
        let others: Vec<&String> = fields.keys().filter(|n| **n != self.node).collect();
        if others.is_empty() {
            return Ok(local);
        }
        let alive: Vec<Option<u8>> = redis::cmd("MGET")
            .arg(
                others
                    .iter()
                    .map(|n| format!("{NODE}{n}"))
                    .collect::<Vec<_>>(),
            )
            .query_async(&mut c)
            .await
            .map_err(unavailable)?;
        let mut total = local;
        let mut dead = Vec::new();
        for (n, a) in others.iter().zip(alive) {
            match a {
                Some(_) => total += fields.get(*n).copied().unwrap_or(0),
                None => dead.push((*n).clone()),
            }
        }
        if !dead.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("HDEL")
                .arg(key)
                .arg(dead)
                .query_async(&mut c)
                .await;
        }
        Ok(total)
    }
}

fn payload(seq: Seq, body: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(body.len() + 21);
    p.extend_from_slice(seq.to_string().as_bytes());
    p.push(b'\n');
    p.extend_from_slice(body);
    p
}

/// A user message as `tenant \n user \n body` (neither id can hold a
/// newline: see `validate`).
fn user_payload(m: &UserMessage) -> Vec<u8> {
    let mut p = Vec::with_capacity(m.tenant.len() + m.user_id.len() + m.body.len() + 2);
    p.extend_from_slice(m.tenant.as_bytes());
    p.push(b'\n');
    p.extend_from_slice(m.user_id.as_bytes());
    p.push(b'\n');
    p.extend_from_slice(&m.body);
    p
}

fn parse(channel: &str, data: &[u8]) -> Option<Inbound> {
    if channel == USERS {
        let mut parts = data.splitn(3, |b| *b == b'\n');
        let tenant = std::str::from_utf8(parts.next()?).ok()?.to_owned();
        let user_id = std::str::from_utf8(parts.next()?).ok()?.to_owned();
        let body = Bytes::copy_from_slice(parts.next()?);
        return Some(Inbound::User(UserMessage {
            tenant,
            user_id,
            body,
        }));
    }
    let key = channel.strip_prefix(EVENTS)?;
    let (tenant, url_id) = key.split_once('\n')?;
    let topic = ImageKey::new(tenant, url_id);
    if data == PRESENCE_MARK {
        return Some(Inbound::Presence(topic));
    }
    let nl = data.iter().position(|b| *b == b'\n')?;
    let seq = Seq(std::str::from_utf8(&data[..nl]).ok()?.parse().ok()?);
    Some(Inbound::Event(BrokerMessage {
        topic,
        seq,
        body: Bytes::copy_from_slice(&data[nl + 1..]),
    }))
}

/// Keeps one subscriber connection up; after every (re)connect it restores
/// the subscriptions and asks the hub to check every image against the store.
async fn subscriber_loop(weak: Weak<RedisBroker>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(b) = weak.upgrade() else { return };
        let inbox = b.inbox.clone();
        match b.client.get_async_pubsub().await {
            Ok(ps) => {
                let (mut sink, mut stream) = ps.split();
                // Held while restoring, so a concurrent subscribe either is
                // in this list or runs on the new sink afterwards.
                let mut slot = b.sink.lock().await;
                let topics: Vec<ImageKey> = lock(&b.topics).keys().cloned().collect();
                let mut ok = sink.subscribe(USERS).await.is_ok();
                for t in &topics {
                    if sink.subscribe(RedisBroker::channel(t)).await.is_err() {
                        ok = false;
                        break;
                    }
                }
                if ok {
                    *slot = Some(sink);
                    drop(slot);
                    b.subscribed.store(true, Ordering::Relaxed);
                    tracing::info!(images = topics.len(), "subscribed at Redis");
                    let _ = inbox.send(Inbound::Resync).await;
                    backoff = Duration::from_millis(100);
                    drop(b);
                    while let Some(msg) = stream.next().await {
                        if let Some(m) = parse(msg.get_channel_name(), msg.get_payload_bytes()) {
                            if inbox.send(m).await.is_err() {
                                return;
                            }
                        }
                    }
                    let Some(b) = weak.upgrade() else { return };
                    b.subscribed.store(false, Ordering::Relaxed);
                    *b.sink.lock().await = None;
                    tracing::warn!("lost the Redis subscriber connection; reconnecting");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot reach Redis; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn liveness_loop(weak: Weak<RedisBroker>) {
    loop {
        tokio::time::sleep(Duration::from_secs(NODE_TTL_SECS / 4)).await;
        let Some(b) = weak.upgrade() else { return };
        b.refresh_liveness().await;
    }
}

#[async_trait]
impl Bus for RedisBroker {
    async fn publish(&self, msg: Envelope) -> Result<(), BrokerError> {
        let (channel, data) = match &msg {
            Envelope::Event(m) => (Self::channel(&m.topic), payload(m.seq, &m.body)),
            Envelope::Presence(t) => (Self::channel(t), PRESENCE_MARK.to_vec()),
            Envelope::User(m) => (USERS.to_owned(), user_payload(m)),
        };
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(data)
            .query_async::<()>(&mut self.cmd.clone())
            .await
            .map_err(unavailable)
    }

    async fn subscribe(&self, topic: &ImageKey) -> Result<(), BrokerError> {
        // The sink lock orders counting and commands together, so an
        // unsubscribe never overtakes the subscribe that followed it.
        let mut sink = self.sink.lock().await;
        let first = {
            let mut t = lock(&self.topics);
            let n = t.entry(topic.clone()).or_default();
            *n += 1;
            *n == 1
        };
        // While disconnected the subscriber loop subscribes on reconnect.
        if let (true, Some(sink)) = (first, sink.as_mut()) {
            sink.subscribe(Self::channel(topic))
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn unsubscribe(&self, topic: &ImageKey) -> Result<(), BrokerError> {
        let mut sink = self.sink.lock().await;
        let last = {
            let mut t = lock(&self.topics);
            match t.get_mut(topic) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    t.remove(topic);
                    true
                }
                None => false,
            }
        };
        if let (true, Some(sink)) = (last, sink.as_mut()) {
            sink.unsubscribe(Self::channel(topic))
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.cmd.clone())
            .await
            .map_err(unavailable)?;
        if !self.subscribed.load(Ordering::Relaxed) {
            return Err(BrokerError::Unavailable(
                "the subscriber connection is down".into(),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl ClusterState for RedisBroker {
    async fn set_viewers(&self, topic: &ImageKey, local: usize) -> Result<(), BrokerError> {
        let key = format!("{VIEWERS}{}", topic.as_str());
        let mut p = redis::pipe();
        if local > 0 {
            p.cmd("HSET").arg(&key).arg(&self.node).arg(local).ignore();
            p.cmd("EXPIRE").arg(&key).arg(24 * 3600).ignore();
        } else {
            p.cmd("HDEL").arg(&key).arg(&self.node).ignore();
        }
        p.query_async::<()>(&mut self.cmd.clone())
            .await
            .map_err(unavailable)
    }

    async fn viewers(&self, topic: &ImageKey, local: usize) -> Result<usize, BrokerError> {
        let key = format!("{VIEWERS}{}", topic.as_str());
        Ok(self.shared_count(&key, local as u64).await? as usize)
    }

    async fn connections(&self, tenant: &str, local: u64) -> Result<u64, BrokerError> {
        self.shared_count(&format!("{CONNECTIONS}{tenant}"), local)
            .await
    }

    async fn take_write(
        &self,
        key: &str,
        per_minute: u32,
        burst: u32,
    ) -> Result<Option<Result<(), u64>>, BrokerError> {
        let (ok, wait): (i64, i64) = self
            .take_write
            .key(format!("{BUCKET}{key}"))
            .arg(per_minute)
            .arg(burst.max(1))
            .invoke_async(&mut self.cmd.clone())
            .await
            .map_err(unavailable)?;
        Ok(Some(if ok == 1 {
            Ok(())
        } else {
            Err(wait.max(1) as u64)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        let t = ImageKey::new("acme", "https://x.example/#a.png");
        let ch = RedisBroker::channel(&t);
        let Some(Inbound::Event(m)) = parse(&ch, &payload(Seq(42), b"{\"a\":1}")) else {
            panic!("an event");
        };
        assert_eq!(
            (m.topic, m.seq, &m.body[..]),
            (t.clone(), Seq(42), &b"{\"a\":1}"[..])
        );
        assert!(matches!(parse(&ch, PRESENCE_MARK), Some(Inbound::Presence(k)) if k == t));
        assert!(parse("other:channel", b"1\n{}").is_none());
        assert!(parse(&ch, b"x\n{}").is_none());
    }
}
