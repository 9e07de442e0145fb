//! Storage: every statement the server runs against its database, behind
//! one narrow interface ([`Storage`], in `interface`).
//!
//! Handlers, the writer and the read workers hold a `Box<dyn Storage>` and
//! never see which database answers. Storage speaks in domain types
//! (`model`) and plain values, never protocol types. Only the writer
//! writes: it opens a batch, runs each request [`atomically`] (a savepoint
//! of the batch), and commits once.
//!
//! The embedded default is [`SqliteStore`] (`sqlite`); with the `postgres`
//! feature, `postgres::PgStore` keeps everything in a PostgreSQL database
//! that several nodes share.

mod interface;
#[cfg(feature = "postgres")]
pub mod postgres;
mod room_cache;
pub mod sqlite;

pub use interface::*;
pub use room_cache::{Audience, RoomState};
pub use sqlite::{migrate, SqliteStore, SCHEMA_VERSION};

#[cfg(test)]
pub(crate) use sqlite::temp_store;

use std::fmt;

/// The storage traits, for calling a store's methods: `use crate::store::prelude::*`.
pub mod prelude {
    pub use super::{
        AccountStore, AdminStore, ConversationStore, FriendStore, MessageStore, RoomStore, SearchIndexStore,
        Storage, Transactions,
    };
}

/// What every store hands to the request handlers: the SQLite store (and
/// any other) behind the one interface.
pub type Store = dyn Storage;

/// A database failure, whichever database it came from.
#[derive(Debug)]
pub enum Error {
    Sqlite(rusqlite::Error),
    #[cfg(feature = "postgres")]
    Postgres(::postgres::Error),
    /// The connection broke inside a transaction, which is lost with it.
    ConnectionLost,
    /// What the write needed changed under it (another node deleted it).
    Conflict(&'static str),
}

/// Result of a storage call.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Whether the disk is full (deletes may then need the ballast freed).
    pub fn is_disk_full(&self) -> bool {
        match self {
            Error::Sqlite(e) => crate::disk::is_disk_full(e),
            #[cfg(feature = "postgres")]
            Error::Postgres(e) => e.code() == Some(&::postgres::error::SqlState::DISK_FULL),
            Error::ConnectionLost | Error::Conflict(_) => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Sqlite(e) => write!(f, "sqlite: {e}"),
            #[cfg(feature = "postgres")]
            Error::Postgres(e) => write!(f, "postgres: {e}"),
            Error::ConnectionLost => f.write_str("the database connection broke inside a transaction"),
            Error::Conflict(what) => write!(f, "conflicting change: {what}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Sqlite(e) => Some(e),
            #[cfg(feature = "postgres")]
            Error::Postgres(e) => Some(e),
            Error::ConnectionLost | Error::Conflict(_) => None,
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        Error::Sqlite(e)
    }
}

#[cfg(feature = "postgres")]
impl From<::postgres::Error> for Error {
    fn from(e: ::postgres::Error) -> Error {
        Error::Postgres(e)
    }
}

/// Runs `f` atomically: outside a transaction in one transaction that holds
/// the write lock, inside one (the writer's batch) in a savepoint. Its
/// writes stay if it returns `Ok` and are undone otherwise, so checks and
/// the writes they allow happen under the same lock.
pub fn atomically<S, T, E>(
    store: &mut S,
    f: impl FnOnce(&mut S) -> std::result::Result<T, E>,
) -> std::result::Result<T, E>
where
    S: Transactions + ?Sized,
    E: From<Error>,
{
    store.enter_atomic()?;
    let result = f(store);
    let finished = store.leave_atomic(result.is_ok());
    match (result, finished) {
        (Ok(value), Ok(())) => Ok(value),
        (Ok(_), Err(e)) => Err(e.into()),
        (Err(e), _) => Err(e),
    }
}

impl dyn Storage + '_ {
    /// [`atomically`], as a method of the handlers' store.
    pub fn atomically<T, E: From<Error>>(
        &mut self,
        f: impl FnOnce(&mut Self) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        atomically(self, f)
    }
}

impl SqliteStore {
    /// [`atomically`], as a method of the SQLite store.
    pub fn atomically<T, E: From<Error>>(
        &mut self,
        f: impl FnOnce(&mut Self) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        atomically(self, f)
    }
}
