-- Unread counts from counters, not counts over history.
--
-- Each message gets its room's running number `seq` (1, 2, 3... never
-- reused: `rooms.last_seq` only grows). A member's read marker is kept as
-- the message id (`last_read`, as before) and as that message's number
-- (`read_seq`); beside it, two counters of what lies after the marker:
-- `own_unseen`, the member's own messages still stored, and `gone_unseen`,
-- messages deleted since. Then
--     unread = rooms.last_seq - read_seq - own_unseen - gone_unseen
-- costs nothing to read. Storing a message updates the author's row only;
-- a delete updates the rows of members who had not read it; moving a
-- marker counts only the messages it moves over (each message once per
-- member, ever).

ALTER TABLE rooms ADD COLUMN last_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN read_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN own_unseen INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN gone_unseen INTEGER NOT NULL DEFAULT 0;

-- Existing messages are numbered in id order within their room.
UPDATE messages SET seq = numbered.n
FROM (SELECT id, row_number() OVER (PARTITION BY room_id ORDER BY id) AS n FROM messages) AS numbered
WHERE numbered.id = messages.id;

UPDATE rooms SET last_seq = coalesce(
    (SELECT seq FROM messages WHERE room_id = rooms.id ORDER BY id DESC LIMIT 1), 0);

UPDATE members SET
    read_seq = coalesce(
        (SELECT seq FROM messages x WHERE x.room_id = members.room_id AND x.id <= members.last_read
         ORDER BY x.id DESC LIMIT 1), 0),
    own_unseen = (SELECT count(*) FROM messages x
                  WHERE x.room_id = members.room_id AND x.id > members.last_read AND x.user_id = members.user_id);

-- The room's message counter now also numbers its messages.
DROP TRIGGER messages_count_insert;
CREATE TRIGGER messages_count_insert AFTER INSERT ON messages BEGIN
    UPDATE rooms SET msg_count = msg_count + 1, last_seq = last_seq + 1 WHERE id = new.room_id;
    UPDATE members SET own_unseen = own_unseen + 1 WHERE room_id = new.room_id AND user_id = new.user_id;
END;
