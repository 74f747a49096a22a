//! Notifications: what a backend tells one user about (osu! `new` / `read`), owned by the
//! user's owner shard. Pure data.

use serde_json::{json, Value};

use super::ids::{iso8601, UserId};

/// One notification of one user.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

impl Notification {
    /// The Notification object (osu! sheet §7.5): what the REST API returns and what sockets
    /// embed. A numeric source user id renders as a number.
    pub fn to_json(&self) -> Value {
        let details: Value = serde_json::from_str(&self.details).unwrap_or_else(|_| json!({}));
        let source = self.source_user.as_ref().map(|u| match u.as_u64() {
            Some(n) => json!(n),
            None => json!(u.as_str()),
        });
        json!({
            "id": self.id,
            "name": self.name,
            "created_at": iso8601(self.created_ms),
            "object_type": self.object_type,
            "object_id": self.object_id,
            "source_user_id": source,
            "is_read": self.read,
            "details": details,
        })
    }
}
