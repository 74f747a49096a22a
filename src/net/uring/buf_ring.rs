//! The shard's provided-buffer ring: `count` receive buffers of `size` bytes that the kernel
//! picks from when a multishot receive has data, shared by every WebSocket socket of the shard.
//!
//! Owns: the ring of `io_uring_buf` entries (page-aligned, registered with the shard's ring
//! under a group id) and the buffers' memory. Invariants: a buffer below `posted` is either in
//! the ring (the kernel's to fill) or held by the shard between the completion that names it
//! and [`BufRing::recycle`], which the completion handler calls before it returns, so no buffer
//! is held between loop turns; buffers from `posted` to `count` were never handed to the
//! kernel (their memory is reserved, zeroed and untouched, so not resident); the memory
//! outlives the registration (the owning `Ring` drops its io_uring first).
//!
//! Only the first `first` buffers are posted at start, and [`BufRing::grow`] (called when a
//! receive found the ring empty) doubles that, up to `count`: the kernel takes buffers in ring
//! order, cycling through every posted one, so each posted buffer becomes resident; a shard
//! that never needs more than a few keeps only those few resident.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;

/// The ring of provided buffers and their memory.
pub struct BufRing {
    /// `count` entries, page-aligned; the kernel reads them, the tail lives in entry 0.
    entries: *mut BufRingEntry,
    entries_layout: Layout,
    /// `count * size` bytes: buffer `bid` starts at `bid * size`.
    memory: *mut u8,
    memory_layout: Layout,
    count: u16,
    /// Buffers handed to the kernel so far (`bid < posted`), at most `count`.
    posted: Cell<u16>,
    size: usize,
    /// Our tail (the kernel's copy is written with release ordering after each recycle).
    tail: Cell<u16>,
    /// Buffers taken from completions and not yet recycled.
    held: Cell<u32>,
}

impl BufRing {
    /// Reserves `count` (a power of two, at most 32768) buffers of `size` bytes and posts the
    /// first `first` (1 to `count`). Nothing is registered yet: see [`BufRing::register`].
    pub fn new(count: u16, first: u16, size: usize) -> io::Result<BufRing> {
        if !count.is_power_of_two()
            || count > 32_768
            || first == 0
            || first > count
            || size == 0
            || size > u32::MAX as usize
        {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad buffer ring shape"));
        }
        let entries_layout =
            Layout::from_size_align(usize::from(count) * std::mem::size_of::<BufRingEntry>(), 4096)
                .map_err(|e| io::Error::other(e.to_string()))?;
        let memory_layout = Layout::from_size_align(usize::from(count) * size, 64)
            .map_err(|e| io::Error::other(e.to_string()))?;
        // SAFETY: both layouts have a non-zero size (count ≥ 1, size ≥ 1).
        let entries = unsafe { alloc_zeroed(entries_layout) }.cast::<BufRingEntry>();
        // Zeroed, so untouched pages stay unmapped until the kernel first fills them.
        let memory = unsafe { alloc_zeroed(memory_layout) };
        if entries.is_null() || memory.is_null() {
            // SAFETY: each pointer, if not null, came from `alloc_zeroed` with its layout.
            unsafe {
                if !entries.is_null() {
                    dealloc(entries.cast(), entries_layout);
                }
                if !memory.is_null() {
                    dealloc(memory, memory_layout);
                }
            }
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let ring = BufRing {
            entries,
            entries_layout,
            memory,
            memory_layout,
            count,
            posted: Cell::new(0),
            size,
            tail: Cell::new(0),
            held: Cell::new(0),
        };
        ring.post_up_to(first);
        Ok(ring)
    }

    /// Posts buffers `posted..end` (never held, so `held` is unchanged).
    fn post_up_to(&self, end: u16) {
        let end = end.min(self.count);
        for bid in self.posted.get()..end {
            self.post(bid);
        }
        self.posted.set(end.max(self.posted.get()));
    }

    /// Doubles the posted buffers (up to `count`): a receive found the ring empty. Returns the
    /// number posted now.
    pub fn grow(&self) -> u16 {
        let posted = self.posted.get();
        self.post_up_to(posted.saturating_mul(2));
        self.posted.get()
    }

    /// Buffers handed to the kernel so far.
    pub fn posted(&self) -> u16 {
        self.posted.get()
    }

    /// Registers the ring with `submitter`'s io_uring as buffer group `group`.
    pub fn register(&self, submitter: &io_uring::Submitter<'_>, group: u16) -> io::Result<()> {
        // SAFETY: the entries stay allocated (and at this address) until `self` drops, which
        // the owner orders after the io_uring's own drop.
        unsafe { submitter.register_buf_ring_with_flags(self.entries as u64, self.count, group, 0) }
    }

    /// The first `len` bytes of buffer `bid`, which a completion just handed over.
    pub fn take(&self, bid: u16, len: usize) -> Option<&[u8]> {
        if bid >= self.posted.get() || len > self.size {
            return None;
        }
        self.held.set(self.held.get() + 1);
        // SAFETY: the buffer lies inside `memory`; the kernel wrote `len` bytes into it and
        // does not touch it again until it is recycled (after this borrow ends: the caller
        // recycles only once it is done with the slice).
        Some(unsafe {
            std::slice::from_raw_parts(self.memory.add(usize::from(bid) * self.size), len)
        })
    }

    /// Gives buffer `bid` back to the kernel.
    pub fn recycle(&self, bid: u16) {
        if bid >= self.posted.get() {
            return;
        }
        self.post(bid);
        self.held.set(self.held.get().saturating_sub(1));
    }

    /// Writes buffer `bid` at the tail and publishes the tail.
    fn post(&self, bid: u16) {
        let tail = self.tail.get();
        let index = usize::from(tail & (self.count - 1));
        // SAFETY: `index < count`; the kernel reads an entry only below the published tail,
        // and this slot was consumed (at most `posted ≤ count` buffers are ever in the ring, so
        // the slot `count` entries behind the tail is not the kernel's).
        unsafe {
            let entry = &mut *self.entries.add(index);
            entry.set_addr(self.memory.add(usize::from(bid) * self.size) as u64);
            entry.set_len(self.size as u32);
            entry.set_bid(bid);
        }
        let tail = tail.wrapping_add(1);
        self.tail.set(tail);
        // SAFETY: the tail field of entry 0, which the kernel reads with acquire ordering.
        unsafe {
            let tail_ptr = BufRingEntry::tail(self.entries).cast_mut();
            (*tail_ptr.cast::<AtomicU16>()).store(tail, Ordering::Release);
        }
    }

    /// Buffers the shard holds now (taken, not yet recycled).
    pub fn held(&self) -> u32 {
        self.held.get()
    }

    /// Bytes in one buffer.
    pub fn size(&self) -> usize {
        self.size
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with these layouts; the io_uring that used them is gone.
        unsafe {
            dealloc(self.entries.cast(), self.entries_layout);
            dealloc(self.memory, self.memory_layout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::BufRing;

    #[test]
    fn every_buffer_is_posted_and_recycling_moves_the_tail() {
        let ring = BufRing::new(8, 8, 64).expect("ring");
        assert_eq!(ring.held(), 0);
        assert_eq!(ring.tail.get(), 8);
        let slice = ring.take(3, 10).expect("a posted buffer");
        assert_eq!(slice.len(), 10);
        assert_eq!(ring.held(), 1);
        ring.recycle(3);
        assert_eq!(ring.held(), 0);
        assert_eq!(ring.tail.get(), 9);
        assert!(ring.take(8, 1).is_none(), "no such buffer");
        assert!(ring.take(0, 65).is_none(), "longer than a buffer");
        assert!(BufRing::new(6, 6, 64).is_err(), "not a power of two");
        assert!(BufRing::new(8, 0, 64).is_err(), "none posted");
        assert!(BufRing::new(8, 9, 64).is_err(), "more posted than reserved");
    }

    #[test]
    fn the_first_buffers_are_posted_and_growing_doubles_them_up_to_the_count() {
        let ring = BufRing::new(8, 2, 64).expect("ring");
        assert_eq!((ring.posted(), ring.tail.get(), ring.held()), (2, 2, 0));
        assert!(ring.take(2, 1).is_none(), "not posted yet");
        ring.recycle(2);
        assert_eq!(ring.tail.get(), 2, "a buffer never posted is not recycled");
        let _ = ring.take(1, 1).expect("posted");
        assert_eq!(ring.grow(), 4);
        assert_eq!(ring.held(), 1, "growing posts new buffers, not held ones");
        ring.recycle(1);
        assert_eq!((ring.tail.get(), ring.held()), (5, 0));
        assert!(ring.take(3, 1).is_some());
        ring.recycle(3);
        assert_eq!(ring.grow(), 8);
        assert_eq!(ring.grow(), 8, "never past the count");
        assert_eq!(ring.tail.get(), 10);
    }
}
