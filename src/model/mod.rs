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
pub use room_set::RoomSet;
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
