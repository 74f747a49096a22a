//! The osu! notification WebSocket dialect (`GET /notifications`, any path under it), as
//! `ppy/osu-notification-server` speaks it (protocol sheet 001).
//!
//! Server frames are `{"event": "<name>", "data": {...}}` JSON text with integer ids (a numeric
//! user id renders as an integer) and ISO-8601 timestamps; relay-made frames (`logout`,
//! `connection.ready`) have no `data`. Client frames are `{"event":"chat.start"}` and
//! `{"event":"chat.end"}`; anything else is ignored.
//!
//! Everything here is pure: rendering returns one complete WebSocket frame, decoding returns a
//! command. Per-connection state is two bits of `Conn::flags` ([`CHAT_ACTIVE`], [`SCOPE_ALL`]).

use serde::Serialize;
use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::model::{Message, MessageId, Notification, Role, RoomId, RoomKind, RoomView, UserId};
use crate::ws::frame;

/// `Conn::flags` bit: the client sent `chat.start` (and no `chat.end` since).
pub const CHAT_ACTIVE: u8 = 1;
/// `Conn::flags` bit: the token has scope `*` (receives `new` / `read`).
pub const SCOPE_ALL: u8 = 2;

/// The most a client may write per message, as channels advertise it (osu!'s value).
pub const MESSAGE_LENGTH_LIMIT: u32 = 450;

/// A client frame, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCommand {
    /// `{"event":"chat.start"}`: deliver `chat.*` events from now on.
    ChatStart,
    /// `{"event":"chat.end"}`: stop delivering `chat.*` events.
    ChatEnd,
    /// Anything else: not JSON, no string `event`, an unknown event. Silently ignored.
    Ignored,
}

#[derive(Deserialize)]
struct Command<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
}

/// Decodes a client text frame; never fails (bad input is [`ClientCommand::Ignored`]).
pub fn decode(payload: &[u8]) -> ClientCommand {
    match serde_json::from_slice::<Command<'_>>(payload) {
        Ok(c) if c.event == "chat.start" => ClientCommand::ChatStart,
        Ok(c) if c.event == "chat.end" => ClientCommand::ChatEnd,
        _ => ClientCommand::Ignored,
    }
}

/// The connection flags for a token's scopes: `None` when the token may not connect (neither
/// `*` nor `chat.read`), else [`SCOPE_ALL`] for `*` and 0 for a chat-only token.
pub fn scope_flags(scopes: &[String]) -> Option<u8> {
    if scopes.iter().any(|s| s == "*") {
        Some(SCOPE_ALL)
    } else if scopes.iter().any(|s| s == "chat.read") {
        Some(0)
    } else {
        None
    }
}

pub use crate::model::ids::iso8601;

/// A user id as osu! shows it: an integer when it is one, else the string.
fn user_json(user: &UserId) -> Value {
    match user.as_u64() {
        Some(n) => json!(n),
        None => json!(user.as_str()),
    }
}

/// A user's display name and avatar: `attributes.users["<id>"].{username, avatar_url}` of the
/// room when given, else the id and no avatar.
fn profile(attributes: Option<&Value>, user: &UserId) -> (String, Option<String>) {
    let entry = attributes.and_then(|a| a.get("users")).and_then(|u| u.get(user.as_str()));
    let name = entry.and_then(|e| e.get("username")).and_then(Value::as_str);
    let avatar = entry.and_then(|e| e.get("avatar_url")).and_then(Value::as_str);
    (name.unwrap_or(user.as_str()).to_string(), avatar.map(str::to_string))
}

fn to_frame(value: &Value) -> Bytes {
    frame::text_from_writer(|out| {
        // Serializing a Value into a Vec cannot fail.
        let _ = serde_json::to_writer(out, value);
    })
}

/// `{"event":"connection.ready"}`.
pub fn connection_ready() -> Bytes {
    frame::text(br#"{"event":"connection.ready"}"#)
}

/// `{"error":"authentication failed"}`.
pub fn authentication_failed() -> Bytes {
    frame::text(br#"{"error":"authentication failed"}"#)
}

/// `{"error":"too many connections"}` (the user holds its maximum of sockets).
pub fn too_many_connections() -> Bytes {
    frame::text(br#"{"error":"too many connections"}"#)
}

/// `{"event":"logout"}`.
pub fn logout() -> Bytes {
    frame::text(br#"{"event":"logout"}"#)
}

/// A user id as osu! shows it, serialized without building a `Value`.
struct UserIdJson<'a>(&'a UserId);

impl Serialize for UserIdJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_u64() {
            Some(n) => s.serialize_u64(n),
            None => s.serialize_str(self.0.as_str()),
        }
    }
}

/// `chat.message.new`, fields in the same (sorted) order `json!` gave.
#[derive(Serialize)]
struct MessageNew<'a> {
    data: MessageNewData<'a>,
    event: &'static str,
}

#[derive(Serialize)]
struct MessageNewData<'a> {
    messages: [ChatMessage<'a>; 1],
    users: [UserCompactJson<'a>; 1],
}

#[derive(Serialize)]
struct ChatMessage<'a> {
    channel_id: RoomId,
    content: &'a str,
    is_action: bool,
    message_id: MessageId,
    sender_id: UserIdJson<'a>,
    timestamp: String,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    uuid: Option<&'a str>,
}

/// A UserCompact (sheet §7.3): the id, and the name and avatar the room's attributes give.
#[derive(Serialize)]
struct UserCompactJson<'a> {
    avatar_url: &'a str,
    country_code: &'static str,
    default_group: &'static str,
    id: UserIdJson<'a>,
    is_active: bool,
    is_bot: bool,
    is_deleted: bool,
    is_online: bool,
    is_supporter: bool,
    last_visit: Option<()>,
    pm_friends_only: bool,
    profile_colour: Option<()>,
    username: &'a str,
}

/// `chat.message.new` for a posted message: one message, its sender in `users`, named (and
/// with the avatar) as `chat.channel.join`/`part` name users: the room's `attributes`
/// (`users.<id>.{username, avatar_url}`), else the id and an empty avatar. Rendered once per
/// message for every osu! recipient, so it serializes borrowed structs (no `Value` tree); the
/// attributes are parsed only when they mention `"users"`.
pub fn message_new(m: &Message, attributes: &str) -> Bytes {
    let is_action = m.kind == "action";
    let parsed: Option<Value> =
        if attributes.contains("\"users\"") { serde_json::from_str(attributes).ok() } else { None };
    let (username, avatar) = profile(parsed.as_ref(), &m.author);
    let event = MessageNew {
        data: MessageNewData {
            messages: [ChatMessage {
                channel_id: m.room,
                content: &m.text,
                is_action,
                message_id: m.id,
                sender_id: UserIdJson(&m.author),
                timestamp: iso8601(m.created_ms),
                kind: if is_action { "action" } else { "plain" },
                uuid: m.client_message_id.as_deref(),
            }],
            users: [UserCompactJson {
                avatar_url: avatar.as_deref().unwrap_or(""),
                country_code: "",
                default_group: "default",
                id: UserIdJson(&m.author),
                is_active: true,
                is_bot: false,
                is_deleted: false,
                is_online: true,
                is_supporter: false,
                last_visit: None,
                pm_friends_only: false,
                profile_colour: None,
                username: &username,
            }],
        },
        event: "chat.message.new",
    };
    frame::text_from_writer(|out| {
        // Serializing plain structs into a Vec cannot fail.
        let _ = serde_json::to_writer(out, &event);
    })
}

/// The osu! channel type of a room kind.
fn channel_type(kind: RoomKind) -> &'static str {
    match kind {
        RoomKind::Direct => "PM",
        RoomKind::Group => "GROUP",
        RoomKind::Public => "PUBLIC",
        RoomKind::Announce => "ANNOUNCE",
    }
}

/// `chat.channel.join` (`join = true`) or `chat.channel.part` with the ChatChannel of `room`
/// as `viewer` sees it: a PM is named (and iconed) after the other member.
pub fn channel_event(join: bool, room: &RoomView, viewer: &UserId) -> Bytes {
    let attributes: Option<Value> = serde_json::from_str(&room.attributes).ok();
    let (mut name, mut icon) = (room.name.clone(), None);
    let mut users = Vec::new();
    if room.kind == RoomKind::Direct {
        if let Some((other, _)) = room.members.iter().find(|(u, _)| u != viewer) {
            (name, icon) = profile(attributes.as_ref(), other);
        }
        users = room.members.iter().map(|(u, _)| user_json(u)).collect();
        if !room.members.iter().any(|(u, _)| u == viewer) {
            users.push(user_json(viewer));
        }
    }
    let role = room.role_of(viewer);
    let can_message = room.kind != RoomKind::Announce || role.is_some_and(|r| r >= Role::Moderator);
    let last_message_id = room.last_message.as_ref().map(|m| m.id);
    to_frame(&json!({
        "event": if join { "chat.channel.join" } else { "chat.channel.part" },
        "data": {
            "channel_id": room.id,
            "description": room.description,
            "icon": icon,
            "message_length_limit": MESSAGE_LENGTH_LIMIT,
            "moderated": false,
            "name": name,
            "type": channel_type(room.kind),
            "uuid": null,
            "current_user_attributes": {
                "can_list_users": true,
                "can_message": can_message,
                "can_message_error": null,
                "last_read_id": null,
            },
            "last_read_id": null,
            "last_message_id": last_message_id,
            "users": users,
        },
    }))
}

/// `new` with the Notification.
pub fn notification_new(n: &Notification) -> Bytes {
    to_frame(&json!({ "event": "new", "data": n.to_json() }))
}

/// `read`: the seed's top-level `ids` plus the real server's `data` (identities, count, time).
pub fn notifications_read(read: &[Notification], now_ms: u64) -> Bytes {
    let ids: Vec<u64> = read.iter().map(|n| n.id).collect();
    let identities: Vec<Value> = read
        .iter()
        .map(|n| {
            json!({
                "category": n.category,
                "id": n.id,
                "object_id": n.object_id,
                "object_type": n.object_type,
            })
        })
        .collect();
    to_frame(&json!({
        "event": "read",
        "ids": ids,
        "data": {
            "notifications": identities,
            "read_count": read.len(),
            "timestamp": iso8601(now_ms),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Seq;

    fn payload(frame: &Bytes) -> Value {
        serde_json::from_slice(crate::ws::frame::payload(frame)).expect("JSON")
    }

    #[test]
    fn decode_knows_chat_start_and_end_and_ignores_everything_else() {
        assert_eq!(decode(br#"{"event":"chat.start"}"#), ClientCommand::ChatStart);
        assert_eq!(decode(br#"{"event":"chat.end","x":1}"#), ClientCommand::ChatEnd);
        for bad in [
            &b"chat.start"[..],
            b"{}",
            br#"{"event":1}"#,
            br#"{"event":"chat.stop"}"#,
            b"\xff",
            b"[]",
        ] {
            assert_eq!(decode(bad), ClientCommand::Ignored);
        }
    }

    /// Found by fuzzing (fuzz/seeds/osu_wire/regress-*): serde skips the value of a member it
    /// ignores without validating it, so an object with a lone surrogate escape or (from a
    /// caller that passes bytes, not a text frame) bytes that are not UTF-8 there still decodes
    /// by its `event`, which a strict JSON parser would refuse. Harmless: the command read is
    /// the one sent, and text frames are UTF-8 (the WebSocket decoder checks). Pinned so that
    /// a change is seen.
    #[test]
    fn decode_reads_event_past_an_unvalidated_ignored_member() {
        assert_eq!(decode(br#"{"event":"chat.start","x":"\ud800"}"#), ClientCommand::ChatStart);
        assert_eq!(decode(b"{\"event\":\"chat.end\",\"x\":\"\x8a\"}"), ClientCommand::ChatEnd);
        assert_eq!(decode(br#"{"x":"\ud800","event":"chat.stop"}"#), ClientCommand::Ignored);
    }

    #[test]
    fn scopes_map_to_flags() {
        assert_eq!(scope_flags(&["*".into()]), Some(SCOPE_ALL));
        assert_eq!(scope_flags(&["chat.read".into()]), Some(0));
        assert_eq!(scope_flags(&["identify".into()]), None);
        assert_eq!(scope_flags(&[]), None);
    }

    #[test]
    fn iso8601_renders_utc_with_offset() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00+00:00");
        assert_eq!(iso8601(1_673_515_023_000), "2023-01-12T09:17:03+00:00");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00+00:00");
    }

    #[test]
    fn message_new_has_one_message_and_its_sender() {
        let m = Message {
            id: MessageId(9),
            seq: Seq(1),
            room: RoomId(4),
            author: UserId::new("1001"),
            text: "hi".into(),
            parent_id: MessageId(0),
            client_message_id: Some("u-1".into()),
            kind: "Regular".into(),
            attachments: "[]".into(),
            attributes: "{}".into(),
            comment_count: 0,
            created_ms: 1_673_515_023_000,
            edited_ms: 0,
            modified_ms: 0,
            deleted_ms: None,
        };
        let v = payload(&message_new(&m, "{}"));
        assert_eq!(v["event"], "chat.message.new");
        assert_eq!(
            v["data"]["messages"],
            json!([{"channel_id": 4, "content": "hi", "is_action": false, "message_id": 9,
                "sender_id": 1001, "timestamp": "2023-01-12T09:17:03+00:00", "type": "plain",
                "uuid": "u-1"}])
        );
        assert_eq!(v["data"]["users"][0]["id"], 1001);
        assert_eq!(v["data"]["users"][0]["username"], "1001");
        assert_eq!(v["data"]["users"][0]["avatar_url"], "");
        // Named as join/part name users: from the room's attributes.
        let attributes = r#"{"users":{"1001":{"username":"peppy","avatar_url":"https://a/1"}}}"#;
        let v = payload(&message_new(&m, attributes));
        assert_eq!(v["data"]["users"][0]["username"], "peppy");
        assert_eq!(v["data"]["users"][0]["avatar_url"], "https://a/1");
        assert_eq!(v["data"]["users"][0]["id"], 1001);
    }

    #[test]
    fn pm_channel_is_named_after_the_other_member() {
        let view = RoomView {
            id: RoomId(7),
            kind: RoomKind::Direct,
            name: "dm".into(),
            description: String::new(),
            attributes: r#"{"users":{"2":{"username":"bob","avatar_url":"https://a/2"}}}"#.into(),
            members: vec![(UserId::new("1"), Role::Member), (UserId::new("2"), Role::Member)],
            created_ms: 0,
            updated_ms: 0,
            last_seq: Seq(0),
            last_message: None,
            summary: None,
        };
        let for_one = payload(&channel_event(true, &view, &UserId::new("1")));
        assert_eq!(for_one["event"], "chat.channel.join");
        assert_eq!(for_one["data"]["name"], "bob");
        assert_eq!(for_one["data"]["icon"], "https://a/2");
        assert_eq!(for_one["data"]["type"], "PM");
        assert_eq!(for_one["data"]["users"], json!([1, 2]));
        let for_two = payload(&channel_event(false, &view, &UserId::new("2")));
        assert_eq!(for_two["event"], "chat.channel.part");
        assert_eq!(for_two["data"]["name"], "1");
        assert_eq!(for_two["data"]["icon"], Value::Null);
    }

    #[test]
    fn read_carries_seed_ids_and_real_data() {
        let n = Notification {
            id: 70031,
            user: UserId::new("5"),
            name: "channel_message".into(),
            category: "channel".into(),
            object_type: "channel".into(),
            object_id: 4512,
            source_user: Some(UserId::new("1001")),
            details: r#"{"title":"t"}"#.into(),
            created_ms: 0,
            read: false,
        };
        let v = payload(&notifications_read(std::slice::from_ref(&n), 0));
        assert_eq!(v["ids"], json!([70031]));
        assert_eq!(
            v["data"],
            json!({"notifications": [{"category": "channel", "id": 70031, "object_id": 4512,
                "object_type": "channel"}], "read_count": 1, "timestamp": "1970-01-01T00:00:00+00:00"})
        );
        let new = payload(&notification_new(&n));
        assert_eq!(new["data"]["source_user_id"], 1001);
        assert_eq!(new["data"]["details"], json!({"title": "t"}));
    }
}
