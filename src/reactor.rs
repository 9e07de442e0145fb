//! The reactor: one thread that owns the listener and every socket.
//!
//! It accepts connections, reads and splits lines, decodes requests, hands
//! them to the workers over a bounded channel, and writes replies and pushes
//! when the workers' completions come back (a `mio::Waker` wakes it). It
//! never blocks: a full job queue answers ER_BUSY, a client with a request in
//! flight is not read from beyond a bound, and a client that does not read
//! its pushes is cut off once its output buffer is over the limit.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::event::Event;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};

use crate::admission::{AnonymousConns, Eviction};
use crate::compat;
use crate::conn::{Conn, InFlight, ReadStatus};
use crate::files::{self, FileEvent, FileTask};
use crate::framing::Frame;
use crate::handler::{route, Route};
use crate::job::{
    Completion, ConnId, Job, Outcome, Push, Revoke, Session, StoreUpload, Task, TransferStart, WriteQueue,
    NO_CONN,
};
use crate::presence::{Presence, PresenceCoalescer};
use crate::protocol::{self, ErrorCode, Kind, Outgoing, ReqId, Request};
use crate::throttle::{AuthAttempt, AuthGate, AuthRates};
use crate::transfer::{Download, Mode, Upload, CHUNK};

pub const LISTENER: Token = Token(0);
pub const WAKER: Token = Token(1);
/// Connection tokens start here and are never reused.
const FIRST_CONN_TOKEN: usize = 2;

/// Read-and-dispatch rounds one connection gets before others have a turn.
const SERVICE_ROUNDS: usize = 16;

/// Lines one connection may have taken off per turn: requests, pings answered
/// inline, bad lines and empty lines alike (a flood of bare `\n` or of pings
/// must cost its sender, not everyone).
const TURN_LINES: usize = 256;
/// Bytes one connection may have read per turn.
const TURN_BYTES: usize = 256 * 1024;

/// What one connection may still do in its current turn.
struct TurnBudget {
    lines: usize,
    bytes: usize,
}

impl TurnBudget {
    fn new() -> TurnBudget {
        TurnBudget {
            lines: TURN_LINES,
            bytes: TURN_BYTES,
        }
    }

    fn spent(&self) -> bool {
        self.lines == 0 || self.bytes == 0
    }
}

/// How long a shutdown waits for in-flight requests and unsent replies.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The limits the reactor enforces, from the configuration.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_line_bytes: usize,
    pub max_outbound_bytes: usize,
    pub max_connections: usize,
    pub login_timeout: Duration,
    /// Connections not logged in, in all.
    pub max_anonymous: usize,
    /// Connections not logged in, per source address (IPv6: per /64).
    pub max_anonymous_per_addr: usize,
    /// Sign-ups and password log-ins admitted per address and in all.
    pub auth_rates: AuthRates,
    /// A transfer moving no byte for this long is abandoned.
    pub transfer_idle: Duration,
}

impl Limits {
    /// While a request is in flight, reading stops once this much is buffered.
    fn read_pause_bytes(&self) -> usize {
        2 * self.max_line_bytes + 2
    }
}

/// Asks a running reactor to shut down gracefully; cheap to clone.
#[derive(Clone)]
pub struct ShutdownHandle {
    pub(crate) flag: Arc<AtomicBool>,
    pub(crate) waker: Arc<mio::Waker>,
}

impl ShutdownHandle {
    /// Stop accepting, finish in-flight requests, flush replies, return from `run`.
    pub fn shutdown(&self) {
        self.flag.store(true, Ordering::SeqCst);
        if let Err(e) = self.waker.wake() {
            log::error!("waking the reactor for shutdown failed: {e}");
        }
    }
}

/// The channels between the reactor and the other threads.
pub struct Links {
    /// Reads: served by the worker pool.
    pub jobs: Sender<Job>,
    /// Writes: served by the one writer, in order.
    pub writes: Sender<Task>,
    /// The writer's queue for the server's own writes.
    pub own_writes: WriteQueue,
    /// Sign-ups and log-ins: served by the password-hashing threads.
    pub auth_jobs: Sender<Job>,
    pub done: Receiver<Completion>,
    pub file_tasks: Sender<FileTask>,
    pub file_events: Receiver<FileEvent>,
}

/// What an upload starts with.
struct NewUpload {
    user_id: i64,
    room_id: i64,
    name: String,
    size: u64,
    reservation: crate::disk::QuotaReservation,
}

/// An upload whose client closed right after its last byte (as old clients
/// do): it is stored all the same.
struct OrphanUpload {
    upload: Upload,
}

pub struct Reactor {
    poll: Poll,
    listener: Option<TcpListener>,
    conns: HashMap<Token, Conn>,
    next_token: usize,
    /// Logged-in connections of each user: where pushes for a user go.
    by_user: HashMap<i64, Vec<Token>>,
    jobs: Sender<Job>,
    writes: Sender<Task>,
    /// The writer's queue for the server's own writes (presence, uploads'
    /// messages, upkeep): they take no client's place in `writes`.
    own_writes: WriteQueue,
    auth_jobs: Sender<Job>,
    /// Admits sign-ups and log-ins before they cost a hash.
    auth_gate: AuthGate,
    done: Receiver<Completion>,
    presence: Arc<Presence>,
    /// When each unauthenticated connection must have logged in, oldest first
    /// (the timeout is constant, so pushing at the back keeps it sorted).
    login_deadlines: VecDeque<(Instant, Token)>,
    /// Jobs sent to workers whose completions have not come back.
    jobs_out: usize,
    shutdown: Arc<AtomicBool>,
    /// Set once shutdown began: the moment it gives up waiting.
    draining_until: Option<Instant>,
    limits: Limits,
    /// Connections that used up their turn with work left, served next pass.
    ready: Vec<Token>,
    file_tasks: Sender<FileTask>,
    file_events: Receiver<FileEvent>,
    /// Tasks for the file thread not yet accepted by its channel, in order.
    file_backlog: VecDeque<FileTask>,
    /// The connection of each transfer under way.
    transfers: HashMap<u64, Token>,
    orphan_uploads: HashMap<u64, OrphanUpload>,
    next_transfer: u64,
    files_dir: PathBuf,
    /// Every socket read lands here first; allocated once.
    scratch: Vec<u8>,
    /// Connections not logged in, capped per address and in all.
    anonymous: AnonymousConns,
    /// Accepting failed for lack of file descriptors: try again at this time
    /// (the listener will not signal again for connections already waiting).
    accept_retry_at: Option<Instant>,
    /// A descriptor held in reserve: given up to accept and close one waiting
    /// client when the process is out of descriptors, so it is told at once.
    reserve_fd: Option<std::fs::File>,
    /// When running out of descriptors was last reported.
    fd_warned_at: Option<Instant>,
    /// When to ask a worker for its periodic upkeep next.
    next_maintenance: Instant,
    /// Presence announcements, at most one a second per user.
    presence_out: PresenceCoalescer,
}

/// How often the workers do their upkeep (expired tokens, the disk's ballast).
const MAINTENANCE_EVERY: Duration = Duration::from_secs(600);

/// The shortest time between two reports of running out of descriptors.
const FD_WARNING_EVERY: Duration = Duration::from_secs(60);

/// How long accepting pauses after running out of file descriptors.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

fn open_reserve_fd() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

/// Whether an accept error means the process or system is out of
/// descriptors (or of the memory sockets need).
fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

fn conn_id(token: Token) -> ConnId {
    token.0 as ConnId
}

impl Reactor {
    pub fn new(
        poll: Poll,
        mut listener: TcpListener,
        links: Links,
        presence: Arc<Presence>,
        shutdown: Arc<AtomicBool>,
        limits: Limits,
        files_dir: PathBuf,
    ) -> io::Result<Reactor> {
        let Links {
            jobs,
            writes,
            own_writes,
            auth_jobs,
            done,
            file_tasks,
            file_events,
        } = links;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Reactor {
            poll,
            listener: Some(listener),
            conns: HashMap::new(),
            next_token: FIRST_CONN_TOKEN,
            by_user: HashMap::new(),
            jobs,
            writes,
            own_writes,
            auth_jobs,
            auth_gate: AuthGate::new(limits.auth_rates),
            anonymous: AnonymousConns::new(limits.max_anonymous_per_addr, limits.max_anonymous),
            done,
            presence,
            login_deadlines: VecDeque::new(),
            jobs_out: 0,
            shutdown,
            draining_until: None,
            limits,
            ready: Vec::new(),
            file_tasks,
            file_events,
            file_backlog: VecDeque::new(),
            transfers: HashMap::new(),
            orphan_uploads: HashMap::new(),
            next_transfer: 1,
            files_dir,
            scratch: vec![0; crate::conn::READ_CHUNK],
            accept_retry_at: None,
            reserve_fd: open_reserve_fd(),
            fd_warned_at: None,
            next_maintenance: Instant::now() + Duration::from_secs(5),
            presence_out: PresenceCoalescer::default(),
        })
    }

    /// Runs until a graceful shutdown has finished. Errors only if polling fails.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.next_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    token => self.conn_event(token, event),
                }
            }
            // After the events: connections that closed have freed their descriptors.
            if self.accept_retry_at.is_some_and(|t| Instant::now() >= t) {
                self.accept_retry_at = None;
                self.accept();
            }
            // Completions are drained on every pass: wakes can merge.
            self.drain_completions();
            self.drain_file_events();
            // A connection may have used up several turns this pass (its
            // event, a completion): it comes back once, not once per turn.
            let mut ready = std::mem::take(&mut self.ready);
            ready.sort_unstable();
            ready.dedup();
            for token in ready {
                self.service(token);
            }
            self.expire_transfers();
            self.flush_file_backlog();
            self.maybe_run_maintenance();
            self.flush_presence();
            if self.shutdown.load(Ordering::SeqCst) && self.draining_until.is_none() {
                self.begin_drain();
            }
            self.expire_logins();
            if let Some(until) = self.draining_until {
                let flushed = self.conns.values().all(|c| c.pending_out() == 0);
                if (self.jobs_out == 0 && flushed) || Instant::now() >= until {
                    log::info!(
                        "shutdown: {} connections closed, {} requests unfinished",
                        self.conns.len(),
                        self.jobs_out
                    );
                    return Ok(());
                }
            }
        }
    }

    fn next_timeout(&self) -> Option<Duration> {
        if !self.ready.is_empty() {
            return Some(Duration::ZERO);
        }
        let now = Instant::now();
        let login = self.login_deadlines.front().map(|(t, _)| *t);
        // While draining, poll often so the end condition is checked.
        let drain = self.draining_until.map(|_| now + Duration::from_millis(50));
        // Transfers are checked for idleness a few times a second, and a
        // file-thread backlog is retried soon.
        let transfers = (!self.transfers.is_empty() || !self.file_backlog.is_empty())
            .then(|| now + Duration::from_millis(100));
        let purge = Some(self.next_maintenance);
        let presence = self.presence_out.next_due();
        [login, drain, transfers, self.accept_retry_at, purge, presence]
            .into_iter()
            .flatten()
            .min()
            .map(|t| t.saturating_duration_since(now))
    }

    /// Every [`MAINTENANCE_EVERY`], a worker deletes expired tokens and
    /// puts the disk's ballast back if deletes made room.
    fn maybe_run_maintenance(&mut self) {
        let now = Instant::now();
        if now < self.next_maintenance || self.draining_until.is_some() {
            return;
        }
        self.next_maintenance = now + MAINTENANCE_EVERY;
        self.write(Task::Maintenance);
    }

    /// Hands one of the server's own writes to the writer.
    fn write(&mut self, task: Task) {
        match self.own_writes.submit(task) {
            Ok(()) => self.jobs_out += 1,
            Err(e) => log::error!("a write of the server's own was dropped: {e}"),
        }
    }

    fn begin_drain(&mut self) {
        log::info!(
            "shutdown requested: no longer accepting; finishing {} requests",
            self.jobs_out
        );
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.draining_until = Some(Instant::now() + DRAIN_TIMEOUT);
    }

    fn accept(&mut self) {
        loop {
            let Some(listener) = &self.listener else { return };
            let (socket, peer) = match listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_out_of_descriptors(&e) => {
                    self.out_of_descriptors(&e);
                    return;
                }
                Err(e) => {
                    // Errors of one connection (ECONNABORTED and the like).
                    log::debug!("accepting a connection failed: {e}");
                    continue;
                }
            };
            if self.conns.len() >= self.limits.max_connections {
                log::warn!(
                    "refused {peer}: connection limit of {} reached",
                    self.limits.max_connections
                );
                continue;
            }
            self.add_conn(socket, peer);
        }
    }

    /// Takes on an accepted connection.
    fn add_conn(&mut self, mut socket: mio::net::TcpStream, peer: std::net::SocketAddr) {
        let token = Token(self.next_token);
        self.next_token += 1;
        if let Err(e) = socket.set_nodelay(true) {
            log::debug!("set_nodelay for {peer}: {e}");
        }
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut socket, token, Interest::READABLE)
        {
            log::error!("registering connection from {peer} failed: {e}");
            return;
        }
        let mut conn = Conn::new(socket, peer, self.limits.max_line_bytes);
        conn.registered = Some(Interest::READABLE);
        self.conns.insert(token, conn);
        self.login_deadlines
            .push_back((Instant::now() + self.limits.login_timeout, token));
        log::debug!("conn {} opened from {peer}", token.0);
        self.count_anonymous(token);
        if self.conns.contains_key(&token) {
            // Data may already be waiting; edge-triggered readiness for it
            // may have fired before registration.
            self.service(token);
        }
    }

    /// Out of file descriptors: the waiting clients stay queued and the
    /// listener will not signal for them again, so accepting resumes on a
    /// timer. Meanwhile the reserve descriptor is given up to accept one
    /// waiting client: it takes the place of the oldest idle connection that
    /// has not logged in, if there is one, and is closed at once if not (so
    /// it is told, rather than left hanging).
    fn out_of_descriptors(&mut self, e: &io::Error) {
        // A shortage comes and goes as connections close and others wait:
        // it is reported at most once a minute.
        if self.fd_warned_at.is_none_or(|t| t.elapsed() >= FD_WARNING_EVERY) {
            self.fd_warned_at = Some(Instant::now());
            log::warn!("out of file descriptors ({e}); refusing new connections until some close");
        }
        self.accept_retry_at = Some(Instant::now() + ACCEPT_RETRY);
        let Some(reserve) = self.reserve_fd.take() else {
            self.reserve_fd = open_reserve_fd();
            return;
        };
        drop(reserve);
        let accepted = match &self.listener {
            Some(listener) => listener.accept().ok(),
            None => None,
        };
        if let Some((socket, peer)) = accepted {
            let conns = &self.conns;
            let oldest = self
                .anonymous
                .oldest_idle(|key| conns.get(&Token(key)).is_some_and(Conn::is_idle_anonymous));
            match oldest {
                Some(old) => {
                    self.close_quietly(Token(old), "out of file descriptors: making room", false);
                    self.add_conn(socket, peer);
                }
                None => drop(socket),
            }
        }
        self.reserve_fd = open_reserve_fd();
    }

    /// Counts a connection that is not logged in; at a cap, the oldest idle
    /// anonymous connection of its address (or of all) is closed for it.
    fn count_anonymous(&mut self, token: Token) {
        let Some(peer) = self.conns.get(&token).map(|c| c.peer) else {
            return;
        };
        let conns = &self.conns;
        let eviction = self.anonymous.admit(token.0, peer.ip(), |key| {
            conns.get(&Token(key)).is_some_and(Conn::is_idle_anonymous)
        });
        match eviction {
            None => {}
            Some(Eviction::AddrFull { conn, addr, first }) => {
                let cap = self.limits.max_anonymous_per_addr;
                if first {
                    log::warn!("{addr} holds {cap} connections that have not logged in; closing the oldest for each new one");
                }
                self.close_quietly(
                    Token(conn),
                    "too many connections not logged in from its address",
                    first,
                );
            }
            Some(Eviction::TotalFull { conn, first }) => {
                let cap = self.limits.max_anonymous;
                if first {
                    log::warn!("{cap} connections have not logged in; closing the oldest for each new one");
                }
                self.close_quietly(Token(conn), "too many connections not logged in", first);
            }
        }
    }

    fn conn_event(&mut self, token: Token, _event: &Event) {
        if self.conns.contains_key(&token) {
            self.service(token);
        }
    }

    /// Writes, dispatches and reads one connection until it makes no more
    /// progress or has used its turn; then flushes and re-registers it.
    fn service(&mut self, token: Token) {
        let pause_at = self.limits.read_pause_bytes();
        let max_out = self.limits.max_outbound_bytes;
        let mut rounds = 0;
        let mut budget = TurnBudget::new();
        loop {
            let Some(conn) = self.conns.get_mut(&token) else {
                return;
            };
            if let Err(e) = conn.flush() {
                self.close(token, &format!("write error: {e}"));
                return;
            }
            let buffered_before = conn.reader.buffered();
            self.dispatch_lines(token, &mut budget);
            self.pump_upload(token);
            if budget.spent() {
                // Its turn is over; come back after the others had theirs.
                self.ready.push(token);
                break;
            }
            let draining = self.draining_until.is_some();
            let Some(conn) = self.conns.get_mut(&token) else {
                return;
            };
            let mut progressed = conn.reader.buffered() != buffered_before;
            if !draining && wants_read(conn, max_out, pause_at) {
                let limit = pause_at.min(conn.reader.buffered() + budget.bytes);
                match conn.read_available(limit, &mut self.scratch) {
                    Ok((_, ReadStatus::Closed)) => {
                        conn.peer_closed = true;
                        progressed = true;
                    }
                    Ok((n, ReadStatus::Open)) => {
                        budget.bytes = budget.bytes.saturating_sub(n);
                        progressed |= n > 0;
                    }
                    Err(e) => {
                        self.close(token, &format!("read error: {e}"));
                        return;
                    }
                }
            }
            if !progressed {
                break;
            }
            rounds += 1;
            if rounds == SERVICE_ROUNDS {
                // Its turn is over; come back after the others had theirs.
                // Edge-triggered readiness would not remind us of it.
                self.ready.push(token);
                break;
            }
        }
        self.finish_service(token);
    }

    /// Flushes output, closes a connection that is done, updates its interest.
    fn finish_service(&mut self, token: Token) {
        let max_out = self.limits.max_outbound_bytes;
        let pause_at = self.limits.read_pause_bytes();
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if let Some(reason) = conn.doomed.take() {
            self.close(token, &reason);
            return;
        }
        if let Err(e) = conn.flush() {
            self.close(token, &format!("write error: {e}"));
            return;
        }
        let pending_out = conn.pending_out();
        if let Mode::Download(d) = &mut conn.mode {
            if d.wants_chunk(pending_out) {
                let len = d.next_chunk_len();
                d.requested += len as u64;
                self.file_backlog.push_back(FileTask::Read { id: d.id, len });
            }
        }
        if conn.close_when_flushed && conn.pending_out() == 0 {
            self.close(token, "transfer finished");
            return;
        }
        if conn.peer_closed {
            if let Mode::Upload(u) = &conn.mode {
                if u.remaining() > 0 {
                    let msg = format!("upload cut short after {} of {} bytes", u.handed, u.size);
                    self.close(token, &msg);
                    return;
                }
            }
        }
        if conn.peer_closed && conn.in_flight.is_none() && conn.pending_out() == 0 {
            self.close(token, "closed by peer");
            return;
        }
        let wanted = conn.interest(!conn.peer_closed && wants_read(conn, max_out, pause_at));
        if wanted != conn.registered {
            let registry = self.poll.registry();
            let result = match (conn.registered, wanted) {
                (None, Some(i)) => registry.register(&mut conn.socket, token, i),
                (Some(_), Some(i)) => registry.reregister(&mut conn.socket, token, i),
                (Some(_), None) => registry.deregister(&mut conn.socket),
                (None, None) => Ok(()),
            };
            if let Err(e) = result {
                self.close(token, &format!("poll registration failed: {e}"));
                return;
            }
            conn.registered = wanted;
        }
    }

    /// Takes complete lines off a connection while it has no request in flight.
    fn dispatch_lines(&mut self, token: Token, budget: &mut TurnBudget) {
        while self.draining_until.is_none() && budget.lines > 0 {
            let Some(mut conn) = self.conns.get_mut(&token) else {
                return;
            };
            if conn.in_flight.is_some()
                || conn.pending_out() >= self.limits.max_outbound_bytes
                || conn.close_when_flushed
                || matches!(conn.mode, Mode::Upload(_) | Mode::Download(_))
            {
                return;
            }
            let Some(frame) = conn.reader.next_frame() else {
                return;
            };
            budget.lines -= 1;
            let line = match frame {
                Frame::TooLarge => {
                    let msg = format!("line longer than {} bytes", self.limits.max_line_bytes);
                    conn.reply(&Outgoing::error(ErrorCode::TooLarge, msg, None), None);
                    continue;
                }
                Frame::Line(line) => line,
            };
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let env = match protocol::decode(&line) {
                Ok(env) => env,
                Err(err) => {
                    if conn.dialect.is_none() {
                        conn.dialect = err.type_was_code.map(compat::dialect_for_first_request);
                    }
                    let msg = Outgoing::error(err.code, err.msg, err.kind);
                    conn.reply(&msg, err.req_id.as_ref());
                    continue;
                }
            };
            if let Mode::AwaitReady(_) = conn.mode {
                if let Request::ReadyRead = env.request {
                    if let Mode::AwaitReady(d) = std::mem::take(&mut conn.mode) {
                        conn.mode = Mode::Download(d);
                    }
                    return;
                }
                // Anything else gives up the offered download, then is served.
                self.end_download(token);
                let Some(again) = self.conns.get_mut(&token) else {
                    return;
                };
                conn = again;
            }
            conn.dialect
                .get_or_insert(compat::dialect_for_first_request(env.type_was_code));
            if env.kind.code() >= compat::FIRST_PARLEY_CODE {
                conn.used_parley_codes = true;
            }
            if let Request::Ping = env.request {
                conn.reply(&Outgoing::empty(Kind::Ping), env.req_id.as_ref());
                continue;
            }
            let route = route(env.kind);
            if route == Route::Auth {
                let attempt = match env.kind {
                    Kind::SignUp => AuthAttempt::SignUp,
                    _ => AuthAttempt::LogIn,
                };
                if let Err(refused) = self.auth_gate.admit(attempt, conn.peer.ip()) {
                    if refused.first {
                        log::warn!(
                            "{} from {} rate-limited for {:.1} s",
                            env.kind.name(),
                            conn.peer.ip(),
                            refused.retry_after.as_secs_f64()
                        );
                    }
                    let what = match attempt {
                        AuthAttempt::SignUp => "too many sign-ups from your address",
                        AuthAttempt::LogIn => "too many log-ins from your address",
                    };
                    let err = crate::error::Error::rate_limited(what, refused.retry_after);
                    conn.reply(&err.to_outgoing(Some(env.kind)), env.req_id.as_ref());
                    continue;
                }
            }
            let job = Job {
                conn: conn_id(token),
                peer: conn.peer.ip(),
                session: conn.session.clone(),
                kind: env.kind,
                request: env.request,
            };
            let sent = match route {
                Route::Auth => self.auth_jobs.try_send(job).map_err(map_send_error),
                Route::Write => self.writes.try_send(Task::Request(job)).map_err(map_send_error),
                Route::Read | Route::Inline => self.jobs.try_send(job).map_err(map_send_error),
            };
            match sent {
                Ok(()) => {
                    conn.in_flight = Some(InFlight {
                        kind: env.kind,
                        req_id: env.req_id,
                    });
                    self.jobs_out += 1;
                }
                Err(QueueRefusal::Full) => {
                    let msg = Outgoing::error(ErrorCode::Busy, "server busy; try again", Some(env.kind));
                    conn.reply(&msg, env.req_id.as_ref());
                }
                Err(QueueRefusal::Gone) => {
                    let msg = Outgoing::error(ErrorCode::Internal, "server stopping", Some(env.kind));
                    conn.reply(&msg, env.req_id.as_ref());
                }
            }
        }
    }

    fn drain_completions(&mut self) {
        let mut touched = Vec::new();
        while let Ok(completion) = self.done.try_recv() {
            self.jobs_out = self.jobs_out.saturating_sub(1);
            self.complete(completion, &mut touched);
        }
        touched.sort_unstable();
        touched.dedup();
        for token in touched {
            // The requester may read its next request now; others just flush.
            self.service(token);
        }
    }

    /// Applies one job's outcome: session changes, the reply, the pushes.
    fn complete(&mut self, completion: Completion, touched: &mut Vec<Token>) {
        let token = Token(completion.conn as usize);
        let Outcome {
            reply,
            pushes,
            log_in,
            revoke,
            transfer,
            close_after,
            deferred: _,
            remove_files: _,
        } = completion.outcome;
        // The requester may have gone meanwhile (or there was none, for the
        // server's own jobs); what the job did still reaches everyone else.
        let req_id = match self.conns.get_mut(&token) {
            Some(conn) => {
                touched.push(token);
                let req_id = conn.in_flight.take().and_then(|f| f.req_id);
                if let Some(reply) = &reply {
                    conn.reply(reply, req_id.as_ref());
                }
                if close_after {
                    conn.close_after_transfer = true;
                }
                let finished_upload = matches!(conn.mode, Mode::Upload(_)) && transfer.is_none();
                if finished_upload {
                    // The upload's message is stored (or refused): back to lines.
                    conn.mode = Mode::Lines;
                    if conn.close_after_transfer {
                        conn.close_when_flushed = true;
                    }
                }
                if let Some(session) = log_in {
                    self.set_session(token, session);
                }
                match transfer {
                    Some(TransferStart::Upload {
                        user_id,
                        room_id,
                        name,
                        size,
                        reservation,
                    }) => self.start_upload(
                        token,
                        NewUpload {
                            user_id,
                            room_id,
                            name,
                            size,
                            reservation,
                        },
                        req_id.clone(),
                    ),
                    Some(TransferStart::Download { path, size }) => self.start_download(token, path, size),
                    None => {}
                }
                req_id
            }
            None => None,
        };
        if let Some(revoke) = revoke {
            self.revoke(token, revoke, touched);
        }
        for push in pushes {
            self.fan_out(token, push, req_id.as_ref(), touched);
        }
    }

    fn set_session(&mut self, token: Token, session: Session) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let user_id = session.user_id;
        let previous = conn.session.replace(session);
        match previous {
            Some(old) if old.user_id == user_id => {}
            Some(old) => {
                // Handlers refuse switching users (ER_CLI_EXST); kept correct anyway.
                self.forget_user_conn(old.user_id, token);
                self.remember_user_conn(user_id, token);
            }
            None => {
                self.anonymous.remove(token.0);
                self.remember_user_conn(user_id, token);
            }
        }
    }

    fn remember_user_conn(&mut self, user_id: i64, token: Token) {
        self.by_user.entry(user_id).or_default().push(token);
        if self.presence.connect(user_id) {
            self.announce_presence(user_id, true);
        }
    }

    fn forget_user_conn(&mut self, user_id: i64, token: Token) {
        if let Some(tokens) = self.by_user.get_mut(&user_id) {
            tokens.retain(|t| *t != token);
            if tokens.is_empty() {
                self.by_user.remove(&user_id);
            }
        }
        if self.presence.disconnect(user_id) {
            self.announce_presence(user_id, false);
        }
    }

    /// The user came or went: friends are told now, or, if they were told
    /// less than a second ago, once the second is over (of the latest state).
    fn announce_presence(&mut self, user_id: i64, online: bool) {
        if self.presence_out.changed(user_id, online, Instant::now()) {
            self.send_presence(user_id, online);
        }
    }

    /// Releases presence announcements held back by the coalescer.
    fn flush_presence(&mut self) {
        for (user_id, online) in self.presence_out.due(Instant::now()) {
            self.send_presence(user_id, online);
        }
    }

    /// Asks the writer to tell the user's friends that the user came or
    /// went: in the writer's order, so the last push is the true state.
    fn send_presence(&mut self, user_id: i64, online: bool) {
        self.write(Task::Presence { user_id, online });
    }

    /// Logs out every connection of the user that uses the revoked token.
    fn revoke(&mut self, requester: Token, revoke: Revoke, touched: &mut Vec<Token>) {
        let tokens = self.by_user.get(&revoke.user_id).cloned().unwrap_or_default();
        for token in tokens {
            let Some(conn) = self.conns.get_mut(&token) else {
                continue;
            };
            if conn.session.as_ref().map(|s| s.token_hash) != Some(revoke.token_hash) {
                continue;
            }
            conn.session = None;
            if token != requester {
                let line = revoke.notice.encode(conn.dialect(), None);
                conn.queue(&line);
                touched.push(token);
            }
            self.forget_user_conn(revoke.user_id, token);
            self.login_deadlines
                .push_back((Instant::now() + self.limits.login_timeout, token));
            self.count_anonymous(token);
        }
    }

    /// Sends a push to every online connection of its recipients. The line is
    /// encoded once per dialect; only the requester's copy differs (req_id).
    fn fan_out(
        &mut self,
        requester: Token,
        push: Push,
        req_id: Option<&protocol::ReqId>,
        touched: &mut Vec<Token>,
    ) {
        let code = push.msg.kind.code();
        let mut encoded: [Option<Vec<u8>>; 2] = [None, None];
        let mut requester_reached = false;
        let max_out = self.limits.max_outbound_bytes;
        for user_id in push.to.iter() {
            let Some(tokens) = self.by_user.get(user_id) else {
                continue;
            };
            for &token in tokens {
                let Some(conn) = self.conns.get_mut(&token) else {
                    continue;
                };
                if push.answers_request && token == requester {
                    requester_reached = true;
                    conn.reply(&push.msg, req_id);
                    continue;
                }
                let dialect = conn.dialect();
                if !compat::push_allowed(dialect, conn.used_parley_codes, code) {
                    continue;
                }
                let slot = &mut encoded[dialect as usize];
                let line = slot.get_or_insert_with(|| push.msg.encode(dialect, None));
                if conn.pending_out() + conn.held.len() + line.len() > max_out {
                    log::warn!(
                        "conn {} ({}) is not reading: {} bytes queued; disconnecting it",
                        token.0,
                        conn.peer,
                        conn.pending_out()
                    );
                    conn.doomed = Some("too slow reading its messages".into());
                } else if conn.mode.holds_pushes() {
                    conn.held.extend_from_slice(line);
                } else {
                    conn.queue(line);
                }
                touched.push(token);
            }
        }
        if push.answers_request && !requester_reached {
            if let Some(conn) = self.conns.get_mut(&requester) {
                conn.reply(&push.msg, req_id);
            }
        }
    }

    fn expire_logins(&mut self) {
        let now = Instant::now();
        while let Some(&(deadline, token)) = self.login_deadlines.front() {
            if deadline > now {
                break;
            }
            self.login_deadlines.pop_front();
            let Some(conn) = self.conns.get(&token) else {
                continue;
            };
            if conn.session.is_some() {
                continue;
            }
            if conn.in_flight.is_some() || !matches!(conn.mode, Mode::Lines) {
                // A log-in or a transfer may be under way; look again later.
                self.login_deadlines
                    .push_back((now + self.limits.login_timeout, token));
                continue;
            }
            let secs = self.limits.login_timeout.as_secs_f64();
            self.close(token, &format!("no log-in within {secs} s"));
        }
    }

    fn new_transfer(&mut self, token: Token) -> u64 {
        let id = self.next_transfer;
        self.next_transfer += 1;
        self.transfers.insert(id, token);
        id
    }

    fn start_upload(&mut self, token: Token, new: NewUpload, req_id: Option<ReqId>) {
        let NewUpload {
            user_id,
            room_id,
            name,
            size,
            reservation,
        } = new;
        let id = self.new_transfer(token);
        self.file_backlog.push_back(FileTask::Create {
            id,
            dir: self.files_dir.clone(),
        });
        if let Some(conn) = self.conns.get_mut(&token) {
            // The request stays open until the message is stored: its answer
            // is the RQ_MSG broadcast, which carries this req_id.
            conn.in_flight = None;
            conn.mode = Mode::Upload(Upload {
                id,
                user_id,
                room_id,
                name,
                size,
                handed: 0,
                written: 0,
                stored_name: None,
                last_activity: Instant::now(),
                req_id,
                reservation,
            });
        }
    }

    fn start_download(&mut self, token: Token, path: PathBuf, size: u64) {
        let id = self.new_transfer(token);
        self.file_backlog.push_back(FileTask::OpenRead { id, path });
        if let Some(conn) = self.conns.get_mut(&token) {
            conn.mode = Mode::AwaitReady(Download {
                id,
                size,
                requested: 0,
                queued: 0,
                last_activity: Instant::now(),
            });
        }
    }

    /// Moves an upload's bytes from the connection's buffer to the file thread.
    fn pump_upload(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let Mode::Upload(upload) = &mut conn.mode else {
            return;
        };
        while upload.wants_bytes() && conn.reader.buffered() > 0 {
            let n = (conn.reader.buffered() as u64)
                .min(upload.remaining())
                .min(CHUNK as u64) as usize;
            let data = conn.reader.take_raw(n);
            upload.handed += n as u64;
            upload.last_activity = Instant::now();
            self.file_backlog
                .push_back(FileTask::Write { id: upload.id, data });
        }
        if upload.remaining() == 0 && upload.stored_name.is_none() {
            match files::new_stored_name() {
                Ok(stored_name) => {
                    upload.stored_name = Some(stored_name.clone());
                    self.file_backlog.push_back(FileTask::Finish {
                        id: upload.id,
                        stored_name,
                    });
                }
                Err(e) => conn.doomed = Some(format!("no name for an upload: {e}")),
            }
        }
    }

    /// Ends a download (done, or given up): back to lines, held pushes released.
    fn end_download(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let (Mode::AwaitReady(d) | Mode::Download(d)) = std::mem::take(&mut conn.mode) else {
            return;
        };
        self.transfers.remove(&d.id);
        self.file_backlog.push_back(FileTask::Close { id: d.id });
        let held = std::mem::take(&mut conn.held);
        conn.queue(&held);
        if conn.close_after_transfer {
            conn.close_when_flushed = true;
        }
    }

    /// Hands queued tasks to the file thread without ever waiting for it.
    fn flush_file_backlog(&mut self) {
        while let Some(task) = self.file_backlog.pop_front() {
            match self.file_tasks.try_send(task) {
                Ok(()) => {}
                Err(TrySendError::Full(task)) => {
                    self.file_backlog.push_front(task);
                    return;
                }
                Err(TrySendError::Disconnected(_)) => {
                    log::error!(
                        "the file thread is gone; {} file tasks dropped",
                        self.file_backlog.len() + 1
                    );
                    self.file_backlog.clear();
                    return;
                }
            }
        }
    }

    fn drain_file_events(&mut self) {
        let mut touched = Vec::new();
        while let Ok(event) = self.file_events.try_recv() {
            match event {
                FileEvent::Written { id, n } => {
                    let Some(&token) = self.transfers.get(&id) else {
                        continue;
                    };
                    if let Some(Conn {
                        mode: Mode::Upload(upload),
                        ..
                    }) = self.conns.get_mut(&token)
                    {
                        upload.written += n as u64;
                        touched.push(token);
                    }
                }
                FileEvent::Stored { id } => self.upload_stored(id, &mut touched),
                FileEvent::Chunk { id, data } => {
                    let Some(&token) = self.transfers.get(&id) else {
                        continue;
                    };
                    let Some(conn) = self.conns.get_mut(&token) else {
                        continue;
                    };
                    let Mode::Download(d) = &mut conn.mode else {
                        continue;
                    };
                    d.queued += data.len() as u64;
                    d.last_activity = Instant::now();
                    let done = d.queued == d.size;
                    conn.queue(&data);
                    if done {
                        self.end_download(token);
                    }
                    touched.push(token);
                }
                FileEvent::Failed { id, error } => {
                    log::error!("transfer {id} failed: {error}");
                    self.orphan_uploads.remove(&id);
                    let Some(token) = self.transfers.remove(&id) else {
                        continue;
                    };
                    if let Some(conn) = self.conns.get_mut(&token) {
                        if let Mode::Upload(upload) = &mut conn.mode {
                            let msg = Outgoing::error(
                                ErrorCode::Internal,
                                "storing the file failed",
                                Some(Kind::UploadFile),
                            );
                            let req_id = upload.req_id.take();
                            conn.reply(&msg, req_id.as_ref());
                        }
                        // Raw bytes may still be on their way: the connection cannot go on.
                        conn.mode = Mode::Lines;
                        conn.close_when_flushed = true;
                        touched.push(token);
                    }
                }
            }
        }
        for token in touched {
            self.service(token);
        }
    }

    /// An upload is on disk: a worker stores its message.
    fn upload_stored(&mut self, id: u64, touched: &mut Vec<Token>) {
        log::debug!("upload {id} is on disk");
        let token = self.transfers.get(&id).copied();
        let (upload, conn_token) = match token.and_then(|t| self.conns.get_mut(&t).map(|c| (t, c))) {
            Some((t, conn)) => match &mut conn.mode {
                Mode::Upload(upload) => {
                    conn.in_flight = Some(InFlight {
                        kind: Kind::UploadFile,
                        req_id: upload.req_id.take(),
                    });
                    touched.push(t);
                    (
                        StoreUpload {
                            user_id: upload.user_id,
                            room_id: upload.room_id,
                            name: upload.name.clone(),
                            size: upload.size as i64,
                            stored_name: upload.stored_name.clone().unwrap_or_default(),
                        },
                        t,
                    )
                }
                _ => return,
            },
            None => match self.orphan_uploads.remove(&id) {
                Some(OrphanUpload { upload }) => (
                    StoreUpload {
                        user_id: upload.user_id,
                        room_id: upload.room_id,
                        name: upload.name,
                        size: upload.size as i64,
                        stored_name: upload.stored_name.unwrap_or_default(),
                    },
                    Token(NO_CONN as usize),
                ),
                None => return,
            },
        };
        self.transfers.remove(&id);
        log::debug!("upload {id}: storing its message (conn {})", conn_token.0);
        self.write(Task::StoreUpload {
            conn: conn_id(conn_token),
            upload,
        });
    }

    /// Closes connections whose transfer moved nothing for too long.
    fn expire_transfers(&mut self) {
        if self.transfers.is_empty() {
            return;
        }
        let now = Instant::now();
        let idle = self.limits.transfer_idle;
        let stale: Vec<Token> = self
            .transfers
            .values()
            .filter(|token| {
                self.conns
                    .get(token)
                    .and_then(|c| c.mode.last_activity())
                    .is_some_and(|t| now.duration_since(t) >= idle)
            })
            .copied()
            .collect();
        for token in stale {
            let secs = idle.as_secs_f64();
            self.close(token, &format!("transfer idle for {secs} s"));
        }
    }

    fn close(&mut self, token: Token, reason: &str) {
        self.close_quietly(token, reason, true);
    }

    /// Closes a connection; `loud` false logs it at debug level only (the
    /// many connections a defence closes are reported once, not each).
    fn close_quietly(&mut self, token: Token, reason: &str, loud: bool) {
        let Some(mut conn) = self.conns.remove(&token) else {
            return;
        };
        self.anonymous.remove(token.0);
        match std::mem::take(&mut conn.mode) {
            Mode::Lines => {}
            Mode::Upload(upload) => {
                self.transfers.remove(&upload.id);
                if upload.remaining() == 0 {
                    // Every byte arrived: finish storing it without the client.
                    self.orphan_uploads.insert(upload.id, OrphanUpload { upload });
                } else {
                    self.file_backlog.push_back(FileTask::Abort { id: upload.id });
                }
            }
            Mode::AwaitReady(d) | Mode::Download(d) => {
                self.transfers.remove(&d.id);
                self.file_backlog.push_back(FileTask::Close { id: d.id });
            }
        }
        if conn.registered.is_some() {
            let _ = self.poll.registry().deregister(&mut conn.socket);
        }
        if let Some(session) = &conn.session {
            self.forget_user_conn(session.user_id, token);
        }
        let level = if loud { log::Level::Info } else { log::Level::Debug };
        log::log!(level, "conn {} closed from {}: {reason}", token.0, conn.peer);
    }
}

/// Why a job could not be queued.
enum QueueRefusal {
    Full,
    Gone,
}

fn map_send_error<T>(e: TrySendError<T>) -> QueueRefusal {
    match e {
        TrySendError::Full(_) => QueueRefusal::Full,
        TrySendError::Disconnected(_) => QueueRefusal::Gone,
    }
}

/// Whether to read more from a connection now.
fn wants_read(conn: &Conn, max_out: usize, pause_at: usize) -> bool {
    if conn.peer_closed || conn.doomed.is_some() || conn.close_when_flushed {
        return false;
    }
    match &conn.mode {
        Mode::Upload(u) => return u.wants_bytes() && conn.reader.buffered() < CHUNK,
        // What follows a download is buffered, boundedly, and served after it.
        Mode::Download(_) => return conn.reader.buffered() < pause_at,
        Mode::Lines | Mode::AwaitReady(_) => {}
    }
    // A client that does not read its replies gets no more requests served.
    if conn.pending_out() >= max_out {
        return false;
    }
    // With a request in flight, buffer at most a bounded amount of what follows.
    !(conn.in_flight.is_some() && conn.reader.buffered() >= pause_at)
}
