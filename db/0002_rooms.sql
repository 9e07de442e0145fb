-- Rooms and their members, with roles and bans.

CREATE TABLE rooms (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    -- Lower-cased name: global rooms are searched by case-insensitive prefix.
    name_fold   TEXT NOT NULL,
    "desc"      TEXT NOT NULL DEFAULT '',
    room_type   INTEGER NOT NULL,          -- 0 private, 1 global, 2 direct
    owner_id    INTEGER NOT NULL REFERENCES users(id),
    created_at  INTEGER NOT NULL,
    -- Messages stored in the room (the protocol's `power`).
    msg_count   INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX rooms_global_by_name ON rooms(name_fold) WHERE room_type = 1;

-- A row per member; a banned user keeps a row with role 4 until unbanned.
-- The rowid orders members by how long they have stood in the room.
CREATE TABLE members (
    room_id     INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role        INTEGER NOT NULL,          -- 0 owner, 1 admin, 2 moderator, 3 simple, 4 banned
    joined_at   INTEGER NOT NULL,
    UNIQUE (room_id, user_id)
);

CREATE INDEX members_by_user ON members(user_id, joined_at);
