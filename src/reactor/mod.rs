//! The reactor: one thread that owns the listener and every socket.
//!
//! It accepts connections, reads and splits lines, decodes requests, hands
//! reads to the workers and writes to the writer over bounded channels, and
//! writes replies and pushes when their completions come back (a
//! `mio::Waker` wakes it). It never blocks: a full queue answers ER_BUSY, a
//! client with a request in flight is not read from beyond a bound, and a
//! client that does not read its pushes is cut off once its output buffer
//! is over the limit. Each connection's own state machine is `conn::Conn`.
//!
//! This file holds the loop, timers and closing; the rest is by concern:
//! `accept` (new connections, caps, descriptors, log-in deadlines),
//! `service` (one connection's turn: read, frame, route), `fanout`
//! (completions: replies and pushes), `sessions` (log-in, revocation,
//! presence) and `transfers` (file bytes and the file thread).

mod accept;
mod cluster;
mod fanout;
mod service;
mod sessions;
mod transfers;

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};

use crate::admission::AnonymousConns;
use crate::conn::Conn;
use crate::files::{FileEvent, FileTask};
use crate::job::{Completion, ConnId, Job, Task, WriteQueue};
use crate::local::LocalArrivals;
use crate::metrics::Metrics;
use crate::presence::{Presence, PresenceCoalescer};
use crate::throttle::{AuthGate, AuthRates};
use crate::tls::ServerTls;
use crate::transfer::Upload;
use crate::web::WebSite;
pub use cluster::NodeLink;

pub const LISTENER: Token = Token(0);
/// The optional plaintext listener beside a TLS one.
pub const PLAIN_LISTENER: Token = Token(2);
/// The web listener (HTTP and WebSocket).
pub const WEB_LISTENER: Token = Token(3);
pub const WAKER: Token = Token(1);
/// Connection tokens start here and are never reused.
const FIRST_CONN_TOKEN: usize = 4;

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
    /// Log every line of every connection (secrets masked).
    pub trace_lines: bool,
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

/// A listening socket, and the TLS its connections speak (if any).
pub struct Listener {
    pub socket: TcpListener,
    pub tls: Option<Arc<ServerTls>>,
    /// For the web listener: its connections speak HTTP and WebSocket.
    pub web: Option<Arc<WebSite>>,
}

/// The channels between the reactor and the other threads.
pub struct Links {
    /// Reads: served by the worker pool.
    pub jobs: Sender<Job>,
    /// Writes: served by the one writer, in order.
    pub writes: Sender<Task>,
    /// The writer's queue for the server's own writes.
    pub own_writes: WriteQueue,
    /// What the server counts.
    pub metrics: Arc<Metrics>,
    /// Sign-ups and log-ins: served by the password-hashing threads.
    pub auth_jobs: Sender<Job>,
    pub done: Receiver<Completion>,
    pub file_tasks: Sender<FileTask>,
    pub file_events: Receiver<FileEvent>,
    /// Connections of the front ends inside the server (`local`).
    pub local: LocalArrivals,
    /// The other nodes of a cluster, if this node is one.
    pub cluster: Option<NodeLink>,
}

pub struct Reactor {
    poll: Poll,
    /// Where connections come from, by poll token (emptied when draining).
    listeners: Vec<(Token, Listener)>,
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
    /// Uploads whose client closed right after the last byte (as old
    /// clients do): stored all the same.
    orphan_uploads: HashMap<u64, Upload>,
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
    /// Whether a plaintext client on the TLS port was reported yet.
    reported_plaintext: bool,
    /// Whether a failed TLS handshake was reported yet.
    reported_tls_error: bool,
    metrics: Arc<Metrics>,
    /// When running out of descriptors was last reported.
    fd_warned_at: Option<Instant>,
    /// When to ask a worker for its periodic upkeep next.
    next_maintenance: Instant,
    /// Presence announcements, at most one a second per user.
    presence_out: PresenceCoalescer,
    /// New connections of the front ends inside the server.
    local: LocalArrivals,
    /// Logged-in connections of old (integer-dialect) clients: pushes only
    /// they take are not even encoded while there are none.
    old_clients: HashSet<Token>,
    /// The other nodes of a cluster, if this node is one.
    cluster: Option<NodeLink>,
}

/// How often the writer does its upkeep (expired tokens, the disk's
/// ballast, retention).
const MAINTENANCE_EVERY: Duration = Duration::from_secs(600);

/// How soon the upkeep comes back while retention has a backlog.
const MAINTENANCE_AGAIN: Duration = Duration::from_millis(200);

fn conn_id(token: Token) -> ConnId {
    token.0 as ConnId
}

impl Reactor {
    pub fn new(
        poll: Poll,
        listeners: Vec<Listener>,
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
            metrics,
            file_tasks,
            file_events,
            local,
            cluster,
        } = links;
        let mut listeners: Vec<(Token, Listener)> = [LISTENER, PLAIN_LISTENER, WEB_LISTENER]
            .into_iter()
            .zip(listeners)
            .collect();
        for (token, listener) in &mut listeners {
            poll.registry()
                .register(&mut listener.socket, *token, Interest::READABLE)?;
        }
        Ok(Reactor {
            poll,
            listeners,
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
            reserve_fd: accept::open_reserve_fd(),
            fd_warned_at: None,
            metrics,
            reported_plaintext: false,
            reported_tls_error: false,
            next_maintenance: Instant::now() + Duration::from_secs(5),
            presence_out: PresenceCoalescer::default(),
            local,
            old_clients: HashSet::new(),
            cluster,
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
                    LISTENER | PLAIN_LISTENER | WEB_LISTENER => self.accept(event.token()),
                    WAKER => {}
                    token => {
                        if self.conns.contains_key(&token) {
                            self.service(token);
                        }
                    }
                }
            }
            // After the events: connections that closed have freed their descriptors.
            self.retry_accept();
            if self.draining_until.is_none() {
                self.accept_local();
            }
            // Completions are drained on every pass: wakes can merge.
            self.drain_completions();
            self.drain_bus();
            self.ask_for_gaps();
            self.poll_room_tails();
            self.heartbeat();
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
                    self.leave_cluster();
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
        let cluster = self.next_cluster_due();
        [
            login,
            drain,
            transfers,
            self.accept_retry_at,
            purge,
            presence,
            cluster,
        ]
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

    /// The upkeep has a backlog (retention): the next round comes soon.
    fn maintain_soon(&mut self) {
        self.next_maintenance = self.next_maintenance.min(Instant::now() + MAINTENANCE_AGAIN);
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
        for (_, mut listener) in std::mem::take(&mut self.listeners) {
            let _ = self.poll.registry().deregister(&mut listener.socket);
        }
        self.draining_until = Some(Instant::now() + DRAIN_TIMEOUT);
    }

    fn close(&mut self, token: Token, reason: &str) {
        self.close_quietly(token, reason, true);
    }

    /// Closes a connection; `loud` false logs it at debug level only (the
    /// many connections a defence closes are reported once, not each).
    fn close_quietly(&mut self, token: Token, reason: &str, loud: bool) {
        let Some(conn) = self.conns.remove(&token) else {
            return;
        };
        self.metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
        self.anonymous.remove(token.0);
        if let Some(session) = conn.session() {
            let user_id = session.user_id;
            self.forget_user_conn(user_id, token);
        }
        let peer = conn.peer();
        let (transfer, mut transport, registered) = conn.into_transfer();
        if let Some(transfer) = transfer {
            self.abandon_transfer(transfer);
        }
        if registered.is_some() {
            let _ = self.poll.registry().deregister(transport.source_mut());
        }
        let level = if loud { log::Level::Info } else { log::Level::Debug };
        log::log!(level, "conn {} closed from {peer}: {reason}", token.0);
    }
}
