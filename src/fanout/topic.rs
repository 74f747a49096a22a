//! One shard's local subscriptions: which of its connections receive which rooms.
//!
//! Invariants: a connection key is in `topics[room]` iff its user is in `users` with `room` in
//! its rooms; a key is removed from every topic before its slab slot is freed, so a reused key
//! never receives another user's rooms. Sizes are bounded by the shard's connection limit times
//! the rooms per user the room owners subscribed.

use std::collections::HashMap;

use smallvec::SmallVec;

use crate::model::{RoomId, RoomList, UserId, UserMap};

/// A connection's index in its shard's slab.
pub type ConnKey = usize;

/// A user with connections on this shard: 16 bytes, its one connection inline (most users
/// have one here, and no room while idle), several connections and its rooms in a box of 40
/// bytes (a user in rooms pays what it did with its rooms boxed alone: perf/RESULTS.md, idle
/// memory, session 9).
///
/// Invariant: `more` is `None` iff the user has at most one connection and no room; then
/// `one` is that connection (`NO_CONN`: none), else `NO_CONN` and the connections are in `more`.
#[derive(Debug)]
struct LocalUser {
    /// Its connection, when it has one and no box.
    one: ConnKey,
    /// Its connections when it has several, and its rooms here, when either.
    more: Option<Box<More>>,
}

/// What a [`LocalUser`] keeps boxed.
#[derive(Debug, Default)]
struct More {
    /// Its connections here that receive room events (a boxed slice: 16 bytes, reallocated
    /// when one comes or goes, which a user with several does rarely).
    conns: Box<[ConnKey]>,
    /// The rooms its owner shards subscribed it to here.
    rooms: RoomList,
}

/// No connection (`LocalUser::one`); slab keys stay below the shard's connection limit.
const NO_CONN: ConnKey = ConnKey::MAX;

impl Default for LocalUser {
    fn default() -> Self {
        LocalUser { one: NO_CONN, more: None }
    }
}

impl LocalUser {
    /// Its connections here.
    fn conns(&self) -> &[ConnKey] {
        match &self.more {
            Some(more) => &more.conns,
            None if self.one != NO_CONN => std::slice::from_ref(&self.one),
            None => &[],
        }
    }

    /// Its rooms here, ascending.
    fn rooms(&self) -> &[RoomId] {
        self.more.as_ref().map_or(&[], |more| more.rooms.as_slice())
    }

    /// The box, made (with the inline connection moved into it) when there was none.
    fn more(&mut self) -> &mut More {
        let one = std::mem::replace(&mut self.one, NO_CONN);
        self.more.get_or_insert_with(|| {
            let conns = if one != NO_CONN { Box::from([one]) } else { Box::default() };
            Box::new(More { conns, rooms: RoomList::default() })
        })
    }

    /// Drops the box when one connection and no room are left.
    fn shrink(&mut self) {
        if let Some(more) = &self.more {
            if more.rooms.is_empty() && more.conns.len() <= 1 {
                self.one = more.conns.first().copied().unwrap_or(NO_CONN);
                self.more = None;
            }
        }
    }

    fn add_conn(&mut self, key: ConnKey) {
        if self.more.is_none() && self.one == NO_CONN {
            self.one = key;
        } else {
            let more = self.more();
            let mut conns = std::mem::take(&mut more.conns).into_vec();
            conns.push(key);
            more.conns = conns.into_boxed_slice();
        }
    }

    fn remove_conn(&mut self, key: ConnKey) {
        match &mut self.more {
            Some(more) => {
                if more.conns.contains(&key) {
                    more.conns = more.conns.iter().copied().filter(|k| *k != key).collect();
                }
                self.shrink();
            }
            None if self.one == key => self.one = NO_CONN,
            None => {}
        }
    }

    /// Adds `room`; false when it was there.
    fn insert_room(&mut self, room: RoomId) -> bool {
        self.more().rooms.insert(room)
    }

    /// Removes `room`; false when it was not there.
    fn remove_room(&mut self, room: RoomId) -> bool {
        let Some(more) = self.more.as_mut() else {
            return false;
        };
        let removed = more.rooms.remove(room);
        self.shrink();
        removed
    }
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
        local.add_conn(key);
        for room in local.rooms() {
            self.topics.entry(*room).or_default().push(key);
        }
        first
    }

    /// Removes a connection; returns true when it was the user's last on this shard.
    pub fn remove_conn(&mut self, user: &UserId, key: ConnKey) -> bool {
        let Some(local) = self.users.get_mut(user) else {
            return false;
        };
        local.remove_conn(key);
        for room in local.rooms() {
            if let Some(topic) = self.topics.get_mut(room) {
                if let Some(i) = topic.iter().position(|k| *k == key) {
                    topic.swap_remove(i);
                }
                if topic.is_empty() {
                    self.topics.remove(room);
                }
            }
        }
        if local.conns().is_empty() {
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
        if local.insert_room(room) {
            self.topics.entry(room).or_default().extend(local.conns().iter().copied());
        }
        SmallVec::from_slice(local.conns())
    }

    /// Unsubscribes `user`'s local connections from `room`; returns them.
    pub fn unsubscribe(&mut self, room: RoomId, user: &UserId) -> SmallVec<[ConnKey; 2]> {
        let Some(local) = self.users.get_mut(user) else {
            return SmallVec::new();
        };
        if local.remove_room(room) {
            if let Some(topic) = self.topics.get_mut(&room) {
                topic.retain(|k| !local.conns().contains(k));
                if topic.is_empty() {
                    self.topics.remove(&room);
                }
            }
        }
        SmallVec::from_slice(local.conns())
    }

    /// Drops `room` everywhere; returns the connections that were subscribed.
    pub fn drop_room(&mut self, room: RoomId) -> Vec<ConnKey> {
        for local in self.users.values_mut() {
            local.remove_room(room);
        }
        self.topics.remove(&room).unwrap_or_default()
    }

    /// The local connections subscribed to `room`.
    pub fn topic(&self, room: RoomId) -> &[ConnKey] {
        self.topics.get(&room).map_or(&[], Vec::as_slice)
    }

    /// The local connections of `user`.
    pub fn conns_of(&self, user: &UserId) -> &[ConnKey] {
        self.users.get(user).map_or(&[], LocalUser::conns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A local user is one boxed (UserId, LocalUser) of 32 bytes plus 9 bytes per bucket of
    /// its table (perf/RESULTS.md, idle memory): a second connection or a room makes its box.
    #[test]
    fn local_user_stays_compact() {
        assert!(std::mem::size_of::<(UserId, LocalUser)>() <= 32);
        assert!(std::mem::size_of::<More>() <= 40);
    }

    #[test]
    fn a_local_user_boxes_its_connections_and_rooms_only_when_needed() {
        let mut subs = Subscriptions::default();
        let a = UserId::new("a");
        assert!(subs.add_conn(&a, 0));
        assert!(subs.users.get(&a).is_some_and(|u| u.more.is_none() && u.one == 0));
        assert!(!subs.add_conn(&a, 5));
        assert!(!subs.add_conn(&a, 6));
        assert_eq!(subs.conns_of(&a), &[0, 5, 6]);
        assert!(!subs.remove_conn(&a, 0));
        assert!(!subs.remove_conn(&a, 6));
        assert_eq!(subs.conns_of(&a), &[5]);
        assert!(subs.users.get(&a).is_some_and(|u| u.more.is_none() && u.one == 5), "unboxed");
        assert_eq!(subs.subscribe(RoomId(3), &a).as_slice(), &[5]);
        assert!(subs.users.get(&a).is_some_and(|u| u.more.is_some() && u.one == NO_CONN));
        assert_eq!(subs.unsubscribe(RoomId(3), &a).as_slice(), &[5]);
        assert!(subs.users.get(&a).is_some_and(|u| u.more.is_none() && u.one == 5), "unboxed");
        assert!(subs.topic(RoomId(3)).is_empty());
        assert!(subs.remove_conn(&a, 5));
        assert!(subs.conns_of(&a).is_empty());
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
