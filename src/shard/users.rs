//! User-directed delivery on the owner side: notifications (`new`, `read`) live with their
//! user's owner shard and go to every shard holding the user's connections
//! (`Command::DeliverToUser`), rendered by the dialects its connections speak; and the REST
//! activity keepalive of a room's member, handed to the dialects by the room's owner.
//!
//! Invariants: a user's notifications are mutated only by its owner shard, stored before they
//! are delivered (the same `Effects` commit as room writes), at most
//! [`NOTIFICATIONS_PER_USER_MAX`] per user in memory and on disk (the oldest is evicted).

use std::collections::HashSet;
use std::sync::Arc;

use crate::dialect::{DialectId, DialectMask, NotificationEvent};
use crate::fanout::Bundle;
use crate::limits::NOTIFICATIONS_PER_USER_MAX;
use crate::mesh::Command;
use crate::model::ids::now_ms;
use crate::model::room::Reply;
use crate::model::{Notification, Refusal, RoomId, RoomKind, ShardId, UserId};
use crate::store::{NotificationRecord, StoreOp};

use super::commit::Effects;
use super::Shard;
use crate::mesh::Response;

fn shards_in(mask: u64) -> impl Iterator<Item = ShardId> {
    (0..64).map(ShardId).filter(move |s| mask & s.bit() != 0)
}

/// A bundle of a notification change for the dialects in `dialects`, each frame behind its
/// dialect's gate.
fn user_bundle(event: &NotificationEvent<'_>, dialects: DialectMask) -> Arc<Bundle> {
    let mut bundle = Bundle::default();
    for d in DialectId::in_mask(dialects) {
        if let Some((frame, gate)) = d.get().render_notification(event) {
            bundle.frames[d.index()] = Some(frame);
            bundle.gates[d.index()] = gate;
        }
    }
    Arc::new(bundle)
}

impl Shard {
    /// Room owner: `user` acknowledged (is active in) `room`.
    pub fn room_ack(&self, room: RoomId, user: &UserId) -> Response {
        let owned = self.owner.owned.borrow();
        let Some(entry) = owned.rooms.get(&room) else {
            return Response::Refused(Refusal::NotFound("no such room"));
        };
        if !entry.room.members.contains_key(user) {
            return Response::Refused(if entry.room.kind == RoomKind::Public {
                Refusal::Forbidden("join the room first")
            } else {
                Refusal::NotFound("no such room")
            });
        }
        for d in DialectId::all() {
            d.get().room_ack(self, &entry.room, user);
        }
        Response::Done(Reply::Empty)
    }

    /// User owner: stores a new notification, then delivers `new` to the user's connections.
    pub fn notify(&self, mut notification: Notification) -> Effects {
        if let Err(refusal) = self.admit() {
            return Effects::refused(refusal);
        }
        let mut guard = self.owner.owned.borrow_mut();
        let owned = &mut *guard;
        notification.id = owned.notification_ids.next_id();
        notification.created_ms = now_ms();
        notification.read = false;
        let record = owned.users.get_or_default(&notification.user);
        let mut ops = vec![StoreOp::PutNotification(NotificationRecord::from(&notification))];
        while record.notifications.len() >= NOTIFICATIONS_PER_USER_MAX {
            let Some((oldest, _)) = record.notifications.pop_first() else { break };
            ops.push(StoreOp::DeleteNotification {
                user: notification.user.as_str().to_string(),
                id: oldest,
            });
        }
        record.notifications.insert(notification.id, notification.clone());
        let presence = record.conns.presence();
        let mask = presence.shards;
        drop(guard);
        let bundle = user_bundle(&NotificationEvent::New(&notification), presence.dialects);
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
        Effects {
            response: Response::Notifications(vec![notification]),
            commands,
            ops,
            pins: Vec::new(),
        }
    }

    /// User owner: marks `ids` of `user` read (unknown, foreign or already read ids are
    /// skipped) and delivers `read` when any changed.
    pub fn read_notifications(&self, user: &UserId, ids: &[u64]) -> Effects {
        if let Err(refusal) = self.admit() {
            return Effects::refused(refusal);
        }
        let mut owned = self.owner.owned.borrow_mut();
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
        let presence = record.conns.presence();
        let mask = presence.shards;
        drop(owned);
        if read.is_empty() {
            return Effects::answer(Response::Notifications(read));
        }
        let ops =
            read.iter().map(|n| StoreOp::PutNotification(NotificationRecord::from(n))).collect();
        let event = NotificationEvent::Read { read: &read, now_ms: now_ms() };
        let bundle = user_bundle(&event, presence.dialects);
        let commands = shards_in(mask)
            .map(|s| (s, Command::DeliverToUser { user: user.clone(), bundle: bundle.clone() }))
            .collect();
        Effects { response: Response::Notifications(read), commands, ops, pins: Vec::new() }
    }
}
