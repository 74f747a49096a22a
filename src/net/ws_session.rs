//! The shard's WebSocket sessions after the upgrade: one task reads every socket the poller
//! reports readable into a shared buffer, decodes frames, answers control frames, hands data
//! frames to the dialect, and tears sessions down.
//!
//! Invariants: an idle session holds no buffer and no decoder state (bytes of a partial frame
//! are copied out of the shared buffer into the session's `Partial`, dropped once it is idle);
//! a socket is read at most `WS_READS_PER_TURN` times per turn, so one busy client cannot starve
//! the others; every exit path deregisters the socket and detaches the connection from the
//! shard before its keys can be reused.

use std::cell::RefCell;
use std::io;
use std::net::TcpStream;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use bytes::BytesMut;
use slab::Slab;

use crate::dialect;
use crate::limits::{CLOSE_FLUSH_TIMEOUT, WS_READS_PER_TURN, WS_READ_SCRATCH_BYTES};
use crate::metrics;
use crate::model::ids::now_ms;
use crate::net::conn::Conn;
use crate::net::poller::{Poller, Readiness};
use crate::shard::Shard;
use crate::ws::codec::{Decoder, Incoming, WsLimits};
use crate::ws::frame;

/// One upgraded connection's reading state.
struct Session {
    conn: Rc<Conn>,
    /// A message or frame in progress; `None` (nothing allocated) between messages.
    partial: Option<Box<Partial>>,
    /// The dialect's state for this connection (no allocation for stateless dialects).
    protocol: Box<dyn dialect::Session>,
    /// The session is over and waits (bounded) for its last frames to be written.
    ending: bool,
}

impl Session {
    /// Keeps `state` for the next read if a frame or message is in progress, else drops it.
    fn keep(&mut self, state: Partial) {
        self.partial = (!state.is_idle()).then(|| Box::new(state));
    }
}

/// What a session keeps between reads while a message is incomplete.
struct Partial {
    decoder: Decoder,
    /// Bytes of a frame not yet complete.
    pending: BytesMut,
}

impl Partial {
    /// `conn`'s decoder (accepting compressed messages if it negotiated permessage-deflate).
    fn new(shard: &Shard, conn: &Conn) -> Partial {
        let limits = WsLimits {
            frame_bytes_max: shard.config.frame_bytes_max,
            message_bytes_max: shard.config.message_bytes_max,
        };
        let decoder = Decoder::new(limits).with_deflate(conn.deflate.inbound);
        Partial { decoder, pending: BytesMut::new() }
    }

    /// Nothing in progress: the session need not keep it.
    fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.decoder.is_idle()
    }
}

/// The shard's sessions, by the key their socket is registered under.
pub struct Sessions {
    poller: Poller,
    slots: RefCell<Slab<Session>>,
    /// The shared read buffer.
    scratch: RefCell<BytesMut>,
    /// Sessions whose socket still had bytes when their turn ended.
    again: RefCell<Vec<usize>>,
}

impl Sessions {
    /// No sessions yet; `poller` is the shard's.
    pub fn new(poller: Poller) -> Sessions {
        Sessions {
            poller,
            slots: RefCell::new(Slab::new()),
            scratch: RefCell::new(BytesMut::new()),
            again: RefCell::new(Vec::new()),
        }
    }

    /// Open sessions.
    pub fn len(&self) -> usize {
        self.slots.borrow().len()
    }

    /// True when no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Serves `conn` from now on; `leftover` holds bytes read past the HTTP head. The caller
    /// counted it in `connections`; the session's end uncounts it.
    /// `protocol` is the dialect's state for it; its `started` runs once the socket is watched.
    pub fn open(
        &self,
        shard: &Rc<Shard>,
        conn: Rc<Conn>,
        protocol: Box<dyn dialect::Session>,
        leftover: BytesMut,
    ) {
        metrics::inc(&shard.metrics.websockets);
        let session = Session { conn, partial: None, protocol, ending: false };
        let key = {
            let mut slots = self.slots.borrow_mut();
            let entry = slots.vacant_entry();
            let key = entry.key();
            let watched = self.poller.register(&session.conn.socket, key);
            entry.insert(session);
            if watched.is_err() {
                drop(slots);
                self.finish(shard, key);
                return;
            }
            key
        };
        {
            let slots = self.slots.borrow();
            if let Some(session) = slots.get(key) {
                let (conn, protocol) = (session.conn.clone(), &*session.protocol);
                protocol.started(shard, &conn);
            }
        }
        if leftover.is_empty() {
            return;
        }
        let mut slots = self.slots.borrow_mut();
        let Some(session) = slots.get_mut(key) else {
            return;
        };
        let mut state = Partial::new(shard, &session.conn);
        state.pending = leftover;
        let go_on = handle_frames(
            shard,
            &session.conn,
            &*session.protocol,
            &mut state.decoder,
            &mut state.pending,
        );
        session.keep(state);
        drop(slots);
        if !go_on {
            self.end(shard, key);
        }
    }

    /// Reads what socket `key` has (up to `WS_READS_PER_TURN` reads) and handles its frames.
    fn on_readable(&self, shard: &Rc<Shard>, key: usize) {
        let mut slots = self.slots.borrow_mut();
        let Some(session) = slots.get_mut(key) else {
            return;
        };
        if session.ending {
            return;
        }
        let mut scratch = self.scratch.borrow_mut();
        let initial = shard.config.read_buffer_bytes_initial;
        let mut go_on = true;
        let mut drained = false;
        let mut state =
            session.partial.take().map_or_else(|| Partial::new(shard, &session.conn), |p| *p);
        let (conn, protocol) = (&session.conn, &*session.protocol);
        for _ in 0..WS_READS_PER_TURN {
            let own = !state.pending.is_empty();
            let buf = if own { &mut state.pending } else { &mut *scratch };
            if own {
                if buf.capacity() - buf.len() < initial / 2 {
                    buf.reserve(buf.len().max(initial));
                }
            } else {
                buf.reserve(WS_READ_SCRATCH_BYTES);
            }
            let offered = buf.capacity() - buf.len();
            // TLS: ciphertext in, plaintext appended to `buf` (`tls::recv`).
            let received = match &conn.tls {
                None => recv(&conn.socket, buf).map(|n| (n, n < offered)),
                Some(tls) => crate::tls::recv(conn, tls, buf, &shard.metrics),
            };
            match received {
                Ok((0, _)) => go_on = false,
                Ok((n, short)) => {
                    metrics::add(&shard.metrics.bytes_in_total, n as u64);
                    go_on = handle_frames(shard, conn, protocol, &mut state.decoder, buf);
                    if !own && !scratch.is_empty() {
                        // Keep the partial frame, not the shared buffer.
                        let mut pending = BytesMut::with_capacity(scratch.len().max(initial));
                        pending.extend_from_slice(&scratch);
                        state.pending = pending;
                    }
                    scratch.clear();
                    // A short read took everything; bytes arriving later raise a new edge.
                    drained = short;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => drained = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => go_on = false,
            }
            if !go_on || drained {
                break;
            }
        }
        session.keep(state);
        drop((scratch, slots));
        if !go_on {
            self.end(shard, key);
        } else if !drained {
            self.again.borrow_mut().push(key);
        }
    }

    /// The poller saw socket `key` writable.
    fn on_writable(&self, key: usize) {
        let conn = self.slots.borrow().get(key).map(|s| s.conn.clone());
        if let Some(conn) = conn {
            conn.on_writable();
        }
    }

    /// Ends session `key`: at once, or once its queued frames (a close frame, typically) are
    /// written, within `CLOSE_FLUSH_TIMEOUT`.
    fn end(&self, shard: &Rc<Shard>, key: usize) {
        let conn = {
            let mut slots = self.slots.borrow_mut();
            let Some(session) = slots.get_mut(key) else {
                return;
            };
            if session.ending {
                return;
            }
            session.ending = true;
            session.partial = None;
            session.conn.clone()
        };
        // Only a close frame is worth waiting for; a peer that just went away gets nothing more.
        if !conn.is_closed() || !conn.has_unwritten() {
            self.finish(shard, key);
            return;
        }
        let shard = shard.clone();
        tokio_uring::spawn(async move {
            let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, conn.flushed()).await;
            shard.conn.ws.finish(&shard, key);
        });
    }

    /// Removes session `key`: deregisters and shuts its socket, detaches the connection.
    fn finish(&self, shard: &Rc<Shard>, key: usize) {
        let Some(session) = self.slots.borrow_mut().try_remove(key) else {
            return;
        };
        self.poller.deregister(&session.conn.socket);
        session.conn.kill();
        shard.detach(&session.conn);
        shard.metrics.websockets.fetch_sub(1, Ordering::Relaxed);
        metrics::dec(&shard.metrics.connections);
    }
}

/// The shard's session reader: dispatches readiness events for as long as the shard runs.
pub async fn run(shard: Rc<Shard>, mut readiness: Readiness) {
    loop {
        let again = std::mem::take(&mut *shard.conn.ws.again.borrow_mut());
        if again.is_empty() {
            if let Err(e) = readiness.wait().await {
                tracing::error!(shard = shard.id.get(), "session poller failed: {e}");
                return;
            }
        } else {
            for key in again {
                shard.conn.ws.on_readable(&shard, key);
            }
            tokio::task::yield_now().await;
        }
        let drained = readiness.drain(|ready| {
            if ready.writable {
                shard.conn.ws.on_writable(ready.key);
            }
            if ready.readable {
                shard.conn.ws.on_readable(&shard, ready.key);
            }
        });
        if let Err(e) = drained {
            tracing::error!(shard = shard.id.get(), "session poller failed: {e}");
            return;
        }
    }
}

/// Reads into the spare capacity of `buf` (the caller reserved it) without blocking.
fn recv(socket: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    let n = socket2::SockRef::from(socket).recv(buf.spare_capacity_mut())?;
    // SAFETY: `recv` initialised the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// Decodes and handles every complete frame in `buf`; false when the session must end.
fn handle_frames(
    shard: &Rc<Shard>,
    conn: &Rc<Conn>,
    protocol: &dyn dialect::Session,
    decoder: &mut Decoder,
    buf: &mut BytesMut,
) -> bool {
    loop {
        match decoder.decode(buf) {
            Ok(Some(incoming)) => {
                metrics::inc(&shard.metrics.frames_in_total);
                conn.last_seen_ms.set(now_ms());
                if !on_frame(shard, conn, protocol, incoming) {
                    return false;
                }
            }
            Ok(None) => return true,
            Err(error) => {
                metrics::inc(&shard.metrics.protocol_errors_total);
                conn.close(error.close_code, error.reason);
                return false;
            }
        }
    }
}

/// Handles one frame: control frames here, messages by the dialect; false ends the session.
fn on_frame(
    shard: &Rc<Shard>,
    conn: &Rc<Conn>,
    protocol: &dyn dialect::Session,
    incoming: Incoming,
) -> bool {
    match incoming {
        Incoming::Ping(payload) => {
            conn.send(frame::pong(&payload));
            true
        }
        Incoming::Pong(_) => true,
        Incoming::Close { code, .. } => {
            conn.answer_close(code);
            false
        }
        Incoming::Text(payload) => {
            protocol.on_text(shard, conn, &payload);
            true
        }
        Incoming::Binary(payload) => {
            protocol.on_binary(shard, conn, &payload);
            true
        }
    }
}
