//! The BIG messenger WebSocket dialect (`GET /websocket`), as protocol sheet 004 describes the
//! real server (`a-kuz/big-auth`).
//!
//! Client frames: a short text (≤ 5 characters) is a ping; otherwise JSON `request`
//! (`{"type":"request","id","payloadType","payload"}`), `ack` (`{"type":"ack","id"}`) or a client
//! `event` (`typing`, `offline`). Server frames: `response` (`{"type":"response","id",
//! "timestamp","payload"}`), `event` (`{"type":"event","id","timestamp","eventType","payload"}`),
//! `{"event":"pong"}`, and the real server's error objects.
//!
//! Chat ids: in a direct room each side's `chatId` is the other member's user id; any other room's
//! `chatId` is its room id in decimal. `messageId` is the room's per-room `seq`.
//!
//! Everything here is pure: decoding returns a [`ClientFrame`], rendering returns one complete
//! WebSocket frame.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::request::{parse, parse_event, ClientEvent, Request};
use crate::limits::BIG_ID_BYTES_MAX;
use crate::model::{Message, RoomId, RoomKind, RoomView, UserId};
use crate::ws::frame;

/// A text frame of at most this many characters is a ping (the real server's rule).
pub const PING_CHARS_MAX: usize = 5;

/// A client frame, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame {
    /// A keepalive: answer `{"event":"pong"}`.
    Ping,
    /// A request to execute and answer.
    Request {
        /// The client's id (a string of at most `BIG_ID_BYTES_MAX` bytes, or a number), echoed in
        /// the response.
        id: Value,
        /// What to do, or why it cannot be done (answered with the real server's error).
        request: Result<Request, String>,
    },
    /// The client acknowledges the event with this id.
    Ack(String),
    /// A client event: `typing` or `offline`.
    Event(ClientEvent),
    /// Not something the server understands; answered with the real server's error object.
    Invalid(String),
}

/// Decodes a client text frame; never fails (bad input is [`ClientFrame::Invalid`]).
pub fn decode(text: &str) -> ClientFrame {
    if text.chars().count() <= PING_CHARS_MAX {
        return ClientFrame::Ping;
    }
    let Ok(Value::Object(mut map)) = serde_json::from_str::<Value>(text) else {
        return ClientFrame::Invalid("invalid JSON".into());
    };
    let payload = match map.remove("payload") {
        Some(Value::Null) | None => Value::Object(Map::new()),
        Some(p @ Value::Object(_)) => p,
        Some(_) => return ClientFrame::Invalid("payload must be an object".into()),
    };
    let payload_type = match map.remove("payloadType") {
        Some(Value::String(kind)) => Some(kind),
        _ => None,
    };
    let payload_type = payload_type.as_deref();
    match map.get("type").and_then(Value::as_str).unwrap_or("") {
        "request" => {
            let id = match map.remove("id") {
                Some(Value::String(id)) if id.len() > BIG_ID_BYTES_MAX => {
                    return ClientFrame::Invalid("request id is too long".into())
                }
                Some(id @ (Value::String(_) | Value::Number(_))) => id,
                _ => return ClientFrame::Invalid("request id is required".into()),
            };
            match payload_type {
                Some(kind) => ClientFrame::Request { id, request: parse(kind, &payload) },
                None => ClientFrame::Invalid("payloadType is required".into()),
            }
        }
        "ack" => match map.get("id") {
            Some(Value::String(id)) if id.len() <= BIG_ID_BYTES_MAX => ClientFrame::Ack(id.clone()),
            Some(Value::String(_)) => ClientFrame::Invalid("ack id is too long".into()),
            Some(Value::Number(n)) => ClientFrame::Ack(n.to_string()),
            _ => ClientFrame::Invalid("ack id is required".into()),
        },
        "event" => match payload_type {
            Some(kind) => ClientFrame::Event(parse_event(kind, &payload)),
            None => ClientFrame::Invalid("payloadType is required".into()),
        },
        kind => {
            let shown: String = kind.chars().take(BIG_ID_BYTES_MAX).collect();
            ClientFrame::Invalid(format!("unknown message type {shown:?}"))
        }
    }
}

fn to_frame(value: &Value) -> Bytes {
    frame::text_from_writer(|out| {
        // Serializing a Value into a Vec cannot fail.
        let _ = serde_json::to_writer(out, value);
    })
}

/// `{"event":"pong"}`.
pub fn pong() -> Bytes {
    frame::text(br#"{"event":"pong"}"#)
}

/// The HTTP 401 body for a missing or bad token (before any upgrade).
pub fn unauthorized_body(now_ms: u64) -> String {
    error_body(401, now_ms)
}

/// The body of an HTTP refusal before the upgrade, `{"error":<reason phrase>,"timestamp",
/// "status"}` (Spring's shape): 401 `Unauthorized`, 429 `Too Many Requests`.
pub fn error_body(status: u16, now_ms: u64) -> String {
    let error = crate::http::response::reason_phrase(status);
    json!({ "error": error, "timestamp": now_ms, "status": status }).to_string()
}

/// A response to request `id`.
pub fn response(id: &Value, now_ms: u64, payload: Value) -> Bytes {
    to_frame(&json!({ "type": "response", "timestamp": now_ms, "id": id, "payload": payload }))
}

/// The real server's error for a frame it could not handle: the raw frame and the exception.
pub fn error(incoming: &str, exception: &str) -> Bytes {
    to_frame(&json!({ "error": { "incomingMessage": incoming, "exception": exception } }))
}

/// The real server's refusal of a reused request id (the request is not executed).
pub fn duplicate(id: &Value) -> Bytes {
    to_frame(
        &json!({ "error": { "id": id, "type": "warning", "exception": "Duplicate request id" } }),
    )
}

/// The notice a user's connections get before they are closed for too many unacknowledged
/// events.
pub fn overflow() -> Bytes {
    to_frame(
        &json!({ "error": { "type": "overflow", "exception": "too many unacknowledged events" } }),
    )
}

/// A server event.
pub fn event(id: &str, now_ms: u64, event_type: &str, payload: Value) -> Bytes {
    to_frame(&json!({
        "type": "event", "timestamp": now_ms, "id": id, "eventType": event_type, "payload": payload,
    }))
}

/// `online` (`{"userId"}`) or `offline` (`{"userId","lastSeen"}`) about `user`.
pub fn presence(id: &str, now_ms: u64, user: &UserId, online: bool, last_seen: u64) -> Bytes {
    if online {
        event(id, now_ms, "online", json!({ "userId": user.as_str() }))
    } else {
        event(id, now_ms, "offline", json!({ "userId": user.as_str(), "lastSeen": last_seen }))
    }
}

/// `typing` by `user` in the chat the receiver calls `chat_id`; `stop` when it stopped.
pub fn typing(id: &str, now_ms: u64, user: &UserId, chat_id: &str, stop: bool) -> Bytes {
    let mut payload = json!({ "userId": user.as_str(), "chatId": chat_id });
    if let (true, Value::Object(map)) = (stop, &mut payload) {
        map.insert("stop".into(), json!(true));
    }
    event(id, now_ms, "typing", payload)
}

/// `dlvrd` or `read` (`kind`) for the author of `m`: `user` marked it (and everything before)
/// at `at_ms`; `chat_id` as the author sees the chat.
pub fn receipt(
    id: &str,
    now_ms: u64,
    kind: &str,
    chat_id: &str,
    user: &UserId,
    m: &Message,
    at_ms: u64,
) -> Bytes {
    event(
        id,
        now_ms,
        kind,
        json!({
            "chatId": chat_id,
            "userId": user.as_str(),
            "messageId": m.seq,
            "clientMessageId": m.client_message_id.clone().unwrap_or_default(),
            "timestamp": at_ms,
        }),
    )
}

/// A user id as BIG shows it (always a string).
fn user_str(user: &UserId) -> Value {
    json!(user.as_str())
}

/// The `chatId` of `room` as `viewer` sees it: the other member of a direct room (the viewer
/// itself when alone: BIG's "favorites"), else the room id.
pub fn chat_id(
    kind: RoomKind,
    room: RoomId,
    members: &[(UserId, crate::model::Role)],
    viewer: &UserId,
) -> String {
    if kind == RoomKind::Direct {
        match members.iter().find(|(u, _)| u != viewer) {
            Some((other, _)) => other.as_str().to_string(),
            None => viewer.as_str().to_string(),
        }
    } else {
        room.to_string()
    }
}

/// The `chatId` a `new` event carries for its recipients: the author in a direct room (every
/// recipient is the other member), else the room id.
pub fn chat_id_for_recipients(kind: RoomKind, m: &Message) -> String {
    if kind == RoomKind::Direct {
        m.author.as_str().to_string()
    } else {
        m.room.to_string()
    }
}

fn attachments(m: &Message) -> Option<Value> {
    match serde_json::from_str::<Value>(&m.attachments) {
        Ok(Value::Array(a)) if !a.is_empty() => Some(Value::Array(a)),
        _ => None,
    }
}

/// A message as history returns it (sheet §7.3).
pub fn message_json(m: &Message) -> Value {
    let mut v = json!({
        "messageId": m.seq,
        "clientMessageId": m.client_message_id.clone().unwrap_or_default(),
        "message": m.text,
        "sender": user_str(&m.author),
        "type": "new",
        "status": if m.deleted_ms.is_some() { "deleted" } else { "unread" },
        "createdAt": m.created_ms,
    });
    if let Value::Object(map) = &mut v {
        if m.edited_ms != m.created_ms {
            map.insert("updatedAt".into(), json!(m.edited_ms));
        }
        if let Some(at) = m.deleted_ms {
            map.insert("deletedAt".into(), json!(at));
        }
        if let Some(a) = attachments(m) {
            map.insert("attachments".into(), a);
        }
    }
    v
}

/// The `new` event payload for a message, with `chatId` as its recipients see it.
pub fn message_new(m: &Message, chat_id: &str, missed: u64, now_ms: u64) -> Bytes {
    let mut payload = json!({
        "chatId": chat_id,
        "sender": user_str(&m.author),
        "messageId": m.seq,
        "clientMessageId": m.client_message_id.clone().unwrap_or_default(),
        "message": m.text,
        "timestamp": m.created_ms,
        "missed": missed,
        "status": "unread",
    });
    if let (Some(a), Value::Object(map)) = (attachments(m), &mut payload) {
        map.insert("attachments".into(), a);
    }
    event(&format!("n{}", m.id), now_ms, "new", payload)
}

/// The `delete` event: `messageId` and `originalMessageId` are both the deleted message's seq
/// (roomcast records no separate service message).
pub fn message_deleted(m: &Message, chat_id: &str, now_ms: u64) -> Bytes {
    event(
        &format!("d{}", m.id),
        now_ms,
        "delete",
        json!({ "chatId": chat_id, "messageId": m.seq, "originalMessageId": m.seq }),
    )
}

/// A display name for `user` from the room's `attributes.users.<id>.username`, else the id.
fn name_of(attributes: &str, user: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(attributes).ok();
    parsed
        .as_ref()
        .and_then(|a| a.get("users"))
        .and_then(|u| u.get(user))
        .and_then(|e| e.get("username"))
        .and_then(Value::as_str)
        .unwrap_or(user)
        .to_string()
}

/// BIG's chat type of a room kind.
fn chat_type(kind: RoomKind) -> &'static str {
    match kind {
        RoomKind::Direct => "dialog",
        RoomKind::Announce => "channel",
        RoomKind::Group | RoomKind::Public => "group",
    }
}

/// `missed` of `room` for the member its summary is of: the messages after its read mark
/// (as `new` counts them); 0 without a summary.
fn missed(room: &RoomView) -> u64 {
    room.summary.as_ref().map_or(0, |s| room.last_seq.saturating_sub(s.read))
}

/// The MessageStatus of the room's newest live message for `viewer`: its own message is `read`
/// once another member read it, `unread` once another member has it, else `undelivered` (read
/// when it is alone); another's is `read` once the viewer's read mark covers it, else `unread`.
fn last_message_status(room: &RoomView, viewer: &UserId) -> Option<&'static str> {
    let (last, summary) = (room.last_message.as_ref()?, room.summary.as_ref()?);
    let seq = summary.last_seq;
    Some(if &last.author != viewer {
        if summary.read >= seq {
            "read"
        } else {
            "unread"
        }
    } else if summary.others_read >= seq || room.members.iter().all(|(u, _)| u == viewer) {
        "read"
    } else if summary.others_delivered >= seq {
        "unread"
    } else {
        "undelivered"
    })
}

/// One ChatListItem (sheet §7.2) of `room` as `viewer` sees it: `missed`, `lastMessageText`
/// and `lastMessageStatus` come from the view's summary (the room owner's receipts and
/// window), when it has one.
pub fn chat_list_item(room: &RoomView, viewer: &UserId) -> Value {
    let id = chat_id(room.kind, room.id, &room.members, viewer);
    let name = if room.kind == RoomKind::Direct {
        name_of(&room.attributes, &id)
    } else {
        room.name.clone()
    };
    let missed = missed(room);
    let mut v = json!({ "type": chat_type(room.kind), "id": id, "name": name, "missed": missed });
    if let (Some(last), Value::Object(map)) = (&room.last_message, &mut v) {
        map.insert("lastMessageTime".into(), json!(last.created_ms));
        map.insert("lastMessageAuthor".into(), user_str(&last.author));
        map.insert("lastMessageId".into(), json!(room.last_seq));
        map.insert("isMine".into(), json!(&last.author == viewer));
        if let Some(summary) = room.summary.as_ref().filter(|s| !s.last_text.is_empty()) {
            map.insert("lastMessageText".into(), json!(summary.last_text));
        }
        if let Some(status) = last_message_status(room, viewer) {
            map.insert("lastMessageStatus".into(), json!(status));
        }
    }
    v
}

/// The Chat (sheet §7.3) of `room` as `viewer` sees it.
pub fn chat(room: &RoomView, viewer: &UserId) -> Value {
    let item = chat_list_item(room, viewer);
    let meta = if room.kind == RoomKind::Direct {
        json!({})
    } else {
        let owner = room
            .members
            .iter()
            .find(|(_, r)| *r == crate::model::Role::Owner)
            .map(|(u, _)| u.as_str().to_string());
        let participants: Vec<Value> =
            room.members.iter().map(|(u, _)| json!({ "id": u.as_str() })).collect();
        json!({ "owner": owner, "participants": participants, "createdAt": room.created_ms })
    };
    json!({
        "chatId": item["id"],
        "name": item["name"],
        "type": item["type"],
        "photoUrl": "",
        "lastMessageId": room.last_seq,
        "missed": missed(room),
        "meta": meta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Role;

    fn payload(frame: &Bytes) -> Value {
        serde_json::from_slice(crate::ws::frame::payload(frame)).expect("JSON")
    }

    #[test]
    fn short_frames_are_pings_and_json_frames_decode() {
        for ping in ["ping", "", "x", "\t", "12345"] {
            assert_eq!(decode(ping), ClientFrame::Ping);
        }
        assert_eq!(
            decode(r#"{"type":"request","id":"1","payloadType":"chats","payload":{}}"#),
            ClientFrame::Request { id: json!("1"), request: Ok(Request::Chats) }
        );
        assert_eq!(decode(r#"{"type":"ack","id":"n42"}"#), ClientFrame::Ack("n42".into()));
        assert_eq!(
            decode(r#"{"type":"event","payloadType":"offline"}"#),
            ClientFrame::Event(ClientEvent::Offline)
        );
        let long_id =
            format!(r#"{{"type":"request","id":"{}","payloadType":"chats"}}"#, "x".repeat(129));
        let long_ack = format!(r#"{{"type":"ack","id":"{}"}}"#, "x".repeat(129));
        for bad in [
            "not json at all",
            r#"{"type":"request","payloadType":"new"}"#,
            "[1,2,3]",
            long_id.as_str(),
            long_ack.as_str(),
        ] {
            assert!(matches!(decode(bad), ClientFrame::Invalid(_)), "{bad}");
        }
    }

    #[test]
    fn a_payload_of_the_wrong_type_is_refused_not_read_as_empty() {
        for payload in ["5", "\"chats\"", "[]", "true"] {
            let frame = format!(
                r#"{{"type":"request","id":"1","payloadType":"chats","payload":{payload}}}"#
            );
            assert_eq!(decode(&frame), ClientFrame::Invalid("payload must be an object".into()));
        }
    }

    #[test]
    fn a_message_s_json_stays_within_its_encoded_length() {
        let message = crate::model::event::tests::widest_message();
        let json = message_json(&message).to_string();
        assert!(json.len() <= message.encoded_len(), "{} > {}", json.len(), message.encoded_len());
    }

    #[test]
    fn chat_list_status_and_missed_follow_the_summary() {
        use crate::model::{LastMessage, MemberSummary, MessageId, Seq};
        let (a, b) = (UserId::new("a"), UserId::new("b"));
        let room = |members: &[&UserId], author: &UserId, summary: MemberSummary| RoomView {
            id: RoomId(3),
            kind: RoomKind::Direct,
            name: String::new(),
            description: String::new(),
            attributes: "{}".into(),
            members: members.iter().map(|u| ((*u).clone(), Role::Member)).collect(),
            created_ms: 0,
            updated_ms: 0,
            last_seq: Seq(4),
            last_message: Some(LastMessage {
                id: MessageId(9),
                created_ms: 1,
                author: author.clone(),
            }),
            summary: Some(summary),
        };
        let s = |read, others_delivered, others_read| MemberSummary {
            read: Seq(read),
            others_delivered: Seq(others_delivered),
            others_read: Seq(others_read),
            last_seq: Seq(4),
            last_text: "hi".into(),
        };
        let item = |r: &RoomView| chat_list_item(r, &a);
        // Someone else's message: by the viewer's read mark; missed counts from it.
        let theirs = item(&room(&[&a, &b], &b, s(1, 0, 0)));
        assert_eq!(
            (&theirs["missed"], &theirs["lastMessageStatus"]),
            (&json!(3), &json!("unread"))
        );
        assert_eq!(theirs["lastMessageText"], "hi");
        assert_eq!(item(&room(&[&a, &b], &b, s(4, 0, 0)))["lastMessageStatus"], "read");
        // The viewer's own: by the others' marks; alone (favorites) it is read.
        assert_eq!(item(&room(&[&a, &b], &a, s(4, 3, 0)))["lastMessageStatus"], "undelivered");
        assert_eq!(item(&room(&[&a, &b], &a, s(4, 4, 0)))["lastMessageStatus"], "unread");
        assert_eq!(item(&room(&[&a, &b], &a, s(4, 4, 4)))["lastMessageStatus"], "read");
        assert_eq!(item(&room(&[&a], &a, s(4, 0, 0)))["lastMessageStatus"], "read");
        // Without a summary (a view made for another use): 0 and no status or text.
        let bare = RoomView { summary: None, ..room(&[&a, &b], &b, s(0, 0, 0)) };
        let bare = item(&bare);
        assert_eq!(bare["missed"], 0);
        assert!(bare.get("lastMessageStatus").is_none() && bare.get("lastMessageText").is_none());
    }

    #[test]
    fn direct_chat_id_is_the_other_member() {
        let members = vec![(UserId::new("a"), Role::Member), (UserId::new("b"), Role::Member)];
        assert_eq!(chat_id(RoomKind::Direct, RoomId(7), &members, &UserId::new("a")), "b");
        assert_eq!(chat_id(RoomKind::Direct, RoomId(7), &members, &UserId::new("b")), "a");
        assert_eq!(chat_id(RoomKind::Group, RoomId(7), &members, &UserId::new("a")), "7");
    }

    #[test]
    fn error_forms_are_the_real_servers() {
        assert_eq!(
            payload(&duplicate(&json!("5"))),
            json!({"error": {"id": "5", "type": "warning", "exception": "Duplicate request id"}})
        );
        assert_eq!(
            payload(&error("{x", "invalid JSON")),
            json!({"error": {"incomingMessage": "{x", "exception": "invalid JSON"}})
        );
        let body: Value = serde_json::from_str(&unauthorized_body(5)).unwrap();
        assert_eq!(body, json!({"error": "Unauthorized", "timestamp": 5, "status": 401}));
    }
}
