//! The storage interface: what the handlers, the writer and the read
//! workers may ask of a store, whichever database is behind it.
//!
//! One trait per family of requests, all gathered in [`Storage`]; the
//! SQLite store (`sqlite`) and the PostgreSQL one (`postgres`) implement
//! them. Values go in and come out as domain types (`model`) and the plain
//! types below, never as protocol types or database rows. Writes run inside [`atomically`](super::atomically)
//! and, in the writer, inside its batch (see [`Transactions`]).

use std::collections::HashMap;

use crate::model::{Member, Message, MsgType, Role, Room, RoomListing, RoomTail, RoomType, StoredFile, User};

use super::{Audience, Result};

/// Most words a search may hold.
pub const MAX_SEARCH_WORDS: usize = 16;

/// A room as the operator sees it.
#[derive(Debug)]
pub struct RoomSummary {
    pub id: i64,
    pub name: String,
    pub room_type: RoomType,
    pub members: i64,
    pub messages: i64,
}

/// Totals for `parleyd admin stats`.
#[derive(Debug, Default)]
pub struct Totals {
    pub users: i64,
    pub rooms: i64,
    pub messages: i64,
    pub files: i64,
    pub file_bytes: i64,
}

/// What a message object carries besides the message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extras {
    /// The answered message's author and text, while it exists.
    pub reply_preview: Option<(i64, String, String)>,
    /// Each emoji with its count, in the emoji's order.
    pub reactions: Vec<(String, i64)>,
    /// The viewer's own reactions.
    pub mine: Vec<String>,
    /// Who the message names.
    pub mentions: Vec<i64>,
}

/// Which messages of a room a history page may hold; every bound is exclusive.
#[derive(Clone, Copy, Debug, Default)]
pub struct HistoryQuery {
    pub after_id: Option<i64>,
    pub before_id: Option<i64>,
    pub after_date: Option<i64>,
    pub before_date: Option<i64>,
    /// The page size: the newest `limit` messages within the bounds.
    pub limit: usize,
}

/// Where a search looks.
#[derive(Clone, Copy, Debug)]
pub enum SearchScope {
    /// One room.
    Room(i64),
    /// Every room this user belongs to and is not banned from.
    RoomsOf(i64),
}

/// Where a stored message landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored {
    pub id: i64,
    pub date: i64,
    /// Its number in its room (1, 2, 3...: numbers are never reused), in
    /// the order the room's messages were committed.
    pub seq: i64,
}

/// What a member's leaving did to the room.
#[derive(Debug, PartialEq, Eq)]
pub enum Departure {
    /// Others remain; ownership passed to this user if the owner left.
    Left { new_owner: Option<i64> },
    /// The last member left and the room is gone.
    RoomDeleted,
}

/// What one indexing pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexPass {
    /// Message ids the pass covered (text messages among them were indexed).
    pub covered: i64,
    /// Whether stored messages remain unindexed (the pass hit its limit).
    pub more: bool,
}

/// Accounts and session tokens.
pub trait AccountStore {
    /// Creates an account; `None` when the login is taken. Call inside `atomically`.
    fn create_user(
        &mut self,
        login: &str,
        name: &str,
        desc: &str,
        pass_hash: &str,
        now: i64,
    ) -> Result<Option<User>>;

    /// The account with this login and its stored password hash.
    fn user_with_pass_hash(&self, login: &str) -> Result<Option<(User, String)>>;

    fn user_by_id(&self, id: i64) -> Result<Option<User>>;

    fn user_by_login(&self, login: &str) -> Result<Option<User>>;

    /// Records a new token (by its hash) for a user.
    fn insert_token(&mut self, hash: &[u8; 32], user_id: i64, now: i64) -> Result<()>;

    /// The user a token belongs to, if it exists, names `login`, and was used
    /// after `not_before`. A valid token's last use becomes `now`; an expired
    /// one is deleted.
    fn use_token(&mut self, hash: &[u8; 32], login: &str, not_before: i64, now: i64) -> Result<Option<User>>;

    /// Like [`AccountStore::use_token`] but reading only (for the read workers):
    /// the token's user if it names `login` and was used after `not_before`.
    fn token_user(&self, hash: &[u8; 32], login: &str, not_before: i64) -> Result<Option<User>>;

    /// Deletes tokens unused since `not_before`; returns how many.
    fn purge_expired_tokens(&mut self, not_before: i64) -> Result<usize>;

    /// Deletes a user's token; false when it was not theirs or did not exist.
    fn revoke_token(&mut self, hash: &[u8; 32], user_id: i64) -> Result<bool>;

    fn set_user_desc(&mut self, user_id: i64, desc: &str) -> Result<()>;

    fn set_user_name(&mut self, user_id: i64, name: &str) -> Result<()>;
}

/// What `parleyd admin` reads and changes.
pub trait AdminStore {
    /// Every account, by id.
    fn all_users(&self) -> Result<Vec<(User, i64)>>;

    /// Replaces a user's password hash; returns whether the user exists.
    fn set_pass_hash(&mut self, user_id: i64, pass_hash: &str) -> Result<bool>;

    /// Deletes every token of a user; returns how many.
    fn revoke_all_tokens(&mut self, user_id: i64) -> Result<usize>;

    /// Every room with its member and message counts, by id.
    fn all_rooms(&self) -> Result<Vec<RoomSummary>>;

    fn totals(&self) -> Result<Totals>;
}

/// Replies, reactions, mentions and pins (design.md §7).
pub trait ConversationStore {
    /// Sets the message a new message answers.
    fn set_reply_to(&mut self, msg_id: i64, reply_to: i64) -> Result<()>;

    /// The members (not banned) of a room among these logins, any case.
    fn members_named(&self, room_id: i64, logins: &[String]) -> Result<Vec<i64>>;

    /// Records who a message names.
    fn insert_mentions(&mut self, msg_id: i64, room_id: i64, users: &[i64]) -> Result<()>;

    /// Adds (`on`) or removes one's reaction; true if it changed anything.
    fn react(&mut self, msg_id: i64, user_id: i64, emoji: &str, on: bool) -> Result<bool>;

    /// Whether anyone reacted to the message with this emoji, and how many
    /// different emoji it has.
    fn reaction_kinds(&self, msg_id: i64, emoji: &str) -> Result<(bool, i64)>;

    /// Pins or unpins; true if it changed anything.
    fn pin(&mut self, room_id: i64, msg_id: i64, user_id: i64, pinned: bool, now: i64) -> Result<bool>;

    /// How many messages are pinned in a room, and whether this one is.
    fn pins_in(&self, room_id: i64, msg_id: i64) -> Result<(i64, bool)>;

    /// A room's pinned messages, most recently pinned first.
    fn pinned(&self, room_id: i64) -> Result<Vec<Message>>;

    /// Messages that mention the user, in rooms they are still in (not
    /// banned), newest first, before `before_id` when given.
    fn mentions_of(&self, user_id: i64, before_id: Option<i64>, limit: usize) -> Result<Vec<Message>>;

    /// The extras of a page of messages, as `viewer` sees them.
    fn extras(&self, messages: &[Message], viewer: i64) -> Result<HashMap<i64, Extras>>;

    /// The answered message's author and first 100 characters, if it exists
    /// in that room.
    fn reply_preview(&self, room_id: i64, msg_id: i64) -> Result<Option<(i64, String, String)>>;
}

/// Friends and direct-message rooms.
pub trait FriendStore: RoomStore {
    /// Whether `refuser` removed `user` as a friend and has not added them back.
    fn refuses_friend(&self, refuser: i64, user: i64) -> Result<bool>;

    /// Makes two users friends both ways (lifting `user_id`'s own refusal of
    /// `friend_id`, if any); false if they already were.
    fn add_friend(&mut self, user_id: i64, friend_id: i64, now: i64) -> Result<bool>;

    /// Ends a friendship both ways, and records that `user_id` refuses
    /// `friend_id` until adding them again; false if there was no friendship.
    fn remove_friend(&mut self, user_id: i64, friend_id: i64, now: i64) -> Result<bool>;

    fn are_friends(&self, user_id: i64, friend_id: i64) -> Result<bool>;

    /// A user's friends, by login.
    fn friends_of(&self, user_id: i64) -> Result<Vec<User>>;

    /// Ids of a user's friends (for presence announcements).
    fn friend_ids(&self, user_id: i64) -> Result<Vec<i64>>;

    /// The direct-message room of two users, if it exists.
    fn direct_room(&self, a: i64, b: i64) -> Result<Option<i64>>;

    /// Creates the direct-message room of two users (both members, the
    /// creator as owner of record). Call inside `atomically`, after
    /// `direct_room` found none: the write lock makes the pair unique.
    fn create_direct_room(&mut self, creator: &User, peer: &User, now: i64) -> Result<i64> {
        let (low, high) = if creator.login < peer.login {
            (creator, peer)
        } else {
            (peer, creator)
        };
        let name = format!("{} & {}", low.login, high.login);
        let room = self.create_room(creator.id, &name, "", RoomType::Direct, now)?;
        self.set_role(room.id, creator.id, Role::Simple)?;
        self.add_member(room.id, peer.id, Role::Simple, now)?;
        self.record_direct_room(creator.id, peer.id, room.id)?;
        Ok(room.id)
    }

    /// Records `room_id` as the direct-message room of users `a` and `b`.
    fn record_direct_room(&mut self, a: i64, b: i64, room_id: i64) -> Result<()>;

    /// The other member of a direct-message room.
    fn direct_peer(&self, room_id: i64, user_id: i64) -> Result<Option<User>>;
}

/// Messages: storing, editing, deleting, history, search, read markers.
pub trait MessageStore {
    /// Stores a message and returns its id and date. The date is the clock,
    /// or the room's newest date if the clock went back, so that dates never
    /// decrease as ids increase. Call inside `atomically` (after the
    /// membership check).
    fn insert_message(
        &mut self,
        room_id: i64,
        user_id: i64,
        body: &str,
        msg_type: MsgType,
        now: i64,
    ) -> Result<Stored>;

    /// The newest message's date in a room, 0 when it has none.
    fn newest_date(&self, room_id: i64) -> Result<i64>;

    /// Stores a file message (its text is the file's name). Call inside
    /// `atomically`, after the checks, once the file is on disk.
    fn insert_file_message(
        &mut self,
        room_id: i64,
        user_id: i64,
        file: &StoredFile,
        now: i64,
    ) -> Result<Stored>;

    /// Stored names of the files in a room (to remove with its history).
    fn stored_files_in_room(&self, room_id: i64) -> Result<Vec<String>>;

    /// Every stored name the database refers to (for the start-up sweep).
    fn all_stored_files(&self) -> Result<Vec<String>>;

    /// Bytes of files a user has stored (for the quota).
    fn stored_bytes_of(&self, user_id: i64) -> Result<i64>;

    fn message(&self, id: i64) -> Result<Option<Message>>;

    /// Replaces a message's text and marks it edited.
    fn edit_message(&mut self, id: i64, body: &str) -> Result<()>;

    /// Deletes a message. Members who had not read it count it as gone
    /// (its author as one own message fewer), so their unread counts stay
    /// right. Call inside `atomically`.
    fn delete_message(&mut self, id: i64) -> Result<()>;

    /// Deletes up to `limit` messages dated before `before`, oldest first,
    /// keeping every member's unread count right; returns how many went and
    /// the stored names of their files. Call inside `atomically`.
    fn expire_messages(&mut self, before: i64, limit: usize) -> Result<(usize, Vec<String>)>;

    /// Deletes every message of a room, and marks it read for every member
    /// (nothing is left to read); returns how many. Call inside `atomically`.
    fn clear_history(&mut self, room_id: i64) -> Result<usize>;

    /// A page of a room's history, newest first.
    fn history(&self, room_id: i64, q: &HistoryQuery) -> Result<Vec<Message>>;

    /// Text messages containing every word of `text` as a word prefix
    /// (case- and accent-insensitive), newest first. The query starts from
    /// the rooms in scope: each indexed message carries its room as a token,
    /// and the full-text index intersects the words with those rooms, so the
    /// cost follows the caller's rooms, never the whole server's messages.
    fn search_messages(&self, text: &str, scope: SearchScope, limit: usize) -> Result<Vec<Message>>;

    /// Moves a member's read marker forward to `msg_id` (never back, never
    /// past the room's newest message); returns the marker. The unread
    /// counters are moved with it: this counts only the messages the marker
    /// passes over, so each message is counted at most once per member.
    /// Call inside `atomically`.
    /// The stored messages of a room numbered after `after` and before
    /// `before` with ids above `after_id`, with their numbers, in order (a
    /// cluster node fills a gap in what it heard with them).
    fn messages_by_seq(
        &self,
        room_id: i64,
        after: i64,
        before: i64,
        after_id: i64,
    ) -> Result<Vec<(i64, Message)>>;

    /// The newest message's id (0 when there is none).
    fn newest_message_id(&self) -> Result<i64>;

    /// The rooms with messages whose ids are above `after_id`, each with
    /// its newest message's number and the newest id among them.
    fn room_tails(&self, after_id: i64) -> Result<Vec<RoomTail>>;

    fn mark_read(&mut self, room_id: i64, user_id: i64, msg_id: i64) -> Result<i64>;
}

/// Rooms and membership. None of these open a transaction of their own:
/// handlers group them with `atomically` where a check and a write must
/// not be separated.
pub trait RoomStore {
    /// Creates a room with `owner` as its owner member.
    fn create_room(
        &mut self,
        owner: i64,
        name: &str,
        desc: &str,
        room_type: RoomType,
        now: i64,
    ) -> Result<Room>;

    fn room(&self, room_id: i64) -> Result<Option<Room>>;

    /// The user's role in the room (`Banned` included), or `None` if not a member.
    fn role_in(&self, room_id: i64, user_id: i64) -> Result<Option<Role>>;

    /// Rooms the user belongs to (not banned from), joined after `since`,
    /// with the user's role, unread count and the newest message id.
    ///
    /// The unread count comes from counters (migration 0008): what the room
    /// numbered after the member's marker, less the member's own messages
    /// and the deleted ones among them. Listing a room of 300,000 unread
    /// messages costs what listing an empty one does.
    fn rooms_of(&self, user_id: i64, since: i64) -> Result<Vec<RoomListing>>;

    /// Adds a member; false if the user already has a row (member or banned).
    fn add_member(&mut self, room_id: i64, user_id: i64, role: Role, now: i64) -> Result<bool>;

    /// Deletes a member's row (leaving, or lifting a ban).
    fn remove_member(&mut self, room_id: i64, user_id: i64) -> Result<bool>;

    fn set_role(&mut self, room_id: i64, user_id: i64, role: Role) -> Result<()>;

    /// Removes a member. An owner's room passes to the longest-standing
    /// admin, else the longest-standing member; an emptied room is deleted.
    fn leave_room(&mut self, room_id: i64, user_id: i64) -> Result<Departure>;

    /// Deletes a room with its members (and, by cascade, everything in it).
    fn delete_room(&mut self, room_id: i64) -> Result<()>;

    fn rename_room(&mut self, room_id: i64, name: &str) -> Result<()>;

    fn set_room_desc(&mut self, room_id: i64, desc: &str) -> Result<()>;

    /// Global rooms whose folded name starts with `prefix_fold`, except those
    /// `user_id` is banned from, with the user's role where a member; by name.
    fn search_global_rooms(
        &self,
        prefix_fold: &str,
        user_id: i64,
        limit: usize,
    ) -> Result<Vec<(Room, Option<Role>)>>;

    /// Current members (banned excluded), by rank and then by seniority.
    fn members(&self, room_id: i64) -> Result<Vec<Member>>;

    /// Every member's role, the banned included.
    fn member_roles(&self, room_id: i64) -> Result<Vec<(i64, Role)>>;

    /// Ids of the current members (banned excluded): a room's audience.
    fn member_ids(&self, room_id: i64) -> Result<Vec<i64>>;

    /// The room and the user's role in it (`Banned` included, `None` for
    /// non-members); `None` if the room does not exist. From memory in the
    /// writer, two indexed reads elsewhere.
    fn room_and_role(&mut self, room_id: i64, user_id: i64) -> Result<Option<(Room, Option<Role>)>>;

    /// The room's current members (banned excluded): who its pushes reach.
    fn audience(&mut self, room_id: i64) -> Result<Audience>;
}

/// The search index, kept behind the writer (messages are indexed after
/// they are stored, many at a time).
pub trait SearchIndexStore {
    /// The newest message id in the search index.
    fn indexed_upto(&self) -> Result<i64>;

    /// Whether some stored message is not yet in the search index.
    fn search_is_behind(&self) -> Result<bool>;

    /// Indexes the stored messages after the index's newest, at most
    /// `limit` ids of them, and moves the mark in the same transaction.
    fn index_stored_messages(&mut self, limit: i64) -> Result<IndexPass>;
}

/// Transactions. A store outside any transaction runs each statement on
/// its own; [`atomically`](super::atomically) groups a request's checks and
/// writes; the writer wraps many requests in one batch (one commit) and
/// each request's `atomically` becomes a savepoint in it.
pub trait Transactions {
    /// Opens a transaction that holds the write lock, or a savepoint when
    /// one is open already. Pair with [`Transactions::leave_atomic`].
    fn enter_atomic(&mut self) -> Result<()>;

    /// Ends what the matching `enter_atomic` opened: keeps its writes if
    /// `keep`, undoes them otherwise. A failed commit undoes them too.
    fn leave_atomic(&mut self, keep: bool) -> Result<()>;

    /// Opens the writer's batch: what runs until
    /// [`Transactions::commit_batch`] is one transaction.
    fn begin_batch(&mut self) -> Result<()>;

    /// Commits the batch (one flush to disk for all of it); on failure it is rolled back.
    fn commit_batch(&mut self) -> Result<()>;

    /// Whether the batch's transaction is still open. The database may give
    /// it up by itself on some errors (such as a full disk), and a panic
    /// rolls it back: what ran in it so far is then undone.
    fn batch_open(&self) -> bool;

    /// Rolls back whatever is open and forgets what the room cache learnt in it.
    fn rollback_all(&mut self);

    /// Takes, at the start of the writer's batch, the locks its writes will
    /// take on these rooms, in one order (ascending ids): the writers of
    /// several nodes then never wait on each other in a circle. Nothing to
    /// do for a store with one writer.
    fn lock_rooms(&mut self, _rooms: &[i64]) -> Result<()> {
        Ok(())
    }

    /// Keeps rooms in memory (the writer's store only: any other would not
    /// see the writes that make its copies stale).
    fn keep_room_cache(&mut self);
}

/// Everything a store does: what the writer and the workers hold. A store
/// says `impl Storage for ItsType {}` once it implements every part.
pub trait Storage:
    Transactions
    + AccountStore
    + AdminStore
    + ConversationStore
    + FriendStore
    + MessageStore
    + RoomStore
    + SearchIndexStore
    + Send
{
}
