//! Image snapshots from memory: the encoded answer of `GET /api/v1/chats`
//! per image, kept while it is current, so a page that many people load
//! (or a reconnect storm in which every client reloads) costs one read of
//! the image's chats, not one per client.
//!
//! A cached answer at seq N is served only when a read of the image's log
//! head that *began after the request arrived* found N. Requests for one
//! image take turns on its slot, and one such read answers every request
//! that arrived before it began: K requests arriving together cost at most
//! two head reads and one snapshot load, not K (requests that keep arriving
//! cost one head read per read's duration). The answer is what the store
//! would give at that moment, byte for byte, on one node or many (another
//! node's write moves the head like this node's). Bounded by bytes; the
//! least recently used images go first.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::app::lock;
use crate::domain::{ImageKey, Seq};
use crate::store::{Store, StoreError};

/// Bytes counted for an image's slot besides its answer: the key, the map
/// entry, the locks.
const SLOT_OVERHEAD: usize = 256;

#[derive(Default)]
struct Entry {
    /// The ticket taken before the last read that found `answer` current.
    checked: u64,
    answer: Option<(Seq, Bytes)>,
}

struct Slot {
    entry: tokio::sync::Mutex<Entry>,
    last_used: AtomicU64,
    /// Bytes counted for this slot in `Snapshots::bytes`.
    size: AtomicUsize,
    evicted: AtomicBool,
}

/// The cache; see the module documentation.
pub struct Snapshots {
    slots: Mutex<HashMap<ImageKey, Arc<Slot>>>,
    max_bytes: usize,
    bytes: AtomicUsize,
    /// Hands out tickets: later tickets are larger.
    clock: AtomicU64,
    pub hits: AtomicU64,
    pub loads: AtomicU64,
    pub head_reads: AtomicU64,
}

impl Snapshots {
    /// A cache of at most `max_bytes`; 0: every request loads.
    pub fn new(max_bytes: usize) -> Self {
        Snapshots {
            slots: Mutex::default(),
            max_bytes,
            bytes: AtomicUsize::new(0),
            clock: AtomicU64::new(1),
            hits: AtomicU64::new(0),
            loads: AtomicU64::new(0),
            head_reads: AtomicU64::new(0),
        }
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Relaxed)
    }

    /// The current answer for `key`: from memory when it is still the
    /// image's latest, else from `load` (which returns the answer and the
    /// seq it reflects).
    ///
    /// Errors: the store's, from the head read or from `load`.
    pub async fn get<F, Fut>(
        &self,
        store: &dyn Store,
        key: &ImageKey,
        load: F,
    ) -> Result<Bytes, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(Seq, Bytes), StoreError>>,
    {
        if self.max_bytes == 0 {
            self.loads.fetch_add(1, Relaxed);
            return load().await.map(|(_, b)| b);
        }
        let arrival = self.tick();
        let slot = self.slot(key);
        let mut entry = slot.entry.lock().await;
        slot.last_used.store(self.tick(), Relaxed);
        if entry.checked > arrival {
            if let Some((_, answer)) = &entry.answer {
                self.hits.fetch_add(1, Relaxed);
                return Ok(answer.clone());
            }
        }
        let began = self.tick();
        if let Some((seq, answer)) = &entry.answer {
            self.head_reads.fetch_add(1, Relaxed);
            if *seq == store.latest_seq(key).await? {
                let answer = answer.clone();
                entry.checked = began;
                self.hits.fetch_add(1, Relaxed);
                return Ok(answer);
            }
        }
        self.loads.fetch_add(1, Relaxed);
        let (seq, answer) = load().await?;
        entry.answer = Some((seq, answer.clone()));
        entry.checked = began;
        drop(entry);
        self.resize(&slot, SLOT_OVERHEAD.saturating_add(answer.len()));
        Ok(answer)
    }

    fn slot(&self, key: &ImageKey) -> Arc<Slot> {
        let mut slots = lock(&self.slots);
        if let Some(s) = slots.get(key) {
            return Arc::clone(s);
        }
        let s = Arc::new(Slot {
            entry: tokio::sync::Mutex::default(),
            last_used: AtomicU64::new(self.tick()),
            size: AtomicUsize::new(SLOT_OVERHEAD),
            evicted: AtomicBool::new(false),
        });
        slots.insert(key.clone(), Arc::clone(&s));
        self.bytes.fetch_add(SLOT_OVERHEAD, Relaxed);
        drop(slots);
        self.evict();
        s
    }

    /// Counts a slot's new size, then evicts if the cache is over its size.
    fn resize(&self, slot: &Slot, size: usize) {
        {
            let _slots = lock(&self.slots);
            if slot.evicted.load(Relaxed) {
                return;
            }
            let old = slot.size.swap(size, Relaxed);
            self.bytes.fetch_sub(old, Relaxed);
            self.bytes.fetch_add(size, Relaxed);
        }
        self.evict();
    }

    /// Drops the least recently used slots until the cache holds at most
    /// nine tenths of its size (so eviction runs once per many inserts).
    fn evict(&self) {
        if self.bytes.load(Relaxed) <= self.max_bytes {
            return;
        }
        let mut slots = lock(&self.slots);
        let mut by_age: Vec<(u64, ImageKey)> = slots
            .iter()
            .map(|(k, s)| (s.last_used.load(Relaxed), k.clone()))
            .collect();
        by_age.sort_unstable_by_key(|(t, _)| *t);
        let target = self.max_bytes / 10 * 9;
        for (_, key) in by_age {
            if self.bytes.load(Relaxed) <= target {
                break;
            }
            if let Some(s) = slots.remove(&key) {
                s.evicted.store(true, Relaxed);
                self.bytes.fetch_sub(s.size.load(Relaxed), Relaxed);
            }
        }
    }

    /// Bytes counted now, and images held.
    pub fn usage(&self) -> (usize, usize) {
        (self.bytes.load(Relaxed), lock(&self.slots).len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TenantId;

    async fn store() -> (Arc<dyn Store>, std::path::PathBuf) {
        let (store, dir, _) = crate::store::open_temp("snapshots").await;
        crate::testing::tenant(store.as_ref(), "t").await;
        (store, dir)
    }

    async fn write(store: &Arc<dyn Store>, url_id: &str) {
        let (m, by) = (
            crate::testing::create(url_id, vec![]),
            crate::testing::user("t", "u"),
        );
        store
            .apply(&TenantId::from("t"), &m, &by, None)
            .await
            .unwrap();
    }

    /// What the store gives now, encoded as the cache's answers are here:
    /// the seq and the number of chats.
    async fn load(store: &Arc<dyn Store>, key: &ImageKey) -> Result<(Seq, Bytes), StoreError> {
        let s = store.snapshot(key).await?;
        Ok((
            s.seq,
            Bytes::from(format!("{}:{}", s.seq.get(), s.chats.len())),
        ))
    }

    #[tokio::test]
    async fn an_answer_is_served_from_memory_only_while_it_is_current() {
        let (store, dir) = store().await;
        let cache = Snapshots::new(1 << 20);
        let key = ImageKey::new("t", "img");
        write(&store, "img").await;
        let get = || cache.get(store.as_ref(), &key, || load(&store, &key));
        assert_eq!(get().await.unwrap(), "1:1");
        assert_eq!(get().await.unwrap(), "1:1");
        assert_eq!(cache.loads.load(Relaxed), 1);
        assert_eq!(cache.hits.load(Relaxed), 1);
        // A write, then the next request sees it.
        write(&store, "img").await;
        assert_eq!(get().await.unwrap(), "2:2");
        assert_eq!(cache.loads.load(Relaxed), 2);
        // Another image's write changes nothing here.
        write(&store, "other").await;
        assert_eq!(get().await.unwrap(), "2:2");
        assert_eq!(cache.loads.load(Relaxed), 2);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A storm of requests for one image costs one load and at most two
    /// reads of the log head when they arrive together (here: all queued
    /// before the first runs), and every request gets the current answer.
    #[tokio::test]
    async fn a_storm_of_requests_shares_its_reads() {
        let (store, dir) = store().await;
        let cache = Arc::new(Snapshots::new(1 << 20));
        let key = ImageKey::new("t", "img");
        write(&store, "img").await;
        cache
            .get(store.as_ref(), &key, || load(&store, &key))
            .await
            .unwrap();
        write(&store, "img").await;
        let before = (cache.loads.load(Relaxed), cache.head_reads.load(Relaxed));
        let tasks: Vec<_> = (0..500)
            .map(|_| {
                let (cache, store, key) = (Arc::clone(&cache), Arc::clone(&store), key.clone());
                tokio::spawn(
                    async move { cache.get(store.as_ref(), &key, || load(&store, &key)).await },
                )
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), "2:2");
        }
        let loads = cache.loads.load(Relaxed) - before.0;
        let heads = cache.head_reads.load(Relaxed) - before.1;
        assert_eq!(loads, 1, "one load for the storm");
        assert!(heads <= 2, "{heads} head reads for the storm");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn the_least_recently_used_images_leave_first() {
        let (store, dir) = store().await;
        // Room for about four slots.
        let cache = Snapshots::new(4 * (SLOT_OVERHEAD + 3) + 10);
        for i in 0..4 {
            let key = ImageKey::new("t", &format!("img{i}"));
            cache
                .get(store.as_ref(), &key, || load(&store, &key))
                .await
                .unwrap();
        }
        assert_eq!(cache.usage().1, 4);
        // img0 is used again, so img1 is the oldest when img4 comes.
        let key0 = ImageKey::new("t", "img0");
        cache
            .get(store.as_ref(), &key0, || load(&store, &key0))
            .await
            .unwrap();
        let key4 = ImageKey::new("t", "img4");
        cache
            .get(store.as_ref(), &key4, || load(&store, &key4))
            .await
            .unwrap();
        let (bytes, images) = cache.usage();
        assert!(bytes <= 4 * (SLOT_OVERHEAD + 3) + 10, "{bytes} bytes");
        assert!(images < 5);
        let held: Vec<String> = lock(&cache.slots)
            .keys()
            .map(|k| k.url_id().to_owned())
            .collect();
        assert!(held.contains(&"img0".to_owned()) && held.contains(&"img4".to_owned()));
        assert!(!held.contains(&"img1".to_owned()), "{held:?}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_cache_of_size_zero_always_loads() {
        let (store, dir) = store().await;
        let cache = Snapshots::new(0);
        let key = ImageKey::new("t", "img");
        for _ in 0..3 {
            cache
                .get(store.as_ref(), &key, || load(&store, &key))
                .await
                .unwrap();
        }
        assert_eq!(cache.loads.load(Relaxed), 3);
        assert_eq!(cache.usage(), (0, 0));
        let _ = std::fs::remove_dir_all(dir);
    }
}
