//! The shard's own io_uring for upgraded WebSocket sockets, beside tokio-uring's ring (which
//! keeps accepts, HTTP and the store's completions).
//!
//! Owns: the ring (`SINGLE_ISSUER`, and `DEFER_TASKRUN` when the kernel takes it: only the
//! shard thread submits and reaps), the eventfd registered with it that the shard's runtime
//! watches (through tokio's `AsyncFd`) to learn that completions wait, the shard's
//! provided-buffer ring ([`buf_ring`]) and the send operations in flight ([`send`]).
//!
//! The seams, kept narrow for other transports (TLS) to slot in: a receive completes as
//! "bytes for session `key` arrived in this slice" ([`Completion::Recv`]), and a send is
//! "write these bytes for session `key`" ([`Ring::send`], completed by [`Completion::Sent`]).
//!
//! Invariants: every operation's `user_data` is a [`Tag`] (kind, session slot key, the slot's
//! generation), so a completion of a closed session can never be taken for the next session in
//! that slot; a send's frames and vectors belong to the ring from submission until its
//! completion (and are only freed after the kernel gave them back, even when the ring drops);
//! a provided buffer is recycled before the completion handler returns; SQEs queued during a
//! loop turn are submitted together (by the writer after its pass, or by the reaper).

pub mod buf_ring;
pub mod runtime_ring;
pub mod send;

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use slab::Slab;
use tokio::io::unix::AsyncFd;

use crate::limits::WS_RECV_BUFFERS_FIRST;
use crate::metrics::{self, ShardMetrics};
pub use buf_ring::BufRing;
pub use send::SendOp;

/// The buffer group id of the shard's provided buffers (one group per ring).
const BUFFER_GROUP: u16 = 0;

/// `IORING_ENTER_GETEVENTS` (the crate keeps its enter flags private).
const ENTER_GETEVENTS: u32 = 1;

/// How far ahead a loop over connections or completions starts loading what it will touch:
/// [`Ring::reap`] the send op twice this far ahead and its hinted memory ([`SendOp::hint`])
/// this far, the writer pass and `fanout::deliver` the connection this far.
pub const PREFETCH_AHEAD: usize = 4;

/// Asks the CPU to start loading the cache lines of the `bytes` bytes at `addr`: a hint that
/// never faults, whatever the address (nothing is read); nothing off x86_64.
#[inline(always)]
pub fn prefetch(addr: usize, bytes: usize) {
    for line in cache_lines(addr, bytes) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch reads nothing and cannot fault.
        #[allow(unused_unsafe)]
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(line as *const i8)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = line;
    }
}

/// The starts of the 64-byte cache lines that the `bytes` bytes at `addr` touch (at least one;
/// the range is cut at the top of the address space).
#[inline(always)]
fn cache_lines(addr: usize, bytes: usize) -> impl Iterator<Item = usize> {
    let first = addr & !63;
    let last = addr.saturating_add(bytes.saturating_sub(1)) & !63;
    (0..=(last - first) / 64).map(move |i| first + i * 64)
}

/// What an operation is, in the top bits of its `user_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A session's multishot receive.
    Recv = 1,
    /// A send; the low 32 bits are its index among the sends in flight.
    Send = 2,
    /// A cancellation (its completion carries nothing we need).
    Cancel = 3,
}

/// A session's identity on the ring: its slot key and the slot's generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    /// The session slot.
    pub key: u32,
    /// Bumped each time a slot is given to a new session (24 bits are kept).
    pub generation: u32,
}

impl Tag {
    const GENERATION_MASK: u32 = 0x00ff_ffff;

    fn user_data(self, kind: Kind) -> u64 {
        ((kind as u64) << 56)
            | (u64::from(self.generation & Self::GENERATION_MASK) << 32)
            | u64::from(self.key)
    }

    fn from_user_data(data: u64) -> (Option<Kind>, Tag) {
        let kind = match data >> 56 {
            1 => Some(Kind::Recv),
            2 => Some(Kind::Send),
            3 => Some(Kind::Cancel),
            _ => None,
        };
        let tag =
            Tag { key: data as u32, generation: ((data >> 32) as u32) & Self::GENERATION_MASK };
        (kind, tag)
    }

    /// True when `other` names the same slot and generation (24 bits compared).
    pub fn same(self, other: Tag) -> bool {
        self.key == other.key
            && self.generation & Self::GENERATION_MASK == other.generation & Self::GENERATION_MASK
    }
}

/// How an operation names its socket: by descriptor, or by its slot in the ring's table of
/// registered (direct) descriptors, which spares the kernel a descriptor lookup per SQE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A plain descriptor.
    Fd(RawFd),
    /// A registered descriptor's slot.
    Fixed(u32),
}

/// One completion, as the session layer sees it.
pub enum Completion<'a> {
    /// A session's receive produced something. `more`: the multishot receive is still armed.
    Recv {
        /// Whose receive.
        tag: Tag,
        /// The bytes (valid for this call only), or the error (`-errno`); `Ok(empty)` is the
        /// end of the stream.
        result: Result<&'a [u8], i32>,
        /// The receive stays armed (`IORING_CQE_F_MORE`).
        more: bool,
    },
    /// A send finished: `result` is the bytes written or `-errno`; the op comes back.
    Sent {
        /// Whose send.
        tag: Tag,
        /// Bytes written, or `-errno`.
        result: i32,
        /// The frames that were handed over (for the unwritten rest).
        op: Box<SendOp>,
    },
}

/// The shard's own io_uring for WebSocket sockets.
pub struct Ring {
    // Field order matters for drop: the io_uring goes first (`Drop` waited for its ops), then
    // the memory its ops and buffers used.
    uring: RefCell<IoUring>,
    event: AsyncFd<OwnedFd>,
    bufs: std::mem::ManuallyDrop<BufRing>,
    sends: RefCell<Slab<Box<SendOp>>>,
    /// Completions copied out of the queue, handled without the ring borrowed.
    batch: RefCell<Vec<cqueue::Entry>>,
    /// SQEs queued and not yet submitted.
    unsubmitted: Cell<bool>,
    /// Woken when SQEs wait and nobody else will submit them this turn.
    wake: tokio::sync::Notify,
    /// Operations of sessions in flight (receives armed, sends, cancellations).
    in_flight: Cell<u64>,
    /// The ring was set up with `DEFER_TASKRUN`.
    pub defer_taskrun: bool,
    /// tokio-uring's ring, submitted by [`Ring::flush_runtime`].
    runtime: runtime_ring::RuntimeRing,
    /// Slots in the table of registered descriptors (0: none could be registered).
    fixed_slots: u32,
    metrics: Arc<ShardMetrics>,
}

impl Ring {
    /// A ring with `entries` submission slots and `cq_entries` completion slots, and up to
    /// `buffers` provided buffers of `buffer_bytes` (`WS_RECV_BUFFERS_FIRST` posted at first,
    /// doubled at each ENOBUFS); registered with the current runtime.
    /// Tries `SINGLE_ISSUER | DEFER_TASKRUN` first, then `SINGLE_ISSUER | COOP_TASKRUN`.
    pub fn new(
        metrics: Arc<ShardMetrics>,
        runtime: runtime_ring::RuntimeRing,
        entries: u32,
        cq_entries: u32,
        buffers: u16,
        buffer_bytes: usize,
        fixed_slots: u32,
    ) -> io::Result<Ring> {
        let _setup = runtime_ring::SETUP.lock().unwrap_or_else(|e| e.into_inner());
        let deferred = IoUring::builder()
            .setup_cqsize(cq_entries)
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(entries);
        let (uring, defer_taskrun) = match deferred {
            Ok(uring) => (uring, true),
            Err(e) => {
                tracing::warn!("io_uring DEFER_TASKRUN refused ({e}); using COOP_TASKRUN");
                let uring = IoUring::builder()
                    .setup_cqsize(cq_entries)
                    .setup_single_issuer()
                    .setup_coop_taskrun()
                    .build(entries)?;
                (uring, false)
            }
        };
        // SAFETY: plain eventfd creation; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        uring.submitter().register_eventfd(fd.as_raw_fd())?;
        let bufs = BufRing::new(buffers, WS_RECV_BUFFERS_FIRST.min(buffers), buffer_bytes)?;
        bufs.register(&uring.submitter(), BUFFER_GROUP)?;
        metrics.recv_buffers_posted.store(u64::from(bufs.posted()), Ordering::Relaxed);
        // SAFETY: the eventfd is owned by the `AsyncFd` and stays open until it drops.
        // A sparse table of registered descriptors, one slot per session key below its size
        // (bounded by the open-file limit, which the kernel checks).
        let limit = {
            let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            // SAFETY: getrlimit fills `rl`.
            let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0;
            if ok {
                rl.rlim_cur.min(u64::from(fixed_slots)) as u32
            } else {
                0
            }
        };
        let fixed_slots = match uring.submitter().register_files_sparse(limit) {
            Ok(()) => limit,
            Err(e) => {
                tracing::warn!("no registered descriptors for WebSocket sockets: {e}");
                0
            }
        };
        let event = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Ring {
            uring: RefCell::new(uring),
            event,
            bufs: std::mem::ManuallyDrop::new(bufs),
            sends: RefCell::new(Slab::new()),
            batch: RefCell::new(Vec::new()),
            unsubmitted: Cell::new(false),
            wake: tokio::sync::Notify::new(),
            in_flight: Cell::new(0),
            defer_taskrun,
            runtime,
            fixed_slots,
            metrics,
        })
    }

    /// Operations of sessions in flight now.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.get()
    }

    fn started(&self) {
        self.in_flight.set(self.in_flight.get() + 1);
        self.metrics.ws_ops_in_flight.store(self.in_flight.get(), Ordering::Relaxed);
    }

    fn ended(&self) {
        self.in_flight.set(self.in_flight.get().saturating_sub(1));
        self.metrics.ws_ops_in_flight.store(self.in_flight.get(), Ordering::Relaxed);
    }

    /// Queues one SQE (submitting first when the queue is full).
    fn push(&self, entry: &squeue::Entry) {
        let mut uring = self.uring.borrow_mut();
        loop {
            // SAFETY: every SQE built here points at memory the ring keeps until completion
            // (a send's op in `sends`, the provided buffers) or at nothing.
            let pushed = unsafe { uring.submission().push(entry) };
            if pushed.is_ok() {
                break;
            }
            if let Err(e) = uring.submit() {
                tracing::error!("io_uring submit failed: {e}");
                if e.raw_os_error() != Some(libc::EBUSY) && e.raw_os_error() != Some(libc::EINTR) {
                    break;
                }
            }
            metrics::inc(&self.metrics.uring_enters_total);
        }
        drop(uring);
        if !self.unsubmitted.replace(true) {
            self.wake.notify_one();
        }
    }

    /// Registers `fd` as session `tag`'s direct descriptor when its slot fits the table;
    /// how its operations must name it from now on.
    pub fn register(&self, fd: RawFd, tag: Tag) -> Target {
        if tag.key >= self.fixed_slots {
            return Target::Fd(fd);
        }
        match self.uring.borrow().submitter().register_files_update(tag.key, &[fd]) {
            Ok(1) => Target::Fixed(tag.key),
            _ => Target::Fd(fd),
        }
    }

    /// Drops the ring's reference to a session's registered descriptor (once its operations
    /// all completed).
    pub fn unregister(&self, target: Target) {
        if let Target::Fixed(slot) = target {
            let _ = self.uring.borrow().submitter().register_files_update(slot, &[-1]);
        }
    }

    /// Arms the multishot receive of `target` (session `tag`) into the shared buffers.
    pub fn arm_recv(&self, target: Target, tag: Tag) {
        let entry = match target {
            Target::Fd(fd) => opcode::RecvMulti::new(types::Fd(fd), BUFFER_GROUP).build(),
            Target::Fixed(slot) => opcode::RecvMulti::new(types::Fixed(slot), BUFFER_GROUP).build(),
        }
        .user_data(tag.user_data(Kind::Recv));
        self.started();
        self.push(&entry);
    }

    /// Asks the kernel to cancel session `tag`'s receive (its completion follows).
    pub fn cancel_recv(&self, tag: Tag) {
        let entry =
            opcode::AsyncCancel2::new(types::CancelBuilder::user_data(tag.user_data(Kind::Recv)))
                .build()
                .user_data(Tag { key: 0, generation: 0 }.user_data(Kind::Cancel));
        self.started();
        self.push(&entry);
    }

    /// Sends `op`'s frames on `fd` for session `tag` (one `send`, or `sendmsg` for several);
    /// the op comes back in [`Completion::Sent`].
    pub fn send(&self, target: Target, tag: Tag, op: SendOp) {
        let mut sends = self.sends.borrow_mut();
        let entry = sends.vacant_entry();
        let index = entry.key();
        let op = entry.insert(Box::new(op));
        op.tag = tag;
        let sqe = op
            .sqe(target)
            .user_data(Tag { key: index as u32, generation: 0 }.user_data(Kind::Send));
        drop(sends);
        metrics::inc(&self.metrics.writev_total);
        self.started();
        self.push(&sqe);
    }

    /// Submits what is queued (one `io_uring_enter` for the whole turn's SQEs).
    pub fn submit(&self) {
        if !self.unsubmitted.replace(false) {
            return;
        }
        metrics::inc(&self.metrics.uring_enters_total);
        if let Err(e) = self.uring.borrow_mut().submit() {
            tracing::error!("io_uring submit failed: {e}");
            self.unsubmitted.set(true);
        }
    }

    /// Submits what tokio-uring queued (REST reads and answers, accepts): called where the
    /// loop yields with work left, since tokio-uring submits only when the loop goes idle
    /// ([`runtime_ring`]).
    pub fn flush_runtime(&self) {
        metrics::inc(&self.metrics.runtime_flushes_total);
        self.runtime.flush();
    }

    /// Waits until completions may wait or SQEs need submitting.
    pub async fn wait(&self) {
        if self.unsubmitted.get() {
            return;
        }
        tokio::select! {
            guard = self.event.readable() => {
                // The eventfd's counter is never read: each signal is a new edge for the
                // runtime's edge-triggered epoll, and clearing the readiness here re-arms it.
                if let Ok(mut guard) = guard {
                    guard.clear_ready();
                }
            }
            _ = self.wake.notified() => {}
        }
    }

    /// Submits what is queued, has the kernel post what completed (running deferred task work
    /// with `DEFER_TASKRUN`), and hands at most `max` completions to `handle`. Returns how many
    /// were handled: `max` means more may wait.
    pub fn reap(&self, max: usize, mut handle: impl FnMut(Completion<'_>)) -> usize {
        let mut batch = std::mem::take(&mut *self.batch.borrow_mut());
        let enter = {
            let mut uring = self.uring.borrow_mut();
            let want_flush = uring.submission().cq_overflow();
            self.defer_taskrun || want_flush || self.unsubmitted.get()
        };
        if enter {
            metrics::inc(&self.metrics.uring_enters_total);
        }
        // Plain GETEVENTS enters, no timed wait: each runs up to 20 deferred task-work items
        // (the kernel's `IO_LOCAL_TW_DEFAULT_MAX`) and returns at once (a zero-timeout wait for
        // more arms an hrtimer per enter: a third of the shard's CPU in a connect storm). The
        // kernel keeps what one enter did not run on its retry list and does not signal the
        // eventfd for it again, so the reaper enters again while the last enter posted
        // completions, up to `max`: stopping after one enter that ran its full share could
        // leave a completion unposted until unrelated work woke the ring (a frame held for
        // seconds). What each enter posted is handled before the next enter, so its provided
        // buffers are back in the ring first: the buffers in use at once are one enter's, not
        // up to `max` completions' (a connect storm ran 512 out; `BufRing::grow`).
        let mut handled = 0;
        loop {
            let mut new = 0;
            {
                let mut uring = self.uring.borrow_mut();
                if enter {
                    self.unsubmitted.set(false);
                    let to_submit = uring.submission().len() as u32;
                    let before = uring.completion().len();
                    // SAFETY: no argument; GETEVENTS with no minimum never waits.
                    let entered = unsafe {
                        uring.submitter().enter::<libc::sigset_t>(
                            to_submit,
                            0,
                            ENTER_GETEVENTS,
                            None,
                        )
                    };
                    if let Err(e) = entered {
                        if !matches!(e.raw_os_error(), Some(libc::EINTR) | Some(libc::EBUSY)) {
                            tracing::error!("io_uring enter failed: {e}");
                        }
                    }
                    new = uring.completion().len().saturating_sub(before);
                }
                batch.extend(uring.completion().take(max - handled));
            }
            handled += batch.len();
            for i in 0..batch.len() {
                // A pass's completions are its sends', whose ops and connections the kernel's
                // send path pushed out of the cache meanwhile: start loading them early.
                if let Some(cqe) = batch.get(i + 2 * PREFETCH_AHEAD) {
                    self.prefetch_op(cqe, false);
                }
                if let Some(cqe) = batch.get(i + PREFETCH_AHEAD) {
                    self.prefetch_op(cqe, true);
                }
                self.dispatch(&batch[i], &mut handle);
            }
            batch.clear();
            if !enter || new == 0 || handled >= max {
                break;
            }
        }
        *self.batch.borrow_mut() = batch;
        self.metrics.recv_buffers_held.store(u64::from(self.bufs.held()), Ordering::Relaxed);
        handled
    }

    /// Starts loading a send completion's op, or (`hinted`) the memory its op names as what
    /// its completion will read ([`SendOp::hint`]; the op itself was prefetched before).
    #[inline]
    fn prefetch_op(&self, cqe: &cqueue::Entry, hinted: bool) {
        let (kind, tag) = Tag::from_user_data(cqe.user_data());
        if kind != Some(Kind::Send) {
            return;
        }
        let sends = self.sends.borrow();
        if let Some(op) = sends.get(tag.key as usize) {
            if hinted {
                prefetch(op.hint.0, op.hint.1);
            } else {
                let op: &SendOp = op;
                prefetch(op as *const SendOp as usize, std::mem::size_of::<SendOp>());
            }
        }
    }

    fn dispatch(&self, cqe: &cqueue::Entry, handle: &mut impl FnMut(Completion<'_>)) {
        let (kind, tag) = Tag::from_user_data(cqe.user_data());
        let flags = cqe.flags();
        let result = cqe.result();
        match kind {
            Some(Kind::Recv) => {
                let more = cqueue::more(flags);
                if !more {
                    self.ended();
                }
                let bid = cqueue::buffer_select(flags);
                if result == -libc::ENOBUFS {
                    metrics::inc(&self.metrics.recv_enobufs_total);
                    let posted = self.bufs.grow();
                    self.metrics.recv_buffers_posted.store(u64::from(posted), Ordering::Relaxed);
                }
                let data = match (result, bid) {
                    (n, Some(bid)) if n > 0 => self.bufs.take(bid, n as usize).ok_or(-libc::EIO),
                    (n, _) if n > 0 => Err(-libc::EIO),
                    (0, _) => Ok(&[][..]),
                    (e, _) => Err(e),
                };
                if result > 0 {
                    metrics::add(&self.metrics.bytes_in_total, result as u64);
                }
                handle(Completion::Recv { tag, result: data, more });
                if let Some(bid) = bid {
                    self.bufs.recycle(bid);
                }
            }
            Some(Kind::Send) => {
                self.ended();
                let op = self.sends.borrow_mut().try_remove(tag.key as usize);
                if let Some(op) = op {
                    handle(Completion::Sent { tag: op.tag, result, op });
                }
            }
            Some(Kind::Cancel) => self.ended(),
            None => {}
        }
    }

    /// True when the kernel supports what the ring needs (it was built, so yes); the flags
    /// it runs with, for the log.
    pub fn describe(&self) -> &'static str {
        if self.defer_taskrun {
            "SINGLE_ISSUER|DEFER_TASKRUN"
        } else {
            "SINGLE_ISSUER|COOP_TASKRUN"
        }
    }
}

impl Drop for Ring {
    /// Cancels every operation and waits (bounded) for the kernel to end them all, so no send
    /// still reads its frames and no receive still writes a provided buffer when their memory
    /// is freed.
    fn drop(&mut self) {
        let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any().all())
            .build()
            .user_data(Tag { key: 0, generation: 0 }.user_data(Kind::Cancel));
        self.started();
        let uring = self.uring.get_mut();
        // SAFETY: a cancellation references no memory.
        if unsafe { uring.submission().push(&cancel) }.is_err() {
            let _ = uring.submit();
            // SAFETY: as above.
            let _ = unsafe { uring.submission().push(&cancel) };
        }
        for _ in 0..1000 {
            if self.in_flight.get() == 0 {
                break;
            }
            let ts = types::Timespec::new().nsec(1_000_000);
            let args = types::SubmitArgs::new().timespec(&ts);
            let uring = self.uring.get_mut();
            let _ = uring.submitter().submit_with_args(1, &args);
            let done: Vec<cqueue::Entry> = uring.completion().collect();
            for cqe in done {
                let (kind, tag) = Tag::from_user_data(cqe.user_data());
                match kind {
                    Some(Kind::Send) => {
                        self.sends.get_mut().try_remove(tag.key as usize);
                        self.ended();
                    }
                    Some(Kind::Recv) if cqueue::more(cqe.flags()) => {}
                    Some(_) => self.ended(),
                    None => {}
                }
            }
        }
        if self.in_flight.get() != 0 {
            // Never seen: leak the memory rather than free what the kernel may still use.
            std::mem::forget(std::mem::take(self.sends.get_mut()));
            tracing::error!("io_uring ops still in flight at shard exit; their memory is leaked");
        } else {
            // SAFETY: dropped once, here; no operation can pick a buffer any more.
            unsafe { std::mem::ManuallyDrop::drop(&mut self.bufs) };
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn prefetch_covers_each_touched_cache_line_once() {
        let lines = |addr, bytes| super::cache_lines(addr, bytes).collect::<Vec<_>>();
        assert_eq!(lines(60, 8), vec![0, 64]);
        assert_eq!(lines(128, 64), vec![128]);
        assert_eq!(lines(130, 160), vec![128, 192, 256]);
        assert_eq!(lines(usize::MAX - 10, 100), vec![usize::MAX & !63]);
        // Wild addresses are only hints: no fault.
        super::prefetch(0, 256);
        super::prefetch(usize::MAX - 10, 100);
    }
}
