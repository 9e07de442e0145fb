//! What `parleyd admin` reads and changes: accounts, tokens, rooms and
//! totals, for an operator without a client.

use rusqlite::params;

use super::accounts::user_from_row;
use super::Store;
use crate::model::{Role, RoomType, User};

/// A room as the operator sees it.
#[derive(Debug)]
pub struct RoomSummary {
    pub id: i64,
    pub name: String,
    pub room_type: RoomType,
    pub members: i64,
    pub messages: i64,
}

/// Totals for `parleyd admin stats`.
#[derive(Debug, Default)]
pub struct Totals {
    pub users: i64,
    pub rooms: i64,
    pub messages: i64,
    pub files: i64,
    pub file_bytes: i64,
}

impl Store {
    /// Every account, by id.
    pub fn all_users(&self) -> rusqlite::Result<Vec<(User, i64)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, login, name, \"desc\", created_at FROM users ORDER BY id")?;
        let rows = stmt.query_map([], |row| Ok((user_from_row(row)?, row.get(4)?)))?;
        rows.collect()
    }

    /// Replaces a user's password hash; returns whether the user exists.
    pub fn set_pass_hash(&mut self, user_id: i64, pass_hash: &str) -> rusqlite::Result<bool> {
        let n = self
            .conn
            .prepare_cached("UPDATE users SET pass_hash = ?2 WHERE id = ?1")?
            .execute(params![user_id, pass_hash])?;
        Ok(n > 0)
    }

    /// Deletes every token of a user; returns how many.
    pub fn revoke_all_tokens(&mut self, user_id: i64) -> rusqlite::Result<usize> {
        self.conn
            .prepare_cached("DELETE FROM tokens WHERE user_id = ?1")?
            .execute([user_id])
    }

    /// Every room with its member and message counts, by id.
    pub fn all_rooms(&self) -> rusqlite::Result<Vec<RoomSummary>> {
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
        rows.collect()
    }

    pub fn totals(&self) -> rusqlite::Result<Totals> {
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
