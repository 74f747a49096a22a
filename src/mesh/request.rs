//! Requests a shard asks an owner shard to execute, and their responses: plain data that
//! crosses the mesh in `Command::Request` / `Command::Response`.

use std::sync::Arc;

use crate::model::action::NewRoom;
use crate::model::room::Reply;
use crate::model::{
    MessageId, Notification, Refusal, RoomAction, RoomId, RoomView, Seq, UserId, Viewer,
};

/// Work only an owner shard may do.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum Request {
    /// Create a room owned by the executing shard: locally, except a direct room, created on
    /// the shard of its pair (`shard_of_pair`), which answers `Existing` when the pair has one.
    CreateRoom {
        /// Who creates it.
        viewer: Viewer,
        /// Its fields.
        spec: NewRoom,
    },
    /// Apply an action to a room (owner: the room's shard).
    Room {
        /// The room.
        room: RoomId,
        /// Who acts.
        viewer: Viewer,
        /// What to do.
        action: RoomAction,
    },
    /// Apply an action to the room of a message (owner: `message % shard_count`).
    Message {
        /// The message.
        message: MessageId,
        /// Who acts.
        viewer: Viewer,
        /// Edit or delete.
        action: RoomAction,
    },
    /// The rooms `user` belongs to (owner: the user's shard).
    UserRooms {
        /// The user.
        user: UserId,
    },
    /// Views of the given rooms owned by the executing shard that `viewer` may see; all of
    /// them for `None` (services listing every room), at most `limit`.
    RoomViews {
        /// Which rooms (or all owned rooms).
        rooms: Option<Vec<RoomId>>,
        /// Who asks.
        viewer: Viewer,
        /// At most this many.
        limit: usize,
        /// Fill each view's `summary` for the viewer (a member).
        summary: bool,
    },
    /// Post a notification to `user` (owner: the user's shard).
    Notify {
        /// The notification; its id and time are set by the owner.
        notification: Box<Notification>,
    },
    /// Mark `user`'s notifications `ids` read (owner: the user's shard).
    ReadNotifications {
        /// The user.
        user: UserId,
        /// Which notifications.
        ids: Vec<u64>,
    },
    /// Log session `sid` of `user` out (owner: the user's shard).
    RevokeSession {
        /// The user.
        user: UserId,
        /// The session.
        sid: String,
        /// Its tokens' expiry when the caller knows it, unix s.
        expires_at: Option<u64>,
        /// Refuse unless the owner saw this session (a user logging out another of its own).
        known_only: bool,
    },
    /// BIG: the message of `room` with per-room `seq`, from the owner's window (owner: the
    /// room's shard).
    MessageBySeq {
        /// The room.
        room: RoomId,
        /// Who asks (must be a member).
        viewer: Viewer,
        /// The message's seq.
        seq: Seq,
    },
    /// BIG `dlvrd` / `read`: mark `user`'s messages of `room` up to `seq` (the newest when
    /// `None`) delivered or read (owner: the room's shard).
    Mark {
        /// The room.
        room: RoomId,
        /// Who marks.
        user: UserId,
        /// Read (and delivered) rather than delivered.
        read: bool,
        /// Up to this per-room seq.
        seq: Option<Seq>,
    },
    /// `user` is active in `room` now (osu! chat keepalive; owner: the room's shard).
    RoomAck {
        /// The room.
        room: RoomId,
        /// Who.
        user: UserId,
    },
    /// Room owner → the owner of direct `pair` (`shard_of_pair`), before adding the member
    /// that completes the pair in `room`: index the pair to `room` unless it has a room;
    /// answered with `PairHolder`, the pair's room now.
    ClaimPair {
        /// The ordered pair of user ids.
        pair: (UserId, UserId),
        /// The room that would be the pair's.
        room: RoomId,
    },
    /// Members of `rooms` (those this viewer may see) with connections speaking one of
    /// `dialects`, each once (owner: the rooms' shard).
    OnlineMembers {
        /// The rooms.
        rooms: Vec<RoomId>,
        /// Who asks: only rooms it is a member of count.
        viewer: Viewer,
        /// Which connections count.
        dialects: crate::dialect::DialectMask,
    },
}

/// An owner's answer.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum Response {
    /// The action's reply.
    Done(Reply),
    /// Room ids.
    RoomIds(Vec<RoomId>),
    /// Room views.
    Rooms(Vec<Arc<RoomView>>),
    /// Notifications (created, or marked read).
    Notifications(Vec<Notification>),
    /// A receipt mark's state after a `Mark`.
    Receipt {
        /// The mark (seq) now.
        seq: Seq,
        /// When it was first made, ms.
        at_ms: u64,
        /// Messages after the read mark.
        missed: u64,
        /// The client message id of the message at `seq`, if in the window.
        client_message_id: Option<String>,
    },
    /// Refused.
    Refused(Refusal),
    /// A direct room asked for (`CreateRoom`) already exists for that pair: this one.
    Existing(Arc<RoomView>),
    /// Users.
    Users(Vec<UserId>),
    /// The direct room a pair is indexed to (answer to `ClaimPair`).
    PairHolder(RoomId),
}
