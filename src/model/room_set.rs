//! A user's set of rooms, as a sorted list with two inline slots: most users are in few rooms,
//! and a hash set would cost a table allocation (and 48 bytes inline) per user.
//!
//! Invariant: the ids are sorted and distinct.

use smallvec::SmallVec;

use super::RoomId;

/// Sorted, distinct room ids.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoomSet(SmallVec<[RoomId; 2]>);

impl RoomSet {
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

    /// True when `room` is in the set.
    pub fn contains(&self, room: RoomId) -> bool {
        self.0.binary_search(&room).is_ok()
    }

    /// The rooms, in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = &RoomId> {
        self.0.iter()
    }

    /// How many rooms.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> IntoIterator for &'a RoomSet {
    type Item = &'a RoomId;
    type IntoIter = std::slice::Iter<'a, RoomId>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
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
    }
}
