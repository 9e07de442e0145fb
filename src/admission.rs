//! Caps on connections that have not logged in, per source address and in all.
//!
//! A log-in timeout alone is the wrong defence: the old uchat client opens
//! its connection before its log-in dialog and may sit there for minutes
//! (design.md §3, §5). Instead, anonymous connections are capped per address
//! (IPv6 by /64) and in total, and when a cap is reached the oldest idle
//! anonymous connection (of that address, or of all) is closed to make room
//! for the new one. So one address cannot hold the server's connection slots,
//! and a newcomer always gets in.
//!
//! The reactor owns this table and tells it when connections open, log in,
//! log out and close; the table only keeps order and counts, no sockets.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use crate::throttle::addr_key;

/// A connection, as the reactor names it.
pub type ConnKey = usize;

/// One address's anonymous connections, oldest first.
#[derive(Default)]
struct AddrConns {
    conns: VecDeque<ConnKey>,
    /// The cap was reported for this address (it is logged once, not per connection).
    reported: bool,
}

/// Why a connection must be closed to make room.
#[derive(Debug, PartialEq, Eq)]
pub enum Eviction {
    /// Its address has `max_per_addr` anonymous connections.
    AddrFull {
        conn: ConnKey,
        addr: IpAddr,
        first: bool,
    },
    /// The server has `max_total` anonymous connections.
    TotalFull { conn: ConnKey, first: bool },
}

/// The anonymous connections, by address and in opening order.
pub struct AnonymousConns {
    max_per_addr: usize,
    max_total: usize,
    by_addr: HashMap<IpAddr, AddrConns>,
    /// Every anonymous connection's address key.
    addr_of: HashMap<ConnKey, IpAddr>,
    /// Opening order over all addresses; may hold connections already gone
    /// (skipped when met), so it is compacted when it grows.
    order: VecDeque<ConnKey>,
    /// The total cap was reported and not yet relieved.
    total_reported: bool,
}

impl AnonymousConns {
    pub fn new(max_per_addr: usize, max_total: usize) -> AnonymousConns {
        AnonymousConns {
            max_per_addr: max_per_addr.max(1),
            max_total: max_total.max(1),
            by_addr: HashMap::new(),
            addr_of: HashMap::new(),
            order: VecDeque::new(),
            total_reported: false,
        }
    }

    pub fn len(&self) -> usize {
        self.addr_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.addr_of.is_empty()
    }

    /// Counts a new anonymous connection from `ip`. Returns the connections
    /// to close to make room for it: the oldest idle one of its address if
    /// that address is at its cap, else the oldest idle one overall if the
    /// total is at its cap. `is_idle` says whether a connection may be closed
    /// (one with a log-in under way may not). If none is idle, the newcomer
    /// itself is named.
    pub fn admit(
        &mut self,
        conn: ConnKey,
        ip: IpAddr,
        is_idle: impl Fn(ConnKey) -> bool,
    ) -> Option<Eviction> {
        let addr = addr_key(ip);
        let mut eviction = None;
        let at_addr_cap = self
            .by_addr
            .get(&addr)
            .is_some_and(|a| a.conns.len() >= self.max_per_addr);
        if at_addr_cap {
            let entry = self.by_addr.entry(addr).or_default();
            let first = !entry.reported;
            entry.reported = true;
            let victim = entry.conns.iter().copied().find(|c| is_idle(*c)).unwrap_or(conn);
            eviction = Some(Eviction::AddrFull {
                conn: victim,
                addr,
                first,
            });
        } else if self.addr_of.len() >= self.max_total {
            let first = !self.total_reported;
            self.total_reported = true;
            let victim = self
                .order
                .iter()
                .copied()
                .find(|c| self.addr_of.contains_key(c) && is_idle(*c))
                .unwrap_or(conn);
            eviction = Some(Eviction::TotalFull { conn: victim, first });
        }
        self.addr_of.insert(conn, addr);
        self.by_addr.entry(addr).or_default().conns.push_back(conn);
        self.order.push_back(conn);
        if self.order.len() > 2 * self.addr_of.len() + 64 {
            let live = &self.addr_of;
            self.order.retain(|c| live.contains_key(c));
        }
        eviction
    }

    /// The connection logged in or closed: it no longer counts.
    pub fn remove(&mut self, conn: ConnKey) {
        let Some(addr) = self.addr_of.remove(&conn) else {
            return;
        };
        if let Some(entry) = self.by_addr.get_mut(&addr) {
            entry.conns.retain(|c| *c != conn);
            if entry.conns.is_empty() {
                self.by_addr.remove(&addr);
            }
        }
        if self.addr_of.len() < self.max_total / 2 {
            self.total_reported = false;
        }
        while self.order.front().is_some_and(|c| !self.addr_of.contains_key(c)) {
            self.order.pop_front();
        }
    }

    /// The oldest anonymous connection that may be closed, of all addresses.
    pub fn oldest_idle(&self, is_idle: impl Fn(ConnKey) -> bool) -> Option<ConnKey> {
        self.order
            .iter()
            .copied()
            .find(|c| self.addr_of.contains_key(c) && is_idle(*c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 4] = [10, 0, 0, 1];
    const B: [u8; 4] = [10, 0, 0, 2];

    #[test]
    fn the_oldest_of_a_full_address_makes_room() {
        let mut t = AnonymousConns::new(2, 100);
        assert_eq!(t.admit(1, A.into(), |_| true), None);
        assert_eq!(t.admit(2, A.into(), |_| true), None);
        assert_eq!(t.admit(10, B.into(), |_| true), None);
        let e = t.admit(3, A.into(), |_| true);
        assert_eq!(
            e,
            Some(Eviction::AddrFull {
                conn: 1,
                addr: A.into(),
                first: true
            })
        );
        t.remove(1);
        // The next one is not reported again.
        assert!(matches!(
            t.admit(4, A.into(), |_| true),
            Some(Eviction::AddrFull {
                conn: 2,
                first: false,
                ..
            })
        ));
    }

    #[test]
    fn busy_connections_are_skipped_and_logged_in_ones_do_not_count() {
        let mut t = AnonymousConns::new(2, 100);
        t.admit(1, A.into(), |_| true);
        t.admit(2, A.into(), |_| true);
        assert!(matches!(
            t.admit(3, A.into(), |c| c != 1),
            Some(Eviction::AddrFull { conn: 2, .. })
        ));
        t.remove(2);
        t.remove(1); // logged in
        assert_eq!(t.admit(4, A.into(), |_| true), None);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn the_total_cap_closes_the_oldest_anywhere() {
        let mut t = AnonymousConns::new(10, 3);
        t.admit(1, A.into(), |_| true);
        t.admit(2, B.into(), |_| true);
        t.admit(3, B.into(), |_| true);
        assert!(matches!(
            t.admit(4, [10, 0, 0, 9].into(), |_| true),
            Some(Eviction::TotalFull { conn: 1, .. })
        ));
    }

    #[test]
    fn ipv6_hosts_share_their_64() {
        let mut t = AnonymousConns::new(1, 100);
        t.admit(1, "2001:db8::1".parse().unwrap(), |_| true);
        assert!(t.admit(2, "2001:db8::2".parse().unwrap(), |_| true).is_some());
        assert!(t.admit(3, "2001:db8:0:1::2".parse().unwrap(), |_| true).is_none());
    }
}
