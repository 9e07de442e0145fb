//! Messages: storing, editing, deleting, history pages, full-text search,
//! and read markers.

use rusqlite::{params, OptionalExtension};

use super::SqliteStore;
use crate::model::{Message, MsgType, Role, RoomTail, StoredFile};
use crate::store::{
    HistoryQuery, MessageStore, Result, SearchIndexStore, SearchScope, Stored, MAX_SEARCH_WORDS,
};

pub(super) const MESSAGE_COLUMNS: &str =
    "m.id, m.room_id, m.user_id, u.login, m.date, m.body, m.msg_type, m.edited, m.file_name, m.file_size, m.stored_name, m.reply_to";
/// How many columns `MESSAGE_COLUMNS` names: queries' own columns follow.
const MESSAGE_FIELDS: usize = 12;

pub(super) fn message_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        id: row.get(0)?,
        room_id: row.get(1)?,
        user_id: row.get(2)?,
        login: row.get(3)?,
        date: row.get(4)?,
        body: row.get(5)?,
        msg_type: MsgType::from_code(row.get(6)?).unwrap_or(MsgType::Text),
        edited: row.get(7)?,
        file: match (
            row.get::<_, Option<String>>(8)?,
            row.get::<_, Option<i64>>(9)?,
            row.get(10)?,
        ) {
            (Some(name), Some(size), Some(stored_name)) => Some(StoredFile {
                name,
                size,
                stored_name,
            }),
            _ => None,
        },
        reply_to: row.get(11)?,
    })
}

/// Turns what a user typed into an FTS5 query in which every word must
/// match a word prefix. Words are split the way the index tokenizes
/// (letters and digits), and each is quoted, so quotes, stars, parentheses
/// and operators such as OR or NEAR are searched as text, never as syntax.
/// `None` when the text holds no word at all. (Searches expand longer
/// words first: `SqliteStore::expanded_query`.)
#[cfg(test)]
fn fts_prefix_query(text: &str) -> Option<String> {
    let words: Vec<String> = search_words(text).map(|w| format!("{}*", quoted(w))).collect();
    (!words.is_empty()).then(|| words.join(" "))
}

/// The words of a search, split the way the index tokenizes.
fn search_words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(MAX_SEARCH_WORDS)
}

/// A word as an FTS5 string: quoted, so it is never read as syntax.
fn quoted(word: &str) -> String {
    format!("\"{}\"", word.replace('"', "\"\""))
}

/// Search words at least this long are looked up as the whole words they
/// begin (shorter ones have FTS5 prefix indexes of their own).
const EXPAND_FROM_CHARS: usize = 4;
/// Most whole words a search word is turned into; beyond, FTS5 matches
/// the prefix itself.
const MAX_EXPANSION: usize = 32;

impl MessageStore for SqliteStore {
    fn insert_message(
        &mut self,
        room_id: i64,
        user_id: i64,
        body: &str,
        msg_type: MsgType,
        now: i64,
    ) -> Result<Stored> {
        let newest = match self.rooms.get(room_id) {
            Some(state) => state.newest_date,
            None => self.newest_date(room_id)?,
        };
        let date = newest.max(now);
        let (id, seq) = self
            .conn
            .prepare_cached(
                "INSERT INTO messages (room_id, user_id, date, body, msg_type, seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, (SELECT last_seq + 1 FROM rooms WHERE id = ?1))
                 RETURNING id, seq",
            )?
            .query_row(params![room_id, user_id, date, body, msg_type.code()], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?;
        self.rooms.note_message(room_id, date, body.len());
        Ok(Stored { id, date, seq })
    }

    fn newest_date(&self, room_id: i64) -> Result<i64> {
        let newest: Option<i64> = self
            .conn
            .prepare_cached("SELECT max(date) FROM messages WHERE room_id = ?1")?
            .query_row([room_id], |row| row.get(0))?;
        Ok(newest.unwrap_or(0))
    }

    fn insert_file_message(
        &mut self,
        room_id: i64,
        user_id: i64,
        file: &StoredFile,
        now: i64,
    ) -> Result<Stored> {
        let stored = self.insert_message(room_id, user_id, &file.name, MsgType::File, now)?;
        self.conn
            .prepare_cached(
                "UPDATE messages SET file_name = ?2, file_size = ?3, stored_name = ?4 WHERE id = ?1",
            )?
            .execute(params![stored.id, file.name, file.size, file.stored_name])?;
        Ok(stored)
    }

    fn stored_files_in_room(&self, room_id: i64) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT stored_name FROM messages WHERE room_id = ?1 AND stored_name IS NOT NULL",
        )?;
        let rows = stmt.query_map([room_id], |row| row.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn all_stored_files(&self) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT stored_name FROM messages WHERE stored_name IS NOT NULL")?;
        let rows = stmt.query_map([], |row| row.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn stored_bytes_of(&self, user_id: i64) -> Result<i64> {
        self.conn
            .prepare_cached(
                "SELECT coalesce(sum(file_size), 0) FROM messages WHERE user_id = ?1 AND stored_name IS NOT NULL",
            )?
            .query_row([user_id], |row| row.get(0)).map_err(Into::into)
    }

    fn message(&self, id: i64) -> Result<Option<Message>> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN users u ON u.id = m.user_id WHERE m.id = ?1"
            ))?
            .query_row([id], message_from_row)
            .optional()
            .map_err(Into::into)
    }

    fn edit_message(&mut self, id: i64, body: &str) -> Result<()> {
        let room_id: Option<i64> = self
            .conn
            .prepare_cached("UPDATE messages SET body = ?2, edited = 1 WHERE id = ?1 RETURNING room_id")?
            .query_row(params![id, body], |row| row.get(0))
            .optional()?;
        // The room's power changed by the difference in length.
        if let Some(room_id) = room_id {
            self.forget_room(room_id);
        }
        // An indexed message's new words were indexed by the edit's trigger;
        // the search's word list learns them too (an unindexed one's come
        // with its indexing pass).
        if room_id.is_some() && id <= self.indexed_upto()? {
            self.note_search_terms(id - 1, id)?;
        }
        Ok(())
    }

    fn delete_message(&mut self, id: i64) -> Result<()> {
        let found: Option<(i64, i64)> = self
            .conn
            .prepare_cached("SELECT room_id, user_id FROM messages WHERE id = ?1")?
            .query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        let Some((room_id, author)) = found else {
            return Ok(());
        };
        self.forget_room(room_id);
        self.conn
            .prepare_cached(
                "UPDATE members SET gone_unseen = gone_unseen + 1, own_unseen = own_unseen - (user_id = ?3)
                 WHERE room_id = ?1 AND last_read < ?2",
            )?
            .execute(params![room_id, id, author])?;
        self.conn
            .prepare_cached("DELETE FROM messages WHERE id = ?1")?
            .execute([id])?;
        Ok(())
    }

    fn expire_messages(&mut self, before: i64, limit: usize) -> Result<(usize, Vec<String>)> {
        let expired: Vec<(i64, Option<String>)> = {
            let mut stmt = self.conn.prepare_cached(
                "SELECT id, stored_name FROM messages WHERE date < ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![before, limit as i64], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut files = Vec::new();
        for (id, stored_name) in &expired {
            self.delete_message(*id)?;
            files.extend(stored_name.clone());
        }
        Ok((expired.len(), files))
    }

    fn clear_history(&mut self, room_id: i64) -> Result<usize> {
        self.forget_room(room_id);
        self.conn
            .prepare_cached(
                "UPDATE members SET
                     last_read = max(last_read, coalesce((SELECT max(id) FROM messages WHERE room_id = ?1), 0)),
                     read_seq = (SELECT last_seq FROM rooms WHERE id = ?1),
                     own_unseen = 0, gone_unseen = 0
                 WHERE room_id = ?1",
            )?
            .execute([room_id])?;
        self.conn
            .prepare_cached("DELETE FROM messages WHERE room_id = ?1")?
            .execute([room_id])
            .map_err(Into::into)
    }

    fn history(&self, room_id: i64, q: &HistoryQuery) -> Result<Vec<Message>> {
        let mut sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN users u ON u.id = m.user_id WHERE m.room_id = ?1"
        );
        if q.after_id.is_some() {
            sql.push_str(" AND m.id > ?2");
        }
        if q.before_id.is_some() {
            sql.push_str(" AND m.id < ?3");
        }
        if q.after_date.is_some() {
            sql.push_str(" AND m.date > ?4");
        }
        if q.before_date.is_some() {
            sql.push_str(" AND m.date < ?5");
        }
        // Dates never decrease as ids increase, so both orders agree; ordering
        // by date lets a date-bounded page use the (room, date, id) index.
        if q.after_date.is_some() || q.before_date.is_some() {
            sql.push_str(" ORDER BY m.date DESC, m.id DESC LIMIT ?6");
        } else {
            sql.push_str(" ORDER BY m.id DESC LIMIT ?6");
        }
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(
            params![
                room_id,
                q.after_id,
                q.before_id,
                q.after_date,
                q.before_date,
                q.limit as i64
            ],
            message_from_row,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn search_messages(&self, text: &str, scope: SearchScope, limit: usize) -> Result<Vec<Message>> {
        let Some(words) = self.expanded_query(text)? else {
            return Ok(Vec::new());
        };
        let rooms = match scope {
            SearchScope::Room(room_id) => vec![room_id],
            SearchScope::RoomsOf(user_id) => self.room_ids_of(user_id)?,
        };
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        let tags: Vec<String> = rooms.iter().map(|id| format!("r{id}")).collect();
        let fts_query = format!("body : ({words}) AND room_tag : ({})", tags.join(" OR "));
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages_fts f
             JOIN messages m ON m.id = f.rowid JOIN users u ON u.id = m.user_id
             WHERE messages_fts MATCH ?1 ORDER BY f.rowid DESC LIMIT ?2"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![fts_query, limit as i64], message_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn messages_by_seq(
        &self,
        room_id: i64,
        after: i64,
        before: i64,
        after_id: i64,
    ) -> Result<Vec<(i64, Message)>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS}, m.seq FROM messages m JOIN users u ON u.id = m.user_id
             WHERE m.room_id = ?1 AND m.seq > ?2 AND m.seq < ?3 AND m.id > ?4 ORDER BY m.seq"
        ))?;
        let rows = stmt.query_map(params![room_id, after, before, after_id], |row| {
            Ok((row.get(MESSAGE_FIELDS)?, message_from_row(row)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn newest_message_id(&self) -> Result<i64> {
        Ok(self
            .conn
            .prepare_cached("SELECT coalesce(max(id), 0) FROM messages")?
            .query_row([], |row| row.get(0))?)
    }

    fn room_tails(&self, after_id: i64) -> Result<Vec<RoomTail>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT room_id, max(seq), max(id) FROM messages WHERE id > ?1 GROUP BY room_id",
        )?;
        let rows = stmt.query_map(params![after_id], |row| {
            Ok(RoomTail {
                room_id: row.get(0)?,
                seq: row.get(1)?,
                id: row.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn mark_read(&mut self, room_id: i64, user_id: i64, msg_id: i64) -> Result<i64> {
        let (old_last, old_seq): (i64, i64) = self
            .conn
            .prepare_cached("SELECT last_read, read_seq FROM members WHERE room_id = ?1 AND user_id = ?2")?
            .query_row([room_id, user_id], |row| Ok((row.get(0)?, row.get(1)?)))?;
        let newest: i64 = self
            .conn
            .prepare_cached("SELECT coalesce(max(id), 0) FROM messages WHERE room_id = ?1")?
            .query_row([room_id], |row| row.get(0))?;
        let new_last = old_last.max(msg_id.min(newest));
        if new_last == old_last {
            return Ok(old_last);
        }
        // The number of the newest message the marker now covers.
        let covered: Option<i64> = self
            .conn
            .prepare_cached(
                "SELECT seq FROM messages WHERE room_id = ?1 AND id <= ?2 ORDER BY id DESC LIMIT 1",
            )?
            .query_row([room_id, new_last], |row| row.get(0))
            .optional()?;
        let new_seq = old_seq.max(covered.unwrap_or(0));
        // The stored messages passed over, and how many of them are the member's own.
        let (passed, own): (i64, i64) = self
            .conn
            .prepare_cached(
                "SELECT count(*), coalesce(sum(user_id = ?4), 0) FROM messages
                 WHERE room_id = ?1 AND id > ?2 AND id <= ?3",
            )?
            .query_row(params![room_id, old_last, new_last, user_id], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?;
        let gone = (new_seq - old_seq - passed).max(0);
        self.conn
            .prepare_cached(
                "UPDATE members SET last_read = ?3, read_seq = ?4,
                     own_unseen = max(0, own_unseen - ?5), gone_unseen = max(0, gone_unseen - ?6)
                 WHERE room_id = ?1 AND user_id = ?2",
            )?
            .execute(params![room_id, user_id, new_last, new_seq, own, gone])?;
        Ok(new_last)
    }
}

impl SqliteStore {
    /// The FTS5 query for what a user typed, as [`fts_prefix_query`] but
    /// with each longer ASCII word turned into the few whole indexed words
    /// it begins (`appl` into `"apple" OR "applet"`), which FTS5 answers by
    /// seeking, where a prefix makes it merge every posting of those words
    /// first. ASCII words fold to lower case exactly as the index folds
    /// them; other words, and words that begin too many, stay prefixes.
    fn expanded_query(&self, text: &str) -> rusqlite::Result<Option<String>> {
        let mut parts = Vec::new();
        for word in search_words(text) {
            if word.is_ascii() && word.len() >= EXPAND_FROM_CHARS {
                let terms = self.search_terms_beginning(&word.to_ascii_lowercase(), MAX_EXPANSION)?;
                if !terms.is_empty() && terms.len() <= MAX_EXPANSION {
                    let any: Vec<String> = terms.iter().map(|t| quoted(t)).collect();
                    parts.push(format!("({})", any.join(" OR ")));
                    continue;
                }
            }
            parts.push(format!("{}*", quoted(word)));
        }
        // Explicit AND: FTS5 takes no implicit AND before a parenthesis.
        Ok((!parts.is_empty()).then(|| parts.join(" AND ")))
    }

    /// The rooms a user belongs to and is not banned from.
    fn room_ids_of(&self, user_id: i64) -> rusqlite::Result<Vec<i64>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT room_id FROM members WHERE user_id = ?1 AND role != ?2")?;
        let rows = stmt.query_map(params![user_id, Role::Banned.code()], |row| row.get(0))?;
        rows.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::fts_prefix_query;
    use crate::config::Durability;
    use crate::model::{MsgType, RoomType};
    use crate::store::prelude::*;
    use crate::store::{migrate, HistoryQuery, SearchScope, SqliteStore};

    fn setup() -> (tempfile::TempDir, SqliteStore, i64, i64) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        migrate(&path).unwrap();
        let mut s = SqliteStore::open(&path, Durability::Normal).unwrap();
        let user = s.create_user("bob", "Bob", "", "h", 1).unwrap().unwrap().id;
        let room = s.create_room(user, "r", "", RoomType::Global, 1).unwrap().id;
        (dir, s, user, room)
    }

    #[test]
    fn queries_quote_every_word() {
        assert_eq!(fts_prefix_query("Hello, wor"), Some("\"Hello\"* \"wor\"*".into()));
        assert_eq!(
            fts_prefix_query("a\"b OR c*"),
            Some("\"a\"* \"b\"* \"OR\"* \"c\"*".into())
        );
        assert_eq!(fts_prefix_query("  ()*\" - "), None);
        assert_eq!(
            fts_prefix_query("Straße café"),
            Some("\"Straße\"* \"café\"*".into())
        );
    }

    #[test]
    fn dates_never_go_back_and_power_counts() {
        let (_dir, mut s, user, room) = setup();
        let a = s
            .insert_message(room, user, "one", MsgType::Text, 1000)
            .unwrap()
            .id;
        let crate::store::Stored { id: b, date, .. } =
            s.insert_message(room, user, "two", MsgType::Text, 900).unwrap();
        assert_eq!(date, 1000);
        assert!(b > a);
        assert_eq!(s.message(b).unwrap().unwrap().date, 1000);
        assert_eq!(s.room(room).unwrap().unwrap().msg_count, 2);
        s.delete_message(a).unwrap();
        assert_eq!(s.room(room).unwrap().unwrap().msg_count, 1);
        let page = s
            .history(
                room,
                &HistoryQuery {
                    limit: 10,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(page.len(), 1);
    }

    #[test]
    fn search_is_served_by_the_index_from_the_rooms_in_scope() {
        let (_dir, mut s, user, room) = setup();
        let other = s.create_room(user, "o", "", RoomType::Global, 1).unwrap().id;
        s.insert_message(room, user, "hello world", MsgType::Text, 1)
            .unwrap();
        s.insert_message(other, user, "hello there", MsgType::Text, 2)
            .unwrap();
        s.index_stored_messages(1000).unwrap();
        let plan: Vec<String> = s
            .conn
            .prepare(
                "EXPLAIN QUERY PLAN SELECT m.id FROM messages_fts f JOIN messages m ON m.id = f.rowid
                 JOIN users u ON u.id = m.user_id WHERE messages_fts MATCH 'body : (\"x\"*) AND room_tag : (r1)'
                 ORDER BY f.rowid DESC LIMIT 50",
            )
            .unwrap()
            .query_map([], |row| row.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let plan = plan.join(" | ");
        assert!(
            plan.starts_with("SCAN f VIRTUAL TABLE INDEX"),
            "the index must drive: {plan}"
        );
        assert!(
            !plan.contains("SCAN m") && !plan.contains("messages_by_room"),
            "messages scanned: {plan}"
        );
        let found = |scope| s.search_messages("hel", scope, 50).unwrap().len();
        assert_eq!(found(SearchScope::Room(room)), 1);
        assert_eq!(found(SearchScope::Room(other)), 1);
        assert_eq!(found(SearchScope::RoomsOf(user)), 2);
        assert_eq!(
            found(SearchScope::RoomsOf(user + 1)),
            0,
            "a user in no room finds nothing"
        );
        // Room tags are not words: a search for "r1" finds no message by its room.
        assert_eq!(
            s.search_messages("r1", SearchScope::RoomsOf(user), 50)
                .unwrap()
                .len(),
            0
        );
    }

    #[test]
    fn room_power_is_the_bytes_of_its_stored_texts() {
        let (_dir, mut s, user, room) = setup();
        s.keep_room_cache();
        let power = |s: &mut SqliteStore| s.room_and_role(room, user).unwrap().unwrap().0.power;
        let a = s
            .insert_message(room, user, "héllo", MsgType::Text, 1)
            .unwrap()
            .id;
        assert_eq!(power(&mut s), 6, "bytes, not characters");
        let b = s
            .insert_message(room, user, "abc", MsgType::Sticker, 2)
            .unwrap()
            .id;
        assert_eq!(power(&mut s), 9);
        s.edit_message(a, "hi").unwrap();
        assert_eq!(power(&mut s), 5, "an edit counts the difference");
        s.delete_message(b).unwrap();
        assert_eq!(power(&mut s), 2);
        s.clear_history(room).unwrap();
        assert_eq!(power(&mut s), 0);
        assert_eq!(s.room(room).unwrap().unwrap().power, 0);
    }

    #[test]
    fn fts_follows_edits_deletes_and_room_deletion() {
        let (_dir, mut s, user, room) = setup();
        let id = s
            .insert_message(room, user, "hello world", MsgType::Text, 1)
            .unwrap()
            .id;
        s.insert_message(room, user, "hello sticker", MsgType::Sticker, 2)
            .unwrap();
        s.index_stored_messages(1000).unwrap();
        let find =
            |s: &SqliteStore, q: &str| s.search_messages(q, SearchScope::Room(room), 50).unwrap().len();
        assert_eq!(find(&s, "hello"), 1, "only text messages are indexed");
        s.edit_message(id, "goodbye world").unwrap();
        assert_eq!(find(&s, "hello"), 0);
        assert_eq!(find(&s, "goodb"), 1);
        s.delete_message(id).unwrap();
        assert_eq!(find(&s, "world"), 0);
        s.insert_message(room, user, "again world", MsgType::Text, 3)
            .unwrap();
        s.index_stored_messages(1000).unwrap();
        s.delete_room(room).unwrap();
        let all: i64 = s
            .conn
            .query_row(
                "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH 'world'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(all, 0, "cascade deletes reach the index");
    }
}
