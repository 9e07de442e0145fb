//! Recording: latency histograms, counters, errors by code, per-second intervals.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are recorded in microseconds, from 1 µs to 5 minutes, to 3 significant figures.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 300_000_000, 3).expect("valid histogram bounds")
}

/// What one thread saw during a run (or one second of it).
#[derive(Clone)]
pub struct Recorder {
    pub latency_us: Histogram<u64>,
    pub sent: u64,
    pub delivered: u64,
    pub expected: u64,
    pub errors: BTreeMap<String, u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            latency_us: new_histogram(),
            sent: 0,
            delivered: 0,
            expected: 0,
            errors: BTreeMap::new(),
        }
    }
}

impl Recorder {
    pub fn latency(&mut self, us: u64) {
        self.latency_us.saturating_record(us.max(1));
    }

    pub fn error(&mut self, code: &str) {
        *self.errors.entry(code.to_owned()).or_default() += 1;
    }

    pub fn merge(&mut self, other: &Recorder) {
        // Both use the same bounds, so adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
        self.sent += other.sent;
        self.delivered += other.delivered;
        self.expected += other.expected;
        for (code, n) in &other.errors {
            *self.errors.entry(code.clone()).or_default() += n;
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// One second of a run, for the progress line and the plot.
#[derive(Clone)]
pub struct Interval {
    pub second: u64,
    pub rec: Recorder,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut r = Recorder::default();
        for us in 1..=1000u64 {
            r.latency(us * 1000); // 1 ms .. 1000 ms
        }
        let p = Percentiles::of(&r.latency_us);
        assert!((p.p50 - 500.0).abs() < 1.0, "{p:?}");
        assert!((p.p99 - 990.0).abs() < 1.5, "{p:?}");
        assert!((p.max - 1000.0).abs() < 1.0, "{p:?}");
    }

    #[test]
    fn merging_adds_everything() {
        let mut a = Recorder::default();
        a.latency(100);
        a.sent = 2;
        a.error("ER_BUSY");
        let mut b = Recorder::default();
        b.latency(300);
        b.delivered = 5;
        b.error("ER_BUSY");
        b.error("ER_RATE_LIMITED");
        a.merge(&b);
        assert_eq!(a.latency_us.len(), 2);
        assert_eq!((a.sent, a.delivered), (2, 5));
        assert_eq!(a.errors["ER_BUSY"], 2);
        assert_eq!(a.errors["ER_RATE_LIMITED"], 1);
        assert_eq!(
            Percentiles::of(&Recorder::default().latency_us),
            Percentiles::default()
        );
    }

    #[test]
    fn zero_and_huge_latencies_are_kept_in_range() {
        let mut r = Recorder::default();
        r.latency(0);
        r.latency(u64::MAX);
        assert_eq!(r.latency_us.len(), 2);
    }
}
