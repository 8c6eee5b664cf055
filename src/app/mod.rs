//! The shared state of one running node and the services every transport
//! shares: the one session path ([`session`]), the one write path
//! ([`write`]), the tenant cache, the write-rate limiter, the connection
//! registry and metrics. Knows no HTTP and no sockets.

pub mod metrics;
pub mod session;
pub mod write;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::broker::Broker;
use crate::config::Config;
use crate::domain::auth::TokenKey;
use crate::domain::Tenant;
use crate::fanout::{ConnId, Hub};
use crate::protocol::CloseCode;
use crate::store::{Store, StoreError};
use crate::usage::Usage;
pub use metrics::Metrics;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub struct App {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub broker: Arc<Broker>,
    pub hub: Arc<Hub>,
    pub tenants: TenantCache,
    pub limiter: RateLimiter,
    pub usage: Usage,
    pub metrics: Metrics,
    pub conns: Connections,
    started: Instant,
}

impl App {
    pub fn new(config: Config, store: Arc<dyn Store>, broker: Arc<Broker>) -> Arc<App> {
        let metrics = Metrics::new();
        let hub = Hub::new(
            Arc::clone(&store),
            Arc::clone(&broker),
            Duration::from_millis(100),
            Duration::from_millis(config.batch_window_ms),
            metrics.event_delivery.clone(),
        );
        Arc::new(App {
            limiter: RateLimiter::new(config.write_rate_per_minute, config.write_burst),
            config,
            tenants: TenantCache::default(),
            store,
            broker,
            hub,
            usage: Usage::default(),
            metrics,
            conns: Connections::default(),
            started: Instant::now(),
        })
    }

    pub fn token_key(&self) -> &TokenKey {
        self.store.token_key()
    }

    /// Seconds since this node started: the clock of connection liveness.
    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    pub async fn tenant(&self, id: &str) -> Result<Option<Arc<Tenant>>, StoreError> {
        if let Some(t) = self.tenants.get(id) {
            return Ok(Some(t));
        }
        let t = self
            .store
            .tenant(id)
            .await
            .inspect_err(|_| self.metrics.store_error())?;
        Ok(t.map(|t| self.tenants.put(t)))
    }
}

/// Tenants rarely change and are read on every request.
#[derive(Default)]
pub struct TenantCache {
    map: Mutex<HashMap<String, Arc<Tenant>>>,
}

/// Bound on cached tenants; past it the cache starts over.
const TENANT_CACHE_MAX: usize = 10_000;

impl TenantCache {
    pub fn get(&self, id: &str) -> Option<Arc<Tenant>> {
        lock(&self.map).get(id).cloned()
    }
    pub fn put(&self, t: Tenant) -> Arc<Tenant> {
        let mut m = lock(&self.map);
        if m.len() >= TENANT_CACHE_MAX {
            m.clear();
        }
        let t = Arc::new(t);
        m.insert(t.id.clone(), Arc::clone(&t));
        t
    }
}

/// Token buckets per (tenant, user): `burst` writes at once, then
/// `per_minute` a minute.
pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

/// Bound on remembered buckets; full (idle) ones are forgotten first.
const BUCKETS_MAX: usize = 100_000;

impl RateLimiter {
    pub fn new(per_minute: u32, burst: u32) -> Self {
        RateLimiter {
            per_sec: per_minute as f64 / 60.0,
            burst: burst.max(1) as f64,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one write; `Err(seconds)` to wait when the bucket is empty.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        if self.per_sec == 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut b = lock(&self.buckets);
        if b.len() >= BUCKETS_MAX && !b.contains_key(key) {
            let (per_sec, burst) = (self.per_sec, self.burst);
            b.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_sec < burst
            });
            if b.len() >= BUCKETS_MAX {
                b.clear();
            }
        }
        let (tokens, at) = b.entry(key.to_owned()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_sec).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.per_sec).ceil().max(1.0) as u64)
        }
    }
}

/// What heartbeats and shutdown need of an open connection, whatever its
/// transport.
pub trait Connection: Send + Sync {
    /// Sends what is queued, then a close frame with `code`, and ends.
    fn close(&self, code: CloseCode, reason: &'static str);
    fn ping(&self);
    /// Node uptime in seconds when the peer last sent anything.
    fn last_seen(&self) -> u64;
}

/// Open WebSocket connections, for heartbeats and shutdown.
#[derive(Default)]
pub struct Connections {
    next: AtomicU64,
    open: Mutex<HashMap<ConnId, Arc<dyn Connection>>>,
}

impl Connections {
    pub fn next_id(&self) -> ConnId {
        self.next.fetch_add(1, Relaxed) + 1
    }
    pub fn add(&self, id: ConnId, out: Arc<dyn Connection>) {
        lock(&self.open).insert(id, out);
    }
    pub fn remove(&self, id: ConnId) {
        lock(&self.open).remove(&id);
    }
    pub fn count(&self) -> usize {
        lock(&self.open).len()
    }
    pub fn all(&self) -> Vec<Arc<dyn Connection>> {
        lock(&self.open).values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_refuses_with_a_wait() {
        let r = RateLimiter::new(60, 3);
        for _ in 0..3 {
            assert_eq!(r.check("a"), Ok(()));
        }
        assert_eq!(r.check("a"), Err(1));
        assert_eq!(r.check("b"), Ok(()));
        let unlimited = RateLimiter::new(0, 1);
        for _ in 0..100 {
            assert_eq!(unlimited.check("a"), Ok(()));
        }
    }
}
