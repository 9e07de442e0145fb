//! One client connection's state: socket, line reader, bounded output, session.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::TcpStream;
use mio::Interest;

use crate::compat::Dialect;
use crate::framing::LineReader;
use crate::job::Session;
use crate::protocol::{Kind, Outgoing, ReqId};
use crate::transfer::Mode;

/// Size of one socket read.
pub const READ_CHUNK: usize = 64 * 1024;

/// The request a connection is waiting on (one at a time keeps replies in order).
#[derive(Debug)]
pub struct InFlight {
    pub kind: Kind,
    pub req_id: Option<ReqId>,
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
    pub socket: TcpStream,
    pub peer: SocketAddr,
    pub reader: LineReader,
    /// Bytes waiting to be written; `written` of them already are.
    wbuf: Vec<u8>,
    written: usize,
    /// Set by the first request; `None` until then (answered in names).
    pub dialect: Option<Dialect>,
    /// The connection has sent a request with a Parley code (see `compat`).
    pub used_parley_codes: bool,
    pub session: Option<Session>,
    pub in_flight: Option<InFlight>,
    /// The peer will send nothing more.
    pub peer_closed: bool,
    /// Why the reactor must close this connection at the next chance.
    pub doomed: Option<String>,
    /// The interest currently registered with the poll (`None`: deregistered).
    pub registered: Option<Interest>,
    /// Lines, or a raw file transfer.
    pub mode: Mode,
    /// Pushes held back while a download's raw bytes go out.
    pub held: Vec<u8>,
    /// Close once everything queued is written (a token-only transfer ended).
    pub close_when_flushed: bool,
    /// Close when the current transfer ends (it was authorized by token only).
    pub close_after_transfer: bool,
}

impl Conn {
    pub fn new(socket: TcpStream, peer: SocketAddr, max_line: usize) -> Conn {
        Conn {
            socket,
            peer,
            reader: LineReader::new(max_line),
            wbuf: Vec::new(),
            written: 0,
            dialect: None,
            used_parley_codes: false,
            session: None,
            in_flight: None,
            peer_closed: false,
            doomed: None,
            registered: None,
            mode: Mode::Lines,
            held: Vec::new(),
            close_when_flushed: false,
            close_after_transfer: false,
        }
    }

    /// Not logged in, and nothing under way that closing would cut short.
    pub fn is_idle_anonymous(&self) -> bool {
        self.session.is_none() && self.in_flight.is_none() && matches!(self.mode, Mode::Lines)
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect.unwrap_or(Dialect::Names)
    }

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
        let line = msg.encode(self.dialect(), req_id);
        self.queue(&line);
    }

    /// Reads until the socket would block, the peer closes, or `limit` bytes
    /// are buffered. Returns how many bytes arrived and the socket's state.
    /// `scratch` is the reactor's reusable read buffer (zeroing a fresh one
    /// on every read showed in profiles).
    pub fn read_available(&mut self, limit: usize, scratch: &mut [u8]) -> io::Result<(usize, ReadStatus)> {
        let mut total = 0;
        while self.reader.buffered() < limit {
            match self.socket.read(scratch) {
                Ok(0) => return Ok((total, ReadStatus::Closed)),
                Ok(n) => {
                    self.reader.extend(&scratch[..n]);
                    total += n;
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

    /// Writes queued bytes until done or the socket would block.
    pub fn flush(&mut self) -> io::Result<()> {
        while self.written < self.wbuf.len() {
            match self.socket.write(&self.wbuf[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
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

    /// The readiness this connection needs now, derived from its state.
    pub fn interest(&self, wants_read: bool) -> Option<Interest> {
        let read = wants_read.then_some(Interest::READABLE);
        let write = (self.pending_out() > 0).then_some(Interest::WRITABLE);
        match (read, write) {
            (Some(r), Some(w)) => Some(r | w),
            (r, w) => r.or(w),
        }
    }
}
