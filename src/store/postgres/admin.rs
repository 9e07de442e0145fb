//! What `parleyd admin` reads and changes, for a PostgreSQL store.

use super::accounts::user_at;
use super::PgStore;
use crate::model::{Role, RoomType, User};
use crate::store::{AdminStore, Result, RoomSummary, Totals};

impl AdminStore for PgStore {
    fn all_users(&self) -> Result<Vec<(User, i64)>> {
        let rows = self.query(
            "SELECT id, login, name, \"desc\", created_at FROM users ORDER BY id",
            &[],
        )?;
        Ok(rows.iter().map(|row| (user_at(row, 0), row.get(4))).collect())
    }

    fn set_pass_hash(&mut self, user_id: i64, pass_hash: &str) -> Result<bool> {
        let n = self.execute(
            "UPDATE users SET pass_hash = $2 WHERE id = $1",
            &[&user_id, &pass_hash],
        )?;
        Ok(n > 0)
    }

    fn revoke_all_tokens(&mut self, user_id: i64) -> Result<usize> {
        Ok(self.execute("DELETE FROM tokens WHERE user_id = $1", &[&user_id])? as usize)
    }

    fn all_rooms(&self) -> Result<Vec<RoomSummary>> {
        let rows = self.query(
            "SELECT r.id, r.name, r.room_type, r.msg_count,
                    (SELECT count(*) FROM members m WHERE m.room_id = r.id AND m.role <> $1)
             FROM rooms r ORDER BY r.id",
            &[&Role::Banned.code()],
        )?;
        Ok(rows
            .iter()
            .map(|row| RoomSummary {
                id: row.get(0),
                name: row.get(1),
                room_type: RoomType::from_code(row.get(2)).unwrap_or(RoomType::Private),
                messages: row.get(3),
                members: row.get(4),
            })
            .collect())
    }

    fn totals(&self) -> Result<Totals> {
        let row = self.query_one(
            "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM rooms), (SELECT count(*) FROM messages),
                    (SELECT count(*) FROM messages WHERE stored_name IS NOT NULL),
                    (SELECT coalesce(sum(file_size), 0)::bigint FROM messages WHERE stored_name IS NOT NULL)",
            &[],
        )?;
        Ok(Totals {
            users: row.get(0),
            rooms: row.get(1),
            messages: row.get(2),
            files: row.get(3),
            file_bytes: row.get(4),
        })
    }
}
