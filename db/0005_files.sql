-- Files sent as messages: the display name, size and the server-chosen name
-- under files/ in the data directory.

ALTER TABLE messages ADD COLUMN file_name TEXT;
ALTER TABLE messages ADD COLUMN file_size INTEGER;
ALTER TABLE messages ADD COLUMN stored_name TEXT;

CREATE INDEX messages_by_author_files ON messages(user_id) WHERE stored_name IS NOT NULL;
