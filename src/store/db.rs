//! One shard's redb file: its tables, opening and schema check, recovery, applying batches of
//! [`StoreOp`]s inside a write transaction, and the reads (history, message → room, a message by
//! id, a message by room and seq).
//!
//! Tables:
//! - `rooms`: room id → rkyv [`RoomRecord`]
//! - `members`: (room id, user id) → role byte
//! - `messages`: (room id, message id) → rkyv [`MessageRecord`]; message ids increase within a
//!   room, so a room's messages are one key range in id (= seq) order
//! - `message_room_blocks`: message id >> [`MESSAGE_ROOM_BLOCK_BITS`] → the (message id, room
//!   id) pairs of that block of ids, ascending (16 bytes each, little-endian): the message →
//!   room index for lookups of messages outside the window, written once per block touched by
//!   a transaction instead of once per message. An entry is never removed: one left by a
//!   deleted room names a room whose key no longer holds the message, which reads as absent.
//! - `message_rooms`: message id → room id, the same index as written by schema version 1
//!   (one entry per message); read when a block has no entry, never written any more
//! - `notifications`: (user id, notification id) → rkyv [`NotificationRecord`]
//! - `revoked_sessions`: session id → (user id, expiry unix s) of a logged-out session
//! - `dialect_records`: (dialect index, user id, key) → a dialect's bytes (for example BIG's
//!   unacknowledged events), read back whole at start
//! - `meta`: `schema_version`, `max_room_id`, `max_message_id` (high-water marks, never lowered,
//!   so deleted rooms' and messages' ids are never reused)
//!
//! Invariants: nothing read from the file is trusted: a record that does not validate (rkyv
//! bytecheck) or whose key disagrees with its body is an error, never a panic or a skip.
//! Limits: history reads return at most [`STORE_HISTORY_READ_MAX`] messages; a room deletion
//! deletes all of the room's messages in the same transaction (cost grows with the room).

use std::ops::Bound;
use std::path::Path;

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, WriteTransaction,
};
use rkyv::rancor;

use super::record::{
    ArchivedMessageRecord, DialectRecord, MessageRecord, NotificationRecord, ReceiptRecord,
    Recovered, RecoveredRoom, RevokedRecord, RoomRecord, StoreOp,
};
use super::StoreError;
use crate::limits::{STORE_CACHE_BYTES, STORE_HISTORY_READ_MAX};
use crate::model::event::message_encoded_len;

/// Version of the table layout inside a shard file: 2 adds `message_room_blocks` (version 1
/// files are read as they are and marked 2 at open; a version 1 build refuses them then, as it
/// would not see the new index).
const SCHEMA_VERSION: u64 = 2;
/// The oldest version this build opens.
const SCHEMA_VERSION_MIN: u64 = 1;

pub(super) const ROOMS: TableDefinition<u64, &[u8]> = TableDefinition::new("rooms");
const MEMBERS: TableDefinition<(u64, &str), u8> = TableDefinition::new("members");
const MESSAGES: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("messages");
const MESSAGE_ROOMS: TableDefinition<u64, u64> = TableDefinition::new("message_rooms");
const MESSAGE_ROOM_BLOCKS: TableDefinition<u64, &[u8]> =
    TableDefinition::new("message_room_blocks");
/// A block of `message_room_blocks` covers 2^this consecutive message ids (at most 16 KiB of
/// pairs with one shard, less with more: a shard's ids are every `shard_count`-th).
pub(crate) const MESSAGE_ROOM_BLOCK_BITS: u32 = 10;
/// Bytes of one (message id, room id) pair in a block.
const PAIR: usize = 16;
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const NOTIFICATIONS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("notifications");
const REVOKED: TableDefinition<&str, (&str, u64)> = TableDefinition::new("revoked_sessions");
/// (room, user) → (delivered, delivered_ms, read, read_ms).
const RECEIPTS: TableDefinition<(u64, &str), (u64, u64, u64, u64)> =
    TableDefinition::new("receipts");

/// (dialect, user, key) → the dialect's bytes.
const DIALECT_RECORDS: TableDefinition<(u8, &str, &str), &[u8]> =
    TableDefinition::new("dialect_records");

const META_SCHEMA: &str = "schema_version";
const META_MAX_ROOM: &str = "max_room_id";
const META_MAX_MESSAGE: &str = "max_message_id";
/// The write-ahead log's current generation (see `log`); absent until the first checkpoint.
const META_LOG_GEN: &str = "log_gen";

/// A failure inside the store threads: a redb error or a record that does not decode.
#[derive(Debug)]
pub(crate) struct Fail(pub String);

macro_rules! fail_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Fail {
            fn from(e: $t) -> Self {
                Fail(e.to_string())
            }
        }
    )*};
}
fail_from!(
    redb::Error,
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::DatabaseError,
    redb::SetDurabilityError,
    rancor::Error
);

/// High-water marks of ids ever stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Marks {
    pub max_room_id: u64,
    pub max_message_id: u64,
}

/// Opens (creating if absent) a shard file with the store's cache size.
pub(crate) fn open_file(path: &Path) -> Result<Database, Fail> {
    Ok(Database::builder().set_cache_size(STORE_CACHE_BYTES).create(path)?)
}

/// Opens a shard file, creating its tables on first use and checking its schema version.
pub(crate) fn open(path: &Path) -> Result<Database, StoreError> {
    let created = !path.exists();
    let db = match Database::builder().set_cache_size(STORE_CACHE_BYTES).create(path) {
        Ok(db) => db,
        // Held by another process (redb locks the file): a clear message, not "corrupt".
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
            return Err(StoreError::InUse { path: path.to_path_buf(), pid: None })
        }
        Err(e) => return Err(StoreError::db(path, e)),
    };
    if created {
        if let Some(dir) = path.parent() {
            super::dir::sync_dir(dir)?;
        }
    }
    init(&db).map_err(|e| StoreError::db(path, e.0))?;
    Ok(db)
}

fn init(db: &Database) -> Result<(), Fail> {
    let txn = db.begin_write()?;
    {
        txn.open_table(ROOMS)?;
        txn.open_table(MEMBERS)?;
        txn.open_table(MESSAGES)?;
        txn.open_table(MESSAGE_ROOMS)?;
        txn.open_table(MESSAGE_ROOM_BLOCKS)?;
        txn.open_table(NOTIFICATIONS)?;
        txn.open_table(REVOKED)?;
        txn.open_table(RECEIPTS)?;
        txn.open_table(DIALECT_RECORDS)?;
        let mut meta = txn.open_table(META)?;
        let found = meta.get(META_SCHEMA)?.map(|v| v.value());
        match found {
            Some(SCHEMA_VERSION) => {}
            None => {
                meta.insert(META_SCHEMA, SCHEMA_VERSION)?;
            }
            Some(old) if (SCHEMA_VERSION_MIN..SCHEMA_VERSION).contains(&old) => {
                meta.insert(META_SCHEMA, SCHEMA_VERSION)?;
            }
            Some(other) => {
                return Err(Fail(format!(
                    "schema version {other} is not the version {SCHEMA_VERSION} this build reads"
                )))
            }
        }
    }
    txn.commit()?;
    Ok(())
}

fn decode_room(bytes: &[u8]) -> Result<RoomRecord, Fail> {
    Ok(rkyv::from_bytes::<RoomRecord, rancor::Error>(bytes)?)
}

fn decode_message(bytes: &[u8]) -> Result<MessageRecord, Fail> {
    Ok(rkyv::from_bytes::<MessageRecord, rancor::Error>(bytes)?)
}

/// Everything the shard needs at start: rooms, members, the newest messages per room (at most
/// `window.0` of them, and, but for the newest, within `window.1` bytes of encoded size, as
/// the room's in-memory window keeps them), and the high-water marks.
pub(crate) fn recover(db: &Database, window: (usize, usize)) -> Result<(Recovered, Marks), Fail> {
    let (window, window_bytes) = window;
    let txn = db.begin_read()?;
    let rooms = txn.open_table(ROOMS)?;
    let members = txn.open_table(MEMBERS)?;
    let messages = txn.open_table(MESSAGES)?;
    let meta = txn.open_table(META)?;
    let mut marks = Marks {
        max_room_id: meta.get(META_MAX_ROOM)?.map_or(0, |v| v.value()),
        max_message_id: meta.get(META_MAX_MESSAGE)?.map_or(0, |v| v.value()),
    };
    let mut out = Vec::new();
    for entry in rooms.iter()? {
        let (key, value) = entry?;
        let id = key.value();
        let mut room = decode_room(value.value())
            .map_err(|e| Fail(format!("room {id} does not decode: {}", e.0)))?;
        if room.id != id {
            return Err(Fail(format!("room under key {id} says it is {}", room.id)));
        }
        let mut room_members = Vec::new();
        for entry in members.range((Bound::Included((id, "")), room_upper(id)))? {
            let (key, role) = entry?;
            room_members.push((key.value().1.to_string(), role.value()));
        }
        let mut recent = Vec::with_capacity(window.min(1024));
        let mut recent_bytes = 0usize;
        for entry in messages.range((id, 0)..=(id, u64::MAX))?.rev().take(window) {
            let (key, value) = entry?;
            let (_, message_id) = key.value();
            let message = decode_message(value.value())
                .map_err(|e| Fail(format!("message {message_id} does not decode: {}", e.0)))?;
            if message.id != message_id || message.room != id {
                return Err(Fail(format!(
                    "message under key ({id}, {message_id}) says it is {} in room {}",
                    message.id, message.room
                )));
            }
            marks.max_message_id = marks.max_message_id.max(message_id);
            let size = message_encoded_len(
                &message.author,
                &message.text,
                message.client_message_id.as_deref(),
                &message.kind,
                &message.attachments,
                &message.attributes,
            );
            recent_bytes = recent_bytes.saturating_add(size);
            if !recent.is_empty() && recent_bytes > window_bytes {
                break;
            }
            recent.push(message);
        }
        recent.reverse();
        // A posted message does not rewrite its room's record: the room's last seq is the
        // newest stored message's when that is newer (the window always holds the newest).
        if let Some(newest) = recent.last() {
            room.last_seq = room.last_seq.max(newest.seq);
        }
        marks.max_room_id = marks.max_room_id.max(id);
        out.push(RecoveredRoom { room, members: room_members, recent });
    }
    let mut notifications_out = Vec::new();
    let mut max_notification_id = 0;
    for entry in txn.open_table(NOTIFICATIONS)?.iter()? {
        let (key, value) = entry?;
        let (user, id) = key.value();
        let n = rkyv::from_bytes::<NotificationRecord, rancor::Error>(value.value())
            .map_err(|e| Fail(format!("notification {id} does not decode: {e}")))?;
        if n.id != id || n.user != user {
            return Err(Fail(format!("notification under key ({user}, {id}) says it is {}", n.id)));
        }
        max_notification_id = max_notification_id.max(id);
        notifications_out.push(n);
    }
    let now = crate::auth::now_unix_s();
    let mut revoked = Vec::new();
    for entry in txn.open_table(REVOKED)?.iter()? {
        let (key, value) = entry?;
        let (user, expires_at) = value.value();
        if expires_at >= now {
            revoked.push(RevokedRecord {
                sid: key.value().to_string(),
                user: user.to_string(),
                expires_at,
            });
        }
    }
    let mut receipts = Vec::new();
    for entry in txn.open_table(RECEIPTS)?.iter()? {
        let (key, value) = entry?;
        let (room, user) = key.value();
        let (delivered, delivered_ms, read, read_ms) = value.value();
        receipts.push(ReceiptRecord {
            room,
            user: user.to_string(),
            delivered,
            delivered_ms,
            read,
            read_ms,
        });
    }
    let mut dialect_records = Vec::new();
    for entry in txn.open_table(DIALECT_RECORDS)?.iter()? {
        let (key, value) = entry?;
        let (dialect, user, key) = key.value();
        dialect_records.push(DialectRecord {
            dialect,
            user: user.to_string(),
            key: key.to_string(),
            value: value.value().to_vec(),
        });
    }
    let recovered = Recovered {
        rooms: out,
        max_room_id: marks.max_room_id,
        max_message_id: marks.max_message_id,
        notifications: notifications_out,
        max_notification_id,
        revoked,
        receipts,
        dialect_records,
    };
    Ok((recovered, marks))
}

/// The log generation recorded by the last checkpoint, `None` before the first.
pub(crate) fn log_gen(db: &Database) -> Result<Option<u64>, Fail> {
    let txn = db.begin_read()?;
    let meta = txn.open_table(META)?;
    let gen = meta.get(META_LOG_GEN)?.map(|v| v.value());
    Ok(gen)
}

/// The high-water marks as stored.
fn stored_marks(txn: &WriteTransaction) -> Result<Marks, Fail> {
    let meta = txn.open_table(META)?;
    let max_room_id = meta.get(META_MAX_ROOM)?.map_or(0, |v| v.value());
    let max_message_id = meta.get(META_MAX_MESSAGE)?.map_or(0, |v| v.value());
    Ok(Marks { max_room_id, max_message_id })
}

/// A checkpoint: applies `batches` (logged, maybe already applied by lost non-durable
/// commits: applying them again in order gives the same state, since every op sets or
/// removes keys whatever was there), records `gen` as the log's new generation, and commits
/// durably, which also persists every earlier non-durable commit.
pub(crate) fn checkpoint(db: &Database, batches: &[Vec<StoreOp>], gen: u64) -> Result<(), Fail> {
    let txn = db.begin_write()?;
    let mut marks = stored_marks(&txn)?;
    apply(&txn, batches.iter().map(Vec::as_slice), &mut marks)?;
    txn.open_table(META)?.insert(META_LOG_GEN, gen)?;
    txn.commit()?;
    Ok(())
}

/// The exclusive upper bound of a room's member keys.
fn room_upper(room: u64) -> Bound<(u64, &'static str)> {
    match room.checked_add(1) {
        Some(next) => Bound::Excluded((next, "")),
        None => Bound::Unbounded,
    }
}

/// Applies every batch of a group, in order, inside `txn`, and raises `marks`.
pub(crate) fn apply<'a>(
    txn: &WriteTransaction,
    batches: impl Iterator<Item = &'a [StoreOp]>,
    marks: &mut Marks,
) -> Result<(), Fail> {
    let mut rooms = txn.open_table(ROOMS)?;
    let mut members = txn.open_table(MEMBERS)?;
    let mut messages = txn.open_table(MESSAGES)?;
    let mut message_rooms = txn.open_table(MESSAGE_ROOMS)?;
    let mut notifications = txn.open_table(NOTIFICATIONS)?;
    let mut revoked = txn.open_table(REVOKED)?;
    let mut receipts = txn.open_table(RECEIPTS)?;
    let mut dialect_records = txn.open_table(DIALECT_RECORDS)?;
    let before = *marks;
    // (message id, room id) of every message written, indexed once per block at the end.
    let mut indexed: Vec<(u64, u64)> = Vec::new();
    // One message's encoding, its allocation reused for the next.
    let mut encoded = rkyv::util::AlignedVec::<16>::new();
    for op in batches.flatten() {
        match op {
            StoreOp::PutRoom(room) => {
                let bytes = rkyv::to_bytes::<rancor::Error>(room)?;
                rooms.insert(room.id, bytes.as_slice())?;
                marks.max_room_id = marks.max_room_id.max(room.id);
            }
            StoreOp::DeleteRoom(id) => {
                let id = *id;
                rooms.remove(id)?;
                members.retain_in((Bound::Included((id, "")), room_upper(id)), |_, _| false)?;
                let mut ids = Vec::new();
                for entry in messages.range((id, 0)..=(id, u64::MAX))? {
                    ids.push(entry?.0.value().1);
                }
                messages.retain_in((id, 0)..=(id, u64::MAX), |_, _| false)?;
                receipts.retain_in((Bound::Included((id, "")), room_upper(id)), |_, _| false)?;
                // Entries of version 1's index; the blocks keep theirs (see the module doc).
                if !message_rooms.is_empty()? {
                    for message in ids {
                        message_rooms.remove(message)?;
                    }
                }
            }
            StoreOp::PutMember { room, user, role } => {
                members.insert((*room, user.as_str()), *role)?;
            }
            StoreOp::RemoveMember { room, user } => {
                members.remove((*room, user.as_str()))?;
            }
            StoreOp::PutMessage(message) => {
                let buf = std::mem::take(&mut encoded);
                let bytes = rkyv::api::high::to_bytes_in::<_, rancor::Error>(message, buf)?;
                messages.insert((message.room, message.id), bytes.as_slice())?;
                encoded = bytes;
                encoded.clear();
                indexed.push((message.id, message.room));
                marks.max_message_id = marks.max_message_id.max(message.id);
            }
            StoreOp::PutNotification(n) => {
                let bytes = rkyv::to_bytes::<rancor::Error>(n)?;
                notifications.insert((n.user.as_str(), n.id), bytes.as_slice())?;
            }
            StoreOp::DeleteNotification { user, id } => {
                notifications.remove((user.as_str(), *id))?;
            }
            StoreOp::PutReceipt(r) => {
                let value = (r.delivered, r.delivered_ms, r.read, r.read_ms);
                receipts.insert((r.room, r.user.as_str()), value)?;
            }
            StoreOp::PutDialectRecord(r) => {
                let key = (r.dialect, r.user.as_str(), r.key.as_str());
                dialect_records.insert(key, r.value.as_slice())?;
            }
            StoreOp::DeleteDialectRecord { dialect, user, key } => {
                dialect_records.remove((*dialect, user.as_str(), key.as_str()))?;
            }
            StoreOp::DeleteDialectRecords { dialect, user } => {
                let mut keys = Vec::new();
                for entry in dialect_records.range((*dialect, user.as_str(), "")..)? {
                    let (key, _) = entry?;
                    let (d, u, k) = key.value();
                    if d != *dialect || u != user.as_str() {
                        break;
                    }
                    keys.push(k.to_string());
                }
                for key in keys {
                    dialect_records.remove((*dialect, user.as_str(), key.as_str()))?;
                }
            }
            StoreOp::RevokeSession { sid, user, expires_at } => {
                revoked.insert(sid.as_str(), (user.as_str(), *expires_at))?;
            }
        }
    }
    index_message_rooms(txn, &mut indexed)?;
    if *marks != before {
        let mut meta = txn.open_table(META)?;
        meta.insert(META_MAX_ROOM, marks.max_room_id)?;
        meta.insert(META_MAX_MESSAGE, marks.max_message_id)?;
    }
    Ok(())
}

/// Adds `pairs` (message id, room id) to `message_room_blocks`: one read and one write per
/// block touched. A message already indexed keeps its entry (an edit rewrites the message, not
/// its room).
fn index_message_rooms(txn: &WriteTransaction, pairs: &mut [(u64, u64)]) -> Result<(), Fail> {
    if pairs.is_empty() {
        return Ok(());
    }
    // Ids are allocated in order, so this is usually sorted already.
    pairs.sort_unstable_by_key(|&(id, _)| id);
    let mut blocks = txn.open_table(MESSAGE_ROOM_BLOCKS)?;
    let mut merged: Vec<u8> = Vec::new();
    for run in
        pairs.chunk_by(|a, b| a.0 >> MESSAGE_ROOM_BLOCK_BITS == b.0 >> MESSAGE_ROOM_BLOCK_BITS)
    {
        let block = run[0].0 >> MESSAGE_ROOM_BLOCK_BITS;
        merged.clear();
        if let Some(old) = blocks.get(block)? {
            merged.extend_from_slice(old.value());
        }
        if merged.len() % PAIR != 0 {
            return Err(Fail(format!("message room block {block} is {} bytes", merged.len())));
        }
        // The block's own pairs are sorted; new ones go after them, sorted again if any
        // falls below its largest (an id the block lacks yet, older than its newest).
        let stored = merged.len();
        let stored_max = stored.checked_sub(PAIR).map(|at| pair_at(&merged, at).0);
        let mut sorted = true;
        let mut previous = None;
        for &(id, room) in run {
            if previous == Some(id) {
                continue;
            }
            previous = Some(id);
            if stored_max.is_some_and(|max| id <= max) {
                if block_find(&merged[..stored], id).is_some() {
                    continue;
                }
                sorted = false;
            }
            merged.extend_from_slice(&id.to_le_bytes());
            merged.extend_from_slice(&room.to_le_bytes());
        }
        if merged.len() == stored {
            continue;
        }
        if !sorted {
            let mut all: Vec<(u64, u64)> =
                (0..merged.len() / PAIR).map(|i| pair_at(&merged, i * PAIR)).collect();
            all.sort_unstable_by_key(|&(id, _)| id);
            merged.clear();
            for (id, room) in all {
                merged.extend_from_slice(&id.to_le_bytes());
                merged.extend_from_slice(&room.to_le_bytes());
            }
        }
        blocks.insert(block, merged.as_slice())?;
    }
    Ok(())
}

/// The pair at byte offset `at` of a block (`at + PAIR <= block.len()`).
fn pair_at(block: &[u8], at: usize) -> (u64, u64) {
    let mut id = [0u8; 8];
    let mut room = [0u8; 8];
    id.copy_from_slice(&block[at..at + 8]);
    room.copy_from_slice(&block[at + 8..at + PAIR]);
    (u64::from_le_bytes(id), u64::from_le_bytes(room))
}

/// The room `message` is indexed under in a block (binary search over its sorted pairs).
fn block_find(block: &[u8], message: u64) -> Option<u64> {
    let (mut lo, mut hi) = (0, block.len() / PAIR);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let (id, room) = pair_at(block, mid * PAIR);
        match id.cmp(&message) {
            std::cmp::Ordering::Equal => return Some(room),
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
        }
    }
    None
}

/// One entry of a range over `messages`.
type MessageEntry<'a> = Result<
    (redb::AccessGuard<'a, (u64, u64)>, redb::AccessGuard<'a, &'static [u8]>),
    redb::StorageError,
>;

/// A page of `room`'s history: ascending ids, strictly after `after` and strictly before
/// `before`, deleted messages skipped; with only `before`, the newest `limit` before it,
/// otherwise the oldest `limit` after `after`. `limit` is capped at [`STORE_HISTORY_READ_MAX`].
/// The page ends early (the `bool`: truncated) before the message that would bring its encoded
/// size over `bytes_max`, but holds at least one message.
pub(crate) fn history(
    txn: &ReadTransaction,
    room: u64,
    after: Option<u64>,
    before: Option<u64>,
    (limit, bytes_max): (usize, usize),
) -> Result<(Vec<MessageRecord>, bool), Fail> {
    let limit = limit.min(STORE_HISTORY_READ_MAX);
    let lo = match after {
        None => 0,
        Some(a) => match a.checked_add(1) {
            Some(lo) => lo,
            None => return Ok((Vec::new(), false)),
        },
    };
    let upper = match before {
        Some(b) if b <= lo => return Ok((Vec::new(), false)),
        Some(b) => Bound::Excluded((room, b)),
        None => Bound::Included((room, u64::MAX)),
    };
    if limit == 0 {
        return Ok((Vec::new(), false));
    }
    let messages = txn.open_table(MESSAGES)?;
    let range = messages.range((Bound::Included((room, lo)), upper))?;
    let newest_first = after.is_none() && before.is_some();
    let mut out = Vec::with_capacity(limit.min(64));
    let (mut page_bytes, mut truncated) = (0usize, false);
    let mut take = |entry: MessageEntry<'_>| -> Result<bool, Fail> {
        let (key, value) = entry?;
        let (_, id) = key.value();
        let bytes = value.value();
        let archived = rkyv::access::<ArchivedMessageRecord, rancor::Error>(bytes)
            .map_err(|e| Fail(format!("message {id} does not decode: {e}")))?;
        if archived.deleted_ms.is_none() {
            // Measured on the archived record, so one past the bound is never copied out.
            let size = message_encoded_len(
                archived.author.as_str(),
                archived.text.as_str(),
                archived.client_message_id.as_ref().map(|c| c.as_str()),
                archived.kind.as_str(),
                archived.attachments.as_str(),
                archived.attributes.as_str(),
            );
            if !out.is_empty() && page_bytes.saturating_add(size) > bytes_max {
                truncated = true;
                return Ok(false);
            }
            page_bytes = page_bytes.saturating_add(size);
            out.push(rkyv::deserialize::<MessageRecord, rancor::Error>(archived)?);
        }
        Ok(out.len() < limit)
    };
    if newest_first {
        for entry in range.rev() {
            if !take(entry)? {
                break;
            }
        }
        out.reverse();
    } else {
        for entry in range {
            if !take(entry)? {
                break;
            }
        }
    }
    Ok((out, truncated))
}

/// `message` itself, found through the `message_rooms` index (deleted ones too), if stored.
pub(crate) fn message(txn: &ReadTransaction, message: u64) -> Result<Option<MessageRecord>, Fail> {
    let Some(room) = message_room(txn, message)? else {
        return Ok(None);
    };
    let messages = txn.open_table(MESSAGES)?;
    let Some(value) = messages.get((room, message))? else {
        return Ok(None);
    };
    let record = decode_message(value.value())
        .map_err(|e| Fail(format!("message {message} does not decode: {}", e.0)))?;
    if record.id != message || record.room != room {
        return Err(Fail(format!(
            "message under key ({room}, {message}) says it is {}",
            record.id
        )));
    }
    Ok(Some(record))
}

/// The message of `room` with per-room `seq` (deleted ones too), if stored. Messages are keyed
/// by (room, id) and both id and seq increase within a room, so this is a binary search over
/// the room's id range: each probe is one B-tree descent (the first key at or after the middle
/// id), at most 64 probes and usually far fewer. No index is written for it.
pub(crate) fn message_by_seq(
    txn: &ReadTransaction,
    room: u64,
    seq: u64,
) -> Result<Option<MessageRecord>, Fail> {
    let messages = txn.open_table(MESSAGES)?;
    let seq_of = |bytes: &[u8], id: u64| -> Result<u64, Fail> {
        let archived = rkyv::access::<ArchivedMessageRecord, rancor::Error>(bytes)
            .map_err(|e| Fail(format!("message {id} does not decode: {e}")))?;
        Ok(archived.seq.to_native())
    };
    let (mut lo, mut hi) = {
        let mut all = messages.range((room, 0)..=(room, u64::MAX))?;
        let (Some(first), Some(last)) = (all.next(), all.next_back()) else {
            // Zero or one message: `next_back` is `None` when `next` took the only one.
            return match messages.range((room, 0)..=(room, u64::MAX))?.next() {
                Some(only) => {
                    let (key, value) = only?;
                    let id = key.value().1;
                    if seq_of(value.value(), id)? == seq {
                        Ok(Some(decode_message(value.value())?))
                    } else {
                        Ok(None)
                    }
                }
                None => Ok(None),
            };
        };
        (first?.0.value().1, last?.0.value().1)
    };
    // Invariant: the wanted message's id, if any, lies in lo..=hi.
    while lo <= hi {
        let mid = lo + (hi - lo) / 2;
        let Some(entry) = messages.range((room, mid)..=(room, hi))?.next() else {
            // Nothing in mid..=hi: the wanted id, if any, is below mid.
            match mid.checked_sub(1) {
                Some(below) => hi = below,
                None => return Ok(None),
            }
            continue;
        };
        let (key, value) = entry?;
        let id = key.value().1;
        let found = seq_of(value.value(), id)?;
        if found == seq {
            let record = decode_message(value.value())
                .map_err(|e| Fail(format!("message {id} does not decode: {}", e.0)))?;
            if record.id != id || record.room != room {
                return Err(Fail(format!(
                    "message under key ({room}, {id}) says it is {}",
                    record.id
                )));
            }
            return Ok(Some(record));
        }
        if found < seq {
            match id.checked_add(1) {
                Some(next) => lo = next,
                None => return Ok(None),
            }
        } else {
            // `id` is the first key at or after `mid`, and the wanted one is older than it.
            match mid.checked_sub(1) {
                Some(below) => hi = below,
                None => return Ok(None),
            }
        }
    }
    Ok(None)
}

/// The room holding `message`, if it is stored (an entry for a message of a deleted room may
/// remain: the caller finds the message itself absent).
pub(crate) fn message_room(txn: &ReadTransaction, message: u64) -> Result<Option<u64>, Fail> {
    let blocks = txn.open_table(MESSAGE_ROOM_BLOCKS)?;
    let block = message >> MESSAGE_ROOM_BLOCK_BITS;
    if let Some(value) = blocks.get(block)? {
        let value = value.value();
        if value.len() % PAIR != 0 {
            return Err(Fail(format!("message room block {block} is {} bytes", value.len())));
        }
        if let Some(room) = block_find(value, message) {
            return Ok(Some(room));
        }
    }
    // Written by a build of schema version 1.
    let table = txn.open_table(MESSAGE_ROOMS)?;
    Ok(table.get(message)?.map(|v| v.value()))
}
