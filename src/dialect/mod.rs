//! Dialects: the wire protocols clients speak. Each renders core events into complete frames
//! (pure functions) and keeps its per-connection protocol state.

pub mod big;
pub mod osu;
pub mod virola;

use crate::fanout::Frames;
use crate::model::Event;
use std::sync::atomic::{AtomicU64, Ordering};

/// Which wire protocol a connection speaks; indexes a bundle's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialectKind {
    /// Virola `/api/v1/events`.
    Virola = 0,
    /// The conformance echo endpoint (receives no events).
    Echo = 1,
    /// osu! notification websocket `/notifications`.
    Osu = 2,
    /// BIG messenger `/websocket`.
    Big = 3,
}

impl DialectKind {
    /// Number of dialects, the length of a bundle's frame array.
    pub const COUNT: usize = 4;
}

/// Open event connections per dialect, process-wide. An owner renders a dialect's frames only
/// while this is non-zero ("once per dialect in use"). A connection counts from before it is
/// registered with its user's owner until it is dropped, so it never misses an event it is
/// subscribed to; the count is shared by every server in the process (tests), which can only
/// over-render.
static CONNECTIONS: [AtomicU64; DialectKind::COUNT] =
    [const { AtomicU64::new(0) }; DialectKind::COUNT];

/// Counts a new connection of `dialect`.
pub fn connection_opened(dialect: DialectKind) {
    CONNECTIONS[dialect as usize].fetch_add(1, Ordering::AcqRel);
}

/// Counts a closed connection of `dialect`.
pub fn connection_closed(dialect: DialectKind) {
    CONNECTIONS[dialect as usize].fetch_sub(1, Ordering::AcqRel);
}

/// Whether any connection of `dialect` is open.
pub fn in_use(dialect: DialectKind) -> bool {
    CONNECTIONS[dialect as usize].load(Ordering::Acquire) > 0
}

/// Renders `event` into frames for every dialect that receives events, as a viewer who is
/// (`moderator = true`) or is not a moderator of the room sees it.
///
/// osu! frames that depend on the viewer (channel join/part) are rendered by the owner for
/// each viewer (`osu::channel_event`); here osu gets only `chat.message.new`. BIG frames depend
/// on the room's kind and members, so the owner renders them (`shard::big`).
pub fn render_all(event: &Event, moderator: bool) -> Frames {
    let mut frames: Frames = Default::default();
    if in_use(DialectKind::Virola) {
        frames[DialectKind::Virola as usize] = Some(virola::render(event, moderator));
    }
    if let Event::MessageCreated(m) = event {
        if in_use(DialectKind::Osu) {
            frames[DialectKind::Osu as usize] = Some(osu::message_new(m));
        }
    }
    frames
}
