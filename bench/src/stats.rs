//! Latency histogram (log-linear, about 1.6 % resolution) and per-connection
//! counters, merged after a run.

use serde::Serialize;

const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS; // 64
const LINEAR: u64 = SUB * 2; // values below 128 are exact

#[derive(Clone, Default)]
pub struct Hist {
    counts: Vec<u64>,
    pub n: u64,
    pub max: u64,
    pub sum: u64,
}

fn index(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros() - SUB_BITS; // >= 1
    let mant = v >> exp; // in [64, 128)
    (LINEAR + (exp as u64 - 1) * SUB + (mant - SUB)) as usize
}

/// The highest value that falls in bucket `i` (quantiles report this, so
/// they never understate).
fn upper(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let exp = (i - LINEAR) / SUB + 1;
    let mant = (i - LINEAR) % SUB + SUB;
    ((mant + 1) << exp) - 1
}

impl Hist {
    pub fn record(&mut self, v: u64) {
        let i = index(v);
        if self.counts.len() <= i {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += 1;
        self.n += 1;
        self.sum += v;
        self.max = self.max.max(v);
    }

    pub fn merge(&mut self, o: &Hist) {
        if self.counts.len() < o.counts.len() {
            self.counts.resize(o.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.n += o.n;
        self.sum += o.sum;
        self.max = self.max.max(o.max);
    }

    pub fn quantile(&self, q: f64) -> u64 {
        if self.n == 0 {
            return 0;
        }
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper(i).min(self.max);
            }
        }
        self.max
    }

    pub fn summary(&self) -> Latency {
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            samples: self.n,
            p50_ms: ms(self.quantile(0.50)),
            p99_ms: ms(self.quantile(0.99)),
            p999_ms: ms(self.quantile(0.999)),
            max_ms: ms(self.max),
            mean_ms: self.sum.checked_div(self.n).map_or(0.0, ms),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub samples: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// What a subscriber saw.
#[derive(Clone, Default)]
pub struct ConnStats {
    /// Events delivered (all of them, warm-up included).
    pub events: u64,
    /// Events of the measured phase.
    pub measured: u64,
    /// Frames that carried at least one event, and their wire bytes.
    pub event_frames: u64,
    pub event_bytes: u64,
    /// Frames of the measured phase carrying events, and their wire bytes.
    pub measured_frames: u64,
    pub measured_bytes: u64,
    pub other_frames: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub unexpected: u64,
    pub errors: Vec<String>,
    pub hist: Hist,
    /// When this client had caught up after its reconnect (µs since start).
    pub caught_up_us: Option<u64>,
    pub not_recovered: u64,
    /// Resubscribes answered `recovered: true`.
    pub recovered: u64,
    pub reconnects: u64,
    /// Subscribers that ended before their image's last seq.
    pub short: u64,
}

impl ConnStats {
    pub fn merge(&mut self, o: &ConnStats) {
        self.events += o.events;
        self.measured += o.measured;
        self.event_frames += o.event_frames;
        self.event_bytes += o.event_bytes;
        self.measured_frames += o.measured_frames;
        self.measured_bytes += o.measured_bytes;
        self.other_frames += o.other_frames;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
        self.unexpected += o.unexpected;
        for e in &o.errors {
            if self.errors.len() < 10 {
                self.errors.push(e.clone());
            }
        }
        self.hist.merge(&o.hist);
        self.not_recovered += o.not_recovered;
        self.recovered += o.recovered;
        self.reconnects += o.reconnects;
        self.short += o.short;
    }

    pub fn error(&mut self, e: impl Into<String>) {
        if self.errors.len() < 10 {
            self.errors.push(e.into());
        }
    }
}

/// The median of some numbers (0 for none).
pub fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for v in (0..2_000_000u64).step_by(97) {
            let i = index(v);
            assert!(i >= last);
            last = i;
            assert!(upper(i) >= v);
            assert!(upper(i) as f64 <= v as f64 * 1.032 + 1.0);
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Hist::default();
        for v in 1..=1000 {
            h.record(v);
        }
        let p50 = h.quantile(0.5);
        assert!((500..=508).contains(&p50), "{p50}");
        assert!(h.quantile(0.99) >= 990 && h.quantile(0.99) <= 1000);
        assert_eq!(h.quantile(1.0), 1000);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
    }
}
