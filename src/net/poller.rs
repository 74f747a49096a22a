//! The shard's readiness poller for WebSocket sockets: one epoll instance (through `mio`) that
//! holds every upgraded socket, edge-triggered for reading and writing, and is itself watched by
//! the shard's runtime. An idle connection therefore costs no task, no buffer and no operation
//! in flight — only its epoll entry in the kernel; reads go into one shared buffer per shard.
//!
//! Invariants: a socket is registered under its session's slot key and deregistered before
//! that key can be reused; events are drained until the poll returns fewer than it can hold.

use std::io;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::limits::POLLER_EVENTS_PER_POLL;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use tokio::io::unix::AsyncFd;

/// Registers and deregisters sockets (shared by the shard's tasks).
pub struct Poller {
    registry: mio::Registry,
}

/// The waiting side: owned by the one task that dispatches events.
pub struct Readiness {
    poll: AsyncFd<Poll>,
    events: Events,
}

/// What one event says about a socket.
#[derive(Debug, Clone, Copy)]
pub struct Ready {
    /// The session slot the socket was registered under.
    pub key: usize,
    /// Bytes (or the end of the stream, or an error) can be read.
    pub readable: bool,
    /// Its send buffer has room again.
    pub writable: bool,
}

impl Poller {
    /// A new epoll instance, registered with the current runtime's reactor.
    pub fn new() -> io::Result<(Poller, Readiness)> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        // SAFETY: `Poll` owns its epoll descriptor, which stays open and the same until the
        // `AsyncFd` (which owns the `Poll`) is dropped.
        let poll = unsafe { AsyncFd::register_with_interest(poll, tokio::io::Interest::READABLE) }
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok((
            Poller { registry },
            Readiness { poll, events: Events::with_capacity(POLLER_EVENTS_PER_POLL) },
        ))
    }

    /// Watches `socket` for reading and writing under `key`.
    pub fn register(&self, socket: &TcpStream, key: usize) -> io::Result<()> {
        let fd = socket.as_raw_fd();
        self.registry.register(
            &mut SourceFd(&fd),
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        )
    }

    /// Stops watching `socket`.
    pub fn deregister(&self, socket: &TcpStream) {
        let fd = socket.as_raw_fd();
        let _ = self.registry.deregister(&mut SourceFd(&fd));
    }
}

impl Readiness {
    /// Waits until some socket may be ready.
    pub async fn wait(&mut self) -> io::Result<()> {
        let mut guard = self.poll.readable().await?;
        // Cleared before draining: an event that arrives after this wakes us again.
        guard.clear_ready();
        Ok(())
    }

    /// Takes the events that are ready now (without blocking) and hands each to `on_ready`;
    /// repeats while polls come back full.
    pub fn drain(&mut self, mut on_ready: impl FnMut(Ready)) -> io::Result<()> {
        loop {
            match self.poll.get_mut().poll(&mut self.events, Some(Duration::ZERO)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let mut count = 0;
            for event in self.events.iter() {
                count += 1;
                on_ready(Ready {
                    key: event.token().0,
                    readable: event.is_readable() || event.is_read_closed() || event.is_error(),
                    writable: event.is_writable() || event.is_write_closed(),
                });
            }
            if count < POLLER_EVENTS_PER_POLL {
                return Ok(());
            }
        }
    }
}
