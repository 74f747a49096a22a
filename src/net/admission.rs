//! Admission of accepted connections to the HTTP phase (before any WebSocket upgrade): at most
//! `http_connections_per_shard_max` such connections per shard, and at most
//! `http_connections_per_ip_max` of them from one source address (an IPv4 address, or an IPv6
//! /64, the block one host usually holds). A connection over either cap gets a short 503 and is
//! closed at once, before any task, buffer or io_uring op is spent on it. Connections from the
//! configured load balancers and proxies (`http_trusted_proxies`) are held to the shard's cap
//! only: every client behind one arrives from its address.
//!
//! Invariants: an admitted connection holds an [`HttpSlot`] until it upgrades or closes, and the
//! slot's drop gives its place back (on every path: a task's end, an upgrade, a runtime drop);
//! `per_source` holds only sources with at least one connection, so it is bounded by the
//! per-shard cap. Touched only by the shard's thread.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::rc::Rc;

use crate::http::response;
use crate::metrics;
use crate::shard::Shard;

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The shard holds `http_connections_per_shard_max` HTTP-phase connections.
    Shard,
    /// Its source holds `http_connections_per_ip_max` of them.
    Source,
}

/// A shard's HTTP-phase connections: how many, and how many per source.
#[derive(Debug, Default)]
pub struct HttpPhase {
    count: Cell<usize>,
    per_source: RefCell<HashMap<IpAddr, usize>>,
    /// `http_trusted_proxies`, parsed once (validated at start).
    trusted: std::cell::OnceCell<Vec<ipnet::IpNet>>,
}

impl HttpPhase {
    /// True when `peer` is one of `config`'s trusted proxies.
    pub fn is_trusted(&self, config: &crate::config::Config, peer: IpAddr) -> bool {
        let trusted = self.trusted.get_or_init(|| config.trusted_proxies().unwrap_or_default());
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            IpAddr::V4(_) => peer,
        };
        trusted.iter().any(|net| net.contains(&peer))
    }

    /// Takes a place for a connection from `source` (see [`source_of`]) if both caps allow it.
    pub fn enter(
        &self,
        source: IpAddr,
        per_shard_max: usize,
        per_source_max: usize,
    ) -> Result<(), Refused> {
        if self.count.get() >= per_shard_max {
            return Err(Refused::Shard);
        }
        let mut per_source = self.per_source.borrow_mut();
        let held = per_source.entry(source).or_insert(0);
        if *held >= per_source_max {
            if *held == 0 {
                per_source.remove(&source);
            }
            return Err(Refused::Source);
        }
        *held += 1;
        self.count.set(self.count.get() + 1);
        Ok(())
    }

    /// Gives back a place taken by [`HttpPhase::enter`] for `source`.
    pub fn leave(&self, source: IpAddr) {
        let mut per_source = self.per_source.borrow_mut();
        if let Some(held) = per_source.get_mut(&source) {
            *held -= 1;
            if *held == 0 {
                per_source.remove(&source);
            }
            self.count.set(self.count.get() - 1);
        }
    }

    /// HTTP-phase connections now.
    pub fn len(&self) -> usize {
        self.count.get()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sources with HTTP-phase connections now.
    pub fn sources(&self) -> usize {
        self.per_source.borrow().len()
    }
}

/// The key an address is capped under: an IPv4 address (IPv4-mapped IPv6 included) as is, an
/// IPv6 address's /64 prefix.
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u64::MAX as u128))),
        },
    }
}

/// An admitted connection's place in the HTTP phase; given back when dropped.
pub struct HttpSlot {
    shard: Rc<Shard>,
    source: IpAddr,
}

impl Drop for HttpSlot {
    fn drop(&mut self) {
        self.shard.conn.http.leave(self.source);
        metrics::dec(&self.shard.metrics.http_phase_connections);
    }
}

/// Admits a connection from `peer` to the shard's HTTP phase, or says which cap refused it
/// (counted).
pub fn admit(shard: &Rc<Shard>, peer: IpAddr) -> Result<HttpSlot, Refused> {
    let source = source_of(peer);
    let config = &shard.config;
    let per_source_max = if shard.conn.http.is_trusted(config, peer) {
        usize::MAX
    } else {
        config.http_connections_per_ip_max
    };
    let entered =
        shard.conn.http.enter(source, config.http_connections_per_shard_max, per_source_max);
    match entered {
        Ok(()) => {
            metrics::inc(&shard.metrics.http_phase_connections);
            Ok(HttpSlot { shard: shard.clone(), source })
        }
        Err(refused) => {
            metrics::inc(match refused {
                Refused::Shard => &shard.metrics.http_refused_shard_cap_total,
                Refused::Source => &shard.metrics.http_refused_ip_cap_total,
            });
            Err(refused)
        }
    }
}

/// Answers a refused connection without waiting: reads and drops what the client already sent
/// (so that the close that follows is a FIN, not a reset that could destroy the answer), then
/// one nonblocking send of a short 503 (nothing if the socket's buffer cannot take it). The
/// caller then drops the stream, which closes it: no io_uring op was ever started on it.
pub fn refuse(stream: &impl std::os::fd::AsRawFd, refused: Refused) {
    use std::mem::MaybeUninit;
    use std::os::fd::BorrowedFd;
    // SAFETY: the caller's stream owns the descriptor and outlives this call.
    let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    let socket = socket2::SockRef::from(&fd);
    let mut scratch = [MaybeUninit::<u8>::uninit(); 2048];
    for _ in 0..4 {
        match socket.recv_with_flags(&mut scratch, libc::MSG_DONTWAIT) {
            Ok(n) if n == scratch.len() => continue,
            _ => break,
        }
    }
    let message = match refused {
        Refused::Shard => "this server has too many connections waiting; try again later",
        Refused::Source => "too many connections from your address; try again later",
    };
    let answer = response::json_error(503, "too_many_connections", message, false);
    let _ = socket.send_with_flags(&answer, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn caps_per_shard_and_per_source() {
        let phase = HttpPhase::default();
        let (a, b, c) = (ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3"));
        assert_eq!(phase.enter(a, 3, 2), Ok(()));
        assert_eq!(phase.enter(a, 3, 2), Ok(()));
        assert_eq!(phase.enter(a, 3, 2), Err(Refused::Source));
        assert_eq!(phase.enter(b, 3, 2), Ok(()));
        assert_eq!(phase.enter(c, 3, 2), Err(Refused::Shard));
        assert_eq!((phase.len(), phase.sources()), (3, 2), "refusals take nothing");
        phase.leave(a);
        assert_eq!(phase.enter(c, 3, 2), Ok(()));
        for source in [a, b, c] {
            phase.leave(source);
        }
        assert!(phase.is_empty());
        assert_eq!(phase.sources(), 0, "sources without connections are forgotten");
        phase.leave(a);
        assert!(phase.is_empty(), "leaving without a place changes nothing");
    }

    #[test]
    fn trusted_proxies_are_networks_and_addresses() {
        let config = crate::config::Config {
            http_trusted_proxies: " 10.1.0.0/16, 192.0.2.9 ,fd00::/8".into(),
            ..crate::config::Config::default()
        };
        let phase = HttpPhase::default();
        for (peer, trusted) in [
            ("10.1.200.3", true),
            ("10.2.0.1", false),
            ("192.0.2.9", true),
            ("192.0.2.10", false),
            ("::ffff:10.1.0.1", true),
            ("fd12::1", true),
            ("2001:db8::1", false),
        ] {
            assert_eq!(phase.is_trusted(&config, ip(peer)), trusted, "{peer}");
        }
        assert!(!HttpPhase::default().is_trusted(&crate::config::Config::default(), ip("10.1.0.1")));
    }

    #[test]
    fn sources_are_ipv4_addresses_and_ipv6_64s() {
        assert_eq!(source_of(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(source_of(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(source_of(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")), ip("2001:db8:1:2::"));
        assert_eq!(source_of(ip("2001:db8:1:2::1")), source_of(ip("2001:db8:1:2::2")));
        assert_ne!(source_of(ip("2001:db8:1:2::1")), source_of(ip("2001:db8:1:3::1")));
        assert_eq!(source_of(ip("::1")), ip("::"));
    }
}
