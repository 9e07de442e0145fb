//! The search index, kept behind the writer: messages are stored without
//! it and indexed afterwards, many at a time (see
//! `db/0011_search_behind_writer.sql` for why and for the invariant).

use rusqlite::{params, OptionalExtension};

use super::SqliteStore;
use crate::model::MsgType;
use crate::store::{IndexPass, Result, SearchIndexStore};

impl SearchIndexStore for SqliteStore {
    fn indexed_upto(&self) -> Result<i64> {
        self.conn
            .prepare_cached("SELECT indexed_upto FROM search_progress WHERE id = 1")?
            .query_row([], |row| row.get(0))
            .optional()
            .map(|upto| upto.unwrap_or(0))
            .map_err(Into::into)
    }

    fn search_is_behind(&self) -> Result<bool> {
        let newest: Option<i64> = self
            .conn
            .prepare_cached("SELECT max(id) FROM messages")?
            .query_row([], |row| row.get(0))?;
        Ok(newest.unwrap_or(0) > self.indexed_upto()?)
    }

    // One statement for all of a pass's messages: FTS5 writes one segment per pass.
    fn index_stored_messages(&mut self, limit: i64) -> Result<IndexPass> {
        self.atomically(|store| {
            let from = store.indexed_upto()?;
            let newest: Option<i64> = store
                .conn
                .prepare_cached("SELECT max(id) FROM messages")?
                .query_row([], |row| row.get(0))?;
            let newest = newest.unwrap_or(0);
            if newest <= from {
                return Ok(IndexPass::default());
            }
            let upto = newest.min(from.saturating_add(limit.max(1)));
            store
                .conn
                .prepare_cached(
                    "INSERT INTO messages_fts (rowid, body, room_tag)
                     SELECT id, body, room_tag FROM messages
                     WHERE id > ?1 AND id <= ?2 AND msg_type = ?3",
                )?
                .execute(params![from, upto, MsgType::Text.code()])?;
            store.note_search_terms(from, upto)?;
            store
                .conn
                .prepare_cached("UPDATE search_progress SET indexed_upto = ?1 WHERE id = 1")?
                .execute([upto])?;
            Ok(IndexPass {
                covered: upto - from,
                more: upto < newest,
            })
        })
    }
}

impl SqliteStore {
    /// The indexed words that begin with `prefix` (already folded as the
    /// index folds), at most `limit` + 1 of them, so a caller can tell
    /// "more than `limit`".
    pub(super) fn search_terms_beginning(&self, prefix: &str, limit: usize) -> rusqlite::Result<Vec<String>> {
        // Every word beginning with `prefix` sorts at or after it and before
        // it followed by the last code point.
        let end = format!("{prefix}\u{10FFFF}");
        let mut stmt = self.conn.prepare_cached(
            "SELECT term FROM search_terms WHERE term >= ?1 AND term < ?2 ORDER BY term LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![prefix, end, limit as i64 + 1], |row| row.get(0))?;
        rows.collect()
    }

    /// Adds the words of the text messages with ids in (`from`, `upto`] to
    /// `search_terms`, as FTS5 tokenizes them: the pass's texts go through
    /// a scratch index of this connection (`temp`, never on disk), whose
    /// few words its vocabulary table lists cheaply.
    pub(super) fn note_search_terms(&mut self, from: i64, upto: i64) -> rusqlite::Result<()> {
        self.conn.execute_batch(
            "CREATE VIRTUAL TABLE IF NOT EXISTS temp.search_scratch USING fts5(
                 body, content = '', tokenize = 'unicode61 remove_diacritics 2');
             CREATE VIRTUAL TABLE IF NOT EXISTS temp.search_scratch_terms
                 USING fts5vocab(temp, search_scratch, row);",
        )?;
        self.conn
            .prepare_cached(
                "INSERT INTO temp.search_scratch (rowid, body)
                 SELECT id, body FROM messages WHERE id > ?1 AND id <= ?2 AND msg_type = ?3",
            )?
            .execute(params![from, upto, MsgType::Text.code()])?;
        self.conn
            .prepare_cached(
                "INSERT OR IGNORE INTO search_terms (term) SELECT term FROM temp.search_scratch_terms",
            )?
            .execute([])?;
        self.conn
            .prepare_cached("INSERT INTO temp.search_scratch (search_scratch) VALUES ('delete-all')")?
            .execute([])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RoomType;
    use crate::store::prelude::*;
    use crate::store::SearchScope;

    use crate::store::temp_store as store;

    /// A store with a user and a room of theirs.
    fn store_with_room() -> (tempfile::TempDir, SqliteStore, i64, i64) {
        let (dir, mut store) = store();
        let user = store
            .atomically(|s| s.create_user("ana", "Ana", "", "x", 1))
            .unwrap()
            .unwrap()
            .id;
        let room = store
            .atomically(|s| s.create_room(user, "r", "", RoomType::Private, 1))
            .unwrap()
            .id;
        (dir, store, user, room)
    }

    fn found(store: &SqliteStore, room: i64, word: &str) -> Vec<i64> {
        store
            .search_messages(word, SearchScope::Room(room), 50)
            .unwrap()
            .iter()
            .map(|m| m.id)
            .collect()
    }

    /// A word that begins more indexed words than are expanded is matched
    /// as a prefix by FTS5 itself, with the same answer.
    #[test]
    fn a_word_beginning_many_words_is_still_found() {
        let (_dir, mut store, user, room) = store_with_room();
        let ids: Vec<i64> = (0..40)
            .map(|i| {
                let text = format!("word{i:02} Café");
                store
                    .atomically(|s| s.insert_message(room, user, &text, MsgType::Text, 5))
                    .unwrap()
                    .id
            })
            .collect();
        store.index_stored_messages(1000).unwrap();
        assert_eq!(store.search_terms_beginning("word", 32).unwrap().len(), 33);
        let mut all = found(&store, room, "word");
        all.reverse();
        assert_eq!(all, ids);
        assert_eq!(found(&store, room, "word07"), vec![ids[7]]);
        // Not ASCII: a prefix, folded by FTS5 ("café" is indexed as "cafe").
        assert_eq!(found(&store, room, "CAFÉ").len(), 40);
        assert_eq!(found(&store, room, "cafe word39"), vec![ids[39]]);
    }

    /// Stored messages are found once indexed, in chunks up to the limit;
    /// edits and deletes before and after indexing leave the index true.
    #[test]
    fn messages_are_indexed_after_storing_and_edits_and_deletes_stay_true() {
        let (_dir, mut store, user, room) = store_with_room();
        let mut ids = Vec::new();
        for text in ["apple one", "apple two", "banana", "apple three"] {
            let id = store
                .atomically(|s| s.insert_message(room, user, text, MsgType::Text, 5))
                .unwrap()
                .id;
            ids.push(id);
        }
        assert!(store.search_is_behind().unwrap());
        assert!(found(&store, room, "apple").is_empty(), "nothing indexed yet");
        // Edited and deleted before being indexed: indexed as they are then.
        store
            .atomically(|s| s.edit_message(ids[2], "apple edited"))
            .unwrap();
        store.atomically(|s| s.delete_message(ids[1])).unwrap();

        let pass = store.index_stored_messages(2).unwrap();
        assert_eq!(
            pass,
            IndexPass {
                covered: 2,
                more: true
            }
        );
        assert_eq!(found(&store, room, "apple"), vec![ids[0]]);
        let pass = store.index_stored_messages(100).unwrap();
        assert_eq!(
            pass,
            IndexPass {
                covered: 2,
                more: false
            }
        );
        assert!(!store.search_is_behind().unwrap());
        assert_eq!(found(&store, room, "apple"), vec![ids[3], ids[2], ids[0]]);
        assert!(found(&store, room, "banana").is_empty());

        // Edited and deleted once indexed: the index follows.
        store.atomically(|s| s.edit_message(ids[3], "cherry")).unwrap();
        store.atomically(|s| s.delete_message(ids[0])).unwrap();
        assert_eq!(found(&store, room, "apple"), vec![ids[2]]);
        assert_eq!(found(&store, room, "cherry"), vec![ids[3]]);
        assert_eq!(store.index_stored_messages(100).unwrap(), IndexPass::default());
        // Longer words are searched as the whole words they begin, which
        // follow edits; words no message holds any more match nothing.
        assert_eq!(found(&store, room, "cher"), vec![ids[3]]);
        assert_eq!(found(&store, room, "CHERRY"), vec![ids[3]]);
        assert_eq!(found(&store, room, "edit"), vec![ids[2]]);
        assert_eq!(
            store.search_terms_beginning("appl", 32).unwrap(),
            vec!["apple".to_string()]
        );
        assert!(found(&store, room, "banana").is_empty());
        // The index is whole: FTS5's own check agrees with the messages.
        store
            .conn
            .execute_batch("INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)")
            .unwrap();
    }
}
