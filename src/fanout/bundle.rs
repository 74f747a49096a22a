//! A bundle: one event rendered once per dialect (and per viewer variant), shared by every
//! recipient through reference counts. No per-recipient copy or encoding ever happens.
//!
//! Per dialect a bundle may carry gate bits (the `Conn::flags` a connection needs to get the
//! frame) and a [`Routing`] (an allow-list, a user who gets nothing, per-viewer frames, and a
//! tag its dialect reads after delivery). What the bits and tags mean is the dialect's.
//!
//! permessage-deflate recipients get the same frames compressed ([`Bundle::deflated_for`]):
//! compressed once per bundle, dialect and rendering (plain or alternative) by the first such
//! recipient on any shard, kept in the bundle and shared by all the others. Per-viewer frames
//! go uncompressed (a valid choice for any message under RFC 7692).

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

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
    /// The compressed frames, made when a permessage-deflate recipient first needs them (leave
    /// it default: nothing is allocated for a bundle no such recipient gets).
    pub deflated: OnceLock<Box<Deflated>>,
}

/// A bundle's frames compressed for permessage-deflate recipients, each made once.
#[derive(Debug, Default)]
pub struct Deflated {
    frames: [OnceLock<Bytes>; DIALECT_COUNT],
    alternative: [OnceLock<Bytes>; DIALECT_COUNT],
}

/// Which of a bundle's renderings a connection gets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Plain,
    Alternative,
    Viewer,
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
        self.pick(dialect, user, flags).map(|(_, frame)| frame)
    }

    /// [`Bundle::frame_for`] for a permessage-deflate connection: the same frames with each data
    /// message of at least `threshold` payload bytes compressed. Compressed once per dialect and
    /// rendering by the first caller (on any shard: the bundle is shared), then a refcount
    /// bump for every other; per-viewer frames come plain.
    pub fn deflated_for(
        &self,
        dialect: DialectId,
        user: &UserId,
        flags: u8,
        threshold: usize,
    ) -> Option<Bytes> {
        let (source, frame) = self.pick(dialect, user, flags)?;
        let deflated = self.deflated.get_or_init(Box::default);
        let cache = match source {
            Source::Plain => &deflated.frames[dialect.index()],
            Source::Alternative => &deflated.alternative[dialect.index()],
            Source::Viewer => return Some(frame.clone()),
        };
        let compress = || crate::ws::deflate::compress_frames(frame, threshold, 15);
        Some(cache.get_or_init(compress).clone())
    }

    #[inline]
    fn pick(&self, dialect: DialectId, user: &UserId, flags: u8) -> Option<(Source, &Bytes)> {
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
                return Some((Source::Viewer, frame));
            }
        }
        if let Some(alt) = &self.alternative {
            if alt.users.contains(user) {
                return alt.frames[d].as_ref().map(|f| (Source::Alternative, f));
            }
        }
        self.frames[d].as_ref().map(|f| (Source::Plain, f))
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
    fn deflated_frames_are_made_once_and_shared() {
        let (u, m, v) = (UserId::new("u"), UserId::new("m"), UserId::new("v"));
        let json = br#"{"type":"message","text":"hello hello hello hello hello hello"}"#.repeat(5);
        let mut b = bundle();
        b.frames[D.index()] = Some(crate::ws::frame::text(&json));
        let mut alt: Frames = Default::default();
        alt[D.index()] = Some(crate::ws::frame::text(&json[1..]));
        b.alternative =
            Some(Box::new(Alternative { users: [m.clone()].into_iter().collect(), frames: alt }));
        let viewer = crate::ws::frame::text(&json[2..]);
        b.routing[D.index()] = Some(Box::new(Routing {
            per_viewer: [(v.clone(), viewer.clone())].into_iter().collect(),
            ..Routing::default()
        }));
        assert!(b.deflated.get().is_none(), "nothing made before a deflate recipient");
        let first = b.deflated_for(D, &u, 0, 128).unwrap();
        let second = b.deflated_for(D, &UserId::new("w"), 0, 128).unwrap();
        assert_eq!(first.as_ptr(), second.as_ptr(), "one compressed frame, shared");
        assert_eq!(first[0], 0xC1, "RSV1 set");
        assert!(first.len() < b.frames[D.index()].as_ref().unwrap().len());
        let for_m = b.deflated_for(D, &m, 0, 128).unwrap();
        assert_eq!(for_m.as_ptr(), b.deflated_for(D, &m, 0, 128).unwrap().as_ptr());
        assert_ne!(for_m, first, "the alternative is compressed on its own");
        assert_eq!(b.deflated_for(D, &v, 0, 128).unwrap().as_ptr(), viewer.as_ptr(), "plain");
        // Nothing to compress in it: the plain frame itself.
        let plain = b.deflated_for(E, &u, 0, 0).unwrap();
        assert_eq!(plain.as_ptr(), b.frames[E.index()].as_ref().unwrap().as_ptr());
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
