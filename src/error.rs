//! The error type of request handling: client-facing refusals and internal failures.

use std::fmt;

use crate::protocol::ErrorCode;

/// Why a request failed.
#[derive(Debug)]
pub enum Error {
    /// A refusal the client is told about with this code and message.
    Client { code: ErrorCode, msg: String },
    /// The database failed; the client gets ER_INTERNAL, the log the details.
    Db(rusqlite::Error),
    /// Anything else internal (hashing, file system); logged, ER_INTERNAL.
    Internal(String),
}

/// Result of request handling.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn client(code: ErrorCode, msg: impl Into<String>) -> Error {
        Error::Client {
            code,
            msg: msg.into(),
        }
    }

    pub fn bad_request(msg: impl Into<String>) -> Error {
        Error::client(ErrorCode::BadRequest, msg)
    }

    pub fn not_found(msg: impl Into<String>) -> Error {
        Error::client(ErrorCode::NotFound, msg)
    }

    pub fn forbidden(msg: impl Into<String>) -> Error {
        Error::client(ErrorCode::Forbidden, msg)
    }

    /// The code and message the client sees; internal details stay in the log.
    pub fn to_wire(&self) -> (ErrorCode, String) {
        match self {
            Error::Client { code, msg } => (*code, msg.clone()),
            Error::Db(_) | Error::Internal(_) => (ErrorCode::Internal, "internal server error".into()),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Client { code, msg } => write!(f, "{}: {msg}", code.name()),
            Error::Db(e) => write!(f, "database: {e}"),
            Error::Internal(msg) => write!(f, "internal: {msg}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Db(e) => Some(e),
            _ => None,
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        Error::Db(e)
    }
}
