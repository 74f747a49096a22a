//! What happened: the one thing dialects render. Events are immutable and cross shards.

use std::sync::Arc;

use super::ids::{MessageId, RoomId, Seq, UserId};
use super::room::{Role, RoomKind};
use crate::limits::MESSAGE_ENCODED_OVERHEAD_BYTES;

/// A stored message, shared by the room's history, events and replies.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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

impl Message {
    /// An upper bound of the size of this message's JSON in any reply or history page (see
    /// [`message_encoded_len`]).
    pub fn encoded_len(&self) -> usize {
        message_encoded_len(
            self.author.as_str(),
            &self.text,
            self.client_message_id.as_deref(),
            &self.kind,
            &self.attachments,
            &self.attributes,
        )
    }
}

/// Bytes of `s` inside a JSON string as serde_json writes it: `"` and `\` take two, the C0
/// controls two (`\n`, `\r`, `\t`, `\b`, `\f`) or six (`\u00XX`), everything else itself.
pub fn json_str_len(s: &str) -> usize {
    s.bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum()
}

/// An upper bound of the size of a message's JSON (the REST message object, BIG's `Message`):
/// its strings as escaped JSON, its attachments and attributes as stored (compact JSON text),
/// and [`MESSAGE_ENCODED_OVERHEAD_BYTES`] for the field names, numbers and punctuation. This is
/// the size `stored_message_bytes_max` bounds and history pages add up.
pub fn message_encoded_len(
    author: &str,
    text: &str,
    client_message_id: Option<&str>,
    kind: &str,
    attachments: &str,
    attributes: &str,
) -> usize {
    MESSAGE_ENCODED_OVERHEAD_BYTES
        + json_str_len(author)
        + json_str_len(text)
        + client_message_id.map_or(0, json_str_len)
        + json_str_len(kind)
        + attachments.len()
        + attributes.len()
}

/// The newest message of a room, as room listings show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LastMessage {
    /// Its id.
    pub id: MessageId,
    /// Its creation time, ms.
    pub created_ms: u64,
    /// Its author.
    pub author: UserId,
}

/// A snapshot of a room for events and replies.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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
    /// What a member's chat list shows beyond the room itself: only in answers to
    /// `RoomViews { summary: true }`, for the member who asked.
    pub summary: Option<MemberSummary>,
}

/// A room as one member's chat list sees it (BIG's `missed`, `lastMessageText`,
/// `lastMessageStatus`), computed by the room owner from its receipts and window.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct MemberSummary {
    /// The member's read mark.
    pub read: Seq,
    /// The furthest delivered mark of any other member.
    pub others_delivered: Seq,
    /// The furthest read mark of any other member.
    pub others_read: Seq,
    /// The newest live message's seq (0 when there is none in the window).
    pub last_seq: Seq,
    /// The newest live message's text, cut to `LAST_MESSAGE_PREVIEW_BYTES_MAX` bytes (at a
    /// character boundary).
    pub last_text: String,
}

/// `text` cut to at most `max` bytes, at a character boundary.
pub fn preview(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl RoomView {
    /// The role of `user` in this room, if it is a member.
    pub fn role_of(&self, user: &UserId) -> Option<Role> {
        self.members.binary_search_by(|(u, _)| u.cmp(user)).ok().map(|i| self.members[i].1)
    }
}

/// A fact every permitted viewer is told about.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn a_preview_is_cut_at_a_character_boundary_within_its_bound() {
        assert_eq!(preview("short", 256), "short");
        assert_eq!(preview("abcdef", 3), "abc");
        // "é" is two bytes: a cut inside it keeps the character out.
        assert_eq!(preview("aé", 2), "a");
        assert_eq!(preview("€€", 4), "€");
    }

    #[test]
    fn json_string_lengths_count_serde_json_escapes() {
        let cases: [(&str, usize); 7] = [
            ("", 0),
            ("hello", 5),
            ("café", 5),
            ("a\"b\\c", 7),
            ("\n\t\r", 6),
            ("\u{1}\u{1f}", 12),
            ("\u{7f}", 1),
        ];
        for (text, want) in cases {
            assert_eq!(json_str_len(text), want, "{text:?}");
            let encoded = serde_json::to_string(text).expect("encode");
            assert_eq!(encoded.len(), want + 2, "{text:?}");
        }
    }

    /// A message with every field at its widest, for size checks.
    pub(crate) fn widest_message() -> Message {
        Message {
            id: MessageId(u64::MAX),
            seq: Seq(u64::MAX),
            room: RoomId(u64::MAX),
            author: UserId::new("al\"ice"),
            text: "line\none \u{1} \"quoted\" café".into(),
            parent_id: MessageId(u64::MAX),
            client_message_id: Some("c\\1".into()),
            kind: "Regular".into(),
            attachments: r#"[{"url":"x"}]"#.into(),
            attributes: r#"{"k":[1,2,3]}"#.into(),
            comment_count: u32::MAX,
            created_ms: u64::MAX,
            edited_ms: u64::MAX - 1,
            modified_ms: u64::MAX,
            deleted_ms: Some(u64::MAX),
        }
    }

    #[test]
    fn a_message_s_encoded_length_bounds_its_rest_json() {
        let message = widest_message();
        let rest = serde_json::to_vec(&crate::rest::json::message(&message)).expect("encode");
        assert!(rest.len() <= message.encoded_len(), "{} > {}", rest.len(), message.encoded_len());
    }
}
