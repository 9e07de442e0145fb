//! The SQLite store: the embedded default, one file in the data directory.
//!
//! Each thread owns one [`SqliteStore`] (one SQLite connection in WAL mode).
//! Only the writer thread writes: it opens a batch transaction, runs each
//! request in a savepoint of it, and commits once. Every statement binds its
//! values and goes through the prepared-statement cache.
//!
//! The schema is the numbered files in `db/`, applied in order by
//! [`migrate`] and tracked in `PRAGMA user_version`.

mod accounts;
mod admin;
mod conversation;
mod friends;
mod messages;
mod rooms;
mod search_index;

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use rusqlite::Connection;

use super::room_cache::WriterRooms;
use super::{Result, Storage, Transactions};
use crate::config::Durability;

/// The schema migrations, in order; the version is the position plus one.
const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_accounts", include_str!("../../../db/0001_accounts.sql")),
    ("0002_rooms", include_str!("../../../db/0002_rooms.sql")),
    ("0003_messages", include_str!("../../../db/0003_messages.sql")),
    ("0004_friends", include_str!("../../../db/0004_friends.sql")),
    ("0005_files", include_str!("../../../db/0005_files.sql")),
    (
        "0006_search_by_room",
        include_str!("../../../db/0006_search_by_room.sql"),
    ),
    (
        "0007_friend_refusals",
        include_str!("../../../db/0007_friend_refusals.sql"),
    ),
    (
        "0008_unread_counters",
        include_str!("../../../db/0008_unread_counters.sql"),
    ),
    ("0009_room_power", include_str!("../../../db/0009_room_power.sql")),
    (
        "0010_conversation",
        include_str!("../../../db/0010_conversation.sql"),
    ),
    (
        "0011_search_behind_writer",
        include_str!("../../../db/0011_search_behind_writer.sql"),
    ),
    (
        "0012_search_terms",
        include_str!("../../../db/0012_search_terms.sql"),
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
pub struct SqliteStore {
    conn: Connection,
    /// Open transactions and savepoints (`atomically` nests).
    depth: u32,
    /// Rooms in memory: kept by the writer's store only, which sees every write.
    rooms: WriterRooms,
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

impl SqliteStore {
    /// Opens a connection to an already migrated database.
    pub fn open(path: &Path, durability: Durability) -> anyhow::Result<SqliteStore> {
        let conn = Connection::open(path).with_context(|| format!("opening database {}", path.display()))?;
        configure(&conn, durability).with_context(|| format!("configuring database {}", path.display()))?;
        Ok(SqliteStore {
            conn,
            depth: 0,
            rooms: WriterRooms::default(),
            data_version: None,
        })
    }

    /// Runs a transaction-control statement from the statement cache: each
    /// write runs two (its savepoint and its release), and parsing them
    /// every time was 5% of the writer's time.
    fn control(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.execute([]).map(|_| ())
    }

    /// Tells the cache that a room changed in a way it does not follow.
    fn forget_room(&mut self, room_id: i64) {
        self.rooms.forget(room_id);
    }

    /// Opens a read-only connection, for the read workers and the hashing
    /// threads: a handler that tried to write there would fail at once
    /// (SQLITE_READONLY) instead of writing outside the writer's order.
    pub fn open_reader(path: &Path) -> anyhow::Result<SqliteStore> {
        use rusqlite::OpenFlags;
        let flags =
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(path, flags)
            .with_context(|| format!("opening database {}", path.display()))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(SqliteStore {
            conn,
            depth: 0,
            rooms: WriterRooms::default(),
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

impl Storage for SqliteStore {}

impl Transactions for SqliteStore {
    fn enter_atomic(&mut self) -> Result<()> {
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
        self.rooms.entered();
        Ok(())
    }

    fn leave_atomic(&mut self, keep: bool) -> Result<()> {
        self.depth = self.depth.saturating_sub(1);
        let level = self.depth;
        let finished = match (keep, level) {
            (true, 0) => self.conn.execute_batch("COMMIT"),
            (true, _) => self.control(&format!("RELEASE s{level}")),
            (false, 0) => self.conn.execute_batch("ROLLBACK"),
            (false, _) => self
                .conn
                .execute_batch(&format!("ROLLBACK TO s{level}; RELEASE s{level}")),
        };
        self.rooms.left(!keep || finished.is_err());
        if finished.is_err() && keep && level == 0 {
            self.rollback_all();
        }
        Ok(finished?)
    }

    fn begin_batch(&mut self) -> Result<()> {
        if !self.conn.is_autocommit() {
            self.rollback_all();
        }
        self.control("BEGIN IMMEDIATE")?;
        self.depth = 1;
        // Another process (`parleyd admin`, a restore) may have changed the
        // database: then what the cache remembers may be stale.
        if self.rooms.kept() {
            let version: i64 = self.conn.query_row("PRAGMA data_version", [], |row| row.get(0))?;
            if self.data_version.replace(version).is_some_and(|v| v != version) {
                self.rooms.forget_all();
            }
        }
        Ok(())
    }

    /// Commits the batch (one fsync for all of it); on failure it is rolled back.
    fn commit_batch(&mut self) -> Result<()> {
        self.depth = 0;
        let result = self.control("COMMIT");
        if result.is_err() {
            self.rollback_all();
        }
        Ok(result?)
    }

    /// Whether the batch's transaction is still open. SQLite gives it up by
    /// itself on some errors (such as a full disk), and a panic rolls it
    /// back: what ran in it so far is then undone.
    fn batch_open(&self) -> bool {
        self.depth > 0 && !self.conn.is_autocommit()
    }

    /// Rolls back whatever is open and forgets what the cache learnt in it.
    fn rollback_all(&mut self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        self.depth = 0;
        self.rooms.rolled_back();
    }

    /// Keeps rooms in memory (the writer's store only: any other would not
    /// see the writes that make its copies stale).
    fn keep_room_cache(&mut self) {
        self.rooms.keep();
    }
}

/// A migrated database in a temporary directory, and a store on it (for
/// the unit tests of the store and the writer).
#[cfg(test)]
pub(crate) fn temp_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("t.db");
    migrate(&path).expect("migrations apply");
    let store = SqliteStore::open(&path, Durability::Normal).expect("the database opens");
    (dir, store)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::prelude::*;

    #[test]
    fn readers_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        migrate(&path).unwrap();
        let mut writer = SqliteStore::open(&path, Durability::Normal).unwrap();
        let mut reader = SqliteStore::open_reader(&path).unwrap();
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
        let store = SqliteStore::open(&path, Durability::Normal).unwrap();
        let unread = |user| store.rooms_of(user, 0).unwrap()[0].unread;
        assert_eq!(unread(1), 1, "b's one message");
        assert_eq!(unread(2), 2, "a's two after b's marker");
        assert_eq!(store.room(1).unwrap().unwrap().msg_count, 4);
    }
}
