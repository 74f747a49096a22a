//! The BIG dialect's owner-side work: rendering BIG frames of room events (they depend on the
//! room's kind and members, which only the room owner has), the user owner's `chats` event (the
//! whole chat list, sent when one of the user's chats appears or goes, coalesced per user), the
//! `dlvrd`/`read` events of raised receipts, and the user owner's store of unacknowledged
//! events, re-sent every `big_resend_ms` and to a shard where the user connects anew, until
//! acknowledged. That store is durable: each kept event is a dialect record of its user (key
//! `k:<coalescing key>` or `i:<event id>`, value an rkyv [`UnackedRecord`]) written through
//! the shard's commit path; every event goes out only once its record is committed (room
//! events too: the room owner sends them to their recipients' user owners, not to the
//! connection shards); acks delete the record, an overflow all of the user's; [`recovered`] loads
//! them at start.
//!
//! Invariants: a BIG frame is rendered once per distinct variant (a direct room's two sides),
//! never per connection; at most `BIG_CHATS_PENDING_MAX` chat-list refreshes wait on one shard
//! (a user already waiting is coalesced into its pending refresh), and while one is scheduled
//! or being made the user's events from other owners wait behind it (at most
//! `big_unacked_max` per user), so a new chat's `chats` precedes its first `new`; at most `big_unacked_max`
//! unacknowledged events per user (an event with a coalescing key replaces the older one with
//! that key; past the bound the oldest keyed one goes, else the user's BIG connections are told
//! and closed and its store is emptied) and at most `BIG_UNACKED_USERS_MAX` users with any.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{send, wire, BigCommand, ID};
use crate::dialect::{ReceiptRaised, RoomEvent};
use crate::fanout::Bundle;
use crate::limits::{
    BIG_CHATS_DEBOUNCE, BIG_CHATS_MAX, BIG_CHATS_PENDING_MAX, BIG_UNACKED_USERS_MAX,
};
use crate::mesh::Command;
use crate::model::ids::{now_ms, shard_of_room, shard_of_user};
use crate::model::{Event, Refusal, RoomId, RoomKind, RoomView, Seq, ShardId, UserId, Viewer};
use crate::shard::{Request, Response, Shard};
use crate::store::{DialectRecord, StoreOp};

/// The coalescing key of chat-list events.
const CHATS_KEY: &str = "chats";

/// One unacknowledged event.
#[derive(Debug, Clone)]
pub struct Unacked {
    /// The event id.
    pub id: Arc<str>,
    /// Events with the same key replace each other (`chats`, presence, receipts).
    pub key: Option<Arc<str>>,
    /// The frame as the user got it.
    pub frame: bytes::Bytes,
    /// When it was kept, among the shard's kept events (its order after a restart).
    pub order: u64,
}

/// An unacknowledged event as stored (a dialect record's value; its record key is
/// [`record_key`]).
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct UnackedRecord {
    /// [`Unacked::order`].
    pub order: u64,
    /// The event id.
    pub id: String,
    /// The coalescing key.
    pub key: Option<String>,
    /// The frame.
    pub frame: Vec<u8>,
}

impl Unacked {
    /// Its record key: one record per coalescing key (a newer event overwrites it), else one
    /// per event id.
    pub fn record_key(&self) -> String {
        record_key(&self.id, self.key.as_deref())
    }

    /// The store op that keeps it for `user`.
    fn put(&self, user: &UserId) -> Option<StoreOp> {
        let record = UnackedRecord {
            order: self.order,
            id: self.id.to_string(),
            key: self.key.as_deref().map(str::to_string),
            frame: self.frame.to_vec(),
        };
        let value = rkyv::to_bytes::<rkyv::rancor::Error>(&record).ok()?.to_vec();
        Some(StoreOp::PutDialectRecord(DialectRecord {
            dialect: ID.0,
            user: user.as_str().to_string(),
            key: self.record_key(),
            value,
        }))
    }

    /// The store op that forgets it for `user`.
    fn delete(&self, user: &UserId) -> StoreOp {
        StoreOp::DeleteDialectRecord {
            dialect: ID.0,
            user: user.as_str().to_string(),
            key: self.record_key(),
        }
    }
}

/// The record key of an event: `k:<coalescing key>` or `i:<event id>`.
pub fn record_key(id: &str, key: Option<&str>) -> String {
    match key {
        Some(key) => format!("k:{key}"),
        None => format!("i:{id}"),
    }
}

/// An event made elsewhere (a room event, a receipt) for a user whose chat list is being
/// made: kept and sent after that `chats`, so that a new chat is known before its events.
#[derive(Debug)]
pub struct Held {
    /// The event id.
    id: Arc<str>,
    /// Its coalescing key.
    key: Option<Arc<str>>,
    /// The frame.
    frame: bytes::Bytes,
    /// A `new` of this room and seq (see [`BigCommand::Event`]).
    mark: Option<(RoomId, Seq)>,
}

/// The shard's BIG state: its own BIG connections, and as a user owner.
#[derive(Debug, Default)]
pub struct BigState {
    /// BIG connections open on this shard.
    pub local_conns: usize,
    /// Users with a chat-list refresh scheduled.
    pub chats_pending: HashSet<UserId>,
    /// Users with a chat-list refresh scheduled or being made, and the events made elsewhere
    /// for them since (at most `big_unacked_max` each), kept and sent after that `chats`.
    pub chats_holding: HashMap<UserId, Vec<Held>>,
    /// Events this shard made (`chats`, presence, typing), for their ids.
    pub events_made: u64,
    /// Unacknowledged events of the users owned here, oldest first (each also a dialect
    /// record in the store).
    pub unacked: HashMap<UserId, VecDeque<Unacked>>,
    /// Whether the resend task runs.
    pub resend_running: bool,
    /// The next [`Unacked::order`].
    pub kept_next: u64,
}

fn state(shard: &Shard) -> std::cell::RefMut<'_, BigState> {
    shard.dialect_state::<BigState>(ID)
}

/// Counts a BIG connection opened (`delta` 1) or closed (-1) on this shard.
pub fn count_local(shard: &Shard, delta: isize) {
    let mut big = state(shard);
    big.local_conns = big.local_conns.saturating_add_signed(delta);
    shard.metrics.big_connections.store(big.local_conns as u64, Ordering::Relaxed);
}

/// A fresh event id made by this shard: `<kind><shard>-<n>`.
pub fn event_id(shard: &Shard, kind: char) -> String {
    let mut big = state(shard);
    big.events_made += 1;
    format!("{kind}{}-{}", shard.id, big.events_made)
}

/// The BIG frames of a room event, as commands to the user owners of its recipients (the
/// room's members with BIG connections): `new` to everyone but the author (one rendering per
/// distinct `missed` among the recipients), `delete` to everyone but the actor, each side of a
/// direct room seeing the other's id. Each user owner stores the event as unacknowledged
/// before it sends it (`BigCommand::Event`), so a client never gets a room event a crash could
/// take back from its unacknowledged store; the room's bundle carries no BIG frame.
pub fn decorate(cx: &RoomEvent<'_>, shard_count: usize, commands: &mut Vec<(ShardId, Command)>) {
    let (room, receipts) = (cx.room, cx.receipts);
    let now = now_ms();
    // Members with BIG connections, and members whose connections the room owner does not
    // know yet (their user owner drops the event when they have none).
    let recipients = |skip: Option<&UserId>| -> Vec<&UserId> {
        let big = |u: &UserId| {
            cx.connected.get(u).is_some_and(|d| d & ID.bit() != 0) || cx.unknown.contains(u)
        };
        room.members.keys().filter(|u| Some(*u) != skip && big(u)).collect()
    };
    let mut out = |user: &UserId, id: &Arc<str>, frame: &bytes::Bytes, mark: Option<Seq>| {
        let event = BigCommand::Event {
            user: user.clone(),
            id: id.clone(),
            key: None,
            frame: frame.clone(),
            mark: mark.map(|seq| (room.id, seq)),
            if_connected: cx.unknown.contains(user),
        };
        commands.push((shard_of_user(user, shard_count), super::command(event)));
    };
    match cx.event {
        Event::MessageCreated(m) => {
            let chat = wire::chat_id_for_recipients(room.kind, m);
            let id: Arc<str> = Arc::from(format!("n{}", m.id));
            // Recipients by `missed`: one rendering each.
            let mut by_missed: BTreeMap<u64, Vec<&UserId>> = BTreeMap::new();
            for user in recipients(Some(&m.author)) {
                let read = receipts.and_then(|r| r.get(user)).map_or(Seq(0), |r| r.read);
                by_missed.entry(room.last_seq.saturating_sub(read)).or_default().push(user);
            }
            for (missed, users) in &by_missed {
                let frame = wire::message_new(m, &chat, *missed, now);
                for user in users {
                    out(user, &id, &frame, Some(m.seq));
                }
            }
        }
        Event::MessageDeleted { message, .. } => {
            let Some(m) = cx.stored.filter(|m| m.id == *message) else {
                return;
            };
            let id: Arc<str> = Arc::from(format!("d{}", m.id));
            if room.kind == RoomKind::Direct {
                let members: Vec<&UserId> = room.members.keys().collect();
                for viewer in recipients(cx.actor) {
                    let chat = match members.iter().find(|u| **u != viewer) {
                        Some(other) => other.as_str(),
                        None => viewer.as_str(),
                    };
                    out(viewer, &id, &wire::message_deleted(m, chat, now), None);
                }
            } else {
                let frame = wire::message_deleted(m, &room.id.to_string(), now);
                for user in recipients(cx.actor) {
                    out(user, &id, &frame, None);
                }
            }
        }
        _ => {}
    }
}

/// Every room `user` belongs to, as views (at most [`BIG_CHATS_MAX`]), ascending by id; with
/// `summary`, each with the user's [`crate::model::MemberSummary`] (for `missed`, the last
/// message's text and status: per room one pass over its receipts and one copy of a text
/// preview of at most `LAST_MESSAGE_PREVIEW_BYTES_MAX` bytes, on the room's owner).
pub async fn user_room_views(
    shard: &Shard,
    user: &UserId,
    summary: bool,
) -> Result<Vec<Arc<RoomView>>, Refusal> {
    let owner = shard_of_user(user, shard.shard_count);
    let ids = match shard.call(owner, Request::UserRooms { user: user.clone() }).await {
        Response::RoomIds(ids) => ids,
        Response::Refused(refusal) => return Err(refusal),
        _ => return Err(Refusal::Unavailable("the user owner did not answer")),
    };
    let mut by_owner: BTreeMap<ShardId, Vec<RoomId>> = BTreeMap::new();
    for id in ids {
        by_owner.entry(shard_of_room(id, shard.shard_count)).or_default().push(id);
    }
    let mut views = Vec::new();
    for (owner, ids) in by_owner {
        let viewer = Viewer::User(user.clone());
        let request =
            Request::RoomViews { rooms: Some(ids), viewer, limit: BIG_CHATS_MAX, summary };
        match shard.call(owner, request).await {
            Response::Rooms(found) => views.extend(found),
            Response::Refused(refusal) => return Err(refusal),
            _ => {}
        }
    }
    views.sort_unstable_by_key(|v| v.id);
    views.truncate(BIG_CHATS_MAX);
    Ok(views)
}

/// The ChatList payload of `views` for `user`: newest activity first.
pub fn chat_list(views: &[Arc<RoomView>], user: &UserId) -> serde_json::Value {
    let mut sorted: Vec<&Arc<RoomView>> = views.iter().collect();
    sorted.sort_by_key(|v| {
        std::cmp::Reverse(v.last_message.as_ref().map_or(v.created_ms, |m| m.created_ms))
    });
    serde_json::Value::Array(sorted.iter().map(|v| wire::chat_list_item(v, user)).collect())
}

/// User owner: one of `user`'s chats appeared or went; send its BIG connections the whole
/// chat list once the changes arriving together are in (coalesced per user). Events made
/// elsewhere for the user meanwhile (the first `new` of a new dialog) are held and sent after
/// it, as the real server sends `chats` before the `new` of a new chat ([`event_to`]).
pub fn chats_changed(shard: &Rc<Shard>, user: UserId) {
    {
        let mut big = state(shard);
        if big.chats_pending.contains(&user) {
            return;
        }
        if big.chats_pending.len() >= BIG_CHATS_PENDING_MAX {
            crate::metrics::inc(&shard.metrics.big_chats_dropped_total);
            return;
        }
        big.chats_pending.insert(user.clone());
        if big.chats_holding.len() < BIG_CHATS_PENDING_MAX {
            big.chats_holding.entry(user.clone()).or_default();
        }
    }
    let shard = shard.clone();
    tokio_uring::spawn(async move {
        tokio::time::sleep(BIG_CHATS_DEBOUNCE).await;
        state(&shard).chats_pending.remove(&user);
        let views = user_room_views(&shard, &user, true).await;
        let held = {
            let mut big = state(&shard);
            let held = big.chats_holding.remove(&user).unwrap_or_default();
            if big.chats_pending.contains(&user) {
                // A newer refresh is scheduled: later events wait for that one.
                big.chats_holding.insert(user.clone(), Vec::new());
            }
            held
        };
        let (mut ops, mut commands) = (Vec::new(), Vec::new());
        let mask = shard.owner.user_presence(&user).shards;
        if let (Ok(views), true) = (views, mask != 0) {
            let id = event_id(&shard, 'c');
            let frame = wire::event(&id, now_ms(), "chats", chat_list(&views, &user));
            let key = Some(Arc::from(CHATS_KEY));
            ops = keep(&shard, user.clone(), Arc::from(id), key, frame.clone());
            commands = deliveries(&shard, &user, mask, frame);
        }
        for event in held {
            let (more_ops, more_commands) = event_commands(&shard, user.clone(), event);
            ops.extend(more_ops);
            commands.extend(more_commands);
        }
        // Stored before it is sent: the client cannot acknowledge what a restart could lose.
        // One commit: the held events go out after the list, in the order they came.
        shard.commit_then(ops, commands);
    });
}

/// Sends one BIG frame to `user`'s connections on the shards in `mask`.
pub fn deliver_frame(shard: &Shard, user: &UserId, mask: u64, frame: bytes::Bytes) {
    for (s, command) in deliveries(shard, user, mask, frame) {
        shard.send(s, command);
    }
}

/// The commands sending one BIG frame to `user`'s connections on the shards in `mask`.
pub fn deliveries(
    shard: &Shard,
    user: &UserId,
    mask: u64,
    frame: bytes::Bytes,
) -> Vec<(ShardId, Command)> {
    let mut bundle = Bundle::default();
    bundle.frames[ID.index()] = Some(frame);
    let bundle = Arc::new(bundle);
    ShardId::all(shard.shard_count)
        .filter(|s| mask & s.bit() != 0)
        .map(|s| (s, Command::DeliverToUser { user: user.clone(), bundle: bundle.clone() }))
        .collect()
}

/// User owner: keep `user`'s event `id` until acknowledged. Returns the store ops that make
/// the change durable (the caller commits them, before the event is sent when it sends it).
pub fn keep(
    shard: &Rc<Shard>,
    user: UserId,
    id: Arc<str>,
    key: Option<Arc<str>>,
    frame: bytes::Bytes,
) -> Vec<StoreOp> {
    let limit = shard.config.big_unacked_max;
    let mut big = state(shard);
    if big.unacked.len() >= BIG_UNACKED_USERS_MAX && !big.unacked.contains_key(&user) {
        crate::metrics::inc(&shard.metrics.big_unacked_dropped_total);
        return Vec::new();
    }
    let order = big.kept_next;
    big.kept_next += 1;
    let events = big.unacked.entry(user.clone()).or_default();
    if events.iter().any(|e| e.id == id) {
        return Vec::new();
    }
    let mut ops = Vec::with_capacity(2);
    if let Some(key) = &key {
        // Same record key: the new record overwrites the old one.
        events.retain(|e| e.key.as_ref() != Some(key));
    }
    if events.len() >= limit {
        match events.iter().position(|e| e.key.is_some()) {
            Some(i) => {
                if let Some(evicted) = events.remove(i) {
                    ops.push(evicted.delete(&user));
                }
            }
            None => {
                big.unacked.remove(&user);
                crate::metrics::inc(&shard.metrics.big_unacked_overflows_total);
                note_unacked_users(shard, big.unacked.len());
                drop(big);
                overflow(shard, user.clone());
                return vec![forget_all(&user)];
            }
        }
    }
    let event = Unacked { id, key, frame, order };
    ops.extend(event.put(&user));
    events.push_back(event);
    let start = !big.resend_running;
    big.resend_running = true;
    note_unacked_users(shard, big.unacked.len());
    drop(big);
    if start {
        spawn_resend(shard.clone());
    }
    ops
}

/// The store op that forgets every kept event of `user`.
fn forget_all(user: &UserId) -> StoreOp {
    StoreOp::DeleteDialectRecords { dialect: ID.0, user: user.as_str().to_string() }
}

fn note_unacked_users(shard: &Shard, users: usize) {
    shard.metrics.big_unacked_users.store(users as u64, Ordering::Relaxed);
}

/// User owner: keep `user`'s event made elsewhere (a room event, a receipt) until acked, and
/// send it to the user's connections once its record is committed; with `mark` (a `new` of
/// that room and seq), mark it delivered for the user then if it has BIG connections. While
/// the user's chat list is being made (a chat appeared), the event is held and kept and sent
/// after that `chats` (at most `big_unacked_max` held; past it, at once).
pub fn event_to(
    shard: &Rc<Shard>,
    user: UserId,
    id: Arc<str>,
    key: Option<Arc<str>>,
    (frame, mark): (bytes::Bytes, Option<(RoomId, Seq)>),
) {
    let event = Held { id, key, frame, mark };
    let event = {
        let limit = shard.config.big_unacked_max;
        match state(shard).chats_holding.get_mut(&user) {
            Some(held) if held.len() < limit => return held.push(event),
            _ => event,
        }
    };
    let (ops, commands) = event_commands(shard, user, event);
    shard.commit_then(ops, commands);
}

/// The store ops keeping `event` for `user` and the commands sending it (and marking a `new`
/// delivered when the user has BIG connections), to release after those ops' commit.
fn event_commands(
    shard: &Rc<Shard>,
    user: UserId,
    event: Held,
) -> (Vec<StoreOp>, Vec<(ShardId, Command)>) {
    let Held { id, key, frame, mark } = event;
    let presence = shard.owner.user_presence(&user);
    let ops = keep(shard, user.clone(), id, key, frame.clone());
    let mut commands = Vec::new();
    if presence.shards != 0 {
        commands = deliveries(shard, &user, presence.shards, frame);
    }
    if let (Some((room, seq)), true) = (mark, presence.dialects & ID.bit() != 0) {
        // The recipient is online: the message is delivered as it is sent.
        let mark = BigCommand::Mark { room, user, read: false, seq: Some(seq) };
        commands.push((shard_of_room(room, shard.shard_count), super::command(mark)));
    }
    (ops, commands)
}

/// User owner: `user` acknowledged event `id`; its record is deleted.
pub fn ack(shard: &Shard, user: &UserId, id: &str) {
    let mut big = state(shard);
    let mut ops = Vec::new();
    if let Some(events) = big.unacked.get_mut(user) {
        if let Some(i) = events.iter().position(|e| &*e.id == id) {
            if let Some(acked) = events.remove(i) {
                ops.push(acked.delete(user));
            }
        }
        if events.is_empty() {
            big.unacked.remove(user);
        }
    }
    note_unacked_users(shard, big.unacked.len());
    drop(big);
    shard.commit_then(ops, Vec::new());
}

/// At start: the kept events of the users this shard owns, from their records (each user's
/// oldest first, within today's bounds; records past them or that do not decode are deleted).
/// Event ids made from now on start above any this shard made before (they are ms-based).
pub fn recovered(shard: &Rc<Shard>, records: Vec<DialectRecord>) {
    let limit = shard.config.big_unacked_max;
    let mut ops = Vec::new();
    let mut by_user: BTreeMap<String, Vec<Unacked>> = BTreeMap::new();
    for record in records {
        let decoded = rkyv::from_bytes::<UnackedRecord, rkyv::rancor::Error>(&record.value)
            .ok()
            .filter(|r| record_key(&r.id, r.key.as_deref()) == record.key);
        let Some(r) = decoded else {
            tracing::warn!(shard = shard.id.get(), user = %record.user, key = %record.key,
                "deleting a BIG unacknowledged-event record that does not decode");
            let user = record.user.clone();
            ops.push(StoreOp::DeleteDialectRecord { dialect: ID.0, user, key: record.key });
            continue;
        };
        by_user.entry(record.user).or_default().push(Unacked {
            id: Arc::from(r.id),
            key: r.key.map(Arc::from),
            frame: bytes::Bytes::from(r.frame),
            order: r.order,
        });
    }
    let mut big = state(shard);
    big.events_made = big.events_made.max(now_ms().saturating_mul(1000));
    for (user, mut events) in by_user {
        let user = UserId::new(&user);
        events.sort_unstable_by_key(|e| e.order);
        big.kept_next = big.kept_next.max(events.last().map_or(0, |e| e.order + 1));
        if big.unacked.len() >= BIG_UNACKED_USERS_MAX {
            ops.push(forget_all(&user));
            continue;
        }
        let extra = events.len().saturating_sub(limit);
        ops.extend(events.drain(..extra).map(|e| e.delete(&user)));
        big.unacked.insert(user, events.into());
    }
    note_unacked_users(shard, big.unacked.len());
    let start = !big.unacked.is_empty() && !big.resend_running;
    big.resend_running |= start;
    drop(big);
    if start {
        spawn_resend(shard.clone());
    }
    shard.commit_then(ops, Vec::new());
}

/// User owner: `user` now has connections on `to`; send it the unacknowledged events.
pub fn resend_to(shard: &Shard, user: &UserId, to: ShardId) {
    let frames: Vec<bytes::Bytes> = match state(shard).unacked.get(user) {
        Some(events) => events.iter().map(|e| e.frame.clone()).collect(),
        None => return,
    };
    for frame in frames {
        deliver_frame(shard, user, to.bit(), frame);
    }
}

/// User owner: too many unacknowledged events for `user`: close its BIG connections.
fn overflow(shard: &Shard, user: UserId) {
    let mask = shard.owner.user_presence(&user).shards;
    for s in ShardId::all(shard.shard_count).filter(|s| mask & s.bit() != 0) {
        send(shard, s, BigCommand::Overflow { user: user.clone() });
    }
}

/// Connection shard: tell `user`'s BIG connections here they fell too far behind, and close.
pub fn overflow_local(shard: &Shard, user: &UserId) {
    for conn in shard.conn.conns_of(user).iter().filter(|c| c.dialect == ID) {
        conn.send(wire::overflow());
        conn.close(crate::ws::close::CLOSE_POLICY, "too many unacknowledged events");
    }
}

/// The task that re-sends unacknowledged events every `big_resend_ms` while any are kept.
fn spawn_resend(shard: Rc<Shard>) {
    let interval = Duration::from_millis(shard.config.big_resend_ms.max(1));
    tokio_uring::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let due: Vec<(UserId, u64, Vec<bytes::Bytes>)> = {
                let mut big = state(&shard);
                if big.unacked.is_empty() {
                    big.resend_running = false;
                    return;
                }
                big.unacked
                    .iter()
                    .filter_map(|(user, events)| {
                        let mask = shard.owner.user_presence(user).shards;
                        let frames = || events.iter().map(|e| e.frame.clone()).collect();
                        (mask != 0).then(|| (user.clone(), mask, frames()))
                    })
                    .collect()
            };
            for (user, mask, frames) in due {
                crate::metrics::add(&shard.metrics.big_resent_total, frames.len() as u64);
                for frame in frames {
                    deliver_frame(&shard, &user, mask, frame);
                }
            }
        }
    });
}

/// Room owner: the `dlvrd` / `read` events of a raised receipt, one for the newest newly
/// covered message of each other author, sent through the author's user owner (which keeps it
/// until acknowledged). Marks are cumulative: a newer one for the same chat and marker
/// supersedes the kept one.
pub fn receipt_events(shard: &Shard, r: &ReceiptRaised<'_>) -> Vec<(ShardId, Command)> {
    let (room, user) = (r.room, r.user);
    let mut newest: HashMap<&UserId, &Arc<crate::model::Message>> = HashMap::new();
    for m in room.history.iter().rev().take_while(|m| m.seq >= r.from_seq) {
        if m.seq <= r.to_seq && &m.author != user && m.deleted_ms.is_none() {
            newest.entry(&m.author).or_insert(m);
        }
    }
    let kind = if r.read { "read" } else { "dlvrd" };
    let now = now_ms();
    let mut commands = Vec::with_capacity(newest.len());
    for (author, m) in newest {
        let chat = if room.kind == RoomKind::Direct {
            user.as_str().to_string()
        } else {
            room.id.to_string()
        };
        let id = format!("{}{}-{}-{}", &kind[..1], m.id, user, r.at_ms);
        let frame = wire::receipt(&id, now, kind, &chat, user, m, r.at_ms);
        let key = Some(Arc::from(format!("{kind}:{}:{user}", room.id)));
        let owner = shard_of_user(author, shard.shard_count);
        let id = Arc::from(id);
        let event = BigCommand::Event {
            user: author.clone(),
            id,
            key,
            frame,
            mark: None,
            if_connected: false,
        };
        commands.push((owner, super::command(event)));
    }
    commands
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::action::{NewMessage, NewRoom};
    use crate::model::ids::IdAllocator;
    use crate::model::receipt::Receipt;
    use crate::model::Room;
    use crate::model::{MessageId, Role, RoomAction};

    #[test]
    fn new_is_rendered_once_per_distinct_missed_and_skips_the_author() {
        let members: Vec<(UserId, Role)> =
            ["a", "b", "c", "d", "e"].iter().map(|u| (UserId::new(u), Role::Member)).collect();
        let spec = NewRoom {
            kind: RoomKind::Group,
            name: "g".into(),
            description: String::new(),
            attributes: "{}".into(),
            members,
        };
        let mut room =
            Room::create(RoomId(1), spec, &Viewer::Service, 0, 100, usize::MAX, 100).unwrap();
        let mut ids = IdAllocator::new(ShardId(0), 1, 0);
        let post = |room: &mut Room, ids: &mut IdAllocator, author: &str| {
            let new = NewMessage {
                author: UserId::new(author),
                text: "x".into(),
                parent_id: MessageId(0),
                client_message_id: None,
                kind: "Regular".into(),
                attachments: "[]".into(),
                attributes: "{}".into(),
            };
            room.apply(&Viewer::Service, RoomAction::Post(new), ids, 0).unwrap()
        };
        post(&mut room, &mut ids, "a");
        let outcome = post(&mut room, &mut ids, "a");
        // b read everything; c and d nothing.
        let mut receipts = HashMap::new();
        receipts.insert(
            UserId::new("b"),
            Receipt { read: Seq(1), delivered: Seq(1), ..Receipt::default() },
        );
        // Everyone but e has a BIG connection (e: Virola only).
        let mut connected = HashMap::new();
        for u in ["a", "b", "c", "d"] {
            connected.insert(UserId::new(u), ID.bit());
        }
        connected.insert(UserId::new("e"), 1);
        let no_one = HashSet::new();
        let cx = RoomEvent {
            room: &room,
            view: None,
            event: &outcome.events[0],
            stored: None,
            actor: None,
            joined: None,
            receipts: Some(&receipts),
            deleted: false,
            connected: &connected,
            unknown: &no_one,
        };
        let mut commands = Vec::new();
        decorate(&cx, 2, &mut commands);
        let mut frames: HashMap<String, bytes::Bytes> = HashMap::new();
        for (to, command) in commands {
            let Command::Dialect { payload, .. } = command else { panic!("a BIG command") };
            let Ok(event) = payload.downcast::<BigCommand>() else { panic!("a BIG command") };
            let BigCommand::Event { user, id, key, frame, mark, if_connected } = *event else {
                panic!("an event")
            };
            assert!(!if_connected, "every recipient's connections are known");
            assert_eq!(to, shard_of_user(&user, 2), "to the recipient's user owner");
            assert_eq!((&*id, key, mark), ("n2", None, Some((RoomId(1), Seq(2)))));
            frames.insert(user.as_str().to_string(), frame);
        }
        let mut users: Vec<&String> = frames.keys().collect();
        users.sort();
        assert_eq!(users, ["b", "c", "d"], "not the author, not a member without BIG");
        let (b, c, d) = (&frames["b"], &frames["c"], &frames["d"]);
        assert_eq!(c.as_ptr(), d.as_ptr(), "c and d share one rendering");
        assert_ne!(b, c);
        let missed = |f: &bytes::Bytes| {
            let start = if f[1] == 126 { 4 } else { 2 };
            let v: serde_json::Value = serde_json::from_slice(&f[start..]).unwrap();
            v["payload"]["missed"].as_u64().unwrap()
        };
        assert_eq!((missed(b), missed(c)), (1, 2));

        // A member the room owner has not heard of yet (a room made a moment ago) gets the
        // event too, marked for its user owner to drop if it has no BIG connection.
        let only_b: HashMap<UserId, u8> = [(UserId::new("b"), ID.bit())].into_iter().collect();
        let unknown: HashSet<UserId> = [UserId::new("d")].into_iter().collect();
        let cx = RoomEvent { connected: &only_b, unknown: &unknown, ..cx };
        let mut commands = Vec::new();
        decorate(&cx, 2, &mut commands);
        let mut sent: Vec<(String, bool)> = commands
            .into_iter()
            .map(|(_, command)| {
                let Command::Dialect { payload, .. } = command else { panic!("a BIG command") };
                let Ok(event) = payload.downcast::<BigCommand>() else { panic!("a BIG command") };
                let BigCommand::Event { user, if_connected, .. } = *event else { panic!("event") };
                (user.as_str().to_string(), if_connected)
            })
            .collect();
        sent.sort();
        assert_eq!(sent, [("b".to_string(), false), ("d".to_string(), true)]);
    }
}
