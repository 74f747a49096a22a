//! The Rechat dialect (`/socket.io/`): Socket.IO over Engine.IO v3 and v4, as protocol sheet
//! 000 describes the real server (`dreamcareer7/real-estate-server`, Socket.IO 1.x), for the
//! real `socket.io-client` 2 (EIO=3) and 4 (EIO=4).
//!
//! - [`engineio`] and [`socketio`]: the pure codec (packets, the Rechat actions as closed enums,
//!   the Rechat events and objects).
//! - [`session`]: one socket's state (version, namespace, authentication, keepalive) and its
//!   packets; every session of a shard is in the shard's [`RechatState`], whose timer (one task
//!   per shard, while sessions exist) does the Engine.IO keepalive.
//! - Here: the `Dialect` hooks and [`RechatCommand`], the dialect's cross-shard messages.
//!
//! Transports: WebSocket (`transport=websocket`, no `sid`): the open packet
//! (`upgrades: []`), then `40` in v3; a v4 client's CONNECT gets `40{"sid"}`, and a token in its
//! `auth` authenticates it. Long-polling ([`polling`], through `Dialect::http`): the same
//! session over an in-process connection (`net::pipe`), on the shard its `sid` names, requests
//! landing elsewhere forwarded there ([`RechatCommand::Poll`]); its open packet offers
//! `upgrades: ["websocket"]`. The upgrade ([`upgrade`]): a WebSocket with the `sid` is handed
//! to the session's shard (`Dialect::home_shard`), answers the probe, and after `5` carries
//! the polling session (which keeps its state: nothing is handed over between connections).
//!
//! Authentication is in band (`Credentials::InBand`): the socket is accepted anonymous; on
//! `Authenticate(token)` it is registered (`Shard::attach`), then its user's owner
//! ([`RechatCommand::Online`]) sends `User.Online` to each of the user's rooms (after the
//! `MemberShards` of the attach, on the same rings, so the room owners already route to the
//! socket) and `Users.Online` to the user's sockets, and answers; then the ack goes out. When
//! the user's last Rechat socket closes its owner sends `User.Offline` to each room.
//!
//! Rendering (on the room owner, once per event): `Message.Sent(room, message)` followed by
//! `Notification` (`UserSentMessage`, not stored) in one frame array; `Room.UserJoined(user)`
//! for a member added; stored notifications as `Notification`.
//!
pub mod cors;
pub mod engineio;
pub mod polling;
pub mod session;
pub mod socketio;
pub mod upgrade;

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_channel::oneshot;

use super::{
    Credentials, Dialect, DialectId, DialectMask, NotificationEvent, Presence, Refusal, RoomEvent,
    Session, Sweep,
};
use crate::config::Config;
use crate::fanout::Bundle;
use crate::http::head::{Method, RequestHead};
use crate::http::response;
use crate::mesh::{Command, Request, Response};
use crate::model::ids::{shard_of_room, shard_of_user};
use crate::model::{Event, RoomId, ShardId, UserId, Viewer};
use crate::net::conn::Conn;
use crate::shard::Shard;
use crate::ws::frame;

pub use session::RechatState;

/// Rechat's place in the registry.
pub const ID: DialectId = DialectId(4);

/// The Rechat dialect.
pub struct Rechat;

/// Rechat's cross-shard messages (the payload of `mesh::Command::Dialect` for [`ID`]).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum RechatCommand {
    /// Connection shard → user owner: a socket of `user` on `from` authenticated (sent after
    /// its attach, on the same ring). The owner tells the user's rooms `User.Online`, its
    /// sockets `Users.Online`, then answers [`RechatCommand::Online`]'s `token` with
    /// [`RechatCommand::Welcomed`].
    Online {
        /// The user.
        user: UserId,
        /// The socket's shard.
        from: ShardId,
        /// The waiting `Authenticate`.
        token: u64,
    },
    /// User owner → connection shard: presence of an `Authenticate` is out; ack it.
    Welcomed {
        /// The waiting `Authenticate`.
        token: u64,
    },
    /// HTTP connection's shard → the shard of polling session `sid`: serve this request (a
    /// `POST` with `body`, else a `GET`) and answer [`RechatCommand::Polled`].
    Poll {
        /// The session.
        sid: String,
        /// A `POST`'s body.
        body: Option<Bytes>,
        /// The HTTP request keeps its connection.
        keep_alive: bool,
        /// Where the HTTP connection is.
        from: ShardId,
        /// The waiting request.
        token: u64,
    },
    /// The answer to a forwarded [`RechatCommand::Poll`]: the complete HTTP response.
    Polled {
        /// The waiting request.
        token: u64,
        /// The response.
        answer: Bytes,
    },
}

/// Sends `command` to shard `to`.
pub fn send(shard: &Shard, to: ShardId, command: RechatCommand) {
    shard.send(to, Command::Dialect { dialect: ID, payload: Box::new(command) });
}

/// One Engine.IO packet's text as a WebSocket text frame.
pub fn text_frame(packet: &str) -> Bytes {
    frame::text(packet.as_bytes())
}

/// A bundle carrying only Rechat's frame.
fn rechat_bundle(frame: Bytes) -> Arc<Bundle> {
    let mut bundle = Bundle::default();
    bundle.frames[ID.index()] = Some(frame);
    Arc::new(bundle)
}

/// The response of an engine.io HTTP error.
fn engineio_error(error: engineio::HttpError) -> Bytes {
    response::response(
        error.status(),
        Some("application/json"),
        error.body().as_bytes(),
        false,
        &[],
    )
}

impl Rechat {
    /// A long-polling request (its origin allowed): a handshake makes a session here; a request
    /// for a session on another shard (its `sid` says which) is forwarded there and answered
    /// back.
    fn polling_http(
        &self,
        shard: &Rc<Shard>,
        head: &RequestHead,
        body: Bytes,
    ) -> super::HttpAnswer {
        let query = head.query.as_deref().unwrap_or("");
        let param = |name| crate::http::query::query_param(query, name);
        let refused = |e: engineio::HttpError| -> super::HttpAnswer {
            let answer = polling::error(e);
            Box::pin(async move { answer })
        };
        let version = match engineio::Version::from_query(param("EIO").as_deref()) {
            Ok(version) => version,
            Err(e) => return refused(e.http()),
        };
        match engineio::Transport::from_query(param("transport").as_deref()) {
            Ok(engineio::Transport::Polling) => {}
            Ok(engineio::Transport::WebSocket) => return refused(engineio::HttpError::BadRequest),
            Err(e) => return refused(e.http()),
        }
        let body = match head.method {
            Method::Get => None,
            Method::Post => Some(body),
            _ => return refused(engineio::HttpError::BadRequest),
        };
        let keep_alive = head.keep_alive;
        let shard = shard.clone();
        let Some(sid) = param("sid").map(|s| s.into_owned()) else {
            if body.is_some() {
                return refused(engineio::HttpError::BadHandshakeMethod);
            }
            return Box::pin(async move { polling::handshake(&shard, version, keep_alive).await });
        };
        // A session lives on one shard of one node; another node does not know it (a cluster
        // needs a load balancer that keeps a client on its node: ARCHITECTURE.md).
        let owner = engineio::shard_of_sid(&sid, shard.shard_count)
            .filter(|owner| shard.topology.local_of(*owner).is_some());
        let Some(owner) = owner else {
            return refused(engineio::HttpError::SessionIdUnknown);
        };
        Box::pin(async move {
            if owner == shard.id {
                return polling::request(&shard, &sid, body, keep_alive).await;
            }
            let (tx, rx) = oneshot::channel();
            let token = {
                let mut state = shard.dialect_state::<RechatState>(ID);
                let token = state.next_token;
                state.next_token += 1;
                state.forwarded.insert(token, tx);
                token
            };
            let from = shard.id;
            send(&shard, owner, RechatCommand::Poll { sid, body, keep_alive, from, token });
            // A GET waits up to pingInterval on the session's shard before it answers.
            let wait = Duration::from_millis(shard.config.rechat_ping_interval_ms)
                + crate::limits::OWNER_REPLY_TIMEOUT;
            let answer = tokio::time::timeout(wait, rx).await;
            shard.dialect_state::<RechatState>(ID).forwarded.remove(&token);
            match answer {
                Ok(Ok(answer)) => answer,
                _ => polling::error(engineio::HttpError::SessionIdUnknown),
            }
        })
    }
}

impl Dialect for Rechat {
    fn name(&self) -> &'static str {
        "rechat"
    }

    fn serves(&self, path: &str, _config: &Config) -> bool {
        path == "/socket.io/" || path == "/socket.io"
    }

    fn endpoint(&self, _config: &Config) -> Option<String> {
        Some("/socket.io/".into())
    }

    fn credentials(&self, _head: &RequestHead) -> Credentials {
        Credentials::InBand
    }

    fn serves_http(&self, path: &str, config: &Config) -> bool {
        self.serves(path, config)
    }

    /// Long-polling, for pages of the allowed origins ([`cors`]): a handshake makes a session
    /// here; a request for a session on another shard (its `sid` says which) is forwarded
    /// there and answered back.
    fn http(&self, shard: &Rc<Shard>, head: &RequestHead, body: Bytes) -> super::HttpAnswer {
        let verdict = cors::judge(head, &shard.config.rechat_cors_origins);
        if verdict == cors::Verdict::Refused {
            let answer = polling::error(engineio::HttpError::Forbidden);
            return Box::pin(async move { answer });
        }
        if head.method == Method::Options {
            let answer = cors::preflight(&verdict, head.keep_alive);
            return Box::pin(async move { answer });
        }
        let headers: Vec<(&'static str, String)> =
            cors::headers(&verdict).into_iter().map(|(n, v)| (n, v.to_string())).collect();
        let answer = self.polling_http(shard, head, body);
        Box::pin(async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            cors::with_headers(answer.await, &headers)
        })
    }

    /// Never asked at the upgrade (authentication is in band); engine.io's 403 if it were.
    fn refuse(&self, _reason: super::RefuseReason<'_>) -> Refusal {
        Refusal::Http(engineio_error(engineio::HttpError::Forbidden))
    }

    fn session(&self) -> Box<dyn Session> {
        Box::new(session::RechatSession::new(engineio::Version::V4))
    }

    /// A WebSocket carrying a polling session's `sid` is served where that session lives.
    fn home_shard(&self, head: &RequestHead, shard_count: usize) -> Option<ShardId> {
        let sid = crate::http::query::query_param(head.query.as_deref()?, "sid")?;
        engineio::shard_of_sid(&sid, shard_count)
    }

    /// `EIO=3|4`, `transport=websocket`, from an allowed origin ([`cors`]): a new session, or
    /// with a `sid` the upgrade of that polling session (on its shard: [`Rechat::home_shard`]),
    /// which must be of the same revision and not ended or upgraded already.
    fn session_for(
        &self,
        shard: &Rc<Shard>,
        head: &RequestHead,
    ) -> Result<Box<dyn Session>, Refusal> {
        let query = head.query.as_deref().unwrap_or("");
        let param = |name| crate::http::query::query_param(query, name);
        let refuse = |e: engineio::HttpError| Err(Refusal::Http(engineio_error(e)));
        if cors::judge(head, &shard.config.rechat_cors_origins) == cors::Verdict::Refused {
            return refuse(engineio::HttpError::Forbidden);
        }
        let version = match engineio::Version::from_query(param("EIO").as_deref()) {
            Ok(version) => version,
            Err(e) => return refuse(e.http()),
        };
        match engineio::Transport::from_query(param("transport").as_deref()) {
            Ok(engineio::Transport::WebSocket) => {}
            Ok(engineio::Transport::Polling) => {
                return refuse(engineio::HttpError::TransportUnknown)
            }
            Err(e) => return refuse(e.http()),
        }
        let Some(sid) = param("sid") else {
            return Ok(Box::new(session::RechatSession::new(version)));
        };
        let poll = shard.dialect_state::<RechatState>(ID).polls.get(sid.as_ref()).cloned();
        match poll {
            None => refuse(engineio::HttpError::SessionIdUnknown),
            Some(poll) if poll.version() != version || !poll.upgradable() => {
                refuse(engineio::HttpError::BadRequest)
            }
            Some(poll) => Ok(Box::new(upgrade::UpgradeSession::new(poll))),
        }
    }

    fn render_notification(&self, event: &NotificationEvent<'_>) -> Option<(Bytes, u8)> {
        match event {
            NotificationEvent::New(n) => Some((text_frame(&socketio::notification(n)), 0)),
            NotificationEvent::Read { .. } => None,
        }
    }

    /// `Message.Sent(room, message)` then its `Notification`, one rendering for every member;
    /// `Room.UserJoined(user)` when a member joined.
    fn decorate(
        &self,
        _shard: &Shard,
        cx: &RoomEvent<'_>,
        bundle: &mut Bundle,
        _commands: &mut Vec<(crate::model::ShardId, crate::mesh::Command)>,
    ) {
        match cx.event {
            Event::MessageCreated(m) => {
                bundle.frames[ID.index()] = Some(socketio::message_sent_frames(cx.room, m));
            }
            Event::RoomUpdated(view) => {
                if let Some(user) = cx.joined {
                    bundle.frames[ID.index()] =
                        Some(text_frame(&socketio::room_user_joined(view, user)));
                }
            }
            _ => {}
        }
    }

    /// The user's last Rechat socket closed: `User.Offline` to each of its rooms.
    fn presence_changed(
        &self,
        shard: &Rc<Shard>,
        user: &UserId,
        before: Presence,
        after: Presence,
        _attached: Option<(ShardId, DialectMask)>,
    ) {
        if before.dialects & ID.bit() != 0 && after.dialects & ID.bit() == 0 {
            let bundle = rechat_bundle(text_frame(&socketio::user_offline(user)));
            for room in user_rooms(shard, user) {
                let owner = shard_of_room(room, shard.shard_count);
                let (user, bundle) = (user.clone(), bundle.clone());
                shard.send(owner, Command::ToRoom { room, user, bundle });
            }
        }
    }

    /// Across nodes a [`RechatCommand`] is its postcard encoding.
    fn encode_command(&self, payload: &(dyn Any + Send)) -> Option<Vec<u8>> {
        postcard::to_allocvec(payload.downcast_ref::<RechatCommand>()?).ok()
    }

    fn decode_command(&self, bytes: &[u8]) -> Option<Box<dyn Any + Send>> {
        let command: RechatCommand = postcard::from_bytes(bytes).ok()?;
        Some(Box::new(command))
    }

    fn on_command(&self, shard: &Rc<Shard>, command: Box<dyn Any + Send>) {
        let Ok(command) = command.downcast::<RechatCommand>() else {
            return;
        };
        match *command {
            RechatCommand::Online { user, from, token } => online(shard, user, from, token),
            RechatCommand::Poll { sid, body, keep_alive, from, token } => {
                let shard = shard.clone();
                tokio_uring::spawn(async move {
                    let answer = polling::request(&shard, &sid, body, keep_alive).await;
                    send(&shard, from, RechatCommand::Polled { token, answer });
                });
            }
            RechatCommand::Polled { token, answer } => {
                let waiter = shard.dialect_state::<RechatState>(ID).forwarded.remove(&token);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(answer);
                }
            }
            RechatCommand::Welcomed { token } => {
                let waiter = shard.dialect_state::<RechatState>(ID).pending.remove(&token);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(());
                }
            }
        }
    }

    fn shard_state(&self) -> Box<dyn Any> {
        Box::new(RechatState::default())
    }

    /// Socket.IO's server-side DISCONNECT (`41`: the client does not reconnect), then a close.
    fn logged_out(&self, conn: &Rc<Conn>) {
        conn.send(text_frame(&socketio::disconnect(socketio::DEFAULT_NSP)));
        session::close_then_drop(conn, crate::ws::close::CLOSE_POLICY, "session logged out");
    }

    /// Engine.IO pings and the silence rule are the session timer's ([`RechatState`]), for
    /// registered and anonymous sockets alike: no WebSocket pings, no core idle timeout.
    fn sweep(&self, _shard: &Rc<Shard>, _conn: &Rc<Conn>, _now: u64, _previous: u64) -> Sweep {
        Sweep::Kept
    }
}

/// User owner: `user`'s rooms.
fn user_rooms(shard: &Shard, user: &UserId) -> Vec<RoomId> {
    let owned = shard.owner.owned.borrow();
    owned.users.get(user).map(|r| r.rooms.iter().copied().collect()).unwrap_or_default()
}

/// User owner: a socket of `user` on `from` authenticated: `User.Online` to each of its rooms
/// (after the attach's `MemberShards`, on the same rings), then `Users.Online` (its rooms'
/// members with Rechat sockets, itself included) to all its sockets, then the answer.
fn online(shard: &Rc<Shard>, user: UserId, from: ShardId, token: u64) {
    let rooms = user_rooms(shard, &user);
    let bundle = rechat_bundle(text_frame(&socketio::user_online(&user)));
    let mut by_owner: BTreeMap<ShardId, Vec<RoomId>> = BTreeMap::new();
    for room in rooms {
        let owner = shard_of_room(room, shard.shard_count);
        let (user, bundle) = (user.clone(), bundle.clone());
        shard.send(owner, Command::ToRoom { room, user, bundle });
        by_owner.entry(owner).or_default().push(room);
    }
    let shard = shard.clone();
    tokio_uring::spawn(async move {
        let mut online = vec![user.clone()];
        for (owner, rooms) in by_owner {
            let viewer = Viewer::User(user.clone());
            let request = Request::OnlineMembers { rooms, viewer, dialects: ID.bit() };
            if let Response::Users(users) = shard.call(owner, request).await {
                online.extend(users);
            }
        }
        online.sort_unstable();
        online.dedup();
        let bundle = rechat_bundle(text_frame(&socketio::users_online(&online)));
        let shards = {
            let owned = shard.owner.owned.borrow();
            owned.users.get(&user).map_or(0, |r| r.conns.presence().shards)
        };
        for s in ShardId::all(shard.shard_count).filter(|s| shards & s.bit() != 0) {
            let (user, bundle) = (user.clone(), bundle.clone());
            shard.send(s, Command::DeliverToUser { user, bundle });
        }
        send(&shard, from, RechatCommand::Welcomed { token });
    });
}

/// Connection shard: tells `user`'s owner a socket authenticated and waits (bounded) until its
/// presence events are out.
pub async fn announce_online(shard: &Rc<Shard>, user: &UserId) {
    let (tx, rx) = oneshot::channel();
    let token = {
        let mut state = shard.dialect_state::<RechatState>(ID);
        let token = state.next_token;
        state.next_token += 1;
        state.pending.insert(token, tx);
        token
    };
    let owner = shard_of_user(user, shard.shard_count);
    send(shard, owner, RechatCommand::Online { user: user.clone(), from: shard.id, token });
    let _ = tokio::time::timeout(crate::limits::OWNER_REPLY_TIMEOUT, rx).await;
    shard.dialect_state::<RechatState>(ID).pending.remove(&token);
}

/// Waiting `Authenticate`s by token (see [`announce_online`]).
pub type Pending = HashMap<u64, oneshot::Sender<()>>;
