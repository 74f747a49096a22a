//! Identifiers of the core model, and the hash that maps each owned object to its owner shard.
//!
//! Invariant: `shard_of_*` is a pure function of the id and the shard count, so every shard
//! computes the same owner without asking anyone. Room and message ids carry their owner in
//! their value (`id % shards`), which is how a message id alone finds its room's owner.

use std::fmt;
use std::sync::Arc;

use crate::limits::USER_ID_BYTES_MAX;

/// Defines a `Copy` id newtype over an integer: ordered, hashable, rendered (`Display`, serde)
/// as the plain number, so JSON and paths show exactly the number they showed before.
macro_rules! int_id {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            PartialOrd,
            Ord,
            Hash,
            Default,
            serde::Serialize,
            serde::Deserialize,
        )]
        #[repr(transparent)]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl $name {
            /// The raw number.
            pub const fn get(self) -> $inner {
                self.0
            }
        }

        impl From<$inner> for $name {
            fn from(value: $inner) -> Self {
                $name(value)
            }
        }

        impl From<$name> for $inner {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

int_id! {
    /// A room's id: unique server-wide, `id % shard_count` is its owner shard.
    RoomId(u64)
}

int_id! {
    /// A message's id: unique server-wide, increasing within a room, `id % shard_count` is the
    /// owner shard of its room.
    MessageId(u64)
}

int_id! {
    /// A message's position in its room: 1, 2, 3, …
    Seq(u64)
}

int_id! {
    /// The index of a shard, `0..shard_count`.
    ShardId(usize)
}

impl ShardId {
    /// This shard's bit in a mask of shards (`u64`, so at most 64 shards).
    pub const fn bit(self) -> u64 {
        1 << self.0
    }

    /// Every shard of a server with `shard_count` shards, in order.
    pub fn all(shard_count: usize) -> impl Iterator<Item = ShardId> {
        (0..shard_count).map(ShardId)
    }
}

impl Seq {
    /// The seq after this one.
    pub const fn next(self) -> Seq {
        Seq(self.0 + 1)
    }

    /// How many seqs lie after `earlier` up to this one (0 when `earlier` is not earlier).
    pub const fn saturating_sub(self, earlier: Seq) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// A user's id: the JWT `sub`, shared cheaply across shards.
///
/// What a user id may be (one rule, [`UserId::parse`], applied wherever an id enters: the JWT
/// `sub`, REST bodies, paths and query parameters, dialect frames): 1 to
/// [`USER_ID_BYTES_MAX`] bytes of UTF-8 with no control character (C0, DEL, C1), no
/// whitespace, no `/`, no invisible formatting character (zero-width and bidirectional
/// controls, U+FEFF), and not `.` or `..`. Ids are compared byte for byte (no case folding or
/// Unicode normalization).
///
/// 16 bytes: an id of at most [`USER_ID_INLINE_BYTES`] bytes (numeric `sub`s, short names) is
/// kept inline and copied, so a connected user's id allocates nothing (24 B per idle
/// connection before: perf/RESULTS.md, idle memory, session 8); a longer one is shared behind
/// one `Arc`.
#[derive(Clone)]
pub struct UserId(IdRepr);

/// The longest user id kept inline in a [`UserId`].
pub const USER_ID_INLINE_BYTES: usize = 14;

/// A [`UserId`]'s text. Invariant: `Inline`'s first `len` bytes are a copy of a `&str`.
#[derive(Clone)]
enum IdRepr {
    Inline {
        len: u8,
        bytes: [u8; USER_ID_INLINE_BYTES],
    },
    // A thin pointer (an `Arc<str>` is two words, which would make the id 24 bytes).
    #[allow(clippy::redundant_allocation)]
    Shared(Arc<Box<str>>),
}

impl PartialEq for UserId {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for UserId {}

impl std::hash::Hash for UserId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for UserId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for UserId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

/// Why a string is not a user id (see [`UserId`] for the rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidUserId {
    /// The empty string.
    Empty,
    /// Longer than [`USER_ID_BYTES_MAX`] bytes.
    TooLong,
    /// `.` or `..`, which URL paths treat as dot segments.
    DotSegment,
    /// It holds this forbidden character.
    Forbidden(char),
}

impl fmt::Display for InvalidUserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidUserId::Empty => f.write_str("a user id must not be empty"),
            InvalidUserId::TooLong => {
                write!(f, "a user id is at most {USER_ID_BYTES_MAX} bytes")
            }
            InvalidUserId::DotSegment => f.write_str("a user id must not be \".\" or \"..\""),
            InvalidUserId::Forbidden(c) => write!(
                f,
                "a user id must not contain {:?} (U+{:04X}): no control, whitespace, \
                 invisible formatting characters or '/'",
                c, *c as u32
            ),
        }
    }
}

impl std::error::Error for InvalidUserId {}

/// Whether `c` may not appear in a user id.
fn forbidden_in_user_id(c: char) -> bool {
    c.is_control()
        || c.is_whitespace()
        || c == '/'
        // Zero-width characters, bidirectional marks, embeddings, overrides and isolates,
        // invisible operators, the byte-order mark and interlinear annotation characters: they
        // make two different ids look the same.
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

impl UserId {
    /// Wraps a user id string that is already known to be one (stored data, tests); input
    /// from a client goes through [`UserId::parse`].
    pub fn new(id: &str) -> Self {
        if id.len() <= USER_ID_INLINE_BYTES {
            let mut bytes = [0; USER_ID_INLINE_BYTES];
            bytes[..id.len()].copy_from_slice(id.as_bytes());
            UserId(IdRepr::Inline { len: id.len() as u8, bytes })
        } else {
            UserId(IdRepr::Shared(Arc::new(Box::from(id))))
        }
    }

    /// Checks `id` against the user id rule (see [`UserId`]) and wraps it.
    pub fn parse(id: &str) -> Result<Self, InvalidUserId> {
        Self::check(id)?;
        Ok(UserId::new(id))
    }

    /// Checks `id` against the user id rule without wrapping it.
    pub fn check(id: &str) -> Result<(), InvalidUserId> {
        if id.is_empty() {
            return Err(InvalidUserId::Empty);
        }
        if id.len() > USER_ID_BYTES_MAX {
            return Err(InvalidUserId::TooLong);
        }
        if id == "." || id == ".." {
            return Err(InvalidUserId::DotSegment);
        }
        match id.chars().find(|&c| forbidden_in_user_id(c)) {
            Some(c) => Err(InvalidUserId::Forbidden(c)),
            None => Ok(()),
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // SAFETY: `new` copied these `len` bytes from a `&str` (the invariant of
            // `IdRepr`), so they are UTF-8.
            IdRepr::Inline { len, bytes } => unsafe {
                std::str::from_utf8_unchecked(&bytes[..usize::from(*len)])
            },
            IdRepr::Shared(text) => text,
        }
    }

    /// The id as an integer when it is one (protocols with integer user ids render it so).
    pub fn as_u64(&self) -> Option<u64> {
        let s = self.as_str();
        if s.is_empty() || (s.len() > 1 && s.starts_with('0')) {
            return None;
        }
        s.parse().ok()
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The owner shard of a room.
pub fn shard_of_room(room: RoomId, shard_count: usize) -> ShardId {
    ShardId((room.0 % shard_count as u64) as usize)
}

/// The owner shard of a message's room: message ids carry it as room ids do.
pub fn shard_of_message(message: MessageId, shard_count: usize) -> ShardId {
    ShardId((message.0 % shard_count as u64) as usize)
}

/// The owner shard of a user: FNV-1a of the id, stable across builds and restarts.
pub fn shard_of_user(user: &UserId, shard_count: usize) -> ShardId {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in user.as_str().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    ShardId((hash % shard_count as u64) as usize)
}

/// The owner of the direct room of users `a` and `b` (in either order; `a` = `b` for a user's
/// dialog with itself): a hash of the ordered pair, so both users' requests meet on one shard.
pub fn shard_of_pair(a: &UserId, b: &UserId, shard_count: usize) -> ShardId {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in lo.as_str().bytes().chain([0u8]).chain(hi.as_str().bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    ShardId((hash % shard_count as u64) as usize)
}

/// Allocates ids owned by one shard: `counter * shard_count + shard`, so `id % shard_count`
/// names the owner and ids from one allocator strictly increase.
#[derive(Debug)]
pub struct IdAllocator {
    next_counter: u64,
    shard: ShardId,
    shard_count: usize,
}

impl IdAllocator {
    /// An allocator whose first id is the smallest id above `after` that this shard owns.
    pub fn new(shard: ShardId, shard_count: usize, after: u64) -> Self {
        let n = shard_count as u64;
        let next_counter = after / n + 1;
        IdAllocator { next_counter, shard, shard_count }
    }

    /// The next id; strictly greater than every id returned before.
    pub fn next_id(&mut self) -> u64 {
        let id = self.next_counter * self.shard_count as u64 + self.shard.0 as u64;
        self.next_counter += 1;
        id
    }
}

/// Milliseconds since the Unix epoch, the model's one clock unit.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `2023-01-12T09:17:03+00:00` for a time in ms since the epoch (UTC).
pub fn iso8601(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl serde::Serialize for UserId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Decoding checks the user id rule: ids from another node are input like any other.
impl<'de> serde::Deserialize<'de> for UserId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        UserId::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_allocator_increase_and_name_their_owner() {
        let mut alloc = IdAllocator::new(ShardId(1), 4, 0);
        let ids: Vec<u64> = (0..5).map(|_| alloc.next_id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert!(ids.iter().all(|&id| shard_of_room(RoomId(id), 4) == ShardId(1)));
        let mut resumed = IdAllocator::new(ShardId(1), 4, ids[4]);
        assert!(resumed.next_id() > ids[4]);
    }

    /// 16 bytes, inline up to 14 (perf/RESULTS.md, idle memory, session 8), and the same
    /// text, order, equality and hash either way.
    #[test]
    fn user_id_is_16_bytes_and_keeps_its_text_inline_or_shared() {
        use std::hash::BuildHasher;
        assert_eq!(std::mem::size_of::<UserId>(), 16);
        assert_eq!(std::mem::size_of::<Option<UserId>>(), 16);
        let hasher = std::hash::RandomState::new();
        let ids = ["u1", "u12345", "14-bytes-id-ok", "fifteen-bytes-x", "é€ unicode ✓ long id"];
        for text in ids {
            let id = UserId::new(text);
            assert_eq!((id.as_str(), id.to_string()), (text, text.to_string()));
            assert_eq!(format!("{id:?}"), format!("{text:?}"));
            assert_eq!(id.clone(), id);
            assert_eq!(hasher.hash_one(&id), hasher.hash_one(UserId::new(text)));
        }
        assert!(matches!(UserId::new("14-bytes-id-ok").0, IdRepr::Inline { len: 14, .. }));
        assert!(matches!(UserId::new("fifteen-bytes-x").0, IdRepr::Shared(_)));
        let mut sorted: Vec<UserId> = ids.iter().map(|t| UserId::new(t)).collect();
        sorted.sort();
        let mut texts = ids.to_vec();
        texts.sort();
        assert_eq!(sorted.iter().map(UserId::as_str).collect::<Vec<_>>(), texts);
        assert_ne!(UserId::new("u1"), UserId::new("u12"));
    }

    #[test]
    fn numeric_user_ids_render_as_integers_only_when_canonical() {
        assert_eq!(UserId::new("42").as_u64(), Some(42));
        assert_eq!(UserId::new("042").as_u64(), None);
        assert_eq!(UserId::new("alice").as_u64(), None);
        assert_eq!(UserId::new("").as_u64(), None);
    }

    #[test]
    fn the_user_id_rule() {
        let long = "x".repeat(USER_ID_BYTES_MAX);
        let too_long = "x".repeat(USER_ID_BYTES_MAX + 1);
        let accepted = [
            "1001",
            "alice",
            "u123",
            "backend",
            "py-bob",
            "user7",
            "-7",
            "042",
            "café",
            "auth0|5f7c8ec7",
            "alice@example.com",
            "a.b",
            "...",
            "%2F",
            "用户",
            long.as_str(),
        ];
        for id in accepted {
            assert_eq!(UserId::parse(id).map(|u| u.as_str().to_owned()), Ok(id.to_owned()));
        }
        let refused: [(&str, InvalidUserId); 14] = [
            ("", InvalidUserId::Empty),
            (&too_long, InvalidUserId::TooLong),
            (".", InvalidUserId::DotSegment),
            ("..", InvalidUserId::DotSegment),
            ("a/b", InvalidUserId::Forbidden('/')),
            ("bob\0", InvalidUserId::Forbidden('\0')),
            ("bob\n", InvalidUserId::Forbidden('\n')),
            ("\u{7f}", InvalidUserId::Forbidden('\u{7f}')),
            ("\u{85}x", InvalidUserId::Forbidden('\u{85}')),
            ("al ice", InvalidUserId::Forbidden(' ')),
            ("alice\u{a0}", InvalidUserId::Forbidden('\u{a0}')),
            ("al\u{200b}ice", InvalidUserId::Forbidden('\u{200b}')),
            ("\u{202e}ecila", InvalidUserId::Forbidden('\u{202e}')),
            ("\u{feff}alice", InvalidUserId::Forbidden('\u{feff}')),
        ];
        for (id, why) in refused {
            assert_eq!(UserId::parse(id).map(|u| u.as_str().to_owned()), Err(why), "{id:?}");
        }
    }

    #[test]
    fn user_shard_is_stable() {
        let u = UserId::new("alice");
        assert_eq!(shard_of_user(&u, 7), shard_of_user(&UserId::new("alice"), 7));
        assert!(shard_of_user(&u, 7) < ShardId(7));
    }
}
