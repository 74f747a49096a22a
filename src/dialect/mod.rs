//! Dialects: the wire protocols clients speak, each one folder behind the one interface the
//! core calls, [`Dialect`]. The core (net, shard, fanout, mesh, rest, http, ws) names no
//! dialect: it walks [`registry::DIALECTS`] and calls these hooks.
//!
//! What a dialect owns: its endpoint and the shape of its authentication refusal (the
//! upgrade), its client frames (decoded into closed enums inside the dialect, handled by its
//! per-connection [`Session`]), its rendering of core events (once per event, and per viewer
//! variant where its frames depend on the viewer), its owner-side state and hooks (state kept
//! with a user's or a room's owner shard, reached through [`crate::shard::Shard::dialect_state`]),
//! its cross-shard messages ([`crate::mesh::Command::Dialect`], whose payload only it reads),
//! and its timers (driven by the shard's sweeper through [`Dialect::sweep`]).
//!
//! Invariants: hooks run on the shard's loop and never block; a hook that needs another shard
//! sends a command; rendering is pure and happens on the room's (or user's) owner, never per
//! recipient.

pub mod big;
pub mod echo;
pub mod osu;
pub mod rechat;
pub mod registry;
pub mod virola;

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use crate::auth::Identity;
use crate::config::Config;
use crate::fanout::Bundle;
use crate::http::head::RequestHead;
use crate::model::receipt::Receipt;
use crate::model::{Event, Message, Notification, Room, RoomId, RoomView, Seq, ShardId, UserId};
use crate::net::conn::Conn;
use crate::shard::Shard;

pub use registry::{DIALECTS, DIALECT_COUNT};

/// A dialect's index in [`registry::DIALECTS`]; indexes a bundle's frames and is one bit of a
/// [`DialectMask`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DialectId(pub u8);

impl DialectId {
    /// The index into per-dialect arrays.
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }

    /// This dialect's bit in a [`DialectMask`].
    #[inline]
    pub fn bit(self) -> DialectMask {
        1 << self.0
    }

    /// The dialect's implementation.
    pub fn get(self) -> &'static dyn Dialect {
        DIALECTS[self.index()]
    }

    /// Every registered dialect, in registry order.
    pub fn all() -> impl Iterator<Item = DialectId> {
        (0..DIALECT_COUNT as u8).map(DialectId)
    }

    /// The dialects whose bit is set in `mask`.
    pub fn in_mask(mask: DialectMask) -> impl Iterator<Item = DialectId> {
        Self::all().filter(move |d| mask & d.bit() != 0)
    }
}

/// A set of dialects, one bit per [`DialectId`] (at most 8 dialects).
pub type DialectMask = u8;

/// A dialect's answer to a plain HTTP request: the complete response, when it is ready.
pub type HttpAnswer = std::pin::Pin<Box<dyn std::future::Future<Output = Bytes>>>;

/// Why the core refuses an upgrade; each dialect answers it in its own shape
/// ([`Dialect::refuse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseReason<'a> {
    /// The token is missing, bad, expired or logged out, or may not connect here (why).
    Unauthorized(&'a str),
    /// The user already holds `max` event connections on this shard
    /// (`connections_per_user_max`).
    TooManyConnections {
        /// The bound.
        max: usize,
    },
}

impl RefuseReason<'_> {
    /// The HTTP status of a refusal before the upgrade: 401 or 429.
    pub fn status(&self) -> u16 {
        match self {
            RefuseReason::Unauthorized(_) => 401,
            RefuseReason::TooManyConnections { .. } => 429,
        }
    }

    /// A human-readable explanation.
    pub fn message(&self) -> String {
        match self {
            RefuseReason::Unauthorized(why) => why.to_string(),
            RefuseReason::TooManyConnections { max } => {
                format!("too many connections: at most {max} per user on this server shard")
            }
        }
    }

    /// The core's refusal, for a dialect with no shape of its own for this reason: the HTTP
    /// status with the REST API's error body (`unauthorized` or `too_many_connections`).
    pub fn core_refusal(&self) -> Refusal {
        let code = match self {
            RefuseReason::Unauthorized(_) => "unauthorized",
            RefuseReason::TooManyConnections { .. } => "too_many_connections",
        };
        Refusal::Http(crate::http::response::json_error(
            self.status(),
            code,
            &self.message(),
            false,
        ))
    }
}

/// How a dialect refuses an upgrade.
#[derive(Debug)]
pub enum Refusal {
    /// Answer this HTTP response instead of the 101 and close.
    Http(Bytes),
    /// Complete the handshake, send this frame, then drop the connection without a close frame
    /// (the real osu! relay's way).
    AfterUpgrade(Bytes),
}

/// How a dialect authenticates its upgrade requests.
#[derive(Debug)]
pub enum Credentials {
    /// The endpoint needs none (the conformance echo endpoint): not registered for events.
    None,
    /// The token the request carries, if any; verified by the core.
    Token(Option<String>),
    /// The client authenticates in band, after the upgrade: the connection is accepted
    /// unregistered, and its session registers it (`Shard::attach`) once the client has.
    InBand,
}

/// One connection's protocol state and its client frames. Held by the shard's session slot for
/// the connection's life; dropped with it.
pub trait Session {
    /// The connection is upgraded and its session registered: the dialect may greet the client
    /// (an in-band protocol's handshake packet).
    fn started(&self, _shard: &Rc<Shard>, _conn: &Rc<Conn>) {}
    /// A complete text message from the client. Bad input gets the dialect's own error reply;
    /// the connection stays up unless the dialect closes it.
    fn on_text(&self, shard: &Rc<Shard>, conn: &Rc<Conn>, payload: &[u8]);
    /// A complete binary message from the client.
    fn on_binary(&self, _shard: &Rc<Shard>, _conn: &Rc<Conn>, _payload: &[u8]) {}
}

/// A session that ignores everything the client sends (receive-only protocols).
pub struct ReceiveOnly;

impl Session for ReceiveOnly {
    fn on_text(&self, _: &Rc<Shard>, _: &Rc<Conn>, _: &[u8]) {}
}

/// What the sweeper's visit of a connection came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sweep {
    /// Nothing for the dialect to do: the core pings it and applies the idle timeout.
    Continue,
    /// The dialect closed or dropped the connection.
    Ended,
    /// The dialect keeps the connection alive itself (its own keepalive packets and silence
    /// rule): no core ping and no core idle timeout.
    Kept,
}

/// A room event on its owner shard, as dialects decorating its bundle see it.
pub struct RoomEvent<'a> {
    /// The room, after the change (a deleted room's last state).
    pub room: &'a Room,
    /// Its view, for room changes and deletions.
    pub view: Option<&'a RoomView>,
    /// The event.
    pub event: &'a Event,
    /// The message the action wrote (a deleted message's tombstone carries its seq).
    pub stored: Option<&'a Arc<Message>>,
    /// Who acted (`None` for a service).
    pub actor: Option<&'a UserId>,
    /// A member who joined with this change.
    pub joined: Option<&'a UserId>,
    /// The room's receipts.
    pub receipts: Option<&'a HashMap<UserId, Receipt>>,
    /// The room itself was deleted by this action.
    pub deleted: bool,
    /// The dialects of each connected member's connections, as their user owners last said
    /// (members with none are absent).
    pub connected: &'a HashMap<UserId, DialectMask>,
    /// Members whose user owners have not said yet where their connections are (a room
    /// created or joined a moment ago): they may be connected in any dialect.
    pub unknown: &'a HashSet<UserId>,
}

/// One change a room's owner applied, before its events are rendered.
pub struct RoomChange<'a> {
    /// The room, after the change.
    pub room: &'a Room,
    /// Its events.
    pub events: &'a [Event],
    /// A member who joined.
    pub joined: Option<&'a UserId>,
    /// A member who left.
    pub left: Option<&'a UserId>,
    /// The room was deleted.
    pub deleted: bool,
}

/// Where a user's connections are, on its owner shard: a bit per shard and a bit per dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Presence {
    /// Shards holding the user's connections.
    pub shards: u64,
    /// Dialects the user's connections speak.
    pub dialects: DialectMask,
}

/// A change of a user's notifications, on the user's owner.
pub enum NotificationEvent<'a> {
    /// A new notification.
    New(&'a Notification),
    /// These notifications were marked read at `now_ms`.
    Read {
        /// The notifications newly read.
        read: &'a [Notification],
        /// When, ms.
        now_ms: u64,
    },
}

/// A raised receipt on a room's owner: `user`'s marks of `room` now cover `from_seq..=to_seq`.
pub struct ReceiptRaised<'a> {
    /// The room.
    pub room: &'a Room,
    /// Whose mark.
    pub user: &'a UserId,
    /// Read (else delivered).
    pub read: bool,
    /// The first newly covered seq.
    pub from_seq: Seq,
    /// The new mark.
    pub to_seq: Seq,
    /// When, ms.
    pub at_ms: u64,
}

/// A wire protocol. Every hook has a default that does nothing, so a dialect implements only
/// what its protocol has. Hooks run on one shard's loop; `shard` is that shard.
pub trait Dialect: Sync {
    /// The dialect's name (logs, docs).
    fn name(&self) -> &'static str;

    // --- The upgrade -------------------------------------------------------------------------

    /// Whether this dialect serves WebSocket upgrades at `path`.
    fn serves(&self, path: &str, config: &Config) -> bool;
    /// The path clients connect to, as `GET /` lists it (`None`: not listed, e.g. not enabled).
    fn endpoint(&self, _config: &Config) -> Option<String> {
        None
    }
    /// The credentials an upgrade request carries.
    fn credentials(&self, head: &RequestHead) -> Credentials;
    /// After the token verified: the connection's dialect flag bits ([`Conn::flags`]), or
    /// `None` when this identity may not connect.
    fn admit(&self, _identity: &Identity) -> Option<u8> {
        Some(0)
    }
    /// Whether this dialect answers plain HTTP requests (not upgrades) at `path`, through
    /// [`Dialect::http`] (a transport such as long-polling).
    fn serves_http(&self, _path: &str, _config: &Config) -> bool {
        false
    }
    /// Answers a plain HTTP request to a path it serves (`serves_http`): the complete
    /// response, possibly after a wait (long-polling; bounded by the dialect).
    fn http(&self, _shard: &Rc<Shard>, _head: &RequestHead, _body: Bytes) -> HttpAnswer {
        Box::pin(async {
            crate::http::response::json_error(404, "not_found", "no such path", false)
        })
    }
    /// The refusal of an upgrade, in the dialect's own shape: a token that is missing, bad,
    /// expired or logged out, or a user over its connection limit.
    fn refuse(&self, reason: RefuseReason<'_>) -> Refusal;
    /// A new connection's protocol state.
    fn session(&self) -> Box<dyn Session>;
    /// A new connection's protocol state for this upgrade request (its query may choose a
    /// protocol revision), or the refusal of a request the dialect cannot serve; asked before
    /// the 101 is sent. Defaults to [`Dialect::session`].
    fn session_for(
        &self,
        _shard: &Rc<Shard>,
        _head: &RequestHead,
    ) -> Result<Box<dyn Session>, Refusal> {
        Ok(self.session())
    }
    /// The shard that must serve this upgrade request, when the dialect's state for it lives
    /// on one shard (a session the request continues); `None`: any shard. An upgrade landing
    /// elsewhere is handed, socket and all, to that shard before anything is answered
    /// (`net::http_conn`'s handoff), which then asks [`Dialect::session_for`].
    fn home_shard(&self, _head: &RequestHead, _shard_count: usize) -> Option<ShardId> {
        None
    }
    /// A connection registered for events (after its user's owner was told).
    fn opened(&self, _shard: &Rc<Shard>, _conn: &Rc<Conn>) {}
    /// A registered connection ended.
    fn closed(&self, _shard: &Shard, _conn: &Conn) {}

    // --- Rendering (on the owner shards) ----------------------------------------------------

    /// `event` as every recipient of this dialect sees it (`moderator`: a room's moderators'
    /// variant), or `None` when this dialect has no frame for it.
    fn render(&self, _event: &Event, _moderator: bool) -> Option<Bytes> {
        None
    }
    /// `event` for one `viewer` only (a room joined or left): defaults to [`Dialect::render`].
    fn render_for(
        &self,
        event: &Event,
        _room: &RoomView,
        _viewer: &UserId,
        moderator: bool,
    ) -> Option<Bytes> {
        self.render(event, moderator)
    }
    /// The [`Conn::flags`] bits a connection needs to receive `event` (0: every connection).
    fn gate(&self, _event: &Event) -> u8 {
        0
    }
    /// A notification change as this dialect's connections see it, with the [`Conn::flags`]
    /// bits a connection needs to receive it; `None` when the dialect has no such frame.
    fn render_notification(&self, _event: &NotificationEvent<'_>) -> Option<(Bytes, u8)> {
        None
    }
    /// True when the dialect sends its room events through their recipients' user owners
    /// (which know the recipients' connections) rather than through subscriptions: the room
    /// owner then decorates its events for [`RoomEvent::unknown`] members too, while any are.
    fn routes_through_user_owners(&self) -> bool {
        false
    }
    /// Room owner: adds frames or routing that depend on the room to `bundle`, and commands
    /// to send besides it (`commands`; for instance frames routed through their recipients'
    /// user owners), released with the bundle once the change is committed.
    fn decorate(
        &self,
        _shard: &Shard,
        _event: &RoomEvent<'_>,
        _bundle: &mut Bundle,
        _commands: &mut Vec<(ShardId, crate::mesh::Command)>,
    ) {
    }

    // --- Owner-side hooks ----------------------------------------------------------------------

    /// Room owner: a change is applied (before its events are rendered).
    fn room_changed(&self, _shard: &Shard, _change: &RoomChange<'_>) {}
    /// Room owner: `user`, a member of `room`, is active there (the REST keepalive).
    fn room_ack(&self, _shard: &Shard, _room: &Room, _user: &UserId) {}
    /// Room owner: a receipt moved forward.
    /// The commands (released with the receipt's commit) telling whom it concerns.
    fn receipt_raised(
        &self,
        _shard: &Shard,
        _receipt: &ReceiptRaised<'_>,
    ) -> Vec<(ShardId, crate::mesh::Command)> {
        Vec::new()
    }
    /// User owner: the shards or dialects of `user`'s connections changed; `attached` is the
    /// shard that gained connections of some dialects, with those dialects.
    fn presence_changed(
        &self,
        _shard: &Rc<Shard>,
        _user: &UserId,
        _before: Presence,
        _after: Presence,
        _attached: Option<(ShardId, DialectMask)>,
    ) {
    }
    /// User owner: one of `user`'s rooms appeared or went (called while the user has
    /// connections of this dialect).
    fn rooms_changed(&self, _shard: &Rc<Shard>, _user: &UserId) {}
    /// A [`crate::mesh::Command::Dialect`] for this dialect arrived.
    fn on_command(&self, _shard: &Rc<Shard>, _command: Box<dyn Any + Send>) {}
    /// A [`crate::mesh::Command::Dialect`] payload of this dialect as bytes, for a shard of
    /// another node (`src/cluster/`); `None`: this message does not cross nodes (it is
    /// dropped and counted).
    fn encode_command(&self, _payload: &(dyn Any + Send)) -> Option<Vec<u8>> {
        None
    }
    /// The payload [`Dialect::encode_command`] made, from another node's bytes; `None` when
    /// they do not decode (the message is dropped and counted).
    fn decode_command(&self, _bytes: &[u8]) -> Option<Box<dyn Any + Send>> {
        None
    }
    /// This dialect's state on one shard (owner side and connection side), reached through
    /// `Shard::dialect_state`.
    fn shard_state(&self) -> Box<dyn Any> {
        Box::new(())
    }
    /// At start, before the shard accepts anything: the records this dialect stored about the
    /// users this shard owns (`StoreOp::PutDialectRecord` with its own index, written through
    /// `Shard::commit_then`), in key order. Called once per shard, records or not.
    fn recovered(&self, _shard: &Rc<Shard>, _records: Vec<crate::store::DialectRecord>) {}

    // --- Connection-side hooks -----------------------------------------------------------------

    /// After a bundle carrying this dialect's routing `tag` was delivered to `room`'s local
    /// subscribers.
    fn delivered(&self, _shard: &Shard, _room: RoomId, _bundle: &Bundle) {}
    /// The connection's session was logged out: tell it the dialect's way and close.
    fn logged_out(&self, conn: &Rc<Conn>) {
        conn.close(crate::ws::close::CLOSE_POLICY, "session logged out");
    }
    /// How often this dialect's connections must be visited by the sweeper, when that is more
    /// often than the ping interval.
    fn sweep_period_ms(&self, _config: &Config) -> Option<u64> {
        None
    }
    /// The sweeper visits `conn` at `now`; when a ping is due, `previous_ping_ms` is when its
    /// slice was last pinged (0: no ping is due, or none was sent yet).
    fn sweep(
        &self,
        _shard: &Rc<Shard>,
        _conn: &Rc<Conn>,
        _now: u64,
        _previous_ping_ms: u64,
    ) -> Sweep {
        Sweep::Continue
    }
}

/// The dialect answering plain HTTP requests at `path`, if one does.
pub fn http_at(path: &str, config: &Config) -> Option<DialectId> {
    DialectId::all().find(|d| d.get().serves_http(path, config))
}

/// The dialect serving WebSocket upgrades at `path`.
pub fn at_path(path: &str, config: &Config) -> Option<DialectId> {
    DialectId::all().find(|d| d.get().serves(path, config))
}

/// Renders `event` for every dialect in `mask`, as a viewer who is (`moderator`) or is not a
/// moderator of the room sees it. Rendering depends on the event only: once per dialect.
pub fn render_all(event: &Event, moderator: bool, mask: DialectMask) -> crate::fanout::Frames {
    let mut frames: crate::fanout::Frames = Default::default();
    for d in DialectId::in_mask(mask) {
        frames[d.index()] = d.get().render(event, moderator);
    }
    frames
}

/// The connection gates of `event` for every dialect.
pub fn gates_of(event: &Event) -> [u8; DIALECT_COUNT] {
    let mut gates = [0u8; DIALECT_COUNT];
    for d in DialectId::all() {
        gates[d.index()] = d.get().gate(event);
    }
    gates
}
