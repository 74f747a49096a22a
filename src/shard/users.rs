//! User-directed delivery on the owner side: notifications (`new`, `read`) live with their
//! user's owner shard and go to every shard holding the user's connections
//! (`Command::DeliverToUser`); and public-room activity (the osu! chat keepalive), kept by the
//! room's owner.
//!
//! Invariants: a user's notifications are mutated only by its owner shard, stored before they
//! are delivered (the same `Effects` commit as room writes), at most
//! [`NOTIFICATIONS_PER_USER_MAX`] per user in memory and on disk (the oldest is evicted);
//! a public room's `active` map holds only members (bounded by the member limit).

use std::collections::HashSet;
use std::sync::Arc;

use crate::dialect::{osu, DialectKind};
use crate::fanout::{Bundle, EventClass};
use crate::mesh::Command;
use crate::model::ids::now_ms;
use crate::model::room::Reply;
use crate::model::{Event, Notification, Refusal, RoomId, RoomKind, UserId};
use crate::store::{NotificationRecord, StoreOp};

use super::commit::Effects;
use super::owner::OwnedRoom;
use super::request::Response;
use super::Shard;

/// Notifications kept per user; posting one more evicts the oldest.
pub const NOTIFICATIONS_PER_USER_MAX: usize = 1000;
/// Public rooms deliver chat to osu! connections of members active this recently (osu!'s
/// `CHAT_ACTIVITY_TIMEOUT`).
pub const ACTIVE_WINDOW_MS: u64 = 60_000;

fn shards_in(mask: u64) -> impl Iterator<Item = usize> {
    (0..64).filter(move |s| mask & (1 << s) != 0)
}

/// Room owner: records activity (posting, joining) of a public room's members, and returns
/// who is active now when `events` hold a new message (the osu! allow-list), else `None`.
pub fn note_activity(
    entry: &mut OwnedRoom,
    events: &[Event],
    joined: Option<&UserId>,
    now: u64,
) -> Option<HashSet<UserId>> {
    if entry.room.kind != RoomKind::Public {
        return None;
    }
    if let Some(user) = joined {
        entry.active.insert(user.clone(), now);
    }
    let mut posted = false;
    for event in events {
        if let Event::MessageCreated(m) = event {
            if entry.room.members.contains_key(&m.author) {
                entry.active.insert(m.author.clone(), now);
            }
            posted = true;
        }
    }
    if !posted {
        return None;
    }
    let since = now.saturating_sub(ACTIVE_WINDOW_MS);
    entry.active.retain(|_, at| *at >= since);
    Some(entry.active.keys().cloned().collect())
}

/// A bundle for one user's connections.
fn user_bundle(osu_frame: bytes::Bytes) -> Arc<Bundle> {
    let mut bundle = Bundle { class: EventClass::Notification, ..Bundle::default() };
    bundle.frames[DialectKind::Osu as usize] = Some(osu_frame);
    Arc::new(bundle)
}

impl Shard {
    /// Room owner: `user` acknowledged (is active in) `room`.
    pub fn room_ack(&self, room: RoomId, user: &UserId) -> Response {
        let mut owned = self.owned.borrow_mut();
        let Some(entry) = owned.rooms.get_mut(&room) else {
            return Response::Refused(Refusal::NotFound("no such room"));
        };
        if !entry.room.members.contains_key(user) {
            return Response::Refused(if entry.room.kind == RoomKind::Public {
                Refusal::Forbidden("join the room first")
            } else {
                Refusal::NotFound("no such room")
            });
        }
        if entry.room.kind == RoomKind::Public {
            entry.active.insert(user.clone(), now_ms());
        }
        Response::Done(Reply::Empty)
    }

    /// User owner: stores a new notification, then delivers `new` to the user's connections.
    pub fn notify(&self, mut notification: Notification) -> Effects {
        if let Err(refusal) = self.admit() {
            return Effects::refused(refusal);
        }
        let mut guard = self.owned.borrow_mut();
        let owned = &mut *guard;
        notification.id = owned.notification_ids.next_id();
        notification.created_ms = now_ms();
        notification.read = false;
        let record = owned.users.entry(notification.user.clone()).or_default();
        let mut ops = vec![StoreOp::PutNotification(NotificationRecord::from(&notification))];
        while record.notifications.len() >= NOTIFICATIONS_PER_USER_MAX {
            let Some((oldest, _)) = record.notifications.pop_first() else { break };
            ops.push(StoreOp::DeleteNotification {
                user: notification.user.as_str().to_string(),
                id: oldest,
            });
        }
        record.notifications.insert(notification.id, notification.clone());
        let mask = record.shard_mask;
        drop(guard);
        let bundle = user_bundle(osu::notification_new(&notification));
        let commands = shards_in(mask)
            .map(|s| {
                (
                    s,
                    Command::DeliverToUser {
                        user: notification.user.clone(),
                        bundle: bundle.clone(),
                    },
                )
            })
            .collect();
        Effects { response: Response::Notifications(vec![notification]), commands, ops }
    }

    /// User owner: marks `ids` of `user` read (unknown, foreign or already read ids are
    /// skipped) and delivers `read` when any changed.
    pub fn read_notifications(&self, user: &UserId, ids: &[u64]) -> Effects {
        if let Err(refusal) = self.admit() {
            return Effects::refused(refusal);
        }
        let mut owned = self.owned.borrow_mut();
        let Some(record) = owned.users.get_mut(user) else {
            return Effects::answer(Response::Notifications(Vec::new()));
        };
        let mut read = Vec::new();
        let mut seen = HashSet::new();
        for id in ids {
            if !seen.insert(*id) {
                continue;
            }
            if let Some(n) = record.notifications.get_mut(id) {
                if !n.read {
                    n.read = true;
                    read.push(n.clone());
                }
            }
        }
        let mask = record.shard_mask;
        drop(owned);
        if read.is_empty() {
            return Effects::answer(Response::Notifications(read));
        }
        let ops =
            read.iter().map(|n| StoreOp::PutNotification(NotificationRecord::from(n))).collect();
        let bundle = user_bundle(osu::notifications_read(&read, now_ms()));
        let commands = shards_in(mask)
            .map(|s| (s, Command::DeliverToUser { user: user.clone(), bundle: bundle.clone() }))
            .collect();
        Effects { response: Response::Notifications(read), commands, ops }
    }
}
