//! The shard's WebSocket sessions after the upgrade: each socket has one multishot receive
//! armed on the shard's own ring ([`crate::net::uring`]), whose completions hand bytes from the
//! shard's provided buffers; this module decodes frames, answers control frames, hands data
//! frames to the dialect, and tears sessions down.
//!
//! Invariants: an idle session holds no buffer, no decoder state and no task, and exactly one
//! operation in the kernel (its multishot receive); bytes of a partial frame are copied out of
//! the provided buffer into the session's `Partial`, dropped once it is idle. A receive that
//! stops (`ENOBUFS`, a full completion queue, or any completion without `F_MORE` that is not
//! the end) is re-armed at once. A slot is freed only after its receive and its send in flight
//! completed, and each slot's generation is in its operations' `user_data`, so no completion
//! reaches the next session in that slot; every exit path detaches the connection from the
//! shard first.

use std::cell::{Cell, RefCell};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use bytes::BytesMut;
use slab::Slab;

use crate::dialect;
use crate::limits::{CLOSE_FLUSH_TIMEOUT, WS_COMPLETIONS_PER_PASS};
use crate::metrics;
use crate::model::ids::now_ms;
use crate::net::conn::Conn;
use crate::net::uring::{Completion, Ring, Tag, Target};
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
    /// Its multishot receive is armed.
    recv_armed: bool,
    /// Detached and killed; the slot waits for its operations' last completions.
    finishing: bool,
}

impl Session {
    /// True when `tag` names this session (its identity on the ring is kept by its `Conn`).
    fn is(&self, tag: Tag) -> bool {
        self.conn.ring().is_some_and(|(own, _)| own.same(tag))
    }

    /// How the ring names its socket (a registered slot, or its descriptor).
    fn target(&self) -> Option<Target> {
        self.conn.ring().map(|(_, target)| target)
    }

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

/// The shard's sessions, by their slot key (the key in their ring tag).
pub struct Sessions {
    /// The shard's ring for WebSocket sockets.
    pub ring: Rc<Ring>,
    slots: RefCell<Slab<Session>>,
    /// The generation the next session gets.
    next_generation: Cell<u32>,
    /// Where bytes are decoded when no partial frame waits (its allocation is reused).
    scratch: RefCell<BytesMut>,
    /// The shared buffer TLS sessions decrypt into (plaintext of one completion).
    plaintext: RefCell<BytesMut>,
    /// Sessions holding a partial frame.
    partials: Cell<u64>,
}

impl Sessions {
    /// No sessions yet; `ring` is the shard's.
    pub fn new(ring: Rc<Ring>) -> Sessions {
        Sessions {
            ring,
            slots: RefCell::new(Slab::new()),
            next_generation: Cell::new(0),
            scratch: RefCell::new(BytesMut::new()),
            plaintext: RefCell::new(BytesMut::new()),
            partials: Cell::new(0),
        }
    }

    /// Open sessions (those whose last operations are still completing included).
    pub fn len(&self) -> usize {
        self.slots.borrow().len()
    }

    /// True when no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn count_partial(&self, shard: &Shard, before: bool, after: bool) {
        if before != after {
            let n = if after { self.partials.get() + 1 } else { self.partials.get() - 1 };
            self.partials.set(n);
            shard.metrics.ws_partial_frames.store(n, Ordering::Relaxed);
        }
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
        let generation = self.next_generation.get().wrapping_add(1);
        self.next_generation.set(generation);
        let key = {
            let mut slots = self.slots.borrow_mut();
            let entry = slots.vacant_entry();
            let key = entry.key();
            let tag = Tag { key: key as u32, generation };
            let target = self.ring.register(conn.socket.as_raw_fd(), tag);
            entry.insert(Session {
                conn: conn.clone(),
                partial: None,
                protocol,
                ending: false,
                recv_armed: true,
                finishing: false,
            });
            self.ring.arm_recv(target, tag);
            conn.serve_as(tag, target);
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
        let kept = session.partial.is_some();
        drop(slots);
        self.count_partial(shard, false, kept);
        if !go_on {
            self.end(shard, key);
        }
    }

    /// Handles one completion of the shard's ring.
    pub fn on_completion(&self, shard: &Rc<Shard>, completion: Completion<'_>) {
        match completion {
            Completion::Recv { tag, result, more } => self.on_recv(shard, tag, result, more),
            Completion::Sent { tag, result, op } => {
                let conn = {
                    let slots = self.slots.borrow();
                    match slots.get(tag.key as usize) {
                        Some(session) if session.is(tag) => session.conn.clone(),
                        _ => {
                            tracing::error!(key = tag.key, "a send completed for no session");
                            return;
                        }
                    }
                };
                conn.on_sent(op, result);
                if !conn.is_sending() {
                    self.finish_if_done(tag.key as usize);
                }
            }
        }
    }

    /// Session `tag`'s receive completed with bytes, the end of the stream or an error.
    fn on_recv(&self, shard: &Rc<Shard>, tag: Tag, result: Result<&[u8], i32>, more: bool) {
        let key = tag.key as usize;
        let rearm = {
            let mut slots = self.slots.borrow_mut();
            let Some(session) = slots.get_mut(key).filter(|s| s.is(tag)) else {
                tracing::error!(key, "a receive completed for no session");
                return;
            };
            if !more {
                session.recv_armed = false;
            }
            let live = !session.ending && !session.finishing;
            match result {
                Ok(data) if !data.is_empty() => {
                    if live {
                        let conn = session.conn.clone();
                        drop(slots);
                        let go_on = match conn.tls() {
                            None => self.on_bytes(shard, key, data),
                            Some(tls) => self.on_ciphertext(shard, key, &conn, tls, data),
                        };
                        if !go_on {
                            self.end(shard, key);
                            return;
                        }
                        let slots = self.slots.borrow();
                        slots.get(key).is_some_and(|s| !s.recv_armed && !s.ending && !s.finishing)
                    } else {
                        false
                    }
                }
                Err(e) if e == -libc::ENOBUFS && live => {
                    // The shared buffers ran out: the data waits in the socket; re-armed.
                    !more
                }
                _ => {
                    // The end of the stream, an error, or a cancelled receive.
                    drop(slots);
                    if live {
                        self.end(shard, key);
                    }
                    self.finish_if_done(key);
                    return;
                }
            }
        };
        if rearm {
            let target = {
                let mut slots = self.slots.borrow_mut();
                let Some((session, target)) =
                    slots.get_mut(key).and_then(|s| s.target().map(|t| (s, t)))
                else {
                    return;
                };
                session.recv_armed = true;
                target
            };
            metrics::inc(&shard.metrics.recv_rearms_total);
            self.ring.arm_recv(target, tag);
        }
        self.finish_if_done(key);
    }

    /// Decrypts `ciphertext`, which arrived for TLS session `key`, and decodes the plaintext
    /// ([`Sessions::on_bytes`]); false when the session must end (a TLS error, or the peer's
    /// close_notify).
    fn on_ciphertext(
        &self,
        shard: &Rc<Shard>,
        key: usize,
        conn: &Rc<Conn>,
        tls: &RefCell<crate::tls::TlsSession>,
        ciphertext: &[u8],
    ) -> bool {
        let mut plain = std::mem::take(&mut *self.plaintext.borrow_mut());
        plain.clear();
        let open = crate::tls::decrypt(conn, tls, ciphertext, &mut plain, &shard.metrics);
        let go_on = (plain.is_empty() || self.on_bytes(shard, key, &plain)) && open;
        plain.clear();
        *self.plaintext.borrow_mut() = plain;
        go_on
    }

    /// Decodes `data`, which arrived for session `key`; false when the session must end.
    /// (The seam for a transport that decrypts first: it calls this with plaintext.)
    fn on_bytes(&self, shard: &Rc<Shard>, key: usize, data: &[u8]) -> bool {
        let mut slots = self.slots.borrow_mut();
        let Some(session) = slots.get_mut(key) else {
            return true;
        };
        let had = session.partial.is_some();
        let initial = shard.config.read_buffer_bytes_initial;
        let mut state =
            session.partial.take().map_or_else(|| Partial::new(shard, &session.conn), |p| *p);
        let (conn, protocol) = (&session.conn, &*session.protocol);
        let go_on = if state.pending.is_empty() {
            let mut scratch = self.scratch.borrow_mut();
            scratch.clear();
            scratch.extend_from_slice(data);
            let go_on = handle_frames(shard, conn, protocol, &mut state.decoder, &mut scratch);
            if !scratch.is_empty() {
                // Keep the partial frame, not the shared buffer.
                let mut pending = BytesMut::with_capacity(scratch.len().max(initial));
                pending.extend_from_slice(&scratch);
                state.pending = pending;
            }
            scratch.clear();
            go_on
        } else {
            state.pending.extend_from_slice(data);
            handle_frames(shard, conn, protocol, &mut state.decoder, &mut state.pending)
        };
        session.keep(state);
        let kept = session.partial.is_some();
        drop(slots);
        self.count_partial(shard, had, kept);
        go_on
    }

    /// Ends session `key`: at once, or once its queued frames (a close frame, typically) are
    /// written, within `CLOSE_FLUSH_TIMEOUT`.
    fn end(&self, shard: &Rc<Shard>, key: usize) {
        let (conn, had) = {
            let mut slots = self.slots.borrow_mut();
            let Some(session) = slots.get_mut(key) else {
                return;
            };
            if session.ending || session.finishing {
                return;
            }
            session.ending = true;
            (session.conn.clone(), session.partial.take().is_some())
        };
        self.count_partial(shard, had, false);
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

    /// Ends session `key` for the shard: detaches the connection and kills its socket (which
    /// completes its receive and any send); the slot is freed once they completed.
    fn finish(&self, shard: &Rc<Shard>, key: usize) {
        let (conn, tag, armed, had) = {
            let mut slots = self.slots.borrow_mut();
            let Some(session) = slots.get_mut(key) else {
                return;
            };
            if session.finishing {
                return;
            }
            session.finishing = true;
            (
                session.conn.clone(),
                session.conn.ring().map(|(tag, _)| tag),
                session.recv_armed,
                session.partial.take().is_some(),
            )
        };
        self.count_partial(shard, had, false);
        conn.kill();
        if let (true, Some(tag)) = (armed, tag) {
            self.ring.cancel_recv(tag);
        }
        shard.detach(&conn);
        shard.metrics.websockets.fetch_sub(1, Ordering::Relaxed);
        metrics::dec(&shard.metrics.connections);
        self.finish_if_done(key);
    }

    /// Frees slot `key` if its session finished and its operations all completed.
    fn finish_if_done(&self, key: usize) {
        let mut slots = self.slots.borrow_mut();
        let done =
            slots.get(key).is_some_and(|s| s.finishing && !s.recv_armed && !s.conn.is_sending());
        if done {
            let session = slots.remove(key);
            if let Some(target) = session.target() {
                self.ring.unregister(target);
            }
        }
    }
}

/// The shard's completion reaper: hands every completion of its ring to the sessions and the
/// connections, for as long as the shard runs. At most `WS_COMPLETIONS_PER_PASS` per pass, then
/// the other tasks of the loop get their turn.
pub async fn run(shard: Rc<Shard>) {
    let ring = shard.conn.ws.ring.clone();
    tracing::debug!(shard = shard.id.get(), flags = ring.describe(), "WebSocket ring ready");
    loop {
        ring.wait().await;
        loop {
            let handled =
                ring.reap(WS_COMPLETIONS_PER_PASS, |c| shard.conn.ws.on_completion(&shard, c));
            ring.submit();
            if handled < WS_COMPLETIONS_PER_PASS {
                break;
            }
            ring.flush_runtime();
            tokio::task::yield_now().await;
        }
    }
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

#[cfg(test)]
mod tests {
    /// Every WebSocket connection holds one session slot in the shard's slab: its identity on
    /// the ring lives in its `Conn`, not twice (perf/RESULTS.md, idle memory).
    #[test]
    fn session_slot_stays_compact() {
        assert!(std::mem::size_of::<super::Session>() <= 40);
    }
}
