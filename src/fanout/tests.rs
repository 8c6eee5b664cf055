//! The hub's tests: pacing, locking, bounds, and several hubs over a lossy
//! bus. A recording subscriber stands in for sockets.

use super::*;

/// A hub on a fresh SQLite store and the in-process bus, with no batch
/// window and a gap wait long enough never to fire; and the store's folder.
async fn one_hub(name: &str) -> (Arc<Hub>, std::path::PathBuf) {
    let (store, dir, _) = crate::store::open_temp(name).await;
    let (tx, _rx) = tokio::sync::mpsc::channel(8);
    let broker = crate::broker::open("memory", tx).await.unwrap();
    let hub = Hub::new(
        store,
        broker,
        Duration::from_secs(60),
        Duration::ZERO,
        metrics::Histogram::noop(),
    );
    (hub, dir)
}

/// A subscriber that records what it is given (for the hub's tests).
#[derive(Default)]
pub(crate) struct Recorder(Mutex<Vec<Vec<Bytes>>>);

impl Recorder {
    /// What arrived since the last call: one list of messages per send.
    pub(crate) fn take(&self) -> Vec<Vec<Bytes>> {
        std::mem::take(&mut *lock(&self.0))
    }
}

impl Subscriber for Recorder {
    fn send(&self, msg: &[u8]) {
        lock(&self.0).push(vec![Bytes::copy_from_slice(msg)]);
    }
    fn deliver(&self, batch: &Batch) {
        lock(&self.0).push(batch.messages().to_vec());
    }
}

mod pacing_and_locks {
    use super::*;

    fn near(a: Instant, b: Instant) -> bool {
        a.max(b).duration_since(a.min(b)) < Duration::from_micros(1)
    }

    #[test]
    fn the_commit_time_is_read_from_the_end_of_an_event() {
        let ev = br#"{"type":"deleted-image-chat","chatId":"c","urlId":"u","seq":3,"broadcastId":null,"at":1764000000123}"#;
        assert_eq!(committed_at(ev), Some(1_764_000_000_123));
        assert_eq!(
            committed_at(br#"{"type":"presence","urlId":"u","viewers":2}"#),
            None
        );
        assert_eq!(committed_at(b"}"), None);
        assert_eq!(committed_at(b""), None);
    }

    #[test]
    fn a_quiet_image_sends_at_once_and_a_busy_one_once_per_window() {
        let w = Duration::from_millis(20);
        let t0 = Instant::now();
        let mut p = Pacer::default();
        for _ in 0..2 {
            p.refill(t0, w);
            assert!(near(p.due(t0, w), t0), "a pair goes out at once");
            p.spend();
        }
        p.refill(t0, w);
        assert!(near(p.due(t0, w), t0 + w), "the third waits a window");
        let t1 = t0 + w / 2;
        p.refill(t1, w);
        assert!(
            near(p.due(t1, w), t0 + w),
            "and is due at the same time later"
        );
        p.spend();
        let t2 = t0 + w * 10;
        p.refill(t2, w);
        assert!(near(p.due(t2, w), t2), "quiet again: at once");
        let mut z = Pacer::default();
        for _ in 0..5 {
            z.refill(t0, Duration::ZERO);
            assert!(
                near(z.due(t0, Duration::ZERO), t0),
                "no window: never waits"
            );
            z.spend();
        }
    }

    /// An event that reaches an image while something else holds its lock
    /// (a batch send, a presence count) is delivered when the lock is let
    /// go, not when the next event happens to come.
    #[tokio::test]
    async fn an_event_arriving_while_the_image_is_locked_goes_out_on_unlock() {
        let (hub, dir) = one_hub("hub").await;
        let rec = Arc::new(Recorder::default());
        let out: Arc<dyn Subscriber> = rec.clone();
        let key = ImageKey::new("t", "img");
        hub.subscribe(1, &out, &key, &None, None).await.unwrap();
        assert_eq!(rec.take().len(), 1, "the subscribed reply");
        let topic = lock(&hub.topics).get(&key).cloned().unwrap();
        let held = hub.lock_state(&topic).await;
        hub.on_event(key.clone(), Seq(1), Bytes::from_static(b"{\"seq\":1}"));
        assert!(rec.take().is_empty(), "waits while the image is locked");
        drop(held);
        assert_eq!(rec.take(), vec![vec![Bytes::from_static(b"{\"seq\":1}")]]);
        let _ = std::fs::remove_dir_all(dir);
    }
}

mod bounds {
    use super::*;

    /// An image whose state stays locked does not buffer without end: past
    /// `MAX_INBOX` events are dropped and the image is marked for a check
    /// against the log, which is where they are read from.
    #[tokio::test]
    async fn a_full_inbox_drops_and_marks_the_image_for_the_log() {
        let (hub, dir) = one_hub("inbox").await;
        let out: Arc<dyn Subscriber> = Arc::new(Recorder::default());
        let key = ImageKey::new("t", "img");
        hub.subscribe(1, &out, &key, &None, None).await.unwrap();
        let topic = lock(&hub.topics).get(&key).cloned().unwrap();
        let held = hub.lock_state(&topic).await;
        lock(&hub.recent).clear();
        for seq in 1..=(MAX_INBOX as u64 + 10) {
            hub.on_event(key.clone(), Seq(seq), Bytes::from_static(b"{}"));
        }
        assert_eq!(lock(&topic.inbox).len(), MAX_INBOX);
        assert!(lock(&hub.recent).contains_key(&key));
        drop(held);
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Several hubs in one process, joined by the stub bus that drops,
/// duplicates and reorders, over an event log kept in memory; time is
/// paused, so the gap fills and quiet checks run in virtual time.
mod over_a_lossy_bus {
    use async_trait::async_trait;
    use tokio::sync::mpsc;

    use super::*;
    use crate::broker::stub::{Faults, StubNet};
    use crate::broker::{BrokerMessage, Bus};
    use crate::domain::auth::TokenKey;
    use crate::domain::chat::Authority;
    use crate::domain::{Mutation, Tenant, TenantId};
    use crate::store::{
        Committed, FoundChat, ImageSummary, LoggedEvent, Snapshot, UsageCounts, UsageDelta,
    };

    /// Only the log: what the hub reads.
    struct Log {
        events: Mutex<Vec<Bytes>>,
        key: TokenKey,
    }

    use crate::protocol::{Notification, User};
    use crate::store::{AfterAttempt, Attempt, Digest, DirectoryUser, PendingDelivery, Webhook};

    fn absent<T>() -> Result<T, StoreError> {
        Err(StoreError::Unavailable(
            "not kept by this test store".into(),
        ))
    }

    #[async_trait]
    impl Store for Log {
        fn epoch(&self) -> &str {
            "e"
        }
        fn token_key(&self) -> &TokenKey {
            &self.key
        }
        async fn ping(&self) -> Result<(), StoreError> {
            Ok(())
        }
        async fn maintain(&self) -> Result<(), StoreError> {
            Ok(())
        }
        async fn create_tenant(&self, _: &Tenant) -> Result<(), StoreError> {
            absent()
        }
        async fn tenant(&self, _: &str) -> Result<Option<Tenant>, StoreError> {
            absent()
        }
        async fn snapshot(&self, _: &ImageKey) -> Result<Snapshot, StoreError> {
            absent()
        }
        async fn chat(&self, _: &TenantId, _: &str) -> Result<Option<FoundChat>, StoreError> {
            absent()
        }
        async fn latest_seq(&self, _: &ImageKey) -> Result<Seq, StoreError> {
            Ok(Seq(lock(&self.events).len() as u64))
        }
        async fn events_since(
            &self,
            _: &ImageKey,
            since: Seq,
            limit: u32,
        ) -> Result<Vec<LoggedEvent>, StoreError> {
            Ok(lock(&self.events)
                .iter()
                .enumerate()
                .map(|(i, b)| LoggedEvent {
                    seq: Seq(i as u64 + 1),
                    body: b.clone(),
                })
                .filter(|e| e.seq > since)
                .take(limit as usize)
                .collect())
        }
        async fn apply(
            &self,
            _: &TenantId,
            _: &Mutation,
            _: &Authority,
            _: Option<&str>,
        ) -> Result<Committed, StoreError> {
            absent()
        }
        fn on_commit(&self, _: crate::store::CommitHook) {}
        async fn add_usage(&self, _: &[UsageDelta]) -> Result<(), StoreError> {
            absent()
        }
        async fn usage(
            &self,
            _: &str,
            _: &str,
            _: &str,
        ) -> Result<Vec<(String, UsageCounts)>, StoreError> {
            absent()
        }
        async fn images(&self, _: &str, _: u32) -> Result<Vec<ImageSummary>, StoreError> {
            absent()
        }
        async fn add_upload(&self, _: &crate::store::NewUpload) -> Result<(), StoreError> {
            absent()
        }
        async fn upload(&self, _: &str) -> Result<Option<crate::store::StoredUpload>, StoreError> {
            absent()
        }
        async fn sweep_uploads(&self, _: i64, _: u32) -> Result<Vec<String>, StoreError> {
            absent()
        }
        async fn delete_upload(&self, _: &str, _: &str) -> Result<bool, StoreError> {
            absent()
        }
        async fn remember_user(&self, _: &str, _: &DirectoryUser) -> Result<(), StoreError> {
            absent()
        }
        async fn find_users(&self, _: &str, _: &str, _: u32) -> Result<Vec<User>, StoreError> {
            absent()
        }
        async fn set_following(
            &self,
            _: &str,
            _: &str,
            _: &str,
            _: bool,
        ) -> Result<bool, StoreError> {
            absent()
        }
        async fn following(&self, _: &str, _: &str, _: &str) -> Result<Option<bool>, StoreError> {
            absent()
        }
        async fn notifications(
            &self,
            _: &str,
            _: &str,
            _: Option<i64>,
            _: u32,
        ) -> Result<(Vec<Notification>, u64), StoreError> {
            absent()
        }
        async fn mark_read(&self, _: &str, _: &str, _: Option<&[i64]>) -> Result<u64, StoreError> {
            absent()
        }
        async fn claim_digests(
            &self,
            _: i64,
            _: i64,
            _: i64,
            _: u32,
        ) -> Result<Vec<Digest>, StoreError> {
            absent()
        }
        async fn finish_digest(&self, _: &Digest, _: bool, _: i64) -> Result<(), StoreError> {
            absent()
        }
        async fn unsubscribe(&self, _: &str, _: &str) -> Result<bool, StoreError> {
            absent()
        }
        async fn create_webhook(&self, _: &Webhook, _: u32) -> Result<(), StoreError> {
            absent()
        }
        async fn webhooks(&self, _: &str) -> Result<Vec<Webhook>, StoreError> {
            absent()
        }
        async fn delete_webhook(&self, _: &str, _: &str) -> Result<bool, StoreError> {
            absent()
        }
        async fn claim_deliveries(
            &self,
            _: i64,
            _: i64,
            _: u32,
        ) -> Result<Vec<PendingDelivery>, StoreError> {
            absent()
        }
        async fn attempted(
            &self,
            _: &PendingDelivery,
            _: &Attempt,
            _: AfterAttempt,
        ) -> Result<(), StoreError> {
            absent()
        }
        async fn record_attempt(&self, _: &str, _: &Attempt) -> Result<(), StoreError> {
            absent()
        }
        async fn attempts(&self, _: &str, _: u32) -> Result<Vec<Attempt>, StoreError> {
            absent()
        }
        async fn next_delivery(&self) -> Result<Option<i64>, StoreError> {
            absent()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn three_hubs_deliver_every_event_once_and_in_order() {
        let log = Arc::new(Log {
            events: Mutex::new(Vec::new()),
            key: TokenKey::new(vec![0; 32]),
        });
        let store: Arc<dyn Store> = log.clone();
        let net = StubNet::new(42);
        let key = ImageKey::new("t", "img");
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let (tx, rx) = mpsc::channel(4096);
            let bus: Arc<dyn Bus> = net.node(tx);
            let (state_tx, _state_rx) = mpsc::channel(1);
            let state = Arc::new(crate::broker::memory::MemoryBroker::new(state_tx));
            let broker = Broker::new(bus, state);
            let hub = Hub::new(
                Arc::clone(&store),
                Arc::clone(&broker),
                Duration::from_millis(100),
                Duration::from_millis(20),
                metrics::Histogram::noop(),
            );
            tokio::spawn(Arc::clone(&hub).run_inbox(rx));
            let rec = Arc::new(Recorder::default());
            let sub: Arc<dyn Subscriber> = rec.clone();
            hub.subscribe(1, &sub, &key, &None, None).await.unwrap();
            nodes.push((hub, broker, rec));
        }
        net.set_faults(Faults {
            drop: 0.2,
            duplicate: 0.2,
            reorder: 0.3,
        });
        let write = |seq: u64| {
            let body = Bytes::from(format!("{{\"seq\":{seq}}}"));
            lock(&log.events).push(body.clone());
            BrokerMessage {
                topic: key.clone(),
                seq: Seq(seq),
                body,
            }
        };
        for seq in 1..=300u64 {
            // Stored, then published through some node.
            let m = write(seq);
            let _ = nodes[(seq % 3) as usize].1.publish(m).await;
            if seq % 7 == 0 {
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        }
        // The bus goes down: these publishes fail, and come back after.
        net.go_down();
        for seq in 301..=320u64 {
            let m = write(seq);
            assert!(nodes[(seq % 3) as usize].1.publish(m).await.is_err());
        }
        net.come_back().await;
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            for (hub, _, _) in &nodes {
                hub.check_quiet().await;
            }
        }
        net.flush().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let [dropped, duplicated, reordered] = net.faults_done();
        assert!(
            dropped > 50 && duplicated > 50 && reordered > 50,
            "{dropped} {duplicated} {reordered}"
        );
        let want: Vec<Bytes> = lock(&log.events).clone();
        for (n, (_, _, rec)) in nodes.iter().enumerate() {
            let got: Vec<Bytes> = rec.take().into_iter().skip(1).flatten().collect();
            assert_eq!(got.len(), want.len(), "node {n}: every event once");
            assert!(got == want, "node {n}: in order");
        }
    }
}
