//! The search index, kept behind the writer: messages are stored without
//! it and indexed afterwards, many at a time (see
//! `db/0011_search_behind_writer.sql` for why and for the invariant).

use rusqlite::{params, OptionalExtension};

use super::Store;
use crate::model::MsgType;

/// What one indexing pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexPass {
    /// Message ids the pass covered (text messages among them were indexed).
    pub covered: i64,
    /// Whether stored messages remain unindexed (the pass hit its limit).
    pub more: bool,
}

impl Store {
    /// The newest message id in the search index.
    pub fn indexed_upto(&self) -> rusqlite::Result<i64> {
        self.conn
            .prepare_cached("SELECT indexed_upto FROM search_progress WHERE id = 1")?
            .query_row([], |row| row.get(0))
            .optional()
            .map(|upto| upto.unwrap_or(0))
    }

    /// Whether some stored message is not yet in the search index.
    pub fn search_is_behind(&self) -> rusqlite::Result<bool> {
        let newest: Option<i64> = self
            .conn
            .prepare_cached("SELECT max(id) FROM messages")?
            .query_row([], |row| row.get(0))?;
        Ok(newest.unwrap_or(0) > self.indexed_upto()?)
    }

    /// Indexes the stored messages after the index's newest, at most
    /// `limit` ids of them, and moves the mark in the same transaction.
    /// One statement for all of them: FTS5 writes one segment per pass.
    pub fn index_stored_messages(&mut self, limit: i64) -> rusqlite::Result<IndexPass> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Durability;
    use crate::model::RoomType;
    use crate::store::{migrate, SearchScope};

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        migrate(&path).unwrap();
        let store = Store::open(&path, Durability::Normal).unwrap();
        (dir, store)
    }

    fn found(store: &Store, room: i64, word: &str) -> Vec<i64> {
        store
            .search_messages(word, SearchScope::Room(room), 50)
            .unwrap()
            .iter()
            .map(|m| m.id)
            .collect()
    }

    /// Stored messages are found once indexed, in chunks up to the limit;
    /// edits and deletes before and after indexing leave the index true.
    #[test]
    fn messages_are_indexed_after_storing_and_edits_and_deletes_stay_true() {
        let (_dir, mut store) = store();
        let user = store
            .atomically(|s| s.create_user("ana", "Ana", "", "x", 1))
            .unwrap()
            .unwrap()
            .id;
        let room = store
            .atomically(|s| s.create_room(user, "r", "", RoomType::Private, 1))
            .unwrap()
            .id;
        let mut ids = Vec::new();
        for text in ["apple one", "apple two", "banana", "apple three"] {
            let (id, _) = store
                .atomically(|s| s.insert_message(room, user, text, MsgType::Text, 5))
                .unwrap();
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
        // The index is whole: FTS5's own check agrees with the messages.
        store
            .conn
            .execute_batch("INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)")
            .unwrap();
    }
}
