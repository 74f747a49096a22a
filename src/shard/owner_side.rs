//! The owner side of a shard: the rooms and users hashed to it (`Owned`), its durable store,
//! and the writes waiting for their commit.
//!
//! Invariants: only this shard mutates what it owns; nothing is answered or broadcast before
//! its store ops are durable (`Commits`, see `commit`); the lookups here read owned state
//! only and never wait.

use std::cell::RefCell;

use super::commit::Commits;
use super::owner::Owned;
use crate::dialect::{DialectMask, Presence};
use crate::mesh::Response;
use crate::model::room::Reply;
use crate::model::{Refusal, RoomId, RoomKind, Seq, UserId, Viewer};
use crate::store::Store;

/// What one shard owns, and its store.
pub struct OwnerSide {
    /// Rooms and users owned here.
    pub owned: RefCell<Owned>,
    /// This shard's durable store (its redb file, writer and reader threads).
    pub store: RefCell<Store>,
    /// Writes waiting for the store, and reads in flight.
    pub commits: RefCell<Commits>,
}

impl OwnerSide {
    /// Owner of `owned`, writing to `store`.
    pub fn new(owned: Owned, store: Store) -> Self {
        OwnerSide {
            owned: RefCell::new(owned),
            store: RefCell::new(store),
            commits: RefCell::new(Commits::default()),
        }
    }

    /// User owner: where `user`'s connections are (no shards when it has none).
    pub fn user_presence(&self, user: &UserId) -> Presence {
        self.owned.borrow().users.get(user).map_or(Presence::default(), |r| r.conns.presence())
    }

    /// Room owner: `room`'s kind and the shards holding its subscribers, when `user` is a
    /// member of it.
    pub fn room_of_member(&self, room: RoomId, user: &UserId) -> Option<(RoomKind, u64)> {
        let owned = self.owned.borrow();
        let entry = owned.rooms.get(&room)?;
        entry.room.members.contains_key(user).then(|| (entry.room.kind, entry.shard_mask()))
    }

    /// Room owner: the message of `room` with per-room `seq` (deleted ones too) when `viewer`
    /// may see the room: from the window, or `None` when it is older than the window and must
    /// be read from the store.
    pub fn message_by_seq(&self, room: RoomId, viewer: &Viewer, seq: Seq) -> Option<Response> {
        let owned = self.owned.borrow();
        let Some(entry) = owned.rooms.get(&room) else {
            return Some(Response::Refused(Refusal::NotFound("no such room")));
        };
        if let Viewer::User(u) = viewer {
            if !entry.room.members.contains_key(u) {
                return Some(Response::Refused(Refusal::NotFound("no such room")));
            }
        }
        let history = &entry.room.history;
        match history.binary_search_by(|m| m.seq.cmp(&seq)) {
            Ok(i) => Some(Response::Done(Reply::Message(history[i].clone()))),
            Err(_) => {
                let older = history.front().map_or(entry.room.last_seq.next(), |m| m.seq);
                (seq < Seq(1) || seq >= older)
                    .then_some(Response::Refused(Refusal::NotFound("messageId is not exists")))
            }
        }
    }

    /// Room owner: members of `rooms` that `viewer` may see, with connections speaking one of
    /// `dialects`, each once, in room then member order.
    pub fn online_members(
        &self,
        rooms: &[RoomId],
        viewer: &Viewer,
        dialects: DialectMask,
    ) -> Vec<UserId> {
        let owned = self.owned.borrow();
        let mut seen = std::collections::HashSet::new();
        let mut users = Vec::new();
        for entry in rooms.iter().filter_map(|id| owned.rooms.get(id)) {
            if let Viewer::User(u) = viewer {
                if !entry.room.members.contains_key(u) {
                    continue;
                }
            }
            let mut online: Vec<&UserId> = entry
                .member_dialects
                .iter()
                .filter(|(_, d)| **d & dialects != 0)
                .map(|(u, _)| u)
                .collect();
            online.sort_unstable();
            for user in online {
                if seen.insert(user) {
                    users.push(user.clone());
                }
            }
        }
        users
    }
}
