-- The uchat client's `power` (design.md §3): a message's power is the byte
-- length of its text, a room's the sum over its stored messages. The sum is
-- kept beside the message counter by the same triggers (no extra statement
-- per message), and follows edits.

ALTER TABLE rooms ADD COLUMN power INTEGER NOT NULL DEFAULT 0;

UPDATE rooms SET power = coalesce(
    (SELECT sum(length(CAST(body AS BLOB))) FROM messages WHERE room_id = rooms.id), 0);

DROP TRIGGER messages_count_insert;
CREATE TRIGGER messages_count_insert AFTER INSERT ON messages BEGIN
    UPDATE rooms SET msg_count = msg_count + 1, last_seq = last_seq + 1,
                     power = power + length(CAST(new.body AS BLOB))
    WHERE id = new.room_id;
    UPDATE members SET own_unseen = own_unseen + 1 WHERE room_id = new.room_id AND user_id = new.user_id;
END;

DROP TRIGGER messages_count_delete;
CREATE TRIGGER messages_count_delete AFTER DELETE ON messages BEGIN
    UPDATE rooms SET msg_count = msg_count - 1,
                     power = power - length(CAST(old.body AS BLOB))
    WHERE id = old.room_id;
END;

CREATE TRIGGER messages_power_update AFTER UPDATE OF body ON messages BEGIN
    UPDATE rooms SET power = power - length(CAST(old.body AS BLOB)) + length(CAST(new.body AS BLOB))
    WHERE id = new.room_id;
END;
