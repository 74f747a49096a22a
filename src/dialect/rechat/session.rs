//! One Rechat socket: its Engine.IO version, whether its client joined the default namespace,
//! its authentication, its keepalive; and its packets (one per WebSocket text frame).
//!
//! Every session of a shard is listed in the shard's [`RechatState`] (anonymous ones too, which
//! the core's sweeper does not see), whose timer task (one per shard, running while sessions
//! exist) sends v4 pings and drops a session silent for `pingInterval + pingTimeout` (v3) or
//! that did not answer a ping within `pingTimeout` (v4).
//!
//! Invariants: a malformed Engine.IO or Socket.IO packet closes this socket only (1002; binary
//! 1003); unknown events are ignored; an action before `Authenticate` is refused through its
//! ack and delivers nothing; a socket's actions run one at a time in arrival order (at most
//! `RECHAT_IN_FLIGHT_MAX` waiting), each answering through its ack.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use slab::Slab;

use super::engineio::{self, Open, Packet, PacketType, Version};
use super::socketio::{self, ClientPacket, Failure, FailureKind, MessageBody, Request};
use super::{announce_online, rechat_bundle, text_frame, Pending, ID};
use crate::dialect::Session;
use crate::limits::{RECHAT_CLOSE_GRACE, RECHAT_IN_FLIGHT_MAX};
use crate::mesh::{Command, Request as CoreRequest, Response};
use crate::metrics;
use crate::model::action::NewMessage;
use crate::model::ids::{now_ms, shard_of_room};
use crate::model::room::Reply;
use crate::model::{Message, MessageId, RoomAction, RoomId, UserId, Viewer};
use crate::net::conn::Conn;
use crate::shard::Shard;
use crate::ws::close::{CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR};

/// 1003: the endpoint does not accept this kind of data (binary packets).
const CLOSE_UNSUPPORTED_DATA: u16 = 1003;

/// A shard's list of Rechat sessions (shared with each session, which leaves it on drop).
pub type SessionList = Rc<RefCell<Slab<Rc<Inner>>>>;

/// Rechat's state on one shard: its sessions (for the keepalive timer) and the
/// `Authenticate`s waiting for their user owner.
#[derive(Default)]
pub struct RechatState {
    /// Every Rechat socket on this shard.
    pub sessions: SessionList,
    /// The keepalive task runs.
    pub timer_running: bool,
    /// Waiting `Authenticate`s by token.
    pub pending: Pending,
    /// The next token.
    pub next_token: u64,
    /// Polling sessions on this shard, by `sid`.
    pub polls: HashMap<String, Rc<super::polling::Poll>>,
    /// Polling requests forwarded to another shard, waiting for their answers, by token.
    pub forwarded: HashMap<u64, futures_channel::oneshot::Sender<bytes::Bytes>>,
}

/// A session's state, shared with its running actions and the shard's timer.
pub struct Inner {
    /// The Engine.IO revision.
    version: Version,
    /// The `sid` chosen before the session started (polling), else one is made at start.
    sid: RefCell<Option<String>>,
    /// The socket, once started.
    conn: RefCell<Weak<Conn>>,
    /// The client joined the default namespace (v3: at once; v4: on its CONNECT).
    connected: Cell<bool>,
    /// When the server last pinged (v4), ms; 0 when no ping waits for its pong.
    ping_sent_ms: Cell<u64>,
    /// When the server last pinged at all (v4), ms.
    last_ping_ms: Cell<u64>,
    /// Actions run one at a time, in arrival order.
    turn: tokio::sync::Mutex<()>,
    /// Actions waiting or running.
    in_flight: Cell<usize>,
    /// The shard's session list and this session's key in it.
    listed: RefCell<Option<(SessionList, usize)>>,
}

/// A Rechat socket's session (held by the shard's WebSocket session slot).
pub struct RechatSession(Rc<Inner>);

impl RechatSession {
    /// A session speaking Engine.IO `version`.
    pub fn new(version: Version) -> RechatSession {
        RechatSession(Rc::new(Inner {
            version,
            sid: RefCell::new(None),
            conn: RefCell::new(Weak::new()),
            connected: Cell::new(false),
            ping_sent_ms: Cell::new(0),
            last_ping_ms: Cell::new(0),
            turn: tokio::sync::Mutex::new(()),
            in_flight: Cell::new(0),
            listed: RefCell::new(None),
        }))
    }
}

impl RechatSession {
    /// A polling session's, whose `sid` its transport already chose.
    pub fn polling(version: Version, sid: String) -> RechatSession {
        let session = RechatSession::new(version);
        *session.0.sid.borrow_mut() = Some(sid);
        session
    }
}

impl Drop for RechatSession {
    fn drop(&mut self) {
        if let Some((list, key)) = self.0.listed.borrow_mut().take() {
            list.borrow_mut().try_remove(key);
        }
    }
}

impl Session for RechatSession {
    /// The open packet (`upgrades`: `["websocket"]` on polling, `[]` on a WebSocket), then `40`
    /// in v3; the session
    /// joins the shard's list and the keepalive timer starts if it was idle.
    fn started(&self, shard: &Rc<Shard>, conn: &Rc<Conn>) {
        let inner = &self.0;
        *inner.conn.borrow_mut() = Rc::downgrade(conn);
        let now = now_ms();
        inner.last_ping_ms.set(now);
        conn.last_seen_ms.set(now);
        // A polling session (its transport chose the sid) may upgrade to a WebSocket.
        let polling_sid = inner.sid.borrow_mut().take();
        let upgrades =
            if polling_sid.is_some() { vec!["websocket".to_string()] } else { Vec::new() };
        let open = Open {
            sid: polling_sid
                .unwrap_or_else(|| engineio::sid_for(shard.id, &rand::random::<[u8; 14]>())),
            upgrades,
            ping_interval_ms: shard.config.rechat_ping_interval_ms,
            ping_timeout_ms: shard.config.rechat_ping_timeout_ms,
            max_payload: Some(shard.config.message_bytes_max as u64),
        };
        conn.send(text_frame(&open.encode(inner.version)));
        if inner.version == Version::V3 {
            inner.connected.set(true);
            conn.send(text_frame(&socketio::connect(false, "")));
        }
        let start_timer = {
            let mut state = shard.dialect_state::<RechatState>(ID);
            let key = state.sessions.borrow_mut().insert(inner.clone());
            *inner.listed.borrow_mut() = Some((state.sessions.clone(), key));
            !std::mem::replace(&mut state.timer_running, true)
        };
        if start_timer {
            tokio_uring::spawn(keepalive(shard.clone()));
        }
    }

    fn on_text(&self, shard: &Rc<Shard>, conn: &Rc<Conn>, payload: &[u8]) {
        let Ok(text) = std::str::from_utf8(payload) else {
            return refuse(shard, conn, CLOSE_PROTOCOL_ERROR, "bad engine.io packet");
        };
        on_packet(shard, conn, &self.0, text);
    }

    fn on_binary(&self, shard: &Rc<Shard>, conn: &Rc<Conn>, _payload: &[u8]) {
        refuse(shard, conn, CLOSE_UNSUPPORTED_DATA, "binary packets are not supported");
    }
}

/// Closes `conn` for bad input (counted) and drops it after a grace.
fn refuse(shard: &Shard, conn: &Rc<Conn>, code: u16, reason: &'static str) {
    metrics::inc(&shard.metrics.protocol_errors_total);
    close_then_drop(conn, code, reason);
}

/// Closes `conn` and drops it after a short grace whether or not the client answers, so its
/// user's presence follows at once.
pub(super) fn close_then_drop(conn: &Rc<Conn>, code: u16, reason: &'static str) {
    conn.close(code, reason);
    let conn = conn.clone();
    tokio_uring::spawn(async move {
        tokio::time::sleep(RECHAT_CLOSE_GRACE).await;
        conn.kill();
    });
}

/// Handles one Engine.IO packet.
fn on_packet(shard: &Rc<Shard>, conn: &Rc<Conn>, inner: &Rc<Inner>, text: &str) {
    let packet = match Packet::decode(text) {
        Ok(packet) => packet,
        Err(engineio::Error::Binary) => {
            return refuse(shard, conn, CLOSE_UNSUPPORTED_DATA, "binary packets are not supported")
        }
        Err(_) => return refuse(shard, conn, CLOSE_PROTOCOL_ERROR, "bad engine.io packet"),
    };
    match packet.kind {
        PacketType::Ping if packet.is_probe() => conn.send(text_frame(engineio::PROBE_PONG)),
        PacketType::Ping => conn.send(text_frame(engineio::PONG)),
        PacketType::Pong => inner.ping_sent_ms.set(0),
        PacketType::Close => close_then_drop(conn, CLOSE_NORMAL, ""),
        PacketType::Upgrade | PacketType::Noop => {}
        PacketType::Open => refuse(shard, conn, CLOSE_PROTOCOL_ERROR, "bad engine.io packet"),
        PacketType::Message => match socketio::decode(packet.data) {
            Ok(packet) => on_socketio(shard, conn, inner, packet),
            Err(socketio::Error::Binary) => {
                refuse(shard, conn, CLOSE_UNSUPPORTED_DATA, "binary packets are not supported")
            }
            Err(_) => refuse(shard, conn, CLOSE_PROTOCOL_ERROR, "bad socket.io packet"),
        },
    }
}

/// Handles one Socket.IO packet.
fn on_socketio(shard: &Rc<Shard>, conn: &Rc<Conn>, inner: &Rc<Inner>, packet: ClientPacket) {
    let v4 = inner.version == Version::V4;
    match packet {
        ClientPacket::Connect { nsp, .. } if nsp != socketio::DEFAULT_NSP => {
            conn.send(text_frame(&socketio::connect_error(v4, &nsp, "Invalid namespace")))
        }
        ClientPacket::Connect { token, .. } => {
            let Some(token) = token.filter(|_| v4) else {
                inner.connected.set(true);
                return conn.send(text_frame(&connect_packet(v4)));
            };
            // The token is checked first, so the namespace's CONNECT answer goes out before
            // any event (Users.Online follows the registration).
            let identity = match verify(shard, &token) {
                Ok(identity) => identity,
                Err(failure) => return conn.send(text_frame(&connect_refused(&failure))),
            };
            inner.connected.set(true);
            conn.send(text_frame(&connect_packet(true)));
            let (shard, conn, inner) = (shard.clone(), conn.clone(), inner.clone());
            tokio_uring::spawn(async move {
                let _turn = inner.turn.lock().await;
                if let Err(failure) = register(&shard, &conn, &identity).await {
                    // Refused after the CONNECT answer (e.g. the user's connection cap): the
                    // namespace is left with a CONNECT_ERROR and the socket closed.
                    inner.connected.set(false);
                    conn.send(text_frame(&connect_refused(&failure)));
                    close_then_drop(&conn, CLOSE_NORMAL, "");
                }
            });
        }
        ClientPacket::Disconnect { nsp } => {
            if nsp == socketio::DEFAULT_NSP {
                inner.connected.set(false);
                close_then_drop(conn, CLOSE_NORMAL, "");
            }
        }
        ClientPacket::Ack { .. } => {}
        ClientPacket::Event { nsp, .. } if nsp != socketio::DEFAULT_NSP => {}
        ClientPacket::Event { .. } if !inner.connected.get() => {}
        ClientPacket::Event { ack, request, .. } => match request {
            Err(failure) => answer(conn, ack, Err(failure)),
            Ok(request) => on_request(shard, conn, inner, ack, request),
        },
    }
}

/// The server's CONNECT of the default namespace (v4 with a fresh Socket.IO sid).
fn connect_packet(v4: bool) -> String {
    let sid = v4.then(|| engineio::sid_for(crate::model::ShardId(0), &rand::random()));
    socketio::connect(v4, sid.as_deref().unwrap_or(""))
}

/// A v4 CONNECT_ERROR for a refused `auth` token: `{"message", "data": {http, message, code}}`.
fn connect_refused(failure: &Failure) -> String {
    let data = serde_json::json!({ "message": failure.message, "data": failure.to_json() });
    format!("44{data}")
}

/// Acks `ack` (when the client asked for one) with `(null, value)` or `(error)`.
fn answer(conn: &Rc<Conn>, ack: Option<u64>, result: Result<Value, Failure>) {
    let Some(id) = ack else {
        return;
    };
    let packet = match result {
        Ok(value) => socketio::ack_ok(id, value),
        Err(failure) => socketio::ack_error(id, &failure),
    };
    conn.send(text_frame(&packet));
}

fn unauthorized(message: &str) -> Failure {
    Failure::new(FailureKind::Unauthorized, message)
}

/// Runs one action after the socket's earlier ones (Rechat handles a socket's actions one at a
/// time: an action sent right after `Authenticate` runs authenticated), at most
/// `RECHAT_IN_FLIGHT_MAX` waiting or running.
fn on_request(
    shard: &Rc<Shard>,
    conn: &Rc<Conn>,
    inner: &Rc<Inner>,
    ack: Option<u64>,
    request: Request,
) {
    if let Request::Unknown(_) = request {
        return;
    }
    if inner.in_flight.get() >= RECHAT_IN_FLIGHT_MAX {
        let failure = Failure::new(FailureKind::TooMany, "Too many requests in flight");
        return answer(conn, ack, Err(failure));
    }
    inner.in_flight.set(inner.in_flight.get() + 1);
    let (shard, conn, inner) = (shard.clone(), conn.clone(), inner.clone());
    tokio_uring::spawn(async move {
        let turn = inner.turn.lock().await;
        run(&shard, &conn, ack, request).await;
        drop(turn);
        inner.in_flight.set(inner.in_flight.get().saturating_sub(1));
    });
}

/// Runs one action and answers its ack.
async fn run(shard: &Rc<Shard>, conn: &Rc<Conn>, ack: Option<u64>, request: Request) {
    if let Request::Authenticate { token } = request {
        let result = authenticate(shard, conn, &token).await;
        return answer(conn, ack, result.map(|user| socketio::user_json(None, &user)));
    }
    let Some(user) = conn.bound().map(|b| b.user.clone()) else {
        return answer(conn, ack, Err(unauthorized("Authentication required")));
    };
    if !shard.take_user_action(&user) {
        let failure = Failure::new(FailureKind::TooMany, "Too many requests");
        return answer(conn, ack, Err(failure));
    }
    match request {
        Request::MessageSend { room, message } => {
            if message.comment.len() > shard.config.message_bytes_max {
                let failure = Failure::new(FailureKind::Validation, "comment is too long");
                return answer(conn, ack, Err(failure));
            }
            match post(shard, user, room, *message).await {
                Ok(m) => {
                    if let Some(id) = ack {
                        conn.send(socketio::message_ack_frame(id, &m));
                    }
                }
                Err(failure) => answer(conn, ack, Err(failure)),
            }
        }
        Request::Typing { room } => typing(shard, user, room, false),
        Request::TypingEnded { room } => typing(shard, user, room, true),
        Request::Authenticate { .. } | Request::Unknown(_) => {}
    }
}

/// Verifies `token` (signature, expiry, logout): its identity, or the failure in Rechat's
/// shape.
fn verify(shard: &Rc<Shard>, token: &str) -> Result<crate::auth::Identity, Failure> {
    shard.authenticate(Some(token)).map_err(|reason| {
        let message =
            if reason.contains("expired") { "Token expired" } else { "Invalid credentials" };
        unauthorized(message)
    })
}

/// Verifies `token`, then [`register`]s the socket.
async fn authenticate(shard: &Rc<Shard>, conn: &Rc<Conn>, token: &str) -> Result<UserId, Failure> {
    register(shard, conn, &verify(shard, token)?).await
}

/// Registers the socket for `identity`'s events and waits until the user's owner sent its
/// presence events; the user, or the failure to answer with. A socket already registered may
/// authenticate again as the same user.
async fn register(
    shard: &Rc<Shard>,
    conn: &Rc<Conn>,
    identity: &crate::auth::Identity,
) -> Result<UserId, Failure> {
    let user = UserId::new(&identity.user);
    if let Some(bound) = conn.bound() {
        return if bound.user == user {
            Ok(user)
        } else {
            Err(Failure::new(FailureKind::Conflict, "This socket is authenticated as another user"))
        };
    }
    match shard.attach(conn, identity, 0) {
        Ok(()) => {}
        Err(crate::shard::AttachRefused::UserFull { .. }) => {
            return Err(Failure::new(FailureKind::TooMany, "Too many connections for this user"));
        }
        Err(_) => {
            metrics::inc(&shard.metrics.connections_refused_total);
            return Err(Failure::new(FailureKind::Unavailable, "This server is full"));
        }
    }
    // The ack promises the socket is subscribed to the user's rooms (`shard::settle`).
    if !shard.settle_subscriptions(&user).await {
        // An owner is stuck: end the socket (it cannot authenticate again once registered);
        // the client reconnects as after any drop.
        shard.detach(conn);
        conn.kill();
        return Err(Failure::new(FailureKind::Unavailable, "The server is overloaded"));
    }
    announce_online(shard, &user).await;
    Ok(user)
}

/// `Message.Send`: stored by the room's owner before the ack; the stored message.
async fn post(
    shard: &Shard,
    user: UserId,
    room: RoomId,
    message: MessageBody,
) -> Result<Arc<Message>, Failure> {
    let new = NewMessage {
        author: user.clone(),
        text: message.comment.clone(),
        parent_id: MessageId(0),
        client_message_id: None,
        kind: "Regular".into(),
        attachments: message.attachments_json(),
        attributes: message.attributes(),
    };
    let viewer = Viewer::User(user);
    let request = CoreRequest::Room { room, viewer, action: RoomAction::Post(new) };
    match shard.call(shard_of_room(room, shard.shard_count), request).await {
        Response::Done(Reply::Message(m)) => Ok(m),
        Response::Refused(refusal) => Err(Failure::from(&refusal)),
        _ => Err(Failure::new(FailureKind::Unavailable, "unexpected answer")),
    }
}

/// `User.Typing` / `User.TypingEnded`: to the room through its owner, members only.
fn typing(shard: &Shard, user: UserId, room: RoomId, ended: bool) {
    let bundle = rechat_bundle(text_frame(&socketio::typing(&user, room, ended)));
    let owner = shard_of_room(room, shard.shard_count);
    shard.send(owner, Command::ToRoom { room, user, bundle });
}

/// The shard's keepalive: every tick, v4 sessions due a ping get one; a v4 session that did
/// not answer its ping within `pingTimeout`, or a v3 session silent for `pingInterval +
/// pingTimeout`, is dropped. Ends when the shard has no Rechat session left.
async fn keepalive(shard: Rc<Shard>) {
    let interval = shard.config.rechat_ping_interval_ms;
    let timeout = shard.config.rechat_ping_timeout_ms;
    let tick = Duration::from_millis((interval.min(timeout) / 4).max(5));
    let ping = text_frame(engineio::PING);
    loop {
        tokio::time::sleep(tick).await;
        let list = shard.dialect_state::<RechatState>(ID).sessions.clone();
        let sessions: Vec<Rc<Inner>> = list.borrow().iter().map(|(_, s)| s.clone()).collect();
        if sessions.is_empty() || shard.shutting_down.get() {
            shard.dialect_state::<RechatState>(ID).timer_running = false;
            return;
        }
        let now = now_ms();
        for inner in sessions {
            let Some(conn) = inner.conn.borrow().upgrade() else {
                continue;
            };
            if conn.closing_since_ms() != 0 {
                continue;
            }
            let silent = now.saturating_sub(conn.last_seen_ms.get());
            let dead = match inner.version {
                Version::V3 => silent > interval + timeout,
                Version::V4 => {
                    let sent = inner.ping_sent_ms.get();
                    sent != 0
                        && conn.last_seen_ms.get() < sent
                        && now.saturating_sub(sent) > timeout
                }
            };
            if dead {
                metrics::inc(&shard.metrics.timeouts_total);
                conn.kill();
                continue;
            }
            if inner.version == Version::V4
                && now.saturating_sub(inner.last_ping_ms.get()) >= interval
            {
                inner.last_ping_ms.set(now);
                if inner.ping_sent_ms.get() == 0 {
                    inner.ping_sent_ms.set(now);
                }
                conn.send(ping.clone());
            }
        }
    }
}
