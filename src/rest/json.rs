//! JSON of the REST API: request bodies (parsed with simd-json) and the views it returns.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::model::{Message, RoomView, UserId};

use super::ApiError;

/// Parses a JSON body into `T`; an empty body parses as `{}`. serde_json, not simd-json: REST
/// bodies are small, and for them serde_json (no copy) measured 2.6x faster than simd-json
/// with the copy it needs (`benches/json_decode.rs`, perf/RESULTS.md optimisation log).
pub fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { body };
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// A user id given as a JSON string or integer.
pub fn user_id(value: &Value) -> Result<UserId, ApiError> {
    let text = match value {
        Value::String(s) if !s.is_empty() && s.len() <= 256 => s.clone(),
        Value::Number(n) if n.is_u64() => n.to_string(),
        _ => {
            return Err(ApiError::bad_request(
                "a user id is a non-empty string (at most 256 bytes) or an integer",
            ))
        }
    };
    Ok(UserId::new(&text))
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

fn raw(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// A room as the REST API shows it.
pub fn room(view: &RoomView) -> Value {
    let members: Vec<Value> = view
        .members
        .iter()
        .map(|(u, r)| json!({ "user": u.as_str(), "role": r.as_str() }))
        .collect();
    json!({
        "id": view.id,
        "kind": view.kind.as_str(),
        "name": view.name,
        "description": view.description,
        "attributes": raw(&view.attributes),
        "members": members,
        "created_ms": view.created_ms,
        "updated_ms": view.updated_ms,
        "last_seq": view.last_seq,
        "last_message_id": view.last_message.as_ref().map(|m| m.id),
    })
}

/// A message as the REST API shows it.
pub fn message(m: &Message) -> Value {
    json!({
        "id": m.id,
        "seq": m.seq,
        "room_id": m.room,
        "author": m.author.as_str(),
        "text": m.text,
        "parent_id": m.parent_id,
        "client_message_id": m.client_message_id,
        "kind": m.kind,
        "attachments": raw(&m.attachments),
        "attributes": raw(&m.attributes),
        "comment_count": m.comment_count,
        "created_ms": m.created_ms,
        "edited_ms": m.edited_ms,
        "deleted_ms": m.deleted_ms,
    })
}

/// Serializes a response body.
pub fn body(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}
