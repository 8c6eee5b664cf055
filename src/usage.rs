//! Per-tenant live counters: connections, deliveries and bytes, creations.
//!
//! The delivery path only bumps atomics; a periodic flush (and shutdown) adds
//! the accumulated deltas to the per-day rows in the store. So metering costs
//! no database write per message, and a crash loses at most one flush period.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::store::{Store, UsageCounts, UsageDelta};

#[derive(Debug, Default)]
pub struct TenantLive {
    pub connections: AtomicU64,
    pub subscriptions: AtomicU64,
    /// Since the last flush.
    messages: AtomicU64,
    bandwidth: AtomicU64,
    conversations: AtomicU64,
    comments: AtomicU64,
    peak: AtomicU64,
    /// Since start, for `/metrics`.
    pub messages_total: AtomicU64,
    pub bytes_total: AtomicU64,
}

impl TenantLive {
    /// One frame carrying `messages` messages in `bytes` payload bytes.
    pub fn delivered(&self, messages: u64, bytes: u64) {
        self.messages.fetch_add(messages, Relaxed);
        self.bandwidth.fetch_add(bytes, Relaxed);
        self.messages_total.fetch_add(messages, Relaxed);
        self.bytes_total.fetch_add(bytes, Relaxed);
    }

    pub fn created(&self, conversations: u64, comments: u64) {
        self.conversations.fetch_add(conversations, Relaxed);
        self.comments.fetch_add(comments, Relaxed);
    }

    pub fn connected(&self) {
        let now = self.connections.fetch_add(1, Relaxed) + 1;
        self.peak.fetch_max(now, Relaxed);
    }

    /// A connection count seen across all nodes.
    pub fn observe_connections(&self, global: u64) {
        self.peak.fetch_max(global, Relaxed);
    }

    pub fn disconnected(&self) {
        self.connections.fetch_sub(1, Relaxed);
    }

    fn take(&self) -> UsageCounts {
        UsageCounts {
            messages: self.messages.swap(0, Relaxed),
            bandwidth: self.bandwidth.swap(0, Relaxed),
            conversations: self.conversations.swap(0, Relaxed),
            comments: self.comments.swap(0, Relaxed),
            // The next period's peak starts from who is connected now.
            peak_connections: self.peak.swap(self.connections.load(Relaxed), Relaxed),
            // Counted by the store as each upload is recorded.
            upload_bytes: 0,
        }
    }

    fn put_back(&self, c: &UsageCounts) {
        self.messages.fetch_add(c.messages, Relaxed);
        self.bandwidth.fetch_add(c.bandwidth, Relaxed);
        self.conversations.fetch_add(c.conversations, Relaxed);
        self.comments.fetch_add(c.comments, Relaxed);
        self.peak.fetch_max(c.peak_connections, Relaxed);
    }
}

#[derive(Debug, Default)]
pub struct Usage {
    tenants: Mutex<HashMap<String, Arc<TenantLive>>>,
}

impl Usage {
    pub fn tenant(&self, id: &str) -> Arc<TenantLive> {
        let mut t = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(t.entry(id.to_owned()).or_default())
    }

    pub fn all(&self) -> Vec<(String, Arc<TenantLive>)> {
        let t = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        t.iter().map(|(k, v)| (k.clone(), Arc::clone(v))).collect()
    }

    /// Writes the deltas since the last flush to the store, dated today (UTC).
    /// On failure the deltas are kept for the next try.
    pub async fn flush(&self, store: &dyn Store) -> crate::store::Result<()> {
        let day = today();
        let live = self.all();
        let deltas: Vec<(Arc<TenantLive>, UsageDelta)> = live
            .into_iter()
            .map(|(tenant_id, l)| {
                let counts = l.take();
                (
                    l,
                    UsageDelta {
                        tenant_id,
                        day: day.clone(),
                        counts,
                    },
                )
            })
            .filter(|(_, d)| !d.counts.is_zero())
            .collect();
        if deltas.is_empty() {
            return Ok(());
        }
        let rows: Vec<UsageDelta> = deltas.iter().map(|(_, d)| d.clone()).collect();
        if let Err(e) = store.add_usage(&rows).await {
            for (l, d) in &deltas {
                l.put_back(&d.counts);
            }
            return Err(e);
        }
        Ok(())
    }
}

/// Calendar dates in the usage API: YYYY-MM-DD, ISO 8601's calendar date.
const DAY: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");

/// Today's UTC date as YYYY-MM-DD.
pub fn today() -> String {
    format_day(time::OffsetDateTime::now_utc().date())
}

/// Whole seconds until the next midnight UTC, when daily quotas reset
/// (1..=86400).
pub fn seconds_to_midnight() -> u64 {
    let now = time::OffsetDateTime::now_utc();
    let into_day =
        u64::from(now.hour()) * 3600 + u64::from(now.minute()) * 60 + u64::from(now.second());
    86_400u64.saturating_sub(into_day).max(1)
}

/// A date as YYYY-MM-DD.
pub fn format_day(d: time::Date) -> String {
    d.format(DAY).unwrap_or_default()
}

/// YYYY-MM-DD → the date; `None` unless a real date.
/// A `YYYY-MM-DD` date: exactly four digits of year (years 0000–9999), no
/// sign.
pub fn parse_day(s: &str) -> Option<time::Date> {
    let shape = s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    shape.then(|| time::Date::parse(s, DAY).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        let leap = parse_day("2024-02-29").expect("a leap day");
        assert_eq!(format_day(leap), "2024-02-29");
        assert_eq!(parse_day("2026-02-29"), None);
        assert_eq!(parse_day("2026-13-01"), None);
        assert_eq!(parse_day("26-01-01"), None);
        assert_eq!(parse_day("-9999-01-01"), None);
        assert_eq!(parse_day("+2026-01-01"), None);
        assert_eq!(parse_day("2026-1-01"), None);
    }

    #[test]
    fn peaks_restart_from_the_current_count_after_a_take() {
        let l = TenantLive::default();
        l.connected();
        l.connected();
        l.disconnected();
        assert_eq!(l.take().peak_connections, 2);
        assert_eq!(l.take().peak_connections, 1);
    }
}
