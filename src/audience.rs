//! Who is in which room, cached for fan-out.
//!
//! Every broadcast needs the room's current members (banned excluded). This
//! cache answers from memory for rooms already seen, so a busy room costs no
//! database query per message. Handlers invalidate a room after committing a
//! membership change; a generation number per room keeps a load that raced
//! with such a change from putting a stale list back.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

/// Above this many cached rooms, the cache starts over (it refills on demand).
const MAX_CACHED_ROOMS: usize = 100_000;

/// A room's members, shared cheaply between the cache and pushes.
pub type Audience = Arc<Vec<i64>>;

#[derive(Default)]
struct Entry {
    /// Bumped on every invalidation.
    generation: u64,
    members: Option<Audience>,
}

#[derive(Default)]
pub struct RoomAudiences {
    rooms: Mutex<HashMap<i64, Entry>>,
}

impl RoomAudiences {
    /// The room's members, from the cache or from `load` (then cached).
    pub fn get<E>(&self, room_id: i64, load: impl FnOnce() -> Result<Vec<i64>, E>) -> Result<Audience, E> {
        let generation = {
            let rooms = self.rooms.lock();
            match rooms.get(&room_id) {
                Some(Entry {
                    members: Some(members),
                    ..
                }) => return Ok(members.clone()),
                Some(entry) => entry.generation,
                None => 0,
            }
        };
        // Loaded without the lock held: the database may take a while.
        let members: Audience = Arc::new(load()?);
        let mut rooms = self.rooms.lock();
        if rooms.len() >= MAX_CACHED_ROOMS {
            rooms.clear();
        }
        let entry = rooms.entry(room_id).or_default();
        if entry.generation == generation {
            entry.members = Some(members.clone());
        }
        Ok(members)
    }

    /// Forgets a room's members after a change to them has been committed.
    pub fn invalidate(&self, room_id: i64) {
        let mut rooms = self.rooms.lock();
        let entry = rooms.entry(room_id).or_default();
        entry.generation += 1;
        entry.members = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caches_until_invalidated() {
        let cache = RoomAudiences::default();
        let a = cache.get::<()>(1, || Ok(vec![1, 2])).unwrap();
        let b = cache.get::<()>(1, || panic!("must be cached")).unwrap();
        assert_eq!(a, b);
        cache.invalidate(1);
        assert_eq!(*cache.get::<()>(1, || Ok(vec![3])).unwrap(), vec![3]);
    }

    #[test]
    fn a_load_racing_an_invalidation_is_not_kept() {
        let cache = RoomAudiences::default();
        let stale = cache
            .get::<()>(7, || {
                cache.invalidate(7); // a membership change commits meanwhile
                Ok(vec![1])
            })
            .unwrap();
        assert_eq!(*stale, vec![1]);
        assert_eq!(*cache.get::<()>(7, || Ok(vec![1, 2])).unwrap(), vec![1, 2]);
    }
}
