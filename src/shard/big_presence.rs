//! BIG presence and typing. Presence: when a user's first connection opens (or its last one
//! closes), its user owner gathers its direct-room peers and tells each peer's owner
//! (`BigPresence`), which sends `online` / `offline` (with `lastSeen`) to the peer's
//! connections, keeps it unacknowledged under the key `<user>::status` (so a newer state
//! replaces an older one), and — for `online` — answers with the peer's own `online` when the
//! peer is connected. Typing: the room owner renders `typing` once per variant and sends it to
//! the room's subscriber shards like any event, but it is never kept or re-sent.
//!
//! Invariants: presence is sent only when the user is still in that state once its peers are
//! known (an `online` that raced with the last close is dropped); a user is told only about
//! peers it shares a direct room with, at most `CHATS_MAX` of them.

use std::collections::HashSet;
use std::sync::Arc;

use crate::dialect::{big, DialectKind};
use crate::fanout::{BigRouting, Bundle};
use crate::mesh::Command;
use crate::model::ids::{now_ms, shard_of_user};
use crate::model::{RoomId, RoomKind, UserId};

use super::big::{user_room_views, CHATS_MAX};
use super::Shard;

impl Shard {
    /// User owner: `user`'s first connection opened (`online`) or its last one closed.
    pub fn big_online_changed(&self, user: UserId, online: bool) {
        let last_seen = if online { 0 } else { now_ms() };
        tokio_uring::spawn(async move {
            let Some(shard) = super::spawn::current() else {
                return;
            };
            let Ok(views) = user_room_views(&shard, &user).await else {
                return;
            };
            let mask = shard.owned.borrow().users.get(&user).map_or(0, |r| r.shard_mask);
            if (mask != 0) != online {
                return;
            }
            if online {
                // Messages addressed to the user are delivered now (their authors get `dlvrd`).
                for view in views.iter().filter(|v| v.last_seq > 0) {
                    let (room, user) = (view.id, user.clone());
                    let command = Command::BigMark { room, user, read: false, seq: None };
                    shard.send(crate::model::ids::shard_of_room(room, shard.shard_count), command);
                }
            }
            let peers: HashSet<UserId> = views
                .iter()
                .filter(|v| v.kind == RoomKind::Direct)
                .flat_map(|v| v.members.iter().map(|(u, _)| u.clone()))
                .filter(|u| u != &user)
                .take(CHATS_MAX)
                .collect();
            for peer in peers {
                let owner = shard_of_user(&peer, shard.shard_count);
                let about = user.clone();
                let command =
                    Command::BigPresence { to: peer, about, online, last_seen, answer: online };
                shard.send(owner, command);
            }
        });
    }

    /// User owner of `to`: `about` came online or went offline.
    pub fn big_presence(
        &self,
        to: UserId,
        about: UserId,
        online: bool,
        last_seen: u64,
        answer: bool,
    ) {
        let mask = self.owned.borrow().users.get(&to).map_or(0, |r| r.shard_mask);
        if mask == 0 {
            return;
        }
        let id = self.big_event_id('p');
        let frame = big::presence(&id, now_ms(), &about, online, last_seen);
        let key: Arc<str> = Arc::from(format!("{about}::status"));
        self.big_pending(to.clone(), Arc::from(id), Some(key), frame.clone());
        self.deliver_big_frame(&to, mask, frame);
        if answer {
            let owner = shard_of_user(&about, self.shard_count);
            let command = Command::BigPresence {
                to: about,
                about: to,
                online: true,
                last_seen: 0,
                answer: false,
            };
            self.send(owner, command);
        }
    }

    /// A fresh event id made by this shard: `<kind><shard>-<n>`.
    pub fn big_event_id(&self, kind: char) -> String {
        let mut big = self.big.borrow_mut();
        big.chats_sent += 1;
        format!("{kind}{}-{}", self.id, big.chats_sent)
    }

    /// Room owner: `user` types in `room` (or stopped); its other members' BIG connections get
    /// `typing`, a direct room's peer with `chatId` = the typer.
    pub fn big_typing(&self, room: RoomId, user: UserId, stop: bool) {
        let id = self.big_event_id('t');
        let owned = self.owned.borrow();
        let Some(entry) = owned.rooms.get(&room) else {
            return;
        };
        if !entry.room.members.contains_key(&user) {
            return;
        }
        let chat = if entry.room.kind == RoomKind::Direct {
            user.as_str().to_string()
        } else {
            room.to_string()
        };
        let mut bundle = Bundle::default();
        bundle.frames[DialectKind::Big as usize] =
            Some(big::typing(&id, now_ms(), &user, &chat, stop));
        bundle.big = Some(Box::new(BigRouting {
            id: Arc::from(id),
            transient: true,
            skip: Some(user),
            ..Default::default()
        }));
        let bundle = Arc::new(bundle);
        let shards: Vec<usize> = entry
            .shard_counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(s, _)| s)
            .collect();
        drop(owned);
        for s in shards {
            self.send(s, Command::Deliver { room, bundle: bundle.clone() });
        }
    }
}
