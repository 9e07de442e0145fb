//! The writer's memory of rooms: each room's row, newest date and members.
//!
//! Only the writer's store keeps one (see `Transactions::keep_room_cache`):
//! every write of the node goes through it, so it can update or forget a
//! room as its own statements change it, and a message costs no read of the
//! room, its members or its newest date. A rollback that undoes a change the
//! cache saw empties it (it refills on demand). A store that other nodes
//! write to as well keeps it for one batch only.

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::{Role, Room};
use crate::store::{MessageStore, Result, RoomStore};

/// Above this many cached rooms, the cache starts over.
const MAX_CACHED_ROOMS: usize = 50_000;

/// A room's current members (banned excluded), shared cheaply with pushes.
pub type Audience = Arc<Vec<i64>>;

/// What the writer knows of one room.
#[derive(Clone, Debug)]
pub struct RoomState {
    pub room: Room,
    /// The newest message's date (0 when empty): dates never decrease.
    pub newest_date: i64,
    roles: HashMap<i64, Role>,
    audience: Audience,
}

impl RoomState {
    pub fn new(room: Room, newest_date: i64, roles: Vec<(i64, Role)>) -> RoomState {
        let audience = Arc::new(
            roles
                .iter()
                .filter(|(_, role)| *role != Role::Banned)
                .map(|(id, _)| *id)
                .collect(),
        );
        RoomState {
            room,
            newest_date,
            roles: roles.into_iter().collect(),
            audience,
        }
    }

    /// The user's role (`Banned` included), `None` for non-members.
    pub fn role_of(&self, user_id: i64) -> Option<Role> {
        self.roles.get(&user_id).copied()
    }

    pub fn audience(&self) -> Audience {
        self.audience.clone()
    }
}

#[derive(Default)]
pub struct RoomCache {
    rooms: HashMap<i64, RoomState>,
    /// Bumped on every change, so a rollback can tell whether it must forget.
    changes: u64,
}

impl RoomCache {
    pub fn get(&self, room_id: i64) -> Option<&RoomState> {
        self.rooms.get(&room_id)
    }

    pub fn insert(&mut self, state: RoomState) {
        if self.rooms.len() >= MAX_CACHED_ROOMS {
            self.rooms.clear();
        }
        self.rooms.insert(state.room.id, state);
    }

    /// A message was stored in the room.
    pub fn note_message(&mut self, room_id: i64, date: i64, bytes: usize) {
        if let Some(state) = self.rooms.get_mut(&room_id) {
            state.room.msg_count += 1;
            state.room.power += bytes as i64;
            state.newest_date = state.newest_date.max(date);
            self.changes += 1;
        }
    }

    /// The room changed in a way the cache does not follow.
    pub fn forget(&mut self, room_id: i64) {
        if self.rooms.remove(&room_id).is_some() {
            self.changes += 1;
        }
    }

    pub fn changes(&self) -> u64 {
        self.changes
    }

    pub fn clear(&mut self) {
        self.rooms.clear();
        self.changes += 1;
    }
}

/// A room's state as the cache keeps it, read from `store`; `None` if the
/// room does not exist.
pub fn load_room_state<S: RoomStore + MessageStore + ?Sized>(
    store: &S,
    room_id: i64,
) -> Result<Option<RoomState>> {
    let Some(room) = store.room(room_id)? else {
        return Ok(None);
    };
    let newest_date = store.newest_date(room_id)?;
    let roles = store.member_roles(room_id)?;
    Ok(Some(RoomState::new(room, newest_date, roles)))
}

/// The writer's room cache, when kept, with what undoing a savepoint needs:
/// the cache's change count when each open savepoint began.
#[derive(Default)]
pub struct WriterRooms {
    cache: Option<RoomCache>,
    marks: Vec<u64>,
}

impl WriterRooms {
    /// Starts keeping rooms.
    pub fn keep(&mut self) {
        self.cache = Some(RoomCache::default());
    }

    pub fn kept(&self) -> bool {
        self.cache.is_some()
    }

    pub fn get(&self, room_id: i64) -> Option<&RoomState> {
        self.cache.as_ref().and_then(|c| c.get(room_id))
    }

    pub fn insert(&mut self, state: RoomState) {
        if let Some(cache) = &mut self.cache {
            cache.insert(state);
        }
    }

    /// A message was stored in the room.
    pub fn note_message(&mut self, room_id: i64, date: i64, bytes: usize) {
        if let Some(cache) = &mut self.cache {
            cache.note_message(room_id, date, bytes);
        }
    }

    /// The room changed in a way the cache does not follow.
    pub fn forget(&mut self, room_id: i64) {
        if let Some(cache) = &mut self.cache {
            cache.forget(room_id);
        }
    }

    pub fn forget_all(&mut self) {
        if let Some(cache) = &mut self.cache {
            cache.clear();
        }
    }

    fn changes(&self) -> u64 {
        self.cache.as_ref().map_or(0, RoomCache::changes)
    }

    /// A transaction or savepoint began.
    pub fn entered(&mut self) {
        self.marks.push(self.changes());
    }

    /// The matching transaction or savepoint ended; if its writes were
    /// undone, what the cache learnt in it is forgotten.
    pub fn left(&mut self, undone: bool) {
        let mark = self.marks.pop().unwrap_or(0);
        if undone && self.changes() != mark {
            self.forget_all();
        }
    }

    /// Everything open was rolled back.
    pub fn rolled_back(&mut self) {
        self.marks.clear();
        self.forget_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RoomType;

    fn room(id: i64) -> Room {
        Room {
            id,
            name: "r".into(),
            desc: String::new(),
            room_type: RoomType::Global,
            owner_id: 1,
            created_at: 0,
            msg_count: 0,
            power: 0,
        }
    }

    #[test]
    fn the_audience_leaves_out_the_banned() {
        let state = RoomState::new(
            room(1),
            0,
            vec![(1, Role::Owner), (2, Role::Banned), (3, Role::Simple)],
        );
        assert_eq!(*state.audience(), vec![1, 3]);
        assert_eq!(state.role_of(2), Some(Role::Banned));
        assert_eq!(state.role_of(9), None);
    }

    #[test]
    fn messages_update_and_changes_are_counted() {
        let mut cache = RoomCache::default();
        cache.insert(RoomState::new(room(1), 5, vec![(1, Role::Owner)]));
        let before = cache.changes();
        cache.note_message(1, 3, 6);
        let state = cache.get(1).unwrap();
        assert_eq!(
            (state.room.msg_count, state.room.power, state.newest_date),
            (1, 6, 5),
            "dates never go back"
        );
        assert_ne!(cache.changes(), before);
        cache.forget(1);
        assert!(cache.get(1).is_none());
    }
}
