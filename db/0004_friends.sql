-- Friendships and direct-message rooms.

-- A friendship is mutual: stored once in each direction, so either side's
-- friends are one index range.
CREATE TABLE friends (
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    friend_id   INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    since       INTEGER NOT NULL,
    PRIMARY KEY (user_id, friend_id)
) WITHOUT ROWID;

-- The one direct-message room of a pair of users (low id first): the
-- primary key makes a second room for the same pair impossible.
CREATE TABLE direct_rooms (
    low_user    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    high_user   INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    room_id     INTEGER NOT NULL UNIQUE REFERENCES rooms(id) ON DELETE CASCADE,
    PRIMARY KEY (low_user, high_user)
) WITHOUT ROWID;
