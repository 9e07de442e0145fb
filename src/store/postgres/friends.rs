//! Friends and direct-message rooms.

use super::accounts::user_at;
use super::PgStore;
use crate::model::User;
use crate::store::{FriendStore, Result};

impl FriendStore for PgStore {
    fn refuses_friend(&self, refuser: i64, user: i64) -> Result<bool> {
        Ok(self
            .query_opt(
                "SELECT 1 FROM friend_refusals WHERE user_id = $1 AND refused_id = $2",
                &[&refuser, &user],
            )?
            .is_some())
    }

    fn add_friend(&mut self, user_id: i64, friend_id: i64, now: i64) -> Result<bool> {
        self.execute(
            "DELETE FROM friend_refusals WHERE user_id = $1 AND refused_id = $2",
            &[&user_id, &friend_id],
        )?;
        let insert =
            "INSERT INTO friends (user_id, friend_id, since) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
        let n = self.execute(insert, &[&user_id, &friend_id, &now])?;
        self.execute(insert, &[&friend_id, &user_id, &now])?;
        Ok(n > 0)
    }

    fn remove_friend(&mut self, user_id: i64, friend_id: i64, now: i64) -> Result<bool> {
        let n = self.execute(
            "DELETE FROM friends WHERE (user_id = $1 AND friend_id = $2) OR (user_id = $2 AND friend_id = $1)",
            &[&user_id, &friend_id],
        )?;
        if n > 0 {
            self.execute(
                "INSERT INTO friend_refusals (user_id, refused_id, since) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&user_id, &friend_id, &now],
            )?;
        }
        Ok(n > 0)
    }

    fn are_friends(&self, user_id: i64, friend_id: i64) -> Result<bool> {
        Ok(self
            .query_opt(
                "SELECT 1 FROM friends WHERE user_id = $1 AND friend_id = $2",
                &[&user_id, &friend_id],
            )?
            .is_some())
    }

    fn friends_of(&self, user_id: i64) -> Result<Vec<User>> {
        let rows = self.query(
            "SELECT u.id, u.login, u.name, u.\"desc\" FROM friends f JOIN users u ON u.id = f.friend_id
             WHERE f.user_id = $1 ORDER BY u.login COLLATE \"C\"",
            &[&user_id],
        )?;
        Ok(rows.iter().map(|row| user_at(row, 0)).collect())
    }

    fn friend_ids(&self, user_id: i64) -> Result<Vec<i64>> {
        let rows = self.query("SELECT friend_id FROM friends WHERE user_id = $1", &[&user_id])?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    fn direct_room(&self, a: i64, b: i64) -> Result<Option<i64>> {
        let row = self.query_opt(
            "SELECT room_id FROM direct_rooms WHERE low_user = $1 AND high_user = $2",
            &[&a.min(b), &a.max(b)],
        )?;
        Ok(row.map(|row| row.get(0)))
    }

    fn record_direct_room(&mut self, a: i64, b: i64, room_id: i64) -> Result<()> {
        self.execute(
            "INSERT INTO direct_rooms (low_user, high_user, room_id) VALUES ($1, $2, $3)",
            &[&a.min(b), &a.max(b), &room_id],
        )?;
        Ok(())
    }

    fn direct_peer(&self, room_id: i64, user_id: i64) -> Result<Option<User>> {
        let row = self.query_opt(
            "SELECT u.id, u.login, u.name, u.\"desc\" FROM direct_rooms d
             JOIN users u ON u.id = CASE WHEN d.low_user = $2 THEN d.high_user ELSE d.low_user END
             WHERE d.room_id = $1",
            &[&room_id, &user_id],
        )?;
        Ok(row.map(|row| user_at(&row, 0)))
    }
}
