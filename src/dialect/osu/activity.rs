//! osu!'s owner-side state: when each member of a public room was last active (posted,
//! joined, acked). A public room's new message reaches only the osu! connections of members
//! active in the last [`OSU_ACTIVE_WINDOW_MS`] (osu!'s `CHAT_ACTIVITY_TIMEOUT`). In memory only:
//! a restart forgets it, like osu!'s cache.
//!
//! Invariants: only public rooms owned by this shard have entries; a room's entries are only
//! members (a member who leaves is removed, a deleted room goes), so they are bounded by the
//! member limit; entries older than the window are pruned whenever a message is posted.

use std::collections::{HashMap, HashSet};

use crate::dialect::RoomChange;
use crate::limits::OSU_ACTIVE_WINDOW_MS;
use crate::model::{Event, RoomId, RoomKind, UserId};

/// Public room → member → when last active, ms.
#[derive(Debug, Default)]
pub struct Activity {
    rooms: HashMap<RoomId, HashMap<UserId, u64>>,
}

impl Activity {
    /// Records what `change` says about activity: a join or a member's post is activity; a
    /// member who left, or a deleted room, is forgotten. A room created with members does not
    /// count as their activity.
    pub fn note(&mut self, change: &RoomChange<'_>, now: u64) {
        let room = change.room;
        if change.deleted {
            self.rooms.remove(&room.id);
            return;
        }
        if room.kind != RoomKind::Public {
            return;
        }
        if let Some(user) = change.left {
            if let Some(active) = self.rooms.get_mut(&room.id) {
                active.remove(user);
            }
        }
        if let Some(user) = change.joined {
            self.touch(room.id, user, now);
        }
        for event in change.events {
            if let Event::MessageCreated(m) = event {
                if room.members.contains_key(&m.author) {
                    self.touch(room.id, &m.author, now);
                }
            }
        }
    }

    /// `user` is active in `room` now.
    pub fn touch(&mut self, room: RoomId, user: &UserId, now: u64) {
        self.rooms.entry(room).or_default().insert(user.clone(), now);
    }

    /// The members of `room` active within the window (older entries are pruned).
    pub fn active(&mut self, room: RoomId, now: u64) -> HashSet<UserId> {
        let Some(active) = self.rooms.get_mut(&room) else {
            return HashSet::new();
        };
        let since = now.saturating_sub(OSU_ACTIVE_WINDOW_MS);
        active.retain(|_, at| *at >= since);
        active.keys().cloned().collect()
    }
}
