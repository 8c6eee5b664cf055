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

    /// The tenant of an id, `None` when there is none. An id that cannot be
    /// a tenant's (see `validate::tenant_id`) is never looked up: whatever a
    /// client sends as a tenant id reaches no store unchecked.
    pub async fn tenant(&self, id: &str) -> Result<Option<Arc<Tenant>>, StoreError> {
        if crate::domain::validate::tenant_id(id).is_err() {
            return Ok(None);
        }
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
        m.insert(t.id.to_string(), Arc::clone(&t));
        t
    }
}

/// Per-(tenant, user) write rates on one node: `burst` writes at once,
/// then `per_minute` a minute (GCRA, by `governor`). Used when the broker
/// keeps no shared buckets (one node) or cannot answer.
pub struct RateLimiter {
    /// `None`: unlimited.
    limiter: Option<governor::DefaultKeyedRateLimiter<String>>,
}

/// Bound on remembered keys; past it the idle ones are forgotten.
const BUCKETS_MAX: usize = 100_000;

impl RateLimiter {
    pub fn new(per_minute: u32, burst: u32) -> Self {
        let limiter = std::num::NonZeroU32::new(per_minute).map(|rate| {
            let burst = std::num::NonZeroU32::new(burst).unwrap_or(std::num::NonZeroU32::MIN);
            governor::RateLimiter::keyed(governor::Quota::per_minute(rate).allow_burst(burst))
        });
        RateLimiter { limiter }
    }

    /// Takes one write; `Err(seconds)` to wait (at least 1) when the
    /// bucket is empty.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        let Some(l) = &self.limiter else {
            return Ok(());
        };
        if l.len() >= BUCKETS_MAX {
            l.retain_recent();
        }
        l.check_key(&key.to_owned()).map_err(|not_until| {
            use governor::clock::Clock;
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            wait.as_secs_f64().ceil().max(1.0) as u64
        })
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
        let slow = RateLimiter::new(1, 1);
        assert_eq!(slow.check("a"), Ok(()));
        assert!(matches!(slow.check("a"), Err(s) if (59..=60).contains(&s)));
        assert_eq!(r.check("b"), Ok(()));
        let unlimited = RateLimiter::new(0, 1);
        for _ in 0..100 {
            assert_eq!(unlimited.check("a"), Ok(()));
        }
    }
}
