//! Taking connections on: accepting, the caps on connections that have not
//! logged in, running out of file descriptors, and the log-in deadline.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::Token;

use super::Reactor;
use crate::admission::Eviction;
use crate::conn::Conn;
use crate::local::LOCAL_PEER;
use crate::tls::ServerTls;
use crate::transport::Transport;
use crate::web::{WebSite, WebStream};

/// The shortest time between two reports of running out of descriptors.
const FD_WARNING_EVERY: Duration = Duration::from_secs(60);

/// How long accepting pauses after running out of file descriptors.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

pub(super) fn open_reserve_fd() -> Option<std::fs::File> {
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

impl Reactor {
    /// Accepts what waits on the listener of `token`.
    pub(super) fn accept(&mut self, token: Token) {
        loop {
            let Some((_, listener)) = self.listeners.iter().find(|(t, _)| *t == token) else {
                return;
            };
            let tls = listener.tls.clone();
            let web = listener.web.clone();
            let (socket, peer) = match listener.socket.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_out_of_descriptors(&e) => {
                    self.out_of_descriptors(token, &e);
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
            self.add_conn(socket, peer, tls.as_deref(), web);
        }
    }

    /// Accepting again after a pause for lack of descriptors.
    pub(super) fn retry_accept(&mut self) {
        if self.accept_retry_at.is_some_and(|t| Instant::now() >= t) {
            self.accept_retry_at = None;
            let tokens: Vec<Token> = self.listeners.iter().map(|(t, _)| *t).collect();
            for token in tokens {
                self.accept(token);
            }
        }
    }

    /// Takes on the local connections front ends inside the server opened
    /// (`local`): from here on they are connections like any other.
    pub(super) fn accept_local(&mut self) {
        while let Ok(stream) = self.local.try_recv() {
            if self.conns.len() >= self.limits.max_connections {
                log::warn!(
                    "refused a local connection: connection limit of {} reached",
                    self.limits.max_connections
                );
                continue;
            }
            self.add_transport(Transport::Local(stream), LOCAL_PEER);
        }
    }

    /// Takes on an accepted connection, starting TLS on it if its listener speaks TLS.
    fn add_conn(
        &mut self,
        socket: TcpStream,
        peer: SocketAddr,
        tls: Option<&ServerTls>,
        web: Option<Arc<WebSite>>,
    ) {
        if let Err(e) = socket.set_nodelay(true) {
            log::debug!("set_nodelay for {peer}: {e}");
        }
        let transport = match tls.map(ServerTls::accept) {
            None => Transport::plain(socket),
            Some(Ok(session)) => Transport::tls(socket, session),
            Some(Err(e)) => {
                log::error!("starting TLS for {peer} failed: {e}");
                return;
            }
        };
        let transport = match web {
            Some(site) => Transport::Layered(Box::new(WebStream::new(transport, site))),
            None => transport,
        };
        self.add_transport(transport, peer);
    }

    /// Registers a new connection and starts its log-in deadline.
    fn add_transport(&mut self, transport: Transport, peer: SocketAddr) {
        let token = Token(self.next_token);
        self.next_token += 1;
        let mut conn = Conn::new(transport, peer, self.limits.max_line_bytes, self.metrics.clone());
        if self.limits.trace_lines {
            conn.trace_lines(token.0);
        }
        if let Err(e) = conn.register(self.poll.registry(), token) {
            log::error!("registering connection from {peer} failed: {e}");
            return;
        }
        self.conns.insert(token, conn);
        self.metrics.connections_open.fetch_add(1, Ordering::Relaxed);
        self.metrics.connections_total.fetch_add(1, Ordering::Relaxed);
        self.start_login_deadline(token);
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
    fn out_of_descriptors(&mut self, listener: Token, e: &io::Error) {
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
        let accepted = self
            .listeners
            .iter()
            .find(|(t, _)| *t == listener)
            .and_then(|(_, l)| Some((l.socket.accept().ok()?, l.tls.clone(), l.web.clone())));
        if let Some(((socket, peer), tls, web)) = accepted {
            let conns = &self.conns;
            let oldest = self
                .anonymous
                .oldest_idle(|key| conns.get(&Token(key)).is_some_and(Conn::is_idle_anonymous));
            match oldest {
                Some(old) => {
                    self.close_quietly(Token(old), "out of file descriptors: making room", false);
                    self.add_conn(socket, peer, tls.as_deref(), web);
                }
                None => drop(socket),
            }
        }
        self.reserve_fd = open_reserve_fd();
    }

    /// Counts a connection that is not logged in; at a cap, the oldest idle
    /// anonymous connection of its address (or of all) is closed for it.
    pub(super) fn count_anonymous(&mut self, token: Token) {
        let Some(peer) = self.conns.get(&token).map(Conn::peer) else {
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

    /// The connection must log in within the log-in timeout from now.
    pub(super) fn start_login_deadline(&mut self, token: Token) {
        // The timeout is constant, so pushing at the back keeps it sorted.
        self.login_deadlines
            .push_back((Instant::now() + self.limits.login_timeout, token));
    }

    /// Closes connections that did not log in in time.
    pub(super) fn expire_logins(&mut self) {
        let now = Instant::now();
        while let Some(&(deadline, token)) = self.login_deadlines.front() {
            if deadline > now {
                break;
            }
            self.login_deadlines.pop_front();
            let Some(conn) = self.conns.get(&token) else {
                continue;
            };
            if conn.session().is_some() {
                continue;
            }
            if !conn.is_ready() {
                // A log-in or a transfer may be under way; look again later.
                self.start_login_deadline(token);
                continue;
            }
            let secs = self.limits.login_timeout.as_secs_f64();
            self.close(token, &format!("no log-in within {secs} s"));
        }
    }
}
