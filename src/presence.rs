//! Who is online: the number of logged-in connections per user, and the
//! coalescing of the announcements friends get.
//!
//! Written only by the reactor (which sees connections log in and close),
//! read by workers to fill `online` fields.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

#[derive(Default)]
pub struct Presence {
    connections: RwLock<HashMap<i64, u32>>,
}

impl Presence {
    /// Counts one more connection for `user_id`; true if it is the first.
    pub fn connect(&self, user_id: i64) -> bool {
        let mut map = self.connections.write();
        let n = map.entry(user_id).or_insert(0);
        *n += 1;
        *n == 1
    }

    /// Counts one connection less; true if it was the last.
    pub fn disconnect(&self, user_id: i64) -> bool {
        let mut map = self.connections.write();
        match map.get_mut(&user_id) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                map.remove(&user_id);
                true
            }
            None => false,
        }
    }

    /// Users with at least one logged-in connection.
    pub fn online_users(&self) -> usize {
        self.connections.read().len()
    }

    pub fn is_online(&self, user_id: i64) -> bool {
        self.connections.read().contains_key(&user_id)
    }
}

/// The shortest time between two presence announcements of one user.
pub const PRESENCE_INTERVAL: Duration = Duration::from_secs(1);

/// What friends last heard of one user, and whether more is to tell.
struct Announced {
    /// When friends were last told.
    at: Instant,
    /// What they were told.
    online: bool,
    /// The state now, when it changed since and is not told yet.
    pending: Option<bool>,
}

/// Coalesces presence announcements: a user flapping on and off costs each
/// friend at most one push per [`PRESENCE_INTERVAL`], and friends always
/// end up told the latest state. Owned by the reactor.
#[derive(Default)]
pub struct PresenceCoalescer {
    users: HashMap<i64, Announced>,
}

impl PresenceCoalescer {
    /// The user's presence changed. Returns whether to announce it now;
    /// otherwise it is held until [`PresenceCoalescer::due`] releases it.
    pub fn changed(&mut self, user_id: i64, online: bool, now: Instant) -> bool {
        match self.users.get_mut(&user_id) {
            Some(a) if now.duration_since(a.at) < PRESENCE_INTERVAL => {
                a.pending = (a.online != online).then_some(online);
                false
            }
            _ => {
                self.users.insert(
                    user_id,
                    Announced {
                        at: now,
                        online,
                        pending: None,
                    },
                );
                true
            }
        }
    }

    /// Announcements held back whose interval has passed, as (user, online);
    /// forgets users with nothing more to tell.
    pub fn due(&mut self, now: Instant) -> Vec<(i64, bool)> {
        let mut out = Vec::new();
        self.users.retain(|&user_id, a| {
            if now.duration_since(a.at) < PRESENCE_INTERVAL {
                return true;
            }
            match a.pending.take() {
                Some(online) => {
                    out.push((user_id, online));
                    a.at = now;
                    a.online = online;
                    true
                }
                None => false,
            }
        });
        out
    }

    /// When [`PresenceCoalescer::due`] next has work (`None`: nothing held).
    pub fn next_due(&self) -> Option<Instant> {
        self.users
            .values()
            .filter(|a| a.pending.is_some())
            .map(|a| a.at + PRESENCE_INTERVAL)
            .min()
    }

    /// Whether nobody is remembered (the table empties once all is told).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flapping_is_told_once_a_second_and_ends_with_the_latest_state() {
        let mut c = PresenceCoalescer::default();
        let t0 = Instant::now();
        assert!(c.changed(7, true, t0));
        let mut now = t0;
        for i in 0..100 {
            now += Duration::from_millis(5);
            assert!(!c.changed(7, i % 2 == 1, now), "held within the second");
        }
        // The last change (i = 99) left the user online: what friends heard.
        assert_eq!(c.due(now), vec![]);
        assert_eq!(c.due(t0 + PRESENCE_INTERVAL), vec![]);
        assert!(c.changed(7, false, t0 + PRESENCE_INTERVAL + Duration::from_millis(10)));
        let later = t0 + 2 * PRESENCE_INTERVAL + Duration::from_millis(20);
        assert!(!c.changed(7, true, later - Duration::from_millis(900)));
        assert_eq!(
            c.next_due(),
            Some(t0 + 2 * PRESENCE_INTERVAL + Duration::from_millis(10))
        );
        assert_eq!(c.due(later), vec![(7, true)]);
        assert_eq!(c.due(later + PRESENCE_INTERVAL), vec![]);
        assert!(c.is_empty(), "nothing is kept once all is told");
    }

    #[test]
    fn first_and_last_connection() {
        let p = Presence::default();
        assert!(p.connect(1));
        assert!(!p.connect(1));
        assert!(!p.disconnect(1));
        assert!(p.is_online(1));
        assert!(p.disconnect(1));
        assert!(!p.is_online(1));
        assert!(!p.disconnect(1));
    }
}
