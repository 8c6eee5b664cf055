//! Rate limits on one node: per user (writes) and per client address
//! (session creation, anonymous writes, failed operator-key and
//! tenant-secret attempts). Buckets are GCRA, by `governor`; each keyed map
//! is bounded ([`BUCKETS_MAX`], [`BUCKETS_HARD_MAX`]).
//!
//! A client's address is the TCP peer's, or, behind `--trusted-proxies N`
//! reverse proxies, the one the outermost trusted proxy saw (see
//! [`client_address`]). IPv6 addresses are limited by their /64, the block
//! one subscriber usually holds, so rotating addresses inside it gains
//! nothing.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};

use crate::config::Config;
use crate::error::AppError;

/// Remembered keys per limiter past which the idle ones are forgotten (a
/// scan, at most once a second).
const BUCKETS_MAX: usize = 100_000;
/// Keys per limiter past which all are forgotten at once: the hard bound on
/// its memory (about 64 bytes a key), whatever the request rate.
const BUCKETS_HARD_MAX: usize = 4 * BUCKETS_MAX;

type Keyed<K> = governor::DefaultKeyedRateLimiter<K>;

/// `burst` at once, then `per_minute` a minute, per key. `per_minute` 0 is
/// unlimited; a `burst` of 0 counts as 1.
pub struct RateLimiter<K: Hash + Eq + Clone = String> {
    /// `None`: unlimited.
    limiter: Option<std::sync::RwLock<Keyed<K>>>,
    quota: governor::Quota,
    created: Instant,
    /// Milliseconds from `created` to the last scan for idle keys.
    scanned: std::sync::atomic::AtomicU64,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    pub fn new(per_minute: u32, burst: u32) -> Self {
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let rate = NonZeroU32::new(per_minute);
        let quota = governor::Quota::per_minute(rate.unwrap_or(NonZeroU32::MIN)).allow_burst(burst);
        RateLimiter {
            limiter: rate.map(|_| std::sync::RwLock::new(governor::RateLimiter::keyed(quota))),
            quota,
            created: Instant::now(),
            scanned: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Takes one cell; `Err(wait)` when the bucket is empty, `wait` being
    /// how long until the next cell.
    pub fn take(&self, key: &K) -> Result<(), Duration> {
        let Some(lock) = &self.limiter else {
            return Ok(());
        };
        let (verdict, len) = {
            let l = lock.read().unwrap_or_else(|p| p.into_inner());
            let verdict = l
                .check_key(key)
                .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()));
            (verdict, l.len())
        };
        if len >= BUCKETS_MAX {
            self.bound(lock, len);
        }
        verdict
    }

    /// Keeps the key map bounded: idle keys are forgotten when there are
    /// [`BUCKETS_MAX`] (at most once a second, so a flood of fresh keys does
    /// not make every request scan them); all at once at
    /// [`BUCKETS_HARD_MAX`].
    fn bound(&self, lock: &std::sync::RwLock<Keyed<K>>, len: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        if len >= BUCKETS_HARD_MAX {
            *lock.write().unwrap_or_else(|p| p.into_inner()) =
                governor::RateLimiter::keyed(self.quota);
            return;
        }
        let now = u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.scanned.load(Relaxed);
        if now.saturating_sub(last) >= 1000
            && self
                .scanned
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            let l = lock.read().unwrap_or_else(|p| p.into_inner());
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    /// [`take`](Self::take) with the wait in whole seconds, at least 1, as
    /// `Retry-After` wants it.
    pub fn check(&self, key: &K) -> Result<(), u64> {
        self.take(key).map_err(whole_seconds)
    }

    /// Keys remembered now.
    pub fn len(&self) -> usize {
        self.limiter
            .as_ref()
            .map_or(0, |l| l.read().unwrap_or_else(|p| p.into_inner()).len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn whole_seconds(d: Duration) -> u64 {
    (d.as_secs_f64().ceil() as u64).max(1)
}

/// What the rate limits know a client by: its IPv4 address, or the /64 of
/// its IPv6 address (IPv4-mapped IPv6 counts as IPv4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    pub fn of(ip: IpAddr) -> ClientKey {
        match ip {
            IpAddr::V4(v4) => ClientKey(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    ClientKey(IpAddr::V6(Ipv6Addr::from(prefix)))
                }
            },
        }
    }
}

/// The client's address: the TCP `peer` with no trusted proxy; behind
/// `trusted` proxies, the `X-Forwarded-For` entry that many places from
/// the right (each proxy appends the address it received from, so the
/// last entry is what the nearest proxy saw, and everything left of the
/// outermost trusted proxy's entry is the client's to forge and is never
/// read). With fewer entries than proxies, the leftmost (every entry was
/// then written by a trusted proxy). `xff` holds the header's values in
/// order. When the chosen entry is not an IP address (with or without a
/// port), or there is no header, the peer. `None` only when there is no
/// peer and no usable entry.
///
/// The rule is the one MDN's `X-Forwarded-For` page recommends for a known
/// number of trusted proxies ("rightmost after N").
pub fn client_address<'a>(
    peer: Option<IpAddr>,
    xff: impl Iterator<Item = &'a str>,
    trusted: u32,
) -> Option<IpAddr> {
    let n = usize::try_from(trusted).unwrap_or(usize::MAX);
    if n == 0 {
        return peer;
    }
    // The last `n` entries, and the first: nothing else is ever needed,
    // however long the header.
    let mut last: std::collections::VecDeque<&str> = std::collections::VecDeque::new();
    let mut first = None;
    for entry in xff.flat_map(|v| v.split(',')).map(str::trim) {
        first.get_or_insert(entry);
        if last.len() == n {
            last.pop_front();
        }
        last.push_back(entry);
    }
    let chosen = if last.len() == n {
        last.front().copied()
    } else {
        first
    };
    chosen
        .and_then(|e| {
            e.parse::<IpAddr>()
                .or_else(|_| e.parse::<SocketAddr>().map(|s| s.ip()))
                .ok()
        })
        .or(peer)
}

/// The TCP peer of the connection a request came on; the accept loop puts
/// it in every request's extensions.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// The limits' key for a request from `peer` with these `X-Forwarded-For`
/// values (see [`client_address`]); the unspecified address when there is
/// neither.
pub fn client_key<'a>(
    peer: Option<&Peer>,
    xff: impl Iterator<Item = &'a str>,
    trusted: u32,
) -> ClientKey {
    let ip = client_address(peer.map(|p| p.0.ip()), xff, trusted)
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    ClientKey::of(ip)
}

/// Failed operator-key and tenant-secret attempts per address. The
/// `burst`-th failure at once (then one per `60 / per_minute` seconds)
/// refuses the address with 429, right secret or not, until a failure is
/// allowed again: a guesser has exactly `burst` guesses and learns nothing
/// while refused.
pub struct AuthFailures {
    /// 0: no limit.
    per_minute: u32,
    /// `burst - 1` cells: the failure that finds it empty is the last one
    /// allowed. `None` when `burst` is 1: every failure refuses.
    bucket: Option<RateLimiter<ClientKey>>,
    refused_until: Mutex<HashMap<ClientKey, Instant>>,
}

impl AuthFailures {
    fn new(per_minute: u32, burst: u32) -> Self {
        let cells = burst.saturating_sub(1);
        AuthFailures {
            per_minute,
            bucket: (cells > 0).then(|| RateLimiter::new(per_minute, cells)),
            refused_until: Mutex::default(),
        }
    }

    /// `Err(seconds)` while the address is refused.
    pub fn check(&self, key: ClientKey) -> Result<(), u64> {
        let mut refused = super::lock(&self.refused_until);
        match refused.get(&key) {
            Some(until) => {
                let now = Instant::now();
                if *until > now {
                    Err(whole_seconds(*until - now))
                } else {
                    refused.remove(&key);
                    Ok(())
                }
            }
            None => Ok(()),
        }
    }

    /// Counts a failed attempt; `Err(seconds)` when it was the last one
    /// allowed, so this answer and the next ones until then are refusals.
    pub fn failed(&self, key: ClientKey) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let wait = match &self.bucket {
            Some(b) => match b.take(&key) {
                Ok(()) => return Ok(()),
                Err(wait) => wait,
            },
            None => Duration::from_secs_f64(60.0 / f64::from(self.per_minute)),
        };
        let mut refused = super::lock(&self.refused_until);
        if refused.len() >= BUCKETS_MAX {
            let now = Instant::now();
            refused.retain(|_, until| *until > now);
            if refused.len() >= BUCKETS_MAX {
                refused.clear();
            }
        }
        refused.insert(key, Instant::now() + wait);
        Err(whole_seconds(wait))
    }
}

impl AuthFailures {
    /// Runs a credential check for a client: refused with 429 while the
    /// address is out of failures (before `check` runs, so a refused
    /// guess costs nothing and tells nothing); a 401 from `check` counts
    /// as a failure.
    pub async fn guard<T>(
        &self,
        key: ClientKey,
        check: impl std::future::Future<Output = Result<T, AppError>>,
    ) -> Result<T, AppError> {
        self.check(key).map_err(AppError::too_many_failures)?;
        match check.await {
            Err(AppError::Unauthorized(m)) => {
                self.failed(key).map_err(AppError::too_many_failures)?;
                Err(AppError::Unauthorized(m))
            }
            other => other,
        }
    }
}

/// Open WebSockets per client address, at most `max` each (0: no limit).
/// Only addresses with an open socket are remembered, so the map is
/// bounded by `--max-connections`.
pub struct OpenPerAddress {
    max: u32,
    open: Mutex<HashMap<ClientKey, u32>>,
}

/// One open WebSocket of an address; closing it (dropping this) frees the
/// place.
pub struct OpenSlot {
    of: Arc<OpenPerAddress>,
    key: ClientKey,
}

impl OpenPerAddress {
    fn new(max: u32) -> Arc<Self> {
        Arc::new(OpenPerAddress {
            max,
            open: Mutex::default(),
        })
    }

    /// A place for one more socket of `key`; `None` when it holds `max`.
    pub fn open(self: &Arc<Self>, key: ClientKey) -> Option<OpenSlot> {
        let mut open = super::lock(&self.open);
        let n = open.entry(key).or_insert(0);
        if self.max != 0 && *n >= self.max {
            return None;
        }
        *n = n.saturating_add(1);
        Some(OpenSlot {
            of: Arc::clone(self),
            key,
        })
    }

    /// Sockets `key` holds open now.
    pub fn count(&self, key: ClientKey) -> u32 {
        super::lock(&self.open).get(&key).copied().unwrap_or(0)
    }
}

impl Drop for OpenSlot {
    fn drop(&mut self) {
        let mut open = super::lock(&self.of.open);
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// The per-address limits of one node.
pub struct AddressLimits {
    /// `POST /api/v1/sessions`, anonymous or SSO.
    pub sessions: RateLimiter<ClientKey>,
    /// REST mutations by anonymous users, whatever their session.
    pub anonymous_writes: RateLimiter<ClientKey>,
    pub auth_failures: AuthFailures,
    /// Open WebSockets.
    pub websockets: Arc<OpenPerAddress>,
}

impl AddressLimits {
    pub fn new(c: &Config) -> Self {
        AddressLimits {
            sessions: RateLimiter::new(c.sessions_per_address_per_minute, c.session_burst),
            anonymous_writes: RateLimiter::new(
                c.anonymous_writes_per_address_per_minute,
                c.anonymous_write_burst,
            ),
            auth_failures: AuthFailures::new(
                c.auth_failures_per_address_per_minute,
                c.auth_failure_burst,
            ),
            websockets: OpenPerAddress::new(c.websockets_per_address),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_refuses_with_a_wait() {
        let r = RateLimiter::new(60, 3);
        for _ in 0..3 {
            assert_eq!(r.check(&"a".to_owned()), Ok(()));
        }
        assert_eq!(r.check(&"a".to_owned()), Err(1));
        let slow = RateLimiter::new(1, 1);
        assert_eq!(slow.check(&"a".to_owned()), Ok(()));
        assert!(matches!(slow.check(&"a".to_owned()), Err(s) if (59..=60).contains(&s)));
        assert_eq!(r.check(&"b".to_owned()), Ok(()));
        let unlimited = RateLimiter::new(0, 1);
        for _ in 0..100 {
            assert_eq!(unlimited.check(&"a".to_owned()), Ok(()));
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse()
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }

    #[test]
    fn the_client_is_the_entry_the_outermost_trusted_proxy_saw() {
        let peer = Some(ip("10.0.0.2"));
        let xff = ["203.0.113.9, 198.51.100.7", "10.0.0.1"];
        assert_eq!(client_address(peer, xff.into_iter(), 0), peer);
        assert_eq!(
            client_address(peer, xff.into_iter(), 1),
            Some(ip("10.0.0.1"))
        );
        assert_eq!(
            client_address(peer, xff.into_iter(), 2),
            Some(ip("198.51.100.7"))
        );
        // A forged leftmost entry is only believed when every proxy is trusted.
        assert_eq!(
            client_address(peer, xff.into_iter(), 3),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(
            client_address(peer, xff.into_iter(), 9),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(
            client_address(peer, ["[2001:db8::1]:443, 192.0.2.1:80"].into_iter(), 2),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(client_address(peer, [].into_iter(), 1), peer);
        // Entries left of the trusted ones are never read: garbage there
        // changes nothing, and neither does a long forged list.
        assert_eq!(
            client_address(peer, ["nonsense, 1.2.3.4"].into_iter(), 1),
            Some(ip("1.2.3.4"))
        );
        let forged = (0..200)
            .map(|i| format!("10.0.{}.{}", i / 250, i % 250))
            .collect::<Vec<_>>()
            .join(", ");
        let xff = [forged.as_str(), "9.9.9.9"];
        assert_eq!(
            client_address(peer, xff.into_iter(), 1),
            Some(ip("9.9.9.9"))
        );
        // A proxy that wrote something other than an address: the peer.
        assert_eq!(
            client_address(peer, ["1.2.3.4, unknown"].into_iter(), 1),
            peer
        );
        assert_eq!(client_address(None, [].into_iter(), 1), None);
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_64_block() {
        assert_eq!(
            ClientKey::of(ip("2001:db8:1:2:aaaa::1")),
            ClientKey::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            ClientKey::of(ip("2001:db8:1:2::1")),
            ClientKey::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            ClientKey::of(ip("::ffff:192.0.2.1")),
            ClientKey::of(ip("192.0.2.1"))
        );
    }

    #[test]
    fn many_distinct_keys_stay_bounded() {
        let r: RateLimiter<u64> = RateLimiter::new(1, 1);
        for k in 0..(BUCKETS_HARD_MAX as u64 + 50_000) {
            let _ = r.take(&k);
        }
        assert!(r.len() < BUCKETS_HARD_MAX, "{} keys", r.len());
        assert!(!r.is_empty());
        assert_eq!(r.check(&7), Ok(()), "the keys were forgotten at once");
    }

    #[test]
    fn an_address_holds_at_most_its_sockets_and_closing_one_frees_a_place() {
        let w = OpenPerAddress::new(2);
        let a = ClientKey::of(ip("192.0.2.1"));
        let first = w.open(a);
        let second = w.open(a);
        assert!(first.is_some() && second.is_some());
        assert!(w.open(a).is_none(), "a third socket");
        assert!(w.open(ClientKey::of(ip("192.0.2.2"))).is_some());
        drop(first);
        assert_eq!(w.count(a), 1);
        let third = w.open(a);
        assert!(third.is_some(), "a place was freed");
        drop((second, third));
        assert_eq!(w.count(a), 0);
        assert!(
            super::super::lock(&w.open).len() <= 1,
            "closed addresses are forgotten"
        );
    }

    #[test]
    fn an_address_out_of_failures_is_refused_even_with_the_right_secret() {
        let f = AuthFailures::new(1, 3);
        let a = ClientKey::of(ip("192.0.2.1"));
        let b = ClientKey::of(ip("192.0.2.2"));
        for _ in 0..2 {
            assert_eq!(f.check(a), Ok(()));
            assert_eq!(f.failed(a), Ok(()));
        }
        assert_eq!(f.check(a), Ok(()));
        assert!(f.failed(a).is_err(), "the third failure is the last");
        assert!(matches!(f.check(a), Err(s) if (50..=60).contains(&s)));
        assert_eq!(f.check(b), Ok(()), "other addresses are not");
        let unlimited = AuthFailures::new(0, 1);
        for _ in 0..100 {
            assert_eq!(unlimited.failed(a), Ok(()));
        }
        assert_eq!(unlimited.check(a), Ok(()));
        let one = AuthFailures::new(10, 1);
        assert!(
            matches!(one.failed(a), Err(6)),
            "a burst of 1: the first failure refuses"
        );
        assert!(one.check(a).is_err());
    }
}
