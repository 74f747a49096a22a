//! A WebSocket connection's shared state: who it is, its outbound queue of shared frames, and
//! the shard's writer that drains every queue with one `send`/`sendmsg` SQE per connection on
//! the shard's own io_uring ([`crate::net::uring`]), all submitted together after its pass.
//!
//! Invariants: queued bytes (in flight included) never exceed `outbound_bytes_max` except for
//! one close frame; a connection is on the writer's list at most once (`scheduled`), so the
//! list is bounded by the shard's connections; a connection has at most one send in flight
//! (`sending`), whose frames the ring owns until its completion, which puts any unwritten rest
//! back at the front of the queue; frames are written whole and in order; once `closed`,
//! nothing but the close frame is ever queued. A send that finds the socket's send buffer full
//! waits in the kernel (io_uring polls the socket) while the queue keeps growing up to its bound.
//! A connection that negotiated permessage-deflate holds only two flags for it (no
//! compressor): broadcast frames come compressed from the bundle
//! ([`Recipient::deflate_threshold`]), replies through [`Conn::compressed`].
//!
//! A TLS connection queues the same shared plaintext frames; its writer seals a run of them
//! (at most `TLS_SEAL_BYTES_MAX`) into one buffer of records just before sending, so the
//! queue's front holds ciphertext (`sealed` entries, never dropped: the record sequence must
//! not skip) and the rest plaintext. The byte bound counts both, so a TLS connection may pass
//! `outbound_bytes_max` by one run's record overhead.
//!
//! [`Recipient::deflate_threshold`]: crate::fanout::Recipient::deflate_threshold

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::VecDeque;
use std::net::{Shutdown, TcpStream};
use std::rc::{Rc, Weak};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use smallvec::SmallVec;

use crate::dialect::DialectId;
use crate::limits::{IOV_BATCH, TLS_SEAL_BYTES_MAX};
use crate::metrics::{self, ShardMetrics};
use crate::model::ids::now_ms;
use crate::model::UserId;
use crate::net::uring::{Ring, SendOp, Tag, Target};
use crate::ws::close::CLOSE_POLICY;
use crate::ws::frame;

/// The queue of frames waiting to be written: 24 bytes (the frames behind one pointer, none
/// while the queue is empty; the flags in one byte), which keeps `Rc<Conn>` in a smaller
/// allocation class (perf/RESULTS.md, idle memory).
#[derive(Debug, Default)]
struct Outbound {
    /// The frames, allocated with the first one and freed once all are written (an idle
    /// connection keeps none).
    #[allow(clippy::box_collection)]
    // the point: 8 bytes in `Conn`, nothing allocated when empty
    frames: Option<Box<VecDeque<Bytes>>>,
    /// Bytes queued (the front frame counts only its unwritten part); at most
    /// `outbound_bytes_max` (< 2^31, [`Writer::new`]) plus one close frame or one TLS run's
    /// record overhead.
    bytes: u32,
    /// Bytes of the send in flight (saturating: more than 4 GiB only makes the bound stricter).
    in_flight: u32,
    /// TLS: how many front entries are ciphertext (sealed records), never dropped.
    sealed: u32,
    /// The flags below.
    bits: u8,
}

/// On the writer's list.
const SCHEDULED: u8 = 1;
/// A send is in flight (at most one per connection).
const SENDING: u8 = 1 << 1;
/// No more frames may be queued (a close frame is queued or the socket failed).
const CLOSED: u8 = 1 << 2;
/// Ended at once (`Conn::kill`): a send completing now writes nothing more.
const KILLED: u8 = 1 << 3;
/// Half-close the socket once the queue is written.
const SHUTDOWN_WHEN_FLUSHED: u8 = 1 << 4;
/// The front frame is partly written (so it must be finished, never dropped).
const FRONT_STARTED: u8 = 1 << 5;
/// Nothing is written yet: the upgrade has not answered (frames queue behind the 101).
const HELD: u8 = 1 << 6;

/// `n` bytes as the queue counts them (saturating; the counts stay far below 4 GiB).
#[inline]
fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Outbound {
    #[inline]
    fn is(&self, bit: u8) -> bool {
        self.bits & bit != 0
    }

    #[inline]
    fn set(&mut self, bit: u8, on: bool) {
        if on {
            self.bits |= bit;
        } else {
            self.bits &= !bit;
        }
    }

    /// True when no frame is queued.
    #[inline]
    fn is_empty(&self) -> bool {
        self.frames.as_ref().is_none_or(|f| f.is_empty())
    }

    /// Frames queued.
    #[inline]
    fn len(&self) -> usize {
        self.frames.as_ref().map_or(0, |f| f.len())
    }

    /// The frames, allocated when there were none.
    #[inline]
    fn queue(&mut self) -> &mut VecDeque<Bytes> {
        self.frames.get_or_insert_with(Box::default)
    }
}

/// The shard's writer: the connections with frames to write since it last ran. Frames queued
/// while one task runs are written together when it yields: one `send`/`sendmsg` SQE per
/// connection, submitted in one `io_uring_enter` after the pass.
pub struct Writer {
    /// The shard's ring for WebSocket sockets.
    pub ring: Rc<Ring>,
    pending: RefCell<Vec<Rc<Conn>>>,
    /// Bound on each connection's queued bytes (`outbound_bytes_max`).
    outbound_bytes_max: usize,
    /// Data frames with a smaller payload go uncompressed (`deflate_threshold_bytes`).
    deflate_threshold: usize,
    /// Woken when a closing connection's queue is written, or a connection is killed.
    drained: tokio::sync::Notify,
    /// The list the writer works through (kept to reuse its allocation).
    spare: RefCell<Vec<Rc<Conn>>>,
    wake: tokio::sync::Notify,
    metrics: Arc<ShardMetrics>,
}

impl Writer {
    /// An idle writer; `run` must be spawned on the shard's loop. `outbound_bytes_max` is
    /// capped at `OUTBOUND_BYTES_MAX_LIMIT` (1 GiB; `Config::validate` refuses more).
    pub fn new(
        ring: Rc<Ring>,
        metrics: Arc<ShardMetrics>,
        outbound_bytes_max: usize,
        deflate_threshold: usize,
    ) -> Writer {
        Writer {
            ring,
            pending: RefCell::new(Vec::new()),
            // The queue counts its bytes in a `u32`.
            outbound_bytes_max: outbound_bytes_max.min(crate::limits::OUTBOUND_BYTES_MAX_LIMIT),
            deflate_threshold,
            drained: tokio::sync::Notify::new(),
            spare: RefCell::new(Vec::new()),
            wake: tokio::sync::Notify::new(),
            metrics,
        }
    }

    /// Makes this the writer of the connections of this thread (its shard's), which reach it
    /// through a thread-local, not a pointer each.
    pub fn install(self: &Rc<Self>) {
        WRITER.with_borrow_mut(|w| *w = Rc::downgrade(self));
    }

    fn schedule(&self, conn: Rc<Conn>) {
        let mut pending = self.pending.borrow_mut();
        pending.push(conn);
        if pending.len() == 1 {
            self.wake.notify_one();
        }
    }

    /// Writes out every scheduled connection, for ever.
    pub async fn run(self: Rc<Self>) {
        loop {
            self.wake.notified().await;
            loop {
                let mut batch = std::mem::take(&mut *self.spare.borrow_mut());
                std::mem::swap(&mut batch, &mut *self.pending.borrow_mut());
                if batch.is_empty() {
                    break;
                }
                self.metrics.write_pending.store(batch.len() as u64, Ordering::Relaxed);
                for i in 0..batch.len() {
                    if let Some(ahead) = batch.get(i + crate::net::uring::PREFETCH_AHEAD) {
                        ahead.prefetch();
                    }
                    batch[i].write_out(&self);
                }
                batch.clear();
                *self.spare.borrow_mut() = batch;
            }
            self.ring.submit();
            // The REST answers and reads queued meanwhile go out now, not after the fan-out.
            self.ring.flush_runtime();
            self.metrics.write_pending.store(0, Ordering::Relaxed);
        }
    }
}

/// One connection that receives frames.
pub struct Conn {
    /// Who it is, once it authenticated and was registered for events (`Shard::attach`); the
    /// echo endpoint's connections and in-band dialects' connections before they
    /// authenticate have none.
    bound: OnceCell<Bound>,
    /// The wire protocol it speaks.
    pub dialect: DialectId,
    /// The socket, read by the shard's sessions and written by its writer, both
    /// through the shard's ring.
    pub socket: TcpStream,
    /// Its session's identity on the ring and how the ring names its socket, once the
    /// sessions serve it, packed in one word ([`RingId`]).
    ring_id: Cell<RingId>,
    out: RefCell<Outbound>,
    /// When a frame last arrived, ms.
    pub last_seen_ms: Cell<u64>,
    /// Dialect protocol state bits: what they mean is the dialect's; a bundle's gate bits for
    /// the dialect must all be set for the connection to get its frame.
    pub flags: Cell<u8>,
    /// What permessage-deflate allows on this connection (set before it is shared).
    pub deflate: Deflate,
    /// What few connections need, allocated when first needed: its TLS state, and when the
    /// server started closing it.
    cold: OnceCell<Box<Cold>>,
}

thread_local! {
    /// The writer of the shard this thread runs ([`Writer::install`]): connections reach it
    /// here rather than each keeping a pointer to it (8 bytes per connection). `Weak`, so the
    /// shard's teardown drops its writer (and ring) as before; a connection outliving its
    /// shard writes nothing more.
    static WRITER: RefCell<Weak<Writer>> = const { RefCell::new(Weak::new()) };
}

/// This thread's shard writer, while the shard runs.
#[inline]
fn writer() -> Option<Rc<Writer>> {
    WRITER.with_borrow(Weak::upgrade)
}

/// The part of a [`Conn`] that most idle connections never use (one pointer in `Conn`).
#[derive(Default)]
struct Cold {
    /// Its TLS state on a TLS listener (set once the 101 went out, before its session serves
    /// it): the session decrypts what it receives with it, the writer seals the queue with it.
    tls: OnceCell<RefCell<crate::tls::TlsSession>>,
    /// When the server started closing it, ms (0 while open).
    closing_since_ms: Cell<u64>,
}

/// permessage-deflate on one connection (RFC 7692, no context takeover either way).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deflate {
    /// The client may send compressed messages (RSV1).
    pub inbound: bool,
    /// The window (log2) the server may compress this connection's messages with: 15 unless
    /// the client asked for less; 0 = never compressed (not negotiated, or a window of 8,
    /// which the compressor cannot make).
    pub window_bits: u8,
}

/// A served connection's [`Tag`] and [`Target`] in 8 bytes instead of 16 (they put `Conn` in
/// a larger allocation class): the slot key (bits 0–31), the tag's generation (bits 32–55,
/// the 24 bits a `Tag` compares), bit 62 when the socket is the registered descriptor in the
/// slot of that key (`Ring::register` registers a session's socket in its own key's slot, or
/// not at all), else the connection's own descriptor, and bit 63 once served.
#[derive(Debug, Clone, Copy)]
struct RingId(u64);

impl RingId {
    const NOT_SERVED: RingId = RingId(0);
    const SERVED: u64 = 1 << 63;
    const FIXED: u64 = 1 << 62;

    fn pack(tag: Tag, target: Target) -> RingId {
        let fixed = match target {
            Target::Fixed(slot) => {
                debug_assert_eq!(slot, tag.key, "a session's socket is registered in its slot");
                RingId::FIXED
            }
            Target::Fd(_) => 0,
        };
        let generation = u64::from(tag.generation & 0x00ff_ffff) << 32;
        RingId(RingId::SERVED | fixed | generation | u64::from(tag.key))
    }

    fn unpack(self, socket: &TcpStream) -> Option<(Tag, Target)> {
        use std::os::fd::AsRawFd;
        if self.0 & RingId::SERVED == 0 {
            return None;
        }
        let tag = Tag { key: self.0 as u32, generation: ((self.0 >> 32) as u32) & 0x00ff_ffff };
        let target = if self.0 & RingId::FIXED != 0 {
            Target::Fixed(tag.key)
        } else {
            Target::Fd(socket.as_raw_fd())
        };
        Some((tag, target))
    }
}

/// A registered connection's identity: set once, never changed (32 bytes).
#[derive(Debug)]
pub struct Bound {
    /// Index in the shard's connection slab (below the shard's connection limit).
    pub key: u32,
    /// The authenticated user.
    pub user: UserId,
    /// The token's session id (JWT `sid`, else `jti`), as its key (what a revocation
    /// compares).
    pub session: Option<crate::shard::SessionKey>,
}

/// The user of a connection that has not authenticated.
static ANONYMOUS: std::sync::LazyLock<UserId> = std::sync::LazyLock::new(|| UserId::new(""));

impl Conn {
    /// An unauthenticated connection speaking `dialect` on `socket`, written by `writer`: the
    /// writer installed on this thread ([`Writer::install`], checked in debug builds).
    pub fn new(dialect: DialectId, socket: TcpStream, writer: Rc<Writer>) -> Conn {
        debug_assert!(self::writer().is_some_and(|w| Rc::ptr_eq(&w, &writer)));
        drop(writer);
        Conn {
            bound: OnceCell::new(),
            dialect,
            socket,
            ring_id: Cell::new(RingId::NOT_SERVED),
            out: RefCell::new(Outbound::default()),
            last_seen_ms: Cell::new(now_ms()),
            flags: Cell::new(0),
            deflate: Deflate::default(),
            cold: OnceCell::new(),
        }
    }

    /// The payload size from which this connection gets broadcast frames compressed (the
    /// bundle's shared ones, made with a 32 KiB window); `None` when it did not negotiate
    /// permessage-deflate or limited the server's window below that.
    #[inline]
    pub fn deflate_threshold(&self) -> Option<usize> {
        if self.deflate.window_bits != crate::ws::deflate::WINDOW_BITS_MAX {
            return None;
        }
        writer().map(|w| w.deflate_threshold)
    }

    /// `frame` (one or more complete frames) compressed for this connection alone (within its
    /// window) when it negotiated permessage-deflate: each data message of at least
    /// `threshold` bytes (0: every one; `None`: the server's `deflate_threshold_bytes`). For
    /// per-connection replies; broadcast frames are compressed once in their bundle.
    pub fn compressed(&self, frame: Bytes, threshold: Option<usize>) -> Bytes {
        let bits = self.deflate.window_bits;
        if bits < crate::ws::deflate::WINDOW_BITS_MIN {
            return frame;
        }
        let threshold =
            threshold.unwrap_or_else(|| writer().map_or(usize::MAX, |w| w.deflate_threshold));
        crate::ws::deflate::compress_frames(&frame, threshold, bits)
    }

    /// Its allocation (address, bytes: the `Rc`'s counts and the `Conn`), for prefetching.
    #[inline]
    fn memory(self: &Rc<Self>) -> (usize, usize) {
        let counts = 2 * std::mem::size_of::<usize>();
        let start = (Rc::as_ptr(self) as usize).wrapping_sub(counts);
        (start, counts + std::mem::size_of::<Conn>())
    }

    /// Starts loading the connection into the cache (a hint).
    #[inline]
    pub fn prefetch(self: &Rc<Self>) {
        let (addr, bytes) = self.memory();
        crate::net::uring::prefetch(addr, bytes);
    }

    /// Binds the connection to its slab `key` and identity; false when it was bound before.
    pub fn bind(&self, bound: Bound) -> bool {
        self.bound.set(bound).is_ok()
    }

    /// Its identity, once bound.
    pub fn bound(&self) -> Option<&Bound> {
        self.bound.get()
    }

    /// Its slab key (`usize::MAX` until bound).
    #[inline]
    pub fn key(&self) -> usize {
        self.bound.get().map_or(usize::MAX, |b| b.key as usize)
    }

    /// Its user (an empty id until bound).
    #[inline]
    pub fn user(&self) -> &UserId {
        self.bound.get().map_or(&ANONYMOUS, |b| &b.user)
    }

    /// True when it is bound with a token of the session keyed `key`.
    pub fn in_session(&self, key: crate::shard::SessionKey) -> bool {
        self.bound.get().and_then(|b| b.session) == Some(key)
    }

    /// Queues a complete frame; closes the connection as a slow consumer when the queue would
    /// pass its bound. Never blocks and never copies the frame.
    pub fn send(self: &Rc<Self>, frame: Bytes) {
        let Some(writer) = writer() else {
            return; // The shard is gone.
        };
        let mut out = self.out.borrow_mut();
        if out.is(CLOSED) {
            return;
        }
        if out.bytes as usize + out.in_flight as usize + frame.len() > writer.outbound_bytes_max {
            drop(out);
            metrics::inc(&writer.metrics.slow_consumer_closes_total);
            self.close_now(CLOSE_POLICY, "slow consumer");
            return;
        }
        out.bytes += len32(frame.len());
        out.queue().push_back(frame);
        metrics::inc(&writer.metrics.frames_out_total);
        self.schedule(out);
    }

    fn schedule(self: &Rc<Self>, mut out: std::cell::RefMut<'_, Outbound>) {
        if !out.is(SCHEDULED) && !out.is(SENDING) && !out.is(HELD) {
            out.set(SCHEDULED, true);
            drop(out);
            if let Some(writer) = writer() {
                writer.schedule(self.clone());
            }
        }
    }

    /// Writes nothing until [`Conn::release`]: frames queued meanwhile (within the bound) go
    /// out after what the caller writes on the socket first (the upgrade's 101).
    pub fn hold(&self) {
        self.out.borrow_mut().set(HELD, true);
    }

    /// Ends [`Conn::hold`]: what was queued is written from now on.
    pub fn release(self: &Rc<Self>) {
        let mut out = self.out.borrow_mut();
        out.set(HELD, false);
        if !out.is_empty() {
            self.schedule(out);
        }
    }

    /// Starts the closing handshake: queues a close frame after what is queued, then half-closes.
    pub fn close(self: &Rc<Self>, code: u16, reason: &str) {
        self.queue_close(frame::close(code, reason), false);
    }

    /// Answers a peer's close frame (echoing its code, or an empty close when it sent none).
    pub fn answer_close(self: &Rc<Self>, code: Option<u16>) {
        let close = match code {
            Some(code) => frame::close(code, ""),
            None => Bytes::from_static(&[0x88, 0x00]),
        };
        self.queue_close(close, false);
    }

    /// Drops what is still queued (but a partly written front frame) and closes.
    fn close_now(self: &Rc<Self>, code: u16, reason: &str) {
        self.queue_close(frame::close(code, reason), true);
    }

    fn queue_close(self: &Rc<Self>, close: Bytes, drop_queued: bool) {
        let mut out = self.out.borrow_mut();
        if out.is(CLOSED) {
            return;
        }
        if drop_queued {
            // A partly written frame must be finished, or the stream would be corrupt.
            // Sealed (TLS) records cannot be dropped either: the record sequence must not skip.
            let keep = usize::from(out.is(FRONT_STARTED)).max(out.sealed as usize);
            let dropped: usize = match out.frames.as_mut() {
                Some(frames) if frames.len() > keep => frames.drain(keep..).map(|f| f.len()).sum(),
                _ => 0,
            };
            out.bytes -= len32(dropped);
        }
        out.set(CLOSED, true);
        out.set(SHUTDOWN_WHEN_FLUSHED, true);
        out.bytes += len32(close.len());
        out.queue().push_back(close);
        self.cold().closing_since_ms.set(now_ms());
        self.schedule(out);
    }

    /// True once a close frame is queued or the socket failed.
    pub fn is_closed(&self) -> bool {
        self.out.borrow().is(CLOSED)
    }

    /// True while frames wait to be written (or a send is in flight).
    pub fn has_unwritten(&self) -> bool {
        let out = self.out.borrow();
        !out.is_empty() || out.is(SENDING)
    }

    /// True while a send is in flight.
    pub fn is_sending(&self) -> bool {
        self.out.borrow().is(SENDING)
    }

    fn cold(&self) -> &Cold {
        self.cold.get_or_init(Box::default)
    }

    /// Its TLS state, on a TLS listener once the 101 went out.
    pub fn tls(&self) -> Option<&RefCell<crate::tls::TlsSession>> {
        self.cold.get().and_then(|cold| cold.tls.get())
    }

    /// Gives the connection its TLS state (before its session serves it); false when it had
    /// one.
    pub fn set_tls(&self, tls: crate::tls::TlsSession) -> bool {
        self.cold().tls.set(RefCell::new(tls)).is_ok()
    }

    /// When the server started closing it, ms (0 while open).
    pub fn closing_since_ms(&self) -> u64 {
        self.cold.get().map_or(0, |cold| cold.closing_since_ms.get())
    }

    /// Its session's identity on the ring and how the ring names its socket, once served.
    pub fn ring(&self) -> Option<(Tag, Target)> {
        self.ring_id.get().unpack(&self.socket)
    }

    /// From now on the connection is written through the ring as session `tag`; frames queued
    /// before are scheduled.
    pub fn serve_as(self: &Rc<Self>, tag: Tag, target: Target) {
        self.ring_id.set(RingId::pack(tag, target));
        let out = self.out.borrow_mut();
        if !out.is_empty() {
            self.schedule(out);
        }
    }

    /// Waits until the queue is written or the socket failed (bounded by the caller). Meant
    /// for closing connections: the writer wakes these waiters when one of them drains.
    pub async fn flushed(&self) {
        let Some(writer) = writer() else {
            return;
        };
        loop {
            let notified = writer.drained.notified();
            if !self.has_unwritten() {
                return;
            }
            notified.await;
        }
    }

    /// Ends the connection at once: both directions, so the session's next read sees the end.
    pub fn kill(&self) {
        let mut out = self.out.borrow_mut();
        out.set(CLOSED, true);
        out.set(KILLED, true);
        out.frames = None;
        out.bytes = 0;
        out.set(SHUTDOWN_WHEN_FLUSHED, false);
        out.sealed = 0;
        drop(out);
        // Both directions: the session's receive and any send in flight complete.
        let _ = self.socket.shutdown(Shutdown::Both);
        if let Some(writer) = writer() {
            writer.drained.notify_waiters();
        }
    }

    /// Hands the front of the queue (up to `IOV_BATCH` frames) to the ring as one send, unless
    /// one is in flight (its completion continues).
    fn write_out(self: &Rc<Self>, writer: &Writer) {
        let mut out = self.out.borrow_mut();
        out.set(SCHEDULED, false);
        let Some((tag, target)) = self.ring() else {
            // Not served yet: `serve_as` schedules what waits.
            return;
        };
        if out.is(SENDING) || out.is(HELD) {
            return;
        }
        if out.is_empty() {
            self.flushed_out(out);
            return;
        }
        let tls = self.tls();
        if let (Some(tls), 0) = (tls, out.sealed) {
            if !self.seal_front(&mut out, tls, writer) {
                drop(out);
                self.kill();
                return;
            }
        }
        // TLS: only sealed records go out.
        let take = if tls.is_some() { out.sealed as usize } else { out.len() }.min(IOV_BATCH);
        // `take` ≤ IOV_BATCH.
        out.sealed -= (take as u32).min(out.sealed);
        let frames: SmallVec<[Bytes; 4]> = out.queue().drain(..take).collect();
        let mut op = SendOp::new(frames);
        op.hint = self.memory();
        let len = op.len();
        out.bytes -= len32(len);
        out.in_flight = len32(len);
        out.set(FRONT_STARTED, false);
        out.set(SENDING, true);
        drop(out);
        writer.ring.send(target, tag, op);
    }

    /// The queue is empty: half-close if asked, wake closers.
    fn flushed_out(&self, mut out: std::cell::RefMut<'_, Outbound>) {
        // An idle connection keeps no queue allocation.
        out.frames = None;
        let shutdown = out.is(SHUTDOWN_WHEN_FLUSHED);
        out.set(SHUTDOWN_WHEN_FLUSHED, false);
        let closing = out.is(CLOSED);
        drop(out);
        if shutdown {
            let _ = self.socket.shutdown(Shutdown::Write);
        }
        if let (true, Some(writer)) = (closing, writer()) {
            writer.drained.notify_waiters();
        }
    }

    /// Queues TLS records the connection's reads produced (a key update's answer, an alert):
    /// after the records already sealed, before the frames not yet sealed, so the record
    /// stream stays in order. The byte bound applies as to [`Conn::send`].
    pub fn send_sealed(self: &Rc<Self>, records: Bytes) {
        let Some(writer) = writer() else {
            return; // The shard is gone.
        };
        let mut out = self.out.borrow_mut();
        if out.bytes as usize + records.len() > writer.outbound_bytes_max {
            drop(out);
            metrics::inc(&writer.metrics.slow_consumer_closes_total);
            self.close_now(CLOSE_POLICY, "slow consumer");
            return;
        }
        let at = out.sealed as usize;
        out.bytes += len32(records.len());
        out.queue().insert(at, records);
        out.sealed = out.sealed.saturating_add(1);
        self.schedule(out);
    }

    /// TLS: seals the plaintext frames at the front of the queue (up to `TLS_SEAL_BYTES_MAX`,
    /// at least one) into one buffer of records that replaces them; with the close frame, a
    /// close_notify follows it. False when sealing failed (the connection is over).
    fn seal_front(
        &self,
        out: &mut Outbound,
        tls: &RefCell<crate::tls::TlsSession>,
        writer: &Writer,
    ) -> bool {
        let (mut count, mut plain) = (0, 0);
        for frame in out.frames.iter().flat_map(|f| f.iter()) {
            if count > 0 && plain + frame.len() > TLS_SEAL_BYTES_MAX {
                break;
            }
            count += 1;
            plain += frame.len();
        }
        let mut sealed = Vec::with_capacity(plain + plain / 512 + 64);
        let mut tls = tls.borrow_mut();
        let frames = out.frames.iter().flat_map(|f| f.iter()).take(count).map(|f| &f[..]);
        if let Err(e) = tls.seal_frames(frames, &mut sealed) {
            metrics::inc(&writer.metrics.tls_errors_total);
            tracing::debug!("TLS: {e}");
            return false;
        }
        if out.is(CLOSED) && count == out.len() {
            tls.close_notify(&mut sealed);
        }
        out.queue().drain(..count);
        out.bytes = out.bytes - len32(plain) + len32(sealed.len());
        out.queue().push_front(Bytes::from(sealed));
        out.sealed = 1;
        true
    }

    /// The send in flight completed with `result` (bytes written or `-errno`): the unwritten
    /// rest of `op` goes back to the front of the queue and the writer continues.
    pub fn on_sent(self: &Rc<Self>, mut op: Box<SendOp>, result: i32) {
        let Some(writer) = writer() else {
            self.kill(); // The shard is gone.
            return;
        };
        let metrics = &writer.metrics;
        let mut out = self.out.borrow_mut();
        out.set(SENDING, false);
        out.in_flight = 0;
        let Ok(written) = usize::try_from(result) else {
            // The peer went away or the connection was killed.
            drop(out);
            self.kill();
            return;
        };
        if written == 0 && !op.is_empty() {
            drop(out);
            self.kill();
            return;
        }
        metrics::add(&metrics.bytes_out_total, written as u64);
        if out.is(KILLED) {
            // Killed meanwhile: nothing more is written.
            drop(out);
            writer.drained.notify_waiters();
            return;
        }
        let (rest, started) = unwritten(std::mem::take(&mut op.frames), written);
        out.set(FRONT_STARTED, started);
        if !rest.is_empty() {
            // The socket's buffer filled: the rest goes first next time.
            metrics::inc(&metrics.write_blocked_total);
            if self.tls().is_some() {
                // What went back is ciphertext: it stays ahead of everything not yet sealed.
                out.sealed = out.sealed.saturating_add(rest.len() as u32);
            }
            for frame in rest.into_iter().rev() {
                out.bytes += len32(frame.len());
                out.queue().push_front(frame);
            }
        }
        if out.is_empty() {
            self.flushed_out(out);
        } else {
            self.schedule(out);
        }
    }
}

/// Fan-out queues onto the connection's outbound queue through `Conn::send` (so the byte
/// bound and the slow-consumer close apply).
impl crate::fanout::Recipient for Rc<Conn> {
    #[inline]
    fn dialect(&self) -> DialectId {
        self.dialect
    }

    #[inline]
    fn user(&self) -> &UserId {
        Conn::user(self)
    }

    #[inline]
    fn flags(&self) -> u8 {
        self.flags.get()
    }

    #[inline]
    fn deflate_threshold(&self) -> Option<usize> {
        Conn::deflate_threshold(self)
    }

    #[inline]
    fn queue(&self, frame: Bytes) {
        self.send(frame);
    }

    #[inline]
    fn prefetch(&self) {
        Conn::prefetch(self);
    }
}

/// What `written` bytes left of `frames`: the frames not (wholly) written, in order, and
/// whether the first of them was partly written.
fn unwritten(frames: SmallVec<[Bytes; 4]>, written: usize) -> (SmallVec<[Bytes; 4]>, bool) {
    let mut left = written;
    let mut started = false;
    let mut rest = SmallVec::new();
    for mut frame in frames {
        if left >= frame.len() {
            left -= frame.len();
            continue;
        }
        if left > 0 {
            frame.advance(left);
            left = 0;
            started = true;
        }
        rest.push(frame);
    }
    (rest, started)
}

#[cfg(test)]
mod tests {
    use super::unwritten;

    /// An idle connection's `Rc<Conn>` is one allocation of 16 + this many bytes (mimalloc's
    /// 112-byte size class; 112 bytes put it in the 128-byte one): grow it only knowingly
    /// (perf/RESULTS.md, idle memory).
    #[test]
    fn conn_stays_compact() {
        assert_eq!(std::mem::size_of::<super::Outbound>(), 24);
        assert!(std::mem::size_of::<super::Conn>() <= 96, "{}", std::mem::size_of::<super::Conn>());
    }

    #[test]
    fn ring_id_packs_tag_and_target() {
        use super::{RingId, Tag, Target};
        use std::os::fd::AsRawFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let socket =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        assert!(RingId::NOT_SERVED.unpack(&socket).is_none());
        let tag = Tag { key: 70_000, generation: 0x01ab_cdef };
        let (got, target) =
            RingId::pack(tag, Target::Fixed(70_000)).unpack(&socket).expect("served");
        assert!(got.same(tag) && got.key == 70_000);
        assert_eq!(target, Target::Fixed(70_000));
        let fd = Target::Fd(socket.as_raw_fd());
        let (got, target) = RingId::pack(tag, fd).unpack(&socket).expect("served");
        assert!(got.same(tag));
        assert_eq!(target, fd);
    }

    use bytes::Bytes;
    use smallvec::SmallVec;

    fn frames() -> SmallVec<[Bytes; 4]> {
        [&b"abc"[..], b"defg", b"h"].iter().map(|f| Bytes::copy_from_slice(f)).collect()
    }

    #[test]
    fn a_partial_send_leaves_the_unwritten_tail_in_order() {
        let (rest, started) = unwritten(frames(), 5);
        assert_eq!(rest.as_slice(), &[Bytes::from_static(b"fg"), Bytes::from_static(b"h")]);
        assert!(started, "the front frame was partly written");
        let (rest, started) = unwritten(frames(), 7);
        assert_eq!(rest.as_slice(), &[Bytes::from_static(b"h")]);
        assert!(!started, "the front frame is untouched");
        let (rest, _) = unwritten(frames(), 8);
        assert!(rest.is_empty());
    }
}
