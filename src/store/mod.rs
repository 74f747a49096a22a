//! The persistence seam. Today every room, membership and message lives only in its owner
//! shard's memory (`shard::owner::Owned`), with each room's recent history bounded by
//! `history_per_room_max`; a restart loses everything. The durable store (one redb file per
//! shard, written by a writer thread with group commit) plugs in where the owner pipeline
//! produces `model::room::Outcome::stored`, acknowledging only after the commit is durable.

/// Which store a server runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// In-memory only (the current default until the durable store lands).
    Memory,
}
