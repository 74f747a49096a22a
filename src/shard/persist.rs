//! What the owner pipeline writes to its store for each change, and how it rebuilds its rooms
//! from what the store recovered at start.
//!
//! Invariant: every change a caller is told about is covered by the ops returned here (room
//! record, membership, every created or changed message), so a restart recovers exactly what
//! was acknowledged.

use std::collections::HashMap;

use crate::model::ids::IdAllocator;
use crate::model::room::{Outcome, Page};
use crate::model::{
    Event, Member, MessageId, Role, Room, RoomAction, RoomId, Seq, ShardId, UserId,
};
use crate::store::{role_from_u8, role_to_u8, MessageRecord, Recovered, RoomRecord, StoreOp};

use super::owner::{Owned, OwnedRoom};

/// What kind of write an action is, captured before `Room::apply` consumes it.
#[derive(Debug)]
pub enum Write {
    /// Room fields changed.
    Room,
    /// The room was deleted.
    Delete,
    /// A member was added or its role changed.
    PutMember(UserId, Role),
    /// A member was removed.
    RemoveMember,
    /// A message was posted, edited or deleted.
    Message,
}

impl Write {
    /// The write an action performs, or `None` for reads.
    pub fn of(action: &RoomAction) -> Option<Write> {
        match action {
            RoomAction::Get | RoomAction::History { .. } => None,
            RoomAction::Update(_) => Some(Write::Room),
            RoomAction::Delete => Some(Write::Delete),
            RoomAction::PutMember { user, role } => Some(Write::PutMember(user.clone(), *role)),
            RoomAction::RemoveMember(_) => Some(Write::RemoveMember),
            RoomAction::Post(_) | RoomAction::Edit { .. } | RoomAction::DeleteMessage(_) => {
                Some(Write::Message)
            }
        }
    }
}

/// The store ops that make `outcome` of `write` on `room` durable.
pub fn ops_for(room: &Room, write: &Write, outcome: &Outcome) -> Vec<StoreOp> {
    let mut ops = Vec::with_capacity(3);
    match write {
        Write::Delete => return vec![StoreOp::DeleteRoom(room.id.get())],
        Write::PutMember(user, role) => {
            ops.push(StoreOp::PutMember {
                room: room.id.get(),
                user: user.as_str().to_string(),
                role: role_to_u8(*role),
            });
        }
        Write::RemoveMember => {
            if let Some((user, _)) = &outcome.left {
                ops.push(StoreOp::RemoveMember {
                    room: room.id.get(),
                    user: user.as_str().to_string(),
                });
            }
        }
        Write::Room | Write::Message => {}
    }
    // The messages written so far: an action writes one or two (a comment and its parent's
    // count), so a short list beats a hashed set (no allocation, no hasher seeding).
    let mut written: smallvec::SmallVec<[MessageId; 4]> = smallvec::SmallVec::new();
    if let Some(message) = &outcome.stored {
        written.push(message.id);
        ops.push(StoreOp::PutMessage(MessageRecord::from(message.as_ref())));
    }
    for event in &outcome.events {
        if let Event::MessageCreated(m) | Event::MessageUpdated(m) = event {
            if !written.contains(&m.id) {
                written.push(m.id);
                ops.push(StoreOp::PutMessage(MessageRecord::from(m.as_ref())));
            }
        }
    }
    // A message write changes the room only in `last_seq`, which recovery takes from the
    // newest stored message: rewriting the room record per message would double the B-tree
    // writes of every post.
    if !matches!(write, Write::Message) {
        ops.push(StoreOp::PutRoom(RoomRecord::from_room(room)));
    }
    ops
}

/// The ops that store a newly created room with its members.
pub fn ops_for_new_room(room: &Room) -> Vec<StoreOp> {
    let mut ops = Vec::with_capacity(room.members.len() + 1);
    ops.push(StoreOp::PutRoom(RoomRecord::from_room(room)));
    for (user, member) in &room.members {
        ops.push(StoreOp::PutMember {
            room: room.id.get(),
            user: user.as_str().to_string(),
            role: role_to_u8(member.role),
        });
    }
    ops
}

/// Rebuilds a shard's owned rooms from its store; ids resume above everything ever stored.
/// Returns the state and every (member, room) pair, which the user owners must be told about.
pub fn recover(
    shard: ShardId,
    shard_count: usize,
    recovered: Recovered,
    (history_max, history_bytes_max): (usize, usize),
    members_max: usize,
) -> (Owned, Vec<(UserId, RoomId)>) {
    let mut owned = Owned::new(shard, shard_count);
    owned.room_ids = IdAllocator::new(shard, shard_count, recovered.max_room_id);
    owned.message_ids = IdAllocator::new(shard, shard_count, recovered.max_message_id);
    owned.notification_ids = IdAllocator::new(shard, shard_count, recovered.max_notification_id);
    for record in recovered.notifications {
        let notification = record.into_notification();
        let user = owned.users.get_or_default(&notification.user);
        user.notifications.insert(notification.id, notification);
    }
    for r in recovered.receipts {
        let receipt = crate::model::receipt::Receipt {
            delivered: Seq(r.delivered),
            delivered_ms: r.delivered_ms,
            read: Seq(r.read),
            read_ms: r.read_ms,
        };
        owned.receipts.entry(RoomId(r.room)).or_default().insert(UserId::new(&r.user), receipt);
    }
    let mut memberships = Vec::new();
    for entry in recovered.rooms {
        let record = entry.room;
        let room_id = RoomId(record.id);
        let Some(kind) = record.room_kind() else {
            tracing::error!(shard = shard.get(), room = record.id, kind = %record.kind, "skipping a stored room of unknown kind");
            continue;
        };
        let mut members = HashMap::with_capacity(entry.members.len());
        for (user, role) in entry.members {
            let user = UserId::new(&user);
            memberships.push((user.clone(), room_id));
            members.insert(
                user,
                Member { role: role_from_u8(role).unwrap_or(Role::Member), shard_mask: 0 },
            );
        }
        let history: std::collections::VecDeque<_> =
            entry.recent.into_iter().map(MessageRecord::into_message).collect();
        let mut room = Room {
            id: room_id,
            kind,
            name: record.name,
            description: record.description,
            attributes: record.attributes,
            members,
            created_ms: record.created_ms,
            updated_ms: record.updated_ms,
            last_seq: Seq(record.last_seq),
            history: Default::default(),
            history_max,
            history_bytes_max,
            history_bytes: 0,
            members_max,
        };
        // The store hands back the newest `history_max`; the byte bound may keep fewer.
        room.set_window(history);
        for message in &room.history {
            owned.message_rooms.insert(message.id, room_id);
        }
        let mut entry = OwnedRoom::new(room, shard_count);
        // Its members were welcomed before the restart.
        entry.welcome_pending.clear();
        owned.rooms.insert(entry.room.id, entry);
    }
    (owned, memberships)
}

/// Rebuilds the direct-pair index of every shard (`owned[s]` is shard `s`'s recovered
/// state) from their stored direct rooms, before any shard runs: each pair is indexed on its
/// owner (`shard_of_pair`) to its room, wherever that room lives. Lowest room id first: of
/// two stored rooms of one pair (made before the index existed), the first keeps it.
///
/// In a cluster `owned[l]` is local shard `l`: a pair owned by another node's shard is told
/// to it when that node is up (`Shard::node_up`).
pub fn index_direct_rooms(owned: &mut [&mut Owned], topology: crate::cluster::Topology) {
    let shard_count = topology.global_count();
    let mut pairs: Vec<(RoomId, crate::shard::owner::Pair)> = owned
        .iter()
        .flat_map(|o| o.rooms.keys().filter_map(|id| Some((*id, o.direct_pair_of_room(*id)?))))
        .collect();
    pairs.sort_unstable();
    for (room, pair) in pairs {
        let owner = crate::model::ids::shard_of_pair(&pair.0, &pair.1, shard_count);
        if let Some(local) = topology.local_of(owner) {
            owned[local].set_pair(pair, room, true);
        }
    }
}

/// True when older messages of `room` exist only in the store (not in the in-memory window).
pub fn has_older_on_disk(room: &Room) -> bool {
    match room.history.front() {
        Some(oldest) => oldest.seq > Seq(1),
        None => room.last_seq > Seq(0),
    }
}

/// Whether a history page computed from the window is the same the store would give: a page
/// back from `before` that filled its count or its byte bound inside the window needs nothing
/// older.
pub fn window_answers(
    room: &Room,
    after: Option<MessageId>,
    before: Option<MessageId>,
    limit: usize,
    page: &Page,
) -> bool {
    if !has_older_on_disk(room) {
        return true;
    }
    let oldest = room.history.front().map_or(MessageId(u64::MAX), |m| m.id);
    match (after, before) {
        (Some(after), _) => after >= oldest,
        (None, Some(_)) => page.messages.len() == limit || page.truncated,
        (None, None) => false,
    }
}
