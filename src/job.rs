//! What the reactor and the workers send each other: jobs and their outcomes.
//!
//! A [`Job`] carries a decoded request with a snapshot of the connection's
//! session; the worker answers with an [`Outcome`]: the direct reply, the
//! pushes to fan out, and changes to connection state that only the reactor
//! may make (it owns the connections).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::disk::QuotaReservation;
use crate::protocol::{ErrorCode, Kind, Outgoing, Request};

/// Identifies a connection for as long as the server runs (never reused).
pub type ConnId = u64;

/// The `conn` of jobs the server makes itself (such as presence
/// announcements): no connection waits for their answer.
pub const NO_CONN: ConnId = 0;

/// Who a logged-in connection is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub user_id: i64,
    pub login: String,
    /// Hash of the token the connection logged in with, so that revoking that
    /// token logs out exactly the connections that use it.
    pub token_hash: [u8; 32],
}

/// A request on its way to a worker.
#[derive(Debug)]
pub struct Job {
    pub conn: ConnId,
    pub peer: IpAddr,
    pub session: Option<Session>,
    pub kind: Kind,
    pub request: Request,
}

/// A message for every online connection of some users.
#[derive(Debug)]
pub struct Push {
    /// The recipients, by user id (shared with the membership cache).
    pub to: Arc<Vec<i64>>,
    pub msg: Outgoing,
    /// When true this push is the request's answer: the requesting
    /// connection's copy carries the request's `req_id`.
    pub answers_request: bool,
}

impl Push {
    /// A push that is also the answer to the request that caused it.
    pub fn answer(to: Arc<Vec<i64>>, msg: Outgoing) -> Push {
        Push {
            to,
            msg,
            answers_request: true,
        }
    }

    /// A push caused by a request but not answering it.
    pub fn notice(to: Arc<Vec<i64>>, msg: Outgoing) -> Push {
        Push {
            to,
            msg,
            answers_request: false,
        }
    }
}

/// A token was revoked: every connection using it is told and logged out.
#[derive(Debug)]
pub struct Revoke {
    pub user_id: i64,
    pub token_hash: [u8; 32],
    /// What those connections (other than the requester) receive.
    pub notice: Outgoing,
}

/// A raw byte transfer the connection switches to after the reply.
#[derive(Debug)]
pub enum TransferStart {
    /// Receive `size` bytes into a new file, then store a file message.
    Upload {
        user_id: i64,
        room_id: i64,
        name: String,
        size: u64,
        /// The upload's share of the user's quota, held until it ends.
        reservation: QuotaReservation,
    },
    /// Send `size` bytes of the file at `path` once the client is ready.
    Download { path: PathBuf, size: u64 },
}

/// The result of one job.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The direct answer to the requesting connection.
    pub reply: Option<Outgoing>,
    /// Pushes to fan out, in order, after the reply.
    pub pushes: Vec<Push>,
    /// The requesting connection is now logged in as this session.
    pub log_in: Option<Session>,
    pub revoke: Option<Revoke>,
    /// The connection switches to a raw transfer after the reply.
    pub transfer: Option<TransferStart>,
    /// The connection is closed once its output is sent (a connection that
    /// was authorized only by a transfer's token, when the transfer ends).
    pub close_after: bool,
    /// The answer will come later from elsewhere (the message committer):
    /// the worker sends no completion for this job.
    pub deferred: bool,
}

impl Outcome {
    pub fn reply(msg: Outgoing) -> Outcome {
        Outcome {
            reply: Some(msg),
            ..Outcome::default()
        }
    }

    /// The job's completion will be sent by whoever finishes it.
    pub fn deferred() -> Outcome {
        Outcome {
            deferred: true,
            ..Outcome::default()
        }
    }

    pub fn pushes(pushes: Vec<Push>) -> Outcome {
        Outcome {
            pushes,
            ..Outcome::default()
        }
    }

    pub fn error(code: ErrorCode, msg: impl Into<String>, kind: Kind) -> Outcome {
        Outcome::reply(Outgoing::error(code, msg, Some(kind)))
    }
}

/// A finished job on its way back to the reactor.
#[derive(Debug)]
pub struct Completion {
    pub conn: ConnId,
    pub outcome: Outcome,
}
