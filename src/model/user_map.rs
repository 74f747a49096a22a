//! [`UserMap`]: per-user records keyed by [`UserId`], compact for the many-users case.
//!
//! A `HashMap<UserId, V>` keeps every key and value inline in its buckets, and its table
//! doubles (at 7/8 load) into a power of two: at 15 000 users it holds 32 768 buckets, so
//! each user pays 2.2 buckets of `16 + size_of::<V>()` bytes (264 B for a 104-byte record).
//! Here a bucket is one pointer to the boxed entry (key and value in one allocation):
//! 2.2 × 9 bytes of table plus the entry itself.
//!
//! Invariant: at most one entry per user; an entry's key never changes.

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

use super::UserId;

/// UserId → `V`, each entry boxed (see the module doc).
pub struct UserMap<V> {
    table: HashTable<Box<(UserId, V)>>,
    hasher: RandomState,
}

impl<V> Default for UserMap<V> {
    fn default() -> Self {
        UserMap { table: HashTable::new(), hasher: RandomState::new() }
    }
}

impl<V: std::fmt::Debug> std::fmt::Debug for UserMap<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<V> UserMap<V> {
    fn hash(&self, user: &UserId) -> u64 {
        self.hasher.hash_one(user)
    }

    /// `user`'s value.
    pub fn get(&self, user: &UserId) -> Option<&V> {
        self.table.find(self.hash(user), |e| e.0 == *user).map(|e| &e.1)
    }

    /// `user`'s value, to change.
    pub fn get_mut(&mut self, user: &UserId) -> Option<&mut V> {
        let hash = self.hash(user);
        self.table.find_mut(hash, |e| e.0 == *user).map(|e| &mut e.1)
    }

    /// True when `user` has an entry.
    pub fn contains_key(&self, user: &UserId) -> bool {
        self.get(user).is_some()
    }

    /// `user`'s value, made with `make` first when it has none.
    pub fn get_or_insert_with(&mut self, user: &UserId, make: impl FnOnce() -> V) -> &mut V {
        let hash = self.hash(user);
        let hasher = &self.hasher;
        let entry = self.table.entry(hash, |e| e.0 == *user, |e| hasher.hash_one(&e.0));
        &mut entry.or_insert_with(|| Box::new((user.clone(), make()))).into_mut().1
    }

    /// Removes `user`'s entry; returns its value.
    pub fn remove(&mut self, user: &UserId) -> Option<V> {
        let hash = self.hash(user);
        let entry = self.table.find_entry(hash, |e| e.0 == *user).ok()?;
        Some(entry.remove().0 .1)
    }

    /// Keeps only the entries `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&UserId, &mut V) -> bool) {
        self.table.retain(|e| keep(&e.0, &mut e.1));
    }

    /// Users with an entry.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when no user has an entry.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&UserId, &V)> {
        self.table.iter().map(|e| (&e.0, &e.1))
    }

    /// Every value, to change, in no particular order.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.table.iter_mut().map(|e| &mut e.1)
    }
}

impl<V: Default> UserMap<V> {
    /// `user`'s value, a default one first when it has none.
    pub fn get_or_default(&mut self, user: &UserId) -> &mut V {
        self.get_or_insert_with(user, V::default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_finds_and_removes_by_user() {
        let mut map: UserMap<u32> = UserMap::default();
        let (a, b) = (UserId::new("a"), UserId::new("b"));
        *map.get_or_default(&a) += 1;
        *map.get_or_default(&a) += 1;
        *map.get_or_insert_with(&b, || 7) += 1;
        assert_eq!((map.get(&a), map.get(&b), map.len()), (Some(&2), Some(&8), 2));
        assert!(map.contains_key(&b));
        map.retain(|user, v| user == &a || *v > 100);
        assert_eq!(map.remove(&b), None);
        assert_eq!(map.remove(&a), Some(2));
        assert!(map.is_empty());
        for i in 0..1000 {
            *map.get_or_default(&UserId::new(&format!("u{i}"))) = i;
        }
        assert_eq!(map.get(&UserId::new("u999")), Some(&999));
        assert_eq!(map.values_mut().count(), 1000);
    }
}
