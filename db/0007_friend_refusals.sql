-- Removing a friend is how a person refuses an unwanted one (friendship is
-- mutual at once, as in ngobrol): the removed user cannot add the remover
-- again until the remover adds them back.
CREATE TABLE friend_refusals (
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,   -- who removed
    refused_id  INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,   -- who was removed
    since       INTEGER NOT NULL,
    PRIMARY KEY (user_id, refused_id)
) WITHOUT ROWID;
