//! BIG client requests and events, decoded into closed enums: one variant per `payloadType`,
//! every field checked for type and bounded in length where it is decoded. The session
//! executes these; nothing further on looks at the JSON.

use crate::limits::{BIG_ID_BYTES_MAX, BIG_MESSAGES_COUNT_DEFAULT, BIG_MESSAGES_COUNT_MAX};
use serde_json::Value;

use crate::model::Seq;

/// A request, validated.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// `chats`: the user's chat list.
    Chats,
    /// `chat`: one chat.
    Chat {
        /// The chat.
        chat_id: String,
    },
    /// `new`: post a message (a dialog is created when `chat_id` is a user with none yet).
    New {
        /// The chat.
        chat_id: String,
        /// The text (`""` when absent).
        message: String,
        /// The client's id for the message.
        client_message_id: Option<String>,
        /// Attachments, a JSON array's text (`[]` when absent).
        attachments: String,
    },
    /// `edit`: replace a message's text.
    Edit {
        /// The chat.
        chat_id: String,
        /// The message's per-chat id (seq).
        original: Seq,
        /// The new text (`""` when absent).
        message: String,
    },
    /// `delete`: delete a message.
    Delete {
        /// The chat.
        chat_id: String,
        /// The message's per-chat id (seq).
        original: Seq,
    },
    /// `messages`: a history page from `start` (oldest) or back from `end`.
    Messages {
        /// The chat.
        chat_id: String,
        /// Page forward from this seq.
        start: Option<Seq>,
        /// Page back from this seq.
        end: Option<Seq>,
        /// At most this many, `1..=BIG_MESSAGES_COUNT_MAX`.
        count: u64,
    },
    /// `dlvrd` / `read`: mark the chat delivered or read up to a message (the newest if none).
    Mark {
        /// The chat.
        chat_id: String,
        /// Up to this seq.
        message: Option<Seq>,
        /// Read rather than delivered.
        read: bool,
    },
}

/// A client event, validated.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// `typing` in a chat (`stop`: stopped typing).
    Typing {
        /// The chat.
        chat_id: String,
        /// Stopped typing.
        stop: bool,
    },
    /// `offline`: the client goes away; the server closes the socket.
    Offline,
    /// Any other event, or one with bad fields: ignored (events get no reply).
    Ignored,
}

/// Parses the request `payload_type` with `payload`; the exception text the real server would
/// answer when a field is missing, of the wrong type, or too long.
pub fn parse(payload_type: &str, payload: &Value) -> Result<Request, String> {
    Ok(match payload_type {
        "chats" => Request::Chats,
        "chat" => Request::Chat { chat_id: id_field(payload, "chatId")? },
        "new" => Request::New {
            chat_id: id_field(payload, "chatId")?,
            message: text_field(payload, "message")?,
            client_message_id: optional_id(payload, "clientMessageId")?,
            attachments: match payload.get("attachments") {
                None | Some(Value::Null) => "[]".to_string(),
                Some(a @ Value::Array(_)) => a.to_string(),
                Some(_) => return Err("attachments must be an array".into()),
            },
        },
        "edit" => Request::Edit {
            chat_id: id_field(payload, "chatId")?,
            original: seq_field(payload, "originalMessageId")?
                .map(Seq)
                .ok_or_else(|| "originalMessageId is required".to_string())?,
            message: text_field(payload, "message")?,
        },
        "delete" => Request::Delete {
            chat_id: id_field(payload, "chatId")?,
            original: seq_field(payload, "originalMessageId")?
                .map(Seq)
                .ok_or_else(|| "originalMessageId is required".to_string())?,
        },
        "messages" => {
            let chat_id = id_field(payload, "chatId")?;
            let start = seq_field(payload, "startId")?.map(Seq);
            let end = seq_field(payload, "endId")?.map(Seq);
            let count = seq_field(payload, "count")?.unwrap_or(BIG_MESSAGES_COUNT_DEFAULT);
            if count == 0 || count > BIG_MESSAGES_COUNT_MAX {
                return Err(format!("count must be between 1 and {BIG_MESSAGES_COUNT_MAX}"));
            }
            if start.is_some() && end.is_some() {
                return Err("send startId or endId, not both".into());
            }
            Request::Messages { chat_id, start, end, count }
        }
        "dlvrd" | "read" => Request::Mark {
            chat_id: id_field(payload, "chatId")?,
            message: seq_field(payload, "messageId")?.map(Seq),
            read: payload_type == "read",
        },
        other => {
            let shown: String = other.chars().take(BIG_ID_BYTES_MAX).collect();
            return Err(format!("unknown payloadType {shown:?}"));
        }
    })
}

/// Parses a client event; one with a field of the wrong type is [`ClientEvent::Ignored`]
/// (events get no reply), never read with a default.
pub fn parse_event(payload_type: &str, payload: &Value) -> ClientEvent {
    match payload_type {
        "offline" => ClientEvent::Offline,
        "typing" => {
            let stop = match payload.get("stop") {
                None | Some(Value::Null) => Some(false),
                Some(Value::Bool(stop)) => Some(*stop),
                Some(_) => None,
            };
            match (id_field(payload, "chatId"), stop) {
                (Ok(chat_id), Some(stop)) => ClientEvent::Typing { chat_id, stop },
                _ => ClientEvent::Ignored,
            }
        }
        _ => ClientEvent::Ignored,
    }
}

/// A required id-like string field of at most [`BIG_ID_BYTES_MAX`] bytes.
fn id_field(payload: &Value, name: &str) -> Result<String, String> {
    match payload.get(name) {
        Some(Value::String(s)) if s.len() <= BIG_ID_BYTES_MAX => Ok(s.clone()),
        Some(Value::String(_)) => Err(format!("{name} is too long")),
        Some(Value::Null) | None => Err(format!("{name} is required")),
        Some(_) => Err(format!("{name} must be a string")),
    }
}

/// An optional id-like string field.
fn optional_id(payload: &Value, name: &str) -> Result<Option<String>, String> {
    match payload.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => id_field(payload, name).map(Some),
    }
}

/// A message text: a string (its length is checked against the configured limit by the
/// session), `""` when absent.
fn text_field(payload: &Value, name: &str) -> Result<String, String> {
    match payload.get(name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("{name} must be a string")),
    }
}

/// An optional non-negative integer field.
fn seq_field(payload: &Value, name: &str) -> Result<Option<u64>, String> {
    match payload.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| format!("{name} must be an integer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_decode_into_their_variants() {
        let cases: Vec<(&str, Value, Request)> = vec![
            ("chats", json!({}), Request::Chats),
            ("chat", json!({"chatId": "bob"}), Request::Chat { chat_id: "bob".into() }),
            (
                "new",
                json!({"chatId": "7", "message": "hi", "clientMessageId": "c1", "attachments": [1]}),
                Request::New {
                    chat_id: "7".into(),
                    message: "hi".into(),
                    client_message_id: Some("c1".into()),
                    attachments: "[1]".into(),
                },
            ),
            (
                "new",
                json!({"chatId": "7"}),
                Request::New {
                    chat_id: "7".into(),
                    message: String::new(),
                    client_message_id: None,
                    attachments: "[]".into(),
                },
            ),
            (
                "edit",
                json!({"chatId": "7", "originalMessageId": 3, "message": "x"}),
                Request::Edit { chat_id: "7".into(), original: Seq(3), message: "x".into() },
            ),
            (
                "delete",
                json!({"chatId": "7", "originalMessageId": 3}),
                Request::Delete { chat_id: "7".into(), original: Seq(3) },
            ),
            (
                "messages",
                json!({"chatId": "7", "endId": 9}),
                Request::Messages {
                    chat_id: "7".into(),
                    start: None,
                    end: Some(Seq(9)),
                    count: 300,
                },
            ),
            (
                "read",
                json!({"chatId": "7"}),
                Request::Mark { chat_id: "7".into(), message: None, read: true },
            ),
            (
                "dlvrd",
                json!({"chatId": "7", "messageId": 2}),
                Request::Mark { chat_id: "7".into(), message: Some(Seq(2)), read: false },
            ),
        ];
        for (kind, payload, want) in cases {
            assert_eq!(parse(kind, &payload), Ok(want), "{kind} {payload}");
        }
    }

    #[test]
    fn bad_fields_are_refused_never_defaulted() {
        let long = "x".repeat(BIG_ID_BYTES_MAX + 1);
        let cases: Vec<(&str, Value, &str)> = vec![
            ("chat", json!({}), "chatId is required"),
            ("chat", json!({"chatId": 5}), "chatId must be a string"),
            ("chat", json!({"chatId": long}), "chatId is too long"),
            ("new", json!({"chatId": "1", "message": 5}), "message must be a string"),
            ("new", json!({"chatId": "1", "attachments": {}}), "attachments must be an array"),
            (
                "new",
                json!({"chatId": "1", "clientMessageId": 7}),
                "clientMessageId must be a string",
            ),
            ("edit", json!({"chatId": "1"}), "originalMessageId is required"),
            (
                "delete",
                json!({"chatId": "1", "originalMessageId": "3"}),
                "originalMessageId must be an integer",
            ),
            ("messages", json!({"chatId": "1", "count": 0}), "count must be between 1 and 500"),
            ("messages", json!({"chatId": "1", "count": 501}), "count must be between 1 and 500"),
            (
                "messages",
                json!({"chatId": "1", "startId": 1, "endId": 2}),
                "send startId or endId, not both",
            ),
            ("read", json!({"chatId": "1", "messageId": -1}), "messageId must be an integer"),
            ("fly", json!({}), "unknown payloadType \"fly\""),
        ];
        for (kind, payload, want) in cases {
            assert_eq!(parse(kind, &payload), Err(want.to_string()), "{kind} {payload}");
        }
    }

    #[test]
    fn events_decode_and_bad_ones_are_ignored() {
        assert_eq!(parse_event("offline", &json!({})), ClientEvent::Offline);
        assert_eq!(
            parse_event("typing", &json!({"chatId": "b", "stop": true})),
            ClientEvent::Typing { chat_id: "b".into(), stop: true }
        );
        assert_eq!(
            parse_event("typing", &json!({"chatId": "b"})),
            ClientEvent::Typing { chat_id: "b".into(), stop: false }
        );
        for bad in [
            json!({"chatId": 1}),
            json!({"chatId": "b", "stop": "yes"}),
            json!({"chatId": "b", "stop": 1}),
            json!({"chatId": "b", "stop": {}}),
        ] {
            assert_eq!(parse_event("typing", &bad), ClientEvent::Ignored, "{bad}");
        }
        assert_eq!(parse_event("dance", &json!({})), ClientEvent::Ignored);
    }
}
