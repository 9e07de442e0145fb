//! A connection's byte stream on a non-blocking socket: plain TCP, or TLS
//! (rustls) on top of it, with the handshake and records handled here so
//! that the connection above reads and writes plaintext either way.
//!
//! Nothing here blocks or spawns: TLS is driven by the same readiness
//! events as plain sockets, in the manner of rustls's `tlsserver-mio`.

use std::io::{self, Read, Write};

use mio::net::{TcpStream, UnixStream};

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Why a TLS connection failed, for the log.
#[derive(Debug)]
pub enum TlsFailure {
    /// The peer does not speak TLS at all (a plaintext client, say).
    NotTls,
    /// The handshake or a record was refused.
    Protocol(rustls::Error),
}

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsFailure::NotTls => f.write_str("the client does not speak TLS (plaintext on the TLS port?)"),
            TlsFailure::Protocol(e) => write!(f, "TLS: {e}"),
        }
    }
}

impl std::error::Error for TlsFailure {}

/// The TLS failure behind an I/O error, if that is what it is.
pub fn tls_failure(e: &io::Error) -> Option<&TlsFailure> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<TlsFailure>())
}

fn failure(kind: TlsFailure) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, kind)
}

pub enum Transport {
    Plain(TcpStream),
    Tls(Box<Tls>),
    /// A front end inside the server (`local`): one end of a socket pair.
    Local(UnixStream),
    /// A protocol spoken above plain TCP or TLS that still hands the
    /// connection plaintext lines (the web's HTTP and WebSocket).
    Layered(Box<dyn Layer>),
}

/// A protocol on top of a transport. It reads and writes the connection's
/// plaintext lines as a transport does, and keeps its own bytes for the
/// socket below (sent by `send_records`, like TLS records).
pub trait Layer {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Takes lines to send; 0 while too much waits for the socket.
    fn write(&mut self, data: &[u8]) -> io::Result<usize>;
    fn send_records(&mut self) -> io::Result<usize>;
    fn wants_write(&self) -> bool;
    /// The transport beneath.
    fn inner_mut(&mut self) -> &mut Transport;
}

pub struct Tls {
    socket: TcpStream,
    session: rustls::Connection,
    /// Whether any byte arrived yet (the first tells TLS from plaintext).
    started: bool,
}

impl Transport {
    pub fn plain(socket: TcpStream) -> Transport {
        Transport::Plain(socket)
    }

    pub fn tls(socket: TcpStream, session: impl Into<rustls::Connection>) -> Transport {
        Transport::Tls(Box::new(Tls {
            socket,
            session: session.into(),
            started: false,
        }))
    }

    /// The TCP socket beneath (none for local connections).
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Transport::Plain(s) => Some(s),
            Transport::Tls(t) => Some(&t.socket),
            Transport::Local(_) => None,
            Transport::Layered(_) => None,
        }
    }

    /// What the poll registers for readiness.
    pub fn source_mut(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(t) => &mut t.socket,
            Transport::Local(s) => s,
            Transport::Layered(l) => l.inner_mut().source_mut(),
        }
    }

    /// Reads plaintext. `Ok(0)` is the end of the stream; `WouldBlock`
    /// means nothing more for now (for TLS, records may still be partial).
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(t) => t.read(buf),
            Transport::Local(s) => s.read(buf),
            Transport::Layered(l) => l.read(buf),
        }
    }

    /// Hands plaintext over for sending; returns how much was taken (for
    /// TLS, 0 while its buffer is full: send records, then try again).
    pub fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => match s.write(data) {
                Ok(0) if !data.is_empty() => Err(io::ErrorKind::WriteZero.into()),
                other => other,
            },
            Transport::Tls(t) => t.session.writer().write(data),
            Transport::Layered(l) => l.write(data),
            Transport::Local(s) => match s.write(data) {
                Ok(0) if !data.is_empty() => Err(io::ErrorKind::WriteZero.into()),
                other => other,
            },
        }
    }

    /// Writes encrypted records to the socket until none wait or it would
    /// block (plain TCP has none); returns how many bytes went out.
    pub fn send_records(&mut self) -> io::Result<usize> {
        match self {
            Transport::Plain(_) | Transport::Local(_) => Ok(0),
            Transport::Tls(t) => t.send_records(),
            Transport::Layered(l) => l.send_records(),
        }
    }

    /// Whether bytes below the plaintext wait to be written.
    pub fn wants_write(&self) -> bool {
        match self {
            Transport::Plain(_) | Transport::Local(_) => false,
            Transport::Tls(t) => t.session.wants_write(),
            Transport::Layered(l) => l.wants_write(),
        }
    }
}

impl Tls {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.session.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // Closed without close_notify: the end of the stream all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if !self.started {
                let mut first = [0u8; 1];
                match self.socket.peek(&mut first) {
                    Ok(0) => return Ok(0),
                    Ok(_) if first[0] != TLS_HANDSHAKE_RECORD => {
                        self.discard_input();
                        return Err(failure(TlsFailure::NotTls));
                    }
                    Ok(_) => self.started = true,
                    Err(e) => return Err(e),
                }
            }
            match self.session.read_tls(&mut self.socket) {
                Ok(0) => return Ok(0),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
            if let Err(e) = self.session.process_new_packets() {
                // Tell the peer why (an alert), if the socket takes it.
                let _ = self.send_records();
                return Err(failure(TlsFailure::Protocol(e)));
            }
            // The handshake may have answers to send before any plaintext.
            match self.send_records() {
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
                _ => {}
            }
        }
    }

    fn send_records(&mut self) -> io::Result<usize> {
        let mut sent = 0;
        while self.session.wants_write() {
            match self.session.write_tls(&mut self.socket) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && sent > 0 => return Ok(sent),
                Err(e) => return Err(e),
            }
        }
        Ok(sent)
    }

    /// Reads and drops what the peer sent, so that closing ends the stream
    /// cleanly (closing with unread bytes would reset the connection).
    fn discard_input(&mut self) {
        let mut sink = [0u8; 4096];
        for _ in 0..16 {
            match self.socket.read(&mut sink) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
    }
}
