//! Rate limits and throttles, every one with bounded memory.
//!
//! - [`RateLimiter`]: a token bucket per user (messages, searches, rooms...).
//! - [`AuthGate`]: sign-ups and password log-ins per source address (IPv6
//!   by /64) and in total, checked by the reactor before any hashing.
//! - [`LoginThrottle`]: failed log-ins, so that a guesser is stopped without
//!   locking out the owner of the login.
//!
//! Everything keyed by client input has a fixed cap and is swept once per
//! window, and keys are validated (or reduced to an address) before they
//! are stored: a flood of distinct keys costs the attacker, not our memory.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Most keys any one table holds; new keys beyond it are not tracked.
pub const MAX_KEYS: usize = 100_000;

/// The part of an address that limits apply to: IPv4 whole, IPv6 by its /64
/// (one host is commonly given a whole /64), IPv4-mapped IPv6 as IPv4.
pub fn addr_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let mut seg = v6.segments();
            seg[4..].fill(0);
            IpAddr::V6(seg.into())
        }
    }
}

/// A sustained rate with a burst allowance.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    pub per_sec: f64,
    pub burst: f64,
}

impl Rate {
    /// A `share`-th of this rate and burst (at least one token of burst).
    pub fn share(self, share: u32) -> Rate {
        if share <= 1 {
            return self;
        }
        let n = f64::from(share);
        Rate {
            per_sec: self.per_sec / n,
            burst: (self.burst / n).max(1.0),
        }
    }

    pub fn new(per_sec: f64, burst: u32) -> Rate {
        Rate {
            per_sec: per_sec.max(f64::MIN_POSITIVE),
            burst: f64::from(burst.max(1)),
        }
    }

    /// `per_min` a minute, with a burst of ten seconds' worth (at least one).
    pub fn per_minute(per_min: f64) -> Rate {
        let per_sec = per_min / 60.0;
        Rate::new(per_sec, (per_sec * 10.0).ceil().max(1.0) as u32)
    }
}

/// One token bucket.
#[derive(Clone, Copy, Debug)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
    /// A take was refused since the bucket was last full: an offender is
    /// reported once, until it has calmed down enough to fill it again.
    refusing: bool,
}

/// What a refused take reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    /// When the next take would succeed.
    pub retry_after: Duration,
    /// True for the first refusal after allowed takes: log this one.
    pub first: bool,
}

impl Bucket {
    pub fn full(rate: Rate, now: Instant) -> Bucket {
        Bucket {
            tokens: rate.burst,
            at: now,
            refusing: false,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_sec).min(rate.burst);
        self.at = now;
        if self.tokens >= rate.burst {
            self.refusing = false;
        }
    }

    /// Whether a take now would succeed, without taking.
    pub fn would_allow(&self, rate: Rate, now: Instant) -> bool {
        let mut b = *self;
        b.refill(rate, now);
        b.tokens >= 1.0
    }

    /// Takes one token, or says how long until one is there.
    pub fn take(&mut self, rate: Rate, now: Instant) -> Result<(), Refused> {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let first = !self.refusing;
            self.refusing = true;
            let secs = (1.0 - self.tokens) / rate.per_sec;
            Err(Refused {
                retry_after: Duration::from_secs_f64(secs.min(86_400.0)),
                first,
            })
        }
    }

    /// Whether the bucket is full again (it then carries no state worth keeping).
    fn is_full(&self, rate: Rate, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens + elapsed * rate.per_sec >= rate.burst
    }
}

/// A bucket per key, owned by one thread; at most [`MAX_KEYS`] of them.
pub struct KeyedBuckets<K> {
    rate: Rate,
    buckets: HashMap<K, Bucket>,
    last_sweep: Instant,
    cap: usize,
}

impl<K: Hash + Eq> KeyedBuckets<K> {
    pub fn new(rate: Rate) -> KeyedBuckets<K> {
        KeyedBuckets::with_cap(rate, MAX_KEYS)
    }

    /// Changes the rate; buckets already filled keep their tokens (at most
    /// the new burst, from their next refill on).
    pub fn set_rate(&mut self, rate: Rate) {
        self.rate = rate;
    }

    pub fn with_cap(rate: Rate, cap: usize) -> KeyedBuckets<K> {
        KeyedBuckets {
            rate,
            buckets: HashMap::new(),
            last_sweep: Instant::now(),
            cap,
        }
    }

    /// Drops full buckets, at most once a second unless the table is at its cap.
    fn sweep(&mut self, now: Instant) {
        let since = now.saturating_duration_since(self.last_sweep);
        let full = self.buckets.len() >= self.cap;
        // At the cap, sweeping on every take would make each take cost the
        // whole table: a tenth of a second apart at most.
        if since >= Duration::from_secs(1) || (full && since >= Duration::from_millis(100)) {
            let rate = self.rate;
            self.buckets.retain(|_, b| !b.is_full(rate, now));
            self.last_sweep = now;
        }
    }

    pub fn take(&mut self, key: K, now: Instant) -> Result<(), Refused> {
        self.take_share(key, 1, now)
    }

    /// Takes one token for `key` from a bucket holding a `share`-th of the
    /// rate and burst: a user on `share` nodes of a cluster has that share
    /// of the allowance on each, so the whole allowance across them all.
    pub fn take_share(&mut self, key: K, share: u32, now: Instant) -> Result<(), Refused> {
        self.sweep(now);
        let rate = self.rate.share(share);
        if let Some(bucket) = self.buckets.get_mut(&key) {
            return bucket.take(rate, now);
        }
        if self.buckets.len() >= self.cap {
            // Every tracked key is busy: a new one waits rather than grow the table.
            return Err(Refused {
                retry_after: Duration::from_secs(1),
                first: false,
            });
        }
        let mut bucket = Bucket::full(rate, now);
        let result = bucket.take(rate, now);
        self.buckets.insert(key, bucket);
        result
    }

    /// Keys currently tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// A token bucket per user, shared by the workers.
pub struct RateLimiter {
    buckets: Mutex<KeyedBuckets<i64>>,
}

impl RateLimiter {
    pub fn new(rate: f64, burst: u32) -> RateLimiter {
        RateLimiter::with(Rate::new(rate, burst))
    }

    pub fn with(rate: Rate) -> RateLimiter {
        RateLimiter {
            buckets: Mutex::new(KeyedBuckets::new(rate)),
        }
    }

    /// Takes one token for `user_id`, or says when to retry.
    pub fn check(&self, user_id: i64) -> Result<(), Refused> {
        self.check_share(user_id, 1)
    }

    /// Takes one token for a user online on `nodes` nodes of a cluster,
    /// each of which allows a `nodes`-th of the rate.
    pub fn check_share(&self, user_id: i64, nodes: u32) -> Result<(), Refused> {
        self.buckets.lock().take_share(user_id, nodes, Instant::now())
    }

    /// Changes the rate while the server runs (SIGHUP).
    pub fn set(&self, per_sec: f64, burst: u32) {
        self.buckets.lock().set_rate(Rate::new(per_sec, burst));
    }
}

/// The per-user rates handlers apply, changeable while the server runs.
pub struct UserRates {
    /// Messages.
    pub msg: RateLimiter,
    /// Reads that scan: searches and history pages.
    pub read: RateLimiter,
    /// Room creation.
    pub room: RateLimiter,
    /// Friend adds.
    pub friend: RateLimiter,
}

impl UserRates {
    pub fn new(config: &crate::config::Config) -> UserRates {
        let rates = UserRates {
            msg: RateLimiter::new(1.0, 1),
            read: RateLimiter::new(1.0, 1),
            room: RateLimiter::new(1.0, 1),
            friend: RateLimiter::new(1.0, 1),
        };
        rates.apply(config);
        rates
    }

    /// Takes the rates of `config`.
    pub fn apply(&self, config: &crate::config::Config) {
        self.msg.set(config.msg_rate_per_sec, config.msg_burst);
        self.read.set(config.reads_per_sec, config.reads_burst);
        self.room.set(config.rooms_per_hour / 3600.0, config.rooms_burst);
        self.friend
            .set(config.friend_adds_per_hour / 3600.0, config.friend_adds_burst);
    }
}

/// What the [`AuthGate`] limits.
#[derive(Clone, Copy, Debug)]
pub enum AuthAttempt {
    SignUp,
    LogIn,
}

/// Sign-ups and password log-ins admitted per source address and in all.
/// Owned by the reactor: a refusal costs no worker, no hash, no query.
pub struct AuthGate {
    sign_ups_by_addr: KeyedBuckets<IpAddr>,
    log_ins_by_addr: KeyedBuckets<IpAddr>,
    sign_ups_all: (Rate, Bucket),
    log_ins_all: (Rate, Bucket),
}

/// The settings of an [`AuthGate`].
#[derive(Clone, Copy, Debug)]
pub struct AuthRates {
    pub sign_ups_per_addr: Rate,
    pub log_ins_per_addr: Rate,
    pub sign_ups_all: Rate,
    pub log_ins_all: Rate,
}

impl AuthRates {
    /// The rates the settings give.
    pub fn from_config(config: &crate::config::Config) -> AuthRates {
        AuthRates {
            sign_ups_per_addr: Rate::new(
                config.sign_ups_per_addr_per_min / 60.0,
                config.sign_up_burst_per_addr,
            ),
            log_ins_per_addr: Rate::new(
                config.log_ins_per_addr_per_min / 60.0,
                config.log_in_burst_per_addr,
            ),
            sign_ups_all: Rate::per_minute(config.sign_ups_per_min),
            log_ins_all: Rate::per_minute(config.log_ins_per_min),
        }
    }
}

impl AuthGate {
    pub fn new(rates: AuthRates) -> AuthGate {
        let now = Instant::now();
        AuthGate {
            sign_ups_by_addr: KeyedBuckets::new(rates.sign_ups_per_addr),
            log_ins_by_addr: KeyedBuckets::new(rates.log_ins_per_addr),
            sign_ups_all: (rates.sign_ups_all, Bucket::full(rates.sign_ups_all, now)),
            log_ins_all: (rates.log_ins_all, Bucket::full(rates.log_ins_all, now)),
        }
    }

    /// Admits one attempt from `ip`, or says when to retry and whether this
    /// is the first refusal for that address (to log it once).
    pub fn admit(&mut self, attempt: AuthAttempt, ip: IpAddr) -> Result<(), Refused> {
        let now = Instant::now();
        let key = addr_key(ip);
        let (by_addr, (rate, all)) = match attempt {
            AuthAttempt::SignUp => (&mut self.sign_ups_by_addr, &mut self.sign_ups_all),
            AuthAttempt::LogIn => (&mut self.log_ins_by_addr, &mut self.log_ins_all),
        };
        // The total is consulted first so a refusal there spends nothing of the address's share.
        if !all.would_allow(*rate, now) {
            return all.take(*rate, now);
        }
        by_addr.take(key, now)?;
        all.take(*rate, now)
    }

    /// An attempt another node of the cluster admitted: it counts here
    /// too, so an address spread over the nodes has one allowance.
    pub fn record(&mut self, attempt: AuthAttempt, ip: IpAddr) {
        let now = Instant::now();
        let (by_addr, (rate, all)) = match attempt {
            AuthAttempt::SignUp => (&mut self.sign_ups_by_addr, &mut self.sign_ups_all),
            AuthAttempt::LogIn => (&mut self.log_ins_by_addr, &mut self.log_ins_all),
        };
        // Refused or not, the tokens are spent: the attempt happened.
        let _ = by_addr.take(addr_key(ip), now);
        let _ = all.take(*rate, now);
    }
}

/// Recent failures per key within a sliding window, for at most [`MAX_KEYS`] keys.
struct FailureWindow<K> {
    limit: u32,
    window: Duration,
    failures: Mutex<(HashMap<K, VecDeque<Instant>>, Instant)>,
}

impl<K: Hash + Eq + Clone> FailureWindow<K> {
    fn new(limit: u32, window: Duration) -> Self {
        FailureWindow {
            limit,
            window,
            failures: Mutex::new((HashMap::new(), Instant::now())),
        }
    }

    /// How long until `key` may try again (`None`: now).
    fn blocked_for(&self, key: &K, now: Instant) -> Option<Duration> {
        let mut guard = self.failures.lock();
        let times = guard.0.get_mut(key)?;
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
        if times.len() >= self.limit.max(1) as usize {
            times
                .front()
                .map(|oldest| self.window.saturating_sub(now.duration_since(*oldest)))
        } else {
            None
        }
    }

    fn record(&self, key: K, now: Instant) {
        let mut guard = self.failures.lock();
        let (map, last_sweep) = &mut *guard;
        let since = now.duration_since(*last_sweep);
        if since >= self.window || (map.len() >= MAX_KEYS && since >= Duration::from_secs(1)) {
            let window = self.window;
            map.retain(|_, times| times.back().is_some_and(|t| now.duration_since(*t) < window));
            *last_sweep = now;
        }
        if map.len() >= MAX_KEYS && !map.contains_key(&key) {
            // Full of live keys: the per-address window still counts this one.
            return;
        }
        let times = map.entry(key).or_default();
        times.push_back(now);
        while times.len() > self.limit.max(1) as usize {
            times.pop_front();
        }
    }

    fn clear(&self, key: &K) {
        self.failures.lock().0.remove(key);
    }

    fn len(&self) -> usize {
        self.failures.lock().0.len()
    }
}

/// How long an address stays known as one its login's owner uses.
const KNOWN_ADDR_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Addresses remembered per login.
const KNOWN_ADDRS_PER_LOGIN: usize = 8;

/// The log-in throttle. Three windows of failures:
/// - per login and address: a guesser at one address is stopped there;
/// - per login over all addresses: guesses spread over many addresses are
///   still limited, but addresses this login logged in from before (its
///   owner's) are exempt, so a guesser cannot lock the owner out;
/// - per address over all logins: one address trying many logins.
///
/// Resuming with a valid token is never throttled. The nodes of a cluster
/// tell each other their failures ([`LoginThrottle::share_failures`]), so
/// guesses spread over the nodes count as on one.
pub struct LoginThrottle {
    by_login_addr: FailureWindow<(String, IpAddr)>,
    by_login: FailureWindow<String>,
    by_addr: FailureWindow<IpAddr>,
    known: Mutex<HashMap<String, Vec<(IpAddr, Instant)>>>,
    /// Where this node's failures go for the other nodes, in a cluster.
    peers: std::sync::OnceLock<FailureSink>,
}

/// Tells the other nodes of a cluster of a failed log-in (login, address).
pub type FailureSink = Box<dyn Fn(&str, IpAddr) + Send + Sync>;

/// The settings of a [`LoginThrottle`].
#[derive(Clone, Copy, Debug)]
pub struct LoginLimits {
    pub per_login_addr: u32,
    pub per_login: u32,
    pub per_addr: u32,
    pub window: Duration,
}

impl LoginThrottle {
    pub fn new(limits: LoginLimits) -> LoginThrottle {
        LoginThrottle {
            by_login_addr: FailureWindow::new(limits.per_login_addr, limits.window),
            by_login: FailureWindow::new(limits.per_login, limits.window),
            by_addr: FailureWindow::new(limits.per_addr, limits.window),
            known: Mutex::new(HashMap::new()),
            peers: std::sync::OnceLock::new(),
        }
    }

    /// From now on, failures are also told to the other nodes (set once).
    pub fn share_failures(&self, sink: FailureSink) {
        let _ = self.peers.set(sink);
    }

    fn is_known(&self, login: &str, addr: IpAddr, now: Instant) -> bool {
        self.known.lock().get(login).is_some_and(|addrs| {
            addrs
                .iter()
                .any(|(a, at)| *a == addr && now.duration_since(*at) < KNOWN_ADDR_TTL)
        })
    }

    /// How long a log-in attempt for `login` from `ip` must wait (`None`: it may go ahead).
    /// `login` must already be valid login syntax.
    pub fn blocked_for(&self, login: &str, ip: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let addr = addr_key(ip);
        let pair = (login.to_owned(), addr);
        let mut waits = vec![
            self.by_login_addr.blocked_for(&pair, now),
            self.by_addr.blocked_for(&addr, now),
        ];
        if !self.is_known(login, addr, now) {
            waits.push(self.by_login.blocked_for(&login.to_owned(), now));
        }
        waits.into_iter().flatten().max()
    }

    pub fn record_failure(&self, login: &str, ip: IpAddr) {
        self.count_failure(login, ip);
        if let Some(peers) = self.peers.get() {
            peers(login, ip);
        }
    }

    /// A failure another node of the cluster saw.
    pub fn record_remote_failure(&self, login: &str, ip: IpAddr) {
        self.count_failure(login, ip);
    }

    fn count_failure(&self, login: &str, ip: IpAddr) {
        let now = Instant::now();
        let addr = addr_key(ip);
        self.by_login_addr.record((login.to_owned(), addr), now);
        self.by_addr.record(addr, now);
        if !self.is_known(login, addr, now) {
            self.by_login.record(login.to_owned(), now);
        }
    }

    /// A successful log-in forgives that login's failures at that address,
    /// and remembers the address as the owner's.
    pub fn record_success(&self, login: &str, ip: IpAddr) {
        let now = Instant::now();
        let addr = addr_key(ip);
        self.by_login_addr.clear(&(login.to_owned(), addr));
        let mut known = self.known.lock();
        if known.len() >= MAX_KEYS && !known.contains_key(login) {
            known.retain(|_, addrs| {
                addrs.retain(|(_, at)| now.duration_since(*at) < KNOWN_ADDR_TTL);
                !addrs.is_empty()
            });
            if known.len() >= MAX_KEYS {
                return;
            }
        }
        let addrs = known.entry(login.to_owned()).or_default();
        addrs.retain(|(a, _)| *a != addr);
        if addrs.len() >= KNOWN_ADDRS_PER_LOGIN {
            addrs.remove(0);
        }
        addrs.push((addr, now));
    }

    /// Keys held across the windows (for tests of boundedness).
    pub fn tracked_keys(&self) -> usize {
        self.by_login_addr.len() + self.by_login.len() + self.by_addr.len()
    }
}

/// Typing notices: at most one passed on per user and room every
/// [`TYPING_EVERY`] (the rest are answered, not forwarded). Bounded: past
/// [`MAX_TYPING_ENTRIES`] the stale entries go.
#[derive(Default)]
pub struct TypingGate {
    last: parking_lot::Mutex<HashMap<(i64, i64), Instant>>,
}

/// How often one user's typing in one room is passed on.
pub const TYPING_EVERY: Duration = Duration::from_secs(3);

const MAX_TYPING_ENTRIES: usize = 100_000;

impl TypingGate {
    /// Whether this notice is passed on (and counts as the latest), from a
    /// user online on `nodes` nodes of a cluster: each node passes one per
    /// `nodes` times the interval, so the room hears one per interval.
    pub fn pass(&self, user_id: i64, room_id: i64, nodes: u32) -> bool {
        self.pass_at(user_id, room_id, nodes, Instant::now())
    }

    fn pass_at(&self, user_id: i64, room_id: i64, nodes: u32, now: Instant) -> bool {
        let mut last = self.last.lock();
        if let Some(at) = last.get(&(user_id, room_id)) {
            if now.saturating_duration_since(*at) < TYPING_EVERY * nodes.max(1) {
                return false;
            }
        }
        if last.len() >= MAX_TYPING_ENTRIES {
            last.retain(|_, at| now.saturating_duration_since(*at) < TYPING_EVERY);
            if last.len() >= MAX_TYPING_ENTRIES {
                last.clear();
            }
        }
        last.insert((user_id, room_id), now);
        true
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn typing_passes_once_every_three_seconds_per_user_and_room() {
        let gate = super::TypingGate::default();
        let t0 = std::time::Instant::now();
        assert!(gate.pass_at(9, 9, 2, t0));
        assert!(
            !gate.pass_at(9, 9, 2, t0 + std::time::Duration::from_secs(4)),
            "on two nodes, each passes one per six seconds"
        );
        assert!(gate.pass_at(9, 9, 2, t0 + std::time::Duration::from_secs(6)));
        assert!(gate.pass_at(1, 1, 1, t0));
        assert!(!gate.pass_at(1, 1, 1, t0 + std::time::Duration::from_secs(2)));
        assert!(gate.pass_at(1, 2, 1, t0), "another room");
        assert!(gate.pass_at(2, 1, 1, t0), "another user");
        assert!(gate.pass_at(1, 1, 1, t0 + super::TYPING_EVERY));
    }

    use super::*;

    fn limits(per_login_addr: u32, per_login: u32, per_addr: u32, window_ms: u64) -> LoginLimits {
        LoginLimits {
            per_login_addr,
            per_login,
            per_addr,
            window: Duration::from_millis(window_ms),
        }
    }

    #[test]
    fn blocks_after_limit_and_recovers_after_window() {
        let addr: IpAddr = [10, 0, 0, 1].into();
        let t = LoginThrottle::new(limits(3, 100, 100, 50));
        for _ in 0..3 {
            assert!(t.blocked_for("bob", addr).is_none());
            t.record_failure("bob", addr);
        }
        assert!(t.blocked_for("bob", addr).is_some());
        assert!(
            t.blocked_for("alice", addr).is_none(),
            "other logins are not affected"
        );
        std::thread::sleep(Duration::from_millis(60));
        assert!(t.blocked_for("bob", addr).is_none());
    }

    #[test]
    fn a_guesser_does_not_lock_out_the_owner() {
        let owner: IpAddr = [10, 0, 0, 9].into();
        let t = LoginThrottle::new(limits(5, 20, 1000, 60_000));
        t.record_success("bob", owner);
        // 200 addresses, 5 guesses each: spread guesses are limited per login...
        let mut refused = 0;
        for i in 0..200u32 {
            let addr = IpAddr::from([10, 1, (i / 256) as u8, (i % 256) as u8]);
            for _ in 0..5 {
                if t.blocked_for("bob", addr).is_some() {
                    refused += 1;
                } else {
                    t.record_failure("bob", addr);
                }
            }
        }
        assert!(
            refused >= 1000 - 20,
            "only {refused} of 1000 spread guesses refused"
        );
        // ...while the owner's own address still gets through.
        assert!(t.blocked_for("bob", owner).is_none());
    }

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::7".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(addr_key(a), addr_key(b));
        assert_ne!(addr_key(a), addr_key(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(addr_key(mapped), IpAddr::from([10, 0, 0, 1]));
    }

    #[test]
    fn failure_tables_stay_bounded() {
        let t = LoginThrottle::new(limits(5, 20, 1_000_000, 60_000));
        let addr: IpAddr = [10, 0, 0, 1].into();
        for i in 0..(MAX_KEYS + 500) {
            t.record_failure(&format!("u{i}"), addr);
        }
        assert!(t.tracked_keys() <= 2 * MAX_KEYS + 1, "{}", t.tracked_keys());
    }

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let limiter = RateLimiter::new(100.0, 5);
        assert_eq!((0..10).filter(|_| limiter.check(1).is_ok()).count(), 5);
        assert!(limiter.check(2).is_ok(), "users have their own buckets");
        std::thread::sleep(Duration::from_millis(25));
        let refilled = (0..10).filter(|_| limiter.check(1).is_ok()).count();
        assert!((1..=4).contains(&refilled), "{refilled}");
    }

    #[test]
    fn refusals_say_when_to_retry_and_are_first_once() {
        let mut b = KeyedBuckets::new(Rate::new(1.0, 3));
        let now = Instant::now();
        for _ in 0..3 {
            assert!(b.take(7, now).is_ok());
        }
        let first = b.take(7, now).unwrap_err();
        assert!(first.first);
        assert!(first.retry_after > Duration::from_millis(900));
        assert!(!b.take(7, now).unwrap_err().first);
        // A token trickles back and is used: still the same offence.
        let later = now + Duration::from_millis(1100);
        assert!(b.take(7, later).is_ok());
        assert!(!b.take(7, later).unwrap_err().first);
        // Calm long enough to fill the bucket again: a new offence is reported.
        let calm = later + Duration::from_secs(4);
        for _ in 0..3 {
            assert!(b.take(7, calm).is_ok());
        }
        assert!(b.take(7, calm).unwrap_err().first);
    }

    #[test]
    fn keyed_buckets_are_capped() {
        let mut b = KeyedBuckets::with_cap(Rate::new(0.001, 1), 100);
        let now = Instant::now();
        for i in 0..1000 {
            let _ = b.take(i, now);
        }
        assert!(b.len() <= 100);
    }

    #[test]
    fn auth_gate_limits_per_address_and_in_total() {
        let mut gate = AuthGate::new(AuthRates {
            sign_ups_per_addr: Rate::new(0.001, 3),
            log_ins_per_addr: Rate::new(0.001, 3),
            sign_ups_all: Rate::new(0.001, 5),
            log_ins_all: Rate::new(0.001, 100),
        });
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let c: IpAddr = [10, 0, 0, 3].into();
        let ok = |g: &mut AuthGate, ip| {
            (0..10)
                .filter(|_| g.admit(AuthAttempt::SignUp, ip).is_ok())
                .count()
        };
        assert_eq!(ok(&mut gate, a), 3);
        assert_eq!(ok(&mut gate, b), 2, "the total of 5 is reached");
        assert_eq!(ok(&mut gate, c), 0);
        assert!(
            gate.admit(AuthAttempt::LogIn, c).is_ok(),
            "log-ins have their own budget"
        );
    }

    #[test]
    fn attempts_admitted_on_other_nodes_spend_this_nodes_allowance() {
        let mut gate = AuthGate::new(AuthRates {
            sign_ups_per_addr: Rate::new(0.001, 3),
            log_ins_per_addr: Rate::new(0.001, 3),
            sign_ups_all: Rate::new(0.001, 100),
            log_ins_all: Rate::new(0.001, 100),
        });
        let a: IpAddr = [10, 0, 0, 1].into();
        gate.record(AuthAttempt::SignUp, a);
        gate.record(AuthAttempt::SignUp, a);
        assert!(gate.admit(AuthAttempt::SignUp, a).is_ok());
        assert!(
            gate.admit(AuthAttempt::SignUp, a).is_err(),
            "3 in all, 2 of them elsewhere"
        );
        assert!(gate.admit(AuthAttempt::LogIn, a).is_ok());
    }

    #[test]
    fn a_user_on_several_nodes_has_a_share_of_the_allowance_on_each() {
        let limiter = RateLimiter::new(0.001, 6);
        let ok = |nodes| (0..10).filter(|_| limiter.check_share(1, nodes).is_ok()).count();
        assert_eq!(ok(3), 2, "a third of the burst of 6");
        let alone = RateLimiter::new(0.001, 6);
        assert_eq!((0..10).filter(|_| alone.check(1).is_ok()).count(), 6);
        assert_eq!(Rate::new(1.0, 2).share(5).burst, 1.0, "never below one token");
    }
}
