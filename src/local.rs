//! Local connections: front ends inside the server (the ngobrol bridge)
//! that speak the protocol to the reactor over one end of a Unix socket
//! pair. The reactor serves the other end exactly as it serves a TCP client
//! (framing, limits, rate limits, the connection's state machine, the
//! handlers), so nothing past the transport can tell which front end a
//! request came from.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use mio::Waker;

/// The address local connections count as, for logs and per-address limits:
/// they all come through the server itself, whose front end cannot see the
/// people behind it (a broker, for the bridge), so they share one.
pub const LOCAL_PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// Opens local connections to a running reactor; cheap to clone.
#[derive(Clone)]
pub struct LocalConnector {
    streams: Sender<mio::net::UnixStream>,
    waker: Arc<Waker>,
}

/// The reactor's side: the server ends of new local connections.
pub type LocalArrivals = Receiver<mio::net::UnixStream>;

/// A connector and the reactor's end of it.
pub fn channel(waker: Arc<Waker>) -> (LocalConnector, LocalArrivals) {
    // Unbounded: each connection is a front end's deliberate act, and the
    // reactor takes them all on its next pass.
    let (streams, arrivals) = crossbeam_channel::unbounded();
    (LocalConnector { streams, waker }, arrivals)
}

impl LocalConnector {
    /// A new connection to the server: returns the client's end (blocking,
    /// until the caller changes it). Fails once the server has stopped.
    pub fn connect(&self) -> io::Result<UnixStream> {
        let (client, server) = UnixStream::pair()?;
        server.set_nonblocking(true)?;
        self.streams
            .send(mio::net::UnixStream::from_std(server))
            .map_err(|_| io::Error::new(io::ErrorKind::NotConnected, "the server has stopped"))?;
        self.waker.wake()?;
        Ok(client)
    }
}
