//! The threads behind a shard's [`super::Store`]: the writer (group commit, retry with
//! backoff, health flag), with the write-ahead log its two helpers (`store-s<i>`: the log's
//! `fdatasync`; `store-a<i>`: the redb apply of logged batches, see `offload`), and the reader
//! (history pages and message lookups from disk).
//!
//! Invariants:
//! - The writer is the only writer of the log and decides every redb write. It takes every
//!   batch waiting in its ring (up to [`STORE_GROUP_BATCHES_MAX`] batches /
//!   [`STORE_GROUP_OPS_MAX`] ops) and commits them in submission order. Without the log: ONE
//!   redb write transaction, then one `Written` completion per batch. With the log
//!   (`Logged`): ONE `pwrite` of the group, then ONE `fdatasync` on the sync thread; while it
//!   runs, the next group is written behind it (at most one group syncing and one written),
//!   and that group's own `fdatasync` starts only after the first one completed — so every
//!   batch is acknowledged only after a sync that started after its bytes were written.
//!   `Written` completions go out in log order, the wake-up callback once per group.
//! - A sync starts at most once per [`STORE_COMMIT_INTERVAL_MIN`] while busy (groups fill).
//! - With the log, committed batches wait in memory until they are applied to redb in order,
//!   in one non-durable transaction on the apply thread (one at a time; commits continue
//!   meanwhile): when they reach [`STORE_APPLY_OPS`], after [`STORE_APPLY_IDLE`] without work,
//!   or when the reader asks; at most [`STORE_APPLY_PENDING_MAX`] ops wait while an apply
//!   runs, then the writer waits for it. A checkpoint (durable redb commit, next log
//!   generation) follows once the log holds [`STORE_LOG_CHECKPOINT_BYTES`], and at shutdown,
//!   each only when no group is in flight and no apply is running.
//! - A failed commit keeps its group: the writer marks the store unhealthy, waits (10 ms
//!   doubling to 1 s), reopens the file (redb refuses all work after an I/O error until it is
//!   reopened) and retries the same group until it commits, then marks the store healthy.
//!   With the log, a failed write or sync first rewinds the log to its durable end, and every
//!   group not known durable is retried synchronously, in order (append and sync on the
//!   writer thread).
//!   Nothing is dropped: the only way a batch completes with `Err` is a shutdown while commits
//!   keep failing for [`STORE_FLUSH_GRACE`], and that is logged with the count.
//! - The reader has its own rings and thread, so reads never wait behind a failing write; it
//!   sees committed state only, and answers with an error while the writer is reopening.
//! - Both threads sleep with `thread::park` when their ring is empty; the shard unparks them
//!   after each push (an atomic swap unless the thread is really asleep).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase};
use rtrb::{Consumer, Producer, PushError};

use super::db::{self, Fail, Marks};
use super::log::Log;
use super::offload::Offload;
use super::record::{Completion, StoreOp};
use super::Durability;
use crate::limits::{
    STORE_APPLY_IDLE, STORE_APPLY_OPS, STORE_APPLY_PENDING_MAX, STORE_COMMIT_INTERVAL_MIN,
    STORE_FLUSH_GRACE, STORE_GROUP_BATCHES_MAX, STORE_GROUP_OPS_MAX, STORE_LOG_CHECKPOINT_BYTES,
    STORE_READ_BATCH_MAX, STORE_RETRY_FIRST, STORE_RETRY_MAX,
};

/// The callback that tells the shard completions are waiting.
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// One submitted batch.
pub(crate) type Batch = (u64, Vec<StoreOp>);

/// A read request.
#[derive(Debug)]
pub(crate) enum ReadOp {
    History {
        token: u64,
        room: u64,
        after: Option<u64>,
        before: Option<u64>,
        limit: usize,
        bytes_max: usize,
    },
    Message {
        token: u64,
        message: u64,
    },
    MessageBySeq {
        token: u64,
        room: u64,
        seq: u64,
    },
}

/// State shared by the shard-side handle and both threads.
pub(crate) struct Shared {
    pub path: PathBuf,
    pub healthy: AtomicBool,
    pub shutdown: AtomicBool,
    pub commits: AtomicU64,
    pub commit_failures: AtomicU64,
    pub batches: AtomicU64,
    pub ops: AtomicU64,
    pub group_max_batches: AtomicU64,
    pub reads: AtomicU64,
    /// Batches committed (logged, with the write-ahead log) since open.
    pub logged: AtomicU64,
    /// Batches applied to redb since open (visible to the reader); `logged - applied` wait in
    /// the writer's memory.
    pub applied: AtomicU64,
    /// The reader waits for the writer to apply what is logged.
    pub apply_wanted: AtomicBool,
    /// Checkpoints (durable redb commit, next log generation) since open.
    pub checkpoints: AtomicU64,
    /// Bytes in the current log generation.
    pub log_bytes: AtomicU64,
    /// Batches found in the log at open and replayed into redb.
    pub replayed: AtomicU64,
    /// The writer thread, for the reader to wake it.
    pub writer: std::sync::OnceLock<thread::Thread>,
    /// The reader thread, for the writer to wake it.
    pub reader: std::sync::OnceLock<thread::Thread>,
    /// The open file; `None` while the writer reopens it after a failure.
    db: Mutex<Option<Arc<Database>>>,
    /// Groups written to the log while the group before them was in its `fdatasync`.
    pub pipelined: AtomicU64,
    /// Test hook: how many of the next commits fail as if the disk refused them.
    #[cfg(test)]
    pub fail_commits: std::sync::atomic::AtomicU32,
    /// Test hook: log syncs wait while this is `Some(false)` (closed), counting themselves in
    /// `sync_waits`; the next `fail_syncs` syncs fail.
    #[cfg(test)]
    pub sync_gate: (Mutex<(bool, u64)>, std::sync::Condvar),
    #[cfg(test)]
    pub fail_syncs: std::sync::atomic::AtomicU32,
    /// Test hook: how many of the next redb applies (on the apply thread) fail.
    #[cfg(test)]
    pub fail_applies: std::sync::atomic::AtomicU32,
}

impl Shared {
    pub fn new(path: PathBuf, db: Database) -> Self {
        Shared {
            path,
            healthy: AtomicBool::new(true),
            shutdown: AtomicBool::new(false),
            commits: AtomicU64::new(0),
            commit_failures: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            ops: AtomicU64::new(0),
            group_max_batches: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            logged: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            apply_wanted: AtomicBool::new(false),
            checkpoints: AtomicU64::new(0),
            log_bytes: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            writer: std::sync::OnceLock::new(),
            reader: std::sync::OnceLock::new(),
            db: Mutex::new(Some(Arc::new(db))),
            pipelined: AtomicU64::new(0),
            #[cfg(test)]
            fail_commits: std::sync::atomic::AtomicU32::new(0),
            #[cfg(test)]
            sync_gate: (Mutex::new((true, 0)), std::sync::Condvar::new()),
            #[cfg(test)]
            fail_syncs: std::sync::atomic::AtomicU32::new(0),
            #[cfg(test)]
            fail_applies: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// Counts a checkpoint and the (now empty) log's size.
    fn note_checkpoint(&self, log: &Log) {
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.log_bytes.store(log.len(), Ordering::Relaxed);
    }

    fn slot(&self) -> MutexGuard<'_, Option<Arc<Database>>> {
        self.db.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn current(&self) -> Option<Arc<Database>> {
        self.slot().clone()
    }

    /// Closes and reopens the file; waits for the reader to finish its current batch first.
    fn reopen(&self) -> Result<(), Fail> {
        let old = self.slot().take();
        if let Some(mut old) = old {
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(still_shared) => {
                        old = still_shared;
                        thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        }
        let db = db::open_file(&self.path)?;
        *self.slot() = Some(Arc::new(db));
        Ok(())
    }

    /// Test hook run by each log sync: waits while the gate is closed, then fails if asked.
    #[cfg(test)]
    fn sync_hook(&self) -> std::io::Result<()> {
        let (lock, cv) = &self.sync_gate;
        let mut gate = lock.lock().unwrap_or_else(PoisonError::into_inner);
        gate.1 += 1;
        cv.notify_all();
        while !gate.0 {
            gate = cv.wait(gate).unwrap_or_else(PoisonError::into_inner);
        }
        drop(gate);
        let fail = self
            .fail_syncs
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            return Err(std::io::Error::other("injected sync failure"));
        }
        Ok(())
    }

    #[cfg(test)]
    fn injected_failure(&self) -> bool {
        self.fail_commits
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// Pushes a completion, waiting (the writer thread may block; the shard never does) while the
/// shard has not drained its ring. Dropped only if the shard side is gone or shutting down
/// (the data is committed; nobody is left to tell).
fn deliver(
    out: &mut Producer<Completion>,
    mut completion: Completion,
    shared: &Shared,
    wake: &Wake,
) {
    loop {
        match out.push(completion) {
            Ok(()) => return,
            Err(PushError::Full(back)) => {
                if out.is_abandoned() || shared.shutdown.load(Ordering::Acquire) {
                    return;
                }
                completion = back;
                wake();
                thread::park_timeout(Duration::from_millis(1));
            }
        }
    }
}

/// Logged batches not yet applied to redb (with the write-ahead log), in order.
#[derive(Default)]
struct Pending {
    batches: Vec<Vec<StoreOp>>,
    ops: usize,
}

/// The writer thread's body; returns when the handle shuts down and its ring is empty.
/// With `log` (`durability = "fsync"`), a group is committed by appending it to the log (see
/// `run_logged`); its batches are applied to redb later (see `settle`).
pub(crate) fn run_writer(
    shared: Arc<Shared>,
    input: Consumer<Batch>,
    output: Producer<Completion>,
    durability: Durability,
    marks: Marks,
    log: Option<Log>,
    wake: Wake,
) {
    match log {
        Some(log) => Logged::new(shared, input, output, marks, log, wake).run(),
        None => run_direct(shared, input, output, durability, marks, wake),
    }
}

/// How long to wait before committing `group` (the commit interval, while busy), zero to
/// commit now.
fn linger(
    shared: &Shared,
    group: usize,
    ops: usize,
    last_group: usize,
    last_commit: Option<Instant>,
) -> Duration {
    let full = group >= STORE_GROUP_BATCHES_MAX || ops >= STORE_GROUP_OPS_MAX;
    let wait = last_commit
        .map_or(Duration::ZERO, |at| STORE_COMMIT_INTERVAL_MIN.saturating_sub(at.elapsed()));
    // Linger only while busy (the last group held several batches): a lone closed-loop
    // client, whose every group is one batch, must not wait out the interval each time.
    let busy = last_group > 1 || group > 1;
    if busy && !full && !shared.shutdown.load(Ordering::Acquire) {
        wait
    } else {
        Duration::ZERO
    }
}

/// Pops batches from `input` into `group` up to the group bounds; `ops` counts its ops.
fn collect(input: &mut Consumer<Batch>, group: &mut Vec<Batch>, ops: &mut usize) {
    while group.len() < STORE_GROUP_BATCHES_MAX && *ops < STORE_GROUP_OPS_MAX {
        match input.pop() {
            Ok(batch) => {
                *ops += batch.1.len();
                group.push(batch);
            }
            Err(_) => break,
        }
    }
}

/// The writer without the log: each group is one redb write transaction.
fn run_direct(
    shared: Arc<Shared>,
    mut input: Consumer<Batch>,
    mut output: Producer<Completion>,
    durability: Durability,
    mut marks: Marks,
    wake: Wake,
) {
    let mut group: Vec<Batch> = Vec::new();
    let mut given_up = false;
    let mut last_commit: Option<Instant> = None;
    let mut last_group = 0;
    let mut ops = 0;
    loop {
        collect(&mut input, &mut group, &mut ops);
        if group.is_empty() {
            if shared.shutdown.load(Ordering::Acquire) && input.is_empty() {
                break;
            }
            thread::park();
            continue;
        }
        let wait = linger(&shared, group.len(), ops, last_group, last_commit);
        if !wait.is_zero() {
            // A sleep, not a park: submissions meanwhile must not wake the writer one by one
            // (each wake is a context switch on the shard's CPU); their unparks are kept as
            // the park token and seen after the commit.
            thread::sleep(wait);
            continue;
        }
        last_commit = Some(Instant::now());
        last_group = group.len();
        let result = if given_up {
            Err("the store shut down while its file kept failing".to_string())
        } else {
            commit_with_retry(&shared, &group, ops, None, |shared| {
                commit_group(shared, &group, durability, &mut marks)
            })
        };
        match &result {
            Err(e) => {
                given_up = true;
                tracing::error!(
                    path = %shared.path.display(),
                    batches = group.len(),
                    error = %e,
                    "store shutting down: batches not committed"
                );
            }
            Ok(()) => {
                shared.logged.fetch_add(group.len() as u64, Ordering::AcqRel);
                shared.applied.fetch_add(group.len() as u64, Ordering::AcqRel);
            }
        }
        for (token, _) in group.drain(..) {
            let completion = Completion::Written { token, result: result.clone() };
            deliver(&mut output, completion, &shared, &wake);
        }
        ops = 0;
        wake();
    }
    if !given_up && durability == Durability::None {
        if let Err(e) = flush_durably(&shared) {
            tracing::error!(path = %shared.path.display(), error = %e.0, "store final flush failed");
        }
    }
}

/// A group written to the log, waiting for (or in) its `fdatasync`.
struct Flight {
    group: Vec<Batch>,
    ops: usize,
    /// The log's end after the group's records.
    end: u64,
}

/// The writer with the write-ahead log: a pipelined group commit. While group N's
/// `fdatasync` runs on the sync thread, group N+1 is written (one `pwrite`) and waits; its
/// own `fdatasync` starts when N's has completed (so it started after N+1's bytes were
/// written). At most one group is syncing and one written behind it. Completions go out in
/// log order, each only after its group's sync; a failure falls back to the synchronous
/// retry (`commit_with_retry`) of every group not known durable, in order.
struct Logged {
    shared: Arc<Shared>,
    input: Consumer<Batch>,
    output: Producer<Completion>,
    marks: Marks,
    log: Log,
    wake: Wake,
    syncer: Offload<std::io::Result<()>>,
    /// The redb apply of logged batches, on its own thread so commits continue meanwhile.
    applier: Offload<Applied>,
    /// The group whose `fdatasync` is running.
    syncing: Option<Flight>,
    /// The group written after `syncing`'s sync started.
    written: Option<Flight>,
    /// When `syncing`'s sync started.
    sync_started: Instant,
    /// How long the last sync took.
    last_sync: Duration,
    /// Logged batches not yet in redb.
    pending: Pending,
    given_up: bool,
}

impl Logged {
    fn new(
        shared: Arc<Shared>,
        input: Consumer<Batch>,
        output: Producer<Completion>,
        marks: Marks,
        log: Log,
        wake: Wake,
    ) -> Self {
        let name = |to: &str| {
            thread::current()
                .name()
                .map_or_else(|| to.to_string(), |n| n.replacen("store-w", to, 1))
        };
        Logged {
            shared,
            input,
            output,
            marks,
            log,
            wake,
            syncer: Offload::spawn(name("store-s")),
            applier: Offload::spawn(name("store-a")),
            syncing: None,
            written: None,
            sync_started: Instant::now(),
            last_sync: Duration::ZERO,
            pending: Pending::default(),
            given_up: false,
        }
    }

    fn run(mut self) {
        let shared = self.shared.clone();
        let mut group: Vec<Batch> = Vec::new();
        let mut ops = 0;
        let mut idle_since: Option<Instant> = None;
        let mut last_commit: Option<Instant> = None;
        let mut last_group = 0;
        // Whether the writer already woke once during the current sync to write what arrived.
        let mut peeked = false;
        loop {
            collect(&mut self.input, &mut group, &mut ops);
            if let Some(result) = self.syncer.try_take() {
                self.synced(result);
                peeked = false;
                continue;
            }
            if let Some(applied) = self.applier.try_take() {
                self.applied(applied);
                continue;
            }
            // Written and not yet durable: syncing, or waiting for its sync.
            let in_flight = self.syncing.is_some() || self.written.is_some();
            let applying = self.applier.busy();
            // Logged batches go into redb (on the apply thread) when a read needs them, once
            // they hold STORE_APPLY_OPS ops, or once the writer has been idle for a moment
            // (not at every short gap between groups: each redb transaction costs about as
            // much as a few hundred inserts). One apply at a time; while it runs, more than
            // STORE_APPLY_PENDING_MAX ops waiting make the writer wait for it.
            let wanted = shared.apply_wanted.load(Ordering::Acquire);
            let idle = group.is_empty()
                && !in_flight
                && idle_since.is_some_and(|at| at.elapsed() >= STORE_APPLY_IDLE);
            let full = self.pending.ops >= STORE_APPLY_OPS;
            if !self.pending.batches.is_empty() && !self.given_up && (wanted || idle || full) {
                if !applying {
                    self.apply();
                    idle_since = None;
                    continue;
                }
                if self.pending.ops >= STORE_APPLY_PENDING_MAX {
                    self.wait_applier();
                    continue;
                }
            }
            if wanted && self.pending.batches.is_empty() && !applying {
                shared.apply_wanted.store(false, Ordering::Release);
                if let Some(reader) = shared.reader.get() {
                    reader.unpark();
                }
            }
            // A checkpoint starts the log over, so it waits until nothing is in flight or
            // being applied, and no new group is written meanwhile.
            let checkpoint = self.log.len() >= STORE_LOG_CHECKPOINT_BYTES;
            if checkpoint && !in_flight && !self.given_up {
                self.wait_applier();
                settle(&shared, &mut self.log, &mut self.pending, &mut self.marks, true, None);
                continue;
            }
            let new = !group.is_empty() && !checkpoint;
            if self.syncing.is_none() && (new || self.written.is_some()) {
                // The next sync: at most one per STORE_COMMIT_INTERVAL_MIN while busy (as the
                // unpipelined writer committed), with what arrived meanwhile written too.
                idle_since = None;
                let behind = self.written.as_ref().map_or(0, |w| w.group.len());
                let (size, size_ops) = (behind + group.len(), ops);
                let wait = linger(&shared, size, size_ops, last_group, last_commit);
                if !wait.is_zero() {
                    // A sleep, not a park: submissions meanwhile must not wake the writer
                    // one by one (each wake is a context switch on the shard's CPU); their
                    // unparks are kept as the park token and seen after the commit.
                    thread::sleep(wait);
                    continue;
                }
                last_commit = Some(Instant::now());
                last_group = size;
                if new {
                    self.write(std::mem::take(&mut group), ops);
                    ops = 0;
                } else if let Some(flight) = self.written.take() {
                    self.start_sync(flight);
                }
                continue;
            }
            if new && self.written.is_none() {
                // Written behind the syncing group, ready to sync when it completes.
                idle_since = None;
                self.write(std::mem::take(&mut group), ops);
                ops = 0;
                continue;
            }
            if self.syncing.is_some() {
                // Wait for the sync, not for submissions (one wake per submission would cost
                // a context switch each); once per sync, after half the last one's duration,
                // wake to write what arrived meanwhile, so it is ready to sync next.
                let timeout = (!peeked && self.written.is_none() && !checkpoint)
                    .then(|| (self.last_sync / 2).saturating_sub(self.sync_started.elapsed()));
                peeked = true;
                if let Some(result) = self.syncer.wait(timeout) {
                    self.synced(result);
                    peeked = false;
                }
                continue;
            }
            if group.is_empty() {
                if shared.shutdown.load(Ordering::Acquire) && self.input.is_empty() {
                    break;
                }
                if applying {
                    // The apply thread unparks the writer when it finishes.
                    thread::park();
                } else if !self.pending.batches.is_empty() && !self.given_up {
                    let since = *idle_since.get_or_insert_with(Instant::now);
                    thread::park_timeout(STORE_APPLY_IDLE.saturating_sub(since.elapsed()));
                } else {
                    thread::park();
                }
                continue;
            }
            // Only a given-up store gets here with a group: it fails at once.
            debug_assert!(self.given_up || checkpoint);
            if self.given_up {
                let result = Err("the store shut down while its file kept failing".to_string());
                self.complete(std::mem::take(&mut group), result);
                ops = 0;
            }
        }
        self.wait_applier();
        if self.given_up {
            return;
        }
        // Everything into redb and durable there, so the next start replays nothing.
        if !settle(&shared, &mut self.log, &mut self.pending, &mut self.marks, true, None) {
            tracing::error!(
                path = %shared.path.display(),
                "store final checkpoint failed; the log keeps every committed batch"
            );
        }
    }

    /// Writes `group` to the log (after the group already written behind, if any, which it
    /// joins) and starts their sync, or keeps them written behind the group syncing now. A
    /// failed write first finishes the groups before it, then retries synchronously.
    fn write(&mut self, group: Vec<Batch>, ops: usize) {
        if self.given_up {
            let result = Err("the store shut down while its file kept failing".to_string());
            self.complete(group, result);
            return;
        }
        match log_group(&self.shared, &mut self.log, &group, false) {
            Ok(()) => {
                let end = self.log.len();
                let flight = match self.written.take() {
                    Some(mut behind) => {
                        behind.group.extend(group);
                        behind.ops += ops;
                        behind.end = end;
                        behind
                    }
                    None => Flight { group, ops, end },
                };
                if self.syncing.is_none() {
                    self.start_sync(flight);
                } else {
                    self.shared.pipelined.fetch_add(1, Ordering::Relaxed);
                    self.written = Some(flight);
                }
            }
            Err(fail) => {
                self.drain();
                self.log.rewind();
                let result = self.retry(&group, ops, fail);
                self.complete(group, result);
            }
        }
    }

    fn start_sync(&mut self, flight: Flight) {
        let file = self.log.file();
        #[cfg(test)]
        let shared = self.shared.clone();
        self.sync_started = Instant::now();
        self.syncer.start(move || {
            #[cfg(test)]
            shared.sync_hook()?;
            file.sync_data()
        });
        self.syncing = Some(flight);
    }

    /// The running sync finished with `result`: on success the synced group completes (the
    /// group written behind it syncs next, from the loop); on failure both are retried
    /// synchronously, in order.
    fn synced(&mut self, result: std::io::Result<()>) {
        self.last_sync = self.sync_started.elapsed();
        let Some(flight) = self.syncing.take() else {
            debug_assert!(false, "a sync result without a syncing group");
            return;
        };
        match result {
            Ok(()) => {
                self.log.synced(flight.end);
                debug_assert!(flight.end <= self.log.durable(), "acknowledged before durable");
                note_commit(&self.shared, &flight.group, flight.ops);
                // The group written behind starts its sync from the loop (after the commit
                // interval, with what arrived meanwhile).
                self.complete(flight.group, Ok(()));
            }
            Err(e) => {
                let fail = self.log.io_fail("syncing", e);
                self.log.rewind();
                let result = self.retry(&flight.group, flight.ops, fail);
                self.complete(flight.group, result);
                if let Some(next) = self.written.take() {
                    let result = if self.given_up {
                        Err("the store shut down while its file kept failing".to_string())
                    } else {
                        commit_with_retry(&self.shared, &next.group, next.ops, None, |shared| {
                            log_group(shared, &mut self.log, &next.group, true)
                        })
                    };
                    self.complete(next.group, result);
                }
            }
        }
    }

    /// Waits until no group is in flight (each completes or is retried, in order).
    fn drain(&mut self) {
        loop {
            if self.syncing.is_none() {
                match self.written.take() {
                    Some(flight) => self.start_sync(flight),
                    None => return,
                }
            }
            let result = self.syncer.wait(None);
            debug_assert!(result.is_some(), "a syncing group without a sync job");
            match result {
                Some(result) => self.synced(result),
                None => {
                    // Unreachable: treat the group as not synced and retry it.
                    let err = std::io::Error::other("lost the sync result");
                    self.synced(Err(err));
                }
            }
        }
    }

    /// The synchronous retry of a group whose write or sync failed with `fail`.
    fn retry(&mut self, group: &[Batch], ops: usize, fail: Fail) -> Result<(), String> {
        if self.given_up {
            return Err("the store shut down while its file kept failing".to_string());
        }
        let log = &mut self.log;
        commit_with_retry(&self.shared, group, ops, Some(fail), |shared| {
            log_group(shared, log, group, true)
        })
    }

    /// Delivers `group`'s completions (in order) and keeps its batches for redb.
    fn complete(&mut self, mut group: Vec<Batch>, result: Result<(), String>) {
        if let Err(e) = &result {
            if !self.given_up {
                tracing::error!(
                    path = %self.shared.path.display(),
                    batches = group.len(),
                    error = %e,
                    "store shutting down: batches not committed"
                );
            }
            self.given_up = true;
        } else {
            self.shared.logged.fetch_add(group.len() as u64, Ordering::AcqRel);
        }
        let keep = result.is_ok();
        for (token, batch) in group.drain(..) {
            let completion = Completion::Written { token, result: result.clone() };
            deliver(&mut self.output, completion, &self.shared, &self.wake);
            if keep {
                self.pending.ops += batch.len();
                self.pending.batches.push(batch);
            }
        }
        (self.wake)();
    }

    /// Hands the pending batches to the apply thread (which must be idle).
    fn apply(&mut self) {
        let batches = std::mem::take(&mut self.pending.batches);
        let ops = std::mem::take(&mut self.pending.ops);
        let shared = self.shared.clone();
        let mut marks = self.marks;
        self.applier.start(move || {
            let result = apply_batches(&shared, &batches, &mut marks);
            Applied { result, batches, ops, marks }
        });
    }

    /// An apply finished: on success its marks are the writer's; a failure puts its batches
    /// back in front of the pending ones, finishes the groups in flight (the retry applies
    /// the whole log again and starts it over), then retries.
    fn applied(&mut self, applied: Applied) {
        let Applied { result, mut batches, ops, marks } = applied;
        match result {
            Ok(()) => self.marks = marks,
            Err(fail) => {
                batches.append(&mut self.pending.batches);
                self.pending.batches = batches;
                self.pending.ops += ops;
                self.drain();
                let (shared, log, pending) = (&self.shared, &mut self.log, &mut self.pending);
                settle(shared, log, pending, &mut self.marks, false, Some(fail));
            }
        }
    }

    /// Waits for a running apply and takes its result.
    fn wait_applier(&mut self) {
        if let Some(applied) = self.applier.wait(None) {
            self.applied(applied);
        }
    }
}

/// Counts a committed group.
fn note_commit(shared: &Shared, group: &[Batch], ops: usize) {
    shared.commits.fetch_add(1, Ordering::Relaxed);
    shared.batches.fetch_add(group.len() as u64, Ordering::Relaxed);
    shared.ops.fetch_add(ops as u64, Ordering::Relaxed);
    shared.group_max_batches.fetch_max(group.len() as u64, Ordering::Relaxed);
    if !shared.healthy.load(Ordering::Relaxed) {
        tracing::warn!(path = %shared.path.display(), "store commits succeed again");
        shared.healthy.store(true, Ordering::Release);
    }
}

/// One attempt to write a group to the log: with `sync`, one write and one `fdatasync` (a
/// commit); without, the write alone (the pipelined path's first step, synced elsewhere).
fn log_group(shared: &Shared, log: &mut Log, group: &[Batch], sync: bool) -> Result<(), Fail> {
    #[cfg(test)]
    if shared.injected_failure() {
        return Err(Fail("injected commit failure".into()));
    }
    let batches = group.iter().map(|(_, ops)| ops);
    if sync {
        log.append(batches)?;
    } else {
        log.write(batches)?;
    }
    shared.log_bytes.store(log.len(), Ordering::Relaxed);
    Ok(())
}

/// What the apply thread hands back: its result, the batches (kept for the retry on failure)
/// and the marks after them.
struct Applied {
    result: Result<(), Fail>,
    batches: Vec<Vec<StoreOp>>,
    ops: usize,
    marks: Marks,
}

/// Applies `batches` to redb in one non-durable transaction (one attempt); on success counts
/// them applied and wakes a waiting reader.
fn apply_batches(shared: &Shared, batches: &[Vec<StoreOp>], marks: &mut Marks) -> Result<(), Fail> {
    #[cfg(test)]
    if shared
        .fail_applies
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok()
    {
        return Err(Fail("injected apply failure".into()));
    }
    let db =
        shared.current().ok_or_else(|| Fail("file is closed after an earlier failure".into()))?;
    let mut txn = db.begin_write()?;
    txn.set_durability(redb::Durability::None)?;
    let mut next = *marks;
    db::apply(&txn, batches.iter().map(Vec::as_slice), &mut next)?;
    txn.commit()?;
    *marks = next;
    shared.applied.fetch_add(batches.len() as u64, Ordering::AcqRel);
    if shared.apply_wanted.swap(false, Ordering::AcqRel) {
        if let Some(reader) = shared.reader.get() {
            reader.unpark();
        }
    }
    Ok(())
}

/// Applies `pending` to redb in one non-durable transaction and, with `checkpoint`, commits
/// durably and starts the log over. A failure (or `failed`: an attempt already failed) makes
/// the store unhealthy and is retried with backoff after reopening the file; redb then has
/// lost its non-durable commits, so the retry applies the whole log again (a checkpoint).
/// Nothing may be in flight (written, not yet durable) in the log. Returns `false` only when
/// a shutdown outlasted [`STORE_FLUSH_GRACE`] (everything is still in the log).
fn settle(
    shared: &Shared,
    log: &mut Log,
    pending: &mut Pending,
    marks: &mut Marks,
    checkpoint: bool,
    failed: Option<Fail>,
) -> bool {
    let mut backoff = Backoff::new();
    let mut from_log = false;
    let mut failure = failed;
    loop {
        if let Some(e) = failure.take() {
            if !backoff.after(
                shared,
                &e,
                "store apply of logged batches failed; retrying from the log",
            ) {
                return false;
            }
            from_log = true;
        }
        let mut attempt = || -> Result<(), Fail> {
            let db = shared
                .current()
                .ok_or_else(|| Fail("file is closed after an earlier failure".into()))?;
            if from_log {
                let gen = log.gen() + 1;
                db::checkpoint(&db, &log.read_back()?, gen)?;
                log.reset(gen);
                shared.note_checkpoint(log);
                return Ok(());
            }
            if !pending.batches.is_empty() {
                let mut txn = db.begin_write()?;
                txn.set_durability(redb::Durability::None)?;
                let mut next = *marks;
                db::apply(&txn, pending.batches.iter().map(Vec::as_slice), &mut next)?;
                txn.commit()?;
                *marks = next;
            }
            if checkpoint {
                let gen = log.gen() + 1;
                db::checkpoint(&db, &[], gen)?;
                log.reset(gen);
                shared.note_checkpoint(log);
            }
            Ok(())
        };
        match attempt() {
            Ok(()) => {
                shared.applied.fetch_add(pending.batches.len() as u64, Ordering::AcqRel);
                pending.batches.clear();
                pending.ops = 0;
                if !shared.healthy.load(Ordering::Relaxed) {
                    tracing::warn!(path = %shared.path.display(), "store commits succeed again");
                    shared.healthy.store(true, Ordering::Release);
                }
                if shared.apply_wanted.swap(false, Ordering::AcqRel) {
                    if let Some(reader) = shared.reader.get() {
                        reader.unpark();
                    }
                }
                return true;
            }
            Err(e) => failure = Some(e),
        }
    }
}

/// A durable empty commit, which persists every earlier non-durable one.
fn flush_durably(shared: &Shared) -> Result<(), Fail> {
    let db = shared.current().ok_or_else(|| Fail("file is closed".into()))?;
    let txn = db.begin_write()?;
    txn.commit()?;
    Ok(())
}

/// Commits `group` with `attempt`, retrying with backoff (and reopening the redb file, which
/// redb needs after an I/O error) until it succeeds or a shutdown outlasts
/// [`STORE_FLUSH_GRACE`]. `failed`: the first attempt already failed so (the pipelined
/// write or sync), and the retry starts with the backoff.
fn commit_with_retry(
    shared: &Shared,
    group: &[Batch],
    ops: usize,
    failed: Option<Fail>,
    mut attempt: impl FnMut(&Shared) -> Result<(), Fail>,
) -> Result<(), String> {
    let mut backoff = Backoff::new();
    let mut failure = failed;
    loop {
        let result = match failure.take() {
            Some(e) => Err(e),
            None => attempt(shared),
        };
        match result {
            Ok(()) => {
                note_commit(shared, group, ops);
                return Ok(());
            }
            Err(e) => {
                if !backoff.after(shared, &e, "store commit failed; keeping the group and retrying")
                {
                    return Err(e.0);
                }
            }
        }
    }
}

/// The retry schedule of a failing store write: sleeps doubling from [`STORE_RETRY_FIRST`] to
/// [`STORE_RETRY_MAX`], the redb file reopened after each (redb needs it after an I/O error);
/// given up once a shutdown has lasted [`STORE_FLUSH_GRACE`].
struct Backoff {
    delay: Duration,
    shutdown_seen: Option<Instant>,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff { delay: STORE_RETRY_FIRST, shutdown_seen: None }
    }

    /// Counts failure `e` (the store unhealthy until a commit succeeds) and logs it as `what`;
    /// then false when a shutdown outlasted the grace (give up), else sleeps, reopens, true.
    fn after(&mut self, shared: &Shared, e: &Fail, what: &str) -> bool {
        shared.commit_failures.fetch_add(1, Ordering::Relaxed);
        shared.healthy.store(false, Ordering::Release);
        tracing::error!(
            path = %shared.path.display(),
            error = %e.0,
            retry_in_ms = self.delay.as_millis() as u64,
            "{what}"
        );
        if shared.shutdown.load(Ordering::Acquire) {
            let since = *self.shutdown_seen.get_or_insert_with(Instant::now);
            if since.elapsed() >= STORE_FLUSH_GRACE {
                return false;
            }
        }
        thread::sleep(self.delay);
        self.delay = (self.delay * 2).min(STORE_RETRY_MAX);
        if let Err(e) = shared.reopen() {
            tracing::error!(path = %shared.path.display(), error = %e.0, "store reopen failed");
        }
        true
    }
}

/// One attempt: a write transaction holding every batch of `group`, committed.
fn commit_group(
    shared: &Shared,
    group: &[Batch],
    durability: Durability,
    marks: &mut Marks,
) -> Result<(), Fail> {
    let db =
        shared.current().ok_or_else(|| Fail("file is closed after an earlier failure".into()))?;
    let mut txn = db.begin_write()?;
    if durability == Durability::None {
        txn.set_durability(redb::Durability::None)?;
    }
    let mut next = *marks;
    db::apply(&txn, group.iter().map(|(_, ops)| ops.as_slice()), &mut next)?;
    #[cfg(test)]
    if shared.injected_failure() {
        txn.abort()?;
        return Err(Fail("injected commit failure".into()));
    }
    txn.commit()?;
    *marks = next;
    Ok(())
}

/// Waits until the writer has applied at least `want` batches to redb, asking it to apply
/// what it holds; `false` (at once) while the store is unhealthy.
fn wait_applied(shared: &Shared, want: u64) -> bool {
    while shared.applied.load(Ordering::Acquire) < want {
        if !shared.healthy.load(Ordering::Acquire) {
            return false;
        }
        shared.apply_wanted.store(true, Ordering::Release);
        if let Some(writer) = shared.writer.get() {
            writer.unpark();
        }
        thread::park_timeout(Duration::from_micros(500));
    }
    true
}

/// The reader thread's body; returns when the handle shuts down and its ring is empty.
pub(crate) fn run_reader(
    shared: Arc<Shared>,
    mut input: Consumer<ReadOp>,
    mut output: Producer<Completion>,
    wake: Wake,
) {
    let mut batch = Vec::with_capacity(STORE_READ_BATCH_MAX);
    loop {
        while batch.len() < STORE_READ_BATCH_MAX {
            match input.pop() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            if shared.shutdown.load(Ordering::Acquire) && input.is_empty() {
                return;
            }
            thread::park();
            continue;
        }
        shared.reads.fetch_add(batch.len() as u64, Ordering::Relaxed);
        // Every batch committed before these reads must be visible to them.
        let caught_up = wait_applied(&shared, shared.logged.load(Ordering::Acquire));
        let db = shared.current();
        let txn = match &db {
            _ if !caught_up => Err("the store is retrying a failing write".to_string()),
            Some(db) => db.begin_read().map_err(|e| e.to_string()),
            None => Err("the store file is being reopened after a write failure".to_string()),
        };
        let unreadable =
            |e: &dyn std::fmt::Display| format!("store file {}: {e}", shared.path.display());
        for op in batch.drain(..) {
            let completion = match op {
                ReadOp::History { token, room, after, before, limit, bytes_max } => {
                    Completion::History {
                        token,
                        result: match &txn {
                            Ok(txn) => db::history(txn, room, after, before, (limit, bytes_max))
                                .map_err(|e| unreadable(&e.0)),
                            Err(e) => Err(unreadable(e)),
                        },
                    }
                }
                ReadOp::Message { token, message } => Completion::Message {
                    token,
                    result: match &txn {
                        Ok(txn) => db::message(txn, message).map_err(|e| unreadable(&e.0)),
                        Err(e) => Err(unreadable(e)),
                    },
                },
                ReadOp::MessageBySeq { token, room, seq } => Completion::Message {
                    token,
                    result: match &txn {
                        Ok(txn) => db::message_by_seq(txn, room, seq).map_err(|e| unreadable(&e.0)),
                        Err(e) => Err(unreadable(e)),
                    },
                },
            };
            deliver(&mut output, completion, &shared, &wake);
        }
        drop(txn);
        drop(db);
        wake();
    }
}
