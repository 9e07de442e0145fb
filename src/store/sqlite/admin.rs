//! What `parleyd admin` reads and changes: accounts, tokens, rooms and
//! totals, for an operator without a client.

use rusqlite::params;

use super::accounts::user_from_row;
use super::SqliteStore;
use crate::model::{Role, RoomType, User};
use crate::store::{AdminStore, Result, RoomSummary, Totals};

impl AdminStore for SqliteStore {
    fn all_users(&self) -> Result<Vec<(User, i64)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, login, name, \"desc\", created_at FROM users ORDER BY id")?;
        let rows = stmt.query_map([], |row| Ok((user_from_row(row)?, row.get(4)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn set_pass_hash(&mut self, user_id: i64, pass_hash: &str) -> Result<bool> {
        let n = self
            .conn
            .prepare_cached("UPDATE users SET pass_hash = ?2 WHERE id = ?1")?
            .execute(params![user_id, pass_hash])?;
        Ok(n > 0)
    }

    fn revoke_all_tokens(&mut self, user_id: i64) -> Result<usize> {
        self.conn
            .prepare_cached("DELETE FROM tokens WHERE user_id = ?1")?
            .execute([user_id])
            .map_err(Into::into)
    }

    fn all_rooms(&self) -> Result<Vec<RoomSummary>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT r.id, r.name, r.room_type, r.msg_count,
                    (SELECT count(*) FROM members m WHERE m.room_id = r.id AND m.role != ?1)
             FROM rooms r ORDER BY r.id",
        )?;
        let rows = stmt.query_map([Role::Banned.code()], |row| {
            Ok(RoomSummary {
                id: row.get(0)?,
                name: row.get(1)?,
                room_type: RoomType::from_code(row.get(2)?).unwrap_or(RoomType::Private),
                messages: row.get(3)?,
                members: row.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn totals(&self) -> Result<Totals> {
        let count = |sql: &str| -> rusqlite::Result<i64> { self.conn.query_row(sql, [], |row| row.get(0)) };
        Ok(Totals {
            users: count("SELECT count(*) FROM users")?,
            rooms: count("SELECT count(*) FROM rooms")?,
            messages: count("SELECT count(*) FROM messages")?,
            files: count("SELECT count(*) FROM messages WHERE stored_name IS NOT NULL")?,
            file_bytes: count(
                "SELECT coalesce(sum(file_size), 0) FROM messages WHERE stored_name IS NOT NULL",
            )?,
        })
    }
}
