//! The records the store persists and the messages exchanged between a shard and its store
//! threads: [`RoomRecord`], [`MessageRecord`], [`StoreOp`], [`Completion`], [`Recovered`].
//!
//! Invariants: records are plain data with owned fields, encoded with rkyv (unaligned,
//! little-endian, so archived values can be read in place from redb pages); the store never
//! interprets `kind`, `role`, `attributes` or `attachments` beyond storing them. Conversions to
//! and from the core model live here so the owner pipeline can persist without glue code.
//!
//! Limits: a record must stay below redb's 3 GiB value bound (the configured message bound of
//! 64 KiB keeps it far below).

use std::sync::Arc;

use rkyv::{Archive, Deserialize, Serialize};

use crate::model::{Message, MessageId, Notification, Role, Room, RoomId, RoomKind, Seq, UserId};

/// A room as stored: everything of [`Room`] except members (stored apart) and history.
#[derive(Debug, Clone, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct RoomRecord {
    /// Room id (`id % shard_count` is the owner shard).
    pub id: u64,
    /// Room kind, as [`RoomKind::as_str`] names it (`group`, `direct`, `public`, `announce`).
    pub kind: String,
    /// Display name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Attributes, JSON object text.
    pub attributes: String,
    /// Creation time, ms.
    pub created_ms: u64,
    /// Last change, ms.
    pub updated_ms: u64,
    /// Seq of the newest message.
    pub last_seq: u64,
}

/// A message as stored; field for field the core [`Message`].
#[derive(Debug, Clone, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct MessageRecord {
    /// Message id, unique server-wide, increasing within its room.
    pub id: u64,
    /// 1, 2, 3, … within the room.
    pub seq: u64,
    /// The room.
    pub room: u64,
    /// The author's user id.
    pub author: String,
    /// Text (empty once deleted).
    pub text: String,
    /// Parent message for comments, 0 for top-level.
    pub parent_id: u64,
    /// The client's own id.
    pub client_message_id: Option<String>,
    /// Message kind, e.g. "Regular".
    pub kind: String,
    /// Attachments, JSON array text.
    pub attachments: String,
    /// Dialect extras, JSON object text.
    pub attributes: String,
    /// Number of live comments.
    pub comment_count: u32,
    /// Creation time, ms.
    pub created_ms: u64,
    /// Last text edit, ms.
    pub edited_ms: u64,
    /// Last change of any kind, ms.
    pub modified_ms: u64,
    /// Deletion time, ms; deleted messages are kept (tombstones) but skipped by history reads.
    pub deleted_ms: Option<u64>,
}

/// A notification as stored; field for field the core [`Notification`].
#[derive(Debug, Clone, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct NotificationRecord {
    /// Notification id (`id % shard_count` is the owner shard of its user).
    pub id: u64,
    /// The user it is for.
    pub user: String,
    /// Event name.
    pub name: String,
    /// Identity category.
    pub category: String,
    /// Object type.
    pub object_type: String,
    /// Object id.
    pub object_id: u64,
    /// Who caused it.
    pub source_user: Option<String>,
    /// Details, JSON object text.
    pub details: String,
    /// Creation time, ms.
    pub created_ms: u64,
    /// Marked read.
    pub read: bool,
}

impl From<&Notification> for NotificationRecord {
    fn from(n: &Notification) -> Self {
        NotificationRecord {
            id: n.id,
            user: n.user.as_str().to_string(),
            name: n.name.clone(),
            category: n.category.clone(),
            object_type: n.object_type.clone(),
            object_id: n.object_id,
            source_user: n.source_user.as_ref().map(|u| u.as_str().to_string()),
            details: n.details.clone(),
            created_ms: n.created_ms,
            read: n.read,
        }
    }
}

impl NotificationRecord {
    /// The core notification.
    pub fn into_notification(self) -> Notification {
        Notification {
            id: self.id,
            user: UserId::new(&self.user),
            name: self.name,
            category: self.category,
            object_type: self.object_type,
            object_id: self.object_id,
            source_user: self.source_user.as_deref().map(UserId::new),
            details: self.details,
            created_ms: self.created_ms,
            read: self.read,
        }
    }
}

/// A logged-out session as stored by its user's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedRecord {
    /// The session id.
    pub sid: String,
    /// Its user.
    pub user: String,
    /// When its tokens expire, unix s (the record is dropped at recovery after that).
    pub expires_at: u64,
}

/// One change, applied in order within its batch; a batch is committed atomically. Encoded
/// with rkyv in the write-ahead log.
#[derive(Debug, Clone, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub enum StoreOp {
    /// Insert or overwrite a room (creation, update, new `last_seq`).
    PutRoom(RoomRecord),
    /// Delete a room with all its members and messages (and their `message → room` entries).
    /// The high-water marks keep its ids, so they are never reused.
    DeleteRoom(u64),
    /// Insert or overwrite a membership.
    PutMember {
        /// The room.
        room: u64,
        /// The user id.
        user: String,
        /// The role, encoded by [`role_to_u8`].
        role: u8,
    },
    /// Remove a membership (absent is fine).
    RemoveMember {
        /// The room.
        room: u64,
        /// The user id.
        user: String,
    },
    /// Insert or overwrite a message (new, edited, deleted, comment count changed).
    PutMessage(MessageRecord),
    /// Insert or overwrite a notification (new, marked read).
    PutNotification(NotificationRecord),
    /// Remove a notification (absent is fine).
    DeleteNotification {
        /// Its user.
        user: String,
        /// Its id.
        id: u64,
    },
    /// Insert or overwrite a user's receipt marks in a room (BIG `dlvrd` / `read`).
    PutReceipt(ReceiptRecord),
    /// Insert or overwrite a dialect's record (key: dialect, user, record key).
    PutDialectRecord(DialectRecord),
    /// Remove one dialect record (absent is fine).
    DeleteDialectRecord {
        /// The dialect's index.
        dialect: u8,
        /// The user.
        user: String,
        /// The record's key.
        key: String,
    },
    /// Remove every record of `user` in `dialect`.
    DeleteDialectRecords {
        /// The dialect's index.
        dialect: u8,
        /// The user.
        user: String,
    },
    /// Record a logged-out session until `expires_at` (unix s).
    RevokeSession {
        /// The session id.
        sid: String,
        /// Its user.
        user: String,
        /// When its tokens expire, unix s.
        expires_at: u64,
    },
}

/// A result coming back from the store threads; see [`super::Store::drain_completions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// The batch submitted with `token` is committed (durably with `Durability::Fsync`).
    /// `Err` only when the store shut down before it could commit it.
    Written {
        /// The caller's token from [`super::Store::submit`].
        token: u64,
        /// `Ok` once committed.
        result: Result<(), String>,
    },
    /// A history read from disk.
    History {
        /// The caller's token from [`super::Store::read_history`].
        token: u64,
        /// Messages ascending by id, deleted ones skipped, and whether the page ended early at
        /// its byte bound; `Err` if the file could not be read.
        result: Result<(Vec<MessageRecord>, bool), String>,
    },
    /// A message read from disk (by id or by room and seq), deleted ones included.
    Message {
        /// The caller's token from [`super::Store::read_message`] or
        /// [`super::Store::read_message_by_seq`].
        token: u64,
        /// The message, `None` if no such message is stored; `Err` if the file could not be
        /// read.
        result: Result<Option<MessageRecord>, String>,
    },
}

/// One room rebuilt from disk at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredRoom {
    /// The room.
    pub room: RoomRecord,
    /// Members and roles ([`role_to_u8`] encoding), sorted by user id.
    pub members: Vec<(String, u8)>,
    /// The newest `window` messages, deleted ones included (as the in-memory window keeps
    /// them), ascending by id.
    pub recent: Vec<MessageRecord>,
}

/// Everything a shard needs to rebuild its memory from its file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recovered {
    /// Every stored room, ascending by id.
    pub rooms: Vec<RecoveredRoom>,
    /// The highest room id ever stored, deleted rooms included (0 if none).
    pub max_room_id: u64,
    /// The highest message id ever stored, deleted messages included (0 if none).
    pub max_message_id: u64,
    /// Every stored notification, by (user, id).
    pub notifications: Vec<NotificationRecord>,
    /// The highest notification id ever stored (0 if none).
    pub max_notification_id: u64,
    /// Logged-out sessions whose tokens have not expired yet.
    pub revoked: Vec<RevokedRecord>,
    /// Every stored receipt.
    pub receipts: Vec<ReceiptRecord>,
    /// Every stored dialect record, by (dialect, user, key).
    pub dialect_records: Vec<DialectRecord>,
}

/// A dialect's own durable record about one of the users its shard owns (table
/// `dialect_records`, key (dialect, user, key)); the store never reads `value`.
#[derive(Debug, Clone, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct DialectRecord {
    /// The dialect's index (`DialectId`).
    pub dialect: u8,
    /// The user.
    pub user: String,
    /// The record's key within the dialect and user.
    pub key: String,
    /// The dialect's bytes.
    pub value: Vec<u8>,
}

/// A user's receipt marks in a room, as stored (key: room, user).
#[derive(Debug, Clone, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct ReceiptRecord {
    /// The room.
    pub room: u64,
    /// The user.
    pub user: String,
    /// Delivered up to this seq.
    pub delivered: u64,
    /// When, ms.
    pub delivered_ms: u64,
    /// Read up to this seq.
    pub read: u64,
    /// When, ms.
    pub read_ms: u64,
}

/// The store's encoding of a [`Role`]: member 0, moderator 1, owner 2.
pub fn role_to_u8(role: Role) -> u8 {
    match role {
        Role::Member => 0,
        Role::Moderator => 1,
        Role::Owner => 2,
    }
}

/// Decodes [`role_to_u8`]; `None` for a value no version wrote.
pub fn role_from_u8(value: u8) -> Option<Role> {
    Some(match value {
        0 => Role::Member,
        1 => Role::Moderator,
        2 => Role::Owner,
        _ => return None,
    })
}

impl RoomRecord {
    /// The record of `room` (members are stored with [`StoreOp::PutMember`]).
    pub fn from_room(room: &Room) -> Self {
        RoomRecord {
            id: room.id.get(),
            kind: room.kind.as_str().to_string(),
            name: room.name.clone(),
            description: room.description.clone(),
            attributes: room.attributes.clone(),
            created_ms: room.created_ms,
            updated_ms: room.updated_ms,
            last_seq: room.last_seq.get(),
        }
    }

    /// The room kind, `None` if the stored name is unknown.
    pub fn room_kind(&self) -> Option<RoomKind> {
        RoomKind::parse(&self.kind)
    }
}

impl From<&Message> for MessageRecord {
    fn from(m: &Message) -> Self {
        MessageRecord {
            id: m.id.get(),
            seq: m.seq.get(),
            room: m.room.get(),
            author: m.author.as_str().to_string(),
            text: m.text.clone(),
            parent_id: m.parent_id.get(),
            client_message_id: m.client_message_id.clone(),
            kind: m.kind.clone(),
            attachments: m.attachments.clone(),
            attributes: m.attributes.clone(),
            comment_count: m.comment_count,
            created_ms: m.created_ms,
            edited_ms: m.edited_ms,
            modified_ms: m.modified_ms,
            deleted_ms: m.deleted_ms,
        }
    }
}

impl MessageRecord {
    /// The core message, ready to go into a room's window.
    pub fn into_message(self) -> Arc<Message> {
        Arc::new(Message {
            id: MessageId(self.id),
            seq: Seq(self.seq),
            room: RoomId(self.room),
            author: UserId::new(&self.author),
            text: self.text,
            parent_id: MessageId(self.parent_id),
            client_message_id: self.client_message_id,
            kind: self.kind,
            attachments: self.attachments,
            attributes: self.attributes,
            comment_count: self.comment_count,
            created_ms: self.created_ms,
            edited_ms: self.edited_ms,
            modified_ms: self.modified_ms,
            deleted_ms: self.deleted_ms,
        })
    }
}
