//! A bundle: one event rendered once per dialect (and per viewer variant), shared by every
//! recipient through reference counts. No per-recipient copy or encoding ever happens.

use std::collections::HashSet;

use bytes::Bytes;

use crate::dialect::DialectKind;
use crate::model::UserId;

/// Complete WebSocket frames for one event, by dialect; `None` where no connection of that
/// dialect needs it.
pub type Frames = [Option<Bytes>; DialectKind::COUNT];

/// One event's frames, plus an alternative rendering for a set of users (e.g. a room shown to
/// its moderators with `isModerator: true`).
#[derive(Debug, Default)]
pub struct Bundle {
    /// What every recipient gets unless it is in `alternative`.
    pub frames: Frames,
    /// Users who get other frames instead.
    pub alternative: Option<Box<Alternative>>,
}

/// A second rendering of the same event for some users.
#[derive(Debug)]
pub struct Alternative {
    /// Who gets these frames.
    pub users: HashSet<UserId>,
    /// The frames.
    pub frames: Frames,
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
}
