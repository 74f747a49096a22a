//! The core event model: rooms, members, messages, users, and the events every dialect renders.
//!
//! Pure data and pure transitions: nothing here does IO, knows JSON framing or a wire protocol.
//! A room is only ever mutated by its owner shard (see `shard`), which calls [`room::Room::apply`].

pub mod action;
pub mod event;
pub mod ids;
pub mod notification;
pub mod receipt;
pub mod room;
pub mod room_set;
pub mod user_map;

pub use action::{RoomAction, Viewer};
pub use event::{Event, LastMessage, MemberSummary, Message, RoomView};
pub use ids::{InvalidUserId, MessageId, RoomId, Seq, ShardId, UserId};
pub use notification::Notification;
pub use room::{Member, Role, Room, RoomKind};
pub use room_set::{RoomList, RoomSet};
pub use user_map::UserMap;

/// Why the model refused an action; each maps to one HTTP status and dialect error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The room or message does not exist (or the viewer may not know it exists).
    NotFound(&'static str),
    /// The viewer may see the object but not do this to it.
    Forbidden(&'static str),
    /// The request itself is malformed or out of range.
    Invalid(String),
    /// The request conflicts with the current state.
    Conflict(String),
    /// A configured bound would be exceeded.
    Full(&'static str),
    /// A message would be larger than the bound on a stored message's encoded size.
    MessageTooLarge(String),
    /// The server cannot take the action now (backpressure, store failure); retry later.
    Unavailable(&'static str),
}

impl Refusal {
    /// A message of `size` encoded bytes is over `bytes_max`.
    pub fn too_large(size: usize, bytes_max: usize) -> Refusal {
        Refusal::MessageTooLarge(format!(
            "the message is {size} bytes encoded (text, attachments, attributes and ids \
             together); at most {bytes_max}"
        ))
    }

    /// The HTTP status for this refusal.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::NotFound(_) => 404,
            Refusal::Forbidden(_) => 403,
            Refusal::Invalid(_) => 400,
            Refusal::Conflict(_) => 409,
            Refusal::Full(_) => 429,
            Refusal::MessageTooLarge(_) => 413,
            Refusal::Unavailable(_) => 503,
        }
    }

    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NotFound(_) => "not_found",
            Refusal::Forbidden(_) => "forbidden",
            Refusal::Invalid(_) => "invalid_request",
            Refusal::Conflict(_) => "conflict",
            Refusal::Full(_) => "limit_exceeded",
            Refusal::MessageTooLarge(_) => "message_too_large",
            Refusal::Unavailable(_) => "unavailable",
        }
    }

    /// A human-readable explanation.
    pub fn message(&self) -> String {
        match self {
            Refusal::NotFound(s) | Refusal::Forbidden(s) | Refusal::Full(s) => (*s).to_string(),
            Refusal::Unavailable(s) => (*s).to_string(),
            Refusal::Invalid(s) | Refusal::Conflict(s) | Refusal::MessageTooLarge(s) => s.clone(),
        }
    }
}

/// On the cluster's wire a refusal is its kind and its text.
impl serde::Serialize for Refusal {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let kind: u8 = match self {
            Refusal::NotFound(_) => 0,
            Refusal::Forbidden(_) => 1,
            Refusal::Invalid(_) => 2,
            Refusal::Conflict(_) => 3,
            Refusal::Full(_) => 4,
            Refusal::MessageTooLarge(_) => 5,
            Refusal::Unavailable(_) => 6,
        };
        serde::Serialize::serialize(&(kind, self.message()), serializer)
    }
}

/// Decoding a refusal from another node: the static texts are interned (a bounded set, see
/// [`intern_refusal_text`]), the others kept as they came.
impl<'de> serde::Deserialize<'de> for Refusal {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (kind, text): (u8, String) = serde::Deserialize::deserialize(deserializer)?;
        Ok(match kind {
            0 => Refusal::NotFound(intern_refusal_text(&text)),
            1 => Refusal::Forbidden(intern_refusal_text(&text)),
            2 => Refusal::Invalid(text),
            3 => Refusal::Conflict(text),
            4 => Refusal::Full(intern_refusal_text(&text)),
            5 => Refusal::MessageTooLarge(text),
            6 => Refusal::Unavailable(intern_refusal_text(&text)),
            _ => return Err(serde::de::Error::custom("unknown refusal kind")),
        })
    }
}

/// Distinct refusal texts kept for the process's life; past it a generic text is used.
const INTERNED_REFUSAL_TEXTS_MAX: usize = 512;

/// A `'static` copy of `text`: the same copy for the same text, at most
/// [`INTERNED_REFUSAL_TEXTS_MAX`] of them (every node refuses with the same few texts, all
/// compiled in), so memory stays bounded whatever a peer sends.
fn intern_refusal_text(text: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static TEXTS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut texts = TEXTS.get_or_init(Mutex::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(known) = texts.get(text) {
        return known;
    }
    if texts.len() >= INTERNED_REFUSAL_TEXTS_MAX || text.len() > 256 {
        return "refused by another node";
    }
    let leaked: &'static str = Box::leak(text.to_owned().into_boxed_str());
    texts.insert(leaked);
    leaked
}
