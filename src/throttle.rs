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

/// A token bucket per user: `rate` tokens a second, at most `burst` saved.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<i64, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(rate: f64, burst: u32) -> RateLimiter {
        RateLimiter {
            rate,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `user_id`; false when the bucket is empty.
    pub fn allow(&self, user_id: i64) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        if buckets.len() > SWEEP_ABOVE {
            // Full buckets carry no state worth keeping.
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (tokens, at) = buckets.entry(user_id).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
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
    fn bucket_allows_a_burst_then_the_rate() {
        let limiter = RateLimiter::new(100.0, 5);
        assert_eq!((0..10).filter(|_| limiter.allow(1)).count(), 5);
        assert!(limiter.allow(2), "users have their own buckets");
        std::thread::sleep(Duration::from_millis(25));
        let refilled = (0..10).filter(|_| limiter.allow(1)).count();
        assert!((1..=4).contains(&refilled), "{refilled}");
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
