//! What happened: the one thing dialects render. Events are immutable and cross shards.

use std::sync::Arc;

use super::ids::{MessageId, RoomId, Seq, UserId};
use super::room::{Role, RoomKind};

/// A stored message, shared by the room's history, events and replies.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Unique server-wide, increasing within the room.
    pub id: MessageId,
    /// 1, 2, 3, … within the room.
    pub seq: Seq,
    /// The room.
    pub room: RoomId,
    /// The author.
    pub author: UserId,
    /// Text (empty once deleted).
    pub text: String,
    /// Parent message for comments, 0 for top-level.
    pub parent_id: MessageId,
    /// The client's own id, echoed back.
    pub client_message_id: Option<String>,
    /// Message kind, e.g. "Regular".
    pub kind: String,
    /// Attachments, JSON array text.
    pub attachments: String,
    /// Dialect extras, JSON object text.
    pub attributes: String,
    /// Number of live comments on this message.
    pub comment_count: u32,
    /// Creation time, ms.
    pub created_ms: u64,
    /// Last text edit, ms (equals `created_ms` until edited).
    pub edited_ms: u64,
    /// Last change of any kind, ms.
    pub modified_ms: u64,
    /// Deletion time, ms.
    pub deleted_ms: Option<u64>,
}

/// The newest message of a room, as room listings show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastMessage {
    /// Its id.
    pub id: MessageId,
    /// Its creation time, ms.
    pub created_ms: u64,
    /// Its author.
    pub author: UserId,
}

/// A snapshot of a room for events and replies.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomView {
    /// Room id.
    pub id: RoomId,
    /// Room kind.
    pub kind: RoomKind,
    /// Display name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Attributes, JSON object text.
    pub attributes: String,
    /// Members and roles, sorted by user id.
    pub members: Vec<(UserId, Role)>,
    /// Creation time, ms.
    pub created_ms: u64,
    /// Last change, ms.
    pub updated_ms: u64,
    /// The newest message's seq (0 when empty).
    pub last_seq: Seq,
    /// The newest live message.
    pub last_message: Option<LastMessage>,
}

impl RoomView {
    /// The role of `user` in this room, if it is a member.
    pub fn role_of(&self, user: &UserId) -> Option<Role> {
        self.members.binary_search_by(|(u, _)| u.cmp(user)).ok().map(|i| self.members[i].1)
    }
}

/// A fact every permitted viewer is told about.
#[derive(Debug, Clone)]
pub enum Event {
    /// A message was posted.
    MessageCreated(Arc<Message>),
    /// A message changed (text edit, comment count).
    MessageUpdated(Arc<Message>),
    /// A message was deleted.
    MessageDeleted {
        /// Its room.
        room: RoomId,
        /// Its id.
        message: MessageId,
        /// Its parent for a comment, else 0.
        parent_id: MessageId,
    },
    /// A room appeared for the viewer (created, or the viewer was added).
    RoomCreated(Arc<RoomView>),
    /// A room changed.
    RoomUpdated(Arc<RoomView>),
    /// A room is gone for the viewer (deleted, or the viewer was removed).
    RoomDeleted {
        /// The room.
        room: RoomId,
    },
}
