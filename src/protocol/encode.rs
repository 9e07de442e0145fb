//! Replies and pushes: an [`Outgoing`] is a kind and a typed body, written
//! straight from that body into a line for a connection's dialect.

use std::fmt;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::kinds::{with_dialect, writing_dialect, ErrorCode, Kind};
use super::replies::ErrorBody;
use super::requests::ReqId;
use crate::compat::Dialect;

/// Writes a body's JSON object.
type BodyWriter = dyn Fn(&mut Vec<u8>) -> serde_json::Result<()> + Send + Sync;

/// A message from the server: a kind and its body. Cheap to clone; the body
/// is written anew for each dialect it is sent in (once per push, whatever
/// the number of recipients).
#[derive(Clone)]
pub struct Outgoing {
    pub kind: Kind,
    body: Option<Arc<BodyWriter>>,
    /// For an `RQ_ERROR_MSG`: what it says (for the metrics, and to tell
    /// an old client only what it understands).
    error: Option<Arc<ErrorInfo>>,
}

/// An error's code, text and request.
#[derive(Debug)]
pub struct ErrorInfo {
    pub code: ErrorCode,
    pub msg: String,
    pub request: Option<Kind>,
}

impl fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = self.encode(Dialect::Names, None);
        write!(f, "{}", String::from_utf8_lossy(line.trim_ascii_end()))
    }
}

impl Outgoing {
    /// A message whose fields are those of `body` (a struct).
    pub fn new<T: Serialize + Send + Sync + 'static>(kind: Kind, body: T) -> Outgoing {
        Outgoing {
            kind,
            body: Some(Arc::new(move |out: &mut Vec<u8>| {
                serde_json::to_writer(out, &body)
            })),
            error: None,
        }
    }

    /// A message with no fields besides `type`.
    pub fn empty(kind: Kind) -> Outgoing {
        Outgoing {
            kind,
            body: None,
            error: None,
        }
    }

    /// An `RQ_ERROR_MSG`.
    pub fn error(code: ErrorCode, msg: impl Into<String>, request: Option<Kind>) -> Outgoing {
        let msg = msg.into();
        let info = ErrorInfo {
            code,
            msg: msg.clone(),
            request,
        };
        let body = ErrorBody {
            error_code: code,
            msg,
            request,
            retry_after_ms: None,
        };
        Outgoing {
            error: Some(Arc::new(info)),
            ..Outgoing::new(Kind::ErrorMsg, body)
        }
    }

    /// The error code, for an `RQ_ERROR_MSG`.
    pub fn error_code(&self) -> Option<ErrorCode> {
        self.error.as_ref().map(|e| e.code)
    }

    /// What an `RQ_ERROR_MSG` says.
    pub fn error_info(&self) -> Option<&ErrorInfo> {
        self.error.as_deref()
    }

    /// An `RQ_ERROR_MSG` with ER_RATE_LIMITED and `retry_after_ms`.
    pub fn rate_limited(msg: impl Into<String>, request: Option<Kind>, retry_after: Duration) -> Outgoing {
        let ms = u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX).max(1);
        let msg = msg.into();
        let info = ErrorInfo {
            code: ErrorCode::RateLimited,
            msg: msg.clone(),
            request,
        };
        let body = ErrorBody {
            error_code: ErrorCode::RateLimited,
            msg,
            request,
            retry_after_ms: Some(ms),
        };
        Outgoing {
            error: Some(Arc::new(info)),
            ..Outgoing::new(Kind::ErrorMsg, body)
        }
    }

    /// The line sent to a connection of the given dialect, `\n` included:
    /// `type`, then `req_id` if any, then the body's fields.
    pub fn encode(&self, dialect: Dialect, req_id: Option<&ReqId>) -> Vec<u8> {
        let mut line = Vec::with_capacity(128);
        match dialect {
            Dialect::Names => {
                line.extend_from_slice(b"{\"type\":\"");
                line.extend_from_slice(self.kind.name().as_bytes());
                line.push(b'"');
            }
            Dialect::Codes => {
                let _ = write!(line, "{{\"type\":{}", self.kind.code());
            }
        }
        if let Some(ReqId(id)) = req_id {
            line.extend_from_slice(b",\"req_id\":");
            let _ = serde_json::to_writer(&mut line, id);
        }
        if let Some(body) = &self.body {
            let start = line.len();
            let written = with_dialect(dialect, || body(&mut line));
            // The body is an object: its fields join the envelope's.
            let fields = written.is_ok() && line.get(start) == Some(&b'{') && line.last() == Some(&b'}');
            if fields && line.len() - start > 2 {
                line[start] = b',';
                line.pop();
            } else {
                if !fields {
                    log::error!("a {} body did not serialize to an object", self.kind.name());
                }
                line.truncate(start);
            }
        }
        line.extend_from_slice(b"}\n");
        line
    }

    /// The body's fields as written for `dialect` (a JSON object; `{}` for
    /// none): with [`Outgoing::prewritten`], how a message travels to the
    /// other nodes of a cluster.
    pub fn body_json(&self, dialect: Dialect) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        match &self.body {
            Some(body) if with_dialect(dialect, || body(&mut out)).is_ok() => out,
            _ => b"{}".to_vec(),
        }
    }

    /// A message whose body was written elsewhere, once per dialect (see
    /// [`Outgoing::body_json`]).
    pub fn prewritten(kind: Kind, names: Vec<u8>, codes: Vec<u8>) -> Outgoing {
        Outgoing {
            kind,
            body: Some(Arc::new(move |out: &mut Vec<u8>| {
                out.extend_from_slice(match writing_dialect() {
                    Dialect::Names => &names,
                    Dialect::Codes => &codes,
                });
                Ok(())
            })),
            error: None,
        }
    }

    /// The message as a JSON value, as a connection of `dialect` reads it.
    pub fn to_value(&self, dialect: Dialect) -> serde_json::Value {
        serde_json::from_slice(&self.encode(dialect, None)).unwrap_or_default()
    }
}
