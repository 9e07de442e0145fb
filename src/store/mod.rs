//! Storage: every SQL statement of the server, behind one narrow interface.
//!
//! Each worker owns one [`Store`] (one SQLite connection in WAL mode). Storage
//! speaks in domain types (`model`) and plain values, never protocol types.
//! Write paths run in `IMMEDIATE` transactions; every statement binds its
//! values and goes through the prepared-statement cache.
//!
//! The schema is the numbered files in `db/`, applied in order by
//! [`migrate`] and tracked in `PRAGMA user_version`.

mod accounts;
mod friends;
mod messages;
mod rooms;

pub use messages::{HistoryQuery, SearchScope};
pub use rooms::Departure;

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use rusqlite::Connection;

use crate::config::Durability;

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
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// One worker's handle on the database.
pub struct Store {
    conn: Connection,
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
        Ok(Store { conn })
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction: committed if it returns
    /// `Ok`, rolled back otherwise. Checks and the writes they allow happen
    /// under the same write lock, so concurrent requests cannot interleave.
    pub fn atomically<T, E: From<rusqlite::Error>>(
        &mut self,
        f: impl FnOnce(&mut Store) -> Result<T, E>,
    ) -> Result<T, E> {
        if !self.conn.is_autocommit() {
            // Left open by a panicking handler: discard it.
            self.conn.execute_batch("ROLLBACK")?;
        }
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        match f(self) {
            Ok(value) => match self.conn.execute_batch("COMMIT") {
                Ok(()) => Ok(value),
                Err(e) => {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    Err(e.into())
                }
            },
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Writes the WAL back into the main file; called once at clean shutdown.
    pub fn checkpoint(&self) -> rusqlite::Result<()> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
