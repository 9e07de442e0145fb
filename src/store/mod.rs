//! Storage: every SQL statement of the server, behind one narrow interface.
//!
//! Each thread owns one [`Store`] (one SQLite connection in WAL mode). Storage
//! speaks in domain types (`model`) and plain values, never protocol types.
//! Only the writer thread writes: it opens a batch transaction, runs each
//! request in a savepoint of it ([`Store::atomically`] nests), and commits
//! once. Every statement binds its values and goes through the
//! prepared-statement cache.
//!
//! The schema is the numbered files in `db/`, applied in order by
//! [`migrate`] and tracked in `PRAGMA user_version`.

mod accounts;
mod admin;
mod conversation;
mod friends;
mod messages;
mod room_cache;
mod rooms;
mod search_index;

pub use admin::{RoomSummary, Totals};
pub use conversation::Extras;
pub use messages::{HistoryQuery, SearchScope};
pub use room_cache::{Audience, RoomState};
pub use rooms::Departure;
pub use search_index::IndexPass;

use room_cache::RoomCache;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use rusqlite::Connection;

use crate::config::Durability;
use crate::model::{Role, Room};

/// The schema migrations, in order; the version is the position plus one.
const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_accounts", include_str!("../../db/0001_accounts.sql")),
    ("0002_rooms", include_str!("../../db/0002_rooms.sql")),
    ("0003_messages", include_str!("../../db/0003_messages.sql")),
    ("0004_friends", include_str!("../../db/0004_friends.sql")),
    ("0005_files", include_str!("../../db/0005_files.sql")),
    (
        "0006_search_by_room",
        include_str!("../../db/0006_search_by_room.sql"),
    ),
    (
        "0007_friend_refusals",
        include_str!("../../db/0007_friend_refusals.sql"),
    ),
    (
        "0008_unread_counters",
        include_str!("../../db/0008_unread_counters.sql"),
    ),
    ("0009_room_power", include_str!("../../db/0009_room_power.sql")),
    (
        "0010_conversation",
        include_str!("../../db/0010_conversation.sql"),
    ),
    (
        "0011_search_behind_writer",
        include_str!("../../db/0011_search_behind_writer.sql"),
    ),
    (
        "0012_search_terms",
        include_str!("../../db/0012_search_terms.sql"),
    ),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Log pages past which the writer checkpoints by itself (64 MiB of 4 KiB
/// pages); below it the checkpointer thread does (see `checkpointer`).
const WRITER_CHECKPOINT_PAGES: i64 = 16_384;

/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// One thread's handle on the database.
pub struct Store {
    conn: Connection,
    /// Open transactions and savepoints ([`Store::atomically`] nests).
    depth: u32,
    /// Rooms in memory: kept by the writer's store only, which sees every write.
    rooms: Option<RoomCache>,
    /// SQLite's count of commits by other connections, when last looked at.
    data_version: Option<i64>,
}

fn configure(conn: &Connection, durability: Durability) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Brings the database at `path` up to [`SCHEMA_VERSION`], creating it if
/// needed. Refuses a database written by a newer Parley.
pub fn migrate(path: &Path) -> anyhow::Result<()> {
    let mut conn = Connection::open(path).with_context(|| format!("opening database {}", path.display()))?;
    configure(&conn, Durability::Full).with_context(|| format!("configuring database {}", path.display()))?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version > SCHEMA_VERSION {
        bail!(
            "database {} has schema version {version}, newer than this parleyd supports ({SCHEMA_VERSION}); run a newer parleyd",
            path.display()
        );
    }
    for (index, (name, sql)) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let target = index as i64 + 1;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)?;
        tx.execute_batch(sql)
            .with_context(|| format!("applying migration {name}"))?;
        tx.pragma_update(None, "user_version", target)?;
        tx.commit()?;
        log::info!("database migrated to version {target} ({name})");
    }
    Ok(())
}

impl Store {
    /// Opens a connection to an already migrated database.
    pub fn open(path: &Path, durability: Durability) -> anyhow::Result<Store> {
        let conn = Connection::open(path).with_context(|| format!("opening database {}", path.display()))?;
        configure(&conn, durability).with_context(|| format!("configuring database {}", path.display()))?;
        Ok(Store {
            conn,
            depth: 0,
            rooms: None,
            data_version: None,
        })
    }

    /// Runs `f` atomically: outside a transaction in one `BEGIN IMMEDIATE`
    /// transaction, inside one (the writer's batch) in a savepoint. Its
    /// writes stay if it returns `Ok` and are undone otherwise. Checks and
    /// the writes they allow happen under the same write lock.
    pub fn atomically<T, E: From<rusqlite::Error>>(
        &mut self,
        f: impl FnOnce(&mut Store) -> Result<T, E>,
    ) -> Result<T, E> {
        if self.depth == 0 {
            if !self.conn.is_autocommit() {
                // Left open by a panicking handler: discard it.
                self.rollback_all();
            }
            self.conn.execute_batch("BEGIN IMMEDIATE")?;
        } else {
            self.control(&format!("SAVEPOINT s{}", self.depth))?;
        }
        self.depth += 1;
        let cache_mark = self.cache_changes();
        let result = f(self);
        self.depth -= 1;
        let level = self.depth;
        let finished = match &result {
            Ok(_) if level == 0 => self.conn.execute_batch("COMMIT"),
            Ok(_) => self.control(&format!("RELEASE s{level}")),
            Err(_) if level == 0 => self.conn.execute_batch("ROLLBACK"),
            Err(_) => self
                .conn
                .execute_batch(&format!("ROLLBACK TO s{level}; RELEASE s{level}")),
        };
        let undone = result.is_err() || finished.is_err();
        if undone && self.cache_changes() != cache_mark {
            self.forget_rooms();
        }
        match (result, finished) {
            (Ok(value), Ok(())) => Ok(value),
            (Ok(_), Err(e)) => {
                if level == 0 {
                    self.rollback_all();
                }
                Err(e.into())
            }
            (Err(e), _) => Err(e),
        }
    }

    /// Runs a transaction-control statement from the statement cache: each
    /// write runs two (its savepoint and its release), and parsing them
    /// every time was 5% of the writer's time.
    fn control(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.execute([]).map(|_| ())
    }

    /// Opens the writer's batch: what runs until [`Store::commit_batch`]
    /// is one transaction, each `atomically` within it a savepoint.
    pub fn begin_batch(&mut self) -> rusqlite::Result<()> {
        if !self.conn.is_autocommit() {
            self.rollback_all();
        }
        self.control("BEGIN IMMEDIATE")?;
        self.depth = 1;
        // Another process (`parleyd admin`, a restore) may have changed the
        // database: then what the cache remembers may be stale.
        if self.rooms.is_some() {
            let version: i64 = self.conn.query_row("PRAGMA data_version", [], |row| row.get(0))?;
            if self.data_version.replace(version).is_some_and(|v| v != version) {
                self.forget_rooms();
            }
        }
        Ok(())
    }

    /// Commits the batch (one fsync for all of it); on failure it is rolled back.
    pub fn commit_batch(&mut self) -> rusqlite::Result<()> {
        self.depth = 0;
        let result = self.control("COMMIT");
        if result.is_err() {
            self.rollback_all();
        }
        result
    }

    /// Whether the batch's transaction is still open. SQLite gives it up by
    /// itself on some errors (such as a full disk), and a panic rolls it
    /// back: what ran in it so far is then undone.
    pub fn batch_open(&self) -> bool {
        self.depth > 0 && !self.conn.is_autocommit()
    }

    /// Rolls back whatever is open and forgets what the cache learnt in it.
    pub fn rollback_all(&mut self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        self.depth = 0;
        self.forget_rooms();
    }

    /// Keeps rooms in memory (the writer's store only: any other would not
    /// see the writes that make its copies stale).
    pub fn keep_room_cache(&mut self) {
        self.rooms = Some(RoomCache::default());
    }

    fn cache_changes(&self) -> u64 {
        self.rooms.as_ref().map_or(0, RoomCache::changes)
    }

    fn forget_rooms(&mut self) {
        if let Some(cache) = &mut self.rooms {
            cache.clear();
        }
    }

    /// Tells the cache that a room changed in a way it does not follow.
    fn forget_room(&mut self, room_id: i64) {
        if let Some(cache) = &mut self.rooms {
            cache.forget(room_id);
        }
    }

    /// The writer's cached state of a room, loaded on a miss; `None` for
    /// stores without a cache and for rooms that do not exist.
    fn cached_room(&mut self, room_id: i64) -> rusqlite::Result<Option<&RoomState>> {
        let Some(cache) = &self.rooms else {
            return Ok(None);
        };
        if cache.get(room_id).is_none() {
            let Some(state) = self.load_room_state(room_id)? else {
                return Ok(None);
            };
            if let Some(cache) = &mut self.rooms {
                cache.insert(state);
            }
        }
        Ok(self.rooms.as_ref().and_then(|c| c.get(room_id)))
    }

    /// The room and the user's role in it (`Banned` included, `None` for
    /// non-members); `None` if the room does not exist. From memory in the
    /// writer, two indexed reads elsewhere.
    pub fn room_and_role(
        &mut self,
        room_id: i64,
        user_id: i64,
    ) -> rusqlite::Result<Option<(Room, Option<Role>)>> {
        if self.rooms.is_some() {
            return Ok(self
                .cached_room(room_id)?
                .map(|state| (state.room.clone(), state.role_of(user_id))));
        }
        let Some(room) = self.room(room_id)? else {
            return Ok(None);
        };
        let role = self.role_in(room_id, user_id)?;
        Ok(Some((room, role)))
    }

    /// The room's current members (banned excluded): who its pushes reach.
    pub fn audience(&mut self, room_id: i64) -> rusqlite::Result<Audience> {
        if self.rooms.is_some() {
            return Ok(self
                .cached_room(room_id)?
                .map_or_else(|| Arc::new(Vec::new()), RoomState::audience));
        }
        Ok(Arc::new(self.member_ids(room_id)?))
    }

    fn load_room_state(&self, room_id: i64) -> rusqlite::Result<Option<RoomState>> {
        let Some(room) = self.room(room_id)? else {
            return Ok(None);
        };
        let newest_date = self.newest_date(room_id)?;
        let roles = self.member_roles(room_id)?;
        Ok(Some(RoomState::new(room, newest_date, roles)))
    }

    /// Opens a read-only connection, for the read workers and the hashing
    /// threads: a handler that tried to write there would fail at once
    /// (SQLITE_READONLY) instead of writing outside the writer's order.
    pub fn open_reader(path: &Path) -> anyhow::Result<Store> {
        use rusqlite::OpenFlags;
        let flags =
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(path, flags)
            .with_context(|| format!("opening database {}", path.display()))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(Store {
            conn,
            depth: 0,
            rooms: None,
            data_version: None,
        })
    }

    /// Leaves checkpoints to the checkpointer thread: this connection (the
    /// writer's) checkpoints by itself only if the log grows past
    /// `WRITER_CHECKPOINT_PAGES`, as a backstop should the other fall behind.
    pub fn leave_checkpoints_to_checkpointer(&mut self) -> rusqlite::Result<()> {
        self.conn
            .pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)
    }

    /// Writes as much of the log back as no reader still needs, without
    /// waiting for anyone (the checkpointer thread's pass).
    pub fn checkpoint_passive(&self) -> rusqlite::Result<()> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
    }

    /// Writes the WAL back into the main file; called once at clean shutdown.
    pub fn checkpoint(&self) -> rusqlite::Result<()> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
    }
}

/// A migrated database in a temporary directory, and a store on it (for
/// the unit tests of the store and the writer).
#[cfg(test)]
pub(crate) fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("t.db");
    migrate(&path).expect("migrations apply");
    let store = Store::open(&path, Durability::Normal).expect("the database opens");
    (dir, store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        migrate(&path).unwrap();
        let mut writer = Store::open(&path, Durability::Normal).unwrap();
        let mut reader = Store::open_reader(&path).unwrap();
        writer.create_user("w", "w", "", "x", 1).unwrap().unwrap();
        assert!(
            reader.user_by_login("w").unwrap().is_some(),
            "readers see commits"
        );
        let refused = reader.create_user("r", "r", "", "x", 1).unwrap_err();
        assert!(refused.to_string().contains("readonly"), "{refused}");
    }

    #[test]
    fn migrates_once_and_refuses_newer_schemas() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        migrate(&path).unwrap();
        migrate(&path).unwrap();
        let conn = Connection::open(&path).unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        let err = migrate(&path).unwrap_err().to_string();
        assert!(err.contains("newer"), "{err}");
    }

    #[test]
    fn the_unread_counters_are_filled_in_for_existing_databases() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = Connection::open(&path).unwrap();
        for (_, sql) in &MIGRATIONS[..7] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 7).unwrap();
        conn.execute_batch(
            "INSERT INTO users (id, login, name, pass_hash, created_at) VALUES (1, 'a', 'a', 'x', 0), (2, 'b', 'b', 'x', 0);
             INSERT INTO rooms (id, name, name_fold, room_type, owner_id, created_at) VALUES (1, 'r', 'r', 1, 1, 0);
             INSERT INTO members (room_id, user_id, role, joined_at) VALUES (1, 1, 0, 1), (1, 2, 3, 1);
             INSERT INTO messages (id, room_id, user_id, date, body, msg_type) VALUES
                 (10, 1, 1, 0, 'a1', 0), (11, 1, 2, 0, 'b1', 0), (12, 1, 1, 0, 'a2', 0), (13, 1, 1, 0, 'a3', 0);
             UPDATE members SET last_read = 11 WHERE user_id = 2;",
        )
        .unwrap();
        drop(conn);
        migrate(&path).unwrap();
        let store = Store::open(&path, Durability::Normal).unwrap();
        let unread = |user| store.rooms_of(user, 0).unwrap()[0].unread;
        assert_eq!(unread(1), 1, "b's one message");
        assert_eq!(unread(2), 2, "a's two after b's marker");
        assert_eq!(store.room(1).unwrap().unwrap().msg_count, 4);
    }
}
