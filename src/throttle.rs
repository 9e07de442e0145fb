//! Throttling of failed log-ins, per login and per source address.
//!
//! Shared by all workers. Each key keeps the times of its recent failures;
//! once a key has `limit` failures inside the window, attempts for it are
//! refused until the oldest failure leaves the window.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Above this many tracked keys, expired entries are swept on insert.
const SWEEP_ABOVE: usize = 10_000;

/// Recent failures per key within a sliding window.
struct FailureWindow<K> {
    limit: u32,
    window: Duration,
    failures: Mutex<HashMap<K, VecDeque<Instant>>>,
}

impl<K: Hash + Eq + Clone> FailureWindow<K> {
    fn new(limit: u32, window: Duration) -> Self {
        FailureWindow {
            limit,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn is_blocked(&self, key: &K, now: Instant) -> bool {
        let mut map = self.failures.lock();
        let Some(times) = map.get_mut(key) else {
            return false;
        };
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
        times.len() >= self.limit as usize
    }

    fn record(&self, key: K, now: Instant) {
        let mut map = self.failures.lock();
        if map.len() > SWEEP_ABOVE {
            let window = self.window;
            map.retain(|_, times| times.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        let times = map.entry(key).or_default();
        times.push_back(now);
        while times.len() > self.limit as usize {
            times.pop_front();
        }
    }

    fn clear(&self, key: &K) {
        self.failures.lock().remove(key);
    }
}

/// The log-in throttle: a failure window per login and one per address.
pub struct LoginThrottle {
    by_login: FailureWindow<String>,
    by_addr: FailureWindow<IpAddr>,
}

impl LoginThrottle {
    pub fn new(per_login: u32, per_addr: u32, window: Duration) -> LoginThrottle {
        LoginThrottle {
            by_login: FailureWindow::new(per_login, window),
            by_addr: FailureWindow::new(per_addr, window),
        }
    }

    /// Whether a log-in attempt for `login` from `addr` must be refused now.
    pub fn is_blocked(&self, login: &str, addr: IpAddr) -> bool {
        let now = Instant::now();
        self.by_login.is_blocked(&login.to_owned(), now) || self.by_addr.is_blocked(&addr, now)
    }

    pub fn record_failure(&self, login: &str, addr: IpAddr) {
        let now = Instant::now();
        self.by_login.record(login.to_owned(), now);
        self.by_addr.record(addr, now);
    }

    /// A successful log-in forgives that login's failures (not the address's).
    pub fn record_success(&self, login: &str) {
        self.by_login.clear(&login.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_limit_and_recovers_after_window() {
        let addr: IpAddr = [10, 0, 0, 1].into();
        let t = LoginThrottle::new(3, 100, Duration::from_millis(50));
        for _ in 0..3 {
            assert!(!t.is_blocked("bob", addr));
            t.record_failure("bob", addr);
        }
        assert!(t.is_blocked("bob", addr));
        assert!(!t.is_blocked("alice", addr), "other logins are not affected");
        std::thread::sleep(Duration::from_millis(60));
        assert!(!t.is_blocked("bob", addr));
    }

    #[test]
    fn address_limit_spans_logins() {
        let addr: IpAddr = [10, 0, 0, 2].into();
        let t = LoginThrottle::new(100, 2, Duration::from_secs(60));
        t.record_failure("a", addr);
        t.record_failure("b", addr);
        assert!(t.is_blocked("c", addr));
        assert!(!t.is_blocked("c", [10, 0, 0, 3].into()));
    }
}
