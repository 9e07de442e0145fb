//! One client connection: its socket, buffers, session, and the state
//! machine of what it is doing.
//!
//! A connection is always in exactly one `State`: ready for a request,
//! serving one, moving a file's raw bytes, flushing before it closes, or
//! doomed. The fields are private; the methods say which transitions exist,
//! so the reactor cannot leave a connection half in one state and half in
//! another.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Interest, Registry, Token};

use crate::compat::{self, Dialect};
use crate::disk::QuotaReservation;
use crate::framing::{Frame, LineReader};
use crate::job::{Session, StoreUpload};
use crate::metrics::Metrics;
use crate::protocol::{ErrorCode, Kind, Outgoing, ReqId};
use crate::transfer::{Download, Transfer, Upload, CHUNK};
use crate::transport::Transport;

/// Size of one socket read.
pub const READ_CHUNK: usize = 64 * 1024;

/// The request a connection is waiting on (one at a time keeps replies in order).
#[derive(Debug)]
pub struct InFlight {
    pub kind: Kind,
    /// When the request arrived (for the latency metric).
    pub started: Instant,
    pub req_id: Option<ReqId>,
    /// Close once answered: the request stores a transfer authorized by
    /// its token only.
    pub close_after: bool,
    /// An upload's share of the user's quota, held until its message is stored.
    pub quota: Option<QuotaReservation>,
}

impl InFlight {
    pub fn new(kind: Kind, req_id: Option<ReqId>) -> InFlight {
        InFlight {
            kind,
            started: Instant::now(),
            req_id,
            close_after: false,
            quota: None,
        }
    }
}

/// When the bytes a connection has read but not yet taken arrived, so the
/// reactor can tell how long the next request has waited inside the server
/// (an overloaded server refuses what has waited too long; see
/// `reactor::service`). Bounded: past a few reads, newer ones are merged
/// into the last mark, which only makes later bytes look older.
#[derive(Debug, Default)]
struct Arrivals {
    /// Bytes read so far, in all.
    total: u64,
    /// (bytes read in all at the end of a read, when), oldest first.
    marks: VecDeque<(u64, Instant)>,
}

/// Most read times a connection keeps.
const ARRIVAL_MARKS: usize = 8;

impl Arrivals {
    fn read(&mut self, n: usize, now: Instant) {
        self.total += n as u64;
        let full = self.marks.len() >= ARRIVAL_MARKS;
        match self.marks.back_mut() {
            Some(last) if full => last.0 = self.total,
            _ => self.marks.push_back((self.total, now)),
        }
    }

    /// Counts every byte not yet taken as arrived at `now`.
    fn restart(&mut self, now: Instant) {
        self.marks.clear();
        self.marks.push_back((self.total, now));
    }

    /// How long the first of the `buffered` bytes not yet taken has waited.
    fn waited(&mut self, buffered: usize, now: Instant) -> Duration {
        let taken = self.total - buffered as u64;
        while self.marks.front().is_some_and(|&(end, _)| end <= taken) {
            self.marks.pop_front();
        }
        self.marks
            .front()
            .map_or(Duration::ZERO, |&(_, at)| now.saturating_duration_since(at))
    }
}

/// What a connection is doing.
#[derive(Debug)]
enum State {
    /// Taking requests; none is being served.
    Ready,
    /// One request is at a worker or the writer; what follows is buffered,
    /// boundedly, and served after its answer.
    Serving(InFlight),
    /// Moving a file's raw bytes. `close_after`: the transfer was
    /// authorized by its own token, and the connection ends with it.
    Transferring { transfer: Transfer, close_after: bool },
    /// Closing once everything queued is written, for this reason.
    Flushing(&'static str),
    /// To be closed at the next chance, for this reason.
    Doomed(String),
}

/// What a read pass found.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadStatus {
    /// Bytes may still come.
    Open,
    /// The peer closed its side (or reset the connection).
    Closed,
}

pub struct Conn {
    /// The socket, with TLS on it or not: plaintext above it either way.
    transport: Transport,
    peer: SocketAddr,
    reader: LineReader,
    arrivals: Arrivals,
    /// Bytes waiting to be written; `written` of them already are.
    wbuf: Vec<u8>,
    written: usize,
    /// Set by the first request; `None` until then (answered in names).
    dialect: Option<Dialect>,
    /// The connection has sent a request with a Parley code (see `compat`).
    used_parley_codes: bool,
    session: Option<Session>,
    state: State,
    /// The peer will send nothing more.
    eof: bool,
    /// The interest currently registered with the poll (`None`: not registered).
    registered: Option<Interest>,
    /// Pushes held back while a download's raw bytes go out.
    held: Vec<u8>,
    metrics: Arc<Metrics>,
    /// With `trace_lines`: this connection's number, for logging its lines.
    trace: Option<usize>,
}

impl Conn {
    pub fn new(transport: Transport, peer: SocketAddr, max_line: usize, metrics: Arc<Metrics>) -> Conn {
        Conn {
            transport,
            peer,
            reader: LineReader::new(max_line),
            arrivals: Arrivals::default(),
            wbuf: Vec::new(),
            written: 0,
            dialect: None,
            used_parley_codes: false,
            session: None,
            state: State::Ready,
            eof: false,
            registered: None,
            held: Vec::new(),
            metrics,
            trace: None,
        }
    }

    /// Logs every line this connection sends and receives, as `conn ID`.
    pub fn trace_lines(&mut self, id: usize) {
        self.trace = Some(id);
    }

    /// Logs a line the client sent, when tracing.
    pub fn trace_request(&self, line: &[u8]) {
        if let Some(id) = self.trace {
            log::info!("conn {id} < {}", crate::logging::masked_line(line));
        }
    }

    fn trace_out(&self, line: &[u8]) {
        if let Some(id) = self.trace {
            log::info!("conn {id} > {}", crate::logging::masked_line(line));
        }
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    pub fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// Logs the connection in (or out, with `None`); returns the session it had.
    pub fn set_session(&mut self, session: Option<Session>) -> Option<Session> {
        std::mem::replace(&mut self.session, session)
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect.unwrap_or(Dialect::Names)
    }

    /// The first request's `type` fixes the dialect; a Parley code opens
    /// the connection to Parley's pushes (see `compat`).
    pub fn note_request_type(&mut self, type_was_code: bool, code: Option<i64>) {
        self.dialect
            .get_or_insert(compat::dialect_for_first_request(type_was_code));
        if code.is_some_and(|c| c >= compat::FIRST_PARLEY_CODE) {
            self.used_parley_codes = true;
        }
    }

    /// Whether an unsolicited push of this code may be sent here.
    pub fn takes_push(&self, code: i64) -> bool {
        compat::push_allowed(self.dialect(), self.used_parley_codes, code)
    }

    /// Not logged in, and nothing under way that closing would cut short.
    pub fn is_idle_anonymous(&self) -> bool {
        self.session.is_none() && matches!(self.state, State::Ready)
    }

    /// Nothing is being served or transferred.
    pub fn is_ready(&self) -> bool {
        matches!(self.state, State::Ready)
    }

    // --- Requests -----------------------------------------------------------

    /// Whether the next line may be taken as a request now: nothing served
    /// or moving raw bytes, not closing, and the client reads its replies.
    pub fn takes_requests(&self, max_out: usize) -> bool {
        let state_allows = matches!(
            self.state,
            State::Ready
                | State::Transferring {
                    transfer: Transfer::AwaitReady(_),
                    ..
                }
        );
        state_allows && self.pending_out() < max_out
    }

    /// The next complete line, if any.
    pub fn next_frame(&mut self) -> Option<Frame> {
        self.reader.next_frame()
    }

    /// A request went to a worker or the writer.
    pub fn begin_request(&mut self, in_flight: InFlight) {
        self.state = State::Serving(in_flight);
    }

    /// The request's answer came: back to taking requests (or closing, if
    /// the request finished a transfer that was the connection's purpose).
    /// Returns the request's `req_id`.
    pub fn finish_request(&mut self) -> Option<ReqId> {
        match std::mem::replace(&mut self.state, State::Ready) {
            State::Serving(f) => {
                self.metrics.request_latency.observe(f.started.elapsed());
                if f.close_after {
                    self.state = State::Flushing("transfer finished");
                }
                f.req_id
            }
            other => {
                // Doomed or flushing meanwhile: stays so.
                self.state = other;
                None
            }
        }
    }

    // --- Transfers ----------------------------------------------------------

    /// The upload request was granted: raw bytes follow.
    pub fn begin_upload(&mut self, upload: Upload, close_after: bool) {
        self.state = State::Transferring {
            transfer: Transfer::Upload(upload),
            close_after,
        };
    }

    /// A download was offered: pushes are held from now on, so that the
    /// bytes after the client's RQ_READY_READ are exactly the file.
    pub fn offer_download(&mut self, download: Download, close_after: bool) {
        self.state = State::Transferring {
            transfer: Transfer::AwaitReady(download),
            close_after,
        };
    }

    /// The client sent RQ_READY_READ: true if a download was waiting for it.
    pub fn start_download(&mut self) -> bool {
        match std::mem::replace(&mut self.state, State::Ready) {
            State::Transferring {
                transfer: Transfer::AwaitReady(d),
                close_after,
            } => {
                self.state = State::Transferring {
                    transfer: Transfer::Download(d),
                    close_after,
                };
                true
            }
            other => {
                self.state = other;
                false
            }
        }
    }

    pub fn transfer(&self) -> Option<&Transfer> {
        match &self.state {
            State::Transferring { transfer, .. } => Some(transfer),
            _ => None,
        }
    }

    pub fn upload_mut(&mut self) -> Option<&mut Upload> {
        match &mut self.state {
            State::Transferring {
                transfer: Transfer::Upload(u),
                ..
            } => Some(u),
            _ => None,
        }
    }

    pub fn download_mut(&mut self) -> Option<&mut Download> {
        match &mut self.state {
            State::Transferring {
                transfer: Transfer::Download(d),
                ..
            } => Some(d),
            _ => None,
        }
    }

    /// Every byte of the upload is on disk: its message is now being
    /// stored, and that request's answer ends the upload.
    pub fn upload_on_disk(&mut self) -> Option<StoreUpload> {
        match std::mem::replace(&mut self.state, State::Ready) {
            State::Transferring {
                transfer: Transfer::Upload(upload),
                close_after,
            } => {
                let (message, quota, req_id) = upload.into_stored();
                self.state = State::Serving(InFlight {
                    kind: Kind::UploadFile,
                    started: Instant::now(),
                    req_id,
                    close_after,
                    quota: Some(quota),
                });
                Some(message)
            }
            other => {
                self.state = other;
                None
            }
        }
    }

    /// Ends the transfer under way (done, given up, or failed): back to
    /// requests, or closing if it was the connection's purpose. Pushes held
    /// during a download are released.
    pub fn end_transfer(&mut self) -> Option<Transfer> {
        match std::mem::replace(&mut self.state, State::Ready) {
            State::Transferring {
                transfer,
                close_after,
            } => {
                if close_after {
                    self.state = State::Flushing("transfer finished");
                }
                let held = std::mem::take(&mut self.held);
                self.queue(&held);
                // What the client sent during its own transfer waited for
                // the transfer, not for a busy server: its wait starts now.
                self.arrivals.restart(Instant::now());
                Some(transfer)
            }
            other => {
                self.state = other;
                None
            }
        }
    }

    /// A transfer went wrong: raw bytes may still be on their way, so the
    /// connection cannot go back to lines. It closes once its output is written.
    pub fn fail_transfer(&mut self) {
        self.end_transfer();
        self.close_when_flushed("the transfer failed");
    }

    pub fn last_activity(&self) -> Option<Instant> {
        self.transfer().map(Transfer::last_activity)
    }

    /// Moves up to `n` raw bytes off the read buffer.
    pub fn take_raw(&mut self, n: usize) -> Vec<u8> {
        self.reader.take_raw(n)
    }

    // --- Closing ------------------------------------------------------------

    /// The connection is to be closed at the next chance.
    pub fn doom(&mut self, reason: impl Into<String>) {
        self.state = State::Doomed(reason.into());
    }

    /// The connection closes once its output is written.
    pub fn close_when_flushed(&mut self, reason: &'static str) {
        if !matches!(self.state, State::Doomed(_)) {
            self.state = State::Flushing(reason);
        }
    }

    pub fn note_eof(&mut self) {
        self.eof = true;
    }

    /// Why the connection must close now, if it must.
    pub fn close_reason(&self) -> Option<String> {
        match &self.state {
            State::Doomed(reason) => return Some(reason.clone()),
            State::Flushing(reason) if !self.output_pending() => return Some((*reason).to_owned()),
            State::Transferring {
                transfer: Transfer::Upload(u),
                ..
            } if self.eof && u.remaining() > 0 => {
                return Some(format!("upload cut short after {} of {} bytes", u.handed, u.size));
            }
            _ => {}
        }
        let serving = matches!(self.state, State::Serving(_));
        (self.eof && !serving && !self.output_pending()).then(|| "closed by peer".to_owned())
    }

    /// Takes what the connection was doing, for the reactor to clean up.
    pub fn into_transfer(self) -> (Option<Transfer>, Transport, Option<Interest>) {
        let transfer = match self.state {
            State::Transferring { transfer, .. } => Some(transfer),
            _ => None,
        };
        (transfer, self.transport, self.registered)
    }

    // --- Reading ------------------------------------------------------------

    /// Bytes read and not yet taken.
    pub fn buffered(&self) -> usize {
        self.reader.buffered()
    }

    /// Whether to read more from the socket now.
    pub fn wants_read(&self, max_out: usize, pause_at: usize) -> bool {
        if self.eof {
            return false;
        }
        match &self.state {
            State::Doomed(_) | State::Flushing(_) => false,
            State::Transferring { transfer, .. } => match transfer {
                Transfer::Upload(u) => u.wants_bytes() && self.buffered() < CHUNK,
                // What follows a download is buffered, boundedly, and served after it.
                Transfer::Download(_) => self.buffered() < pause_at,
                Transfer::AwaitReady(_) => self.pending_out() < max_out,
            },
            // A client that does not read its replies gets no more requests served.
            State::Ready => self.pending_out() < max_out,
            // With a request in flight, buffer at most a bounded amount of what follows.
            State::Serving(_) => self.pending_out() < max_out && self.buffered() < pause_at,
        }
    }

    /// Reads until the socket would block, the peer closes, or `limit` bytes
    /// are buffered. Returns how many bytes arrived and the socket's state.
    /// `scratch` is the reactor's reusable read buffer (zeroing a fresh one
    /// on every read showed in profiles).
    pub fn read_available(&mut self, limit: usize, scratch: &mut [u8]) -> io::Result<(usize, ReadStatus)> {
        let mut total = 0;
        let mut now = None;
        while self.reader.buffered() < limit {
            match self.transport.read(scratch) {
                Ok(0) => return Ok((total, ReadStatus::Closed)),
                Ok(n) => {
                    self.reader.extend(&scratch[..n]);
                    total += n;
                    let now = *now.get_or_insert_with(Instant::now);
                    self.arrivals.read(n, now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Ok((total, ReadStatus::Closed))
                }
                Err(e) => return Err(e),
            }
        }
        Ok((total, ReadStatus::Open))
    }

    /// How long the next line to be taken has waited since it was read.
    pub fn next_line_waited(&mut self, now: Instant) -> Duration {
        self.arrivals.waited(self.reader.buffered(), now)
    }

    // --- Writing ------------------------------------------------------------

    /// Bytes queued and not yet written.
    pub fn pending_out(&self) -> usize {
        self.wbuf.len() - self.written
    }

    /// Queues bytes for writing.
    pub fn queue(&mut self, bytes: &[u8]) {
        self.wbuf.extend_from_slice(bytes);
    }

    /// Queues a direct reply in this connection's dialect.
    pub fn reply(&mut self, msg: &Outgoing, req_id: Option<&ReqId>) {
        if let Some(error) = msg.error_info() {
            self.metrics.count_error(error.code);
            // Old clients exit on error codes they do not know (compat).
            let told = compat::old_client_error(
                self.dialect(),
                self.used_parley_codes,
                error.code.code(),
                error.request.map(Kind::code),
            );
            match told.and_then(ErrorCode::from_code) {
                Some(code) if code == error.code => {}
                Some(code) => {
                    let closest = Outgoing::error(code, error.msg.clone(), error.request);
                    let line = closest.encode(self.dialect(), req_id);
                    self.trace_out(&line);
                    self.queue(&line);
                    return;
                }
                None => {
                    log::debug!("{} not told to an old client: {}", error.code.name(), error.msg);
                    return;
                }
            }
        }
        let line = msg.encode(self.dialect(), req_id);
        self.trace_out(&line);
        self.queue(&line);
    }

    /// Queues a push (held back during a download). False, and the
    /// connection doomed, if it would take the output past `max_out`: a
    /// client that does not read its pushes is cut off.
    pub fn deliver(&mut self, line: &[u8], max_out: usize) -> bool {
        if self.pending_out() + self.held.len() + line.len() > max_out {
            self.doom("too slow reading its messages");
            self.metrics
                .slow_consumer_disconnects
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return false;
        }
        self.metrics
            .pushes_delivered
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.trace_out(line);
        let holds = matches!(
            self.transfer(),
            Some(Transfer::AwaitReady(_) | Transfer::Download(_))
        );
        if holds {
            self.held.extend_from_slice(line);
        } else {
            self.queue(line);
        }
        true
    }

    /// Bytes queued here or below (TLS records) and not yet written.
    pub fn output_pending(&self) -> bool {
        self.pending_out() > 0 || self.transport.wants_write()
    }

    /// Writes queued bytes until done or the socket would block.
    pub fn flush(&mut self) -> io::Result<()> {
        loop {
            let mut progressed = false;
            while self.written < self.wbuf.len() {
                match self.transport.write(&self.wbuf[self.written..]) {
                    // TLS's buffer is full: its records go out first.
                    Ok(0) => break,
                    Ok(n) => {
                        self.written += n;
                        progressed = true;
                        self.metrics
                            .outbound_bytes
                            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            match self.transport.send_records() {
                Ok(n) => progressed |= n > 0,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
            // Done, or the socket takes no more for now.
            if (self.written == self.wbuf.len() && !self.transport.wants_write()) || !progressed {
                break;
            }
        }
        if self.written == self.wbuf.len() {
            self.wbuf.clear();
            self.written = 0;
        } else if self.written > self.wbuf.len() / 2 {
            // Keep the buffer from growing with bytes already sent.
            self.wbuf.drain(..self.written);
            self.written = 0;
        }
        Ok(())
    }

    // --- Readiness ----------------------------------------------------------

    /// Registers the socket, readable, for the first time.
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(self.transport.source_mut(), token, Interest::READABLE)?;
        self.registered = Some(Interest::READABLE);
        Ok(())
    }

    /// Brings the registered interest in line with what the connection
    /// needs now: reading if it `wants_read`, writing while output waits.
    pub fn update_interest(&mut self, registry: &Registry, token: Token, wants_read: bool) -> io::Result<()> {
        let read = wants_read.then_some(Interest::READABLE);
        let write = self.output_pending().then_some(Interest::WRITABLE);
        let wanted = match (read, write) {
            (Some(r), Some(w)) => Some(r | w),
            (r, w) => r.or(w),
        };
        if wanted == self.registered {
            return Ok(());
        }
        match (self.registered, wanted) {
            (None, Some(i)) => registry.register(self.transport.source_mut(), token, i)?,
            (Some(_), Some(i)) => registry.reregister(self.transport.source_mut(), token, i)?,
            (Some(_), None) => registry.deregister(self.transport.source_mut())?,
            (None, None) => {}
        }
        self.registered = wanted;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::net::TcpStream;

    fn conn() -> (Conn, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (
            Conn::new(
                Transport::plain(TcpStream::from_std(server)),
                peer,
                1024,
                Arc::default(),
            ),
            client,
        )
    }

    fn download(id: u64) -> Download {
        Download {
            id,
            size: 10,
            requested: 0,
            queued: 0,
            last_activity: Instant::now(),
        }
    }

    #[test]
    fn one_request_at_a_time_then_ready_again() {
        let (mut c, _peer) = conn();
        assert!(c.takes_requests(100));
        c.begin_request(InFlight::new(Kind::Msg, None));
        assert!(!c.takes_requests(100) && !c.is_ready());
        assert_eq!(c.finish_request(), None);
        assert!(c.is_ready() && c.close_reason().is_none());
    }

    #[test]
    fn a_download_holds_pushes_until_it_ends_and_a_token_transfer_closes_after() {
        let (mut c, _peer) = conn();
        assert!(!c.start_download(), "no download offered");
        c.offer_download(download(1), true);
        assert!(c.takes_requests(100), "RQ_READY_READ (or anything) may come");
        assert!(c.start_download());
        assert!(!c.takes_requests(100), "raw bytes go out now");
        assert!(c.deliver(b"{\"type\":\"RQ_MSG\"}\n", 1000));
        assert_eq!(c.pending_out(), 0, "held back during the bytes");
        assert_eq!(c.end_transfer().map(|t| t.id()), Some(1));
        assert!(c.pending_out() > 0, "released after them");
        assert!(c.close_reason().is_none(), "not before its output is written");
        c.flush().unwrap();
        assert_eq!(c.close_reason().as_deref(), Some("transfer finished"));
    }

    #[test]
    fn a_client_that_does_not_read_is_doomed() {
        let (mut c, _peer) = conn();
        assert!(c.deliver(&[b'x'; 60], 100));
        assert!(!c.deliver(&[b'x'; 60], 100));
        assert_eq!(c.close_reason().as_deref(), Some("too slow reading its messages"));
        assert!(!c.wants_read(1000, 1000));
    }

    #[test]
    fn end_of_input_closes_once_nothing_is_under_way() {
        let (mut c, _peer) = conn();
        c.begin_request(InFlight::new(Kind::Msg, None));
        c.note_eof();
        assert!(c.close_reason().is_none(), "its answer is still due");
        c.finish_request();
        assert_eq!(c.close_reason().as_deref(), Some("closed by peer"));
    }
}
