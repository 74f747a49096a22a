//! Sessions: logging one out (`DELETE /api/v1/sessions/{sid}`), the replica of logged-out
//! sessions every shard checks at authentication, and the registry of sessions a user owner
//! has seen (so a user may log out its other sessions by id).
//!
//! Invariants: a revocation is stored by the user's owner (its store's `revoked_sessions`)
//! before any shard is told; every shard keeps the same `Revoked` replica (broadcast through the
//! mesh, rebuilt at start from every owner's store), each entry kept until its tokens expire;
//! closing a session's connections walks this shard's connections once per revocation (rare).

use std::collections::HashMap;
use std::num::NonZeroU64;

use crate::auth::now_unix_s;
use crate::limits::{BARRIER_TIMEOUT, REVOCATION_DEFAULT_TTL_S, SESSIONS_PER_USER_MAX};
use crate::mesh::Command;
use crate::model::{Refusal, ShardId, UserId};

use super::Shard;

/// Logged-out sessions: session id → expiry of its tokens (unix s).
#[derive(Debug, Default)]
pub struct Revoked {
    sessions: HashMap<String, u64>,
    prune_at: usize,
}

impl Revoked {
    /// Records `sid` as logged out until `expires_at`; prunes expired entries as it grows.
    pub fn insert(&mut self, sid: &str, expires_at: u64, now_s: u64) {
        let entry = self.sessions.entry(sid.to_string()).or_insert(expires_at);
        *entry = (*entry).max(expires_at);
        if self.sessions.len() >= self.prune_at {
            self.sessions.retain(|_, exp| *exp >= now_s);
            self.prune_at = (self.sessions.len() * 2).max(1024);
        }
    }

    /// True when `sid` is logged out (and its tokens have not expired anyway).
    pub fn contains(&self, sid: &str, now_s: u64) -> bool {
        self.sessions.get(sid).is_some_and(|exp| *exp >= now_s)
    }

    /// True when `sid` is already logged out until `expires_at` or later (a repeated
    /// revocation changes nothing).
    pub fn covers(&self, sid: &str, expires_at: u64) -> bool {
        self.sessions.get(sid).is_some_and(|exp| *exp >= expires_at)
    }

    /// The sessions still logged out at `now_s`, with their expiries.
    pub fn live(&self, now_s: u64) -> impl Iterator<Item = (&str, u64)> + '_ {
        self.sessions
            .iter()
            .filter(move |(_, exp)| **exp >= now_s)
            .map(|(sid, exp)| (sid.as_str(), *exp))
    }

    /// How many entries are kept.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// True when nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

/// A session id (JWT `sid`, else `jti`) as a connection and its user's owner keep it: the
/// first 64 bits of its SHA-256, inline (no allocation per connection; the id itself is 32 hex
/// digits when this server mints the token, 16 characters from the loadgen). Collision-safe:
/// the ids connections show are in server-signed tokens, not chosen by the client; two
/// differ in key with probability 1 − 2^-64. A revocation closes this shard's connections
/// whose key matches the revoked id's; an id a user names to log out (`known_only`) is found
/// among the user's own keys only if it is one of its sessions, or collides with one of them,
/// which takes a SHA-256 second preimage on 64 bits for a chosen id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionKey(NonZeroU64);

impl SessionKey {
    /// The key of session id `sid`.
    pub fn of(sid: &str) -> SessionKey {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(sid.as_bytes());
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&digest[..8]);
        // Never 0 (a zero word becomes 1): `Option<SessionKey>` is 8 bytes.
        SessionKey(NonZeroU64::new(u64::from_le_bytes(bytes)).unwrap_or(NonZeroU64::MIN))
    }
}

/// One remembered session: its key and its tokens' expiry (unix s, saturated to `u32`).
type Seen = (SessionKey, u32);

/// A zero byte whose other 255 values are niches: [`Sessions`]' empty and boxed forms fit in
/// `One`'s 16 bytes instead of needing a tag beside them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Pad {
    Zero = 0,
}

/// The list behind [`SeenSessions`]: 16 bytes, none or one inline (most users), more boxed.
#[derive(Debug, Default)]
enum Sessions {
    #[default]
    None,
    One(SessionKey, u32, Pad),
    #[allow(clippy::box_collection)] // the point: 8 bytes, so the enum stays 16
    Many(Box<Vec<Seen>>),
}

/// The sessions a user's connections showed (key → token expiry, unix s), at most
/// `SESSIONS_PER_USER_MAX`; 16 bytes in the user's record, one session inline since most
/// users have one or two.
#[derive(Debug, Default)]
pub struct SeenSessions(Sessions);

/// An expiry as kept (unix s; `u32` lasts until 2106).
fn exp32(s: u64) -> u32 {
    u32::try_from(s).unwrap_or(u32::MAX)
}

impl SeenSessions {
    /// Remembers `sid` (expiring at `expires_at`), forgetting expired ones and, when full, the
    /// one that expires soonest.
    pub fn remember(&mut self, sid: SessionKey, expires_at: u64, now_s: u64) {
        let expires_at = exp32(expires_at);
        match &mut self.0 {
            Sessions::None => {
                self.0 = Sessions::One(sid, expires_at, Pad::Zero);
                return;
            }
            Sessions::One(key, exp, _) if *key == sid => {
                *exp = (*exp).max(expires_at);
                return;
            }
            Sessions::One(_, exp, _) if u64::from(*exp) < now_s => {
                self.0 = Sessions::One(sid, expires_at, Pad::Zero);
                return;
            }
            _ => {}
        }
        let mut list = match std::mem::take(&mut self.0) {
            Sessions::None => Vec::new(),
            Sessions::One(key, exp, _) => vec![(key, exp)],
            Sessions::Many(list) => *list,
        };
        list.retain(|(_, exp)| u64::from(*exp) >= now_s);
        if let Some((_, exp)) = list.iter_mut().find(|(s, _)| *s == sid) {
            *exp = (*exp).max(expires_at);
        } else {
            if list.len() >= SESSIONS_PER_USER_MAX {
                if let Some(soonest) = (0..list.len()).min_by_key(|i| list[*i].1) {
                    list.swap_remove(soonest);
                }
            }
            list.push((sid, expires_at));
        }
        self.set(list);
    }

    /// Keeps `list` in its smallest form.
    fn set(&mut self, list: Vec<Seen>) {
        self.0 = match list.as_slice() {
            [] => Sessions::None,
            [(key, exp)] => Sessions::One(*key, *exp, Pad::Zero),
            _ => Sessions::Many(Box::new(list)),
        };
    }

    /// The expiry of the session keyed `sid`, when it was seen.
    fn find(&self, sid: SessionKey) -> Option<u64> {
        match &self.0 {
            Sessions::None => None,
            Sessions::One(key, exp, _) => (*key == sid).then_some(u64::from(*exp)),
            Sessions::Many(list) => {
                list.iter().find(|(s, _)| *s == sid).map(|(_, exp)| u64::from(*exp))
            }
        }
    }

    /// The expiry of `sid`, when it was seen.
    pub fn expiry(&self, sid: &str) -> Option<u64> {
        self.find(SessionKey::of(sid))
    }

    /// Forgets `sid`.
    pub fn remove(&mut self, sid: &str) {
        let key = SessionKey::of(sid);
        match std::mem::take(&mut self.0) {
            Sessions::One(k, exp, pad) if k != key => self.0 = Sessions::One(k, exp, pad),
            Sessions::Many(mut list) => {
                list.retain(|(s, _)| *s != key);
                self.set(*list);
            }
            _ => {}
        }
    }

    /// Sessions remembered.
    pub fn len(&self) -> usize {
        match &self.0 {
            Sessions::None => 0,
            Sessions::One(..) => 1,
            Sessions::Many(list) => list.len(),
        }
    }

    /// True when none is remembered.
    pub fn is_empty(&self) -> bool {
        matches!(self.0, Sessions::None)
    }
}

impl Shard {
    /// User owner: a connection of `user` opened with session `sid`.
    pub fn session_seen(&self, user: UserId, sid: SessionKey, expires_at: u64) {
        let mut owned = self.owner.owned.borrow_mut();
        let record = owned.users.get_or_default(&user);
        record.sessions.remember(sid, expires_at, now_unix_s());
    }

    /// User owner: logs `sid` of `user` out. `known_only` (a user logging out by id) refuses
    /// a session this owner never saw for the user. Stores the revocation, then broadcasts it.
    pub fn revoke_session(
        &self,
        user: &UserId,
        sid: String,
        expires_at: Option<u64>,
        known_only: bool,
    ) -> super::Effects {
        let now = now_unix_s();
        let known = {
            let owned = self.owner.owned.borrow();
            owned.users.get(user).and_then(|r| r.sessions.expiry(&sid))
        };
        if known_only && known.is_none() && expires_at.is_none() {
            return super::Effects::refused(Refusal::NotFound("no such session"));
        }
        if let Err(refusal) = self.admit() {
            return super::Effects::refused(refusal);
        }
        let expires_at = match (expires_at, known) {
            (Some(a), Some(b)) => a.max(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => now + REVOCATION_DEFAULT_TTL_S,
        };
        if let Some(record) = self.owner.owned.borrow_mut().users.get_mut(user) {
            record.sessions.remove(&sid);
        }
        let ops = vec![crate::store::StoreOp::RevokeSession {
            sid: sid.clone(),
            user: user.as_str().to_string(),
            expires_at,
        }];
        let commands = ShardId::all(self.shard_count)
            .map(|s| (s, Command::RevokeSession { sid: sid.clone(), expires_at }))
            .collect();
        super::Effects {
            response: super::Response::Done(crate::model::room::Reply::Empty),
            commands,
            ops,
            pins: Vec::new(),
        }
    }

    /// Waits until shard `to` has handled every command this shard sent it before (the answer
    /// travels the same FIFO rings). False on timeout.
    pub async fn barrier(&self, to: ShardId) -> bool {
        if self.unreachable(to) {
            return false;
        }
        let (token, rx) = self.expect_answer();
        self.await_from(token, to);
        self.send(to, Command::Barrier { from: self.id, token });
        match tokio::time::timeout(BARRIER_TIMEOUT, rx).await {
            Ok(Ok(_)) => true,
            _ => {
                self.pending.borrow_mut().remove(&token);
                self.remote_pending.borrow_mut().remove(&token);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoked_entries_expire_and_are_pruned() {
        let mut r = Revoked::default();
        r.insert("a", 100, 50);
        assert!(r.contains("a", 100));
        assert!(!r.contains("a", 101));
        assert!(!r.contains("b", 0));
        for i in 0..2000 {
            r.insert(&format!("s{i}"), 10, 5);
        }
        for i in 0..3000 {
            r.insert(&format!("t{i}"), 1000, 500);
        }
        assert!(r.len() < 4000, "expired entries were pruned: {}", r.len());
        assert!(r.contains("t0", 600));
    }

    #[test]
    fn the_session_registry_is_bounded() {
        let mut s = SeenSessions::default();
        for i in 0..(SESSIONS_PER_USER_MAX as u64 + 10) {
            s.remember(SessionKey::of(&format!("s{i}")), 1000 + i, 0);
        }
        assert_eq!(s.len(), SESSIONS_PER_USER_MAX);
        assert_eq!(s.expiry(&format!("s{}", SESSIONS_PER_USER_MAX + 9)), Some(1000 + 73));
        assert_eq!(s.expiry("s0"), None, "the one expiring soonest made room");
        s.remember(SessionKey::of("s20"), 5000, 0);
        assert_eq!(s.expiry("s20"), Some(5000), "a later expiry extends a known session");
        s.remove("s20");
        assert_eq!(s.expiry("s20"), None);
        s.remember(SessionKey::of("x"), 5, 2000);
        assert_eq!(s.len(), 1, "expired sessions are forgotten");
    }

    #[test]
    fn session_keys_tell_ids_apart() {
        let a = SessionKey::of("lg-693624a1-3a98");
        assert_eq!(a, SessionKey::of("lg-693624a1-3a98"));
        assert_ne!(a, SessionKey::of("lg-693624a1-3a99"));
        assert_eq!(std::mem::size_of::<Option<SessionKey>>(), 8);
        assert_eq!(std::mem::size_of::<SeenSessions>(), 16, "one inline, no tag beside it");
    }
}
