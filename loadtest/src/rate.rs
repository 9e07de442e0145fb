//! Open-loop pacing: when each operation is *meant* to happen.
//!
//! Operation `k` of a stream running at `rate` per second is due at
//! `start + k / rate`, whatever happened to the ones before it. Latency is
//! measured from that intended time (as wrk2 does), so a stalled server is
//! charged for the operations that had to wait, instead of the load
//! generator quietly slowing down (coordinated omission).

/// A constant-rate schedule in microseconds since the run's epoch.
#[derive(Clone, Debug)]
pub struct Schedule {
    start_us: u64,
    rate: f64,
    next: u64,
}

impl Schedule {
    pub fn new(start_us: u64, rate: f64) -> Schedule {
        Schedule {
            start_us,
            rate,
            next: 0,
        }
    }

    /// Intended time of operation `k`.
    pub fn due(&self, k: u64) -> u64 {
        self.start_us + (k as f64 * 1_000_000.0 / self.rate) as u64
    }

    /// The next operation's intended time, if it is due by `now_us` and
    /// before `end_us`; advances past it.
    pub fn take_due(&mut self, now_us: u64, end_us: u64) -> Option<u64> {
        if self.rate <= 0.0 {
            return None;
        }
        let due = self.due(self.next);
        if due <= now_us && due < end_us {
            self.next += 1;
            Some(due)
        } else {
            None
        }
    }

    /// When the next operation is due (for the poll timeout).
    pub fn next_due(&self) -> Option<u64> {
        (self.rate > 0.0).then(|| self.due(self.next))
    }

    /// Operations issued so far.
    pub fn issued(&self) -> u64 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_spaced_by_the_rate() {
        let s = Schedule::new(1_000, 1000.0);
        assert_eq!(s.due(0), 1_000);
        assert_eq!(s.due(1), 2_000);
        assert_eq!(s.due(1000), 1_001_000);
    }

    #[test]
    fn a_late_caller_gets_every_missed_operation_with_its_own_time() {
        let mut s = Schedule::new(0, 100.0); // one per 10 ms
        let mut got = Vec::new();
        while let Some(t) = s.take_due(35_000, u64::MAX) {
            got.push(t);
        }
        assert_eq!(got, vec![0, 10_000, 20_000, 30_000]);
        assert_eq!(s.next_due(), Some(40_000));
        assert_eq!(s.take_due(39_999, u64::MAX), None);
    }

    #[test]
    fn nothing_is_due_at_or_after_the_end() {
        let mut s = Schedule::new(0, 1000.0);
        let n = std::iter::from_fn(|| s.take_due(u64::MAX, 5_000)).count();
        assert_eq!(n, 5);
        assert_eq!(Schedule::new(0, 0.0).take_due(u64::MAX, u64::MAX), None);
    }
}
