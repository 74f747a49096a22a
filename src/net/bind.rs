//! Claiming the listen address for one server: the address lock, the check that nobody serves
//! the address yet, and the shards' `SO_REUSEPORT` sockets.
//!
//! `SO_REUSEPORT` lets any process of the same user bind a served address and take a share of
//! its connections, so a second `roomcast serve` would start and split the traffic. A server
//! therefore, before it touches its data directory:
//! 1. takes the **address lock**: an abstract Unix socket named after the TCP port
//!    (`@roomcast/listen/tcp/<port>`). One process in the network namespace (the scope of the
//!    port itself) can bind the name; the kernel frees it when the socket closes, on `kill -9`
//!    too. Of two servers starting at once, one loses this bind.
//! 2. checks the address with a plain bind (`SO_REUSEADDR` for TIME_WAIT, no `SO_REUSEPORT`),
//!    which fails while any socket listens there: another program, or a server without the lock.
//! 3. binds one `SO_REUSEPORT` socket per shard, which listen only once the shards are ready
//!    ([`Sockets::listen`]): until the store is recovered, connections are refused, not queued.
//!
//! Invariants: the lock is taken before the shards' sockets bind and is held as long as any
//! shard thread runs (each holds it); port 0 is resolved first (a plain bind picks a port no
//! socket holds), so the lock always names the real port. `ss -xlp | grep roomcast/listen`
//! shows which process holds a port's lock.
//! Limits: the lock is per port, not per address. The kernel lets `127.0.0.1:P` and `0.0.0.0:P`
//! (or `[::]:P`) share connections, so keying by port refuses those overlaps; it also refuses two
//! servers on two distinct addresses of one port, which would not overlap.

use std::io;
use std::net::SocketAddr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};

/// The address lock of one TCP port, held while its socket is open.
#[derive(Debug)]
pub struct AddressLock {
    _socket: UnixDatagram,
}

impl AddressLock {
    /// The abstract socket name of `port`'s lock.
    pub fn name(port: u16) -> String {
        format!("roomcast/listen/tcp/{port}")
    }

    /// Takes `addr`'s port lock; `Err` names the address when another server holds it.
    pub fn take(addr: SocketAddr) -> Result<AddressLock, String> {
        let name = Self::name(addr.port());
        let unix = UnixAddr::from_abstract_name(name.as_bytes())
            .map_err(|e| format!("listen on {addr}: the address lock @{name}: {e}"))?;
        match UnixDatagram::bind_addr(&unix) {
            Ok(socket) => Ok(AddressLock { _socket: socket }),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(format!(
                "listen on {addr}: port {} is already served by another roomcast process (it \
                 holds the lock @{name}; `ss -xlp | grep {name}` names it); stop that server or \
                 choose another --listen",
                addr.port()
            )),
            Err(e) => Err(format!("listen on {addr}: the address lock @{name}: {e}")),
        }
    }
}

/// The address, its lock and one bound (not yet listening) socket per shard.
#[derive(Debug)]
pub struct Claimed {
    /// The address, with the real port when port 0 was asked for.
    pub addr: SocketAddr,
    /// The port's lock; keep it while any shard serves.
    pub lock: AddressLock,
    /// The shards' sockets.
    pub sockets: Sockets,
}

/// One bound `SO_REUSEPORT` socket per shard, not listening yet.
#[derive(Debug)]
pub struct Sockets(Vec<socket2::Socket>);

impl Sockets {
    /// Starts listening on every socket (bound to `addr`): one listener per shard.
    pub fn listen(self, addr: SocketAddr) -> Result<Vec<std::net::TcpListener>, String> {
        let mut listeners = Vec::with_capacity(self.0.len());
        for socket in self.0 {
            socket.listen(4096).map_err(|e| format!("listen on {addr}: {e}"))?;
            listeners.push(socket.into());
        }
        Ok(listeners)
    }
}

/// Claims `addr` for a server of `shards` shards: the lock, the check, the bound sockets.
pub fn claim(addr: SocketAddr, shards: usize) -> Result<Claimed, String> {
    let (addr, lock) = if addr.port() == 0 {
        let probe = plain_socket(addr).map_err(|e| format!("listen on {addr}: {e}"))?;
        let addr = probe
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .ok_or_else(|| format!("listen on {addr}: no local address"))?;
        let lock = AddressLock::take(addr)?;
        (addr, lock)
    } else {
        let lock = AddressLock::take(addr)?;
        match plain_socket(addr) {
            Ok(_check) => {}
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                return Err(format!(
                    "listen on {addr}: the address is already in use by another process; stop \
                     it or choose another --listen"
                ))
            }
            Err(e) => return Err(format!("listen on {addr}: {e}")),
        }
        (addr, lock)
    };
    let sockets = (0..shards)
        .map(|_| reuseport_socket(addr))
        .collect::<io::Result<Vec<_>>>()
        .map_err(|e| format!("listen on {addr}: {e}"))?;
    Ok(Claimed { addr, lock, sockets: Sockets(sockets) })
}

fn new_socket(addr: SocketAddr) -> io::Result<socket2::Socket> {
    let domain = if addr.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    Ok(socket)
}

/// A socket bound to `addr` without `SO_REUSEPORT`: fails while anything listens there.
fn plain_socket(addr: SocketAddr) -> io::Result<socket2::Socket> {
    let socket = new_socket(addr)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// One shard's socket, bound with `SO_REUSEPORT` (the kernel spreads accepts over them).
fn reuseport_socket(addr: SocketAddr) -> io::Result<socket2::Socket> {
    let socket = new_socket(addr)?;
    socket.set_reuse_port(true)?;
    // Linux copies TCP_NODELAY to every accepted socket: one setsockopt per shard instead of
    // one per connection (a connect storm's syscalls).
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_of_a_port_is_refused_until_the_first_is_dropped() {
        let first = claim("127.0.0.1:0".parse().unwrap(), 2).expect("first claim");
        let addr = first.addr;
        assert_ne!(addr.port(), 0, "port 0 resolved");
        let refused = claim(addr, 2).expect_err("second claim");
        assert!(refused.contains("already served by another roomcast process"), "{refused}");
        let (lock, listeners) = (first.lock, first.sockets.listen(addr).expect("listens"));
        assert_eq!(listeners.len(), 2);
        assert!(claim(addr, 1).is_err(), "still held while listening");
        drop((lock, listeners));
        let again = claim(addr, 1).expect("free again");
        drop(again);
    }

    #[test]
    fn an_address_held_by_another_program_is_refused() {
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let refused = claim(other.local_addr().unwrap(), 1).expect_err("in use");
        assert!(refused.contains("already in use by another process"), "{refused}");
    }
}
