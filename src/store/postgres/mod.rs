//! The PostgreSQL store: the same storage interface over a database that
//! several nodes share (`--cluster-store postgres://...`).
//!
//! Each thread owns one [`PgStore`]: one connection, its prepared
//! statements, and the writer's batch. The meaning is the SQLite store's;
//! where SQLite kept counters with triggers, the statements here keep them
//! (a message's statement also draws the room's next sequence number under
//! the room's row lock, so a room's messages have one order everywhere).
//! Search is PostgreSQL's full-text search on a GIN index kept in the
//! storing transaction, so it is never behind.
//!
//! Transactions and savepoints are opened lazily, with the first statement
//! that runs in them, and a savepoint's release goes with the next one:
//! every round trip to the database is paid by each message, and a message
//! would otherwise cost three more.
//!
//! A connection that breaks is opened again before the next statement run
//! outside a transaction; a transaction it broke is lost (the writer fails
//! that batch's writes and starts another).

mod accounts;
mod admin;
mod conversation;
mod friends;
mod messages;
mod rooms;

use std::cell::{Cell, RefCell, RefMut};
use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context};
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement};

use super::room_cache::WriterRooms;
use super::{Error, IndexPass, Result, SearchIndexStore, Storage, Transactions};

/// The schema migrations, in order; the version is the position plus one.
const MIGRATIONS: &[(&str, &str)] = &[(
    "0001_schema",
    include_str!("../../../db/postgres/0001_schema.sql"),
)];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Every node migrates at start; this advisory lock lets one do it at a time.
const MIGRATION_LOCK: i64 = 0x7061_726c_6579; // "parley"

/// How long opening a connection may take before the server gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Statement parameters, as the client takes them.
type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Opens a connection to `url` (a `postgres://` URL or a key=value string).
fn connect(url: &str) -> Result<Client> {
    let mut config = postgres::Config::from_str(url)?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.application_name("parleyd");
    Ok(config.connect(NoTls)?)
}

/// Brings the database at `url` up to [`SCHEMA_VERSION`]. Refuses a
/// database written by a newer Parley. Safe to run from several nodes at once.
pub fn migrate(url: &str) -> anyhow::Result<()> {
    let mut client = connect(url).with_context(|| format!("connecting to {}", redacted(url)))?;
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
    let migrated = apply_migrations(&mut client);
    // Unlocked whatever happened (closing the connection would, too).
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    migrated
}

fn apply_migrations(client: &mut Client) -> anyhow::Result<()> {
    client.batch_execute("CREATE TABLE IF NOT EXISTS parley_schema (version BIGINT NOT NULL)")?;
    let version: i64 = client
        .query_one("SELECT coalesce(max(version), 0) FROM parley_schema", &[])?
        .get(0);
    if version > SCHEMA_VERSION {
        bail!(
            "the PostgreSQL database has schema version {version}, newer than this parleyd supports ({SCHEMA_VERSION}); run a newer parleyd"
        );
    }
    for (index, (name, sql)) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let target = index as i64 + 1;
        let mut tx = client.transaction()?;
        tx.batch_execute(sql)
            .with_context(|| format!("applying PostgreSQL migration {name}"))?;
        tx.execute("INSERT INTO parley_schema (version) VALUES ($1)", &[&target])?;
        tx.commit()?;
        log::info!("PostgreSQL database migrated to version {target} ({name})");
    }
    Ok(())
}

/// The URL without its password, for messages and logs.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user_info = &url[scheme + 3..at];
            let user = user_info.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// One thread's handle on the PostgreSQL database.
pub struct PgStore {
    url: String,
    /// `None` once the connection broke and could not be opened again.
    client: RefCell<Option<Client>>,
    /// Prepared statements of this connection, by their text.
    statements: RefCell<HashMap<String, Statement>>,
    /// Transactions and savepoints entered (`atomically` nests; the
    /// writer's batch is the first).
    depth: u32,
    /// How many of those the database has opened: the rest open before the
    /// next statement.
    opened: Cell<u32>,
    /// A savepoint left with its writes kept, still to be released: the
    /// release goes with the next savepoint (a commit releases it anyway).
    release: Cell<Option<u32>>,
    /// The batch's transaction can no longer commit (its connection broke,
    /// or a savepoint could not be rolled back to).
    lost: bool,
    /// The writer's rooms, for one batch: other nodes change rooms too, so
    /// each batch starts afresh (a batch of messages to one room then reads
    /// the room once).
    rooms: WriterRooms,
}

impl PgStore {
    /// Opens a connection to an already migrated database.
    pub fn open(url: &str) -> anyhow::Result<PgStore> {
        let client = connect(url).with_context(|| format!("connecting to {}", redacted(url)))?;
        Ok(PgStore {
            url: url.to_owned(),
            client: RefCell::new(Some(client)),
            statements: RefCell::new(HashMap::new()),
            depth: 0,
            opened: Cell::new(0),
            release: Cell::new(None),
            lost: false,
            rooms: WriterRooms::default(),
        })
    }

    /// The connection, opened again first if it broke while no transaction
    /// was open (one that was open is lost with it).
    fn client(&self) -> Result<RefMut<'_, Client>> {
        let mut slot = self.client.borrow_mut();
        if slot.as_ref().is_none_or(Client::is_closed) {
            if self.opened.get() > 0 {
                return Err(Error::ConnectionLost);
            }
            self.statements.borrow_mut().clear();
            *slot = None;
            *slot = Some(connect(&self.url)?);
            log::info!("reconnected to {}", redacted(&self.url));
        }
        RefMut::filter_map(slot, Option::as_mut).map_err(|_| Error::ConnectionLost)
    }

    /// The statement for `sql`, prepared once per connection.
    fn prepared(&self, client: &mut Client, sql: &str) -> Result<Statement> {
        if let Some(statement) = self.statements.borrow().get(sql) {
            return Ok(statement.clone());
        }
        let statement = client.prepare(sql)?;
        self.statements
            .borrow_mut()
            .insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// Opens, in one round trip, the transaction and savepoints entered
    /// but not yet opened (after releasing the savepoint left last).
    fn open_entered(&self) -> Result<()> {
        let opened = self.opened.get();
        if opened >= self.depth {
            return Ok(());
        }
        let mut sql = String::new();
        if let Some(level) = self.release.take() {
            sql.push_str(&format!("RELEASE SAVEPOINT s{level}; "));
        }
        for level in opened..self.depth {
            if level == 0 {
                sql.push_str("BEGIN; ");
            } else {
                sql.push_str(&format!("SAVEPOINT s{level}; "));
            }
        }
        self.client()?.batch_execute(&sql)?;
        self.opened.set(self.depth);
        Ok(())
    }

    /// A connection ready for a statement, in every transaction entered.
    fn ready(&self) -> Result<RefMut<'_, Client>> {
        self.open_entered()?;
        self.client()
    }

    /// Every row `sql` returns.
    fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
        let mut client = self.ready()?;
        let statement = self.prepared(&mut client, sql)?;
        Ok(client.query(&statement, params)?)
    }

    /// The one row `sql` returns, if any.
    fn query_opt(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>> {
        let mut client = self.ready()?;
        let statement = self.prepared(&mut client, sql)?;
        Ok(client.query_opt(&statement, params)?)
    }

    /// The one row `sql` must return.
    fn query_one(&self, sql: &str, params: Params<'_>) -> Result<Row> {
        let mut client = self.ready()?;
        let statement = self.prepared(&mut client, sql)?;
        Ok(client.query_one(&statement, params)?)
    }

    /// Runs `sql`; returns how many rows it changed.
    fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64> {
        let mut client = self.ready()?;
        let statement = self.prepared(&mut client, sql)?;
        Ok(client.execute(&statement, params)?)
    }

    /// Runs a transaction-control statement (no parameters, no result).
    fn control(&self, sql: &str) -> Result<()> {
        Ok(self.client()?.batch_execute(sql)?)
    }
}

impl Storage for PgStore {}

impl Transactions for PgStore {
    fn enter_atomic(&mut self) -> Result<()> {
        self.depth += 1;
        self.rooms.entered();
        Ok(())
    }

    fn leave_atomic(&mut self, keep: bool) -> Result<()> {
        self.depth = self.depth.saturating_sub(1);
        let level = self.depth;
        if self.opened.get() <= level {
            // No statement ran inside it: there is nothing to end.
            self.rooms.left(!keep);
            return Ok(());
        }
        // Still counted as open while it ends: a connection that broke must
        // fail the commit, not be opened again beneath it.
        let finished = match (keep, level) {
            (true, 0) => {
                self.release.set(None);
                self.control("COMMIT")
            }
            (true, _) => {
                // Releasing an outer savepoint releases the inner ones too.
                self.release.set(Some(level));
                Ok(())
            }
            (false, 0) => {
                self.release.set(None);
                self.control("ROLLBACK")
            }
            (false, _) => {
                self.release.set(None);
                self.control(&format!(
                    "ROLLBACK TO SAVEPOINT s{level}; RELEASE SAVEPOINT s{level}"
                ))
            }
        };
        self.opened.set(level);
        self.rooms.left(!keep || finished.is_err());
        if finished.is_err() {
            if level == 0 {
                self.rollback_all();
            } else {
                self.lost = true;
            }
        }
        finished
    }

    fn begin_batch(&mut self) -> Result<()> {
        if self.depth > 0 {
            self.rollback_all();
        }
        self.lost = false;
        self.depth = 1;
        self.rooms.forget_all();
        Ok(())
    }

    fn commit_batch(&mut self) -> Result<()> {
        self.depth = 0;
        self.release.set(None);
        if self.opened.get() == 0 {
            return Ok(());
        }
        let result = self.control("COMMIT");
        self.opened.set(0);
        // A failed commit ends the transaction (rolled back, or gone with
        // the connection).
        result
    }

    fn lock_rooms(&mut self, rooms: &[i64]) -> Result<()> {
        if rooms.is_empty() {
            return Ok(());
        }
        let mut rooms = rooms.to_vec();
        rooms.sort_unstable();
        rooms.dedup();
        if self.rooms.kept() {
            // The writer's batch: the same round trip loads them for it.
            return self.lock_and_cache_rooms(&rooms);
        }
        self.execute(
            "SELECT 1 FROM (SELECT id FROM rooms WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE) locked",
            &[&rooms],
        )?;
        Ok(())
    }

    fn batch_open(&self) -> bool {
        self.depth > 0
            && !self.lost
            && (self.opened.get() == 0
                || self
                    .client
                    .borrow()
                    .as_ref()
                    .is_some_and(|client| !client.is_closed()))
    }

    fn rollback_all(&mut self) {
        if self.opened.get() > 0 {
            if let Some(client) = self.client.borrow_mut().as_mut() {
                let _ = client.batch_execute("ROLLBACK");
            }
        }
        self.depth = 0;
        self.opened.set(0);
        self.release.set(None);
        self.lost = false;
        self.rooms.rolled_back();
    }

    /// Kept for one batch at a time (see `rooms`).
    fn keep_room_cache(&mut self) {
        self.rooms.keep();
    }
}

/// PostgreSQL keeps its text index in the storing transaction: there is
/// never anything to catch up with.
impl SearchIndexStore for PgStore {
    fn indexed_upto(&self) -> Result<i64> {
        Ok(self
            .query_one("SELECT coalesce(max(id), 0) FROM messages", &[])?
            .get(0))
    }

    fn search_is_behind(&self) -> Result<bool> {
        Ok(false)
    }

    fn index_stored_messages(&mut self, _limit: i64) -> Result<IndexPass> {
        Ok(IndexPass::default())
    }
}

/// A role from its stored code.
fn role_from(code: i64) -> crate::model::Role {
    crate::model::Role::from_code(code).unwrap_or(crate::model::Role::Simple)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redacted("postgres://parley:secret@db.example:5432/chat"),
            "postgres://parley@db.example:5432/chat"
        );
        assert_eq!(redacted("postgres://127.0.0.1/chat"), "postgres://127.0.0.1/chat");
    }
}
