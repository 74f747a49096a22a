//! The eventfd that wakes a shard when peers have pushed commands into its rings.
//!
//! Invariant: a producer writes the eventfd only when it flips `armed` from false to true, so a
//! burst of pushes costs one syscall per consumer wake-up, not one per command. The consumer
//! clears `armed` *before* draining its rings, so a push that lands after the drain always rings.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// One shard's wake-up: an eventfd plus the flag that coalesces rings.
#[derive(Debug)]
pub struct Doorbell {
    fd: OwnedFd,
    armed: AtomicBool,
}

impl Doorbell {
    /// A new non-blocking eventfd.
    pub fn new() -> std::io::Result<Self> {
        // SAFETY: eventfd returns a new fd or -1; we own it from here on.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh, valid fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Doorbell { fd, armed: AtomicBool::new(false) })
    }

    /// Wakes the consumer unless a wake-up is already pending.
    pub fn ring(&self) {
        if !self.armed.swap(true, Ordering::AcqRel) {
            self.write_fd();
        }
    }

    /// Wakes the consumer unconditionally (shutdown).
    pub fn ring_always(&self) {
        self.armed.store(true, Ordering::Release);
        self.write_fd();
    }

    fn write_fd(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own eventfd. An error (counter full)
        // only means a wake-up is already pending, which is what we want.
        let _ = unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Called by the consumer after a wake-up, before draining: re-arms producers' rings.
    pub fn disarm(&self) {
        self.armed.store(false, Ordering::Release);
        let mut counter: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our own non-blocking eventfd.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), (&mut counter as *mut u64).cast(), 8) };
    }

    /// A duplicate of the fd for the consumer's async readiness registration.
    pub fn try_clone_fd(&self) -> std::io::Result<OwnedFd> {
        self.fd.try_clone()
    }
}
