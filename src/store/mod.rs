//! The durable embedded store: one redb file per shard (`data_dir/shard-<i>.redb`), records
//! encoded with rkyv, written by a per-shard writer thread with group commit.
//!
//! A shard owns one [`Store`] handle (`Send`, used from the shard's single thread only). The
//! handle never blocks: [`Store::submit`] pushes a batch of [`StoreOp`]s into a bounded SPSC ring
//! (a full ring is `Err`, the caller parks the work and retries), and results come back as
//! [`Completion`]s through a second ring, drained with [`Store::drain_completions`] after the
//! wake-up callback (the shard's eventfd doorbell) fires.
//!
//! Invariants:
//! - Writes complete in submission order, each `Written` only after the group holding it is
//!   committed: with [`Durability::Fsync`], appended to the shard's write-ahead log
//!   (`shard-<i>.log`, see `log`) and `fdatasync`ed, then applied to redb later in larger
//!   transactions; logged batches not yet in redb are replayed at the next open. A failing commit is retried forever with
//!   backoff while [`Store::is_healthy`] reports `false`; nothing submitted is dropped.
//! - Reads ([`Store::read_history`], [`Store::read_message`],
//!   [`Store::read_message_by_seq`]) run on a second thread with
//!   its own rings, see only committed data and all of it (a read first waits until the writer
//!   has applied every batch committed before it), and never wait behind a failing write. Their
//!   completions are ordered among themselves, not relative to `Written` completions.
//! - [`Store::open`] returns everything needed to rebuild the shard's memory ([`Recovered`]);
//!   a corrupt or torn file is a [`StoreError`] naming the file, never a partial load.
//! - The message → room index is on disk (`message_room_blocks`, one entry per block of ids,
//!   see `db`); the shard keeps only its window's
//!   entries in memory and reads older messages through it ([`Store::read_message`]).
//! - Dropping the [`Store`] commits everything submitted, then stops both threads.
//!
//! Limits (in [`crate::limits`]): ring sizes are the caller's `ring_slots`; a group holds at
//! most `STORE_GROUP_BATCHES_MAX` batches / `STORE_GROUP_OPS_MAX` ops; history pages at most
//! `STORE_HISTORY_READ_MAX` messages; redb's page cache is `STORE_CACHE_BYTES` per shard file.

mod db;
mod dir;
mod error;
mod log;
mod offload;
mod record;
mod worker;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use rtrb::{Consumer, Producer, PushError, RingBuffer};

pub use crate::config::Durability;
pub use dir::{
    check_data_dir, check_layout, open_data_dir, shard_path, Created, DataDirLock, Layout,
    FORMAT_FILE, FORMAT_VERSION, LOCK_FILE,
};
pub use error::StoreError;
pub use record::{
    role_from_u8, role_to_u8, Completion, DialectRecord, MessageRecord, NotificationRecord,
    ReceiptRecord, Recovered, RecoveredRoom, RevokedRecord, RoomRecord, StoreOp,
};
pub use worker::Wake;

use log::Log;
use worker::{Batch, ReadOp, Shared};

/// The read ring is full: retry on a later loop pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingFull;

impl std::fmt::Display for RingFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the store's request ring is full")
    }
}

impl std::error::Error for RingFull {}

/// Counters of one shard's store, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreMetrics {
    /// Write transactions committed.
    pub commits: u64,
    /// Commit attempts that failed (each is retried).
    pub commit_failures: u64,
    /// Batches committed (`batches / commits` is the mean group size).
    pub batches: u64,
    /// Ops committed.
    pub ops: u64,
    /// Largest group committed, in batches.
    pub group_max_batches: u64,
    /// Read requests served.
    pub reads: u64,
    /// Batches waiting in the write ring now.
    pub write_ring_used: usize,
    /// Requests waiting in the read ring now.
    pub read_ring_used: usize,
    /// Capacity of each ring.
    pub ring_capacity: usize,
    /// Whether commits are succeeding.
    pub healthy: bool,
    /// Checkpoints of the write-ahead log into redb since open.
    pub checkpoints: u64,
    /// Bytes in the write-ahead log's current generation (0 without the log).
    pub log_bytes: u64,
    /// Batches committed (logged) but not yet applied to redb.
    pub unapplied_batches: u64,
    /// Batches replayed from the log at open (a crash left them there).
    pub replayed_batches: u64,
}

/// A shard's handle on its store file and threads. `Send`, not meant to be shared.
pub struct Store {
    writes: Producer<Batch>,
    reads: Producer<ReadOp>,
    written: Consumer<Completion>,
    read_done: Consumer<Completion>,
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
    reader: Option<JoinHandle<()>>,
    ring_slots: usize,
}

impl Store {
    /// Opens shard `shard`'s file in `data_dir` (creating it on first start), recovers its
    /// state, and starts its writer and reader threads.
    ///
    /// `window` is how many newest messages per room to return in [`Recovered`], and within
    /// how many bytes of encoded size (but for the newest): the shard's in-memory history
    /// bounds; `ring_slots` the capacity of each ring (write batches and read
    /// requests); `wake` is called from the store threads whenever completions are waiting.
    /// [`check_data_dir`] must have been called for `data_dir` and `shard_count` first.
    pub fn open(
        data_dir: &Path,
        shard: usize,
        shard_count: usize,
        durability: Durability,
        window: (usize, usize),
        ring_slots: usize,
        wake: Wake,
    ) -> Result<(Store, Recovered), StoreError> {
        if shard >= shard_count {
            return Err(StoreError::Invalid(format!(
                "shard {shard} does not exist in {shard_count} shards"
            )));
        }
        if ring_slots == 0 {
            return Err(StoreError::Invalid("ring_slots must be at least 1".into()));
        }
        dir::verify(data_dir, shard_count)?;
        let path = shard_path(data_dir, shard);
        let database = db::open(&path)?;
        // Batches logged but not yet checkpointed into redb (a crash, or a failing final
        // checkpoint) go in first; the log then starts its next generation.
        let log_file = log::log_path(&path);
        let (log, replayed) = if durability == Durability::Fsync || log_file.exists() {
            let log_err = |e: db::Fail| StoreError::db(&log_file, e.0);
            let gen = db::log_gen(&database).map_err(|e| StoreError::db(&path, e.0))?;
            let (mut log, batches) = Log::open(&log_file, gen).map_err(log_err)?;
            let next = gen.unwrap_or(0) + 1;
            db::checkpoint(&database, &batches, next).map_err(|e| StoreError::db(&path, e.0))?;
            if !batches.is_empty() {
                tracing::info!(path = %log_file.display(), batches = batches.len(), "store log replayed");
            }
            log.reset(next);
            ((durability == Durability::Fsync).then_some(log), batches.len())
        } else {
            (None, 0)
        };
        let (recovered, marks) =
            db::recover(&database, window).map_err(|e| StoreError::db(&path, e.0))?;
        let shared = Arc::new(Shared::new(path.clone(), database));
        shared.replayed.store(replayed as u64, Ordering::Relaxed);

        let (writes, write_in) = RingBuffer::new(ring_slots);
        let (write_out, written) = RingBuffer::new(ring_slots);
        let (reads, read_in) = RingBuffer::new(ring_slots);
        let (read_out, read_done) = RingBuffer::new(ring_slots);
        let spawn_err = |e| StoreError::io(&path, "starting a store thread for", e);
        let writer = {
            let shared = shared.clone();
            let wake = wake.clone();
            std::thread::Builder::new()
                .name(format!("store-w{shard}"))
                .spawn(move || {
                    worker::run_writer(shared, write_in, write_out, durability, marks, log, wake)
                })
                .map_err(spawn_err)?
        };
        let _ = shared.writer.set(writer.thread().clone());
        let reader = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("store-r{shard}"))
                .spawn(move || worker::run_reader(shared, read_in, read_out, wake))
        };
        let mut store = Store {
            writes,
            reads,
            written,
            read_done,
            shared,
            writer: Some(writer),
            reader: None,
            ring_slots,
        };
        // On failure `store` drops here, which stops the writer cleanly.
        let reader = reader.map_err(spawn_err)?;
        let _ = store.shared.reader.set(reader.thread().clone());
        store.reader = Some(reader);
        Ok((store, recovered))
    }

    /// Queues `ops` to be committed atomically; a `Written { token }` completion follows once
    /// they are committed. `Err` gives the ops back when the ring is full (retry later).
    pub fn submit(&mut self, token: u64, ops: Vec<StoreOp>) -> Result<(), Vec<StoreOp>> {
        match self.writes.push((token, ops)) {
            Ok(()) => {
                if let Some(writer) = &self.writer {
                    writer.thread().unpark();
                }
                Ok(())
            }
            Err(PushError::Full((_, ops))) => Err(ops),
        }
    }

    /// Queues a history read of `room` from disk (see
    /// [`STORE_HISTORY_READ_MAX`](crate::limits::STORE_HISTORY_READ_MAX) and the semantics of the
    /// in-memory window: ascending ids, strictly after `after`, strictly before `before`, only
    /// `before` = the newest `limit` before it, otherwise the oldest `limit` after `after`,
    /// deleted messages skipped; the page ends early, `truncated`, before the message that
    /// would bring its encoded size over `bytes_max`, but holds at least one). A
    /// `History { token }` completion follows. `Err` when the read ring is full.
    pub fn read_history(
        &mut self,
        token: u64,
        room: u64,
        after: Option<u64>,
        before: Option<u64>,
        (limit, bytes_max): (usize, usize),
    ) -> Result<(), RingFull> {
        self.push_read(ReadOp::History { token, room, after, before, limit, bytes_max })
    }

    /// Queues a read of `message` (found through the on-disk message → room index); a
    /// `Message { token }` completion follows. `Err` when the read ring is full.
    pub fn read_message(&mut self, token: u64, message: u64) -> Result<(), RingFull> {
        self.push_read(ReadOp::Message { token, message })
    }

    /// Queues a read of the message of `room` with per-room `seq` (a binary search over the
    /// room's key range, see `db::message_by_seq`); a `Message { token }` completion follows.
    /// `Err` when the read ring is full.
    pub fn read_message_by_seq(&mut self, token: u64, room: u64, seq: u64) -> Result<(), RingFull> {
        self.push_read(ReadOp::MessageBySeq { token, room, seq })
    }

    fn push_read(&mut self, op: ReadOp) -> Result<(), RingFull> {
        self.reads.push(op).map_err(|_| RingFull)?;
        if let Some(reader) = &self.reader {
            reader.thread().unpark();
        }
        Ok(())
    }

    /// Moves every waiting completion into `out`: write completions in submission order, then
    /// read completions in request order.
    pub fn drain_completions(&mut self, out: &mut Vec<Completion>) {
        while let Ok(c) = self.written.pop() {
            out.push(c);
        }
        while let Ok(c) = self.read_done.pop() {
            out.push(c);
        }
    }

    /// `false` while commits are failing (the writer is retrying); the shard should refuse new
    /// writes (503) until it is `true` again.
    pub fn is_healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Acquire)
    }

    /// Counters and ring occupancy.
    pub fn metrics(&self) -> StoreMetrics {
        let s = &self.shared;
        StoreMetrics {
            commits: s.commits.load(Ordering::Relaxed),
            commit_failures: s.commit_failures.load(Ordering::Relaxed),
            batches: s.batches.load(Ordering::Relaxed),
            ops: s.ops.load(Ordering::Relaxed),
            group_max_batches: s.group_max_batches.load(Ordering::Relaxed),
            reads: s.reads.load(Ordering::Relaxed),
            write_ring_used: self.ring_slots - self.writes.slots(),
            read_ring_used: self.ring_slots - self.reads.slots(),
            ring_capacity: self.ring_slots,
            healthy: self.is_healthy(),
            checkpoints: s.checkpoints.load(Ordering::Relaxed),
            log_bytes: s.log_bytes.load(Ordering::Relaxed),
            unapplied_batches: s
                .logged
                .load(Ordering::Relaxed)
                .saturating_sub(s.applied.load(Ordering::Relaxed)),
            replayed_batches: s.replayed.load(Ordering::Relaxed),
        }
    }

    /// The shard file's path.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Test hook: closes (`false`) or opens the gate every log sync waits at; returns how
    /// many syncs have reached the gate so far.
    #[cfg(test)]
    pub(crate) fn sync_gate(&self, open: Option<bool>) -> u64 {
        let (lock, cv) = &self.shared.sync_gate;
        let mut gate = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(open) = open {
            gate.0 = open;
            cv.notify_all();
        }
        gate.1
    }

    /// Test hook: the completions waiting now.
    #[cfg(test)]
    pub(crate) fn drain_completions_now(&mut self) -> Vec<Completion> {
        let mut out = Vec::new();
        self.drain_completions(&mut out);
        out
    }

    /// Test hook: the next `n` redb applies of logged batches fail.
    #[cfg(test)]
    pub(crate) fn fail_next_applies(&self, n: u32) {
        self.shared.fail_applies.store(n, Ordering::Release);
    }

    /// Test hook: the next `n` log syncs fail.
    #[cfg(test)]
    pub(crate) fn fail_next_syncs(&self, n: u32) {
        self.shared.fail_syncs.store(n, Ordering::Release);
    }

    /// Groups written to the log while the group before them was syncing.
    #[cfg(test)]
    pub(crate) fn pipelined_groups(&self) -> u64 {
        self.shared.pipelined.load(Ordering::Relaxed)
    }

    /// Test hook: the next `n` commit attempts fail as a full disk would make them.
    #[cfg(test)]
    pub(crate) fn fail_next_commits(&self, n: u32) {
        self.shared.fail_commits.store(n, Ordering::Release);
    }
}

impl Drop for Store {
    /// Commits everything submitted (retrying a failing group for up to
    /// [`STORE_FLUSH_GRACE`](crate::limits::STORE_FLUSH_GRACE)), then stops both threads.
    /// Completions not drained by then are discarded.
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        for handle in [self.writer.take(), self.reader.take()].into_iter().flatten() {
            handle.thread().unpark();
            if handle.join().is_err() {
                tracing::error!(path = %self.shared.path.display(), "a store thread panicked");
            }
        }
    }
}
