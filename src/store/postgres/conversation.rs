//! Conversation features (design.md §7): replies, reactions, mentions and
//! pins, and the extras each message object carries.

use std::collections::HashMap;

use super::messages::{message_from_row, MESSAGE_COLUMNS};
use super::PgStore;
use crate::model::{Message, Role};
use crate::store::{ConversationStore, Extras, Result};

impl ConversationStore for PgStore {
    fn set_reply_to(&mut self, msg_id: i64, reply_to: i64) -> Result<()> {
        self.execute(
            "UPDATE messages SET reply_to = $2 WHERE id = $1",
            &[&msg_id, &reply_to],
        )?;
        Ok(())
    }

    fn members_named(&self, room_id: i64, logins: &[String]) -> Result<Vec<i64>> {
        let folded: Vec<String> = logins.iter().map(|l| l.to_lowercase()).collect();
        let rows = self.query(
            "SELECT u.id FROM users u JOIN members m ON m.user_id = u.id
             WHERE m.room_id = $1 AND m.role <> $2 AND lower(u.login) = ANY($3)
             ORDER BY u.id",
            &[&room_id, &Role::Banned.code(), &folded],
        )?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    fn insert_mentions(&mut self, msg_id: i64, room_id: i64, users: &[i64]) -> Result<()> {
        self.execute(
            "INSERT INTO mentions (user_id, msg_id, room_id) SELECT unnest($1::bigint[]), $2, $3
             ON CONFLICT DO NOTHING",
            &[&users, &msg_id, &room_id],
        )?;
        Ok(())
    }

    fn react(&mut self, msg_id: i64, user_id: i64, emoji: &str, on: bool) -> Result<bool> {
        let sql = if on {
            "INSERT INTO reactions (msg_id, emoji, user_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM reactions WHERE msg_id = $1 AND emoji = $2 AND user_id = $3"
        };
        Ok(self.execute(sql, &[&msg_id, &emoji, &user_id])? > 0)
    }

    fn reaction_kinds(&self, msg_id: i64, emoji: &str) -> Result<(bool, i64)> {
        let row = self.query_one(
            "SELECT count(*) FILTER (WHERE emoji = $2) > 0, count(*)
             FROM (SELECT DISTINCT emoji FROM reactions WHERE msg_id = $1) kinds",
            &[&msg_id, &emoji],
        )?;
        Ok((row.get(0), row.get(1)))
    }

    fn pin(&mut self, room_id: i64, msg_id: i64, user_id: i64, pinned: bool, now: i64) -> Result<bool> {
        let changed = if pinned {
            self.execute(
                "INSERT INTO pins (room_id, msg_id, user_id, pinned_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&room_id, &msg_id, &user_id, &now],
            )?
        } else {
            self.execute(
                "DELETE FROM pins WHERE room_id = $1 AND msg_id = $2",
                &[&room_id, &msg_id],
            )?
        };
        Ok(changed > 0)
    }

    fn pins_in(&self, room_id: i64, msg_id: i64) -> Result<(i64, bool)> {
        let row = self.query_one(
            "SELECT count(*), count(*) FILTER (WHERE msg_id = $2) > 0 FROM pins WHERE room_id = $1",
            &[&room_id, &msg_id],
        )?;
        Ok((row.get(0), row.get(1)))
    }

    fn pinned(&self, room_id: i64) -> Result<Vec<Message>> {
        let rows = self.query(
            &format!(
                "SELECT {MESSAGE_COLUMNS} FROM pins p JOIN messages m ON m.id = p.msg_id JOIN users u ON u.id = m.user_id
                 WHERE p.room_id = $1 ORDER BY p.pinned_at DESC, p.msg_id DESC"
            ),
            &[&room_id],
        )?;
        Ok(rows.iter().map(message_from_row).collect())
    }

    fn mentions_of(&self, user_id: i64, before_id: Option<i64>, limit: usize) -> Result<Vec<Message>> {
        let rows = self.query(
            &format!(
                "SELECT {MESSAGE_COLUMNS} FROM mentions n
                 JOIN messages m ON m.id = n.msg_id
                 JOIN users u ON u.id = m.user_id
                 JOIN members mb ON mb.room_id = n.room_id AND mb.user_id = n.user_id AND mb.role <> $3
                 WHERE n.user_id = $1 AND n.msg_id < $2
                 ORDER BY n.msg_id DESC LIMIT $4"
            ),
            &[
                &user_id,
                &before_id.unwrap_or(i64::MAX),
                &Role::Banned.code(),
                &(limit as i64),
            ],
        )?;
        Ok(rows.iter().map(message_from_row).collect())
    }

    fn extras(&self, messages: &[Message], viewer: i64) -> Result<HashMap<i64, Extras>> {
        let mut extras: HashMap<i64, Extras> = HashMap::new();
        if messages.is_empty() {
            return Ok(extras);
        }
        let ids: Vec<i64> = messages.iter().map(|m| m.id).collect();
        let reactions = self.query(
            "SELECT msg_id, emoji, count(*), bool_or(user_id = $2) FROM reactions
             WHERE msg_id = ANY($1) GROUP BY msg_id, emoji ORDER BY msg_id, emoji COLLATE \"C\"",
            &[&ids, &viewer],
        )?;
        for row in &reactions {
            let entry = extras.entry(row.get(0)).or_default();
            let emoji: String = row.get(1);
            if row.get::<_, bool>(3) {
                entry.mine.push(emoji.clone());
            }
            entry.reactions.push((emoji, row.get(2)));
        }
        let mentions = self.query(
            "SELECT msg_id, user_id FROM mentions WHERE msg_id = ANY($1) ORDER BY msg_id, user_id",
            &[&ids],
        )?;
        for row in &mentions {
            extras.entry(row.get(0)).or_default().mentions.push(row.get(1));
        }
        let answered: Vec<i64> = messages
            .iter()
            .filter(|m| m.reply_to != 0)
            .map(|m| m.reply_to)
            .collect();
        if !answered.is_empty() {
            let rows = self.query(
                "SELECT m.id, m.user_id, u.login, substr(m.body, 1, 100) FROM messages m JOIN users u ON u.id = m.user_id
                 WHERE m.id = ANY($1)",
                &[&answered],
            )?;
            let originals: HashMap<i64, (i64, String, String)> = rows
                .iter()
                .map(|row| (row.get(0), (row.get(1), row.get(2), row.get(3))))
                .collect();
            for m in messages.iter().filter(|m| m.reply_to != 0) {
                if let Some(original) = originals.get(&m.reply_to) {
                    extras.entry(m.id).or_default().reply_preview = Some(original.clone());
                }
            }
        }
        Ok(extras)
    }

    fn reply_preview(&self, room_id: i64, msg_id: i64) -> Result<Option<(i64, String, String)>> {
        let row = self.query_opt(
            "SELECT m.user_id, u.login, substr(m.body, 1, 100) FROM messages m JOIN users u ON u.id = m.user_id
             WHERE m.id = $1 AND m.room_id = $2",
            &[&msg_id, &room_id],
        )?;
        Ok(row.map(|row| (row.get(0), row.get(1), row.get(2))))
    }
}
