//! A helper thread that runs one job at a time for the store writer: the log's `fdatasync`
//! (`store-s<i>`), so the writer can write the next group while the disk syncs the previous
//! one, and the redb apply of logged batches (`store-a<i>`), so commits continue while it runs.
//!
//! Invariants:
//! - At most one job is queued or running: [`Offload::start`] requires the previous job's
//!   result to have been taken ([`Offload::try_take`], [`Offload::wait`]).
//! - A finished job stores its result, wakes waiters on the condition variable and unparks the
//!   owner thread (the writer may be parked waiting for work of either kind).
//! - If the thread cannot be started, jobs run inline in [`Offload::start`] (same results,
//!   no overlap), so a failure to spawn never stops the store.
//! - Dropping the `Offload` waits for a running job, then stops and joins the thread.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

type Job<R> = Box<dyn FnOnce() -> R + Send>;

enum State<R> {
    Idle,
    Queued(Job<R>),
    Running,
    Done(R),
    Stop,
}

struct Inner<R> {
    state: Mutex<State<R>>,
    changed: Condvar,
    owner: Thread,
}

impl<R> Inner<R> {
    fn lock(&self) -> MutexGuard<'_, State<R>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A one-job-at-a-time helper thread owned by one thread (the writer).
pub(crate) struct Offload<R: Send + 'static> {
    inner: Arc<Inner<R>>,
    thread: Option<JoinHandle<()>>,
    busy: bool,
}

impl<R: Send + 'static> Offload<R> {
    /// Starts the helper thread named `name`; the calling thread is its owner.
    pub(crate) fn spawn(name: String) -> Self {
        let inner = Arc::new(Inner {
            state: Mutex::new(State::Idle),
            changed: Condvar::new(),
            owner: thread::current(),
        });
        let worker = inner.clone();
        let thread = thread::Builder::new().name(name.clone()).spawn(move || run(&worker));
        let thread = match thread {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(thread = %name, error = %e, "store helper thread not started; its jobs run inline");
                None
            }
        };
        Offload { inner, thread, busy: false }
    }

    /// Whether a job was started and its result not yet taken.
    pub(crate) fn busy(&self) -> bool {
        self.busy
    }

    /// Hands `job` to the thread (runs it inline if there is none).
    pub(crate) fn start(&mut self, job: impl FnOnce() -> R + Send + 'static) {
        assert!(!self.busy, "a store helper job is already running");
        self.busy = true;
        if self.thread.is_none() {
            *self.inner.lock() = State::Done(job());
            return;
        }
        *self.inner.lock() = State::Queued(Box::new(job));
        self.inner.changed.notify_all();
    }

    /// The job's result if it has finished.
    pub(crate) fn try_take(&mut self) -> Option<R> {
        if !self.busy {
            return None;
        }
        let mut state = self.inner.lock();
        match std::mem::replace(&mut *state, State::Idle) {
            State::Done(r) => {
                self.busy = false;
                Some(r)
            }
            other => {
                *state = other;
                None
            }
        }
    }

    /// Waits for the job's result, at most `timeout` (for ever with `None`); `None` when
    /// there is no job or it is still running at the timeout.
    pub(crate) fn wait(&mut self, timeout: Option<Duration>) -> Option<R> {
        if !self.busy {
            return None;
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut state = self.inner.lock();
        loop {
            if matches!(*state, State::Done(_)) {
                let State::Done(r) = std::mem::replace(&mut *state, State::Idle) else {
                    unreachable!("checked above")
                };
                self.busy = false;
                return Some(r);
            }
            state = match deadline {
                None => self.inner.changed.wait(state).unwrap_or_else(PoisonError::into_inner),
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    self.inner
                        .changed
                        .wait_timeout(state, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}

fn run<R>(inner: &Inner<R>) {
    let mut state = inner.lock();
    loop {
        match std::mem::replace(&mut *state, State::Idle) {
            State::Queued(job) => {
                *state = State::Running;
                drop(state);
                let result = job();
                state = inner.lock();
                *state = State::Done(result);
                inner.changed.notify_all();
                inner.owner.unpark();
            }
            State::Stop => return,
            other => {
                *state = other;
                state = inner.changed.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
        }
    }
}

impl<R: Send + 'static> Drop for Offload<R> {
    fn drop(&mut self) {
        let Some(thread) = self.thread.take() else { return };
        let _ = self.wait(None);
        *self.inner.lock() = State::Stop;
        self.inner.changed.notify_all();
        let _ = thread.join();
    }
}
