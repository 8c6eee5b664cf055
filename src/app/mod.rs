//! The shared state of one running node and the services every transport
//! shares: the one session path ([`session`]), the one write path
//! ([`write`]), the tenant cache, the rate limits ([`limits`]), the connection
//! registry and metrics. Knows no HTTP and no sockets.

pub mod limits;
pub mod metrics;
pub mod session;
pub mod snapshots;
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
pub use limits::{AddressLimits, RateLimiter};
pub use metrics::Metrics;

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub struct App {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub broker: Arc<Broker>,
    pub hub: Arc<Hub>,
    pub tenants: TenantCache,
    /// Per-user write buckets, when the broker keeps none.
    pub limiter: RateLimiter,
    pub addresses: AddressLimits,
    pub usage: Usage,
    pub metrics: Metrics,
    pub conns: Connections,
    /// Where uploaded images are kept, and the gate on their decoders.
    pub uploads: crate::upload::Uploads,
    /// Current image snapshots, encoded.
    pub snapshots: snapshots::Snapshots,
    /// Woken when a write queued webhook messages (see `crate::webhook`).
    pub webhooks: Arc<tokio::sync::Notify>,
    started: Instant,
}

impl App {
    pub fn new(
        config: Config,
        store: Arc<dyn Store>,
        broker: Arc<Broker>,
        uploads: Arc<dyn crate::upload::Storage>,
    ) -> Arc<App> {
        let metrics = Metrics::new();
        let hub = Hub::new(
            Arc::clone(&store),
            Arc::clone(&broker),
            Duration::from_millis(100),
            Duration::from_millis(config.batch_window_ms),
            metrics.event_delivery.clone(),
        );
        let webhooks = Arc::new(tokio::sync::Notify::new());
        store.on_commit(write::publisher(
            Arc::clone(&hub),
            Arc::clone(&broker),
            &metrics,
            Arc::clone(&webhooks),
        ));
        Arc::new(App {
            limiter: RateLimiter::new(config.write_rate_per_minute, config.write_burst),
            addresses: AddressLimits::new(&config),
            snapshots: snapshots::Snapshots::new(config.snapshot_cache_bytes),
            config,
            tenants: TenantCache::default(),
            store,
            broker,
            hub,
            usage: Usage::default(),
            metrics,
            conns: Connections::default(),
            uploads: crate::upload::Uploads::new(uploads),
            webhooks,
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
