//! tokio-uring's own ring (HTTP, REST, accepts), submitted from the shard's loop when the
//! runtime cannot do it itself.
//!
//! tokio-uring 0.5 submits its queued SQEs only from tokio's `on_thread_park` hook. A
//! current-thread tokio runtime calls that hook only when it runs out of work: while tasks stay
//! ready (a saturated shard: the inbox, writer and reaper passes each yield and are ready again)
//! it polls its driver with `park_yield`, which skips the hook. A REST request's read and its
//! answer's write then wait in tokio-uring's queue until the fan-out drains, which is how
//! publishers starved under load. [`RuntimeRing::flush`] submits that queue with one
//! `io_uring_enter` on tokio-uring's ring descriptor, found once at start: the one io_uring
//! descriptor that appears while the shard builds its runtime (shards build their rings under
//! [`SETUP`], so no other ring can appear meanwhile).
//!
//! Invariant: only the shard thread that owns the runtime calls `flush` (io_uring submission
//! is single-threaded per ring, and tokio-uring pushes from the same thread).

use std::collections::HashSet;
use std::os::fd::RawFd;
use std::sync::Mutex;

/// Held while a shard creates an io_uring (its runtime's or its WebSocket ring), so the
/// descriptors that appear meanwhile are its own.
pub static SETUP: Mutex<()> = Mutex::new(());

/// tokio-uring's ring of this shard (or nothing, when it could not be told apart).
#[derive(Debug, Clone, Copy)]
pub struct RuntimeRing {
    fd: Option<RawFd>,
    entries: u32,
}

/// The io_uring descriptors of this process now.
fn io_uring_fds() -> HashSet<RawFd> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return HashSet::new();
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|t| t.as_os_str() == "anon_inode:[io_uring]")
        })
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

impl RuntimeRing {
    /// Builds the shard's tokio-uring runtime with `builder` (SQ of `entries`) and finds its
    /// ring's descriptor.
    pub fn build(
        builder: &tokio_uring::Builder,
        entries: u32,
    ) -> std::io::Result<(tokio_uring::Runtime, RuntimeRing)> {
        let _setup = SETUP.lock().unwrap_or_else(|e| e.into_inner());
        let before = io_uring_fds();
        let runtime = tokio_uring::Runtime::new(builder)?;
        let new: Vec<RawFd> = io_uring_fds().difference(&before).copied().collect();
        let fd = match new.as_slice() {
            [fd] => Some(*fd),
            _ => {
                tracing::warn!("tokio-uring's ring not found; REST may wait under saturation");
                None
            }
        };
        Ok((runtime, RuntimeRing { fd, entries }))
    }

    /// Submits whatever tokio-uring queued (one `io_uring_enter`, nothing waited for).
    pub fn flush(&self) {
        let Some(fd) = self.fd else {
            return;
        };
        // SAFETY: `fd` is the runtime's ring, open while the runtime (and so this shard's
        // tasks) lives; submitting only hands the kernel the SQEs tokio-uring published.
        unsafe {
            libc::syscall(
                libc::SYS_io_uring_enter,
                fd,
                self.entries,
                0u32,
                0u32,
                std::ptr::null::<libc::c_void>(),
                0usize,
            );
        }
    }
}
