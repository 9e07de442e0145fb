//! Who is online: the number of logged-in connections per user on this
//! node, the number of other nodes of a cluster where the user is online,
//! and the coalescing of the announcements friends get.
//!
//! Written only by the reactor (which sees connections log in and close,
//! and hears the other nodes), read by workers to fill `online` fields.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

#[derive(Default)]
pub struct Presence {
    users: RwLock<Online>,
}

#[derive(Default)]
struct Online {
    /// Logged-in connections on this node, per user.
    here: HashMap<i64, u32>,
    /// Other nodes where the user is online, per user.
    elsewhere: HashMap<i64, u32>,
}

impl Presence {
    /// Counts one more connection for `user_id`; true if it is the first
    /// on this node.
    pub fn connect(&self, user_id: i64) -> bool {
        let mut users = self.users.write();
        let n = users.here.entry(user_id).or_insert(0);
        *n += 1;
        *n == 1
    }

    /// Counts one connection less; true if it was the last on this node.
    pub fn disconnect(&self, user_id: i64) -> bool {
        count_down(&mut self.users.write().here, user_id)
    }

    /// Another node now has the user online (`online`) or no longer has.
    /// True if that made the user come or go for the whole cluster.
    pub fn elsewhere(&self, user_id: i64, online: bool) -> bool {
        let mut users = self.users.write();
        let here = users.here.contains_key(&user_id);
        let changed = if online {
            let n = users.elsewhere.entry(user_id).or_insert(0);
            *n += 1;
            *n == 1
        } else {
            count_down(&mut users.elsewhere, user_id)
        };
        changed && !here
    }

    /// How many nodes the user is online on (at least 1: the asker's).
    pub fn nodes_online(&self, user_id: i64) -> u32 {
        let users = self.users.read();
        let here = u32::from(users.here.contains_key(&user_id));
        (here + users.elsewhere.get(&user_id).copied().unwrap_or(0)).max(1)
    }

    /// Whether another node has the user online.
    pub fn online_elsewhere(&self, user_id: i64) -> bool {
        self.users.read().elsewhere.contains_key(&user_id)
    }

    /// Users with at least one logged-in connection on this node.
    pub fn online_users(&self) -> usize {
        self.users.read().here.len()
    }

    /// The users online on this node, and their [`digest`].
    pub fn here(&self) -> (Vec<i64>, u64) {
        let users: Vec<i64> = self.users.read().here.keys().copied().collect();
        let digest = digest(users.iter().copied());
        (users, digest)
    }

    /// Online on this node or on another.
    pub fn is_online(&self, user_id: i64) -> bool {
        let users = self.users.read();
        users.here.contains_key(&user_id) || users.elsewhere.contains_key(&user_id)
    }
}

/// One less for `user_id`; true if it was the last.
fn count_down(counts: &mut HashMap<i64, u32>, user_id: i64) -> bool {
    match counts.get_mut(&user_id) {
        Some(n) if *n > 1 => {
            *n -= 1;
            false
        }
        Some(_) => {
            counts.remove(&user_id);
            true
        }
        None => false,
    }
}

/// A digest of a set of users, the same whatever their order: nodes of a
/// cluster compare theirs to see that they agree on who is online where.
pub fn digest(users: impl IntoIterator<Item = i64>) -> u64 {
    users.into_iter().fold(0, |acc, u| acc ^ user_digest(u))
}

/// One user's part of a digest (splitmix64: ids close together spread).
pub fn user_digest(user_id: i64) -> u64 {
    let mut z = (user_id as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
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

    #[test]
    fn a_user_online_on_another_node_comes_and_goes_once() {
        let p = Presence::default();
        assert!(p.elsewhere(1, true), "came, on node b");
        assert!(!p.elsewhere(1, true), "also on node c");
        assert!(p.is_online(1) && p.online_elsewhere(1));
        assert!(p.connect(1), "first here, though online already");
        assert!(!p.elsewhere(1, false));
        assert!(!p.elsewhere(1, false), "still here");
        assert!(!p.online_elsewhere(1) && p.is_online(1));
        assert_eq!(p.nodes_online(1), 1);
        assert!(!p.elsewhere(1, true));
        assert_eq!(p.nodes_online(1), 2);
        assert!(!p.elsewhere(1, false));
        assert!(p.disconnect(1));
        assert!(!p.is_online(1));
        assert!(!p.elsewhere(7, false), "never heard of");
        assert_eq!(digest([1, 2]), digest([2, 1]));
        assert_ne!(digest([1, 2]), digest([1, 3]));
    }
}
