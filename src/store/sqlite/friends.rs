//! Friendships and direct-message rooms.

use rusqlite::{params, OptionalExtension};

use super::accounts::user_from_row;
use super::SqliteStore;
use crate::model::User;
use crate::store::{FriendStore, Result};

impl FriendStore for SqliteStore {
    fn refuses_friend(&self, refuser: i64, user: i64) -> Result<bool> {
        self.conn
            .prepare_cached("SELECT 1 FROM friend_refusals WHERE user_id = ?1 AND refused_id = ?2")?
            .query_row([refuser, user], |_| Ok(()))
            .optional()
            .map(|found| found.is_some())
            .map_err(Into::into)
    }

    fn add_friend(&mut self, user_id: i64, friend_id: i64, now: i64) -> Result<bool> {
        self.conn
            .prepare_cached("DELETE FROM friend_refusals WHERE user_id = ?1 AND refused_id = ?2")?
            .execute([user_id, friend_id])?;
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO friends (user_id, friend_id, since) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        )?;
        let n = stmt.execute(params![user_id, friend_id, now])?;
        stmt.execute(params![friend_id, user_id, now])?;
        Ok(n > 0)
    }

    fn remove_friend(&mut self, user_id: i64, friend_id: i64, now: i64) -> Result<bool> {
        let n = self
            .conn
            .prepare_cached(
                "DELETE FROM friends WHERE (user_id = ?1 AND friend_id = ?2) OR (user_id = ?2 AND friend_id = ?1)",
            )?
            .execute([user_id, friend_id])?;
        if n > 0 {
            self.conn
                .prepare_cached(
                    "INSERT INTO friend_refusals (user_id, refused_id, since) VALUES (?1, ?2, ?3)
                     ON CONFLICT DO NOTHING",
                )?
                .execute(params![user_id, friend_id, now])?;
        }
        Ok(n > 0)
    }

    fn are_friends(&self, user_id: i64, friend_id: i64) -> Result<bool> {
        self.conn
            .prepare_cached("SELECT 1 FROM friends WHERE user_id = ?1 AND friend_id = ?2")?
            .query_row([user_id, friend_id], |_| Ok(()))
            .optional()
            .map(|found| found.is_some())
            .map_err(Into::into)
    }

    fn friends_of(&self, user_id: i64) -> Result<Vec<User>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT u.id, u.login, u.name, u.\"desc\" FROM friends f JOIN users u ON u.id = f.friend_id
             WHERE f.user_id = ?1 ORDER BY u.login",
        )?;
        let rows = stmt.query_map([user_id], user_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn friend_ids(&self, user_id: i64) -> Result<Vec<i64>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT friend_id FROM friends WHERE user_id = ?1")?;
        let rows = stmt.query_map([user_id], |row| row.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn direct_room(&self, a: i64, b: i64) -> Result<Option<i64>> {
        self.conn
            .prepare_cached("SELECT room_id FROM direct_rooms WHERE low_user = ?1 AND high_user = ?2")?
            .query_row([a.min(b), a.max(b)], |row| row.get(0))
            .optional()
            .map_err(Into::into)
    }

    fn record_direct_room(&mut self, a: i64, b: i64, room_id: i64) -> Result<()> {
        self.conn
            .prepare_cached("INSERT INTO direct_rooms (low_user, high_user, room_id) VALUES (?1, ?2, ?3)")?
            .execute(params![a.min(b), a.max(b), room_id])?;
        Ok(())
    }

    fn direct_peer(&self, room_id: i64, user_id: i64) -> Result<Option<User>> {
        self.conn
            .prepare_cached(
                "SELECT u.id, u.login, u.name, u.\"desc\" FROM direct_rooms d
                 JOIN users u ON u.id = CASE WHEN d.low_user = ?2 THEN d.high_user ELSE d.low_user END
                 WHERE d.room_id = ?1",
            )?
            .query_row([room_id, user_id], user_from_row)
            .optional()
            .map_err(Into::into)
    }
}
