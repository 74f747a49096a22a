//! A user's set of rooms, as a sorted list with two inline slots in a box made when the first
//! room comes: one pointer (8 bytes, nothing allocated) while the user is in none, as most
//! idle connected users are, and a 24-byte box for up to two rooms. A hash set would cost a
//! table allocation (and 48 bytes inline) per user; the list inline, 24 bytes in every user
//! record (perf/RESULTS.md, idle memory).
//!
//! Invariant: the ids are sorted and distinct; the box exists only while the set is not empty.

use smallvec::SmallVec;

use super::RoomId;

/// Sorted, distinct room ids, two inline (24 bytes): the body of a [`RoomSet`], or kept inline
/// in a box that holds more than a user's rooms (`fanout::topic`'s local users).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoomList(SmallVec<[RoomId; 2]>);

impl RoomList {
    /// The rooms, in ascending order.
    pub fn as_slice(&self) -> &[RoomId] {
        self.0.as_slice()
    }

    /// Adds `room`; false when it was there.
    pub fn insert(&mut self, room: RoomId) -> bool {
        match self.0.binary_search(&room) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, room);
                true
            }
        }
    }

    /// Removes `room`; false when it was not there.
    pub fn remove(&mut self, room: RoomId) -> bool {
        match self.0.binary_search(&room) {
            Ok(at) => {
                self.0.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Sorted, distinct room ids.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoomSet(Option<Box<RoomList>>);

impl RoomSet {
    fn slice(&self) -> &[RoomId] {
        self.0.as_deref().map_or(&[], RoomList::as_slice)
    }

    /// Adds `room`; false when it was there.
    pub fn insert(&mut self, room: RoomId) -> bool {
        self.0.get_or_insert_default().insert(room)
    }

    /// Removes `room`; false when it was not there. Frees the box once empty.
    pub fn remove(&mut self, room: RoomId) -> bool {
        let Some(rooms) = self.0.as_mut() else {
            return false;
        };
        let removed = rooms.remove(room);
        if rooms.is_empty() {
            self.0 = None;
        }
        removed
    }

    /// True when `room` is in the set.
    pub fn contains(&self, room: RoomId) -> bool {
        self.slice().binary_search(&room).is_ok()
    }

    /// The rooms, in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = &RoomId> {
        self.slice().iter()
    }

    /// How many rooms.
    pub fn len(&self) -> usize {
        self.slice().len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

impl<'a> IntoIterator for &'a RoomSet {
    type Item = &'a RoomId;
    type IntoIter = std::slice::Iter<'a, RoomId>;
    fn into_iter(self) -> Self::IntoIter {
        self.slice().iter()
    }
}

#[cfg(test)]
mod tests {
    use super::{RoomId, RoomSet};

    #[test]
    fn keeps_rooms_sorted_and_distinct() {
        let mut set = RoomSet::default();
        assert!(set.insert(RoomId(9)));
        assert!(set.insert(RoomId(3)));
        assert!(set.insert(RoomId(5)));
        assert!(!set.insert(RoomId(3)), "already there");
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), vec![RoomId(3), RoomId(5), RoomId(9)]);
        assert!(set.contains(RoomId(5)) && !set.contains(RoomId(4)));
        assert!(set.remove(RoomId(5)));
        assert!(!set.remove(RoomId(5)), "already gone");
        assert_eq!(set.len(), 2);
        assert!(set.remove(RoomId(3)) && set.remove(RoomId(9)) && set.is_empty());
        assert_eq!(set, RoomSet::default(), "the box is freed once empty");
        assert!(!set.remove(RoomId(9)) && !set.contains(RoomId(9)) && set.iter().next().is_none());
    }

    /// One pointer in each user record, nothing allocated while empty (perf/RESULTS.md).
    #[test]
    fn room_set_is_one_pointer() {
        assert_eq!(std::mem::size_of::<RoomSet>(), 8);
        assert_eq!(std::mem::size_of::<smallvec::SmallVec<[RoomId; 2]>>(), 24);
    }
}
