//! Opening many non-blocking connections, spread over several loopback
//! source addresses so that one address's ephemeral ports do not run out.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use socket2::{Domain, Socket, Type};

/// Connections per loopback source address: about a third of the
/// ephemeral port range (about 28,000), so binding finds a free port fast.
pub const CONNS_PER_SOURCE: usize = 10_000;

/// Linux's EINPROGRESS: a non-blocking connect under way.
const EINPROGRESS: i32 = 115;

/// The source address for the `index`-th connection to `target` when the
/// target is on loopback (else the system's choice): 127.0.0.x, a new `x`
/// every `CONNS_PER_SOURCE` connections, starting from `first` so that one
/// run's ports in TIME_WAIT do not crowd the next run's (a nearly full port
/// space made every bind slow, and then fail).
pub fn source_for(target: SocketAddr, index: usize, first: u8) -> Option<IpAddr> {
    match target.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => {
            let host = 1 + (first as usize + index / CONNS_PER_SOURCE) % 250;
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, host as u8)))
        }
        _ => None,
    }
}

/// A first source address that differs from run to run.
pub fn first_source() -> u8 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (nanos % 250) as u8
}

/// Starts a non-blocking connect; completion shows as writability.
pub fn connect(target: SocketAddr, source: Option<IpAddr>) -> io::Result<mio::net::TcpStream> {
    let socket = Socket::new(Domain::for_address(target), Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    if let Some(ip) = source {
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    match socket.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(EINPROGRESS) || e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    Ok(mio::net::TcpStream::from_std(socket.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_spread_over_loopback_only() {
        let local: SocketAddr = "127.0.0.1:7700".parse().unwrap();
        assert_eq!(source_for(local, 0, 0), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(
            source_for(local, CONNS_PER_SOURCE, 0),
            Some("127.0.0.2".parse().unwrap())
        );
        assert_eq!(source_for(local, 0, 249), Some("127.0.0.250".parse().unwrap()));
        assert_eq!(
            source_for(local, CONNS_PER_SOURCE, 249),
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(source_for("10.1.2.3:7700".parse().unwrap(), 99_999, 0), None);
    }
}
