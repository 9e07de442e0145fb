//! Conversation features (design.md §7): replies, reactions, mentions and
//! pins, and the extras each message object carries.
//!
//! A page of messages gets its extras with one statement per kind for the
//! whole page (`IN (SELECT value FROM json_each(?))`), each answered from
//! its table's key, so a history page costs a few index lookups more.

use std::collections::HashMap;

use rusqlite::{params, OptionalExtension};

use super::SqliteStore;
use crate::model::{Message, Role};
use crate::store::{ConversationStore, Extras, Result};

fn ids_json(ids: &[i64]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

impl ConversationStore for SqliteStore {
    fn set_reply_to(&mut self, msg_id: i64, reply_to: i64) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE messages SET reply_to = ?2 WHERE id = ?1")?
            .execute(params![msg_id, reply_to])?;
        Ok(())
    }

    fn members_named(&self, room_id: i64, logins: &[String]) -> Result<Vec<i64>> {
        let folded: Vec<String> = logins.iter().map(|l| l.to_lowercase()).collect();
        let mut stmt = self.conn.prepare_cached(
            "SELECT u.id FROM users u JOIN members m ON m.user_id = u.id
             WHERE m.room_id = ?1 AND m.role != ?2
               AND lower(u.login) IN (SELECT value FROM json_each(?3))
             ORDER BY u.id",
        )?;
        let json = serde_json::to_string(&folded).unwrap_or_else(|_| "[]".into());
        let rows = stmt.query_map(params![room_id, Role::Banned.code(), json], |row| row.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn insert_mentions(&mut self, msg_id: i64, room_id: i64, users: &[i64]) -> Result<()> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO mentions (user_id, msg_id, room_id) VALUES (?1, ?2, ?3)",
        )?;
        for user in users {
            stmt.execute(params![user, msg_id, room_id])?;
        }
        Ok(())
    }

    fn react(&mut self, msg_id: i64, user_id: i64, emoji: &str, on: bool) -> Result<bool> {
        let sql = if on {
            "INSERT OR IGNORE INTO reactions (msg_id, emoji, user_id) VALUES (?1, ?2, ?3)"
        } else {
            "DELETE FROM reactions WHERE msg_id = ?1 AND emoji = ?2 AND user_id = ?3"
        };
        Ok(self
            .conn
            .prepare_cached(sql)?
            .execute(params![msg_id, emoji, user_id])?
            > 0)
    }

    fn reaction_kinds(&self, msg_id: i64, emoji: &str) -> Result<(bool, i64)> {
        self.conn
            .prepare_cached(
                "SELECT count(*) FILTER (WHERE emoji = ?2) > 0, count(*)
                 FROM (SELECT DISTINCT emoji FROM reactions WHERE msg_id = ?1)",
            )?
            .query_row(params![msg_id, emoji], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(Into::into)
    }

    fn pin(&mut self, room_id: i64, msg_id: i64, user_id: i64, pinned: bool, now: i64) -> Result<bool> {
        let changed = if pinned {
            self.conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO pins (room_id, msg_id, user_id, pinned_at) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![room_id, msg_id, user_id, now])?
        } else {
            self.conn
                .prepare_cached("DELETE FROM pins WHERE room_id = ?1 AND msg_id = ?2")?
                .execute(params![room_id, msg_id])?
        };
        Ok(changed > 0)
    }

    fn pins_in(&self, room_id: i64, msg_id: i64) -> Result<(i64, bool)> {
        self.conn
            .prepare_cached(
                "SELECT count(*), count(*) FILTER (WHERE msg_id = ?2) > 0 FROM pins WHERE room_id = ?1",
            )?
            .query_row(params![room_id, msg_id], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(Into::into)
    }

    fn pinned(&self, room_id: i64) -> Result<Vec<Message>> {
        let sql = format!(
            "SELECT {} FROM pins p JOIN messages m ON m.id = p.msg_id JOIN users u ON u.id = m.user_id
             WHERE p.room_id = ?1 ORDER BY p.pinned_at DESC, p.msg_id DESC",
            super::messages::MESSAGE_COLUMNS
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map([room_id], super::messages::message_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn mentions_of(&self, user_id: i64, before_id: Option<i64>, limit: usize) -> Result<Vec<Message>> {
        let sql = format!(
            "SELECT {} FROM mentions n
             JOIN messages m ON m.id = n.msg_id
             JOIN users u ON u.id = m.user_id
             JOIN members mb ON mb.room_id = n.room_id AND mb.user_id = n.user_id AND mb.role != ?3
             WHERE n.user_id = ?1 AND n.msg_id < ?2
             ORDER BY n.msg_id DESC LIMIT ?4",
            super::messages::MESSAGE_COLUMNS
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(
            params![
                user_id,
                before_id.unwrap_or(i64::MAX),
                Role::Banned.code(),
                limit as i64
            ],
            super::messages::message_from_row,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn extras(&self, messages: &[Message], viewer: i64) -> Result<HashMap<i64, Extras>> {
        let mut extras: HashMap<i64, Extras> = HashMap::new();
        if messages.is_empty() {
            return Ok(extras);
        }
        let ids: Vec<i64> = messages.iter().map(|m| m.id).collect();
        let json = ids_json(&ids);
        {
            let mut stmt = self.conn.prepare_cached(
                "SELECT msg_id, emoji, count(*), max(user_id = ?2) FROM reactions
                 WHERE msg_id IN (SELECT value FROM json_each(?1))
                 GROUP BY msg_id, emoji ORDER BY msg_id, emoji",
            )?;
            let mut rows = stmt.query(params![json, viewer])?;
            while let Some(row) = rows.next()? {
                let entry = extras.entry(row.get(0)?).or_default();
                let emoji: String = row.get(1)?;
                if row.get::<_, bool>(3)? {
                    entry.mine.push(emoji.clone());
                }
                entry.reactions.push((emoji, row.get(2)?));
            }
        }
        {
            let mut stmt = self.conn.prepare_cached(
                "SELECT msg_id, user_id FROM mentions WHERE msg_id IN (SELECT value FROM json_each(?1))
                 ORDER BY msg_id, user_id",
            )?;
            let mut rows = stmt.query([&json])?;
            while let Some(row) = rows.next()? {
                extras.entry(row.get(0)?).or_default().mentions.push(row.get(1)?);
            }
        }
        let answered: Vec<i64> = messages
            .iter()
            .filter(|m| m.reply_to != 0)
            .map(|m| m.reply_to)
            .collect();
        if !answered.is_empty() {
            let mut originals: HashMap<i64, (i64, String, String)> = HashMap::new();
            let mut stmt = self.conn.prepare_cached(
                "SELECT m.id, m.user_id, u.login, substr(m.body, 1, 100) FROM messages m JOIN users u ON u.id = m.user_id
                 WHERE m.id IN (SELECT value FROM json_each(?1))",
            )?;
            let mut rows = stmt.query([ids_json(&answered)])?;
            while let Some(row) = rows.next()? {
                originals.insert(row.get(0)?, (row.get(1)?, row.get(2)?, row.get(3)?));
            }
            for m in messages.iter().filter(|m| m.reply_to != 0) {
                if let Some(original) = originals.get(&m.reply_to) {
                    extras.entry(m.id).or_default().reply_preview = Some(original.clone());
                }
            }
        }
        Ok(extras)
    }

    fn reply_preview(&self, room_id: i64, msg_id: i64) -> Result<Option<(i64, String, String)>> {
        self.conn
            .prepare_cached(
                "SELECT m.user_id, u.login, substr(m.body, 1, 100) FROM messages m JOIN users u ON u.id = m.user_id
                 WHERE m.id = ?1 AND m.room_id = ?2",
            )?
            .query_row(params![msg_id, room_id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .optional().map_err(Into::into)
    }
}
