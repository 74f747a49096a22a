//! The Virola Events dialect (`GET /api/v1/events`): receive-only JSON text frames
//! `{"type": "<EventName>", "data": {...}}` with integer ids and millisecond timestamps.
//!
//! Rendering is pure: one event in, one complete WebSocket frame out. Client text is ignored.

use bytes::Bytes;
use serde::ser::{Serialize, SerializeStruct, Serializer};

use crate::model::{Event, Message, MessageId, RoomId, RoomKind, RoomView, UserId};
use crate::ws::frame;

/// The `Authorization`-less browser session cookie the Virola web client sends.
pub const SESSION_COOKIE: &str = "VirolaUserSessionId";

/// A user id as Virola shows it: an integer when the id is one, else the string.
struct VirolaUser<'a>(&'a UserId);

impl Serialize for VirolaUser<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_u64() {
            Some(n) => s.serialize_u64(n),
            None => s.serialize_str(self.0.as_str()),
        }
    }
}

/// A raw JSON text (validated on the way in) embedded as is.
struct RawJson<'a>(&'a str, &'static str);

impl Serialize for RawJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match serde_json::from_str::<&serde_json::value::RawValue>(self.0) {
            Ok(raw) => raw.serialize(s),
            Err(_) => serde_json::from_str::<&serde_json::value::RawValue>(self.1)
                .map_err(serde::ser::Error::custom)?
                .serialize(s),
        }
    }
}

/// A TextMessage object (protocol sheet §7.1).
struct TextMessage<'a>(&'a Message);

impl Serialize for TextMessage<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let m = self.0;
        let mut st = s.serialize_struct("TextMessage", 14)?;
        st.serialize_field("messageId", &m.id)?;
        st.serialize_field("parentMessageId", &m.parent_id)?;
        st.serialize_field("userId", &VirolaUser(&m.author))?;
        st.serialize_field("roomId", &m.room)?;
        st.serialize_field("text", &m.text)?;
        st.serialize_field("messageType", message_type(&m.kind))?;
        st.serialize_field("markupType", "TextPlain")?;
        st.serialize_field("priority", "Normal")?;
        st.serialize_field("createdUtc", &m.created_ms)?;
        st.serialize_field("lastEditedUtc", &m.edited_ms)?;
        st.serialize_field("lastModifiedUtc", &m.modified_ms)?;
        st.serialize_field("commentCount", &m.comment_count)?;
        st.serialize_field("attachments", &RawJson(&m.attachments, "[]"))?;
        st.serialize_field("readTimestamps", &[(); 0])?;
        st.end()
    }
}

fn message_type(kind: &str) -> &'static str {
    match kind {
        "Issue" => "Issue",
        "Meeting" => "Meeting",
        _ => "Regular",
    }
}

/// A Room object (protocol sheet §7.3) as a viewer with or without moderation rights sees it.
struct VirolaRoom<'a> {
    room: &'a RoomView,
    moderator: bool,
}

impl Serialize for VirolaRoom<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.room;
        let mut st = s.serialize_struct("Room", 10)?;
        st.serialize_field("roomId", &r.id)?;
        st.serialize_field("displayName", &r.name)?;
        let room_type = if r.kind == RoomKind::Public { "Public" } else { "Private" };
        st.serialize_field("roomType", room_type)?;
        st.serialize_field("createdUtc", &r.created_ms)?;
        st.serialize_field("lastModifiedUtc", &r.updated_ms)?;
        st.serialize_field("unreadMessageCount", &0)?;
        st.serialize_field("isArchived", &false)?;
        st.serialize_field("isModerator", &self.moderator)?;
        st.serialize_field("isPinned", &false)?;
        match &r.last_message {
            Some(last) => st.serialize_field(
                "lastMessage",
                &LastMessage {
                    id: last.id,
                    created_ms: last.created_ms,
                    user: VirolaUser(&last.author),
                },
            )?,
            None => st.serialize_field("lastMessage", &Option::<()>::None)?,
        }
        st.end()
    }
}

struct LastMessage<'a> {
    id: MessageId,
    created_ms: u64,
    user: VirolaUser<'a>,
}

impl Serialize for LastMessage<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("LastMessage", 3)?;
        st.serialize_field("messageId", &self.id)?;
        st.serialize_field("createdUtc", &self.created_ms)?;
        st.serialize_field("userId", &self.user)?;
        st.end()
    }
}

/// `{"type": T, "data": D}`.
struct Envelope<D> {
    kind: &'static str,
    data: D,
}

impl<D: Serialize> Serialize for Envelope<D> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Event", 2)?;
        st.serialize_field("type", self.kind)?;
        st.serialize_field("data", &self.data)?;
        st.end()
    }
}

struct Messages<'a>(&'a Message);

impl Serialize for Messages<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Messages", 1)?;
        st.serialize_field("messages", &[TextMessage(self.0)])?;
        st.end()
    }
}

struct Deleted {
    parent_id: MessageId,
    room: RoomId,
    message: MessageId,
}

impl Serialize for Deleted {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Deleted", 3)?;
        st.serialize_field("parentMessageId", &self.parent_id)?;
        st.serialize_field("roomId", &self.room)?;
        st.serialize_field("messageId", &self.message)?;
        st.end()
    }
}

struct RoomData<'a>(VirolaRoom<'a>);

impl Serialize for RoomData<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("RoomData", 1)?;
        st.serialize_field("room", &self.0)?;
        st.end()
    }
}

struct RoomIdData(RoomId);

impl Serialize for RoomIdData {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("RoomIdData", 1)?;
        st.serialize_field("roomId", &self.0)?;
        st.end()
    }
}

fn to_frame<T: Serialize>(value: &T) -> Bytes {
    frame::text_from_writer(|out| {
        // Serializing plain structs into a Vec cannot fail.
        let _ = serde_json::to_writer(out, value);
    })
}

/// Renders `event` into one complete text frame; `moderator` decides the room's `isModerator`.
pub fn render(event: &Event, moderator: bool) -> Bytes {
    match event {
        Event::MessageCreated(m) => {
            to_frame(&Envelope { kind: "TextMessagesCreated", data: Messages(m) })
        }
        Event::MessageUpdated(m) => {
            to_frame(&Envelope { kind: "TextMessagesUpdated", data: Messages(m) })
        }
        Event::MessageDeleted { room, message, parent_id } => to_frame(&Envelope {
            kind: "TextMessageDeleted",
            data: Deleted { parent_id: *parent_id, room: *room, message: *message },
        }),
        Event::RoomCreated(room) => to_frame(&Envelope {
            kind: "RoomCreated",
            data: RoomData(VirolaRoom { room, moderator }),
        }),
        Event::RoomUpdated(room) => to_frame(&Envelope {
            kind: "RoomUpdated",
            data: RoomData(VirolaRoom { room, moderator }),
        }),
        Event::RoomDeleted { room } => {
            to_frame(&Envelope { kind: "RoomDeleted", data: RoomIdData(*room) })
        }
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
