-- Conversation features (design.md §7): replies, reactions, mentions, pins.
-- Each table is keyed for the queries that read it, and every row goes
-- with its message (ON DELETE CASCADE: deletes, cleared histories, deleted
-- rooms and retention take them along).

-- The message a message answers (0: none).
ALTER TABLE messages ADD COLUMN reply_to INTEGER NOT NULL DEFAULT 0;

-- One row per person and emoji on a message; counts are grouped from it.
CREATE TABLE reactions (
    msg_id   INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    emoji    TEXT NOT NULL,
    user_id  INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (msg_id, emoji, user_id)
) WITHOUT ROWID;

-- Who a message names. By user first (their mentions, newest first), with
-- the room for the unread count after the read marker; by message for a
-- page of messages' lists.
CREATE TABLE mentions (
    user_id  INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    msg_id   INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    room_id  INTEGER NOT NULL,
    PRIMARY KEY (user_id, msg_id)
) WITHOUT ROWID;
CREATE INDEX mentions_by_room ON mentions(user_id, room_id, msg_id);
CREATE INDEX mentions_by_msg ON mentions(msg_id);

-- Pinned messages of a room, most recently pinned first.
CREATE TABLE pins (
    room_id    INTEGER NOT NULL,
    msg_id     INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL,
    pinned_at  INTEGER NOT NULL,
    PRIMARY KEY (room_id, msg_id)
) WITHOUT ROWID;
