//! Rooms and membership. None of these open a transaction of their own:
//! handlers group them with `store::atomically` where a check and a write
//! must not be separated.

use rusqlite::{params, OptionalExtension};

use super::accounts::user_from_row;
use super::SqliteStore;
use std::sync::Arc;

use crate::model::{fold_name, Member, Role, Room, RoomListing, RoomType};
use crate::store::room_cache::load_room_state;
use crate::store::{Audience, Departure, Result, RoomState, RoomStore};

const ROOM_COLUMNS: &str =
    "r.id, r.name, r.\"desc\", r.room_type, r.owner_id, r.created_at, r.msg_count, r.power";
/// How many columns `ROOM_COLUMNS` names: queries' own columns follow.
const ROOM_FIELDS: usize = 8;

fn room_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Room> {
    let code: i64 = row.get(3)?;
    Ok(Room {
        id: row.get(0)?,
        name: row.get(1)?,
        desc: row.get(2)?,
        room_type: RoomType::from_code(code).unwrap_or(RoomType::Private),
        owner_id: row.get(4)?,
        created_at: row.get(5)?,
        msg_count: row.get(6)?,
        power: row.get(7)?,
    })
}

fn role_from(code: i64) -> Role {
    Role::from_code(code).unwrap_or(Role::Simple)
}

impl RoomStore for SqliteStore {
    fn create_room(
        &mut self,
        owner: i64,
        name: &str,
        desc: &str,
        room_type: RoomType,
        now: i64,
    ) -> Result<Room> {
        self.conn
            .prepare_cached(
                "INSERT INTO rooms (name, name_fold, \"desc\", room_type, owner_id, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![name, fold_name(name), desc, room_type.code(), owner, now])?;
        let id = self.conn.last_insert_rowid();
        self.add_member(id, owner, Role::Owner, now)?;
        Ok(Room {
            id,
            name: name.to_owned(),
            desc: desc.to_owned(),
            room_type,
            owner_id: owner,
            created_at: now,
            msg_count: 0,
            power: 0,
        })
    }

    fn room(&self, room_id: i64) -> Result<Option<Room>> {
        self.conn
            .prepare_cached(&format!("SELECT {ROOM_COLUMNS} FROM rooms r WHERE r.id = ?1"))?
            .query_row([room_id], room_from_row)
            .optional()
            .map_err(Into::into)
    }

    fn role_in(&self, room_id: i64, user_id: i64) -> Result<Option<Role>> {
        self.conn
            .prepare_cached("SELECT role FROM members WHERE room_id = ?1 AND user_id = ?2")?
            .query_row([room_id, user_id], |row| row.get::<_, i64>(0))
            .optional()
            .map(|code| code.map(role_from))
            .map_err(Into::into)
    }

    fn rooms_of(&self, user_id: i64, since: i64) -> Result<Vec<RoomListing>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {ROOM_COLUMNS}, m.role,
                 max(0, r.last_seq - m.read_seq - m.own_unseen - m.gone_unseen),
                 (SELECT coalesce(max(x.id), 0) FROM messages x WHERE x.room_id = r.id),
                 (SELECT count(*) FROM mentions n
                  WHERE n.user_id = m.user_id AND n.room_id = r.id AND n.msg_id > m.last_read)
             FROM members m JOIN rooms r ON r.id = m.room_id
             WHERE m.user_id = ?1 AND m.role != ?2 AND m.joined_at > ?3 ORDER BY r.id"
        ))?;
        let rows = stmt.query_map(params![user_id, Role::Banned.code(), since], |row| {
            Ok(RoomListing {
                room: room_from_row(row)?,
                role: role_from(row.get(ROOM_FIELDS)?),
                unread: row.get(ROOM_FIELDS + 1)?,
                last_msg_id: row.get(ROOM_FIELDS + 2)?,
                mentions: row.get(ROOM_FIELDS + 3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn add_member(&mut self, room_id: i64, user_id: i64, role: Role, now: i64) -> Result<bool> {
        self.forget_room(room_id);
        let n = self
            .conn
            .prepare_cached(
                "INSERT INTO members (room_id, user_id, role, joined_at, last_read, read_seq)
                 VALUES (?1, ?2, ?3, ?4,
                         coalesce((SELECT max(id) FROM messages WHERE room_id = ?1), 0),
                         (SELECT last_seq FROM rooms WHERE id = ?1))
                 ON CONFLICT(room_id, user_id) DO NOTHING",
            )?
            .execute(params![room_id, user_id, role.code(), now])?;
        Ok(n > 0)
    }

    fn remove_member(&mut self, room_id: i64, user_id: i64) -> Result<bool> {
        self.forget_room(room_id);
        let n = self
            .conn
            .prepare_cached("DELETE FROM members WHERE room_id = ?1 AND user_id = ?2")?
            .execute([room_id, user_id])?;
        Ok(n > 0)
    }

    fn set_role(&mut self, room_id: i64, user_id: i64, role: Role) -> Result<()> {
        self.forget_room(room_id);
        self.conn
            .prepare_cached("UPDATE members SET role = ?3 WHERE room_id = ?1 AND user_id = ?2")?
            .execute(params![room_id, user_id, role.code()])?;
        if role == Role::Owner {
            self.conn
                .prepare_cached("UPDATE rooms SET owner_id = ?2 WHERE id = ?1")?
                .execute([room_id, user_id])?;
        }
        Ok(())
    }

    fn leave_room(&mut self, room_id: i64, user_id: i64) -> Result<Departure> {
        let was_owner = self.role_in(room_id, user_id)? == Some(Role::Owner);
        self.remove_member(room_id, user_id)?;
        let successor: Option<i64> = self
            .conn
            .prepare_cached(
                "SELECT user_id FROM members WHERE room_id = ?1 AND role != ?2
                 ORDER BY role = ?3 DESC, rowid LIMIT 1",
            )?
            .query_row(params![room_id, Role::Banned.code(), Role::Admin.code()], |row| {
                row.get(0)
            })
            .optional()?;
        let Some(successor) = successor else {
            self.delete_room(room_id)?;
            return Ok(Departure::RoomDeleted);
        };
        if !was_owner {
            return Ok(Departure::Left { new_owner: None });
        }
        self.set_role(room_id, successor, Role::Owner)?;
        Ok(Departure::Left {
            new_owner: Some(successor),
        })
    }

    fn delete_room(&mut self, room_id: i64) -> Result<()> {
        self.forget_room(room_id);
        self.conn
            .prepare_cached("DELETE FROM rooms WHERE id = ?1")?
            .execute([room_id])?;
        Ok(())
    }

    fn rename_room(&mut self, room_id: i64, name: &str) -> Result<()> {
        self.forget_room(room_id);
        self.conn
            .prepare_cached("UPDATE rooms SET name = ?2, name_fold = ?3 WHERE id = ?1")?
            .execute(params![room_id, name, fold_name(name)])?;
        Ok(())
    }

    fn set_room_desc(&mut self, room_id: i64, desc: &str) -> Result<()> {
        self.forget_room(room_id);
        self.conn
            .prepare_cached("UPDATE rooms SET \"desc\" = ?2 WHERE id = ?1")?
            .execute(params![room_id, desc])?;
        Ok(())
    }

    fn search_global_rooms(
        &self,
        prefix_fold: &str,
        user_id: i64,
        limit: usize,
    ) -> Result<Vec<(Room, Option<Role>)>> {
        // A range on the folded-name index: every string with the prefix sorts
        // below the prefix followed by the highest code point.
        let upper = format!("{prefix_fold}\u{10FFFF}");
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {ROOM_COLUMNS}, m.role FROM rooms r
             LEFT JOIN members m ON m.room_id = r.id AND m.user_id = ?3
             WHERE r.room_type = ?4 AND r.name_fold >= ?1 AND r.name_fold < ?2
               AND (m.role IS NULL OR m.role != ?5)
             ORDER BY r.name_fold, r.id LIMIT ?6"
        ))?;
        let rows = stmt.query_map(
            params![
                prefix_fold,
                upper,
                user_id,
                RoomType::Global.code(),
                Role::Banned.code(),
                limit as i64
            ],
            |row| {
                Ok((
                    room_from_row(row)?,
                    row.get::<_, Option<i64>>(ROOM_FIELDS)?.map(role_from),
                ))
            },
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn members(&self, room_id: i64) -> Result<Vec<Member>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT u.id, u.login, u.name, u.\"desc\", m.role FROM members m JOIN users u ON u.id = m.user_id
             WHERE m.room_id = ?1 AND m.role != ?2 ORDER BY m.role, m.rowid",
        )?;
        let rows = stmt.query_map(params![room_id, Role::Banned.code()], |row| {
            Ok(Member {
                user: user_from_row(row)?,
                role: role_from(row.get(4)?),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn member_roles(&self, room_id: i64) -> Result<Vec<(i64, Role)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT user_id, role FROM members WHERE room_id = ?1")?;
        let rows = stmt.query_map([room_id], |row| Ok((row.get(0)?, role_from(row.get(1)?))))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn member_ids(&self, room_id: i64) -> Result<Vec<i64>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT user_id FROM members WHERE room_id = ?1 AND role != ?2")?;
        let rows = stmt.query_map(params![room_id, Role::Banned.code()], |row| row.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn room_and_role(&mut self, room_id: i64, user_id: i64) -> Result<Option<(Room, Option<Role>)>> {
        if self.rooms.kept() {
            return Ok(self
                .cached_room(room_id)?
                .map(|state| (state.room.clone(), state.role_of(user_id))));
        }
        let Some(room) = self.room(room_id)? else {
            return Ok(None);
        };
        let role = self.role_in(room_id, user_id)?;
        Ok(Some((room, role)))
    }

    fn audience(&mut self, room_id: i64) -> Result<Audience> {
        if self.rooms.kept() {
            return Ok(self
                .cached_room(room_id)?
                .map_or_else(|| Arc::new(Vec::new()), RoomState::audience));
        }
        Ok(Arc::new(self.member_ids(room_id)?))
    }
}

impl SqliteStore {
    /// The writer's cached state of a room, loaded on a miss; `None` for
    /// stores without a cache and for rooms that do not exist.
    fn cached_room(&mut self, room_id: i64) -> Result<Option<&RoomState>> {
        if !self.rooms.kept() {
            return Ok(None);
        }
        if self.rooms.get(room_id).is_none() {
            let Some(state) = load_room_state(self, room_id)? else {
                return Ok(None);
            };
            self.rooms.insert(state);
        }
        Ok(self.rooms.get(room_id))
    }
}

#[cfg(test)]
mod tests {
    use super::ROOM_COLUMNS;
    use crate::config::Durability;
    use crate::model::{Role, RoomType};
    use crate::store::prelude::*;
    use crate::store::{migrate, Departure, SqliteStore};

    fn store_with_users(n: usize) -> (tempfile::TempDir, SqliteStore, Vec<i64>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        migrate(&path).unwrap();
        let mut store = SqliteStore::open(&path, Durability::Normal).unwrap();
        let ids = (0..n)
            .map(|i| {
                store
                    .create_user(&format!("user{i}"), "n", "", "h", 1)
                    .unwrap()
                    .unwrap()
                    .id
            })
            .collect();
        (dir, store, ids)
    }

    #[test]
    fn ownership_passes_to_the_longest_standing_admin_then_member() {
        let (_dir, mut s, u) = store_with_users(4);
        let room = s.create_room(u[0], "Room", "", RoomType::Global, 1).unwrap();
        s.add_member(room.id, u[1], Role::Simple, 2).unwrap();
        s.add_member(room.id, u[2], Role::Admin, 3).unwrap();
        s.add_member(room.id, u[3], Role::Admin, 4).unwrap();
        assert_eq!(
            s.leave_room(room.id, u[0]).unwrap(),
            Departure::Left {
                new_owner: Some(u[2])
            }
        );
        assert_eq!(s.room(room.id).unwrap().unwrap().owner_id, u[2]);
        assert_eq!(
            s.leave_room(room.id, u[2]).unwrap(),
            Departure::Left {
                new_owner: Some(u[3])
            }
        );
        assert_eq!(
            s.leave_room(room.id, u[3]).unwrap(),
            Departure::Left {
                new_owner: Some(u[1])
            }
        );
        assert_eq!(s.leave_room(room.id, u[1]).unwrap(), Departure::RoomDeleted);
        assert!(s.room(room.id).unwrap().is_none());
    }

    #[test]
    fn banned_members_are_not_an_audience_and_rooms_search_by_prefix() {
        let (_dir, mut s, u) = store_with_users(2);
        let a = s
            .create_room(u[0], "Rust Users", "", RoomType::Global, 1)
            .unwrap();
        let b = s
            .create_room(u[0], "rustaceans", "", RoomType::Global, 1)
            .unwrap();
        s.create_room(u[0], "Rust private", "", RoomType::Private, 1)
            .unwrap();
        s.create_room(u[0], "Go", "", RoomType::Global, 1).unwrap();
        s.add_member(a.id, u[1], Role::Banned, 2).unwrap();
        let found: Vec<_> = s
            .search_global_rooms("rust", u[1], 50)
            .unwrap()
            .into_iter()
            .map(|(r, _)| r.id)
            .collect();
        assert_eq!(found, vec![b.id]);
        let found = s.search_global_rooms("rust", u[0], 50).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].1, Some(Role::Owner));
        assert_eq!(s.member_ids(a.id).unwrap(), vec![u[0]]);
    }

    #[test]
    fn unread_counts_come_from_counters_and_follow_deletes() {
        use crate::model::MsgType;
        let (_dir, mut s, u) = store_with_users(3);
        let room = s.create_room(u[0], "Room", "", RoomType::Global, 1).unwrap();
        s.add_member(room.id, u[1], Role::Simple, 2).unwrap();
        let unread = |s: &SqliteStore, user| s.rooms_of(user, 0).unwrap()[0].unread;
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(
                s.insert_message(room.id, u[0], &format!("m{i}"), MsgType::Text, 3)
                    .unwrap()
                    .id,
            );
        }
        let own = s
            .insert_message(room.id, u[1], "mine", MsgType::Text, 3)
            .unwrap()
            .id;
        assert_eq!(unread(&s, u[1]), 5, "one's own messages are not unread");
        assert_eq!(unread(&s, u[0]), 1);
        // Deleting an unread message, one's own, and a read one.
        s.mark_read(room.id, u[1], ids[0]).unwrap();
        assert_eq!(unread(&s, u[1]), 4);
        s.delete_message(ids[3]).unwrap();
        assert_eq!(unread(&s, u[1]), 3);
        s.delete_message(ids[0]).unwrap();
        assert_eq!(unread(&s, u[1]), 3, "a read message going changes nothing");
        s.delete_message(own).unwrap();
        assert_eq!(unread(&s, u[1]), 3);
        assert_eq!(unread(&s, u[0]), 0, "the only message by u1 went");
        // Marking over a deleted message.
        s.mark_read(room.id, u[1], ids[4]).unwrap();
        assert_eq!(unread(&s, u[1]), 0);
        // A newcomer starts with nothing unread; what follows counts.
        s.add_member(room.id, u[2], Role::Simple, 4).unwrap();
        assert_eq!(unread(&s, u[2]), 0);
        s.insert_message(room.id, u[0], "hello", MsgType::Text, 5)
            .unwrap();
        assert_eq!(unread(&s, u[2]), 1);
        // Clearing the history leaves nothing unread.
        s.clear_history(room.id).unwrap();
        assert_eq!((unread(&s, u[1]), unread(&s, u[2])), (0, 0));
        let after = s
            .insert_message(room.id, u[0], "after", MsgType::Text, 6)
            .unwrap()
            .id;
        assert_eq!(unread(&s, u[1]), 1);
        s.mark_read(room.id, u[1], after).unwrap();
        assert_eq!(unread(&s, u[1]), 0);
        // Many messages cost the list nothing: it reads counters, not messages.
        s.atomically(|s| {
            for i in 0..2000 {
                s.insert_message(room.id, u[0], &format!("n{i}"), MsgType::Text, 7)?;
            }
            Ok::<_, crate::store::Error>(())
        })
        .unwrap();
        assert_eq!(unread(&s, u[1]), 2000);
        let plan: Vec<String> = s
            .conn
            .prepare(&format!(
                "EXPLAIN QUERY PLAN SELECT {ROOM_COLUMNS}, max(0, r.last_seq - m.read_seq - m.own_unseen - m.gone_unseen)
                 FROM members m JOIN rooms r ON r.id = m.room_id WHERE m.user_id = 2"
            ))
            .unwrap()
            .query_map([], |row| row.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(!plan.join(" ").contains("messages"), "{plan:?}");
    }
}
