//! A bundle: one event rendered once per dialect (and per viewer variant), shared by every
//! recipient through reference counts. No per-recipient copy or encoding ever happens.

use std::collections::HashSet;

use bytes::Bytes;

use crate::dialect::{osu, DialectKind};
use crate::model::UserId;

/// Complete WebSocket frames for one event, by dialect; `None` where no connection of that
/// dialect needs it.
pub type Frames = [Option<Bytes>; DialectKind::COUNT];

/// What kind of event a bundle carries; dialects with per-connection subscriptions gate on it
/// (osu!: `chat.*` only after `chat.start`, notifications only with scope `*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EventClass {
    /// Room changes (Virola room events); not gated.
    #[default]
    Room,
    /// Chat: messages, channel join/part.
    Chat,
    /// Notifications: new, read.
    Notification,
}

/// One event's frames, plus an alternative rendering for a set of users (e.g. a room shown to
/// its moderators with `isModerator: true`).
#[derive(Debug, Default)]
pub struct Bundle {
    /// What every recipient gets unless it is in `alternative`.
    pub frames: Frames,
    /// Users who get other frames instead.
    pub alternative: Option<Box<Alternative>>,
    /// The event's class, for per-connection gating.
    pub class: EventClass,
    /// osu!-only routing: an allow-list and per-viewer frames.
    pub osu: Option<Box<OsuRouting>>,
    /// BIG-only routing: the actor who gets no frame, and per-viewer frames.
    pub big: Option<Box<BigRouting>>,
}

/// A second rendering of the same event for some users.
#[derive(Debug)]
pub struct Alternative {
    /// Who gets these frames.
    pub users: HashSet<UserId>,
    /// The frames.
    pub frames: Frames,
}

/// How an event reaches osu! connections beyond the plain frame.
#[derive(Debug, Default)]
pub struct OsuRouting {
    /// Only these users' osu connections get the frame (public rooms: members active in the
    /// last 60 s); `None` = everyone.
    pub only: Option<HashSet<UserId>>,
    /// Frames rendered for one viewer (a PM channel named after the other member), one per
    /// distinct variant; a user listed here gets its own frame instead of the plain one.
    pub per_viewer: Vec<(UserId, Bytes)>,
}

/// How an event reaches BIG connections beyond the plain frame.
#[derive(Debug, Default)]
pub struct BigRouting {
    /// The event's id: recipients acknowledge it, their user owner keeps it until then.
    pub id: std::sync::Arc<str>,
    /// Never re-sent, nothing to acknowledge (`typing`).
    pub transient: bool,
    /// This user's BIG connections get nothing (the sender of a message gets its `response`).
    pub skip: Option<UserId>,
    /// Frames rendered for one viewer (a direct room's `chatId` is the other member, a
    /// member's `missed`), one rendering per distinct variant shared by the users that see it;
    /// a user listed here gets its frame instead of the plain one.
    pub per_viewer: std::collections::HashMap<UserId, Bytes>,
    /// A `new` event: the recipients' user owners mark this seq delivered for them.
    pub mark: Option<u64>,
}

impl Bundle {
    /// The frame for a connection of `dialect` belonging to `user`.
    pub fn frame_for(&self, dialect: DialectKind, user: &UserId) -> Option<&Bytes> {
        if let Some(alt) = &self.alternative {
            if alt.users.contains(user) {
                return alt.frames[dialect as usize].as_ref();
            }
        }
        self.frames[dialect as usize].as_ref()
    }

    /// The frame for a connection of `dialect` belonging to `user` whose dialect protocol
    /// flags are `flags` (`Conn::flags`), `None` when the connection must not get this event.
    #[inline]
    pub fn frame_gated(&self, dialect: DialectKind, user: &UserId, flags: u8) -> Option<&Bytes> {
        if dialect == DialectKind::Osu {
            return self.osu_frame(user, flags);
        }
        if let (DialectKind::Big, Some(big)) = (dialect, &self.big) {
            return big.frame(user, self.frames[DialectKind::Big as usize].as_ref());
        }
        self.frame_for(dialect, user)
    }

    fn osu_frame(&self, user: &UserId, flags: u8) -> Option<&Bytes> {
        let allowed = match self.class {
            EventClass::Room => true,
            EventClass::Chat => flags & osu::CHAT_ACTIVE != 0,
            EventClass::Notification => flags & osu::SCOPE_ALL != 0,
        };
        if !allowed {
            return None;
        }
        if let Some(routing) = &self.osu {
            if routing.only.as_ref().is_some_and(|only| !only.contains(user)) {
                return None;
            }
            if let Some((_, frame)) = routing.per_viewer.iter().find(|(u, _)| u == user) {
                return Some(frame);
            }
        }
        self.frames[DialectKind::Osu as usize].as_ref()
    }
}

impl BigRouting {
    fn frame<'a>(&'a self, user: &UserId, plain: Option<&'a Bytes>) -> Option<&'a Bytes> {
        if self.skip.as_ref() == Some(user) {
            return None;
        }
        self.per_viewer.get(user).or(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn osu_bundle(class: EventClass) -> Bundle {
        let mut frames: Frames = Default::default();
        frames[DialectKind::Osu as usize] = Some(Bytes::from_static(b"osu"));
        frames[DialectKind::Virola as usize] = Some(Bytes::from_static(b"virola"));
        Bundle { frames, class, ..Bundle::default() }
    }

    #[test]
    fn osu_frames_are_gated_by_chat_flag_and_scope_virola_is_not() {
        let u = UserId::new("1");
        let chat = osu_bundle(EventClass::Chat);
        assert!(chat.frame_gated(DialectKind::Osu, &u, 0).is_none());
        assert!(chat.frame_gated(DialectKind::Osu, &u, osu::SCOPE_ALL).is_none());
        assert!(chat.frame_gated(DialectKind::Osu, &u, osu::CHAT_ACTIVE).is_some());
        assert!(chat.frame_gated(DialectKind::Virola, &u, 0).is_some());
        let note = osu_bundle(EventClass::Notification);
        assert!(note.frame_gated(DialectKind::Osu, &u, osu::CHAT_ACTIVE).is_none());
        assert!(note.frame_gated(DialectKind::Osu, &u, osu::SCOPE_ALL).is_some());
    }

    #[test]
    fn osu_allow_list_and_viewer_variants() {
        let (a, b, c) = (UserId::new("a"), UserId::new("b"), UserId::new("c"));
        let mut bundle = osu_bundle(EventClass::Chat);
        bundle.osu = Some(Box::new(OsuRouting {
            only: Some([a.clone(), b.clone()].into_iter().collect()),
            per_viewer: vec![(b.clone(), Bytes::from_static(b"for b"))],
        }));
        let on = osu::CHAT_ACTIVE;
        assert_eq!(bundle.frame_gated(DialectKind::Osu, &a, on).unwrap().as_ref(), b"osu");
        assert_eq!(bundle.frame_gated(DialectKind::Osu, &b, on).unwrap().as_ref(), b"for b");
        assert!(bundle.frame_gated(DialectKind::Osu, &c, on).is_none());
        assert!(bundle.frame_gated(DialectKind::Virola, &c, 0).is_some(), "Virola unaffected");
    }
}
