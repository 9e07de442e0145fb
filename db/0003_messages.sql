-- Messages, their full-text index, and read markers.

-- AUTOINCREMENT: ids keep increasing even after the newest messages are
-- deleted, so an id is a safe paging cursor.
CREATE TABLE messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id     INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL REFERENCES users(id),
    date        INTEGER NOT NULL,
    body        TEXT NOT NULL,
    msg_type    INTEGER NOT NULL,          -- 0 text, 1 file, 2 file+text, 3 sticker
    edited      INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX messages_by_room ON messages(room_id, id);
CREATE INDEX messages_by_room_date ON messages(room_id, date, id);

-- Full-text index of text messages: case- and accent-insensitive words,
-- with prefix indexes for the prefix queries search makes.
CREATE VIRTUAL TABLE messages_fts USING fts5(
    body,
    content = 'messages',
    content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '2 3'
);

CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages WHEN new.msg_type = 0 BEGIN
    INSERT INTO messages_fts (rowid, body) VALUES (new.id, new.body);
END;

CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages WHEN old.msg_type = 0 BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', old.id, old.body);
END;

CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages WHEN old.msg_type = 0 BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', old.id, old.body);
    INSERT INTO messages_fts (rowid, body) VALUES (new.id, new.body);
END;

-- The room's `power`: how many messages it stores.
CREATE TRIGGER messages_count_insert AFTER INSERT ON messages BEGIN
    UPDATE rooms SET msg_count = msg_count + 1 WHERE id = new.room_id;
END;

CREATE TRIGGER messages_count_delete AFTER DELETE ON messages BEGIN
    UPDATE rooms SET msg_count = msg_count - 1 WHERE id = old.room_id;
END;

-- Each member's read marker: the newest message id they have read.
ALTER TABLE members ADD COLUMN last_read INTEGER NOT NULL DEFAULT 0;
