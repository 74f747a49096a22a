//! Notifications: what a backend tells one user about (osu! `new` / `read`), owned by the
//! user's owner shard. Pure data.

use super::ids::UserId;

/// One notification of one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Unique server-wide (`counter * shards + shard`, the user owner's allocator).
    pub id: u64,
    /// The user it is for.
    pub user: UserId,
    /// The event name, e.g. `channel_message`.
    pub name: String,
    /// The category of its identity (osu! `read` / `delete` payloads), e.g. `channel`.
    pub category: String,
    /// What it is about: type and id.
    pub object_type: String,
    /// What it is about: id.
    pub object_id: u64,
    /// Who caused it, if anyone.
    pub source_user: Option<UserId>,
    /// Details, JSON object text.
    pub details: String,
    /// Creation time, ms.
    pub created_ms: u64,
    /// Whether the user marked it read.
    pub read: bool,
}
