//! The BIG messenger dialect's owner-side work: rendering BIG frames of room events (they
//! depend on the room's kind and members, which only the room owner has), the seq → message
//! lookup BIG requests address messages by, and the user owner's `chats` event (the whole chat
//! list, sent when one of the user's chats appears or goes, coalesced per user).
//!
//! Invariants: a BIG frame is rendered once per distinct variant (a direct room's two sides),
//! never per connection; at most `CHATS_PENDING_MAX` chat-list refreshes wait on one shard
//! (a user already waiting is coalesced into its pending refresh).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::dialect::{big, DialectKind};
use crate::fanout::{BigRouting, Bundle};
use crate::mesh::Command;
use crate::model::ids::{now_ms, shard_of_room, shard_of_user};
use crate::model::room::Reply;
use crate::model::{Event, Message, Refusal, Room, RoomId, RoomKind, RoomView, UserId, Viewer};

use super::request::{Request, Response};
use super::Shard;

/// Users whose chat-list refresh may wait on one shard; more are dropped (and counted).
pub const CHATS_PENDING_MAX: usize = 65_536;
/// Most chats one chat list holds.
pub const CHATS_MAX: usize = 1000;
/// How long a chat-list refresh waits so that changes arriving together send one list.
const CHATS_DEBOUNCE: Duration = Duration::from_millis(20);

/// The shard's BIG state as a user owner.
#[derive(Debug, Default)]
pub struct BigOwned {
    /// Users with a chat-list refresh scheduled.
    pub chats_pending: HashSet<UserId>,
    /// Chat-list events sent (their ids).
    pub chats_sent: u64,
}

/// Adds BIG frames for `event` of `room` to a freshly made `bundle`: `new` to everyone but the
/// author, `delete` to everyone but `actor`, each side of a direct room seeing the other's id.
/// `stored` is the message the action wrote (a deleted message's tombstone carries its seq).
pub fn with_big(
    bundle: Arc<Bundle>,
    room: &Room,
    event: &Event,
    stored: Option<&Arc<Message>>,
    actor: Option<&UserId>,
) -> Arc<Bundle> {
    let now = now_ms();
    let (plain, routing) = match event {
        Event::MessageCreated(m) => {
            let chat = big::chat_id_for_recipients(room.kind, m);
            let routing = BigRouting { skip: Some(m.author.clone()), per_viewer: Vec::new() };
            (Some(big::message_new(m, &chat, 0, now)), routing)
        }
        Event::MessageDeleted { message, .. } => {
            let Some(m) = stored.filter(|m| m.id == *message) else {
                return bundle;
            };
            let mut routing = BigRouting { skip: actor.cloned(), per_viewer: Vec::new() };
            let plain = if room.kind == RoomKind::Direct {
                let members: Vec<UserId> = room.members.keys().cloned().collect();
                for viewer in &members {
                    let chat = match members.iter().find(|u| *u != viewer) {
                        Some(other) => other.as_str().to_string(),
                        None => viewer.as_str().to_string(),
                    };
                    routing.per_viewer.push((viewer.clone(), big::message_deleted(m, &chat, now)));
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
            let id = {
                let mut big = shard.big.borrow_mut();
                big.chats_sent += 1;
                format!("c{}-{}", shard.id, big.chats_sent)
            };
            let frame = big::event(&id, now_ms(), "chats", chat_list(&views, &user));
            let mut bundle = Bundle::default();
            bundle.frames[DialectKind::Big as usize] = Some(frame);
            let bundle = Arc::new(bundle);
            for s in (0..shard.shard_count).filter(|s| mask & (1 << s) != 0) {
                shard
                    .send(s, Command::DeliverToUser { user: user.clone(), bundle: bundle.clone() });
            }
        });
    }
}
