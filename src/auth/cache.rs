//! Tokens a shard verified recently: a bearer sent again — on any keep-alive connection of the
//! shard, as a proxy or a multiplexing client does — skips the signature check.
//!
//! Invariants: only tokens that verified are kept, each with the identity it verified to; an
//! entry is used only while unexpired (callers also check revocation); at most `capacity`
//! entries (when full the cache is emptied and refills with the tokens in use).

use std::collections::HashMap;

use super::Identity;

/// Verified tokens → their identities, bounded.
pub struct TokenCache {
    entries: HashMap<Box<str>, Identity>,
    capacity: usize,
}

impl TokenCache {
    /// An empty cache holding at most `capacity` tokens.
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache { entries: HashMap::new(), capacity }
    }

    /// The identity `token` verified to, while it is unexpired at `now_s` (unix seconds).
    pub fn get(&self, token: &str, now_s: u64) -> Option<&Identity> {
        self.entries.get(token).filter(|identity| identity.expires_at > now_s)
    }

    /// Remembers that `token` verified to `identity`.
    pub fn insert(&mut self, token: &str, identity: Identity) {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(token) {
            self.entries.clear();
        }
        self.entries.insert(token.into(), identity);
    }

    /// Tokens held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when none is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::TokenCache;
    use crate::auth::Identity;

    fn identity(user: &str, expires_at: u64) -> Identity {
        Identity {
            user: user.to_string(),
            session: None,
            is_service: false,
            scopes: vec!["*".to_string()],
            expires_at,
        }
    }

    #[test]
    fn serves_unexpired_tokens_only_and_stays_bounded() {
        let mut cache = TokenCache::new(2);
        cache.insert("a", identity("alice", 100));
        assert_eq!(cache.get("a", 99).map(|i| i.user.as_str()), Some("alice"));
        assert!(cache.get("a", 100).is_none(), "expired at its exp");
        assert!(cache.get("b", 0).is_none(), "never verified");
        cache.insert("b", identity("bob", 100));
        cache.insert("c", identity("carol", 100));
        assert!(cache.len() <= 2);
        assert_eq!(cache.get("c", 0).map(|i| i.user.as_str()), Some("carol"));
    }
}
