//! One shard's local subscriptions: which of its connections receive which rooms.
//!
//! Invariants: a connection key is in `topics[room]` iff its user is in `users` with `room` in
//! its rooms; a key is removed from every topic before its slab slot is freed, so a reused key
//! never receives another user's rooms. Sizes are bounded by the shard's connection limit times
//! the rooms per user the room owners subscribed.

use std::collections::HashMap;

use smallvec::SmallVec;

use crate::model::{RoomId, RoomSet, UserId, UserMap};

/// A connection's index in its shard's slab.
pub type ConnKey = usize;

/// A user with connections on this shard.
#[derive(Debug, Default)]
struct LocalUser {
    /// Its connections here that receive room events.
    conns: SmallVec<[ConnKey; 2]>,
    /// The rooms its owner shards subscribed it to here.
    rooms: RoomSet,
}

/// Room → local connections, and user → local connections and rooms.
#[derive(Debug, Default)]
pub struct Subscriptions {
    users: UserMap<LocalUser>,
    topics: HashMap<RoomId, Vec<ConnKey>>,
}

impl Subscriptions {
    /// The users with connections on this shard.
    pub fn users(&self) -> impl Iterator<Item = &UserId> + '_ {
        self.users.iter().map(|(user, _)| user)
    }

    /// Adds a connection of `user`; returns true when it is the user's first on this shard
    /// (the user's owner must then be told).
    pub fn add_conn(&mut self, user: &UserId, key: ConnKey) -> bool {
        let first = !self.users.contains_key(user);
        let local = self.users.get_or_default(user);
        local.conns.push(key);
        for room in &local.rooms {
            self.topics.entry(*room).or_default().push(key);
        }
        first
    }

    /// Removes a connection; returns true when it was the user's last on this shard.
    pub fn remove_conn(&mut self, user: &UserId, key: ConnKey) -> bool {
        let Some(local) = self.users.get_mut(user) else {
            return false;
        };
        local.conns.retain(|k| *k != key);
        for room in &local.rooms {
            if let Some(topic) = self.topics.get_mut(room) {
                if let Some(i) = topic.iter().position(|k| *k == key) {
                    topic.swap_remove(i);
                }
                if topic.is_empty() {
                    self.topics.remove(room);
                }
            }
        }
        if local.conns.is_empty() {
            self.users.remove(user);
            return true;
        }
        false
    }

    /// Subscribes `user`'s local connections to `room`; returns them (empty when the user has
    /// none here any more).
    pub fn subscribe(&mut self, room: RoomId, user: &UserId) -> SmallVec<[ConnKey; 2]> {
        let Some(local) = self.users.get_mut(user) else {
            return SmallVec::new();
        };
        if local.rooms.insert(room) {
            self.topics.entry(room).or_default().extend(local.conns.iter().copied());
        }
        local.conns.clone()
    }

    /// Unsubscribes `user`'s local connections from `room`; returns them.
    pub fn unsubscribe(&mut self, room: RoomId, user: &UserId) -> SmallVec<[ConnKey; 2]> {
        let Some(local) = self.users.get_mut(user) else {
            return SmallVec::new();
        };
        if local.rooms.remove(room) {
            if let Some(topic) = self.topics.get_mut(&room) {
                topic.retain(|k| !local.conns.contains(k));
                if topic.is_empty() {
                    self.topics.remove(&room);
                }
            }
        }
        local.conns.clone()
    }

    /// Drops `room` everywhere; returns the connections that were subscribed.
    pub fn drop_room(&mut self, room: RoomId) -> Vec<ConnKey> {
        for local in self.users.values_mut() {
            local.rooms.remove(room);
        }
        self.topics.remove(&room).unwrap_or_default()
    }

    /// The local connections subscribed to `room`.
    pub fn topic(&self, room: RoomId) -> &[ConnKey] {
        self.topics.get(&room).map_or(&[], Vec::as_slice)
    }

    /// The local connections of `user`.
    pub fn conns_of(&self, user: &UserId) -> &[ConnKey] {
        self.users.get(user).map_or(&[], |u| u.conns.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A local user is one boxed (UserId, LocalUser) of 48 bytes plus 9 bytes per bucket of
    /// its table (perf/RESULTS.md, idle memory): its rooms are one pointer until it has one.
    #[test]
    fn local_user_stays_compact() {
        assert!(std::mem::size_of::<(UserId, LocalUser)>() <= 48);
    }

    #[test]
    fn connection_joins_topics_of_its_users_rooms_and_leaves_them_on_close() {
        let mut subs = Subscriptions::default();
        let alice = UserId::new("alice");
        assert!(subs.add_conn(&alice, 1));
        assert_eq!(subs.subscribe(RoomId(7), &alice).as_slice(), &[1]);
        assert!(!subs.add_conn(&alice, 2));
        assert_eq!(subs.topic(RoomId(7)), &[1, 2]);
        assert!(!subs.remove_conn(&alice, 1));
        assert_eq!(subs.topic(RoomId(7)), &[2]);
        assert!(subs.remove_conn(&alice, 2));
        assert!(subs.topic(RoomId(7)).is_empty());
    }

    #[test]
    fn unsubscribe_removes_only_that_users_connections() {
        let mut subs = Subscriptions::default();
        let (a, b) = (UserId::new("a"), UserId::new("b"));
        subs.add_conn(&a, 1);
        subs.add_conn(&b, 2);
        subs.subscribe(RoomId(7), &a);
        subs.subscribe(RoomId(7), &b);
        subs.unsubscribe(RoomId(7), &a);
        assert_eq!(subs.topic(RoomId(7)), &[2]);
        assert_eq!(subs.drop_room(RoomId(7)), vec![2]);
        assert!(subs.topic(RoomId(7)).is_empty());
    }
}
