//! A client's blocking byte stream, plain TCP or TLS, in two halves that
//! two threads may use at once (one reading pushes, one writing requests).
//!
//! For TLS the socket is split the same way, and the rustls session is
//! shared under a lock that is never held while waiting on the network:
//! the reader waits for bytes without it, then takes it to decrypt them,
//! and records to send are taken out under it and written after. A second
//! lock keeps the records of both halves in order on the wire.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use rustls::{ClientConfig, ClientConnection};
use rustls_pki_types::ServerName;

/// The longest a TLS handshake may take when connecting.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How a client connects: plain TCP, or TLS trusting a given CA.
#[derive(Clone)]
pub struct Connector {
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.tls {
            None => f.write_str("plain TCP"),
            Some((_, name)) => write!(f, "TLS to {name:?}"),
        }
    }
}

impl Connector {
    pub fn plain() -> Connector {
        Connector { tls: None }
    }

    /// TLS to `addr` (`host:port`), whose certificate must chain to the CA
    /// certificate in the PEM file `ca` and name `host`.
    pub fn tls(addr: &str, ca: &Path) -> anyhow::Result<Connector> {
        Ok(Connector {
            tls: Some((crate::tls::client_config(ca)?, crate::tls::server_name(addr)?)),
        })
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A new TLS session for a connection driven elsewhere (a non-blocking
    /// socket under mio, say); `None` for plain TCP.
    pub fn session(&self) -> io::Result<Option<ClientConnection>> {
        match &self.tls {
            None => Ok(None),
            Some((config, name)) => ClientConnection::new(config.clone(), name.clone())
                .map(Some)
                .map_err(io::Error::other),
        }
    }

    /// Connects and returns the two halves.
    pub fn connect(&self, addr: &str) -> io::Result<(ReadHalf, WriteHalf)> {
        self.wrap(TcpStream::connect(addr)?)
    }

    /// The two halves of an already connected socket.
    pub fn wrap(&self, socket: TcpStream) -> io::Result<(ReadHalf, WriteHalf)> {
        socket.set_nodelay(true)?;
        let session = match &self.tls {
            None => None,
            Some((config, name)) => {
                let session =
                    ClientConnection::new(config.clone(), name.clone()).map_err(io::Error::other)?;
                Some(Arc::new(Session {
                    tls: Mutex::new(session),
                    sending: Mutex::new(()),
                }))
            }
        };
        if let Some(session) = &session {
            // A server that never answers must not hold a connect forever.
            let timeout = socket.read_timeout()?;
            socket.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
            session.handshake(&socket)?;
            socket.set_read_timeout(timeout)?;
        }
        let read = ReadHalf {
            socket: socket.try_clone()?,
            session: session.clone(),
        };
        Ok((read, WriteHalf { socket, session }))
    }
}

/// A TLS session both halves use.
struct Session {
    tls: Mutex<ClientConnection>,
    /// Held from taking records out of `tls` until they are written.
    sending: Mutex<()>,
}

impl Session {
    /// Writes every record the session has for the socket, in order,
    /// without holding the session while the socket takes them.
    fn send_records(&self, mut socket: &TcpStream) -> io::Result<()> {
        let _sending = self.sending.lock();
        let mut records = Vec::new();
        {
            let mut tls = self.tls.lock();
            while tls.wants_write() {
                tls.write_tls(&mut records)?;
            }
        }
        socket.write_all(&records)
    }
}

impl Session {
    /// Completes the handshake before anything else, so that a certificate
    /// the client does not trust is reported when connecting, with why.
    fn handshake(&self, mut socket: &TcpStream) -> io::Result<()> {
        let mut raw = [0u8; 4096];
        while self.tls.lock().is_handshaking() {
            self.send_records(socket)?;
            let n = socket.read(&mut raw)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection during the TLS handshake (is it serving TLS?)",
                ));
            }
            let mut tls = self.tls.lock();
            let mut bytes = &raw[..n];
            while !bytes.is_empty() {
                tls.read_tls(&mut bytes)?;
                tls.process_new_packets().map_err(|e| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("TLS handshake failed: {e}"))
                })?;
            }
        }
        self.send_records(socket)
    }
}

/// The reading half.
pub struct ReadHalf {
    socket: TcpStream,
    session: Option<Arc<Session>>,
}

/// The writing half.
pub struct WriteHalf {
    socket: TcpStream,
    session: Option<Arc<Session>>,
}

impl ReadHalf {
    /// The socket itself (for timeouts, shutdown).
    pub fn socket(&self) -> &TcpStream {
        &self.socket
    }
}

impl WriteHalf {
    pub fn socket(&self) -> &TcpStream {
        &self.socket
    }
}

impl Read for ReadHalf {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(session) = &self.session else {
            return self.socket.read(buf);
        };
        let mut raw = [0u8; 4096];
        loop {
            {
                let mut tls = session.tls.lock();
                match tls.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) => return Err(e),
                }
            }
            // The handshake's own messages, before waiting for the server's.
            session.send_records(&self.socket)?;
            let n = self.socket.read(&mut raw)?;
            if n == 0 {
                return Ok(0);
            }
            {
                let mut tls = session.tls.lock();
                let mut bytes = &raw[..n];
                while !bytes.is_empty() {
                    tls.read_tls(&mut bytes)?;
                    tls.process_new_packets()
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                }
            }
            session.send_records(&self.socket)?;
        }
    }
}

impl Write for WriteHalf {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let Some(session) = &self.session else {
            return self.socket.write(data);
        };
        let n = session.tls.lock().writer().write(data)?;
        session.send_records(&self.socket)?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &self.session {
            None => self.socket.flush(),
            Some(session) => session.send_records(&self.socket),
        }
    }
}
