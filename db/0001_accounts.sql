-- Accounts and their session tokens.

CREATE TABLE users (
    id          INTEGER PRIMARY KEY,
    login       TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    "desc"      TEXT NOT NULL DEFAULT '',
    -- Argon2id PHC string of the client's SHA-256 of the password (salt inside).
    pass_hash   TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

-- One row per device log-in. Only the SHA-256 of the token's random part is
-- kept, so a copy of the database does not hand out sessions.
CREATE TABLE tokens (
    hash        BLOB PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    last_used   INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX tokens_by_user ON tokens(user_id);
