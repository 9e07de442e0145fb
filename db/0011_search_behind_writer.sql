-- Search is indexed behind the writer, in large chunks, rather than inside
-- every message's own transaction.
--
-- FTS5 writes a new index segment at each commit and merges them as they
-- pile up: with the index kept by an insert trigger, a batch of 20 short
-- messages cost about three times what the messages themselves cost
-- (BENCHMARKS.md, "Search indexed behind the writer"). Now the writer
-- stores messages only, and indexes everything stored since the last pass
-- in one statement: when the oldest unindexed message is a quarter of a
-- second old, when thousands are waiting, or at once when a search asks
-- (so a search finds every message acknowledged before it).
--
-- `indexed_upto` is the newest message id in the index: every text message
-- with an id up to it is indexed, none above it. It moves in the same
-- transaction as the index, so a crash leaves them consistent and the
-- next start indexes what was stored but not yet indexed.

CREATE TABLE search_progress (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    indexed_upto INTEGER NOT NULL
);

-- Everything stored so far was indexed by the trigger.
INSERT INTO search_progress (id, indexed_upto)
    VALUES (1, coalesce((SELECT max(id) FROM messages), 0));

DROP TRIGGER messages_fts_insert;
DROP TRIGGER messages_fts_delete;
DROP TRIGGER messages_fts_update;

-- Edits and deletes change the index only for messages already in it; a
-- message not yet indexed is indexed later as it then reads (or not at
-- all, once deleted).
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
WHEN old.msg_type = 0 AND old.id <= (SELECT indexed_upto FROM search_progress) BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body, room_tag) VALUES ('delete', old.id, old.body, old.room_tag);
END;

CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages
WHEN old.msg_type = 0 AND old.id <= (SELECT indexed_upto FROM search_progress) BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body, room_tag) VALUES ('delete', old.id, old.body, old.room_tag);
    INSERT INTO messages_fts (rowid, body, room_tag) VALUES (new.id, new.body, new.room_tag);
END;
