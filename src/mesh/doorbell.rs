//! The eventfd that wakes a shard when peers have pushed commands into its rings.
//!
//! Invariant: a producer writes the eventfd only when it flips `armed` from false to true, so a
//! burst of pushes costs one syscall per consumer wake-up, not one per command. The consumer
//! reads the eventfd, then clears `armed`, then drains its rings: a push that lands after the
//! clear always rings, and one that landed before it is seen by the drain.

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
    ///
    /// The eventfd is read *before* `armed` is cleared. In the other order a producer could
    /// ring between the two steps; the read would swallow its wake-up while `armed` stayed
    /// true, every later `ring` would skip the write, and the shard would sleep for good. The
    /// clear is a read-modify-write so it synchronises with the producer's swap: the drain
    /// that follows sees every command pushed before a ring that found `armed` already set.
    pub fn disarm(&self) {
        let mut counter: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our own non-blocking eventfd.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), (&mut counter as *mut u64).cast(), 8) };
        self.armed.swap(false, Ordering::AcqRel);
    }

    /// A duplicate of the fd for the consumer's async readiness registration.
    pub fn try_clone_fd(&self) -> std::io::Result<OwnedFd> {
        self.fd.try_clone()
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::sync::Arc;

    use super::Doorbell;

    /// Waits up to `ms` for the eventfd to become readable.
    fn wait_readable(bell: &Doorbell, ms: i32) -> bool {
        let mut pfd = libc::pollfd { fd: bell.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: polls one valid pollfd for our own eventfd.
        unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
    }

    #[test]
    fn doorbell_never_loses_a_wake_up_under_a_racing_producer() {
        const N: u64 = 300_000;
        let bell = Arc::new(Doorbell::new().unwrap());
        let (mut producer, mut consumer) = rtrb::RingBuffer::<u64>::new(64);
        let ringer = bell.clone();
        let thread = std::thread::spawn(move || {
            for i in 0..N {
                while producer.push(i).is_err() {
                    std::thread::yield_now();
                }
                ringer.ring();
            }
        });
        let mut received = 0;
        while received < N {
            assert!(wait_readable(&bell, 2000), "stalled: woken for {received} of {N} commands");
            bell.disarm();
            while consumer.pop().is_ok() {
                received += 1;
            }
        }
        thread.join().unwrap();
    }
}
