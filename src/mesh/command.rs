//! Every message that crosses shards. Commands are plain owned data or `Arc`s of immutable
//! frames; nothing else is shared between shards.

use std::any::Any;
use std::sync::Arc;

use super::request::{Request, Response};
use crate::dialect::{DialectId, DialectMask};
use crate::fanout::Bundle;
use crate::model::{RoomId, ShardId, UserId};
use crate::net::http_conn::Handoff;

/// A cross-shard message, pushed into the SPSC ring from one shard to another. In a cluster,
/// every variant but the node-local ones (`Adopt`, `Drained`, `Shutdown`, `NodeUp`,
/// `NodeDown`) also crosses nodes, encoded by `cluster::wire` (serde, postcard). The
/// node-local variants come last: serde numbers a skipped variant when it encodes but not
/// when it decodes, so one before the others would shift their numbers.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
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
    /// Any shard → room owner: `user` sends `bundle` to `room` (typing, presence): the owner
    /// delivers it to the room's subscriber shards when `user` is a member, else drops it.
    ToRoom {
        /// The room.
        room: RoomId,
        /// The member it comes from.
        user: UserId,
        /// The frames.
        bundle: Arc<Bundle>,
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
    /// Connection shard → user owner: `user` has connections on `shard` now, speaking
    /// `dialects` (sent when the first opens and whenever their dialects change).
    UserAttach {
        /// The user.
        user: UserId,
        /// The shard.
        shard: ShardId,
        /// The dialects of the user's connections there.
        dialects: DialectMask,
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
        /// The dialects of the user's connections.
        dialects: DialectMask,
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
    /// refuse its token and close its connections (each the way its dialect says).
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
        /// The session's key.
        sid: crate::shard::SessionKey,
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
    /// Connection shard → user owner, after the user's connection registered there: prove
    /// that every room owner of the user has handled the news of it (`MemberShards`) and that
    /// the `Subscribe` commands they sent back were handled on `from`. The owner answers each
    /// of the `shard_count` tokens `base + i`: a room owner `i` through a `Barrier` (whose
    /// answer travels behind that owner's `Subscribe` on the same ring), any other shard at
    /// once; then `base + shard_count` itself. See `Shard::settle_subscriptions`.
    SettleAttach {
        /// The connection's shard.
        from: ShardId,
        /// The user.
        user: UserId,
        /// The first of the `shard_count + 1` consecutive tokens to answer.
        base: u64,
    },
    /// Room owner → the owner of direct `pair` (`shard_of_pair`): `room` now has (`held`) or
    /// no longer has that pair of members; index it to `room` if the pair has no room, or
    /// drop the pair's entry if it is `room`.
    DirectPair {
        /// The ordered pair of user ids.
        pair: (UserId, UserId),
        /// The room.
        room: RoomId,
        /// Whether the room has the pair now.
        held: bool,
    },
    /// A dialect's own message: only `dialect` reads `payload` (its `on_command` hook).
    /// Across nodes it is the dialect's own bytes (`Dialect::encode_command`).
    #[serde(
        serialize_with = "crate::cluster::wire::serialize_dialect",
        deserialize_with = "crate::cluster::wire::deserialize_dialect"
    )]
    Dialect {
        /// The dialect.
        dialect: DialectId,
        /// The dialect's message.
        payload: Box<dyn Any + Send>,
    },
    /// A draining shard → every other shard: `from` finished drain round `round` (0: its HTTP
    /// requests are answered; 1: every shard's round 0 reached it). See `shard::drain`.
    #[serde(skip)]
    Drained {
        /// The sending shard.
        from: ShardId,
        /// 0 or 1.
        round: usize,
    },
    /// A shard that accepted an upgrade request → the shard its dialect says must serve it
    /// (`Dialect::home_shard`): the socket, the parsed head and the bytes read past it.
    #[serde(skip)]
    Adopt(Box<Handoff>),
    /// Main thread → every shard: close every connection with 1001 and stop.
    #[serde(skip)]
    Shutdown,
    /// NATS thread → every local shard: node `0` stopped answering: answer what waits for it
    /// with 503, forget its shards' connections.
    #[serde(skip)]
    NodeDown(usize),
    /// NATS thread → every local shard: node `0` answers (again): tell it the memberships of
    /// its users and the connections of its users here.
    #[serde(skip)]
    NodeUp(usize),
}
