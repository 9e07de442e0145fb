//! The error type of request handling: client-facing refusals and internal failures.

use std::fmt;
use std::time::Duration;

use crate::protocol::{ErrorCode, Kind, Outgoing};

/// Why a request failed.
#[derive(Debug)]
pub enum Error {
    /// A refusal the client is told about with this code and message.
    Client { code: ErrorCode, msg: String },
    /// ER_RATE_LIMITED, with when to try again (sent as `retry_after_ms`).
    Limited { msg: String, retry_after: Duration },
    /// The database failed; the client gets ER_INTERNAL, the log the details.
    Db(crate::store::Error),
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

    /// ER_RATE_LIMITED; the message gets the wait appended.
    pub fn rate_limited(what: &str, retry_after: Duration) -> Error {
        Error::Limited {
            msg: format!("{what}; try again in {}", human_wait(retry_after)),
            retry_after,
        }
    }

    /// The RQ_ERROR_MSG a client gets for this error (with `retry_after_ms`
    /// when rate-limited).
    pub fn to_outgoing(&self, request: Option<Kind>) -> Outgoing {
        let (code, msg) = self.to_wire();
        match self.retry_after() {
            Some(wait) => Outgoing::rate_limited(msg, request, wait),
            None => Outgoing::error(code, msg, request),
        }
    }

    /// When a rate-limited client may try again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Limited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The code and message the client sees; internal details stay in the log.
    pub fn to_wire(&self) -> (ErrorCode, String) {
        match self {
            Error::Client { code, msg } => (*code, msg.clone()),
            Error::Limited { msg, .. } => (ErrorCode::RateLimited, msg.clone()),
            Error::Db(e) if e.is_disk_full() => (
                ErrorCode::Internal,
                "the server's disk is full; nothing was stored".into(),
            ),
            Error::Db(_) | Error::Internal(_) => (ErrorCode::Internal, "internal server error".into()),
        }
    }
}

/// A wait as people say it: "3 s", "2 min".
pub fn human_wait(d: Duration) -> String {
    let secs = d.as_secs_f64().ceil().max(1.0) as u64;
    if secs < 120 {
        format!("{secs} s")
    } else {
        format!("{} min", secs.div_ceil(60))
    }
}

/// Longest client-supplied text written to the log, in characters.
const LOG_CLIP_CHARS: usize = 64;

/// A client-supplied string cut short for the log, so that a hostile client
/// cannot make each failure write kilobytes.
pub fn clip(s: &str) -> String {
    match s.char_indices().nth(LOG_CLIP_CHARS) {
        None => s.to_owned(),
        Some((end, _)) => format!("{}… ({} bytes)", &s[..end], s.len()),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Client { code, msg } => write!(f, "{}: {msg}", code.name()),
            Error::Limited { msg, .. } => write!(f, "ER_RATE_LIMITED: {msg}"),
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

impl From<crate::store::Error> for Error {
    fn from(e: crate::store::Error) -> Error {
        Error::Db(e)
    }
}
