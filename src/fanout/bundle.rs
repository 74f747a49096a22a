//! A bundle: one event rendered once per dialect (and per viewer variant), shared by every
//! recipient through reference counts. No per-recipient copy or encoding ever happens.
//!
//! Per dialect a bundle may carry gate bits (the `Conn::flags` a connection needs to get the
//! frame) and a [`Routing`] (an allow-list, a user who gets nothing, per-viewer frames, and a
//! tag its dialect reads after delivery). What the bits and tags mean is the dialect's.

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;

use crate::dialect::{DialectId, DIALECT_COUNT};
use crate::model::UserId;

/// Complete WebSocket frames for one event, by dialect; `None` where no connection of that
/// dialect needs it.
pub type Frames = [Option<Bytes>; DIALECT_COUNT];

/// One event's frames, plus an alternative rendering for a set of users (e.g. a room shown to
/// its moderators with `isModerator: true`).
#[derive(Debug, Default)]
pub struct Bundle {
    /// What every recipient gets unless it is in `alternative` or its dialect routes it.
    pub frames: Frames,
    /// Users who get other frames instead.
    pub alternative: Option<Box<Alternative>>,
    /// Per dialect: the `Conn::flags` bits a connection needs to get its frame.
    pub gates: [u8; DIALECT_COUNT],
    /// Per dialect: routing beyond the plain frame.
    pub routing: [Option<Box<Routing>>; DIALECT_COUNT],
}

/// A second rendering of the same event for some users.
#[derive(Debug)]
pub struct Alternative {
    /// Who gets these frames.
    pub users: HashSet<UserId>,
    /// The frames.
    pub frames: Frames,
}

/// How an event reaches one dialect's connections beyond the plain frame.
#[derive(Debug, Default)]
pub struct Routing {
    /// Only these users' connections get a frame; `None` = everyone.
    pub only: Option<HashSet<UserId>>,
    /// This user's connections get nothing (the actor, who gets its own answer instead).
    pub skip: Option<UserId>,
    /// Frames rendered for one viewer, one rendering per distinct variant shared by the users
    /// that see it; a user listed here gets its frame instead of the plain one.
    pub per_viewer: HashMap<UserId, Bytes>,
    /// The dialect's own note about this event; when set, the dialect's `delivered` hook runs
    /// after the bundle was handed to a room's local subscribers.
    pub tag: Option<Arc<dyn Any + Send + Sync>>,
}

impl Bundle {
    /// The frame for a connection of `dialect` belonging to `user` whose dialect flags are
    /// `flags` (`Conn::flags`), `None` when the connection must not get this event.
    #[inline]
    pub fn frame_for(&self, dialect: DialectId, user: &UserId, flags: u8) -> Option<&Bytes> {
        let d = dialect.index();
        let gate = self.gates[d];
        if flags & gate != gate {
            return None;
        }
        if let Some(routing) = &self.routing[d] {
            if routing.only.as_ref().is_some_and(|only| !only.contains(user)) {
                return None;
            }
            if routing.skip.as_ref() == Some(user) {
                return None;
            }
            if let Some(frame) = routing.per_viewer.get(user) {
                return Some(frame);
            }
        }
        if let Some(alt) = &self.alternative {
            if alt.users.contains(user) {
                return alt.frames[d].as_ref();
            }
        }
        self.frames[d].as_ref()
    }

    /// The dialects whose routing carries a tag (their `delivered` hook runs).
    pub fn tagged(&self) -> impl Iterator<Item = DialectId> + '_ {
        DialectId::all()
            .filter(|d| self.routing[d.index()].as_ref().is_some_and(|r| r.tag.is_some()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: DialectId = DialectId(0);
    const E: DialectId = DialectId(1);

    fn bundle() -> Bundle {
        let mut frames: Frames = Default::default();
        frames[D.index()] = Some(Bytes::from_static(b"d"));
        frames[E.index()] = Some(Bytes::from_static(b"e"));
        Bundle { frames, ..Bundle::default() }
    }

    #[test]
    fn gates_need_every_bit_and_apply_to_their_dialect_only() {
        let u = UserId::new("1");
        let mut b = bundle();
        b.gates[D.index()] = 0b01;
        assert!(b.frame_for(D, &u, 0).is_none());
        assert!(b.frame_for(D, &u, 0b10).is_none());
        assert!(b.frame_for(D, &u, 0b11).is_some());
        assert!(b.frame_for(E, &u, 0).is_some(), "the other dialect is not gated");
    }

    #[test]
    fn routing_allow_list_skip_and_viewer_variants() {
        let (a, b_, c, s) =
            (UserId::new("a"), UserId::new("b"), UserId::new("c"), UserId::new("s"));
        let mut b = bundle();
        b.routing[D.index()] = Some(Box::new(Routing {
            only: Some([a.clone(), b_.clone(), s.clone()].into_iter().collect()),
            skip: Some(s.clone()),
            per_viewer: [(b_.clone(), Bytes::from_static(b"for b"))].into_iter().collect(),
            tag: None,
        }));
        assert_eq!(b.frame_for(D, &a, 0).unwrap().as_ref(), b"d");
        assert_eq!(b.frame_for(D, &b_, 0).unwrap().as_ref(), b"for b");
        assert!(b.frame_for(D, &c, 0).is_none(), "not on the allow-list");
        assert!(b.frame_for(D, &s, 0).is_none(), "skipped");
        assert!(b.frame_for(E, &c, 0).is_some(), "other dialects unaffected");
        assert_eq!(b.tagged().count(), 0);
    }

    #[test]
    fn moderators_get_the_alternative() {
        let (m, u) = (UserId::new("m"), UserId::new("u"));
        let mut b = bundle();
        let mut frames: Frames = Default::default();
        frames[D.index()] = Some(Bytes::from_static(b"mod"));
        b.alternative =
            Some(Box::new(Alternative { users: [m.clone()].into_iter().collect(), frames }));
        assert_eq!(b.frame_for(D, &m, 0).unwrap().as_ref(), b"mod");
        assert_eq!(b.frame_for(D, &u, 0).unwrap().as_ref(), b"d");
        assert!(b.frame_for(E, &m, 0).is_none(), "the alternative has no frame for E");
    }
}
