//! Request handlers: one family of requests per file, no sockets anywhere.
//!
//! [`route`] says who serves a request: the reactor itself (pings), the
//! password-hashing pool, the read workers, or the one writer. [`handle`]
//! runs a read or a hashing job, [`handle_task`] a write; both check that
//! the connection may make the request, run the kind's handler, and turn a
//! refusal into an `RQ_ERROR_MSG` for the client (internal failures are
//! logged, and the client sees only `ER_INTERNAL`).

mod account;
mod conversation;
mod file;
mod friend;
mod mentions;
mod message;
mod room;
mod validate;

use std::net::IpAddr;

use crate::compat::Dialect;
use crate::error::{clip, Error, Result};
use crate::job::{ConnId, Job, Outcome, Session, Task};
use crate::protocol::{ErrorCode, Kind, Outgoing, Request};
use crate::shared::Shared;
use crate::store::Store;
use crate::throttle::{RateLimiter, UserRates};

/// What a handler works with.
pub struct Ctx<'a> {
    pub store: &'a mut Store,
    pub shared: &'a Shared,
    pub session: Option<&'a Session>,
    pub peer: IpAddr,
    /// The requesting connection (for answers the writer sends later).
    pub conn: ConnId,
    /// Stored files whose messages this request deleted: removed once committed.
    pub remove_files: Vec<String>,
    /// The requesting connection's dialect (names for the server's own tasks).
    pub dialect: Dialect,
}

impl Ctx<'_> {
    /// The logged-in session; `handle` has already refused anonymous callers
    /// of requests that need one, so this cannot fail for them.
    fn user(&self) -> Result<&Session> {
        self.session
            .ok_or_else(|| Error::client(ErrorCode::Unauthorized, "log in first"))
    }
}

/// Takes one of the user's tokens from the limiter `which` picks, or
/// refuses with ER_RATE_LIMITED and when to retry (`what` says what went
/// too fast). A user online on several nodes of a cluster has a share of
/// the allowance on each.
fn limit(shared: &Shared, which: fn(&UserRates) -> &RateLimiter, user_id: i64, what: &str) -> Result<()> {
    let nodes = shared.presence.nodes_online(user_id);
    which(&shared.rates)
        .check_share(user_id, nodes)
        .map_err(|refused| {
            if refused.first {
                log::info!("user {user_id} rate-limited: {what}");
            }
            Error::rate_limited(what, refused.retry_after)
        })
}

/// Periodic upkeep the reactor asks for: expired tokens go, and the disk's
/// ballast is put back once deletes made room.
fn maintenance(ctx: &mut Ctx) -> Result<Outcome> {
    ctx.shared.disk.ensure_ballast();
    account::purge_expired_tokens(ctx)?;
    message::expire(ctx)
}

/// Runs a write that frees space (deleting messages, histories, rooms). On
/// a full disk SQLite cannot even delete; then the ballast is released and
/// the write tried once more.
fn freeing_space<T>(ctx: &mut Ctx, mut write: impl FnMut(&mut Store) -> Result<T>) -> Result<T> {
    match write(ctx.store) {
        Err(Error::Db(e)) if e.is_disk_full() && ctx.shared.disk.release_ballast() => write(ctx.store),
        other => other,
    }
}

/// Requests a connection may make before it has logged in.
pub fn allowed_before_log_in(kind: Kind) -> bool {
    matches!(kind, Kind::SignUp | Kind::LogIn | Kind::Token | Kind::Ping)
}

/// Who serves a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// The reactor answers at once.
    Inline,
    /// The password-hashing pool (which hands the write to the writer).
    Auth,
    /// Any read worker: it reads and never writes.
    Read,
    /// The one writer, in arrival order.
    Write,
}

/// Who serves each kind of request. Every kind is listed, so a new one
/// cannot be added without deciding.
pub fn route(kind: Kind) -> Route {
    use Kind::*;
    match kind {
        Ping => Route::Inline,
        SignUp | LogIn => Route::Auth,
        MemberInfo | GetRooms | SearchCh | GetMembers | GetNewMsgs | OldMsgs | SearchMsgs | GetFriends
        | UploadFile | DownloadFile | ReadyRead | GetMentions | GetPins | Typing => Route::Read,
        Token | LogOut | UpdUserDesc | UpdUserName | NewRoom | JoinRoom | AddMember | LeaveRoom | DelRoom
        | UpdRoomName | UpdRoomDesc | SetRole | BanMember | UnbanMember | Msg | EditMsg | DelMsg
        | DelHist | MarkRead | AddFriend | DelFriend | OpenDm | React | Pin => Route::Write,
        // Only the server sends these; decoding refuses them.
        ErrorMsg | UpdRoomPowr | NewMember | Presence => Route::Read,
    }
}

/// Whether a write must run in a transaction of its own rather than in a
/// batch: writes that free space (on a full disk they release the ballast
/// and try again, which needs their own commit), and the upkeep that puts
/// the ballast back.
pub fn runs_alone(task: &Task) -> bool {
    match task {
        Task::Request(job) => matches!(job.kind, Kind::DelMsg | Kind::DelHist | Kind::DelRoom),
        Task::Maintenance => true,
        _ => false,
    }
}

/// Turns a handler's result into the outcome the client sees.
fn finish(result: Result<Outcome>, ctx: Ctx, kind: Kind) -> Outcome {
    let conn = ctx.conn;
    let remove_files = ctx.remove_files;
    match result {
        Ok(mut outcome) => {
            outcome.remove_files = remove_files;
            outcome
        }
        Err(err) => {
            if matches!(err, Error::Client { .. } | Error::Limited { .. }) {
                log::debug!(
                    "{} from conn {conn} refused: {}",
                    kind.name(),
                    clip(&err.to_string())
                );
            } else {
                log::error!("{} from conn {conn} failed: {err}", kind.name());
            }
            Outcome::reply(err.to_outgoing(Some(kind)))
        }
    }
}

/// Runs one read or hashing job to its outcome.
pub fn handle(job: Job, store: &mut Store, shared: &Shared) -> Outcome {
    run(job, store, shared)
}

/// Runs one write (in the writer's batch, or alone) to its outcome.
pub fn handle_task(task: Task, store: &mut Store, shared: &Shared) -> Outcome {
    let kind = task.kind();
    let mut ctx = Ctx {
        store,
        shared,
        session: None,
        peer: std::net::Ipv4Addr::UNSPECIFIED.into(),
        conn: task.conn(),
        remove_files: Vec::new(),
        dialect: Dialect::Names,
    };
    let result = match task {
        Task::Request(job) => return run(job, ctx.store, shared),
        Task::CreateAccount(account) => {
            ctx.peer = account.peer;
            account::create_account(&mut ctx, account)
        }
        Task::IssueToken { peer, user, .. } => {
            ctx.peer = peer;
            account::issue_token(&mut ctx, user)
        }
        Task::Presence { user_id, online } => friend::announce_presence(&mut ctx, user_id, online),
        Task::StoreUpload { upload, .. } => file::store_upload(&mut ctx, upload),
        Task::Maintenance => maintenance(&mut ctx),
        Task::FillGap(gap) => message::fill_gap(&mut ctx, gap),
        Task::RoomTails { after_id } => message::room_tails(&mut ctx, after_id),
        // The writer answers these itself (it indexes for search).
        Task::IndexSearch(_) | Task::Stop => Ok(Outcome::default()),
    };
    finish(result, ctx, kind)
}

fn run(job: Job, store: &mut Store, shared: &Shared) -> Outcome {
    let kind = job.kind;
    // Transfers may be authorized by their own token.
    let authorized_otherwise = match &job.request {
        Request::UploadFile(r) => r.token.is_some(),
        Request::DownloadFile(r) => r.token.is_some(),
        _ => false,
    };
    if job.session.is_none() && !allowed_before_log_in(kind) && !authorized_otherwise {
        return Outcome::error(ErrorCode::Unauthorized, "log in first", kind);
    }
    let mut ctx = Ctx {
        store,
        shared,
        session: job.session.as_ref(),
        peer: job.peer,
        conn: job.conn,
        remove_files: Vec::new(),
        dialect: job.dialect,
    };
    let result = match job.request {
        Request::SignUp(r) => account::sign_up(&mut ctx, r),
        Request::LogIn(r) => account::log_in(&mut ctx, r),
        Request::Token(r) => account::resume(&mut ctx, r),
        Request::LogOut(r) => account::log_out(&mut ctx, r),
        Request::UpdUserDesc(r) => account::update_desc(&mut ctx, r),
        Request::UpdUserName(r) => account::update_name(&mut ctx, r),
        Request::MemberInfo(r) => account::member_info(&mut ctx, r),
        Request::Ping => Ok(Outcome::reply(Outgoing::empty(Kind::Ping))),
        Request::NewRoom(r) => room::new_room(&mut ctx, r),
        Request::GetRooms(r) => room::get_rooms(&mut ctx, r),
        Request::JoinRoom(r) => room::join_room(&mut ctx, r),
        Request::AddMember(r) => room::add_member(&mut ctx, r),
        Request::LeaveRoom(r) => room::leave_room(&mut ctx, r),
        Request::DelRoom(r) => room::del_room(&mut ctx, r),
        Request::UpdRoomName(r) => room::update_name(&mut ctx, r),
        Request::UpdRoomDesc(r) => room::update_desc(&mut ctx, r),
        Request::SearchCh(r) => room::search(&mut ctx, r),
        Request::GetMembers(r) => room::members(&mut ctx, r),
        Request::SetRole(r) => room::set_role(&mut ctx, r),
        Request::BanMember(r) => room::ban(&mut ctx, r),
        Request::UnbanMember(r) => room::unban(&mut ctx, r),
        Request::Msg(r) => message::send(&mut ctx, r),
        Request::EditMsg(r) => message::edit(&mut ctx, r),
        Request::DelMsg(r) => message::delete(&mut ctx, r),
        Request::DelHist(r) => message::clear_history(&mut ctx, r),
        Request::GetNewMsgs(r) => message::get_new(&mut ctx, r),
        Request::OldMsgs(r) => message::get_old(&mut ctx, r),
        Request::SearchMsgs(r) => message::search(&mut ctx, r),
        Request::MarkRead(r) => message::mark_read(&mut ctx, r),
        Request::AddFriend(r) => friend::add_friend(&mut ctx, r),
        Request::DelFriend(r) => friend::del_friend(&mut ctx, r),
        Request::GetFriends => friend::get_friends(&mut ctx),
        Request::OpenDm(r) => friend::open_dm(&mut ctx, r),
        Request::UploadFile(r) => file::upload(&mut ctx, r),
        Request::DownloadFile(r) => file::download(&mut ctx, r),
        Request::ReadyRead => file::stray_ready_read(),
        Request::React(r) => conversation::react(&mut ctx, r),
        Request::GetMentions(r) => conversation::get_mentions(&mut ctx, r),
        Request::Typing(r) => conversation::typing(&mut ctx, r),
        Request::Pin(r) => conversation::pin(&mut ctx, r),
        Request::GetPins(r) => conversation::get_pins(&mut ctx, r),
    };
    finish(result, ctx, kind)
}
