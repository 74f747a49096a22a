//! Socket.IO packets on top of Engine.IO message packets, and the Rechat events they carry
//! (protocol sheet 000). Pure: client packets decode into closed enums, validated and bounded
//! here; server events render into the text of one Engine.IO packet (`4` + the Socket.IO
//! packet), which the caller puts in a WebSocket text frame or a polling payload.
//!
//! ```text
//! <type>[<attachments>-][/<nsp>,][<ack id>][<JSON>]
//! 0 CONNECT      client: 0 / 0/nsp, / v4: 0{"token":…}   server: v3 40, v4 40{"sid":"…"}
//! 1 DISCONNECT   1 / 1/nsp,
//! 2 EVENT        2["name",arg…] / 2<ack>["name",arg…]
//! 3 ACK          3<ack>[arg…]                              server: 43<ack>[null,value] / [error]
//! 4 ERROR        v3: 4"message"   v4 (CONNECT_ERROR): 4{"message":"…"}
//! 5 BINARY_EVENT, 6 BINARY_ACK: refused (Rechat is text only)
//! ```
//!
//! Rechat objects: ids are strings, timestamps epoch seconds (fractional), every object has a
//! `type`. User display fields come from the room's `attributes.users.<id>` (as osu! does).

use serde_json::{json, Map, Value};

use crate::model::{
    Message, MessageId, Notification, Refusal, Role, Room, RoomId, RoomKind, RoomView, UserId,
};

// Bounds of what a client may send (`crate::limits`, RECHAT_*).
pub use crate::limits::{
    RECHAT_ACK_ID_DIGITS_MAX as ACK_ID_DIGITS_MAX, RECHAT_COMMENT_BYTES_MAX as COMMENT_BYTES_MAX,
    RECHAT_EVENT_ARGS_MAX as EVENT_ARGS_MAX, RECHAT_EVENT_NAME_BYTES_MAX as EVENT_NAME_BYTES_MAX,
    RECHAT_ID_BYTES_MAX as ID_BYTES_MAX, RECHAT_ID_LIST_MAX as ID_LIST_MAX,
    RECHAT_NSP_BYTES_MAX as NSP_BYTES_MAX, RECHAT_ROOM_USERS_MAX as ROOM_USERS_MAX,
    RECHAT_TOKEN_BYTES_MAX as TOKEN_BYTES_MAX, RECHAT_URL_BYTES_MAX as URL_BYTES_MAX,
};

/// The default namespace.
pub const DEFAULT_NSP: &str = "/";

/// Why a Socket.IO packet was refused. Closed; the session ends the Engine.IO session on any of
/// them (what a v4 server does with a packet it cannot parse).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// No packet type.
    Empty,
    /// The first character is not a packet type digit.
    UnknownType,
    /// BINARY_EVENT or BINARY_ACK: not supported.
    Binary,
    /// A packet type only the server sends (CONNECT_ERROR).
    ServerOnly,
    /// The namespace is too long or not followed by `,`.
    BadNamespace,
    /// An ack id is too long, where none belongs, or missing on an ACK.
    BadAckId,
    /// The data is not JSON.
    BadJson,
    /// An EVENT's data is not an array starting with a string name.
    NotAnEvent,
    /// An EVENT has more than [`EVENT_ARGS_MAX`] arguments.
    TooManyArgs,
    /// A CONNECT's data is not an object, or DISCONNECT/ACK data is of the wrong shape.
    BadData,
}

/// A decoded client packet.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientPacket {
    /// Join a namespace (v4 clients always send it; v3 clients only for namespaces other than
    /// `/`, which they join implicitly).
    Connect {
        /// The namespace, its query string removed.
        nsp: String,
        /// v4 `auth.token`, when a string: an access token given at connect.
        token: Option<String>,
    },
    /// Leave a namespace.
    Disconnect {
        /// The namespace.
        nsp: String,
    },
    /// A Rechat action.
    Event {
        /// The namespace.
        nsp: String,
        /// The ack id the client waits on, if any.
        ack: Option<u64>,
        /// The action, or the error to acknowledge it with.
        request: Result<Request, Failure>,
    },
    /// The client acknowledges a server event (the server asks for none; ignored).
    Ack {
        /// The namespace.
        nsp: String,
        /// The ack id.
        id: u64,
    },
}

/// A Rechat action, validated.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// `Authenticate(token)`: the access token (the same JWT as REST's Bearer).
    Authenticate {
        /// The token.
        token: String,
    },
    /// `Message.Send(room, message)`.
    MessageSend {
        /// The room.
        room: RoomId,
        /// The message (boxed: it is most of the enum's size).
        message: Box<MessageBody>,
    },
    /// `User.Typing(room)`.
    Typing {
        /// The room.
        room: RoomId,
    },
    /// `User.TypingEnded(room)`.
    TypingEnded {
        /// The room.
        room: RoomId,
    },
    /// Any other event (`Replay` included): ignored, as the real server ignores unknown events.
    Unknown(String),
}

/// `message_type` of a Rechat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// A message of the room.
    TopLevel,
    /// A reply under a recommendation.
    SubLevel,
}

impl MessageType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::TopLevel => "TopLevel",
            MessageType::SubLevel => "SubLevel",
        }
    }
}

/// The message object of `Message.Send` (the real server's schema; `author` is ignored).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MessageBody {
    /// `TopLevel` or `SubLevel` (required); `None` only in `Default`.
    pub message_type: Option<MessageType>,
    /// The text (`""` when absent).
    pub comment: String,
    /// `image_url`.
    pub image_url: Option<String>,
    /// `image_thumbnail_url`.
    pub image_thumbnail_url: Option<String>,
    /// `document_url`.
    pub document_url: Option<String>,
    /// `video_url`.
    pub video_url: Option<String>,
    /// `recommendation` (an id).
    pub recommendation: Option<String>,
    /// `notification` (an id).
    pub notification: Option<String>,
    /// `mentions` (user ids).
    pub mentions: Vec<String>,
    /// `attachments` (ids).
    pub attachments: Vec<String>,
}

/// The optional string fields of a message stored in its `attributes` and rendered back.
const MESSAGE_EXTRAS: [&str; 6] = [
    "image_url",
    "image_thumbnail_url",
    "document_url",
    "video_url",
    "recommendation",
    "notification",
];

impl MessageBody {
    /// The core message's `attributes` (JSON object text): `message_type`, the URL and id
    /// fields present, and `mentions` when not empty. [`message_wire`] reads them back.
    pub fn attributes(&self) -> String {
        let mut map = Map::new();
        let kind = self.message_type.unwrap_or(MessageType::TopLevel);
        map.insert("message_type".into(), json!(kind.as_str()));
        let fields = [
            &self.image_url,
            &self.image_thumbnail_url,
            &self.document_url,
            &self.video_url,
            &self.recommendation,
            &self.notification,
        ];
        for (name, value) in MESSAGE_EXTRAS.iter().zip(fields) {
            if let Some(v) = value {
                map.insert((*name).into(), json!(v));
            }
        }
        if !self.mentions.is_empty() {
            map.insert("mentions".into(), json!(self.mentions));
        }
        Value::Object(map).to_string()
    }

    /// The core message's `attachments` (JSON array text of the ids).
    pub fn attachments_json(&self) -> String {
        json!(self.attachments).to_string()
    }
}

/// What a refused action is acknowledged with: Rechat's error object `{http, message, code}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The kind (HTTP status and code).
    pub kind: FailureKind,
    /// The human-readable message.
    pub message: String,
}

/// The kinds of Rechat errors (`lib/models/Error.js`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// 400 `Validation`.
    Validation,
    /// 401 `UnauthorizedAccess`.
    Unauthorized,
    /// 403 `Forbidden`.
    Forbidden,
    /// 404 `ResourceNotFound`.
    NotFound,
    /// 409 `Conflict`.
    Conflict,
    /// 429 `TooManyRequests` (ours: the rate limit).
    TooMany,
    /// 503 `ServiceUnavailable` (ours: backpressure, store failure).
    Unavailable,
}

impl FailureKind {
    /// The HTTP status and code.
    pub fn http_code(self) -> (u16, &'static str) {
        match self {
            FailureKind::Validation => (400, "Validation"),
            FailureKind::Unauthorized => (401, "UnauthorizedAccess"),
            FailureKind::Forbidden => (403, "Forbidden"),
            FailureKind::NotFound => (404, "ResourceNotFound"),
            FailureKind::Conflict => (409, "Conflict"),
            FailureKind::TooMany => (429, "TooManyRequests"),
            FailureKind::Unavailable => (503, "ServiceUnavailable"),
        }
    }
}

impl Failure {
    /// A failure of `kind`.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure { kind, message: message.into() }
    }

    /// `{"http":…,"message":…,"code":…}`.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.wire()).unwrap_or(Value::Null)
    }

    /// The error object as Rechat writes it, fields in Rechat's order.
    fn wire(&self) -> FailureWire<'_> {
        let (http, code) = self.kind.http_code();
        FailureWire { http, message: &self.message, code }
    }
}

#[derive(serde::Serialize)]
struct FailureWire<'a> {
    http: u16,
    message: &'a str,
    code: &'static str,
}

impl From<&Refusal> for Failure {
    fn from(refusal: &Refusal) -> Failure {
        let kind = match refusal {
            Refusal::NotFound(_) => FailureKind::NotFound,
            Refusal::Forbidden(_) => FailureKind::Forbidden,
            Refusal::Invalid(_) | Refusal::MessageTooLarge(_) => FailureKind::Validation,
            Refusal::Conflict(_) => FailureKind::Conflict,
            Refusal::Full(_) => FailureKind::TooMany,
            Refusal::Unavailable(_) => FailureKind::Unavailable,
        };
        Failure::new(kind, refusal.message())
    }
}

// --- Decoding --------------------------------------------------------------------------------

/// Decodes a Socket.IO packet: the data of an Engine.IO message packet (after its `4`).
pub fn decode(text: &str) -> Result<ClientPacket, Error> {
    let kind = *text.as_bytes().first().ok_or(Error::Empty)?;
    match kind {
        b'0'..=b'4' => {}
        b'5' | b'6' => return Err(Error::Binary),
        _ => return Err(Error::UnknownType),
    }
    // The type is an ASCII digit, and every prefix consumed below (`/…,` ends at an ASCII
    // comma, the ack id is ASCII digits), so each slice is at a character boundary.
    let mut rest = &text[1..];
    let mut nsp = DEFAULT_NSP.to_string();
    if rest.starts_with('/') {
        let end = rest.find(',').unwrap_or(rest.len());
        if end > NSP_BYTES_MAX {
            return Err(Error::BadNamespace);
        }
        let full = &rest[..end];
        nsp = full.split('?').next().unwrap_or(DEFAULT_NSP).to_string();
        rest = rest.get(end + 1..).unwrap_or("");
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let ack = if digits == 0 {
        None
    } else if digits > ACK_ID_DIGITS_MAX {
        return Err(Error::BadAckId);
    } else {
        Some(rest[..digits].parse::<u64>().map_err(|_| Error::BadAckId)?)
    };
    rest = &rest[digits..];
    let data: Option<Value> = if rest.is_empty() {
        None
    } else {
        Some(serde_json::from_str(rest).map_err(|_| Error::BadJson)?)
    };
    match kind {
        b'0' => {
            if ack.is_some() {
                return Err(Error::BadAckId);
            }
            let token = match data {
                None => None,
                Some(Value::Object(auth)) => match auth.get("token") {
                    Some(Value::String(t)) if !t.is_empty() && t.len() <= TOKEN_BYTES_MAX => {
                        Some(t.clone())
                    }
                    _ => None,
                },
                Some(_) => return Err(Error::BadData),
            };
            Ok(ClientPacket::Connect { nsp, token })
        }
        b'1' => match (ack, data) {
            (None, None) => Ok(ClientPacket::Disconnect { nsp }),
            (Some(_), _) => Err(Error::BadAckId),
            (None, Some(_)) => Err(Error::BadData),
        },
        b'2' => {
            let Some(Value::Array(mut items)) = data else {
                return Err(Error::NotAnEvent);
            };
            if items.len() > 1 + EVENT_ARGS_MAX {
                return Err(Error::TooManyArgs);
            }
            if items.is_empty() {
                return Err(Error::NotAnEvent);
            }
            let Value::String(name) = items.remove(0) else {
                return Err(Error::NotAnEvent);
            };
            Ok(ClientPacket::Event { nsp, ack, request: parse_request(&name, &items) })
        }
        b'3' => match (ack, data) {
            (Some(id), Some(Value::Array(_))) => Ok(ClientPacket::Ack { nsp, id }),
            (None, _) => Err(Error::BadAckId),
            (Some(_), _) => Err(Error::BadData),
        },
        _ => Err(Error::ServerOnly),
    }
}

/// Parses the action `name` with its arguments.
pub fn parse_request(name: &str, args: &[Value]) -> Result<Request, Failure> {
    Ok(match name {
        "Authenticate" => Request::Authenticate { token: token_arg(args.first())? },
        "Message.Send" => Request::MessageSend {
            room: room_arg(args.first())?,
            message: Box::new(message_arg(args.get(1))?),
        },
        "User.Typing" => Request::Typing { room: room_arg(args.first())? },
        "User.TypingEnded" => Request::TypingEnded { room: room_arg(args.first())? },
        other => Request::Unknown(shorten(other, EVENT_NAME_BYTES_MAX)),
    })
}

/// `s` cut to at most `max` bytes at a character boundary.
fn shorten(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure::new(FailureKind::Validation, message)
}

fn token_arg(arg: Option<&Value>) -> Result<String, Failure> {
    match arg {
        Some(Value::String(t)) if !t.is_empty() && t.len() <= TOKEN_BYTES_MAX => Ok(t.clone()),
        Some(Value::String(t)) if t.is_empty() => {
            Err(Failure::new(FailureKind::Unauthorized, "Invalid credentials"))
        }
        Some(Value::String(_)) => Err(invalid("access token is too long")),
        _ => Err(invalid("access token must be a string")),
    }
}

/// A room id: the decimal string Rechat objects show (a non-negative integer is accepted too).
/// A string that is no room id is a room that does not exist.
fn room_arg(arg: Option<&Value>) -> Result<RoomId, Failure> {
    match arg {
        Some(Value::String(s)) if s.len() > ID_BYTES_MAX => Err(invalid("room id is too long")),
        Some(Value::String(s)) => s
            .parse::<u64>()
            .ok()
            .filter(|_| s.bytes().all(|b| b.is_ascii_digit()))
            .map(RoomId)
            .ok_or_else(|| Failure::new(FailureKind::NotFound, "Room not found")),
        Some(Value::Number(n)) => n.as_u64().map(RoomId).ok_or_else(|| invalid("bad room id")),
        _ => Err(invalid("room id must be a string")),
    }
}

fn message_arg(arg: Option<&Value>) -> Result<MessageBody, Failure> {
    let Some(Value::Object(map)) = arg else {
        return Err(invalid("message must be an object"));
    };
    let message_type = match map.get("message_type") {
        Some(Value::String(s)) if s == "TopLevel" => MessageType::TopLevel,
        Some(Value::String(s)) if s == "SubLevel" => MessageType::SubLevel,
        None | Some(Value::Null) => return Err(invalid("message_type is required")),
        Some(_) => return Err(invalid("message_type must be TopLevel or SubLevel")),
    };
    let comment = optional_string(map, "comment", COMMENT_BYTES_MAX)?.unwrap_or_default();
    Ok(MessageBody {
        message_type: Some(message_type),
        comment,
        image_url: optional_string(map, "image_url", URL_BYTES_MAX)?,
        image_thumbnail_url: optional_string(map, "image_thumbnail_url", URL_BYTES_MAX)?,
        document_url: optional_string(map, "document_url", URL_BYTES_MAX)?,
        video_url: optional_string(map, "video_url", URL_BYTES_MAX)?,
        recommendation: optional_string(map, "recommendation", ID_BYTES_MAX)?,
        notification: optional_string(map, "notification", ID_BYTES_MAX)?,
        mentions: id_list(map, "mentions")?,
        attachments: id_list(map, "attachments")?,
    })
}

fn optional_string(
    map: &Map<String, Value>,
    name: &str,
    max: usize,
) -> Result<Option<String>, Failure> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= max => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(invalid(format!("{name} is too long"))),
        Some(_) => Err(invalid(format!("{name} must be a string"))),
    }
}

fn id_list(map: &Map<String, Value>, name: &str) -> Result<Vec<String>, Failure> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) if items.len() > ID_LIST_MAX => {
            Err(invalid(format!("{name} has too many entries")))
        }
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) if s.len() <= ID_BYTES_MAX => Ok(s.clone()),
                _ => Err(invalid(format!("{name} must be an array of ids"))),
            })
            .collect(),
        Some(_) => Err(invalid(format!("{name} must be an array"))),
    }
}

// --- Rendering: packets ------------------------------------------------------------------------

/// The server's CONNECT for the default namespace: v3 `40`, v4 `40{"sid":"…"}` (`sid`: the
/// Socket.IO session id, distinct from Engine.IO's).
pub fn connect(v4: bool, sid: &str) -> String {
    if v4 {
        format!("40{}", json!({ "sid": sid }))
    } else {
        "40".to_string()
    }
}

/// The refusal of a CONNECT to `nsp`: v3 ERROR `44/nsp,"message"`, v4 CONNECT_ERROR
/// `44/nsp,{"message":"…"}` (no `/nsp,` for the default namespace).
pub fn connect_error(v4: bool, nsp: &str, message: &str) -> String {
    let data = if v4 { json!({ "message": message }) } else { json!(message) };
    format!("44{}{data}", nsp_prefix(nsp))
}

/// The server's DISCONNECT of `nsp`.
pub fn disconnect(nsp: &str) -> String {
    format!("41{}", nsp_prefix(nsp))
}

fn nsp_prefix(nsp: &str) -> String {
    if nsp == DEFAULT_NSP {
        String::new()
    } else {
        // Namespaces are ours to echo only after decode bounded them; a comma would end it early.
        format!("{},", shorten(&nsp.replace(',', ""), NSP_BYTES_MAX))
    }
}

/// An EVENT on the default namespace: `42["name",arg…]`.
pub fn event(name: &str, args: &[Value]) -> String {
    let mut items = Vec::with_capacity(1 + args.len());
    items.push(json!(name));
    items.extend_from_slice(args);
    format!("42{}", Value::Array(items))
}

/// An ACK: `43<id>[arg…]`.
pub fn ack(id: u64, args: &[Value]) -> String {
    format!("43{id}{}", Value::Array(args.to_vec()))
}

/// The ack of a successful action: `43<id>[null,value]`.
pub fn ack_ok(id: u64, value: Value) -> String {
    ack(id, &[Value::Null, value])
}

/// The ack of a refused action: `43<id>[{"http","message","code"}]`.
pub fn ack_error(id: u64, failure: &Failure) -> String {
    emit(&format!("43{id}"), &(failure.wire(),))
}

/// `prefix` then `items` (a tuple: a JSON array) serialized as declared, so struct fields keep
/// their order whatever `serde_json`'s map order is.
fn emit<T: serde::Serialize>(prefix: &str, items: &T) -> String {
    let mut out = String::from(prefix);
    // Serializing plain structs, strings and `Value`s cannot fail.
    out.push_str(&serde_json::to_string(items).unwrap_or_default());
    out
}

// --- Rendering: Rechat objects -----------------------------------------------------------------

/// Milliseconds as Rechat's epoch seconds (fractional).
pub fn seconds(ms: u64) -> Value {
    json!(seconds_f64(ms))
}

/// Milliseconds as epoch seconds.
fn seconds_f64(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// A value serialized as the JSON string of its `Display` (ids), written straight into the
/// output instead of through a `String` of its own.
struct Shown<T>(T);

impl<T: std::fmt::Display> serde::Serialize for Shown<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// A room's `attributes`, parsed (`None` when not a JSON object).
pub fn parse_attributes(text: &str) -> Option<Value> {
    serde_json::from_str::<Value>(text).ok().filter(Value::is_object)
}

/// A user object as Rechat renders it, borrowing its display fields from the room
/// attributes' `users.<id>` entry (strings only): `first_name` falls back to `username`, then
/// to the id; `last_name` to `""`; `user_type` to `"Client"`.
#[derive(serde::Serialize)]
pub struct UserWire<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    username: Option<&'a str>,
    first_name: &'a str,
    last_name: &'a str,
    email: Option<&'a str>,
    phone_number: Option<&'a str>,
    profile_image_url: Option<&'a str>,
    profile_image_thumbnail_url: Option<&'a str>,
    cover_image_url: Option<&'a str>,
    cover_image_thumbnail_url: Option<&'a str>,
    user_type: &'a str,
}

/// The [`UserWire`] of user `id`, with display fields from `attributes` (the room's, parsed).
pub fn user_wire<'a>(attributes: Option<&'a Value>, id: &'a str) -> UserWire<'a> {
    let entry = attributes.and_then(|a| a.get("users")).and_then(|u| u.get(id));
    let field = |name: &str| entry.and_then(|e| e.get(name)).and_then(Value::as_str);
    UserWire {
        kind: "user",
        id,
        username: field("username"),
        first_name: field("first_name").or(field("username")).unwrap_or(id),
        last_name: field("last_name").unwrap_or(""),
        email: field("email"),
        phone_number: field("phone_number"),
        profile_image_url: field("profile_image_url"),
        profile_image_thumbnail_url: field("profile_image_thumbnail_url"),
        cover_image_url: field("cover_image_url"),
        cover_image_thumbnail_url: field("cover_image_thumbnail_url"),
        user_type: field("user_type").unwrap_or("Client"),
    }
}

/// The user object of `user` as a JSON value (acks; see [`user_wire`]).
pub fn user_json(attributes: Option<&Value>, user: &UserId) -> Value {
    serde_json::to_value(user_wire(attributes, user.as_str())).unwrap_or(Value::Null)
}

/// Rechat's `room_type` of a room kind.
fn room_type(kind: RoomKind) -> &'static str {
    match kind {
        RoomKind::Direct => "Direct",
        RoomKind::Group | RoomKind::Public | RoomKind::Announce => "Group",
    }
}

/// A room object as Rechat renders it (borrowing from the room and its parsed attributes).
#[derive(serde::Serialize)]
struct RoomWire<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: Shown<RoomId>,
    title: &'a str,
    owner: Option<UserWire<'a>>,
    created_at: f64,
    updated_at: f64,
    deleted_at: (),
    status: &'a str,
    lead_agent: Option<UserWire<'a>>,
    room_code: Option<u64>,
    room_type: &'static str,
    client_type: &'a str,
    latest_message: Option<&'a MessageWire<'a>>,
    users: UsersWire<'a>,
}

/// A room's `users`: the user objects of its first members, serialized one by one (no list of
/// user objects built first).
struct UsersWire<'a> {
    attrs: Option<&'a Value>,
    ids: &'a [&'a UserId],
}

impl serde::Serialize for UsersWire<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.ids.iter().map(|u| user_wire(self.attrs, u.as_str())))
    }
}

/// What a room object shows of a room, borrowed from a [`RoomView`] or straight from the
/// owner's [`Room`] (no snapshot per message): `users` are the [`ROOM_USERS_MAX`] first
/// members by user id, `owner` the first owner.
pub struct RoomFields<'a> {
    id: RoomId,
    kind: RoomKind,
    name: &'a str,
    owner: Option<&'a UserId>,
    users: smallvec::SmallVec<[&'a UserId; 4]>,
    created_ms: u64,
    updated_ms: u64,
    /// The room's newest live message.
    last_message: Option<MessageId>,
}

impl<'a> RoomFields<'a> {
    /// The fields of a snapshot (its members are sorted by user id): the tests' renderers.
    #[cfg(test)]
    pub fn of_view(room: &'a RoomView) -> Self {
        RoomFields {
            id: room.id,
            kind: room.kind,
            name: &room.name,
            owner: room.members.iter().find(|(_, role)| *role == Role::Owner).map(|(u, _)| u),
            users: room.members.iter().take(ROOM_USERS_MAX).map(|(u, _)| u).collect(),
            created_ms: room.created_ms,
            updated_ms: room.updated_ms,
            last_message: room.last_message.as_ref().map(|last| last.id),
        }
    }

    /// The same fields as `of_view(&room.view())`, read from the room itself: the first
    /// members are selected (not the whole membership sorted and cloned) and the newest live
    /// message found in its window.
    pub fn of_room(room: &'a Room) -> Self {
        let mut users: smallvec::SmallVec<[&UserId; 4]> = room.members.keys().collect();
        if users.len() > ROOM_USERS_MAX {
            users.select_nth_unstable(ROOM_USERS_MAX);
            users.truncate(ROOM_USERS_MAX);
        }
        users.sort_unstable();
        let owner =
            room.members.iter().filter(|(_, m)| m.role == Role::Owner).map(|(u, _)| u).min();
        RoomFields {
            id: room.id,
            kind: room.kind,
            name: &room.name,
            owner,
            users,
            created_ms: room.created_ms,
            updated_ms: room.updated_ms,
            last_message: room.history.iter().rev().find(|m| m.deleted_ms.is_none()).map(|m| m.id),
        }
    }
}

/// The room object of `room` (`attrs`: its attributes, parsed): `users` lists at most
/// [`ROOM_USERS_MAX`] members; `status`, `client_type`, `room_code` and `lead_agent` come from
/// the attributes when set.
fn room_wire<'a, 'r: 'a>(room: &'a RoomFields<'r>, attrs: Option<&'a Value>) -> RoomWire<'a> {
    let attr = |name: &str| attrs.and_then(|a| a.get(name));
    let lead_agent =
        attr("lead_agent").and_then(Value::as_str).filter(|id| id.len() <= ID_BYTES_MAX);
    RoomWire {
        kind: "room",
        id: Shown(room.id),
        title: room.name,
        owner: room.owner.map(|u| user_wire(attrs, u.as_str())),
        created_at: seconds_f64(room.created_ms),
        updated_at: seconds_f64(room.updated_ms),
        deleted_at: (),
        status: attr("status").and_then(Value::as_str).unwrap_or("New"),
        lead_agent: lead_agent.map(|id| user_wire(attrs, id)),
        room_code: attr("room_code").and_then(Value::as_u64),
        room_type: room_type(room.kind),
        client_type: attr("client_type").and_then(Value::as_str).unwrap_or("Unknown"),
        latest_message: None,
        users: UsersWire { attrs, ids: &room.users },
    }
}

/// The room object as a JSON value (see [`room_wire`]); the tests' view of it.
#[cfg(test)]
pub fn room_json(room: &RoomView) -> Value {
    let attrs = parse_attributes(&room.attributes);
    let fields = RoomFields::of_view(room);
    serde_json::to_value(room_wire(&fields, attrs.as_ref())).unwrap_or(Value::Null)
}

/// A message object as Rechat renders it.
#[derive(serde::Serialize)]
struct MessageWire<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: Shown<MessageId>,
    comment: &'a str,
    author: UserWire<'a>,
    created_at: f64,
    updated_at: f64,
    deleted_at: Option<f64>,
    message_type: &'a str,
    reference: Option<&'a str>,
    attachments: Option<Value>,
    room: Shown<RoomId>,
    image_url: Option<&'a str>,
    image_thumbnail_url: Option<&'a str>,
    document_url: Option<&'a str>,
    video_url: Option<&'a str>,
    recommendation: Option<&'a str>,
    notification: Option<&'a str>,
}

/// The message object of `m` (`attrs`: its own attributes, parsed; `room_attributes`: the
/// room's, for the author's display fields). The URL and id fields and `message_type` come
/// back from the message's attributes ([`MessageBody::attributes`]).
fn message_wire<'a>(
    m: &'a Message,
    attrs: Option<&'a Value>,
    room_attributes: Option<&'a Value>,
) -> MessageWire<'a> {
    let attr = |name: &str| attrs.and_then(|a| a.get(name)).and_then(Value::as_str);
    let attachments = match serde_json::from_str::<Value>(&m.attachments) {
        Ok(Value::Array(a)) if !a.is_empty() => Some(Value::Array(a)),
        _ => None,
    };
    MessageWire {
        kind: "message",
        id: Shown(m.id),
        comment: &m.text,
        author: user_wire(room_attributes, m.author.as_str()),
        created_at: seconds_f64(m.created_ms),
        updated_at: seconds_f64(m.modified_ms),
        deleted_at: m.deleted_ms.map(seconds_f64),
        message_type: attr("message_type").unwrap_or("TopLevel"),
        reference: m.client_message_id.as_deref(),
        attachments,
        room: Shown(m.room),
        image_url: attr("image_url"),
        image_thumbnail_url: attr("image_thumbnail_url"),
        document_url: attr("document_url"),
        video_url: attr("video_url"),
        recommendation: attr("recommendation"),
        notification: attr("notification"),
    }
}

/// The message object as a JSON value (see [`message_wire`]): the tests' oracle for the ack
/// ([`message_ack_frame`] writes the same bytes without the value tree).
#[cfg(test)]
pub fn message_json(m: &Message, room_attributes: Option<&Value>) -> Value {
    let attrs = parse_attributes(&m.attributes);
    serde_json::to_value(message_wire(m, attrs.as_ref(), room_attributes)).unwrap_or(Value::Null)
}

/// [`UserWire`] with its keys in the order a `serde_json::Value` object writes them (sorted, as
/// serde_json's map is ordered): [`message_ack_frame`] renders what `message_json` then [`ack_ok`]
/// did, without the value tree.
#[derive(serde::Serialize)]
struct SortedUserWire<'a> {
    cover_image_thumbnail_url: Option<&'a str>,
    cover_image_url: Option<&'a str>,
    email: Option<&'a str>,
    first_name: &'a str,
    id: &'a str,
    last_name: &'a str,
    phone_number: Option<&'a str>,
    profile_image_thumbnail_url: Option<&'a str>,
    profile_image_url: Option<&'a str>,
    #[serde(rename = "type")]
    kind: &'static str,
    user_type: &'a str,
    username: Option<&'a str>,
}

impl<'a> From<UserWire<'a>> for SortedUserWire<'a> {
    fn from(u: UserWire<'a>) -> Self {
        SortedUserWire {
            cover_image_thumbnail_url: u.cover_image_thumbnail_url,
            cover_image_url: u.cover_image_url,
            email: u.email,
            first_name: u.first_name,
            id: u.id,
            last_name: u.last_name,
            phone_number: u.phone_number,
            profile_image_thumbnail_url: u.profile_image_thumbnail_url,
            profile_image_url: u.profile_image_url,
            kind: u.kind,
            user_type: u.user_type,
            username: u.username,
        }
    }
}

/// [`MessageWire`] with its keys sorted (see [`SortedUserWire`]).
#[derive(serde::Serialize)]
struct SortedMessageWire<'a> {
    attachments: Option<Value>,
    author: SortedUserWire<'a>,
    comment: &'a str,
    created_at: f64,
    deleted_at: Option<f64>,
    document_url: Option<&'a str>,
    id: Shown<MessageId>,
    image_thumbnail_url: Option<&'a str>,
    image_url: Option<&'a str>,
    message_type: &'a str,
    notification: Option<&'a str>,
    recommendation: Option<&'a str>,
    reference: Option<&'a str>,
    room: Shown<RoomId>,
    #[serde(rename = "type")]
    kind: &'static str,
    updated_at: f64,
    video_url: Option<&'a str>,
}

impl<'a> From<MessageWire<'a>> for SortedMessageWire<'a> {
    fn from(m: MessageWire<'a>) -> Self {
        SortedMessageWire {
            attachments: m.attachments,
            author: m.author.into(),
            comment: m.comment,
            created_at: m.created_at,
            deleted_at: m.deleted_at,
            document_url: m.document_url,
            id: m.id,
            image_thumbnail_url: m.image_thumbnail_url,
            image_url: m.image_url,
            message_type: m.message_type,
            notification: m.notification,
            recommendation: m.recommendation,
            reference: m.reference,
            room: m.room,
            kind: m.kind,
            updated_at: m.updated_at,
            video_url: m.video_url,
        }
    }
}

/// The ack of a stored message, `43<id>[null,<message>]`, as a WebSocket frame: the bytes of
/// `text_frame(&ack_ok(id, message_json(m, None)))` written straight into the frame (no
/// value tree, no `String`).
pub fn message_ack_frame(id: u64, m: &Message) -> bytes::Bytes {
    let attrs = parse_attributes(&m.attributes);
    let message = SortedMessageWire::from(message_wire(m, attrs.as_ref(), None));
    // 645 bytes for a 64-byte comment without display fields.
    let capacity = 768 + 2 * m.text.len();
    crate::ws::frame::text_from_writer_with_capacity(capacity, |out| {
        use std::io::Write as _;
        let _ = write!(out, "43{id}");
        let _ = serde_json::to_writer(&mut *out, &((), &message));
    })
}

/// The notification object. Rechat's fields come from the notification's details when set
/// (`message`, `action`, `object_class`, `subject_class`, `notification_type`, `room`), else
/// from the core fields.
pub fn notification_json(n: &Notification) -> Value {
    let details = parse_attributes(&n.details);
    let detail =
        |name: &str| details.as_ref().and_then(|d| d.get(name)).filter(|v| v.is_string()).cloned();
    let room = detail("room").unwrap_or_else(|| {
        if matches!(n.object_type.as_str(), "room" | "channel") {
            json!(n.object_id.to_string())
        } else {
            Value::Null
        }
    });
    let subjects = n.source_user.as_ref().map_or(Value::Null, |u| json!([user_json(None, u)]));
    json!({
        "type": "notification",
        "id": n.id.to_string(),
        "notification_id": n.id.to_string(),
        "message": detail("message").unwrap_or(json!(n.name)),
        "created_at": seconds(n.created_ms),
        "updated_at": seconds(n.created_ms),
        "deleted_at": null,
        "room": room,
        "action": detail("action"),
        "object_class": detail("object_class").unwrap_or(json!(n.object_type)),
        "subject_class": detail("subject_class")
            .unwrap_or(if n.source_user.is_some() { json!("User") } else { Value::Null }),
        "notification_type": detail("notification_type").unwrap_or(json!(n.name)),
        "subjects": subjects,
        "objects": null,
        "recommendation": null,
        "specific": null,
    })
}

// --- Rendering: server events ------------------------------------------------------------------

/// `Message.Sent(room, message)`; the room's `latest_message` is this message when it is the
/// room's newest. Rendered straight from borrowed fields (no JSON value tree): it runs once
/// per message and carries up to [`ROOM_USERS_MAX`] user objects.
#[cfg(test)]
pub fn message_sent(room: &RoomView, m: &Message) -> String {
    let mut out = Vec::new();
    let fields = RoomFields::of_view(room);
    write_message_sent(&mut out, &fields, parse_attributes(&room.attributes).as_ref(), m);
    String::from_utf8(out).unwrap_or_default()
}

/// The WebSocket frames of a new message, `Message.Sent` then its `Notification`, back to back
/// in one buffer, rendered straight from the owner's room (no [`RoomView`] snapshot) into the
/// frames' buffer: the same bytes as `text(message_sent(view))` then
/// `text(message_notification(view))` for `view = room.view()`.
pub fn message_sent_frames(room: &Room, m: &Message) -> bytes::Bytes {
    let room_attrs = parse_attributes(&room.attributes);
    let fields = RoomFields::of_room(room);
    // The message twice (as itself and as the room's latest) and once in the notification,
    // each with its author, plus the room's user objects: 2 764 bytes for a 2-member room and
    // a 64-byte comment. Enough up front that the buffer is not grown (a copy) while written.
    let users = fields.users.len() + usize::from(fields.owner.is_some());
    let capacity = 2048 + 384 * users + 4 * m.text.len() + 3 * room.name.len();
    crate::ws::frame::text_pair_from_writers(
        capacity,
        |out| write_message_sent(out, &fields, room_attrs.as_ref(), m),
        |out| write_message_notification(out, &fields, room_attrs.as_ref(), m),
    )
}

/// `Message.Sent`'s packet appended to `out`, the room's attributes already parsed.
fn write_message_sent(
    out: &mut Vec<u8>,
    room: &RoomFields<'_>,
    room_attrs: Option<&Value>,
    m: &Message,
) {
    let message_attrs = parse_attributes(&m.attributes);
    let message = message_wire(m, message_attrs.as_ref(), room_attrs);
    let mut room_v = room_wire(room, room_attrs);
    if room.last_message == Some(m.id) {
        room_v.latest_message = Some(&message);
    }
    write_packet(out, "42", &("Message.Sent", &room_v, &message));
}

/// `prefix` then `items` appended to `out` (see [`emit`]).
fn write_packet<T: serde::Serialize>(out: &mut Vec<u8>, prefix: &str, items: &T) {
    out.extend_from_slice(prefix.as_bytes());
    // Serializing plain structs, strings and `Value`s into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, items);
}

/// `Notification(notification)`.
pub fn notification(n: &Notification) -> String {
    event("Notification", &[notification_json(n)])
}

/// `User.Typing({user_id, room_id})`, or `User.TypingEnded` when `ended`.
pub fn typing(user: &UserId, room: RoomId, ended: bool) -> String {
    let name = if ended { "User.TypingEnded" } else { "User.Typing" };
    #[derive(serde::Serialize)]
    struct Wire<'a> {
        user_id: &'a str,
        room_id: String,
    }
    emit("42", &(name, Wire { user_id: user.as_str(), room_id: room.to_string() }))
}

/// `User.Online(user_id)`.
pub fn user_online(user: &UserId) -> String {
    event("User.Online", &[json!(user.as_str())])
}

/// `User.Offline(user_id)`.
pub fn user_offline(user: &UserId) -> String {
    event("User.Offline", &[json!(user.as_str())])
}

/// `Users.Online([user_id…])`.
pub fn users_online<'a>(users: impl IntoIterator<Item = &'a UserId>) -> String {
    let ids: Vec<Value> = users.into_iter().map(|u| json!(u.as_str())).collect();
    event("Users.Online", &[Value::Array(ids)])
}

/// The `Notification` (`UserSentMessage`) Rechat sends every member of `room` for message `m`
/// (not stored: its id is the message's): `"#<room title>: @<author first name> <comment>"`.
#[cfg(test)]
pub fn message_notification(room: &RoomView, m: &Message) -> String {
    let mut out = Vec::new();
    let fields = RoomFields::of_view(room);
    write_message_notification(&mut out, &fields, parse_attributes(&room.attributes).as_ref(), m);
    String::from_utf8(out).unwrap_or_default()
}

/// A sent message's notification text, `#<room title>: @<author first name> <comment>`,
/// written into the JSON string as it is serialized.
struct NoteText<'a> {
    room: &'a str,
    author: &'a str,
    text: &'a str,
}

impl std::fmt::Display for NoteText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}: @{} {}", self.room, self.author, self.text)
    }
}

/// The `Notification` object of a sent message, borrowing what it shows.
#[derive(serde::Serialize)]
struct MessageNotificationWire<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: Shown<MessageId>,
    notification_id: Shown<MessageId>,
    message: Shown<NoteText<'a>>,
    created_at: f64,
    updated_at: f64,
    deleted_at: (),
    room: Shown<RoomId>,
    action: &'static str,
    object_class: &'static str,
    subject_class: &'static str,
    auxiliary_object_class: &'static str,
    notification_type: &'static str,
    subjects: [UserWire<'a>; 1],
    objects: (),
    recommendation: (),
    specific: (),
}

/// [`message_notification`]'s packet appended to `out`, the room's attributes already parsed.
fn write_message_notification(
    out: &mut Vec<u8>,
    room: &RoomFields<'_>,
    room_attrs: Option<&Value>,
    m: &Message,
) {
    let author = user_wire(room_attrs, m.author.as_str());
    let wire = MessageNotificationWire {
        kind: "notification",
        id: Shown(m.id),
        notification_id: Shown(m.id),
        message: Shown(NoteText { room: room.name, author: author.first_name, text: &m.text }),
        created_at: seconds_f64(m.created_ms),
        updated_at: seconds_f64(m.created_ms),
        deleted_at: (),
        room: Shown(room.id),
        action: "Sent",
        object_class: "Message",
        subject_class: "User",
        auxiliary_object_class: "Room",
        notification_type: "UserSentMessage",
        subjects: [author],
        objects: (),
        recommendation: (),
        specific: (),
    };
    write_packet(out, "42", &("Notification", wire));
}

/// `Room.UserJoined(user)`, the user's display fields from `room`.
pub fn room_user_joined(room: &RoomView, user: &UserId) -> String {
    let attrs = parse_attributes(&room.attributes);
    event("Room.UserJoined", &[user_json(attrs.as_ref(), user)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::rechat::text_frame;
    use crate::model::{LastMessage, MessageId, Seq};

    fn ok(name: &str, args: Value) -> Result<Request, Failure> {
        let Value::Array(args) = args else { unreachable!() };
        parse_request(name, &args)
    }

    fn fail(kind: FailureKind, message: &str) -> Result<Request, Failure> {
        Err(Failure::new(kind, message))
    }

    #[test]
    fn packets_decode_into_their_variants() {
        let auth = Request::Authenticate { token: "tok".into() };
        let cases: Vec<(&str, ClientPacket)> = vec![
            ("0", ClientPacket::Connect { nsp: "/".into(), token: None }),
            ("0{}", ClientPacket::Connect { nsp: "/".into(), token: None }),
            (
                r#"0{"token":"t"}"#,
                ClientPacket::Connect { nsp: "/".into(), token: Some("t".into()) },
            ),
            (r#"0{"token":7}"#, ClientPacket::Connect { nsp: "/".into(), token: None }),
            ("0/admin,", ClientPacket::Connect { nsp: "/admin".into(), token: None }),
            ("0/admin?x=1,", ClientPacket::Connect { nsp: "/admin".into(), token: None }),
            ("0/admin", ClientPacket::Connect { nsp: "/admin".into(), token: None }),
            ("1", ClientPacket::Disconnect { nsp: "/".into() }),
            ("1/admin,", ClientPacket::Disconnect { nsp: "/admin".into() }),
            (
                r#"2["Authenticate","tok"]"#,
                ClientPacket::Event { nsp: "/".into(), ack: None, request: Ok(auth.clone()) },
            ),
            (
                r#"21["Authenticate","tok"]"#,
                ClientPacket::Event { nsp: "/".into(), ack: Some(1), request: Ok(auth.clone()) },
            ),
            (
                r#"2/chat,999999999999999["Authenticate","tok"]"#,
                ClientPacket::Event {
                    nsp: "/chat".into(),
                    ack: Some(999_999_999_999_999),
                    request: Ok(auth),
                },
            ),
            (
                r#"2["Replay",1465200000]"#,
                ClientPacket::Event {
                    nsp: "/".into(),
                    ack: None,
                    request: Ok(Request::Unknown("Replay".into())),
                },
            ),
            (
                r#"23["User.Typing",5]"#,
                ClientPacket::Event {
                    nsp: "/".into(),
                    ack: Some(3),
                    request: Ok(Request::Typing { room: RoomId(5) }),
                },
            ),
            ("30[]", ClientPacket::Ack { nsp: "/".into(), id: 0 }),
            (r#"312[null,"x"]"#, ClientPacket::Ack { nsp: "/".into(), id: 12 }),
        ];
        for (text, want) in cases {
            assert_eq!(decode(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn malformed_packets_are_refused() {
        let long_nsp = format!("2/{}[\"a\"]", "n".repeat(NSP_BYTES_MAX));
        let long_ack = format!("2{}[\"a\"]", "1".repeat(ACK_ID_DIGITS_MAX + 1));
        let many_args = format!("2[\"a\"{}]", ",1".repeat(EVENT_ARGS_MAX + 1));
        let cases: Vec<(&str, Error)> = vec![
            ("", Error::Empty),
            ("7", Error::UnknownType),
            ("a", Error::UnknownType),
            ("é", Error::UnknownType),
            ("[\"a\"]", Error::UnknownType),
            ("51-[\"a\",{\"_placeholder\":true,\"num\":0}]", Error::Binary),
            ("61-1[{\"_placeholder\":true,\"num\":0}]", Error::Binary),
            ("4\"boom\"", Error::ServerOnly),
            ("4{\"message\":\"x\"}", Error::ServerOnly),
            (long_nsp.as_str(), Error::BadNamespace),
            (long_ack.as_str(), Error::BadAckId),
            ("01", Error::BadAckId),
            ("11", Error::BadAckId),
            ("3[]", Error::BadAckId),
            ("2[\"a\"", Error::BadJson),
            ("2{", Error::BadJson),
            ("2[\"a\"]x", Error::BadJson),
            ("2", Error::NotAnEvent),
            ("21", Error::NotAnEvent),
            ("2[]", Error::NotAnEvent),
            ("2[1,\"a\"]", Error::NotAnEvent),
            ("2[null]", Error::NotAnEvent),
            ("2{\"name\":\"a\"}", Error::NotAnEvent),
            ("2\"Authenticate\"", Error::NotAnEvent),
            (many_args.as_str(), Error::TooManyArgs),
            ("0[]", Error::BadData),
            ("0\"token\"", Error::BadData),
            ("1{}", Error::BadData),
            ("31{}", Error::BadData),
            ("31", Error::BadData),
            ("0/a,{", Error::BadJson),
        ];
        for (text, want) in cases {
            assert_eq!(decode(text), Err(want), "{text:?}");
        }
        // The largest argument count is accepted.
        let max_args = format!("2[\"a\"{}]", ",1".repeat(EVENT_ARGS_MAX));
        assert!(decode(&max_args).is_ok());
    }

    #[test]
    fn actions_decode_into_their_variants() {
        let full = json!({
            "message_type": "SubLevel", "comment": "Is the open house still on?",
            "image_url": "https://i/1.png", "image_thumbnail_url": "https://i/1t.png",
            "document_url": "https://d/1.pdf", "video_url": "https://v/1.mp4",
            "recommendation": "r-1", "notification": "n-1",
            "mentions": ["u1", "u2"], "attachments": ["a1"], "author": "ignored", "extra": 1,
        });
        let (long_name, long_accented) = ("x".repeat(100), "é".repeat(33));
        let cases: Vec<(&str, Value, Request)> = vec![
            ("Authenticate", json!(["t.o.k"]), Request::Authenticate { token: "t.o.k".into() }),
            ("User.Typing", json!(["42"]), Request::Typing { room: RoomId(42) }),
            ("User.Typing", json!([42]), Request::Typing { room: RoomId(42) }),
            ("User.TypingEnded", json!(["7", "extra"]), Request::TypingEnded { room: RoomId(7) }),
            (
                "Message.Send",
                json!(["9", {"message_type": "TopLevel"}]),
                Request::MessageSend {
                    room: RoomId(9),
                    message: Box::new(MessageBody {
                        message_type: Some(MessageType::TopLevel),
                        ..MessageBody::default()
                    }),
                },
            ),
            (
                "Message.Send",
                json!(["9", full]),
                Request::MessageSend {
                    room: RoomId(9),
                    message: Box::new(MessageBody {
                        message_type: Some(MessageType::SubLevel),
                        comment: "Is the open house still on?".into(),
                        image_url: Some("https://i/1.png".into()),
                        image_thumbnail_url: Some("https://i/1t.png".into()),
                        document_url: Some("https://d/1.pdf".into()),
                        video_url: Some("https://v/1.mp4".into()),
                        recommendation: Some("r-1".into()),
                        notification: Some("n-1".into()),
                        mentions: vec!["u1".into(), "u2".into()],
                        attachments: vec!["a1".into()],
                    }),
                },
            ),
            ("Replay", json!([0]), Request::Unknown("Replay".into())),
            ("", json!([]), Request::Unknown(String::new())),
            (long_name.as_str(), json!([]), Request::Unknown("x".repeat(EVENT_NAME_BYTES_MAX))),
            // Shortened at a character boundary: 33 two-byte characters are 66 bytes.
            (long_accented.as_str(), json!([]), Request::Unknown("é".repeat(32))),
        ];
        for (name, args, want) in cases {
            assert_eq!(ok(name, args.clone()), Ok(want), "{name} {args}");
        }
    }

    #[test]
    fn bad_arguments_are_refused_with_rechat_errors() {
        use FailureKind::*;
        let long = |n: usize| "x".repeat(n);
        let msg = |extra: Value| {
            let mut m = json!({"message_type": "TopLevel"});
            if let (Value::Object(m), Value::Object(e)) = (&mut m, extra) {
                m.extend(e);
            }
            json!(["1", m])
        };
        let cases: Vec<(&str, Value, FailureKind, String)> = vec![
            ("Authenticate", json!([]), Validation, "access token must be a string".into()),
            ("Authenticate", json!([5]), Validation, "access token must be a string".into()),
            ("Authenticate", json!([""]), Unauthorized, "Invalid credentials".into()),
            (
                "Authenticate",
                json!([long(TOKEN_BYTES_MAX + 1)]),
                Validation,
                "access token is too long".into(),
            ),
            ("User.Typing", json!([]), Validation, "room id must be a string".into()),
            ("User.Typing", json!([null]), Validation, "room id must be a string".into()),
            ("User.Typing", json!([{}]), Validation, "room id must be a string".into()),
            ("User.Typing", json!([-1]), Validation, "bad room id".into()),
            ("User.Typing", json!([1.5]), Validation, "bad room id".into()),
            ("User.Typing", json!(["4f0e8a46-2a7b"]), NotFound, "Room not found".into()),
            ("User.Typing", json!(["+1"]), NotFound, "Room not found".into()),
            ("User.Typing", json!([""]), NotFound, "Room not found".into()),
            ("User.Typing", json!(["99999999999999999999999"]), NotFound, "Room not found".into()),
            (
                "User.TypingEnded",
                json!([long(ID_BYTES_MAX + 1)]),
                Validation,
                "room id is too long".into(),
            ),
            ("Message.Send", json!(["1"]), Validation, "message must be an object".into()),
            ("Message.Send", json!(["1", "hi"]), Validation, "message must be an object".into()),
            ("Message.Send", json!(["1", {}]), Validation, "message_type is required".into()),
            (
                "Message.Send",
                json!(["1", {"message_type": "Top"}]),
                Validation,
                "message_type must be TopLevel or SubLevel".into(),
            ),
            (
                "Message.Send",
                json!(["x", {"message_type": "TopLevel"}]),
                NotFound,
                "Room not found".into(),
            ),
            (
                "Message.Send",
                msg(json!({"comment": 5})),
                Validation,
                "comment must be a string".into(),
            ),
            (
                "Message.Send",
                msg(json!({"comment": long(COMMENT_BYTES_MAX + 1)})),
                Validation,
                "comment is too long".into(),
            ),
            (
                "Message.Send",
                msg(json!({"image_url": long(URL_BYTES_MAX + 1)})),
                Validation,
                "image_url is too long".into(),
            ),
            (
                "Message.Send",
                msg(json!({"video_url": []})),
                Validation,
                "video_url must be a string".into(),
            ),
            (
                "Message.Send",
                msg(json!({"recommendation": long(ID_BYTES_MAX + 1)})),
                Validation,
                "recommendation is too long".into(),
            ),
            (
                "Message.Send",
                msg(json!({"mentions": "u1"})),
                Validation,
                "mentions must be an array".into(),
            ),
            (
                "Message.Send",
                msg(json!({"mentions": [1]})),
                Validation,
                "mentions must be an array of ids".into(),
            ),
            (
                "Message.Send",
                msg(json!({"attachments": vec!["a"; ID_LIST_MAX + 1]})),
                Validation,
                "attachments has too many entries".into(),
            ),
            (
                "Message.Send",
                msg(json!({"attachments": [long(ID_BYTES_MAX + 1)]})),
                Validation,
                "attachments must be an array of ids".into(),
            ),
        ];
        for (name, args, kind, message) in cases {
            assert_eq!(ok(name, args.clone()), fail(kind, &message), "{name} {args}");
        }
    }

    #[test]
    fn every_prefix_of_valid_packets_decodes_or_errs_without_panic() {
        let texts = [
            r#"2/chat?a=b,17["Message.Send","9",{"message_type":"TopLevel","comment":"é😀"}]"#,
            r#"0{"token":"abc"}"#,
            r#"312[null,{"a":[1,2,{"b":null}]}]"#,
        ];
        for text in texts {
            for (i, _) in text.char_indices() {
                let _ = decode(&text[..i]);
                let _ = decode(&text[i..]);
            }
        }
    }

    fn packet(text: &str) -> Value {
        let data = text.strip_prefix("42").or_else(|| text.strip_prefix("43")).expect(text);
        let start = data.find('[').expect(text);
        serde_json::from_str(&data[start..]).expect(text)
    }

    #[test]
    fn packets_render() {
        let failure = Failure::new(FailureKind::Unauthorized, "Invalid credentials");
        let cases: Vec<(String, &str)> = vec![
            (connect(false, "s1"), "40"),
            (connect(true, "s\"1"), r#"40{"sid":"s\"1"}"#),
            (connect_error(false, "/", "Invalid namespace"), r#"44"Invalid namespace""#),
            (
                connect_error(false, "/admin", "Invalid namespace"),
                r#"44/admin,"Invalid namespace""#,
            ),
            (
                connect_error(true, "/admin", "Invalid namespace"),
                r#"44/admin,{"message":"Invalid namespace"}"#,
            ),
            (connect_error(true, "/", "no"), r#"44{"message":"no"}"#),
            (disconnect("/"), "41"),
            (disconnect("/a,b"), "41/ab,"),
            (event("x", &[]), r#"42["x"]"#),
            (event("x", &[json!(1), json!("two")]), r#"42["x",1,"two"]"#),
            (ack(7, &[]), "437[]"),
            (ack_ok(0, json!({"a": 1})), r#"430[null,{"a":1}]"#),
            (
                ack_error(12, &failure),
                r#"4312[{"http":401,"message":"Invalid credentials","code":"UnauthorizedAccess"}]"#,
            ),
            (user_online(&UserId::new("u\"1")), r#"42["User.Online","u\"1"]"#),
            (user_offline(&UserId::new("7")), r#"42["User.Offline","7"]"#),
            (
                users_online(&[UserId::new("a"), UserId::new("b")]),
                r#"42["Users.Online",["a","b"]]"#,
            ),
            (users_online(&[]), r#"42["Users.Online",[]]"#),
            (
                typing(&UserId::new("9"), RoomId(4), false),
                r#"42["User.Typing",{"user_id":"9","room_id":"4"}]"#,
            ),
            (
                typing(&UserId::new("9"), RoomId(4), true),
                r#"42["User.TypingEnded",{"user_id":"9","room_id":"4"}]"#,
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn failures_map_from_refusals() {
        let cases: Vec<(Refusal, u16, &str)> = vec![
            (Refusal::NotFound("room not found"), 404, "ResourceNotFound"),
            (Refusal::Forbidden("not a member"), 403, "Forbidden"),
            (Refusal::Invalid("too long".into()), 400, "Validation"),
            (Refusal::Conflict("exists".into()), 409, "Conflict"),
            (Refusal::Full("too many"), 429, "TooManyRequests"),
            (Refusal::Unavailable("busy"), 503, "ServiceUnavailable"),
        ];
        for (refusal, http, code) in cases {
            let json = Failure::from(&refusal).to_json();
            assert_eq!(json, json!({"http": http, "message": refusal.message(), "code": code}));
        }
    }

    fn room() -> RoomView {
        RoomView {
            id: RoomId(12),
            kind: RoomKind::Group,
            name: "Buyers – Smith".into(),
            description: String::new(),
            attributes: json!({
                "status": "Searching", "client_type": "Buyer", "room_code": 7731,
                "lead_agent": "a",
                "users": {
                    "a": {"username": "agent", "first_name": "Jane", "last_name": "Doe",
                          "email": "jane@example.com", "profile_image_url": "https://p/a.png"},
                    "b": {"username": "bob", "first_name": 5},
                },
            })
            .to_string(),
            members: vec![(UserId::new("a"), Role::Owner), (UserId::new("b"), Role::Member)],
            created_ms: 1_465_200_000_123,
            updated_ms: 1_465_200_500_456,
            last_seq: Seq(1),
            last_message: Some(LastMessage {
                id: MessageId(101),
                created_ms: 1_465_200_600_789,
                author: UserId::new("b"),
            }),
            summary: None,
        }
    }

    fn message() -> Message {
        let body = MessageBody {
            message_type: Some(MessageType::TopLevel),
            comment: "Is the open house still on?".into(),
            image_url: Some("https://i/1.png".into()),
            attachments: vec!["f1".into()],
            ..MessageBody::default()
        };
        Message {
            id: MessageId(101),
            seq: Seq(1),
            room: RoomId(12),
            author: UserId::new("b"),
            text: body.comment.clone(),
            parent_id: MessageId(0),
            client_message_id: None,
            kind: "Regular".into(),
            attachments: body.attachments_json(),
            attributes: body.attributes(),
            comment_count: 0,
            created_ms: 1_465_200_600_789,
            edited_ms: 1_465_200_600_789,
            modified_ms: 1_465_200_600_789,
            deleted_ms: None,
        }
    }

    #[test]
    fn users_take_display_fields_from_room_attributes() {
        let attrs = parse_attributes(&room().attributes);
        let jane = user_json(attrs.as_ref(), &UserId::new("a"));
        assert_eq!(
            jane,
            json!({
                "type": "user", "id": "a", "username": "agent", "first_name": "Jane",
                "last_name": "Doe", "email": "jane@example.com", "phone_number": null,
                "profile_image_url": "https://p/a.png", "profile_image_thumbnail_url": null,
                "cover_image_url": null, "cover_image_thumbnail_url": null, "user_type": "Client",
            })
        );
        // A non-string first_name falls back to the username; an unknown user to its id.
        let bob = user_json(attrs.as_ref(), &UserId::new("b"));
        assert_eq!(
            (bob["first_name"].clone(), bob["last_name"].clone()),
            (json!("bob"), json!(""))
        );
        let nobody = user_json(None, &UserId::new("z"));
        assert_eq!((nobody["id"].clone(), nobody["first_name"].clone()), (json!("z"), json!("z")));
        assert_eq!(parse_attributes("not json"), None);
        assert_eq!(parse_attributes("[1]"), None);
    }

    #[test]
    fn message_sent_carries_the_room_and_the_message() {
        let v = packet(&message_sent(&room(), &message()));
        assert_eq!(v[0], json!("Message.Sent"));
        let (r, m) = (&v[1], &v[2]);
        assert_eq!(r["type"], json!("room"));
        assert_eq!(r["id"], json!("12"));
        assert_eq!(r["title"], json!("Buyers – Smith"));
        assert_eq!(r["owner"]["first_name"], json!("Jane"));
        assert_eq!(r["lead_agent"]["id"], json!("a"));
        assert_eq!(r["created_at"], json!(1_465_200_000.123));
        assert_eq!(r["updated_at"], json!(1_465_200_500.456));
        assert_eq!(
            (&r["status"], &r["client_type"], &r["room_code"], &r["room_type"]),
            (&json!("Searching"), &json!("Buyer"), &json!(7731), &json!("Group"))
        );
        assert_eq!(r["users"].as_array().map(Vec::len), Some(2));
        assert_eq!(r["latest_message"], *m);
        assert_eq!(
            m,
            &json!({
                "type": "message", "id": "101", "comment": "Is the open house still on?",
                "author": user_json(parse_attributes(&room().attributes).as_ref(), &UserId::new("b")),
                "created_at": 1_465_200_600.789, "updated_at": 1_465_200_600.789,
                "deleted_at": null, "message_type": "TopLevel", "reference": null,
                "attachments": ["f1"], "room": "12", "image_url": "https://i/1.png",
                "image_thumbnail_url": null, "document_url": null, "video_url": null,
                "recommendation": null, "notification": null,
            })
        );
        // An older message leaves latest_message null; a bare room renders defaults.
        let mut old = message();
        old.id = MessageId(5);
        old.attributes = "garbage".into();
        old.attachments = "[]".into();
        old.deleted_ms = Some(2_000);
        let mut bare = room();
        bare.attributes = "{}".into();
        bare.kind = RoomKind::Direct;
        bare.members = vec![(UserId::new("b"), Role::Member)];
        let v = packet(&message_sent(&bare, &old));
        assert_eq!(v[1]["latest_message"], Value::Null);
        assert_eq!(
            (&v[1]["status"], &v[1]["client_type"], &v[1]["room_type"], &v[1]["owner"]),
            (&json!("New"), &json!("Unknown"), &json!("Direct"), &Value::Null)
        );
        assert_eq!(
            (&v[2]["message_type"], &v[2]["attachments"], &v[2]["deleted_at"]),
            (&json!("TopLevel"), &Value::Null, &json!(2.0))
        );
    }

    #[test]
    fn a_sent_message_notifies_every_member_with_the_authors_first_name() {
        let note = message_notification(&room(), &message());
        let v = packet(&note);
        assert_eq!(v[0], json!("Notification"));
        let bob = user_json(parse_attributes(&room().attributes).as_ref(), &UserId::new("b"));
        assert_eq!(
            v[1],
            json!({
                "type": "notification", "id": "101", "notification_id": "101",
                "message": "#Buyers – Smith: @bob Is the open house still on?",
                "created_at": 1_465_200_600.789, "updated_at": 1_465_200_600.789,
                "deleted_at": null, "room": "12", "action": "Sent", "object_class": "Message",
                "subject_class": "User", "auxiliary_object_class": "Room",
                "notification_type": "UserSentMessage", "subjects": [bob], "objects": null,
                "recommendation": null, "specific": null,
            })
        );
        // Without display fields the author's id stands for its first name.
        let mut bare = room();
        bare.attributes = "{}".into();
        let v = packet(&message_notification(&bare, &message()));
        assert_eq!(v[1]["message"], json!("#Buyers – Smith: @b Is the open house still on?"));
    }

    /// The renderer before `message_sent_frames` (a `String` per packet from a `RoomView`, ids
    /// and the notification text as `String`s, `users` as a `Vec`), kept verbatim as the
    /// reference of the bytes on the wire.
    mod old {
        use super::super::{
            emit, room_type, seconds_f64, user_wire, UserWire, ID_BYTES_MAX, ROOM_USERS_MAX,
        };
        use super::super::{parse_attributes, Message, Role, RoomView, Value};
        use crate::dialect::rechat::text_frame;

        #[derive(serde::Serialize)]
        struct RoomWire<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            id: String,
            title: &'a str,
            owner: Option<UserWire<'a>>,
            created_at: f64,
            updated_at: f64,
            deleted_at: (),
            status: &'a str,
            lead_agent: Option<UserWire<'a>>,
            room_code: Option<u64>,
            room_type: &'static str,
            client_type: &'a str,
            latest_message: Option<&'a MessageWire<'a>>,
            users: Vec<UserWire<'a>>,
        }

        /// The room object of `room` (`attrs`: its attributes, parsed): `users` lists at most
        /// [`ROOM_USERS_MAX`] members; `status`, `client_type`, `room_code` and `lead_agent` come from
        /// the attributes when set.
        fn room_wire<'a>(room: &'a RoomView, attrs: Option<&'a Value>) -> RoomWire<'a> {
            let attr = |name: &str| attrs.and_then(|a| a.get(name));
            let owner = room.members.iter().find(|(_, role)| *role == Role::Owner);
            let lead_agent =
                attr("lead_agent").and_then(Value::as_str).filter(|id| id.len() <= ID_BYTES_MAX);
            RoomWire {
                kind: "room",
                id: room.id.to_string(),
                title: &room.name,
                owner: owner.map(|(u, _)| user_wire(attrs, u.as_str())),
                created_at: seconds_f64(room.created_ms),
                updated_at: seconds_f64(room.updated_ms),
                deleted_at: (),
                status: attr("status").and_then(Value::as_str).unwrap_or("New"),
                lead_agent: lead_agent.map(|id| user_wire(attrs, id)),
                room_code: attr("room_code").and_then(Value::as_u64),
                room_type: room_type(room.kind),
                client_type: attr("client_type").and_then(Value::as_str).unwrap_or("Unknown"),
                latest_message: None,
                users: room
                    .members
                    .iter()
                    .take(ROOM_USERS_MAX)
                    .map(|(u, _)| user_wire(attrs, u.as_str()))
                    .collect(),
            }
        }

        #[derive(serde::Serialize)]
        struct MessageWire<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            id: String,
            comment: &'a str,
            author: UserWire<'a>,
            created_at: f64,
            updated_at: f64,
            deleted_at: Option<f64>,
            message_type: &'a str,
            reference: Option<&'a str>,
            attachments: Option<Value>,
            room: String,
            image_url: Option<&'a str>,
            image_thumbnail_url: Option<&'a str>,
            document_url: Option<&'a str>,
            video_url: Option<&'a str>,
            recommendation: Option<&'a str>,
            notification: Option<&'a str>,
        }

        /// The message object of `m` (`attrs`: its own attributes, parsed; `room_attributes`: the
        /// room's, for the author's display fields). The URL and id fields and `message_type` come
        /// back from the message's attributes ([`MessageBody::attributes`]).
        fn message_wire<'a>(
            m: &'a Message,
            attrs: Option<&'a Value>,
            room_attributes: Option<&'a Value>,
        ) -> MessageWire<'a> {
            let attr = |name: &str| attrs.and_then(|a| a.get(name)).and_then(Value::as_str);
            let attachments = match serde_json::from_str::<Value>(&m.attachments) {
                Ok(Value::Array(a)) if !a.is_empty() => Some(Value::Array(a)),
                _ => None,
            };
            MessageWire {
                kind: "message",
                id: m.id.to_string(),
                comment: &m.text,
                author: user_wire(room_attributes, m.author.as_str()),
                created_at: seconds_f64(m.created_ms),
                updated_at: seconds_f64(m.modified_ms),
                deleted_at: m.deleted_ms.map(seconds_f64),
                message_type: attr("message_type").unwrap_or("TopLevel"),
                reference: m.client_message_id.as_deref(),
                attachments,
                room: m.room.to_string(),
                image_url: attr("image_url"),
                image_thumbnail_url: attr("image_thumbnail_url"),
                document_url: attr("document_url"),
                video_url: attr("video_url"),
                recommendation: attr("recommendation"),
                notification: attr("notification"),
            }
        }

        fn message_sent_with(room: &RoomView, room_attrs: Option<&Value>, m: &Message) -> String {
            let message_attrs = parse_attributes(&m.attributes);
            let message = message_wire(m, message_attrs.as_ref(), room_attrs);
            let mut room_v = room_wire(room, room_attrs);
            if room.last_message.as_ref().is_some_and(|last| last.id == m.id) {
                room_v.latest_message = Some(&message);
            }
            emit("42", &("Message.Sent", &room_v, &message))
        }

        #[derive(serde::Serialize)]
        struct MessageNotificationWire<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            id: &'a str,
            notification_id: &'a str,
            message: String,
            created_at: f64,
            updated_at: f64,
            deleted_at: (),
            room: String,
            action: &'static str,
            object_class: &'static str,
            subject_class: &'static str,
            auxiliary_object_class: &'static str,
            notification_type: &'static str,
            subjects: [UserWire<'a>; 1],
            objects: (),
            recommendation: (),
            specific: (),
        }

        /// [`message_notification`] with the room's attributes already parsed.
        fn message_notification_with(
            room: &RoomView,
            room_attrs: Option<&Value>,
            m: &Message,
        ) -> String {
            let author = user_wire(room_attrs, m.author.as_str());
            let id = m.id.to_string();
            let wire = MessageNotificationWire {
                kind: "notification",
                id: &id,
                notification_id: &id,
                message: format!("#{}: @{} {}", room.name, author.first_name, m.text),
                created_at: seconds_f64(m.created_ms),
                updated_at: seconds_f64(m.created_ms),
                deleted_at: (),
                room: room.id.to_string(),
                action: "Sent",
                object_class: "Message",
                subject_class: "User",
                auxiliary_object_class: "Room",
                notification_type: "UserSentMessage",
                subjects: [author],
                objects: (),
                recommendation: (),
                specific: (),
            };
            emit("42", &("Notification", wire))
        }

        /// Both frames of a new message as the owner sent them: `room.view()`, two `String`s,
        /// two frames copied into one buffer.
        pub fn frames(room: &RoomView, m: &Message) -> Vec<u8> {
            let attrs = parse_attributes(&room.attributes);
            let sent = text_frame(&message_sent_with(room, attrs.as_ref(), m));
            let note = text_frame(&message_notification_with(room, attrs.as_ref(), m));
            [sent, note].concat()
        }
    }

    /// A room as its owner holds it, with `history` as its window (oldest first).
    fn live_room(
        kind: RoomKind,
        name: &str,
        attributes: &str,
        members: &[(&str, Role)],
        history: Vec<Message>,
    ) -> Room {
        Room {
            id: RoomId(12),
            kind,
            name: name.into(),
            description: "d".into(),
            attributes: attributes.into(),
            members: members
                .iter()
                .map(|(u, role)| {
                    (UserId::new(u), crate::model::Member { role: *role, shard_mask: 1 })
                })
                .collect(),
            created_ms: 1_465_200_000_123,
            updated_ms: 1_465_200_500_456,
            last_seq: Seq(history.len() as u64),
            history: history.into_iter().map(std::sync::Arc::new).collect(),
            history_max: 100,
            history_bytes_max: usize::MAX,
            history_bytes: 0,
            members_max: usize::MAX,
        }
    }

    #[test]
    fn message_sent_frames_match_the_old_renderer_byte_for_byte() {
        let rich = room().attributes;
        let tricky = json!({
            "status": "Closed \"now\"", "room_code": 9, "lead_agent": "z\u{e9}",
            "client_type": 7,
            "users": {
                "b": {"first_name": "B\u{f6}b \"the\" <b>\\", "username": "bob\n",
                      "email": "b@x", "user_type": "Agent"},
                "z\u{e9}": {"username": "zed \u{1f600}", "last_name": 5},
            },
        })
        .to_string();
        let comment = |text: &str, id: u64| {
            let mut m = message();
            m.id = MessageId(id);
            m.text = text.into();
            m
        };
        let unicode = "h\u{e9}llo \"q\" \\ \u{1}\t\n \u{2028} \u{1f600} </script> \u{7f}";
        let mut attributed = comment("a", 103);
        attributed.attributes = json!({
            "message_type": "SubLevel", "image_url": "https://i/\"1\".png",
            "document_url": "d", "video_url": "v", "recommendation": "r", "notification": 4,
        })
        .to_string();
        attributed.attachments = json!(["f1", {"k": "v\u{e9}"}, 3]).to_string();
        attributed.client_message_id = Some("c-\u{e9}".into());
        let mut plain = comment("t=1;x", 104);
        plain.attributes = String::new();
        plain.attachments = String::new();
        let mut deleted = comment("gone", 105);
        deleted.deleted_ms = Some(1_465_200_700_000);
        let members = [("b", Role::Member), ("a", Role::Owner)];
        let many: Vec<(String, Role)> = (0..ROOM_USERS_MAX + 7)
            .rev()
            .map(|i| (format!("u{i:03}"), if i % 5 == 3 { Role::Owner } else { Role::Member }))
            .collect();
        let many: Vec<(&str, Role)> = many.iter().map(|(u, r)| (u.as_str(), *r)).collect();
        let cases: Vec<(Room, Message)> = vec![
            // The newest message, a room with display fields.
            (
                live_room(
                    RoomKind::Group,
                    "Buyers \u{2013} Smith",
                    &rich,
                    &members,
                    vec![message()],
                ),
                message(),
            ),
            // Escaping and unicode everywhere; the author's fields from the attributes.
            (
                live_room(
                    RoomKind::Direct,
                    unicode,
                    &tricky,
                    &members,
                    vec![comment(unicode, 102)],
                ),
                comment(unicode, 102),
            ),
            // Message attributes and attachments; a bare room.
            (live_room(RoomKind::Public, "", "{}", &members, vec![attributed.clone()]), attributed),
            // No attributes at all; garbage room attributes; no owner.
            (
                live_room(
                    RoomKind::Announce,
                    "r",
                    "garbage",
                    &[("b", Role::Member)],
                    vec![plain.clone()],
                ),
                plain,
            ),
            // Not the newest message: latest_message stays null.
            (
                live_room(
                    RoomKind::Group,
                    "r",
                    &rich,
                    &members,
                    vec![message(), comment("newer", 110)],
                ),
                message(),
            ),
            // The newest live message is an older one (the newest is deleted).
            (
                live_room(RoomKind::Group, "r", &rich, &members, vec![message(), deleted.clone()]),
                message(),
            ),
            // More members than a room object lists, several owners, inserted unsorted.
            (
                live_room(RoomKind::Group, "big", &rich, &many, vec![comment("hi", 120)]),
                comment("hi", 120),
            ),
            // An empty window.
            (live_room(RoomKind::Group, "empty", &rich, &members, vec![]), comment("hi", 121)),
        ];
        for (i, (room, m)) in cases.iter().enumerate() {
            let want = old::frames(&room.view(), m);
            let got = message_sent_frames(room, m);
            assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&want), "case {i}");
            assert_eq!(got.as_ref(), want.as_slice(), "case {i}");
            // The tests' String renderers give the same packets.
            let (sent, note) =
                (message_sent(&room.view(), m), message_notification(&room.view(), m));
            let want_pair = [text_frame(&sent), text_frame(&note)].concat();
            assert_eq!(want_pair, want, "case {i}");
        }
    }

    #[test]
    fn message_ack_frame_matches_the_value_ack_byte_for_byte() {
        let mut tricky = message();
        tricky.text = "h\u{e9}llo \"q\" \\ \u{1}\t\n \u{2028} \u{1f600}".into();
        tricky.author = UserId::new("\u{e9}l\u{e8}ve");
        tricky.client_message_id = Some("c\"1".into());
        tricky.attributes = json!({
            "message_type": "SubLevel", "image_thumbnail_url": "t", "document_url": "d",
            "video_url": "v", "recommendation": "r\u{e9}", "notification": "n", "other": 1,
        })
        .to_string();
        tricky.attachments = json!(["f1", {"z": 1, "a": "\u{e9}"}, null]).to_string();
        tricky.deleted_ms = Some(1_465_200_700_001);
        let mut bare = message();
        bare.attributes = "garbage".into();
        bare.attachments = String::new();
        for (id, m) in [(0, message()), (7, tricky), (999_999_999_999_999, bare)] {
            let want = text_frame(&ack_ok(id, message_json(&m, None)));
            assert_eq!(
                String::from_utf8_lossy(&message_ack_frame(id, &m)),
                String::from_utf8_lossy(&want),
                "ack {id}"
            );
        }
    }

    #[test]
    fn room_users_are_bounded() {
        let mut big = room();
        big.members =
            (0..ROOM_USERS_MAX + 10).map(|i| (UserId::new(&i.to_string()), Role::Member)).collect();
        assert_eq!(room_json(&big)["users"].as_array().map(Vec::len), Some(ROOM_USERS_MAX));
    }

    #[test]
    fn room_user_joined_and_notification_render() {
        let v = packet(&room_user_joined(&room(), &UserId::new("a")));
        assert_eq!(
            (&v[0], &v[1]["type"], &v[1]["last_name"]),
            (&json!("Room.UserJoined"), &json!("user"), &json!("Doe"))
        );
        let n = Notification {
            id: 77,
            user: UserId::new("b"),
            name: "UserSentMessage".into(),
            category: "channel".into(),
            object_type: "room".into(),
            object_id: 12,
            source_user: Some(UserId::new("a")),
            details:
                json!({"message": "#Buyers: @Jane hi", "action": "Sent", "object_class": "Message"})
                    .to_string(),
            created_ms: 1_465_200_700_100,
            read: false,
        };
        let v = packet(&notification(&n));
        assert_eq!(v[0], json!("Notification"));
        let o = &v[1];
        assert_eq!(
            (&o["type"], &o["id"], &o["notification_id"], &o["message"], &o["room"]),
            (
                &json!("notification"),
                &json!("77"),
                &json!("77"),
                &json!("#Buyers: @Jane hi"),
                &json!("12")
            )
        );
        assert_eq!(
            (&o["action"], &o["object_class"], &o["subject_class"], &o["notification_type"]),
            (&json!("Sent"), &json!("Message"), &json!("User"), &json!("UserSentMessage"))
        );
        assert_eq!(
            (&o["created_at"], &o["subjects"][0]["id"]),
            (&json!(1_465_200_700.1), &json!("a"))
        );
        // Without details or source: core fields, nulls.
        let bare = Notification {
            details: "x".into(),
            source_user: None,
            object_type: "message".into(),
            ..n
        };
        let o = &packet(&notification(&bare))[1];
        assert_eq!(
            (&o["message"], &o["room"], &o["action"], &o["subject_class"], &o["subjects"]),
            (&json!("UserSentMessage"), &Value::Null, &Value::Null, &Value::Null, &Value::Null)
        );
    }
}
