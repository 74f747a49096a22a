//! A BIG messenger connection's protocol state and its client frames: pings, requests (each
//! run in its own task and answered with a `response` or the real server's error object),
//! acks and client events (decoded into `request::{Request, ClientEvent}`).
//!
//! Invariants: at most `BIG_REQUEST_IDS_MAX` recent request ids and `BIG_IN_FLIGHT_MAX` running
//! requests per connection; the chat-id cache holds at most `BIG_CHATS_MAX` entries; nothing a
//! client sends can panic the shard (bad input is answered with an error frame).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;

use serde_json::{json, Value};

use super::owner::{chat_list, user_room_views};
use super::request::{ClientEvent, Request};
use super::wire::{self, ClientFrame};
use super::{send, BigCommand};
use crate::dialect::Session;
use crate::limits::{BIG_CHATS_MAX, BIG_CLOSE_GRACE, BIG_IN_FLIGHT_MAX, BIG_REQUEST_IDS_MAX};
use crate::metrics;
use crate::model::action::{NewMessage, NewRoom};
use crate::model::ids::{now_ms, shard_of_pair, shard_of_room, shard_of_user};
use crate::model::room::Reply;
use crate::model::{MessageId, Refusal, Role, RoomAction, RoomId, RoomKind, Seq, UserId, Viewer};
use crate::net::conn::Conn;
use crate::shard::{Request as CoreRequest, Response, Shard};
use crate::ws::close::CLOSE_NORMAL;

/// One BIG connection's protocol state.
#[derive(Debug, Default)]
pub struct BigConn {
    /// Recent request ids (set and arrival order), bounded by [`BIG_REQUEST_IDS_MAX`].
    ids: RefCell<(HashSet<String>, VecDeque<String>)>,
    /// Requests running now.
    in_flight: Cell<usize>,
    /// `chatId` → room, from the user's chat list (refreshed on a miss).
    chats: RefCell<HashMap<String, RoomId>>,
}

impl BigConn {
    /// Remembers `id`; false when it was seen recently (a duplicate).
    fn remember(&self, id: String) -> bool {
        let mut ids = self.ids.borrow_mut();
        if ids.0.contains(&id) {
            return false;
        }
        if ids.1.len() >= BIG_REQUEST_IDS_MAX {
            if let Some(oldest) = ids.1.pop_front() {
                ids.0.remove(&oldest);
            }
        }
        ids.0.insert(id.clone());
        ids.1.push_back(id);
        true
    }
}

/// A BIG connection's session: its protocol state, shared with its running requests.
#[derive(Default)]
pub struct BigSession(Rc<BigConn>);

impl Session for BigSession {
    fn on_text(&self, shard: &Rc<Shard>, conn: &Rc<Conn>, payload: &[u8]) {
        on_text(shard, conn, &self.0, payload);
    }

    /// A binary frame: the real server counts any as a ping.
    fn on_binary(&self, _shard: &Rc<Shard>, conn: &Rc<Conn>, _payload: &[u8]) {
        conn.send(wire::pong());
    }
}

/// Handles one text frame of a BIG connection.
fn on_text(shard: &Rc<Shard>, conn: &Rc<Conn>, state: &Rc<BigConn>, payload: &[u8]) {
    let text = String::from_utf8_lossy(payload);
    match wire::decode(&text) {
        ClientFrame::Ping => conn.send(wire::pong()),
        ClientFrame::Invalid(exception) => conn.send(wire::error(&text, &exception)),
        ClientFrame::Ack(id) => {
            let owner = shard_of_user(conn.user(), shard.shard_count);
            send(shard, owner, BigCommand::Ack { user: conn.user().clone(), id });
        }
        ClientFrame::Event(ClientEvent::Offline) => close_then_drop(conn, CLOSE_NORMAL, "offline"),
        ClientFrame::Event(ClientEvent::Typing { chat_id, stop }) => {
            typing(shard, conn, state, chat_id, stop)
        }
        ClientFrame::Event(ClientEvent::Ignored) => {}
        ClientFrame::Request { id, request } => {
            let key = match &id {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if !state.remember(key) {
                metrics::inc(&shard.metrics.big_duplicate_requests_total);
                conn.send(wire::duplicate(&id));
                return;
            }
            metrics::inc(&shard.metrics.big_requests_total);
            let request = match request {
                Ok(request) => request,
                Err(exception) => return conn.send(wire::error(&text, &exception)),
            };
            if state.in_flight.get() >= BIG_IN_FLIGHT_MAX {
                conn.send(wire::error(&text, "too many requests in flight"));
                return;
            }
            if !shard.take_user_action(conn.user()) {
                conn.send(wire::error(&text, "rate limited"));
                return;
            }
            state.in_flight.set(state.in_flight.get() + 1);
            let (shard, conn, state, text) =
                (shard.clone(), conn.clone(), state.clone(), text.into_owned());
            tokio_uring::spawn(async move {
                let result = execute(&shard, &conn, &state, request).await;
                state.in_flight.set(state.in_flight.get().saturating_sub(1));
                match result {
                    Ok(answer) => conn.send(wire::response(&id, now_ms(), answer)),
                    Err(exception) => conn.send(wire::error(&text, &exception)),
                }
            });
        }
    }
}

/// A client `typing` event: the room's owner tells the other members (no reply, no error).
fn typing(shard: &Rc<Shard>, conn: &Rc<Conn>, state: &Rc<BigConn>, chat_id: String, stop: bool) {
    if !shard.take_user_action(conn.user()) {
        return;
    }
    let (shard, conn, state) = (shard.clone(), conn.clone(), state.clone());
    tokio_uring::spawn(async move {
        if let Ok(room) = resolve(&shard, conn.user(), &state, &chat_id, false).await {
            let owner = shard_of_room(room, shard.shard_count);
            send(&shard, owner, BigCommand::Typing { room, user: conn.user().clone(), stop });
        }
    });
}

/// Closes `conn` and drops it after a short grace, whether or not the client answers the
/// close, so its user's presence follows at once.
pub(super) fn close_then_drop(conn: &Rc<Conn>, code: u16, reason: &'static str) {
    conn.close(code, reason);
    let conn = conn.clone();
    tokio_uring::spawn(async move {
        tokio::time::sleep(BIG_CLOSE_GRACE).await;
        conn.kill();
    });
}

fn refusal_text(refusal: &Refusal) -> String {
    refusal.message()
}

/// Asks the room's owner; the reply or the refusal's text.
async fn room_call(shard: &Shard, request: CoreRequest, room: RoomId) -> Result<Reply, String> {
    match shard.call(shard_of_room(room, shard.shard_count), request).await {
        Response::Done(reply) => Ok(reply),
        Response::Refused(refusal) => Err(refusal_text(&refusal)),
        _ => Err("unexpected answer".into()),
    }
}

/// Refreshes the chat-id cache from the user's chat list.
async fn refresh_chats(shard: &Shard, user: &UserId, state: &BigConn) -> Result<(), String> {
    let views = user_room_views(shard, user, false).await.map_err(|r| refusal_text(&r))?;
    let mut chats = HashMap::with_capacity(views.len());
    // Direct rooms last: a dialog's peer id wins over a room id that happens to be equal.
    for view in views.iter().filter(|v| v.kind != RoomKind::Direct) {
        chats.insert(view.id.to_string(), view.id);
    }
    for view in views.iter().filter(|v| v.kind == RoomKind::Direct) {
        chats.insert(wire::chat_id(view.kind, view.id, &view.members, user), view.id);
    }
    if chats.len() <= BIG_CHATS_MAX {
        *state.chats.borrow_mut() = chats;
    }
    Ok(())
}

/// The room behind `chat_id`; with `create`, a dialog with that user is created when none
/// exists.
async fn resolve(
    shard: &Shard,
    user: &UserId,
    state: &BigConn,
    chat_id: &str,
    create: bool,
) -> Result<RoomId, String> {
    if let Some(room) = state.chats.borrow().get(chat_id) {
        return Ok(*room);
    }
    refresh_chats(shard, user, state).await?;
    if let Some(room) = state.chats.borrow().get(chat_id) {
        return Ok(*room);
    }
    if !create {
        return Err("chat not found".into());
    }
    // A chat id that is no room of the user's names the peer of a new dialog: a user id.
    let peer = UserId::parse(chat_id).map_err(|e| format!("chat not found: {e}"))?;
    let spec = NewRoom {
        kind: RoomKind::Direct,
        name: String::new(),
        description: String::new(),
        attributes: "{}".into(),
        members: if &peer == user { Vec::new() } else { vec![(peer.clone(), Role::Member)] },
    };
    // The pair's owner makes the dialog, or answers the one the pair has (the peer may be
    // opening it at the same instant).
    let owner = shard_of_pair(user, &peer, shard.shard_count);
    let request = CoreRequest::CreateRoom { viewer: Viewer::User(user.clone()), spec };
    match shard.call(owner, request).await {
        Response::Done(Reply::Room(view)) | Response::Existing(view) => {
            // The members' owners heard of the room (RoomJoined) on the same FIFO rings as these
            // barriers, and told this shard, the room's owner, where they are connected before
            // answering: so the first message is delivered to the peer's live sockets.
            for member in [user.clone(), peer] {
                shard.barrier(shard_of_user(&member, shard.shard_count)).await;
            }
            let mut chats = state.chats.borrow_mut();
            if chats.len() < BIG_CHATS_MAX {
                chats.insert(chat_id.to_string(), view.id);
            }
            Ok(view.id)
        }
        Response::Refused(refusal) => Err(refusal_text(&refusal)),
        _ => Err("unexpected answer".into()),
    }
}

/// The message with `seq` in `room`.
async fn message_id(
    shard: &Shard,
    user: &UserId,
    room: RoomId,
    seq: Seq,
) -> Result<MessageId, String> {
    let request = CoreRequest::MessageBySeq { room, viewer: Viewer::User(user.clone()), seq };
    match room_call(shard, request, room).await? {
        Reply::Message(m) => Ok(m.id),
        _ => Err("messageId is not exists".into()),
    }
}

/// Runs one request; the response payload or the exception text.
async fn execute(
    shard: &Shard,
    conn: &Conn,
    state: &BigConn,
    request: Request,
) -> Result<Value, String> {
    let user = conn.user();
    let viewer = Viewer::User(user.clone());
    let too_long = |text: &str| text.len() > shard.config.message_bytes_max;
    match request {
        Request::Chats => {
            let views = user_room_views(shard, user, true).await.map_err(|r| refusal_text(&r))?;
            Ok(chat_list(&views, user))
        }
        Request::Chat { chat_id } => {
            let room = resolve(shard, user, state, &chat_id, false).await?;
            let (rooms, limit) = (Some(vec![room]), 1);
            let request = CoreRequest::RoomViews { rooms, viewer, limit, summary: true };
            match shard.call(shard_of_room(room, shard.shard_count), request).await {
                Response::Rooms(views) => match views.first() {
                    Some(view) => Ok(wire::chat(view, user)),
                    None => Err("chat not found".into()),
                },
                Response::Refused(refusal) => Err(refusal_text(&refusal)),
                _ => Err("chat not found".into()),
            }
        }
        Request::New { chat_id, message, client_message_id, attachments } => {
            if too_long(&message) {
                return Err("message is too long".into());
            }
            let room = resolve(shard, user, state, &chat_id, true).await?;
            let new = NewMessage {
                author: user.clone(),
                text: message,
                parent_id: MessageId(0),
                client_message_id,
                kind: "Regular".into(),
                attachments,
                attributes: "{}".into(),
            };
            new.check_size(shard.config.stored_message_bytes_max).map_err(|r| r.message())?;
            let request = CoreRequest::Room { room, viewer, action: RoomAction::Post(new) };
            match room_call(shard, request, room).await? {
                Reply::Message(m) => {
                    // Writing in a chat reads everything before it (authors get `read`).
                    let owner = shard_of_room(room, shard.shard_count);
                    let (user, seq) = (user.clone(), Some(m.seq));
                    send(shard, owner, BigCommand::Mark { room, user, read: true, seq });
                    Ok(json!({
                        "messageId": m.seq,
                        "timestamp": m.created_ms,
                        "clientMessageId": m.client_message_id.clone().unwrap_or_default(),
                    }))
                }
                _ => Err("unexpected answer".into()),
            }
        }
        Request::Edit { chat_id, original, message: text } => {
            if too_long(&text) {
                return Err("message is too long".into());
            }
            let room = resolve(shard, user, state, &chat_id, false).await?;
            let message = message_id(shard, user, room, original).await?;
            let bytes_max = shard.config.stored_message_bytes_max;
            let action = RoomAction::Edit { message, text, bytes_max };
            edited(
                room_call(shard, CoreRequest::Message { message, viewer, action }, room),
                original,
            )
            .await
        }
        Request::Delete { chat_id, original } => {
            let room = resolve(shard, user, state, &chat_id, false).await?;
            let message = message_id(shard, user, room, original).await?;
            let action = RoomAction::DeleteMessage(message);
            edited(
                room_call(shard, CoreRequest::Message { message, viewer, action }, room),
                original,
            )
            .await
        }
        Request::Messages { chat_id, start, end, count } => {
            let room = resolve(shard, user, state, &chat_id, false).await?;
            let (after, before) = match (start, end) {
                (Some(s), _) => (
                    Some(MessageId(
                        message_id(shard, user, room, s).await?.get().saturating_sub(1),
                    )),
                    None,
                ),
                (None, Some(e)) => (
                    None,
                    Some(MessageId(
                        message_id(shard, user, room, e).await?.get().saturating_add(1),
                    )),
                ),
                (None, None) => (None, Some(MessageId(u64::MAX))),
            };
            // A page ends early at its byte bound (fewer than `count`: the client pages on
            // from its oldest or newest messageId), and fits the connection's outbound queue.
            let bytes_max =
                shard.config.history_page_bytes_max.min(shard.config.outbound_bytes_max / 2);
            let action = RoomAction::History { after, before, limit: count as usize, bytes_max };
            match room_call(shard, CoreRequest::Room { room, viewer, action }, room).await? {
                Reply::Messages(page) => {
                    Ok(Value::Array(page.messages.iter().map(|m| wire::message_json(m)).collect()))
                }
                _ => Ok(json!([])),
            }
        }
        Request::Mark { chat_id, message: seq, read } => {
            let room = resolve(shard, user, state, &chat_id, false).await?;
            let request = CoreRequest::Mark { room, user: user.clone(), read, seq };
            match shard.call(shard_of_room(room, shard.shard_count), request).await {
                Response::Receipt { seq, at_ms, missed, client_message_id } => {
                    let client_message_id = client_message_id.unwrap_or_default();
                    Ok(if read {
                        json!({ "chatId": chat_id, "messageId": seq, "timestamp": at_ms,
                            "missed": missed, "clientMessageId": client_message_id })
                    } else {
                        json!({ "messageId": seq, "timestamp": at_ms,
                            "clientMessageId": client_message_id })
                    })
                }
                Response::Refused(refusal) => Err(refusal_text(&refusal)),
                _ => Err("unexpected answer".into()),
            }
        }
    }
}

/// The response to an `edit` or `delete` of the message with per-chat id `original`.
async fn edited(
    call: impl std::future::Future<Output = Result<Reply, String>>,
    original: Seq,
) -> Result<Value, String> {
    match call.await? {
        Reply::Message(m) => Ok(json!({
            "messageId": m.seq,
            "timestamp": m.edited_ms,
            "clientMessageId": m.client_message_id.clone().unwrap_or_default(),
        })),
        _ => Ok(json!({ "messageId": original, "timestamp": now_ms() })),
    }
}
