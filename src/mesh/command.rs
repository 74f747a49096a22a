//! Every message that crosses shards. Commands are plain owned data or `Arc`s of immutable
//! frames; nothing else is shared between shards.

use std::sync::Arc;

use crate::fanout::Bundle;
use crate::model::{RoomId, ShardId, UserId};
use crate::shard::request::{Request, Response};

/// A cross-shard message, pushed into the SPSC ring from one shard to another.
#[derive(Debug)]
pub enum Command {
    /// Ask the owner shard to execute `request` and answer `from` with `token`.
    Request {
        /// The asking shard.
        from: ShardId,
        /// The asker's pending-reply slot.
        token: u64,
        /// What to do.
        request: Request,
    },
    /// The owner's answer to a `Request`.
    Response {
        /// The asker's pending-reply slot.
        token: u64,
        /// The answer.
        response: Response,
    },
    /// Room owner → subscriber shard: hand `bundle` to every local subscriber of `room`.
    Deliver {
        /// The room.
        room: RoomId,
        /// The frames, rendered once.
        bundle: Arc<Bundle>,
    },
    /// Room owner → a shard holding `user`'s connections: subscribe them to `room`, then hand
    /// them `bundle` (e.g. RoomCreated on joining).
    Subscribe {
        /// The room.
        room: RoomId,
        /// The member.
        user: UserId,
        /// Frames for that user only, after subscribing.
        bundle: Option<Arc<Bundle>>,
    },
    /// Room owner → a shard holding `user`'s connections: hand them `bundle` (e.g. RoomDeleted),
    /// then unsubscribe them from `room`.
    Unsubscribe {
        /// The room.
        room: RoomId,
        /// The former member.
        user: UserId,
        /// Frames for that user only, before unsubscribing.
        bundle: Option<Arc<Bundle>>,
    },
    /// Room owner → subscriber shards: the room is deleted; deliver `bundle` and drop its topic.
    RoomGone {
        /// The room.
        room: RoomId,
        /// RoomDeleted frames.
        bundle: Arc<Bundle>,
    },
    /// Connection shard → user owner: `user` has connections on `shard` now (first one opened).
    UserAttach {
        /// The user.
        user: UserId,
        /// The shard.
        shard: ShardId,
    },
    /// Connection shard → user owner: `user`'s last connection on `shard` closed.
    UserDetach {
        /// The user.
        user: UserId,
        /// The shard.
        shard: ShardId,
    },
    /// Room owner → user owner: `user` is now a member of `room`.
    RoomJoined {
        /// The user.
        user: UserId,
        /// The room.
        room: RoomId,
    },
    /// Room owner → user owner: `user` is no longer a member of `room`.
    RoomLeft {
        /// The user.
        user: UserId,
        /// The room.
        room: RoomId,
    },
    /// User owner → room owner: the shards holding `user`'s connections changed.
    MemberShards {
        /// The room.
        room: RoomId,
        /// The user.
        user: UserId,
        /// One bit per shard with connections of the user.
        mask: u64,
    },
    /// User owner → a shard holding `user`'s connections: hand `bundle` to each of them
    /// (notifications, read marks).
    DeliverToUser {
        /// The user.
        user: UserId,
        /// The frames, rendered once.
        bundle: Arc<Bundle>,
    },
    /// User owner → every shard: session `sid` is logged out until `expires_at` (unix s):
    /// refuse its token and close its connections (osu!: `logout` first).
    RevokeSession {
        /// The session id (JWT `sid`, else `jti`).
        sid: String,
        /// When its tokens expire anyway, unix seconds; the entry is pruned after.
        expires_at: u64,
    },
    /// Connection shard → user owner: a connection of `user` opened with session `sid`
    /// (so the user may later log that session out by id).
    SessionSeen {
        /// The user.
        user: UserId,
        /// The session id.
        sid: String,
        /// The token's `exp`, unix seconds.
        expires_at: u64,
    },
    /// Any shard → a shard: answer `Response { token, Done(Empty) }` to `from`. Sent after
    /// other commands on the same ring, its answer proves they were handled.
    Barrier {
        /// The asking shard.
        from: ShardId,
        /// The asker's pending-reply slot.
        token: u64,
    },
    /// Connection shard → user owner: `user`'s BIG connections here were sent event `id` as
    /// `frame`; keep it for resending until acknowledged.
    BigPending {
        /// The user.
        user: UserId,
        /// The event id.
        id: Arc<str>,
        /// The exact frame the user got.
        frame: bytes::Bytes,
    },
    /// Connection shard → user owner: `user` acknowledged BIG event `id`.
    BigAck {
        /// The user.
        user: UserId,
        /// The event id.
        id: String,
    },
    /// User owner → a shard holding `user`'s connections: too many events are unacknowledged;
    /// tell its BIG connections and close them.
    BigOverflow {
        /// The user.
        user: UserId,
    },
    /// User owner of `about` → user owner of `to`: `about` came online (or went offline at
    /// `last_seen`); tell `to`'s BIG connections. With `answer`, `to`'s owner tells `about`'s
    /// owner back whether `to` is online now (the newcomer's view of its peers).
    BigPresence {
        /// Who is told.
        to: UserId,
        /// Whose presence changed.
        about: UserId,
        /// Online or offline.
        online: bool,
        /// When it went offline, ms (0 while online).
        last_seen: u64,
        /// Answer with `to`'s own presence if it is online.
        answer: bool,
    },
    /// Connection shard → room owner: `user` types (or stopped, `stop`) in `room`; BIG members
    /// get `typing`, never buffered.
    BigTyping {
        /// The room.
        room: RoomId,
        /// Who types.
        user: UserId,
        /// Stopped typing.
        stop: bool,
    },
    /// Connection shard or user owner → room owner: mark `user`'s messages of `room` up to
    /// `seq` (the newest when `None`) delivered or read; no answer.
    BigMark {
        /// The room.
        room: RoomId,
        /// Who.
        user: UserId,
        /// Read rather than delivered.
        read: bool,
        /// Up to this per-room seq.
        seq: Option<u64>,
    },
    /// Room owner → user owner: send `user` this BIG event and keep it until acknowledged.
    BigEvent {
        /// The user.
        user: UserId,
        /// The event id.
        id: Arc<str>,
        /// Its coalescing key: a newer event with the same key replaces it.
        key: Option<Arc<str>>,
        /// The frame.
        frame: bytes::Bytes,
    },
    /// Main thread → every shard: close every connection with 1001 and stop.
    Shutdown,
}
