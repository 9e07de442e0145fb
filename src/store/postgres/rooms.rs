//! Rooms and membership. As in the SQLite store, none of these open a
//! transaction of their own.

use std::sync::Arc;

use postgres::Row;

use super::accounts::user_at;
use super::{role_from, PgStore};
use crate::model::{fold_name, Member, Role, Room, RoomListing, RoomType};
use crate::store::{Audience, Departure, Result, RoomState, RoomStore};

const ROOM_COLUMNS: &str =
    "r.id, r.name, r.\"desc\", r.room_type, r.owner_id, r.created_at, r.msg_count, r.power";
/// How many columns `ROOM_COLUMNS` names: queries' own columns follow.
const ROOM_FIELDS: usize = 8;

fn room_from_row(row: &Row) -> Room {
    Room {
        id: row.get(0),
        name: row.get(1),
        desc: row.get(2),
        room_type: RoomType::from_code(row.get(3)).unwrap_or(RoomType::Private),
        owner_id: row.get(4),
        created_at: row.get(5),
        msg_count: row.get(6),
        power: row.get(7),
    }
}

impl RoomStore for PgStore {
    fn create_room(
        &mut self,
        owner: i64,
        name: &str,
        desc: &str,
        room_type: RoomType,
        now: i64,
    ) -> Result<Room> {
        let id: i64 = self
            .query_one(
                "INSERT INTO rooms (name, name_fold, \"desc\", room_type, owner_id, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                &[&name, &fold_name(name), &desc, &room_type.code(), &owner, &now],
            )?
            .get(0);
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
        let row = self.query_opt(
            &format!("SELECT {ROOM_COLUMNS} FROM rooms r WHERE r.id = $1"),
            &[&room_id],
        )?;
        Ok(row.as_ref().map(room_from_row))
    }

    fn role_in(&self, room_id: i64, user_id: i64) -> Result<Option<Role>> {
        let row = self.query_opt(
            "SELECT role FROM members WHERE room_id = $1 AND user_id = $2",
            &[&room_id, &user_id],
        )?;
        Ok(row.map(|row| role_from(row.get(0))))
    }

    fn rooms_of(&self, user_id: i64, since: i64) -> Result<Vec<RoomListing>> {
        let rows = self.query(
            &format!(
                "SELECT {ROOM_COLUMNS}, m.role,
                     greatest(0, r.last_seq - m.read_seq - m.own_unseen - m.gone_unseen),
                     (SELECT coalesce(max(x.id), 0) FROM messages x WHERE x.room_id = r.id),
                     (SELECT count(*) FROM mentions n
                      WHERE n.user_id = m.user_id AND n.room_id = r.id AND n.msg_id > m.last_read)
                 FROM members m JOIN rooms r ON r.id = m.room_id
                 WHERE m.user_id = $1 AND m.role <> $2 AND m.joined_at > $3 ORDER BY r.id"
            ),
            &[&user_id, &Role::Banned.code(), &since],
        )?;
        Ok(rows
            .iter()
            .map(|row| RoomListing {
                room: room_from_row(row),
                role: role_from(row.get(ROOM_FIELDS)),
                unread: row.get(ROOM_FIELDS + 1),
                last_msg_id: row.get(ROOM_FIELDS + 2),
                mentions: row.get(ROOM_FIELDS + 3),
            })
            .collect())
    }

    fn add_member(&mut self, room_id: i64, user_id: i64, role: Role, now: i64) -> Result<bool> {
        self.rooms.forget(room_id);
        let n = self.execute(
            "INSERT INTO members (room_id, user_id, role, joined_at, last_read, read_seq)
             VALUES ($1, $2, $3, $4,
                     coalesce((SELECT max(id) FROM messages WHERE room_id = $1), 0),
                     (SELECT last_seq FROM rooms WHERE id = $1))
             ON CONFLICT (room_id, user_id) DO NOTHING",
            &[&room_id, &user_id, &role.code(), &now],
        )?;
        Ok(n > 0)
    }

    fn remove_member(&mut self, room_id: i64, user_id: i64) -> Result<bool> {
        self.rooms.forget(room_id);
        let n = self.execute(
            "DELETE FROM members WHERE room_id = $1 AND user_id = $2",
            &[&room_id, &user_id],
        )?;
        Ok(n > 0)
    }

    fn set_role(&mut self, room_id: i64, user_id: i64, role: Role) -> Result<()> {
        self.rooms.forget(room_id);
        self.execute(
            "UPDATE members SET role = $3 WHERE room_id = $1 AND user_id = $2",
            &[&room_id, &user_id, &role.code()],
        )?;
        if role == Role::Owner {
            self.execute(
                "UPDATE rooms SET owner_id = $2 WHERE id = $1",
                &[&room_id, &user_id],
            )?;
        }
        Ok(())
    }

    fn leave_room(&mut self, room_id: i64, user_id: i64) -> Result<Departure> {
        let was_owner = self.role_in(room_id, user_id)? == Some(Role::Owner);
        self.remove_member(room_id, user_id)?;
        let successor: Option<i64> = self
            .query_opt(
                "SELECT user_id FROM members WHERE room_id = $1 AND role <> $2
                 ORDER BY role = $3 DESC, id LIMIT 1",
                &[&room_id, &Role::Banned.code(), &Role::Admin.code()],
            )?
            .map(|row| row.get(0));
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
        self.rooms.forget(room_id);
        self.execute("DELETE FROM rooms WHERE id = $1", &[&room_id])?;
        Ok(())
    }

    fn rename_room(&mut self, room_id: i64, name: &str) -> Result<()> {
        self.rooms.forget(room_id);
        self.execute(
            "UPDATE rooms SET name = $2, name_fold = $3 WHERE id = $1",
            &[&room_id, &name, &fold_name(name)],
        )?;
        Ok(())
    }

    fn set_room_desc(&mut self, room_id: i64, desc: &str) -> Result<()> {
        self.rooms.forget(room_id);
        self.execute("UPDATE rooms SET \"desc\" = $2 WHERE id = $1", &[&room_id, &desc])?;
        Ok(())
    }

    fn search_global_rooms(
        &self,
        prefix_fold: &str,
        user_id: i64,
        limit: usize,
    ) -> Result<Vec<(Room, Option<Role>)>> {
        // A byte-wise range on the folded-name index (text_pattern_ops):
        // every name with the prefix sorts below the prefix followed by the
        // highest code point, whose UTF-8 bytes sort last.
        let upper = format!("{prefix_fold}\u{10FFFF}");
        let rows = self.query(
            &format!(
                "SELECT {ROOM_COLUMNS}, m.role FROM rooms r
                 LEFT JOIN members m ON m.room_id = r.id AND m.user_id = $3
                 WHERE r.room_type = $4 AND r.name_fold ~>=~ $1 AND r.name_fold ~<~ $2
                   AND (m.role IS NULL OR m.role <> $5)
                 ORDER BY r.name_fold COLLATE \"C\", r.id LIMIT $6"
            ),
            &[
                &prefix_fold,
                &upper,
                &user_id,
                &RoomType::Global.code(),
                &Role::Banned.code(),
                &(limit as i64),
            ],
        )?;
        Ok(rows
            .iter()
            .map(|row| {
                let role: Option<i64> = row.get(ROOM_FIELDS);
                (room_from_row(row), role.map(role_from))
            })
            .collect())
    }

    fn members(&self, room_id: i64) -> Result<Vec<Member>> {
        let rows = self.query(
            "SELECT u.id, u.login, u.name, u.\"desc\", m.role FROM members m JOIN users u ON u.id = m.user_id
             WHERE m.room_id = $1 AND m.role <> $2 ORDER BY m.role, m.id",
            &[&room_id, &Role::Banned.code()],
        )?;
        Ok(rows
            .iter()
            .map(|row| Member {
                user: user_at(row, 0),
                role: role_from(row.get(4)),
            })
            .collect())
    }

    fn member_roles(&self, room_id: i64) -> Result<Vec<(i64, Role)>> {
        let rows = self.query(
            "SELECT user_id, role FROM members WHERE room_id = $1",
            &[&room_id],
        )?;
        Ok(rows
            .iter()
            .map(|row| (row.get(0), role_from(row.get(1))))
            .collect())
    }

    fn member_ids(&self, room_id: i64) -> Result<Vec<i64>> {
        let rows = self.query(
            "SELECT user_id FROM members WHERE room_id = $1 AND role <> $2",
            &[&room_id, &Role::Banned.code()],
        )?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    fn room_and_role(&mut self, room_id: i64, user_id: i64) -> Result<Option<(Room, Option<Role>)>> {
        if self.rooms.kept() {
            return Ok(self
                .cached_room(room_id)?
                .map(|state| (state.room.clone(), state.role_of(user_id))));
        }
        // One round trip: every message asks this first.
        let row = self.query_opt(
            &format!(
                "SELECT {ROOM_COLUMNS}, m.role FROM rooms r
                 LEFT JOIN members m ON m.room_id = r.id AND m.user_id = $2 WHERE r.id = $1"
            ),
            &[&room_id, &user_id],
        )?;
        Ok(row.map(|row| {
            let role: Option<i64> = row.get(ROOM_FIELDS);
            (room_from_row(&row), role.map(role_from))
        }))
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

impl PgStore {
    /// The batch's cached state of a room, loaded on a miss; `None` for
    /// stores without a cache and for rooms that do not exist.
    fn cached_room(&mut self, room_id: i64) -> Result<Option<&RoomState>> {
        if !self.rooms.kept() {
            return Ok(None);
        }
        if self.rooms.get(room_id).is_none() {
            let Some(state) = self.load_room_state(room_id)? else {
                return Ok(None);
            };
            self.rooms.insert(state);
        }
        Ok(self.rooms.get(room_id))
    }

    /// Locks `rooms` (sorted) in id order and puts them in the batch's
    /// cache, in one round trip.
    pub(super) fn lock_and_cache_rooms(&mut self, rooms: &[i64]) -> Result<()> {
        let rows = self.query(
            &format!(
                "SELECT {ROOM_COLUMNS}, coalesce(m.users, '{{}}'), coalesce(m.roles, '{{}}')
                 FROM (SELECT * FROM rooms WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE) r
                 LEFT JOIN LATERAL (SELECT array_agg(user_id) AS users, array_agg(role) AS roles
                                    FROM members WHERE room_id = r.id) m ON true"
            ),
            &[&rooms],
        )?;
        for row in &rows {
            self.rooms.insert(room_state_from_row(row));
        }
        Ok(())
    }

    /// The room and its members' roles in one round trip. The newest date
    /// is not kept: dates are drawn from the room's row when storing.
    fn load_room_state(&self, room_id: i64) -> Result<Option<RoomState>> {
        let row = self.query_opt(
            &format!(
                "SELECT {ROOM_COLUMNS},
                     coalesce(array_agg(m.user_id) FILTER (WHERE m.user_id IS NOT NULL), '{{}}'),
                     coalesce(array_agg(m.role) FILTER (WHERE m.user_id IS NOT NULL), '{{}}')
                 FROM rooms r LEFT JOIN members m ON m.room_id = r.id WHERE r.id = $1 GROUP BY r.id"
            ),
            &[&room_id],
        )?;
        Ok(row.as_ref().map(room_state_from_row))
    }
}

/// A room with its members' ids and roles (as two arrays after the room's
/// columns). The newest date is not kept: dates are drawn from the room's
/// row when storing.
fn room_state_from_row(row: &Row) -> RoomState {
    let users: Vec<i64> = row.get(ROOM_FIELDS);
    let roles: Vec<i64> = row.get(ROOM_FIELDS + 1);
    let roles = users.into_iter().zip(roles.into_iter().map(role_from)).collect();
    RoomState::new(room_from_row(row), 0, roles)
}
