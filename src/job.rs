//! What the reactor, the workers and the writer send each other.
//!
//! A [`Job`] carries a decoded request with a snapshot of the connection's
//! session. Reads go to the worker pool, sign-ups and log-ins to the hashing
//! pool, and every write to the one writer as a [`Task`] (with the writes
//! the server makes itself). Each is answered with an [`Outcome`]: the
//! direct reply, the pushes to fan out, and changes to connection state that
//! only the reactor may make (it owns the connections).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::compat::Dialect;
use crate::disk::QuotaReservation;
use crate::error::Error;
use crate::model::{RoomTail, User};
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
    /// The connection's dialect (some old-client rules depend on it).
    pub dialect: Dialect,
    pub kind: Kind,
    pub request: Request,
}

/// A write for the writer thread, which runs them one at a time in arrival
/// order and answers in commit order.
#[derive(Debug)]
pub enum Task {
    /// A client's write request.
    Request(Job),
    /// A sign-up whose password an auth thread has hashed: create the account.
    CreateAccount(NewAccount),
    /// A log-in whose password an auth thread has verified: issue a token.
    IssueToken { conn: ConnId, peer: IpAddr, user: User },
    /// A user's first connection logged in or last one went: tell friends.
    Presence { user_id: i64, online: bool },
    /// An upload is on disk: store its message.
    StoreUpload { conn: ConnId, upload: StoreUpload },
    /// Periodic upkeep: expired tokens go, the disk's ballast comes back.
    Maintenance,
    /// Stored messages of a room that this node of a cluster did not hear
    /// of: read them from the store for delivery in their place.
    FillGap(Gap),
    /// Which rooms have messages with ids above this: a cluster node's way
    /// to see a room's last message whose bus copy was lost.
    RoomTails { after_id: i64 },
    /// A search is about to run: index every stored message now, then say
    /// so on the channel (see [`WriteQueue::catch_up_search`]).
    IndexSearch(Sender<()>),
    /// Finish what is queued before this and stop.
    Stop,
}

impl Task {
    /// The connection waiting for this task's answer ([`NO_CONN`] if none).
    pub fn conn(&self) -> ConnId {
        match self {
            Task::Request(job) => job.conn,
            Task::CreateAccount(account) => account.conn,
            Task::IssueToken { conn, .. } | Task::StoreUpload { conn, .. } => *conn,
            Task::Presence { .. }
            | Task::Maintenance
            | Task::FillGap(_)
            | Task::RoomTails { .. }
            | Task::IndexSearch(_)
            | Task::Stop => NO_CONN,
        }
    }

    /// What the task answers, for replies and logs.
    pub fn kind(&self) -> Kind {
        match self {
            Task::Request(job) => job.kind,
            Task::CreateAccount(_) => Kind::SignUp,
            Task::IssueToken { .. } => Kind::LogIn,
            Task::Presence { .. } => Kind::Presence,
            Task::StoreUpload { .. } => Kind::UploadFile,
            Task::IndexSearch(_) => Kind::SearchMsgs,
            Task::FillGap(_) | Task::RoomTails { .. } => Kind::Msg,
            Task::Maintenance | Task::Stop => Kind::Token,
        }
    }
}

/// An account to create, its password already hashed.
#[derive(Debug)]
pub struct NewAccount {
    pub conn: ConnId,
    pub peer: IpAddr,
    pub login: String,
    pub name: String,
    pub desc: String,
    pub pass_hash: String,
}

/// An upload that is on disk under `stored_name`, waiting for its message.
#[derive(Debug)]
pub struct StoreUpload {
    pub user_id: i64,
    pub room_id: i64,
    pub name: String,
    pub size: i64,
    pub stored_name: String,
}

/// The writer's second queue: the writes the server makes itself
/// (presence, uploads' messages, upkeep), the accounts and tokens of the
/// hashing threads, and the read workers' requests that search catch up.
/// It has no bound of its own because its senders are bounded: presence is
/// coalesced per user, uploads by connections, and each hashing thread and
/// read worker waits for its answer. It never takes a client's place
/// in the bounded queue of client writes.
#[derive(Clone)]
pub struct WriteQueue {
    tasks: Sender<Task>,
}

impl WriteQueue {
    pub fn new(tasks: Sender<Task>) -> WriteQueue {
        WriteQueue { tasks }
    }

    /// Queues a task (never waits).
    pub fn submit(&self, task: Task) -> Result<(), Error> {
        self.tasks
            .send(task)
            .map_err(|_| Error::Internal("the writer has stopped".into()))
    }

    /// Asks the writer to index every stored message for search and waits
    /// for it, at most `wait`: so a search finds every message acknowledged
    /// before it. False if the writer did not answer in time.
    pub fn catch_up_search(&self, wait: Duration) -> bool {
        let (done, finished) = crossbeam_channel::bounded(1);
        self.tasks.send(Task::IndexSearch(done)).is_ok() && finished.recv_timeout(wait).is_ok()
    }

    /// Asks the writer to finish what is queued and stop.
    pub fn stop(&self) {
        let _ = self.tasks.send(Task::Stop);
    }
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
    /// For a stored message: its room and number there. The nodes of a
    /// cluster deliver a room's messages in that order.
    pub order: Option<RoomOrder>,
    /// For this node's connections only: the nodes of a cluster each tell
    /// their own (presence, which each node judges from all of them).
    pub this_node_only: bool,
}

/// A stored message's place in its room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoomOrder {
    pub room_id: i64,
    /// The room's message number (`Stored::seq`).
    pub seq: i64,
}

impl Push {
    /// A push that is also the answer to the request that caused it.
    pub fn answer(to: Arc<Vec<i64>>, msg: Outgoing) -> Push {
        Push {
            to,
            msg,
            answers_request: true,
            order: None,
            this_node_only: false,
        }
    }

    /// A push caused by a request but not answering it.
    pub fn notice(to: Arc<Vec<i64>>, msg: Outgoing) -> Push {
        Push {
            to,
            msg,
            answers_request: false,
            order: None,
            this_node_only: false,
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
    /// The answer will come later from the writer, which the job was handed
    /// to: the hashing thread sends no completion for it.
    pub deferred: bool,
    /// Stored files to remove once the write that dropped their messages
    /// is committed.
    pub remove_files: Vec<String>,
    /// The upkeep has more to do: ask for it again soon.
    pub again: bool,
    /// What the store told of rooms' messages, for the cluster's order.
    pub rooms_news: Option<RoomsNews>,
}

/// The store's answers a cluster node asks for its rooms' order.
#[derive(Debug)]
pub enum RoomsNews {
    /// A gap in a room's messages, read from the store (`Task::FillGap`).
    Filled(FilledGap),
    /// The rooms with new messages (`Task::RoomTails`).
    Tails(Vec<RoomTail>),
}

/// Messages a room is missing on this node of a cluster: numbered `after`
/// < seq < `before`, with ids above `after_id` (see `cluster::sequencer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    pub room_id: i64,
    pub after: i64,
    pub before: i64,
    pub after_id: i64,
}

/// The messages the store still has of a gap, as pushes in their order.
#[derive(Debug)]
pub struct FilledGap {
    pub gap: Gap,
    pub pushes: Vec<Push>,
}

impl Outcome {
    pub fn reply(msg: Outgoing) -> Outcome {
        Outcome {
            reply: Some(msg),
            ..Outcome::default()
        }
    }

    /// The job's completion will be sent by the writer.
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
