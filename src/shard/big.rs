//! The BIG messenger dialect's owner-side work: rendering BIG frames of room events (they
//! depend on the room's kind and members, which only the room owner has), the seq → message
//! lookup BIG requests address messages by, and the user owner's `chats` event (the whole chat
//! list, sent when one of the user's chats appears or goes, coalesced per user); and the user
//! owner's store of unacknowledged events, re-sent every `big_resend_ms` and to a shard where
//! the user connects anew, until acknowledged.
//!
//! Invariants: a BIG frame is rendered once per distinct variant (a direct room's two sides),
//! never per connection; at most `CHATS_PENDING_MAX` chat-list refreshes wait on one shard
//! (a user already waiting is coalesced into its pending refresh); at most `big_unacked_max`
//! unacknowledged events per user (an event with a coalescing key replaces the older one with
//! that key; past the bound the oldest keyed one goes, else the user's BIG connections are told
//! and closed and its store is emptied) and at most `UNACKED_USERS_MAX` users with any.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::dialect::{big, DialectKind};
use crate::fanout::{BigRouting, Bundle};
use crate::mesh::Command;
use crate::model::ids::{now_ms, shard_of_room, shard_of_user};
use crate::model::receipt::Receipt;
use crate::model::room::Reply;
use crate::model::{Event, Message, Refusal, Room, RoomId, RoomKind, RoomView, UserId, Viewer};

use super::request::{Request, Response};
use super::Shard;

/// Users whose chat-list refresh may wait on one shard; more are dropped (and counted).
pub const CHATS_PENDING_MAX: usize = 65_536;
/// Most chats one chat list holds.
pub const CHATS_MAX: usize = 1000;
/// Users with unacknowledged events one shard keeps; events for more are dropped (counted).
pub const UNACKED_USERS_MAX: usize = 100_000;
/// The coalescing key of chat-list events.
const CHATS_KEY: &str = "chats";

/// How long a chat-list refresh waits so that changes arriving together send one list.
const CHATS_DEBOUNCE: Duration = Duration::from_millis(20);

/// One unacknowledged event.
#[derive(Debug, Clone)]
pub struct Unacked {
    /// The event id.
    pub id: Arc<str>,
    /// Events with the same key replace each other (`chats`; presence later).
    pub key: Option<Arc<str>>,
    /// The frame as the user got it.
    pub frame: bytes::Bytes,
}

/// The shard's BIG state: its own BIG connections, and as a user owner.
#[derive(Debug, Default)]
pub struct BigState {
    /// BIG connections open on this shard.
    pub local_conns: usize,
    /// Users with a chat-list refresh scheduled.
    pub chats_pending: HashSet<UserId>,
    /// Events this shard made (`chats`, presence, typing), for their ids.
    pub chats_sent: u64,
    /// Unacknowledged events of the users owned here, oldest first.
    pub unacked: HashMap<UserId, VecDeque<Unacked>>,
    /// Whether the resend task runs.
    pub resend_running: bool,
}

/// Adds BIG frames for `event` of `room` to a freshly made `bundle`: `new` to everyone but the
/// author (one rendering per distinct `missed` among the recipients), `delete` to everyone but
/// `actor`, each side of a direct room seeing the other's id. `stored` is the message the action
/// wrote (a deleted message's tombstone carries its seq); `receipts` the room's marks.
pub fn with_big(
    bundle: Arc<Bundle>,
    room: &Room,
    event: &Event,
    (stored, actor): (Option<&Arc<Message>>, Option<&UserId>),
    receipts: Option<&HashMap<UserId, Receipt>>,
) -> Arc<Bundle> {
    // Rendered only while BIG connections exist (see `dialect::in_use`): grouping members by
    // `missed` walks the whole room.
    if !crate::dialect::in_use(crate::dialect::DialectKind::Big) {
        return bundle;
    }
    let now = now_ms();
    let (plain, routing) = match event {
        Event::MessageCreated(m) => {
            let chat = big::chat_id_for_recipients(room.kind, m);
            let mut routing = BigRouting {
                id: Arc::from(format!("n{}", m.id)),
                skip: Some(m.author.clone()),
                mark: Some(m.seq),
                ..Default::default()
            };
            // Recipients by `missed`; the most common value is the plain frame.
            let mut by_missed: BTreeMap<u64, Vec<&UserId>> = BTreeMap::new();
            for user in room.members.keys().filter(|u| **u != m.author) {
                let read = receipts.and_then(|r| r.get(user)).map_or(0, |r| r.read);
                by_missed.entry(room.last_seq.saturating_sub(read)).or_default().push(user);
            }
            let common = by_missed.iter().max_by_key(|(_, users)| users.len()).map(|(n, _)| *n);
            for (missed, users) in &by_missed {
                if Some(*missed) != common {
                    let frame = big::message_new(m, &chat, *missed, now);
                    for user in users {
                        routing.per_viewer.insert((*user).clone(), frame.clone());
                    }
                }
            }
            (Some(big::message_new(m, &chat, common.unwrap_or(1), now)), routing)
        }
        Event::MessageDeleted { message, .. } => {
            let Some(m) = stored.filter(|m| m.id == *message) else {
                return bundle;
            };
            let mut routing = BigRouting {
                id: Arc::from(format!("d{}", m.id)),
                skip: actor.cloned(),
                ..Default::default()
            };
            let plain = if room.kind == RoomKind::Direct {
                let members: Vec<UserId> = room.members.keys().cloned().collect();
                for viewer in &members {
                    let chat = match members.iter().find(|u| *u != viewer) {
                        Some(other) => other.as_str().to_string(),
                        None => viewer.as_str().to_string(),
                    };
                    routing.per_viewer.insert(viewer.clone(), big::message_deleted(m, &chat, now));
                }
                None
            } else {
                Some(big::message_deleted(m, &room.id.to_string(), now))
            };
            (plain, routing)
        }
        _ => return bundle,
    };
    match Arc::try_unwrap(bundle) {
        Ok(mut owned) => {
            owned.frames[DialectKind::Big as usize] = plain;
            owned.big = Some(Box::new(routing));
            Arc::new(owned)
        }
        Err(shared) => shared,
    }
}

/// Every room `user` belongs to, as views (at most [`CHATS_MAX`]), ascending by id.
pub async fn user_room_views(shard: &Shard, user: &UserId) -> Result<Vec<Arc<RoomView>>, Refusal> {
    let owner = shard_of_user(user, shard.shard_count);
    let ids = match shard.call(owner, Request::UserRooms { user: user.clone() }).await {
        Response::RoomIds(ids) => ids,
        Response::Refused(refusal) => return Err(refusal),
        _ => return Err(Refusal::Unavailable("the user owner did not answer")),
    };
    let mut by_owner: BTreeMap<usize, Vec<RoomId>> = BTreeMap::new();
    for id in ids {
        by_owner.entry(shard_of_room(id, shard.shard_count)).or_default().push(id);
    }
    let mut views = Vec::new();
    for (owner, ids) in by_owner {
        let viewer = Viewer::User(user.clone());
        let request = Request::RoomViews { rooms: Some(ids), viewer, limit: CHATS_MAX };
        match shard.call(owner, request).await {
            Response::Rooms(found) => views.extend(found),
            Response::Refused(refusal) => return Err(refusal),
            _ => {}
        }
    }
    views.sort_unstable_by_key(|v| v.id);
    views.truncate(CHATS_MAX);
    Ok(views)
}

/// The ChatList payload of `views` for `user`: newest activity first.
pub fn chat_list(views: &[Arc<RoomView>], user: &UserId) -> serde_json::Value {
    let mut sorted: Vec<&Arc<RoomView>> = views.iter().collect();
    sorted.sort_by_key(|v| {
        std::cmp::Reverse(v.last_message.as_ref().map_or(v.created_ms, |m| m.created_ms))
    });
    serde_json::Value::Array(sorted.iter().map(|v| big::chat_list_item(v, user)).collect())
}

impl Shard {
    /// Room owner: the message of `room` with per-room `seq`, if it is in the window (deleted
    /// ones too) and `viewer` may see the room.
    pub fn message_by_seq(&self, room: RoomId, viewer: &Viewer, seq: u64) -> Response {
        let owned = self.owned.borrow();
        let Some(entry) = owned.rooms.get(&room) else {
            return Response::Refused(Refusal::NotFound("no such room"));
        };
        if let Viewer::User(u) = viewer {
            if !entry.room.members.contains_key(u) {
                return Response::Refused(Refusal::NotFound("no such room"));
            }
        }
        let history = &entry.room.history;
        match history.binary_search_by(|m| m.seq.cmp(&seq)) {
            Ok(i) => Response::Done(Reply::Message(history[i].clone())),
            Err(_) => Response::Refused(Refusal::NotFound("messageId is not exists")),
        }
    }

    /// User owner: one of `user`'s chats appeared or went; send its BIG connections the whole
    /// chat list once the changes arriving together are in (coalesced per user).
    pub fn big_chats_changed(&self, user: UserId) {
        {
            let mut big = self.big.borrow_mut();
            if big.chats_pending.contains(&user) {
                return;
            }
            if big.chats_pending.len() >= CHATS_PENDING_MAX {
                crate::metrics::inc(&self.metrics.big_chats_dropped_total);
                return;
            }
            big.chats_pending.insert(user.clone());
        }
        tokio_uring::spawn(async move {
            tokio::time::sleep(CHATS_DEBOUNCE).await;
            let Some(shard) = super::spawn::current() else {
                return;
            };
            shard.big.borrow_mut().chats_pending.remove(&user);
            let Ok(views) = user_room_views(&shard, &user).await else {
                return;
            };
            let mask = shard.owned.borrow().users.get(&user).map_or(0, |r| r.shard_mask);
            if mask == 0 {
                return;
            }
            let id = shard.big_event_id('c');
            let frame = big::event(&id, now_ms(), "chats", chat_list(&views, &user));
            let key = Some(Arc::from(CHATS_KEY));
            shard.big_pending(user.clone(), Arc::from(id), key, frame.clone());
            shard.deliver_big_frame(&user, mask, frame);
        });
    }

    /// Sends one BIG frame to `user`'s connections on the shards in `mask`.
    pub fn deliver_big_frame(&self, user: &UserId, mask: u64, frame: bytes::Bytes) {
        let mut bundle = Bundle::default();
        bundle.frames[DialectKind::Big as usize] = Some(frame);
        let bundle = Arc::new(bundle);
        for s in (0..self.shard_count).filter(|s| mask & (1 << s) != 0) {
            self.send(s, Command::DeliverToUser { user: user.clone(), bundle: bundle.clone() });
        }
    }

    /// Connection shard, after delivering a BIG event of `room`: tells the owners of the users
    /// whose BIG connections here got it to keep it until acknowledged (once per user).
    pub fn big_delivered(&self, room: RoomId, routing: &BigRouting, bundle: &Bundle) {
        if routing.transient || self.big.borrow().local_conns == 0 {
            return;
        }
        let mut got: Vec<(UserId, bytes::Bytes)> = Vec::new();
        {
            let subs = self.subs.borrow();
            let conns = self.conns.borrow();
            let mut seen: HashSet<&UserId> = HashSet::new();
            for conn in subs.topic(room).iter().filter_map(|k| conns.get(*k)) {
                if conn.dialect != DialectKind::Big || !seen.insert(&conn.user) {
                    continue;
                }
                if let Some(frame) = bundle.frame_gated(DialectKind::Big, &conn.user, 0) {
                    got.push((conn.user.clone(), frame.clone()));
                }
            }
        }
        let room_owner = shard_of_room(room, self.shard_count);
        for (user, frame) in got {
            if let Some(seq) = routing.mark {
                // The recipient is online: the message is delivered at once.
                let mark =
                    Command::BigMark { room, user: user.clone(), read: false, seq: Some(seq) };
                self.send(room_owner, mark);
            }
            let owner = shard_of_user(&user, self.shard_count);
            self.send(owner, Command::BigPending { user, id: routing.id.clone(), frame });
        }
    }

    /// User owner: keep `user`'s event `id` until acknowledged.
    pub fn big_pending(
        &self,
        user: UserId,
        id: Arc<str>,
        key: Option<Arc<str>>,
        frame: bytes::Bytes,
    ) {
        let limit = self.config.big_unacked_max;
        let mut big = self.big.borrow_mut();
        if big.unacked.len() >= UNACKED_USERS_MAX && !big.unacked.contains_key(&user) {
            crate::metrics::inc(&self.metrics.big_unacked_dropped_total);
            return;
        }
        let events = big.unacked.entry(user.clone()).or_default();
        if events.iter().any(|e| e.id == id) {
            return;
        }
        if let Some(key) = &key {
            events.retain(|e| e.key.as_ref() != Some(key));
        }
        if events.len() >= limit {
            match events.iter().position(|e| e.key.is_some()) {
                Some(i) => {
                    events.remove(i);
                }
                None => {
                    big.unacked.remove(&user);
                    crate::metrics::inc(&self.metrics.big_unacked_overflows_total);
                    drop(big);
                    self.big_overflow(user);
                    return;
                }
            }
        }
        events.push_back(Unacked { id, key, frame });
        let start = !big.resend_running;
        big.resend_running = true;
        self.note_unacked_users(big.unacked.len());
        drop(big);
        if start {
            self.spawn_resend();
        }
    }

    fn note_unacked_users(&self, users: usize) {
        self.metrics.big_unacked_users.store(users as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// User owner: send `user` an event made elsewhere (a receipt) and keep it until acked.
    pub fn big_event_to(
        &self,
        user: UserId,
        id: Arc<str>,
        key: Option<Arc<str>>,
        frame: bytes::Bytes,
    ) {
        let mask = self.owned.borrow().users.get(&user).map_or(0, |r| r.shard_mask);
        self.big_pending(user.clone(), id, key, frame.clone());
        if mask != 0 {
            self.deliver_big_frame(&user, mask, frame);
        }
    }

    /// User owner: `user` acknowledged event `id`.
    pub fn big_ack(&self, user: &UserId, id: &str) {
        let mut big = self.big.borrow_mut();
        if let Some(events) = big.unacked.get_mut(user) {
            events.retain(|e| &*e.id != id);
            if events.is_empty() {
                big.unacked.remove(user);
            }
        }
        self.note_unacked_users(big.unacked.len());
    }

    /// User owner: `user` now has connections on `shard`; send it the unacknowledged events.
    pub fn big_resend_to(&self, user: &UserId, shard: usize) {
        let frames: Vec<bytes::Bytes> = match self.big.borrow().unacked.get(user) {
            Some(events) => events.iter().map(|e| e.frame.clone()).collect(),
            None => return,
        };
        for frame in frames {
            self.deliver_big_frame(user, 1 << shard, frame);
        }
    }

    /// User owner: too many unacknowledged events for `user`: close its BIG connections.
    pub fn big_overflow(&self, user: UserId) {
        let mask = self.owned.borrow().users.get(&user).map_or(0, |r| r.shard_mask);
        for s in (0..self.shard_count).filter(|s| mask & (1 << s) != 0) {
            self.send(s, Command::BigOverflow { user: user.clone() });
        }
    }

    /// Connection shard: tell `user`'s BIG connections here they fell too far behind, and close.
    pub fn big_overflow_local(&self, user: &UserId) {
        let keys: Vec<usize> = self.subs.borrow().conns_of(user).to_vec();
        let conns: Vec<_> = {
            let all = self.conns.borrow();
            keys.iter().filter_map(|k| all.get(*k).cloned()).collect()
        };
        for conn in conns.iter().filter(|c| c.dialect == DialectKind::Big) {
            conn.send(big::overflow());
            conn.close(crate::ws::close::CLOSE_POLICY, "too many unacknowledged events");
        }
    }

    /// Starts the task that re-sends unacknowledged events every `big_resend_ms` while any
    /// are kept.
    fn spawn_resend(&self) {
        let interval = Duration::from_millis(self.config.big_resend_ms.max(1));
        tokio_uring::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(shard) = super::spawn::current() else {
                    return;
                };
                let due: Vec<(UserId, u64, Vec<bytes::Bytes>)> = {
                    let mut big = shard.big.borrow_mut();
                    if big.unacked.is_empty() {
                        big.resend_running = false;
                        return;
                    }
                    let owned = shard.owned.borrow();
                    big.unacked
                        .iter()
                        .filter_map(|(user, events)| {
                            let mask = owned.users.get(user).map_or(0, |r| r.shard_mask);
                            let frames = || events.iter().map(|e| e.frame.clone()).collect();
                            (mask != 0).then(|| (user.clone(), mask, frames()))
                        })
                        .collect()
                };
                for (user, mask, frames) in due {
                    crate::metrics::add(&shard.metrics.big_resent_total, frames.len() as u64);
                    for frame in frames {
                        shard.deliver_big_frame(&user, mask, frame);
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::action::{NewMessage, NewRoom};
    use crate::model::ids::IdAllocator;
    use crate::model::{Role, RoomAction};

    #[test]
    fn new_is_rendered_once_per_distinct_missed_and_skips_the_author() {
        // BIG frames are rendered only while BIG connections exist: count one for this test.
        crate::dialect::connection_opened(crate::dialect::DialectKind::Big);
        let members: Vec<(UserId, Role)> =
            ["a", "b", "c", "d"].iter().map(|u| (UserId::new(u), Role::Member)).collect();
        let spec = NewRoom {
            kind: RoomKind::Group,
            name: "g".into(),
            description: String::new(),
            attributes: "{}".into(),
            members,
        };
        let mut room = Room::create(1, spec, &Viewer::Service, 0, 100, 100).unwrap();
        let mut ids = IdAllocator::new(0, 1, 0);
        let post = |room: &mut Room, ids: &mut IdAllocator, author: &str| {
            let new = NewMessage {
                author: UserId::new(author),
                text: "x".into(),
                parent_id: 0,
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
        receipts.insert(UserId::new("b"), Receipt { read: 1, delivered: 1, ..Receipt::default() });
        let bundle = with_big(
            Arc::new(Bundle::default()),
            &room,
            &outcome.events[0],
            (None, None),
            Some(&receipts),
        );
        let frame = |u: &str| bundle.frame_gated(DialectKind::Big, &UserId::new(u), 0).cloned();
        assert!(frame("a").is_none(), "the author gets its response instead");
        let (b, c, d) = (frame("b").unwrap(), frame("c").unwrap(), frame("d").unwrap());
        assert_eq!(c.as_ptr(), d.as_ptr(), "c and d share one rendering");
        assert_ne!(b, c);
        let missed = |f: &bytes::Bytes| {
            let start = if f[1] == 126 { 4 } else { 2 };
            let v: serde_json::Value = serde_json::from_slice(&f[start..]).unwrap();
            v["payload"]["missed"].as_u64().unwrap()
        };
        assert_eq!((missed(&b), missed(&c)), (1, 2));
        assert_eq!(bundle.big.as_ref().unwrap().per_viewer.len(), 1, "one variant besides plain");
    }
}
