//! Messages: storing, editing, deleting, history pages, full-text search,
//! and read markers.

use postgres::types::ToSql;
use postgres::Row;

use super::PgStore;
use crate::model::{Message, MsgType, Role, RoomTail, StoredFile};
use crate::store::{Error, HistoryQuery, MessageStore, Result, SearchScope, Stored, MAX_SEARCH_WORDS};

pub(super) const MESSAGE_COLUMNS: &str =
    "m.id, m.room_id, m.user_id, u.login, m.date, m.body, m.msg_type, m.edited, m.file_name, m.file_size, m.stored_name, m.reply_to";
/// How many columns `MESSAGE_COLUMNS` names: queries' own columns follow.
const MESSAGE_FIELDS: usize = 12;

pub(super) fn message_from_row(row: &Row) -> Message {
    let file = match (
        row.get::<_, Option<String>>(8),
        row.get::<_, Option<i64>>(9),
        row.get(10),
    ) {
        (Some(name), Some(size), Some(stored_name)) => Some(StoredFile {
            name,
            size,
            stored_name,
        }),
        _ => None,
    };
    Message {
        id: row.get(0),
        room_id: row.get(1),
        user_id: row.get(2),
        login: row.get(3),
        date: row.get(4),
        body: row.get(5),
        msg_type: MsgType::from_code(row.get(6)).unwrap_or(MsgType::Text),
        edited: row.get(7),
        file,
        reply_to: row.get(11),
    }
}

/// The text query for what a user typed: every word must begin a word of
/// the message. Words are split as the SQLite store splits them (letters
/// and digits), so nothing typed is read as query syntax; the database
/// folds case and accents. `None` when the text holds no word at all.
fn prefix_query(text: &str) -> Option<String> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(MAX_SEARCH_WORDS)
        .map(|w| format!("{w}:*"))
        .collect();
    (!words.is_empty()).then(|| words.join(" & "))
}

/// What deleting a message must undo in its room's counters.
struct Doomed {
    room_id: i64,
    author: i64,
    bytes: i64,
}

impl PgStore {
    /// Locks a message's row for a change and says what its room counts of it.
    fn lock_message(&self, id: i64) -> Result<Option<Doomed>> {
        let row = self.query_opt(
            "SELECT room_id, user_id, octet_length(body)::bigint FROM messages WHERE id = $1 FOR UPDATE",
            &[&id],
        )?;
        Ok(row.map(|row| Doomed {
            room_id: row.get(0),
            author: row.get(1),
            bytes: row.get(2),
        }))
    }
}

impl MessageStore for PgStore {
    fn insert_message(
        &mut self,
        room_id: i64,
        user_id: i64,
        body: &str,
        msg_type: MsgType,
        now: i64,
    ) -> Result<Stored> {
        // The room's row lock orders the room's messages: the next number
        // and the date are drawn under it, and so is the id (the insert
        // reads the update's row), so ids increase in the room's order.
        let row = self.query_opt(
            "WITH r AS (
                 UPDATE rooms SET msg_count = msg_count + 1, last_seq = last_seq + 1,
                                  last_date = greatest(last_date, $3), power = power + octet_length($4)
                 WHERE id = $1 RETURNING last_seq, last_date),
             author AS (
                 UPDATE members SET own_unseen = own_unseen + 1 WHERE room_id = $1 AND user_id = $2)
             INSERT INTO messages (room_id, user_id, date, body, msg_type, seq)
             SELECT $1, $2, r.last_date, $4, $5, r.last_seq FROM r
             RETURNING id, date, seq",
            &[&room_id, &user_id, &now, &body, &msg_type.code()],
        )?;
        let row = row.ok_or(Error::Conflict("the room was deleted"))?;
        let stored = Stored {
            id: row.get(0),
            date: row.get(1),
            seq: row.get(2),
        };
        self.rooms.note_message(room_id, stored.date, body.len());
        Ok(stored)
    }

    fn newest_date(&self, room_id: i64) -> Result<i64> {
        Ok(self
            .query_one(
                "SELECT coalesce(max(date), 0) FROM messages WHERE room_id = $1",
                &[&room_id],
            )?
            .get(0))
    }

    fn insert_file_message(
        &mut self,
        room_id: i64,
        user_id: i64,
        file: &StoredFile,
        now: i64,
    ) -> Result<Stored> {
        let stored = self.insert_message(room_id, user_id, &file.name, MsgType::File, now)?;
        self.execute(
            "UPDATE messages SET file_name = $2, file_size = $3, stored_name = $4 WHERE id = $1",
            &[&stored.id, &file.name, &file.size, &file.stored_name],
        )?;
        Ok(stored)
    }

    fn stored_files_in_room(&self, room_id: i64) -> Result<Vec<String>> {
        let rows = self.query(
            "SELECT stored_name FROM messages WHERE room_id = $1 AND stored_name IS NOT NULL",
            &[&room_id],
        )?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    fn all_stored_files(&self) -> Result<Vec<String>> {
        let rows = self.query(
            "SELECT stored_name FROM messages WHERE stored_name IS NOT NULL",
            &[],
        )?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    fn stored_bytes_of(&self, user_id: i64) -> Result<i64> {
        Ok(self
            .query_one(
                "SELECT coalesce(sum(file_size), 0)::bigint FROM messages WHERE user_id = $1 AND stored_name IS NOT NULL",
                &[&user_id],
            )?
            .get(0))
    }

    fn message(&self, id: i64) -> Result<Option<Message>> {
        let row = self.query_opt(
            &format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN users u ON u.id = m.user_id WHERE m.id = $1"
            ),
            &[&id],
        )?;
        Ok(row.as_ref().map(message_from_row))
    }

    fn edit_message(&mut self, id: i64, body: &str) -> Result<()> {
        let Some(old) = self.lock_message(id)? else {
            return Ok(());
        };
        self.rooms.forget(old.room_id);
        self.execute(
            "UPDATE messages SET body = $2, edited = true WHERE id = $1",
            &[&id, &body],
        )?;
        self.execute(
            "UPDATE rooms SET power = power - $2 + octet_length($3) WHERE id = $1",
            &[&old.room_id, &old.bytes, &body],
        )?;
        Ok(())
    }

    fn delete_message(&mut self, id: i64) -> Result<()> {
        let Some(doomed) = self.lock_message(id)? else {
            return Ok(());
        };
        self.rooms.forget(doomed.room_id);
        self.execute(
            "UPDATE members SET gone_unseen = gone_unseen + 1, own_unseen = own_unseen - (user_id = $3)::int
             WHERE room_id = $1 AND last_read < $2",
            &[&doomed.room_id, &id, &doomed.author],
        )?;
        self.execute("DELETE FROM messages WHERE id = $1", &[&id])?;
        self.execute(
            "UPDATE rooms SET msg_count = msg_count - 1, power = power - $2 WHERE id = $1",
            &[&doomed.room_id, &doomed.bytes],
        )?;
        Ok(())
    }

    fn expire_messages(&mut self, before: i64, limit: usize) -> Result<(usize, Vec<String>)> {
        let expired = self.query(
            "SELECT id, stored_name FROM messages WHERE date < $1 ORDER BY id LIMIT $2",
            &[&before, &(limit as i64)],
        )?;
        let mut files = Vec::new();
        for row in &expired {
            self.delete_message(row.get(0))?;
            files.extend(row.get::<_, Option<String>>(1));
        }
        Ok((expired.len(), files))
    }

    fn clear_history(&mut self, room_id: i64) -> Result<usize> {
        self.rooms.forget(room_id);
        // The room's lock first: no message of another node slips in between.
        self.execute("SELECT 1 FROM rooms WHERE id = $1 FOR UPDATE", &[&room_id])?;
        self.execute(
            "UPDATE members SET
                 last_read = greatest(last_read, coalesce((SELECT max(id) FROM messages WHERE room_id = $1), 0)),
                 read_seq = (SELECT last_seq FROM rooms WHERE id = $1),
                 own_unseen = 0, gone_unseen = 0
             WHERE room_id = $1",
            &[&room_id],
        )?;
        let n = self.execute("DELETE FROM messages WHERE room_id = $1", &[&room_id])?;
        self.execute(
            "UPDATE rooms SET msg_count = 0, power = 0 WHERE id = $1",
            &[&room_id],
        )?;
        Ok(n as usize)
    }

    fn history(&self, room_id: i64, q: &HistoryQuery) -> Result<Vec<Message>> {
        let mut sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN users u ON u.id = m.user_id WHERE m.room_id = $1"
        );
        let limit = q.limit as i64;
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&room_id];
        let bounds = [
            (&q.after_id, "m.id >"),
            (&q.before_id, "m.id <"),
            (&q.after_date, "m.date >"),
            (&q.before_date, "m.date <"),
        ];
        for (bound, condition) in &bounds {
            if let Some(value) = bound {
                params.push(value);
                sql.push_str(&format!(" AND {condition} ${}", params.len()));
            }
        }
        params.push(&limit);
        // Dates never decrease as ids increase, so both orders agree; ordering
        // by date lets a date-bounded page use the (room, date, id) index.
        if q.after_date.is_some() || q.before_date.is_some() {
            sql.push_str(&format!(
                " ORDER BY m.date DESC, m.id DESC LIMIT ${}",
                params.len()
            ));
        } else {
            sql.push_str(&format!(" ORDER BY m.id DESC LIMIT ${}", params.len()));
        }
        let rows = self.query(&sql, &params)?;
        Ok(rows.iter().map(message_from_row).collect())
    }

    fn search_messages(&self, text: &str, scope: SearchScope, limit: usize) -> Result<Vec<Message>> {
        let Some(query) = prefix_query(text) else {
            return Ok(Vec::new());
        };
        let limit = limit as i64;
        let banned = Role::Banned.code();
        let (rooms, params): (&str, Vec<&(dyn ToSql + Sync)>) = match &scope {
            SearchScope::Room(room_id) => ("m.room_id = $3", vec![&query, &limit, room_id]),
            SearchScope::RoomsOf(user_id) => (
                "m.room_id IN (SELECT room_id FROM members WHERE user_id = $3 AND role <> $4)",
                vec![&query, &limit, user_id, &banned],
            ),
        };
        // The same expression as the index's, so the index answers it.
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN users u ON u.id = m.user_id
             WHERE m.msg_type = 0
               AND to_tsvector('simple', parley_fold(m.body)) @@ to_tsquery('simple', parley_fold($1))
               AND {rooms}
             ORDER BY m.id DESC LIMIT $2"
        );
        let rows = self.query(&sql, &params)?;
        Ok(rows.iter().map(message_from_row).collect())
    }

    fn messages_by_seq(
        &self,
        room_id: i64,
        after: i64,
        before: i64,
        after_id: i64,
    ) -> Result<Vec<(i64, Message)>> {
        let rows = self.query(
            &format!(
                "SELECT {MESSAGE_COLUMNS}, m.seq FROM messages m JOIN users u ON u.id = m.user_id
                 WHERE m.room_id = $1 AND m.seq > $2 AND m.seq < $3 AND m.id > $4 ORDER BY m.seq"
            ),
            &[&room_id, &after, &before, &after_id],
        )?;
        Ok(rows
            .iter()
            .map(|row| (row.get(MESSAGE_FIELDS), message_from_row(row)))
            .collect())
    }

    fn newest_message_id(&self) -> Result<i64> {
        Ok(self
            .query_one("SELECT coalesce(max(id), 0) FROM messages", &[])?
            .get(0))
    }

    fn room_tails(&self, after_id: i64) -> Result<Vec<RoomTail>> {
        let rows = self.query(
            "SELECT room_id, max(seq), max(id) FROM messages WHERE id > $1 GROUP BY room_id",
            &[&after_id],
        )?;
        Ok(rows
            .iter()
            .map(|row| RoomTail {
                room_id: row.get(0),
                seq: row.get(1),
                id: row.get(2),
            })
            .collect())
    }

    fn mark_read(&mut self, room_id: i64, user_id: i64, msg_id: i64) -> Result<i64> {
        let marker = self.query_one(
            "SELECT last_read, read_seq, (SELECT coalesce(max(id), 0) FROM messages WHERE room_id = $1)
             FROM members WHERE room_id = $1 AND user_id = $2",
            &[&room_id, &user_id],
        )?;
        let (old_last, old_seq, newest): (i64, i64, i64) = (marker.get(0), marker.get(1), marker.get(2));
        let new_last = old_last.max(msg_id.min(newest));
        if new_last == old_last {
            return Ok(old_last);
        }
        // The number of the newest message the marker now covers, and the
        // stored messages passed over (how many of them the member's own).
        let passed = self.query_one(
            "SELECT (SELECT seq FROM messages WHERE room_id = $1 AND id <= $3 ORDER BY id DESC LIMIT 1),
                    count(*), coalesce(sum((user_id = $4)::int), 0)::bigint
             FROM messages WHERE room_id = $1 AND id > $2 AND id <= $3",
            &[&room_id, &old_last, &new_last, &user_id],
        )?;
        let covered: Option<i64> = passed.get(0);
        let (count, own): (i64, i64) = (passed.get(1), passed.get(2));
        let new_seq = old_seq.max(covered.unwrap_or(0));
        let gone = (new_seq - old_seq - count).max(0);
        self.execute(
            "UPDATE members SET last_read = $3, read_seq = $4,
                 own_unseen = greatest(0, own_unseen - $5), gone_unseen = greatest(0, gone_unseen - $6)
             WHERE room_id = $1 AND user_id = $2",
            &[&room_id, &user_id, &new_last, &new_seq, &own, &gone],
        )?;
        Ok(new_last)
    }
}
