//! Who is online: the number of logged-in connections per user.
//!
//! Written only by the reactor (which sees connections log in and close),
//! read by workers to fill `online` fields.

use std::collections::HashMap;

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

    pub fn is_online(&self, user_id: i64) -> bool {
        self.connections.read().contains_key(&user_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
