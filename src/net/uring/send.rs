//! One send in flight: the frames it carries (refcounted `Bytes`, kept alive until the
//! completion) and, for several frames, the `msghdr` and `iovec`s that point into them.
//!
//! Invariants: an op is boxed and owned by the ring from submission to completion, so the
//! addresses in its SQE stay valid; the frames are in queue order and are handed back whole
//! with the completion, so the unwritten rest continues where the kernel stopped.

use bytes::Bytes;
use io_uring::{opcode, squeue, types};
use smallvec::SmallVec;

use super::Tag;

/// The frames of one send and the vectors that describe them.
pub struct SendOp {
    /// The frames, in order (the first may start mid-frame: the rest of a partial send).
    pub frames: SmallVec<[Bytes; 4]>,
    iov: Vec<libc::iovec>,
    // SAFETY of the raw pointers: `msg.msg_iov` points into `iov`'s heap buffer, which does
    // not move while the op is boxed and not mutated.
    msg: libc::msghdr,
    /// Whose send it is (set by the ring).
    pub tag: Tag,
    /// Memory the completion's handler will read (address, bytes), prefetched by the ring
    /// shortly before; never dereferenced.
    pub hint: (usize, usize),
}

impl SendOp {
    /// An op over `frames` (at least one, each non-empty).
    pub fn new(frames: SmallVec<[Bytes; 4]>) -> SendOp {
        // SAFETY: an all-zero msghdr is a valid empty one.
        let msg: libc::msghdr = unsafe { std::mem::zeroed() };
        SendOp { frames, iov: Vec::new(), msg, tag: Tag { key: 0, generation: 0 }, hint: (0, 0) }
    }

    /// Bytes the op carries.
    pub fn len(&self) -> usize {
        self.frames.iter().map(Bytes::len).sum()
    }

    /// True when it carries nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The SQE (without its user data): `send` of one frame, `sendmsg` of several. Called
    /// once the op sits in its box, whose address the SQE may point at.
    pub(super) fn sqe(&mut self, target: super::Target) -> squeue::Entry {
        // MSG_NOSIGNAL: a peer gone away is an error code, not SIGPIPE.
        let flags = libc::MSG_NOSIGNAL;
        if let [frame] = self.frames.as_slice() {
            let (ptr, len) = (frame.as_ptr(), frame.len() as u32);
            return match target {
                super::Target::Fd(fd) => opcode::Send::new(types::Fd(fd), ptr, len),
                super::Target::Fixed(slot) => opcode::Send::new(types::Fixed(slot), ptr, len),
            }
            .flags(flags)
            .build();
        }
        self.iov.clear();
        self.iov.extend(
            self.frames.iter().map(|f| libc::iovec {
                iov_base: f.as_ptr() as *mut libc::c_void,
                iov_len: f.len(),
            }),
        );
        self.msg.msg_iov = self.iov.as_mut_ptr();
        self.msg.msg_iovlen = self.iov.len() as _;
        match target {
            super::Target::Fd(fd) => opcode::SendMsg::new(types::Fd(fd), &self.msg),
            super::Target::Fixed(slot) => opcode::SendMsg::new(types::Fixed(slot), &self.msg),
        }
        .flags(flags as u32)
        .build()
    }
}
