//! Delivery: handing one bundle to a shard's local connections, each getting its dialect's
//! frame (or none) as a clone of the shared `Bytes` on its outbound queue.
//!
//! Generic over [`Recipient`] so the server (`net::conn::Conn`) and `benches/fanout.rs` run the
//! same loop; monomorphic (no `dyn`) and allocation-free per recipient.

use bytes::Bytes;

use super::{Bundle, ConnKey};
use crate::dialect::DialectId;
use crate::model::UserId;

/// A connection that fan-out hands frames to: who it is, and its outbound queue.
pub trait Recipient {
    /// The wire protocol it speaks.
    fn dialect(&self) -> DialectId;
    /// Its user.
    fn user(&self) -> &UserId;
    /// Its dialect flag bits (`Conn::flags`), checked against the bundle's gates.
    fn flags(&self) -> u8;
    /// The payload size from which it gets data frames compressed (permessage-deflate);
    /// `None` (the default) for a connection that gets them plain.
    #[inline]
    fn deflate_threshold(&self) -> Option<usize> {
        None
    }
    /// Queues a complete frame (a refcount bump of the shared `Bytes`, never a copy).
    fn queue(&self, frame: Bytes);
    /// Starts loading what [`deliver`] will read of it into the cache (a hint; the default
    /// does nothing).
    #[inline]
    fn prefetch(&self) {}
}

/// How many recipients ahead [`deliver`] prefetches (the shard's one distance).
const PREFETCH_AHEAD: usize = crate::net::uring::PREFETCH_AHEAD;

/// Hands `bundle` to the connections `keys` that `lookup` still finds: each gets
/// [`Bundle::frame_for`] its dialect, user and flags, if any (compressed once per bundle, and
/// shared, for recipients with a deflate threshold: [`Bundle::deflated_for`]). Returns how
/// many got a frame.
#[inline]
pub fn deliver<'a, R, F>(keys: &[ConnKey], lookup: F, bundle: &Bundle) -> u64
where
    R: Recipient + 'a,
    F: Fn(ConnKey) -> Option<&'a R>,
{
    let mut delivered = 0;
    for (i, &key) in keys.iter().enumerate() {
        // A shard's connections are scattered in memory and the kernel's send path evicts
        // them between passes: each one's first read is a cache miss unless started early.
        if let Some(ahead) = keys.get(i + PREFETCH_AHEAD).and_then(|k| lookup(*k)) {
            ahead.prefetch();
        }
        if let Some(conn) = lookup(key) {
            let (dialect, user, flags) = (conn.dialect(), conn.user(), conn.flags());
            let frame = match conn.deflate_threshold() {
                None => bundle.frame_for(dialect, user, flags).cloned(),
                Some(threshold) => bundle.deflated_for(dialect, user, flags, threshold),
            };
            if let Some(frame) = frame {
                conn.queue(frame);
                delivered += 1;
            }
        }
    }
    delivered
}
