//! Dialects: the wire protocols clients speak. Each renders core events into complete frames
//! (pure functions) and keeps its per-connection protocol state.

pub mod virola;

use crate::fanout::Frames;
use crate::model::Event;

/// Which wire protocol a connection speaks; indexes a bundle's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialectKind {
    /// Virola `/api/v1/events`.
    Virola = 0,
    /// The conformance echo endpoint (receives no events).
    Echo = 1,
}

impl DialectKind {
    /// Number of dialects, the length of a bundle's frame array.
    pub const COUNT: usize = 2;
}

/// Renders `event` into frames for every dialect that receives events, as a viewer who is
/// (`moderator = true`) or is not a moderator of the room sees it.
pub fn render_all(event: &Event, moderator: bool) -> Frames {
    let mut frames: Frames = Default::default();
    frames[DialectKind::Virola as usize] = Some(virola::render(event, moderator));
    frames
}
