//! What a client asks a room's owner to do, independent of the dialect or REST call it came from.

use super::event::message_encoded_len;
use super::ids::{MessageId, UserId};
use super::room::{Role, RoomKind};
use super::Refusal;

/// Who is acting: an application backend (service token) or a user.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Viewer {
    /// A backend that may act for any user and administer every room.
    Service,
    /// A user, limited to the rooms it belongs to.
    User(UserId),
}

impl Viewer {
    /// The user, when the viewer is one.
    pub fn user(&self) -> Option<&UserId> {
        match self {
            Viewer::Service => None,
            Viewer::User(u) => Some(u),
        }
    }
}

/// The fields of a new room.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NewRoom {
    /// Room kind (group, direct, public, announce).
    pub kind: RoomKind,
    /// Display name.
    pub name: String,
    /// Free-text description.
    pub description: String,
    /// Dialect extras, as a JSON object text.
    pub attributes: String,
    /// Initial members with their roles.
    pub members: Vec<(UserId, Role)>,
}

impl NewRoom {
    /// The pair of a direct room created by `creator` with these members: its one or two
    /// distinct users, ordered (a user alone is paired with itself); `None` for other kinds
    /// or another number of users.
    pub fn direct_pair(&self, creator: &Viewer) -> Option<(UserId, UserId)> {
        if self.kind != RoomKind::Direct {
            return None;
        }
        let users = self.members.iter().map(|(u, _)| u).chain(creator.user());
        direct_pair_of(users)
    }
}

/// The ordered pair of one or two distinct users in `users` (duplicates count once); `None`
/// for none or more than two.
pub fn direct_pair_of<'a>(users: impl Iterator<Item = &'a UserId>) -> Option<(UserId, UserId)> {
    let (mut lo, mut hi): (Option<&UserId>, Option<&UserId>) = (None, None);
    for user in users {
        match (lo, hi) {
            (None, _) => lo = Some(user),
            (Some(l), _) if l == user => {}
            (Some(_), Some(h)) if h == user => {}
            (Some(_), None) => hi = Some(user),
            (Some(_), Some(_)) => return None,
        }
    }
    let lo = lo?;
    let hi = hi.unwrap_or(lo);
    Some(if lo <= hi { (lo.clone(), hi.clone()) } else { (hi.clone(), lo.clone()) })
}

/// The fields of a new message.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NewMessage {
    /// The author (the viewer, or any user when a service posts for it).
    pub author: UserId,
    /// Message text.
    pub text: String,
    /// Parent message id for comments, 0 for top-level messages.
    pub parent_id: MessageId,
    /// The client's own id for deduplication and echo, if it sent one.
    pub client_message_id: Option<String>,
    /// Message kind (e.g. "Regular").
    pub kind: String,
    /// Attachments as a JSON array text.
    pub attachments: String,
    /// Dialect extras as a JSON object text.
    pub attributes: String,
}

impl NewMessage {
    /// An upper bound of the new message's JSON size (`event::message_encoded_len`).
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

    /// Refuses the message when its encoded size is over `bytes_max` (`stored_message_bytes_max`).
    pub fn check_size(&self, bytes_max: usize) -> Result<(), Refusal> {
        let size = self.encoded_len();
        if size > bytes_max {
            return Err(Refusal::too_large(size, bytes_max));
        }
        Ok(())
    }
}

/// Changes to a room; `None` leaves a field alone.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct RoomPatch {
    /// New display name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New attributes (JSON object text).
    pub attributes: Option<String>,
}

/// Every action a room's owner executes.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum RoomAction {
    /// Read the room.
    Get,
    /// Change name, description or attributes.
    Update(RoomPatch),
    /// Delete the room and everything in it.
    Delete,
    /// Add a member or change its role.
    PutMember {
        /// The member.
        user: UserId,
        /// Its role.
        role: Role,
    },
    /// Remove a member.
    RemoveMember(UserId),
    /// Post a message.
    Post(NewMessage),
    /// Read messages: ascending ids strictly between `after` and `before`.
    History {
        /// Only ids greater than this.
        after: Option<MessageId>,
        /// Only ids smaller than this.
        before: Option<MessageId>,
        /// At most this many (the newest ones when only `before` is given).
        limit: usize,
        /// At most this many bytes of messages (`Message::encoded_len` summed); the page ends
        /// early (`Page::truncated`) before the message that would pass it, but always holds
        /// at least one message.
        bytes_max: usize,
    },
    /// Edit a message's text.
    Edit {
        /// The message.
        message: MessageId,
        /// Its new text.
        text: String,
        /// The edited message's encoded size may not pass this (`stored_message_bytes_max`).
        bytes_max: usize,
    },
    /// Delete a message.
    DeleteMessage(MessageId),
}
