//! A BIG messenger connection's protocol state and its client frames: pings, requests (each
//! run in its own task and answered with a `response` or the real server's error object),
//! acks and client events; plus the silence watchdog that closes a connection after
//! `big_silence_ms` without any frame.
//!
//! Invariants: at most `REQUEST_IDS_MAX` recent request ids and `IN_FLIGHT_MAX` running
//! requests per connection; the chat-id cache holds at most `CHATS_MAX` entries; nothing a
//! client sends can panic the shard (bad input is answered with an error frame).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{json, Value};

use crate::dialect::big::{self, ClientFrame};
use crate::mesh::Command;
use crate::metrics;
use crate::model::action::{NewMessage, NewRoom};
use crate::model::ids::{now_ms, shard_of_room, shard_of_user};
use crate::model::room::Reply;
use crate::model::{Refusal, Role, RoomAction, RoomId, RoomKind, UserId, Viewer};
use crate::net::conn::Conn;
use crate::shard::big::{chat_list, user_room_views, CHATS_MAX};
use crate::shard::{Request, Response, Shard};

/// Recent request ids remembered per connection for duplicate refusal.
pub const REQUEST_IDS_MAX: usize = 1024;
/// Requests one connection may have running at once.
pub const IN_FLIGHT_MAX: usize = 64;
/// Most messages one `messages` request returns, and the default.
const COUNT_MAX: u64 = 500;
const COUNT_DEFAULT: u64 = 300;
/// Longest chat id and client message id, in bytes.
const ID_BYTES_MAX: usize = 128;
/// How long a connection the server closes (silence, client `offline`) may take to flush its
/// close frame before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// One BIG connection's protocol state.
#[derive(Debug, Default)]
pub struct BigConn {
    /// Recent request ids (set and arrival order), bounded by [`REQUEST_IDS_MAX`].
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
        if ids.1.len() >= REQUEST_IDS_MAX {
            if let Some(oldest) = ids.1.pop_front() {
                ids.0.remove(&oldest);
            }
        }
        ids.0.insert(id.clone());
        ids.1.push_back(id);
        true
    }
}

/// Handles one text frame of a BIG connection.
pub fn on_text(conn: &Rc<Conn>, state: &Rc<BigConn>, payload: &[u8]) {
    let text = String::from_utf8_lossy(payload);
    match big::decode(&text) {
        ClientFrame::Ping => conn.send(big::pong()),
        ClientFrame::Invalid(exception) => conn.send(big::error(&text, &exception)),
        ClientFrame::Ack(id) => {
            let Some(shard) = crate::shard::spawn::current() else {
                return;
            };
            if id.len() <= ID_BYTES_MAX {
                let owner = shard_of_user(&conn.user, shard.shard_count);
                shard.send(owner, Command::BigAck { user: conn.user.clone(), id });
            }
        }
        ClientFrame::Event { payload_type, payload } => match payload_type.as_str() {
            "offline" => close_then_drop(conn, 1000, "offline"),
            "typing" => typing(conn, state, &payload),
            _ => {}
        },
        ClientFrame::Request { id, payload_type, payload } => {
            let Some(shard) = crate::shard::spawn::current() else {
                return;
            };
            let key = match &id {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if !state.remember(key) {
                metrics::inc(&shard.metrics.big_duplicate_requests_total);
                conn.send(big::duplicate(&id));
                return;
            }
            metrics::inc(&shard.metrics.big_requests_total);
            if state.in_flight.get() >= IN_FLIGHT_MAX {
                conn.send(big::error(&text, "too many requests in flight"));
                return;
            }
            if !shard.take_user_action(&conn.user) {
                conn.send(big::error(&text, "rate limited"));
                return;
            }
            state.in_flight.set(state.in_flight.get() + 1);
            let (conn, state, text) = (conn.clone(), state.clone(), text.into_owned());
            tokio_uring::spawn(async move {
                let result = execute(&shard, &conn, &state, &payload_type, &payload).await;
                state.in_flight.set(state.in_flight.get().saturating_sub(1));
                match result {
                    Ok(answer) => conn.send(big::response(&id, now_ms(), answer)),
                    Err(exception) => conn.send(big::error(&text, &exception)),
                }
            });
        }
    }
}

/// A client `typing` event: the room's owner tells the other members (no reply, no error).
fn typing(conn: &Rc<Conn>, state: &Rc<BigConn>, payload: &Value) {
    let Ok(chat_id) = text_field(payload, "chatId") else {
        return;
    };
    let Some(shard) = crate::shard::spawn::current() else {
        return;
    };
    if !shard.take_user_action(&conn.user) {
        return;
    }
    let stop = payload.get("stop").and_then(Value::as_bool).unwrap_or(false);
    let (chat_id, conn, state) = (chat_id.to_string(), conn.clone(), state.clone());
    tokio_uring::spawn(async move {
        if let Ok(room) = resolve(&shard, &conn.user, &state, &chat_id, false).await {
            let owner = shard_of_room(room, shard.shard_count);
            shard.send(owner, Command::BigTyping { room, user: conn.user.clone(), stop });
        }
    });
}

/// Closes `conn` and drops it after a short grace, whether or not the client answers the
/// close, so its user's presence follows at once.
fn close_then_drop(conn: &Rc<Conn>, code: u16, reason: &'static str) {
    conn.close(code, reason);
    let conn = conn.clone();
    tokio_uring::spawn(async move {
        tokio::time::sleep(CLOSE_GRACE).await;
        conn.kill();
    });
}

/// A binary frame: the real server counts any as a ping.
pub fn on_binary(conn: &Rc<Conn>) {
    conn.send(big::pong());
}

/// A BIG connection opened on `shard` (it now notes BIG deliveries for the user owners).
pub fn opened(shard: &Shard) {
    let mut big = shard.big.borrow_mut();
    big.local_conns += 1;
    shard.metrics.big_connections.store(big.local_conns as u64, Ordering::Relaxed);
}

/// A BIG connection of `shard` ended.
pub fn closed(shard: &Shard) {
    let mut big = shard.big.borrow_mut();
    big.local_conns = big.local_conns.saturating_sub(1);
    shard.metrics.big_connections.store(big.local_conns as u64, Ordering::Relaxed);
}

/// Closes `conn` once it has sent no frame for `big_silence_ms` (code 1011, as the real
/// server), then drops it so its session detaches at once.
pub fn watch_silence(shard: &Rc<Shard>, conn: &Rc<Conn>) {
    let (shard, conn) = (shard.clone(), conn.clone());
    tokio_uring::spawn(async move {
        let silence = shard.config.big_silence_ms;
        loop {
            let idle = now_ms().saturating_sub(conn.last_seen_ms.get());
            if conn.is_closed() {
                return;
            }
            if idle >= silence {
                metrics::inc(&shard.metrics.big_silence_closes_total);
                close_then_drop(&conn, 1011, "no ping");
                return;
            }
            tokio::time::sleep(Duration::from_millis(silence - idle)).await;
        }
    });
}

fn text_field<'a>(payload: &'a Value, name: &str) -> Result<&'a str, String> {
    match payload.get(name) {
        Some(Value::String(s)) if s.len() <= ID_BYTES_MAX || name == "message" => Ok(s),
        Some(Value::String(_)) => Err(format!("{name} is too long")),
        Some(Value::Number(_)) if name == "chatId" => Err("chatId must be a string".into()),
        _ => Err(format!("{name} is required")),
    }
}

fn seq_field(payload: &Value, name: &str) -> Result<Option<u64>, String> {
    match payload.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| format!("{name} must be an integer")),
    }
}

fn refusal_text(refusal: &Refusal) -> String {
    refusal.message()
}

/// Asks the room's owner; the reply or the refusal's text.
async fn room_call(shard: &Shard, request: Request, room: RoomId) -> Result<Reply, String> {
    match shard.call(shard_of_room(room, shard.shard_count), request).await {
        Response::Done(reply) => Ok(reply),
        Response::Refused(refusal) => Err(refusal_text(&refusal)),
        _ => Err("unexpected answer".into()),
    }
}

/// Refreshes the chat-id cache from the user's chat list.
async fn refresh_chats(shard: &Shard, user: &UserId, state: &BigConn) -> Result<(), String> {
    let views = user_room_views(shard, user).await.map_err(|r| refusal_text(&r))?;
    let mut chats = HashMap::with_capacity(views.len());
    // Direct rooms last: a dialog's peer id wins over a room id that happens to be equal.
    for view in views.iter().filter(|v| v.kind != RoomKind::Direct) {
        chats.insert(view.id.to_string(), view.id);
    }
    for view in views.iter().filter(|v| v.kind == RoomKind::Direct) {
        chats.insert(big::chat_id(view.kind, view.id, &view.members, user), view.id);
    }
    if chats.len() <= CHATS_MAX {
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
    if !create || chat_id.is_empty() {
        return Err("chat not found".into());
    }
    let spec = NewRoom {
        kind: RoomKind::Direct,
        name: String::new(),
        description: String::new(),
        attributes: "{}".into(),
        members: if chat_id == user.as_str() {
            Vec::new()
        } else {
            vec![(UserId::new(chat_id), Role::Member)]
        },
    };
    let request = Request::CreateRoom { viewer: Viewer::User(user.clone()), spec };
    match shard.call(shard.id, request).await {
        Response::Done(Reply::Room(view)) => {
            // The members' owners heard of the room (RoomJoined) on the same FIFO rings as these
            // barriers, and told this shard, the room's owner, where they are connected before
            // answering: so the first message is delivered to the peer's live sockets.
            for member in [user.clone(), UserId::new(chat_id)] {
                shard.barrier(shard_of_user(&member, shard.shard_count)).await;
            }
            let mut chats = state.chats.borrow_mut();
            if chats.len() < CHATS_MAX {
                chats.insert(chat_id.to_string(), view.id);
            }
            Ok(view.id)
        }
        Response::Refused(refusal) => Err(refusal_text(&refusal)),
        _ => Err("unexpected answer".into()),
    }
}

/// The message with `seq` in `room`.
async fn message_id(shard: &Shard, user: &UserId, room: RoomId, seq: u64) -> Result<u64, String> {
    let request = Request::MessageBySeq { room, viewer: Viewer::User(user.clone()), seq };
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
    payload_type: &str,
    payload: &Value,
) -> Result<Value, String> {
    let user = &conn.user;
    let viewer = Viewer::User(user.clone());
    match payload_type {
        "chats" => {
            let views = user_room_views(shard, user).await.map_err(|r| refusal_text(&r))?;
            Ok(chat_list(&views, user))
        }
        "chat" => {
            let chat_id = text_field(payload, "chatId")?;
            let room = resolve(shard, user, state, chat_id, false).await?;
            let request = Request::Room { room, viewer, action: RoomAction::Get };
            match room_call(shard, request, room).await? {
                Reply::Room(view) => Ok(big::chat(&view, user)),
                _ => Err("chat not found".into()),
            }
        }
        "new" => {
            let chat_id = text_field(payload, "chatId")?;
            let text = payload.get("message").and_then(Value::as_str).unwrap_or("").to_string();
            if text.len() > shard.config.message_bytes_max {
                return Err("message is too long".into());
            }
            let client_id = match payload.get("clientMessageId") {
                None | Some(Value::Null) => None,
                Some(_) => Some(text_field(payload, "clientMessageId")?.to_string()),
            };
            let attachments = match payload.get("attachments") {
                None | Some(Value::Null) => "[]".to_string(),
                Some(a @ Value::Array(_)) => a.to_string(),
                Some(_) => return Err("attachments must be an array".into()),
            };
            let room = resolve(shard, user, state, chat_id, true).await?;
            let new = NewMessage {
                author: user.clone(),
                text,
                parent_id: 0,
                client_message_id: client_id,
                kind: "Regular".into(),
                attachments,
                attributes: "{}".into(),
            };
            let request = Request::Room { room, viewer, action: RoomAction::Post(new) };
            match room_call(shard, request, room).await? {
                Reply::Message(m) => Ok({
                    // Writing in a chat reads everything before it (authors get `read`).
                    let owner = shard_of_room(room, shard.shard_count);
                    let (user, seq) = (user.clone(), Some(m.seq));
                    shard.send(owner, Command::BigMark { room, user, read: true, seq });
                    json!({
                    "messageId": m.seq,
                    "timestamp": m.created_ms,
                    "clientMessageId": m.client_message_id.clone().unwrap_or_default(),
                    })
                }),
                _ => Err("unexpected answer".into()),
            }
        }
        "edit" | "delete" => {
            let chat_id = text_field(payload, "chatId")?;
            let seq = seq_field(payload, "originalMessageId")?
                .ok_or_else(|| "originalMessageId is required".to_string())?;
            let room = resolve(shard, user, state, chat_id, false).await?;
            let message = message_id(shard, user, room, seq).await?;
            let action = if payload_type == "edit" {
                let text = payload.get("message").and_then(Value::as_str).unwrap_or("");
                if text.len() > shard.config.message_bytes_max {
                    return Err("message is too long".into());
                }
                RoomAction::Edit { message, text: text.to_string() }
            } else {
                RoomAction::DeleteMessage(message)
            };
            let request = Request::Message { message, viewer, action };
            match room_call(shard, request, room).await? {
                Reply::Message(m) => Ok(json!({
                    "messageId": m.seq,
                    "timestamp": m.edited_ms,
                    "clientMessageId": m.client_message_id.clone().unwrap_or_default(),
                })),
                _ => Ok(json!({ "messageId": seq, "timestamp": now_ms() })),
            }
        }
        "messages" => {
            let chat_id = text_field(payload, "chatId")?;
            let start = seq_field(payload, "startId")?;
            let end = seq_field(payload, "endId")?;
            let count = seq_field(payload, "count")?.unwrap_or(COUNT_DEFAULT);
            if count == 0 || count > COUNT_MAX {
                return Err(format!("count must be between 1 and {COUNT_MAX}"));
            }
            let room = resolve(shard, user, state, chat_id, false).await?;
            let (after, before) = match (start, end) {
                (Some(_), Some(_)) => return Err("send startId or endId, not both".into()),
                (Some(s), None) => {
                    (Some(message_id(shard, user, room, s).await?.saturating_sub(1)), None)
                }
                (None, Some(e)) => {
                    (None, Some(message_id(shard, user, room, e).await?.saturating_add(1)))
                }
                (None, None) => (None, Some(u64::MAX)),
            };
            let action = RoomAction::History { after, before, limit: count as usize };
            match room_call(shard, Request::Room { room, viewer, action }, room).await? {
                Reply::Messages(list) => {
                    Ok(Value::Array(list.iter().map(|m| big::message_json(m)).collect()))
                }
                _ => Ok(json!([])),
            }
        }
        "dlvrd" | "read" => {
            let chat_id = text_field(payload, "chatId")?;
            let seq = seq_field(payload, "messageId")?;
            let room = resolve(shard, user, state, chat_id, false).await?;
            let read = payload_type == "read";
            let request = Request::Mark { room, user: user.clone(), read, seq };
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
        other => Err(format!("unknown payloadType {other:?}")),
    }
}
