//! JSON of the REST API: request bodies (parsed with simd-json) and the views it returns.

use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::model::{Message, MessageId, Role, RoomId, RoomView, Seq, UserId};

use super::ApiError;

/// Parses a JSON body, which must be an object, into `T`; an empty body parses as `{}`.
/// serde_json, not simd-json: REST bodies are small, and for them serde_json (no copy)
/// measured 2.6x faster than simd-json with the copy it needs (`benches/json_decode.rs`,
/// perf/RESULTS.md optimisation log).
///
/// Anything but an object is refused before serde sees it: a derived `Deserialize` also takes
/// a struct from a JSON array of its fields in order (`[5]` would be `{"seq": 5}`).
pub fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { body };
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// The body of `POST /api/v1/rooms/{id}/messages`, as decoded; `rest::messages::post`
/// validates it.
#[derive(Deserialize)]
pub struct PostBody {
    /// The message text (`content` is accepted too); required.
    #[serde(alias = "content")]
    pub text: Option<String>,
    /// The message this one answers; 0 when absent.
    pub parent_id: Option<u64>,
    /// The client's own id for the message.
    pub client_message_id: Option<String>,
    /// The message kind; `Regular` when absent.
    pub kind: Option<String>,
    /// A JSON array, stored as text.
    pub attachments: Option<Value>,
    /// A JSON object, stored as text.
    pub attributes: Option<Value>,
    /// The author a service posts for (a user id, string or integer).
    pub author: Option<Value>,
}

/// Decodes the body of `POST /api/v1/rooms/{id}/messages` (through [`parse_body`]): what the
/// server runs for every posted message, and what `benches/json_decode.rs` measures.
pub fn post_body(body: &[u8]) -> Result<PostBody, ApiError> {
    parse_body(body)
}

/// A user id given as a JSON string or a non-negative integer (kept as its decimal text),
/// checked against the user id rule (`UserId::parse`); anything else → 400.
pub fn user_id(value: &Value) -> Result<UserId, ApiError> {
    match value {
        Value::String(s) => user_id_text(s),
        Value::Number(n) if n.is_u64() => user_id_text(&n.to_string()),
        _ => Err(ApiError::bad_request("a user id is a string or a non-negative integer")),
    }
}

/// A user id given as text (a decoded path segment, a query parameter), checked against the
/// user id rule (`UserId::parse`); → 400 when it breaks it.
pub fn user_id_text(text: &str) -> Result<UserId, ApiError> {
    UserId::parse(text).map_err(|e| {
        let shown: String = text.chars().take(64).collect();
        ApiError::bad_request(format!("invalid user id {shown:?}: {e}"))
    })
}

/// A JSON object given for attributes, as text; `{}` when absent.
pub fn object_text(value: Option<&Value>, what: &str) -> Result<String, ApiError> {
    match value {
        None | Some(Value::Null) => Ok("{}".into()),
        Some(v @ Value::Object(_)) => Ok(v.to_string()),
        Some(_) => Err(ApiError::bad_request(format!("{what} must be a JSON object"))),
    }
}

/// A JSON array given for attachments, as text; `[]` when absent.
pub fn array_text(value: Option<&Value>, what: &str) -> Result<String, ApiError> {
    match value {
        None | Some(Value::Null) => Ok("[]".into()),
        Some(v @ Value::Array(_)) => Ok(v.to_string()),
        Some(_) => Err(ApiError::bad_request(format!("{what} must be a JSON array"))),
    }
}

/// Stored JSON text (validated on the way in) embedded as is; `fallback` if it is not JSON.
struct Raw<'a>(&'a str, &'static str);

impl Serialize for Raw<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let raw = serde_json::from_str::<&RawValue>(self.0)
            .or_else(|_| serde_json::from_str::<&RawValue>(self.1))
            .map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

/// A member as the REST API shows it.
#[derive(Serialize)]
struct MemberView<'a> {
    user: &'a str,
    role: &'static str,
}

/// A room as the REST API shows it: serialized straight from the view, no `Value` tree.
#[derive(Serialize)]
pub struct RoomJson<'a> {
    id: RoomId,
    kind: &'static str,
    name: &'a str,
    description: &'a str,
    attributes: Raw<'a>,
    #[serde(serialize_with = "members")]
    members: &'a [(UserId, Role)],
    created_ms: u64,
    updated_ms: u64,
    last_seq: Seq,
    last_message_id: Option<MessageId>,
}

fn members<S: Serializer>(list: &&[(UserId, Role)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(list.iter().map(|(u, r)| MemberView { user: u.as_str(), role: r.as_str() }))
}

/// A room as the REST API shows it.
pub fn room(view: &RoomView) -> RoomJson<'_> {
    RoomJson {
        id: view.id,
        kind: view.kind.as_str(),
        name: &view.name,
        description: &view.description,
        attributes: Raw(&view.attributes, "{}"),
        members: &view.members,
        created_ms: view.created_ms,
        updated_ms: view.updated_ms,
        last_seq: view.last_seq,
        last_message_id: view.last_message.as_ref().map(|m| m.id),
    }
}

/// A message as the REST API shows it: serialized straight from the message.
#[derive(Serialize)]
pub struct MessageJson<'a> {
    id: MessageId,
    seq: Seq,
    room_id: RoomId,
    author: &'a str,
    text: &'a str,
    parent_id: MessageId,
    client_message_id: Option<&'a str>,
    kind: &'a str,
    attachments: Raw<'a>,
    attributes: Raw<'a>,
    comment_count: u32,
    created_ms: u64,
    edited_ms: u64,
    deleted_ms: Option<u64>,
}

/// A message as the REST API shows it.
pub fn message(m: &Message) -> MessageJson<'_> {
    MessageJson {
        id: m.id,
        seq: m.seq,
        room_id: m.room,
        author: m.author.as_str(),
        text: &m.text,
        parent_id: m.parent_id,
        client_message_id: m.client_message_id.as_deref(),
        kind: &m.kind,
        attachments: Raw(&m.attachments, "[]"),
        attributes: Raw(&m.attributes, "{}"),
        comment_count: m.comment_count,
        created_ms: m.created_ms,
        edited_ms: m.edited_ms,
        deleted_ms: m.deleted_ms,
    }
}

/// `{"<key>": value}` as a response body, serialized straight into one buffer.
pub fn wrapped<T: Serialize>(key: &'static str, value: T) -> Vec<u8> {
    use serde::ser::SerializeMap;
    let mut out = Vec::with_capacity(512);
    let mut ser = serde_json::Serializer::new(&mut out);
    let written = ser.serialize_map(Some(1)).and_then(|mut map| {
        map.serialize_entry(key, &value)?;
        map.end()
    });
    if written.is_err() {
        out.clear();
    }
    out
}

/// Serializes a response body.
pub fn body<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}
