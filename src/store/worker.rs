//! The two threads behind a shard's [`super::Store`]: the writer (group commit, retry with
//! backoff, health flag) and the reader (history pages and message lookups from disk).
//!
//! Invariants:
//! - The writer is the only writer of the file. It takes every batch waiting in its ring (up to
//!   [`STORE_GROUP_BATCHES_MAX`] batches / [`STORE_GROUP_OPS_MAX`] ops), commits them in
//!   submission order — with the log (fsync): ONE append and `fdatasync`; without: ONE redb
//!   write transaction — and only then pushes one `Written` completion per batch, in
//!   submission order, and calls the wake-up callback once.
//! - With the log, committed batches wait in memory (at most [`STORE_APPLY_OPS`] ops plus one
//!   group) until they are applied to redb in order, in one non-durable transaction: when they
//!   reach that bound, after [`STORE_APPLY_IDLE`] without work, or when the reader asks. A
//!   checkpoint (durable redb commit, next log generation) follows once the log holds
//!   [`STORE_LOG_CHECKPOINT_BYTES`], and at shutdown.
//! - A failed commit keeps its group: the writer marks the store unhealthy, waits (10 ms
//!   doubling to 1 s), reopens the file (redb refuses all work after an I/O error until it is
//!   reopened) and retries the same group until it commits, then marks the store healthy.
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
use super::record::{Completion, StoreOp};
use super::Durability;
use crate::limits::{
    STORE_APPLY_IDLE, STORE_APPLY_OPS, STORE_COMMIT_INTERVAL_MIN, STORE_FLUSH_GRACE,
    STORE_GROUP_BATCHES_MAX, STORE_GROUP_OPS_MAX, STORE_LOG_CHECKPOINT_BYTES, STORE_READ_BATCH_MAX,
    STORE_RETRY_FIRST, STORE_RETRY_MAX,
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
    /// Test hook: how many of the next commits fail as if the disk refused them.
    #[cfg(test)]
    pub fail_commits: std::sync::atomic::AtomicU32,
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
            #[cfg(test)]
            fail_commits: std::sync::atomic::AtomicU32::new(0),
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
/// With `log` (`durability = "fsync"`), a group is committed by appending it to the log;
/// its batches are applied to redb later (see `settle`).
pub(crate) fn run_writer(
    shared: Arc<Shared>,
    mut input: Consumer<Batch>,
    mut output: Producer<Completion>,
    durability: Durability,
    mut marks: Marks,
    mut log: Option<Log>,
    wake: Wake,
) {
    let mut group: Vec<Batch> = Vec::new();
    let mut pending = Pending::default();
    let mut idle_since: Option<Instant> = None;
    let mut given_up = false;
    let mut last_commit: Option<std::time::Instant> = None;
    let mut last_group = 0;
    let mut ops = 0;
    loop {
        while group.len() < STORE_GROUP_BATCHES_MAX && ops < STORE_GROUP_OPS_MAX {
            match input.pop() {
                Ok(batch) => {
                    ops += batch.1.len();
                    group.push(batch);
                }
                Err(_) => break,
            }
        }
        if let Some(log) = log.as_mut() {
            // Logged batches go into redb when a read needs them, or once the writer has been
            // idle for a moment (not at every short gap between groups: each redb transaction
            // costs about as much as a few hundred inserts).
            let wanted = shared.apply_wanted.load(Ordering::Acquire);
            let idle =
                group.is_empty() && idle_since.is_some_and(|at| at.elapsed() >= STORE_APPLY_IDLE);
            if !pending.batches.is_empty() && !given_up && (wanted || idle) {
                settle(&shared, log, &mut pending, &mut marks, false);
                idle_since = None;
                continue;
            }
            if wanted && pending.batches.is_empty() {
                shared.apply_wanted.store(false, Ordering::Release);
                if let Some(reader) = shared.reader.get() {
                    reader.unpark();
                }
            }
        }
        if group.is_empty() {
            if shared.shutdown.load(Ordering::Acquire) && input.is_empty() {
                break;
            }
            if !pending.batches.is_empty() && !given_up {
                let since = *idle_since.get_or_insert_with(Instant::now);
                thread::park_timeout(STORE_APPLY_IDLE.saturating_sub(since.elapsed()));
            } else {
                thread::park();
            }
            continue;
        }
        idle_since = None;
        let full = group.len() >= STORE_GROUP_BATCHES_MAX || ops >= STORE_GROUP_OPS_MAX;
        let wait = last_commit
            .map_or(Duration::ZERO, |at| STORE_COMMIT_INTERVAL_MIN.saturating_sub(at.elapsed()));
        // Linger only while busy (the last group held several batches): a lone closed-loop
        // client, whose every group is one batch, must not wait out the interval each time.
        let busy = last_group > 1 || group.len() > 1;
        if busy && !full && !wait.is_zero() && !shared.shutdown.load(Ordering::Acquire) {
            // A sleep, not a park: submissions meanwhile must not wake the writer one by one
            // (each wake is a context switch on the shard's CPU); their unparks are kept as
            // the park token and seen after the commit.
            thread::sleep(wait);
            continue;
        }
        last_commit = Some(std::time::Instant::now());
        last_group = group.len();
        let result = if given_up {
            Err("the store shut down while its file kept failing".to_string())
        } else {
            match log.as_mut() {
                Some(log) => commit_with_retry(&shared, &group, ops, |shared| {
                    append_group(shared, log, &group)
                }),
                None => commit_with_retry(&shared, &group, ops, |shared| {
                    commit_group(shared, &group, durability, &mut marks)
                }),
            }
        };
        if let Err(e) = &result {
            given_up = true;
            tracing::error!(
                path = %shared.path.display(),
                batches = group.len(),
                error = %e,
                "store shutting down: batches not committed"
            );
        } else {
            shared.logged.fetch_add(group.len() as u64, Ordering::AcqRel);
            if log.is_none() {
                shared.applied.fetch_add(group.len() as u64, Ordering::AcqRel);
            }
        }
        let keep = log.is_some() && result.is_ok();
        for (token, batch) in group.drain(..) {
            let completion = Completion::Written { token, result: result.clone() };
            deliver(&mut output, completion, &shared, &wake);
            if keep {
                pending.ops += batch.len();
                pending.batches.push(batch);
            }
        }
        ops = 0;
        wake();
        if let Some(log) = log.as_mut() {
            let checkpoint = log.len() >= STORE_LOG_CHECKPOINT_BYTES;
            if pending.ops >= STORE_APPLY_OPS || checkpoint {
                settle(&shared, log, &mut pending, &mut marks, checkpoint);
            }
        }
    }
    if given_up {
        return;
    }
    if let Some(log) = log.as_mut() {
        // Everything into redb and durable there, so the next start replays nothing.
        if !settle(&shared, log, &mut pending, &mut marks, true) {
            tracing::error!(
                path = %shared.path.display(),
                "store final checkpoint failed; the log keeps every committed batch"
            );
        }
    } else if durability == Durability::None {
        if let Err(e) = flush_durably(&shared) {
            tracing::error!(path = %shared.path.display(), error = %e.0, "store final flush failed");
        }
    }
}

/// One attempt to commit a group through the log: one write, one `fdatasync`.
fn append_group(shared: &Shared, log: &mut Log, group: &[Batch]) -> Result<(), Fail> {
    #[cfg(test)]
    if shared.injected_failure() {
        return Err(Fail("injected commit failure".into()));
    }
    log.append(group.iter().map(|(_, ops)| ops))?;
    shared.log_bytes.store(log.len(), Ordering::Relaxed);
    Ok(())
}

/// Applies `pending` to redb in one non-durable transaction and, with `checkpoint`, commits
/// durably and starts the log over. A failure makes the store unhealthy and is retried with
/// backoff after reopening the file; redb then has lost its non-durable commits, so the retry
/// applies the whole log again (a checkpoint). Returns `false` only when a shutdown outlasted
/// [`STORE_FLUSH_GRACE`] (everything is still in the log).
fn settle(
    shared: &Shared,
    log: &mut Log,
    pending: &mut Pending,
    marks: &mut Marks,
    checkpoint: bool,
) -> bool {
    let mut delay = STORE_RETRY_FIRST;
    let mut shutdown_seen: Option<Instant> = None;
    let mut from_log = false;
    loop {
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
            Err(e) => {
                shared.commit_failures.fetch_add(1, Ordering::Relaxed);
                shared.healthy.store(false, Ordering::Release);
                tracing::error!(
                    path = %shared.path.display(),
                    error = %e.0,
                    retry_in_ms = delay.as_millis() as u64,
                    "store apply of logged batches failed; retrying from the log"
                );
                if shared.shutdown.load(Ordering::Acquire) {
                    let since = *shutdown_seen.get_or_insert_with(Instant::now);
                    if since.elapsed() >= STORE_FLUSH_GRACE {
                        return false;
                    }
                }
                thread::sleep(delay);
                delay = (delay * 2).min(STORE_RETRY_MAX);
                if let Err(e) = shared.reopen() {
                    tracing::error!(path = %shared.path.display(), error = %e.0, "store reopen failed");
                }
                from_log = true;
            }
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
/// [`STORE_FLUSH_GRACE`].
fn commit_with_retry(
    shared: &Shared,
    group: &[Batch],
    ops: usize,
    mut attempt: impl FnMut(&Shared) -> Result<(), Fail>,
) -> Result<(), String> {
    let mut delay = STORE_RETRY_FIRST;
    let mut shutdown_seen: Option<Instant> = None;
    loop {
        match attempt(shared) {
            Ok(()) => {
                shared.commits.fetch_add(1, Ordering::Relaxed);
                shared.batches.fetch_add(group.len() as u64, Ordering::Relaxed);
                shared.ops.fetch_add(ops as u64, Ordering::Relaxed);
                shared.group_max_batches.fetch_max(group.len() as u64, Ordering::Relaxed);
                if !shared.healthy.load(Ordering::Relaxed) {
                    tracing::warn!(path = %shared.path.display(), "store commits succeed again");
                    shared.healthy.store(true, Ordering::Release);
                }
                return Ok(());
            }
            Err(e) => {
                shared.commit_failures.fetch_add(1, Ordering::Relaxed);
                shared.healthy.store(false, Ordering::Release);
                tracing::error!(
                    path = %shared.path.display(),
                    error = %e.0,
                    retry_in_ms = delay.as_millis() as u64,
                    "store commit failed; keeping the group and retrying"
                );
                if shared.shutdown.load(Ordering::Acquire) {
                    let since = *shutdown_seen.get_or_insert_with(Instant::now);
                    if since.elapsed() >= STORE_FLUSH_GRACE {
                        return Err(e.0);
                    }
                }
                thread::sleep(delay);
                delay = (delay * 2).min(STORE_RETRY_MAX);
                if let Err(e) = shared.reopen() {
                    tracing::error!(path = %shared.path.display(), error = %e.0, "store reopen failed");
                }
            }
        }
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
