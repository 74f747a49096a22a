//! The owner side of the life of a message: permission → ids → (store) → events → bundles →
//! subscriber shards. Also the user records (rooms and connection shards per user).
//!
//! Invariants: only this shard mutates the rooms and users it owns; a room's `shard_counts[s]`
//! is the number of its members whose connection mask has bit `s`, so bundles go exactly to the
//! shards with subscribers; a removed member is unsubscribed (through the same FIFO ring as
//! later deliveries) before any later event of the room is sent.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::dialect::{
    render_all, DialectId, DialectMask, Presence, RoomChange, RoomEvent, DIALECT_COUNT,
};
use crate::fanout::{Alternative, Bundle};
use crate::limits::LAST_MESSAGE_PREVIEW_BYTES_MAX;
use crate::mesh::Command;
use crate::model::ids::{now_ms, shard_of_room, shard_of_user, IdAllocator};
use crate::model::room::{Outcome, Reply};
use crate::model::{
    Event, Message, MessageId, Notification, Refusal, Role, Room, RoomAction, RoomId, RoomView,
    ShardId, UserId, Viewer,
};

use super::commit::{Effects, PendingRead, ReplyTo};
use super::persist;
use super::Shard;
use crate::mesh::{Request, Response};

/// Where a user's connections are, on its owner: the dialects spoken on each shard holding
/// some (one entry per such shard). Up to three entries inline, in 16 bytes (a `SmallVec` of
/// two takes 24, which put the record in a larger allocation class: perf/RESULTS.md, idle
/// memory); more in a box.
#[derive(Debug, Default)]
pub struct UserConns(ShardDialects);

/// [`UserConns`]' entries: (shard, dialects), distinct shards, no zero dialects.
#[derive(Debug)]
#[allow(clippy::box_collection)] // the point: a thin pointer keeps the enum at 16 bytes
enum ShardDialects {
    Few { len: u8, entries: [(u8, DialectMask); 3] },
    Many(Box<Vec<(u8, DialectMask)>>),
}

impl Default for ShardDialects {
    fn default() -> Self {
        ShardDialects::Few { len: 0, entries: [(0, 0); 3] }
    }
}

impl UserConns {
    fn entries(&self) -> &[(u8, DialectMask)] {
        match &self.0 {
            ShardDialects::Few { len, entries } => &entries[..usize::from(*len)],
            ShardDialects::Many(entries) => entries,
        }
    }

    /// The user's connections on `shard` now speak `dialects` (0: it has none there).
    pub fn set(&mut self, shard: ShardId, dialects: DialectMask) {
        let mut entries: SmallVec<[(u8, DialectMask); 4]> = self.entries().into();
        let at = entries.iter().position(|(s, _)| usize::from(*s) == shard.0);
        match (at, dialects) {
            (Some(i), 0) => {
                entries.swap_remove(i);
            }
            (Some(i), d) => entries[i].1 = d,
            (None, 0) => return,
            (None, d) => entries.push((shard.0 as u8, d)),
        }
        self.0 = match entries.len() {
            n @ 0..=3 => {
                let mut few = [(0, 0); 3];
                few[..n].copy_from_slice(&entries);
                ShardDialects::Few { len: n as u8, entries: few }
            }
            _ => ShardDialects::Many(Box::new(entries.into_vec())),
        };
    }

    /// The dialects of its connections on `shard`.
    pub fn on(&self, shard: ShardId) -> DialectMask {
        self.entries().iter().find(|(s, _)| usize::from(*s) == shard.0).map_or(0, |(_, d)| *d)
    }

    /// The shards and dialects of all its connections.
    pub fn presence(&self) -> Presence {
        self.entries().iter().fold(Presence::default(), |p, (s, d)| Presence {
            shards: p.shards | (1 << s),
            dialects: p.dialects | d,
        })
    }

    /// True when it has connections nowhere.
    pub fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }
}

/// The ordered pair of user ids of a direct room (a user with itself: its favorites).
pub type Pair = (UserId, UserId);

/// How many times a `CreateRoom` of a direct pair indexed to another shard's room asks that
/// room's owner before giving up with 503: each retry follows a change of the pair's room
/// (it left the pair while asked), so this bounds a loop only a storm of changes could run.
const PAIR_LOOKUP_TRIES: u8 = 8;

/// What an owner does once a peer owner answers what it asked (`Shard::ask`) while executing
/// a request.
#[derive(Debug)]
pub enum Then {
    /// The pair's owner answered `ClaimPair`: add the member that completes `pair` in `room`
    /// if the pair is this room's, else refuse (409).
    Claimed {
        /// The room.
        room: RoomId,
        /// Who acts.
        viewer: Viewer,
        /// The `PutMember`.
        action: RoomAction,
        /// The pair claimed.
        pair: Pair,
        /// The caller.
        reply_to: ReplyTo,
    },
    /// The owner of the room `pair` is indexed to answered `RoomViews`: that room is the
    /// answer of a `CreateRoom` of `pair` if it still has the pair, else ask again.
    Existing {
        /// The pair.
        pair: Pair,
        /// Who creates.
        viewer: Viewer,
        /// The room asked for.
        spec: crate::model::action::NewRoom,
        /// The caller.
        reply_to: ReplyTo,
        /// Lookups so far.
        tries: u8,
    },
}

/// What a message action addresses: a room (posts, and changes of messages in its window),
/// or a message by id, wherever it is (`Request::Message`).
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// A room.
    Room(RoomId),
    /// A message, in a window or only in the store.
    Message(MessageId),
}

/// A room or message action on its way through the owner (`Shard::run_room_action`).
#[derive(Debug)]
pub struct MessageRun {
    /// What it addresses.
    pub target: Target,
    /// Who acts.
    pub viewer: Viewer,
    /// What to do.
    pub action: RoomAction,
    /// The caller.
    pub reply_to: ReplyTo,
    /// The parent it changes was read from the store already (found or not): it runs with
    /// what is at hand, never reading it again.
    pub parent_read: bool,
}

/// A user's notifications by id: nothing allocated (one pointer) while it has none, as most
/// connected users' records have.
#[derive(Debug, Default)]
#[allow(clippy::box_collection)] // the point: 8 bytes in the record instead of the map's 24
pub struct Notifications(Option<Box<BTreeMap<u64, Notification>>>);

impl Notifications {
    /// How many it holds.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |map| map.len())
    }

    /// True when it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds (or replaces) notification `id`.
    pub fn insert(&mut self, id: u64, notification: Notification) {
        self.0.get_or_insert_default().insert(id, notification);
    }

    /// Removes and returns the oldest (lowest id); frees the map once empty.
    pub fn pop_first(&mut self) -> Option<(u64, Notification)> {
        let map = self.0.as_mut()?;
        let first = map.pop_first();
        if map.is_empty() {
            self.0 = None;
        }
        first
    }

    /// Notification `id`, to change.
    pub fn get_mut(&mut self, id: &u64) -> Option<&mut Notification> {
        self.0.as_mut()?.get_mut(id)
    }
}

/// A user's record on its owner shard.
#[derive(Debug, Default)]
pub struct UserRecord {
    /// Rooms the user is a member of.
    pub rooms: crate::model::RoomSet,
    /// Shards holding its connections, and their dialects.
    pub conns: UserConns,
    /// Its notifications by id, at most `NOTIFICATIONS_PER_USER_MAX` (oldest evicted).
    pub notifications: Notifications,
    /// Sessions its connections showed (id → token expiry, unix s), bounded.
    pub sessions: super::sessions::SeenSessions,
}

impl UserRecord {
    /// True when nothing needs the record (it may be dropped).
    pub fn is_idle(&self) -> bool {
        self.conns.is_empty()
            && self.rooms.is_empty()
            && self.notifications.is_empty()
            && self.sessions.is_empty()
    }
}

/// A room plus what its owner needs to route its events.
#[derive(Debug)]
pub struct OwnedRoom {
    /// The room.
    pub room: Room,
    /// Members connected per shard.
    pub shard_counts: Vec<u32>,
    /// Connected members per dialect of their connections: the room renders the dialects
    /// whose count is not 0.
    pub dialect_counts: [u32; DIALECT_COUNT],
    /// The dialects of each connected member's connections (members with none are absent).
    pub member_dialects: HashMap<UserId, DialectMask>,
    /// Members who joined and still await their RoomCreated.
    pub welcome_pending: HashSet<UserId>,
}

impl OwnedRoom {
    /// A new room: every member awaits its RoomCreated.
    pub fn new(room: Room, shard_count: usize) -> OwnedRoom {
        let welcome_pending = room.members.keys().cloned().collect();
        OwnedRoom {
            room,
            shard_counts: vec![0; shard_count],
            dialect_counts: [0; DIALECT_COUNT],
            member_dialects: HashMap::new(),
            welcome_pending,
        }
    }

    /// The shards holding subscribers, a bit each.
    pub fn shard_mask(&self) -> u64 {
        self.shard_counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .fold(0, |m, (s, _)| m | (1 << s))
    }

    /// The dialects the room's connected members speak.
    pub fn dialect_mask(&self) -> DialectMask {
        DialectId::all().filter(|d| self.dialect_counts[d.index()] > 0).fold(0, |m, d| m | d.bit())
    }

    /// A member's connections now speak `dialects` (0: none left); returns the old mask.
    fn set_member_dialects(&mut self, user: &UserId, dialects: DialectMask) -> DialectMask {
        let old = match dialects {
            0 => self.member_dialects.remove(user).unwrap_or(0),
            d => self.member_dialects.insert(user.clone(), d).unwrap_or(0),
        };
        for d in DialectId::all() {
            let count = &mut self.dialect_counts[d.index()];
            match (old & d.bit() != 0, dialects & d.bit() != 0) {
                (false, true) => *count += 1,
                (true, false) => *count = count.saturating_sub(1),
                _ => {}
            }
        }
        old
    }
}

/// Everything one shard owns.
#[derive(Debug)]
pub struct Owned {
    /// Rooms owned here.
    pub rooms: HashMap<RoomId, OwnedRoom>,
    /// Users owned here.
    pub users: crate::model::UserMap<UserRecord>,
    /// Message id → room, for messages still in a room's window.
    pub message_rooms: HashMap<MessageId, RoomId>,
    /// Messages outside every window that a store read or an uncommitted write touches: the
    /// newest version applied here (`None` until one is) and how many reads and writes in
    /// flight pin it. See `Owned::pin`.
    pub detached: HashMap<MessageId, Detached>,
    /// The direct room of each pair of users (ordered; a user with itself) whose pair this
    /// shard owns (`shard_of_pair`): a direct room's current members, indexed when the pair
    /// is free. The room may be another shard's, whose owner keeps the entry current
    /// (`Request::ClaimPair`, `Command::DirectPair`). Rebuilt from every shard's stored rooms
    /// at start (`persist::index_direct_rooms`). Bounded by the direct rooms.
    pub direct_pairs: HashMap<Pair, RoomId>,
    /// Room id allocator.
    pub room_ids: IdAllocator,
    /// Message id allocator.
    pub message_ids: IdAllocator,
    /// Notification id allocator (for users owned here).
    pub notification_ids: IdAllocator,
    /// Receipts of the rooms owned here: room → member → marks (members only).
    pub receipts: HashMap<RoomId, HashMap<UserId, crate::model::receipt::Receipt>>,
}

impl Owned {
    /// Empty state for `shard` of `shard_count`.
    pub fn new(shard: ShardId, shard_count: usize) -> Self {
        Owned {
            rooms: HashMap::new(),
            users: crate::model::UserMap::default(),
            message_rooms: HashMap::new(),
            detached: HashMap::new(),
            direct_pairs: HashMap::new(),
            room_ids: IdAllocator::new(shard, shard_count, 0),
            message_ids: IdAllocator::new(shard, shard_count, 0),
            notification_ids: IdAllocator::new(shard, shard_count, 0),
            receipts: HashMap::new(),
        }
    }
}

/// A message outside the window while reads or writes of it are in flight.
#[derive(Debug)]
pub struct Detached {
    /// The newest version applied here, if any.
    pub message: Option<Arc<Message>>,
    /// Reads and uncommitted writes holding the entry.
    pub pins: u32,
}

impl Owned {
    /// Pins `id` (with its newest version, when one was just applied or evicted from the
    /// window). A store read of an older message may not see a write still waiting for its
    /// commit, so while any read or write of it is in flight the owner keeps its newest
    /// version here and a read's result yields to it: an edit never resurrects a deleted
    /// message nor undoes another edit. Bounded by the reads and commits in flight.
    pub fn pin(&mut self, id: MessageId, message: Option<Arc<Message>>) {
        let entry = self.detached.entry(id).or_insert(Detached { message: None, pins: 0 });
        entry.pins += 1;
        if message.is_some() {
            entry.message = message;
        }
    }

    /// Follows direct room `room_id`'s membership change in the pair index: its old pair
    /// `old` (before the change) no longer has it, and the pair of its current members does
    /// (if the room still exists and is direct), each on the pair's owner (`shard_of_pair`):
    /// here at once, else through the returned `Command::DirectPair`s, to send now. A pair
    /// that already has another room keeps it (this one stays unindexed).
    pub fn index_direct(
        &mut self,
        room_id: RoomId,
        old: Option<Pair>,
        shard: ShardId,
        shard_count: usize,
    ) -> Vec<(ShardId, Command)> {
        let new = self.direct_pair_of_room(room_id);
        let mut out = Vec::new();
        if old == new {
            return out;
        }
        if let Some(old) = old {
            out.extend(self.pair_held(old, room_id, false, shard, shard_count));
        }
        if let Some(new) = new {
            out.extend(self.pair_held(new, room_id, true, shard, shard_count));
        }
        out
    }

    /// The pair of room `room_id`'s members when it is a direct room with one or two.
    pub fn direct_pair_of_room(&self, room_id: RoomId) -> Option<Pair> {
        let entry = self.rooms.get(&room_id)?;
        if entry.room.kind != crate::model::RoomKind::Direct {
            return None;
        }
        crate::model::action::direct_pair_of(entry.room.members.keys())
    }

    /// `room` has (`held`) or no longer has `pair`: applied here when this shard owns the
    /// pair, else the command for its owner.
    fn pair_held(
        &mut self,
        pair: Pair,
        room: RoomId,
        held: bool,
        shard: ShardId,
        shard_count: usize,
    ) -> Option<(ShardId, Command)> {
        let owner = crate::model::ids::shard_of_pair(&pair.0, &pair.1, shard_count);
        if owner == shard {
            self.set_pair(pair, room, held);
            return None;
        }
        Some((owner, Command::DirectPair { pair, room, held }))
    }

    /// On the pair's owner: index `pair` to `room` if it has no room (`held`), or drop its
    /// entry if it is `room` (not `held`).
    pub fn set_pair(&mut self, pair: Pair, room: RoomId, held: bool) {
        if held {
            self.direct_pairs.entry(pair).or_insert(room);
        } else if self.direct_pairs.get(&pair) == Some(&room) {
            self.direct_pairs.remove(&pair);
        }
    }

    /// Whether a version of `id`, outside every window, is at hand (pinned, `Owned::pin`).
    pub fn has_version(&self, id: MessageId) -> bool {
        self.detached.get(&id).is_some_and(|d| d.message.is_some())
    }

    /// The version of `id` at hand, if any (`has_version`).
    fn version(&self, id: MessageId) -> Option<Arc<Message>> {
        self.detached.get(&id).and_then(|d| d.message.clone())
    }

    /// Drops one pin of `id`; the entry goes with its last pin.
    pub fn unpin(&mut self, id: MessageId) {
        if let Some(entry) = self.detached.get_mut(&id) {
            entry.pins = entry.pins.saturating_sub(1);
            if entry.pins == 0 {
                self.detached.remove(&id);
            }
        }
    }
}

/// Pins `parent` (outside every window) with its version `outcome` updated, if it did, until
/// the outcome commits (`pins`).
fn pin_updated(owned: &mut Owned, outcome: &Outcome, parent: MessageId, pins: &mut Vec<MessageId>) {
    let updated = outcome.events.iter().find_map(|e| match e {
        Event::MessageUpdated(m) if m.id == parent => Some(m.clone()),
        _ => None,
    });
    if let Some(updated) = updated {
        owned.pin(parent, Some(updated));
        pins.push(parent);
    }
}

fn shards_in(mask: u64) -> impl Iterator<Item = ShardId> {
    (0..64).map(ShardId).filter(move |s| mask & s.bit() != 0)
}

/// A bundle of `event` for the dialects in `dialects`, with moderators getting their own
/// rendering of room changes.
fn bundle_of(event: &Event, room: Option<&RoomView>, dialects: DialectMask) -> Bundle {
    let frames = render_all(event, false, dialects);
    let alternative = match (event, room) {
        (Event::RoomUpdated(_) | Event::RoomCreated(_), Some(view)) => {
            let users: HashSet<UserId> = view
                .members
                .iter()
                .filter(|(_, r)| *r >= Role::Moderator)
                .map(|(u, _)| u.clone())
                .collect();
            (!users.is_empty())
                .then(|| Box::new(Alternative { users, frames: render_all(event, true, dialects) }))
        }
        _ => None,
    };
    Bundle { frames, alternative, gates: crate::dialect::gates_of(event), ..Bundle::default() }
}

/// `user`'s [`MemberSummary`] of `room`: its read mark, the others' furthest marks (from
/// `receipts`) and the newest live message of the window.
fn member_summary(
    room: &Room,
    receipts: Option<&HashMap<UserId, crate::model::receipt::Receipt>>,
    user: &UserId,
) -> crate::model::MemberSummary {
    let mut summary = crate::model::MemberSummary::default();
    for (member, receipt) in receipts.into_iter().flatten() {
        if member == user {
            summary.read = receipt.read;
        } else {
            summary.others_read = summary.others_read.max(receipt.read);
            summary.others_delivered = summary.others_delivered.max(receipt.delivered);
        }
    }
    if let Some(last) = room.history.iter().rev().find(|m| m.deleted_ms.is_none()) {
        summary.last_seq = last.seq;
        let text = crate::model::event::preview(&last.text, LAST_MESSAGE_PREVIEW_BYTES_MAX);
        summary.last_text = text.to_string();
    }
    summary
}

/// A bundle for one `viewer` only (a room joined or left), for the dialects in `dialects`.
fn personal_bundle(
    event: &Event,
    room: &RoomView,
    viewer: &UserId,
    moderator: bool,
    dialects: DialectMask,
) -> Arc<Bundle> {
    let mut frames: crate::fanout::Frames = Default::default();
    for d in DialectId::in_mask(dialects) {
        frames[d.index()] = d.get().render_for(event, room, viewer, moderator);
    }
    Arc::new(Bundle { frames, gates: crate::dialect::gates_of(event), ..Bundle::default() })
}

impl Shard {
    /// Executes a request this shard owns and answers `reply_to`: reads at once, writes once
    /// their effects are committed (see `Shard::commit`).
    pub fn execute(&self, request: Request, reply_to: ReplyTo) {
        match request {
            Request::CreateRoom { viewer, spec } => {
                self.create_or_find_room(viewer, spec, reply_to, 0);
            }
            Request::Room {
                room,
                viewer,
                action: RoomAction::History { after, before, limit, bytes_max },
            } => {
                self.history(room, &viewer, (after, before, limit, bytes_max), reply_to);
            }
            Request::Room { room, viewer, action } => match self.pair_to_claim(room, &action) {
                Some((owner, pair)) => {
                    let request = Request::ClaimPair { pair: pair.clone(), room };
                    let then = Then::Claimed { room, viewer, action, pair, reply_to };
                    self.ask(owner, request, then);
                }
                None => self.run_room_action(MessageRun {
                    target: Target::Room(room),
                    viewer,
                    action,
                    reply_to,
                    parent_read: false,
                }),
            },
            Request::ClaimPair { pair, room } => {
                let holder =
                    *self.owner.owned.borrow_mut().direct_pairs.entry(pair).or_insert(room);
                self.respond(reply_to, Response::PairHolder(holder));
            }
            Request::Message { message, viewer, action } => self.run_room_action(MessageRun {
                target: Target::Message(message),
                viewer,
                action,
                reply_to,
                parent_read: false,
            }),
            Request::UserRooms { user } => {
                let owned = self.owner.owned.borrow();
                let mut rooms: Vec<RoomId> = owned
                    .users
                    .get(&user)
                    .map(|u| u.rooms.iter().copied().collect())
                    .unwrap_or_default();
                drop(owned);
                rooms.sort_unstable();
                self.respond(reply_to, Response::RoomIds(rooms));
            }
            Request::RoomViews { rooms, viewer, limit, summary } => {
                let response = self.room_views(rooms, &viewer, limit, summary);
                self.respond(reply_to, response);
            }
            Request::Notify { notification } => {
                let effects = self.notify(*notification);
                self.commit(effects, reply_to);
            }
            Request::ReadNotifications { user, ids } => {
                let effects = self.read_notifications(&user, &ids);
                self.commit(effects, reply_to);
            }
            Request::RevokeSession { user, sid, expires_at, known_only } => {
                let effects = self.revoke_session(&user, sid, expires_at, known_only);
                self.commit(effects, reply_to);
            }
            Request::OnlineMembers { rooms, viewer, dialects } => {
                let users = self.owner.online_members(&rooms, &viewer, dialects);
                self.respond(reply_to, Response::Users(users));
            }
            Request::MessageBySeq { room, viewer, seq } => {
                match self.owner.message_by_seq(room, &viewer, seq) {
                    Some(response) => self.respond(reply_to, response),
                    None => self.read_from_store(PendingRead::BySeq(reply_to), |store, token| {
                        store.read_message_by_seq(token, room.get(), seq.get())
                    }),
                }
            }
            Request::Mark { room, user, read, seq } => {
                let effects = self.mark_receipt(room, &user, read, seq);
                self.commit(effects, reply_to);
            }
            Request::RoomAck { room, user } => {
                let response = self.room_ack(room, &user);
                self.respond(reply_to, response);
            }
        }
    }

    /// `CreateRoom`: a direct pair indexed to another shard's room is answered with that
    /// room, asked of its owner (`Then::Existing`); anything else is created (or found) here.
    fn create_or_find_room(
        &self,
        viewer: Viewer,
        spec: crate::model::action::NewRoom,
        reply_to: ReplyTo,
        tries: u8,
    ) {
        let pair = spec.direct_pair(&viewer);
        let held =
            pair.as_ref().and_then(|p| self.owner.owned.borrow().direct_pairs.get(p).copied());
        if let (Some(pair), Some(room)) = (pair, held) {
            let owner = shard_of_room(room, self.shard_count);
            if owner != self.id {
                if tries >= PAIR_LOOKUP_TRIES {
                    let busy = Refusal::Unavailable("the direct room is changing; retry later");
                    return self.respond(reply_to, Response::Refused(busy));
                }
                let request = Request::RoomViews {
                    rooms: Some(vec![room]),
                    viewer: viewer.clone(),
                    limit: 1,
                    summary: false,
                };
                let then = Then::Existing { pair, viewer, spec, reply_to, tries: tries + 1 };
                return self.ask(owner, request, then);
            }
        }
        let effects = self.create_room(&viewer, spec);
        self.commit(effects, reply_to);
    }

    /// The pair's owner and the pair when `action` adds a member that completes a direct
    /// room's pair owned by another shard (which must agree first: `ClaimPair`).
    fn pair_to_claim(&self, room_id: RoomId, action: &RoomAction) -> Option<(ShardId, Pair)> {
        let RoomAction::PutMember { user, .. } = action else {
            return None;
        };
        let owned = self.owner.owned.borrow();
        let entry = owned.rooms.get(&room_id)?;
        let members = &entry.room.members;
        if entry.room.kind != crate::model::RoomKind::Direct
            || members.contains_key(user)
            || members.len() >= 2
        {
            return None;
        }
        let pair = crate::model::action::direct_pair_of(members.keys().chain(Some(user)))?;
        let owner = crate::model::ids::shard_of_pair(&pair.0, &pair.1, self.shard_count);
        (owner != self.id).then_some((owner, pair))
    }

    /// Continues a request with a peer owner's answer (`Shard::ask`).
    pub fn resume(&self, then: Then, response: Response) {
        match then {
            Then::Claimed { room, viewer, action, pair, reply_to } => match response {
                Response::PairHolder(holder) if holder == room => {
                    let effects = self.apply_room(room, &viewer, action);
                    // A refused or changed addition gives the claim back.
                    let release = {
                        let mut owned = self.owner.owned.borrow_mut();
                        if owned.direct_pair_of_room(room).as_ref() == Some(&pair) {
                            None
                        } else {
                            owned.pair_held(pair, room, false, self.id, self.shard_count)
                        }
                    };
                    if let Some((to, command)) = release {
                        self.send(to, command);
                    }
                    self.commit(effects, reply_to);
                }
                Response::PairHolder(_) => {
                    let taken =
                        Refusal::Conflict("these two users already have a direct room".into());
                    self.respond(reply_to, Response::Refused(taken));
                }
                other => self.respond(reply_to, other),
            },
            Then::Existing { pair, viewer, spec, reply_to, tries } => {
                if let Response::Rooms(views) = &response {
                    let found = views.first().filter(|v| {
                        v.kind == crate::model::RoomKind::Direct
                            && crate::model::action::direct_pair_of(
                                v.members.iter().map(|(u, _)| u),
                            )
                            .as_ref()
                                == Some(&pair)
                    });
                    if let Some(view) = found {
                        return self.respond(reply_to, Response::Existing(view.clone()));
                    }
                }
                // It left the pair while asked: its owner told the pair's owner (this shard)
                // before answering, so the index has moved on.
                self.create_or_find_room(viewer, spec, reply_to, tries);
            }
        }
    }

    /// `RoomViews`; with `summary`, each view carries the member's [`MemberSummary`]: one
    /// pass over the room's receipts (at most one per member) and one copy of the newest live
    /// message's text, cut to `LAST_MESSAGE_PREVIEW_BYTES_MAX` bytes.
    fn room_views(
        &self,
        rooms: Option<Vec<RoomId>>,
        viewer: &Viewer,
        limit: usize,
        summary: bool,
    ) -> Response {
        let owned = self.owner.owned.borrow();
        let visible = |r: &OwnedRoom| match viewer {
            Viewer::Service => true,
            Viewer::User(u) => r.room.members.contains_key(u),
        };
        let view = |r: &OwnedRoom| match (summary, viewer) {
            (true, Viewer::User(user)) => {
                let mut view = (*r.room.view()).clone();
                view.summary = Some(member_summary(&r.room, owned.receipts.get(&r.room.id), user));
                Arc::new(view)
            }
            _ => r.room.view(),
        };
        let views = match rooms {
            Some(ids) => ids
                .iter()
                .filter_map(|id| owned.rooms.get(id))
                .filter(|r| visible(r))
                .take(limit)
                .map(view)
                .collect(),
            None => owned.rooms.values().filter(|r| visible(r)).take(limit).map(view).collect(),
        };
        Response::Rooms(views)
    }

    fn create_room(&self, viewer: &Viewer, spec: crate::model::action::NewRoom) -> Effects {
        if let Err(refusal) = self.admit() {
            return Effects::refused(refusal);
        }
        let limits = &self.config;
        let mut owned = self.owner.owned.borrow_mut();
        let pair = spec.direct_pair(viewer);
        if let Some(existing) = pair.as_ref().and_then(|p| owned.direct_pairs.get(p)) {
            if let Some(entry) = owned.rooms.get(existing) {
                return Effects::answer(Response::Existing(entry.room.view()));
            }
        }
        if owned.rooms.len() >= limits.rooms_per_shard_max {
            return Effects::refused(Refusal::Full("this shard holds its maximum number of rooms"));
        }
        let id = RoomId(owned.room_ids.next_id());
        debug_assert_eq!(shard_of_room(id, self.shard_count), self.id);
        let room = match Room::create(
            id,
            spec,
            viewer,
            now_ms(),
            limits.history_per_room_max,
            limits.history_bytes_per_room_max,
            limits.members_per_room_max,
        ) {
            Ok(room) => room,
            Err(refusal) => return Effects::refused(refusal),
        };
        let members: Vec<UserId> = room.members.keys().cloned().collect();
        let view = room.view();
        let ops = persist::ops_for_new_room(&room);
        owned.rooms.insert(id, OwnedRoom::new(room, self.shard_count));
        let pair_commands = owned.index_direct(id, None, self.id, self.shard_count);
        crate::metrics::inc(&self.metrics.rooms);
        drop(owned);
        for (to, command) in pair_commands {
            self.send(to, command);
        }
        let commands = members
            .into_iter()
            .map(|user| {
                (shard_of_user(&user, self.shard_count), Command::RoomJoined { user, room: id })
            })
            .collect();
        Effects { response: Response::Done(Reply::Room(view)), commands, ops, pins: Vec::new() }
    }

    fn apply_room(&self, room_id: RoomId, viewer: &Viewer, action: RoomAction) -> Effects {
        let mut guard = self.owner.owned.borrow_mut();
        let owned = &mut *guard;
        let Some(entry) = owned.rooms.get_mut(&room_id) else {
            return Effects::refused(Refusal::NotFound("no such room"));
        };
        let write = persist::Write::of(&action);
        if write.is_some() {
            if let Err(refusal) = self.admit() {
                return Effects::refused(refusal);
            }
        }
        let membership =
            matches!(action, RoomAction::PutMember { .. } | RoomAction::RemoveMember(_));
        let old_pair = (membership && entry.room.kind == crate::model::RoomKind::Direct)
            .then(|| crate::model::action::direct_pair_of(entry.room.members.keys()))
            .flatten();
        if let RoomAction::PutMember { user, .. } = &action {
            if entry.room.kind == crate::model::RoomKind::Direct
                && !entry.room.members.contains_key(user)
            {
                // The pair this would complete may already have its direct room here.
                let users = entry.room.members.keys().chain(std::iter::once(user));
                let taken = crate::model::action::direct_pair_of(users)
                    .and_then(|pair| owned.direct_pairs.get(&pair))
                    .is_some_and(|r| *r != room_id);
                if taken {
                    return Effects::refused(Refusal::Conflict(
                        "these two users already have a direct room".into(),
                    ));
                }
            }
        }
        // A comment's parent older than the window, read from the store beforehand.
        let parent_id = entry.room.outside_parent(&action);
        let detached = &owned.detached;
        let mut parent = parent_id.and_then(|id| detached.get(&id)?.message.clone());
        let ids = &mut owned.message_ids;
        let outcome =
            match entry.room.apply_with_parent(viewer, action, ids, now_ms(), parent.as_mut()) {
                Ok(outcome) => outcome,
                Err(refusal) => return Effects::refused(refusal),
            };
        let mut pins = Vec::new();
        if let Some(parent_id) = parent_id {
            pin_updated(owned, &outcome, parent_id, &mut pins);
        }
        for evicted in outcome.evicted.iter().cloned() {
            owned.message_rooms.remove(&evicted.id);
            // A write of it may still wait for its commit, which this one's commit follows.
            pins.push(evicted.id);
            owned.pin(evicted.id, Some(evicted));
        }
        if outcome.evicted_for_bytes > 0 {
            self.metrics
                .history_window_byte_evictions_total
                .fetch_add(outcome.evicted_for_bytes as u64, std::sync::atomic::Ordering::Relaxed);
        }
        if let (Some(stored), true) = (&outcome.stored, outcome.reply_is_new_message()) {
            owned.message_rooms.insert(stored.id, room_id);
        }
        if outcome.joined.is_some() || outcome.left.is_some() {
            // Sent at once, not after the commit: the index follows the rooms in memory, and
            // the pair's owner hears of it before any later answer of this shard.
            for (to, command) in owned.index_direct(room_id, old_pair, self.id, self.shard_count) {
                self.send(to, command);
            }
        }
        self.room_effects(owned, room_id, viewer, write, outcome, pins)
    }

    /// Runs a room or message action: a message missing from every window is read from the
    /// store first (`read_detached`), and so is the parent a post or deletion of a comment
    /// changes when it is older than the window (`read_parent`, once); then it is applied.
    pub fn run_room_action(&self, run: MessageRun) {
        let room = match run.target {
            Target::Room(room) => room,
            Target::Message(message) => {
                let room = self.owner.owned.borrow().message_rooms.get(&message).copied();
                match room {
                    Some(room) => room,
                    None => return self.read_detached(message, run),
                }
            }
        };
        if !run.parent_read {
            let parent = {
                let owned = self.owner.owned.borrow();
                owned
                    .rooms
                    .get(&room)
                    .and_then(|entry| entry.room.outside_parent(&run.action))
                    .filter(|parent| !owned.has_version(*parent))
            };
            if let Some(parent) = parent {
                return self.read_parent(parent, None, run);
            }
        }
        let MessageRun { viewer, action, reply_to, .. } = run;
        let effects = self.apply_room(room, &viewer, action);
        self.commit(effects, reply_to);
    }

    /// Reads `message`, missing from the window, from the store (off the loop) and then
    /// applies `run` to it (`detached_ready`); pinned while read. A version already at hand
    /// (pinned) is newer than anything the store holds, so it needs no read.
    fn read_detached(&self, message: MessageId, run: MessageRun) {
        if let Err(refusal) = self.admit() {
            return self.respond(run.reply_to, Response::Refused(refusal));
        }
        if self.owner.owned.borrow().has_version(message) {
            return self.detached_ready(message, None, run);
        }
        self.owner.owned.borrow_mut().pin(message, None);
        let then = PendingRead::Message { message, run: Box::new(run) };
        self.read_from_store(then, |store, token| store.read_message(token, message.get()));
    }

    /// Reads `parent` (a comment's, older than the window) from the store, pinned, and then
    /// runs `run` again with it at hand; `also` is a message pinned until then.
    fn read_parent(&self, parent: MessageId, also: Option<MessageId>, mut run: MessageRun) {
        run.parent_read = true;
        if let Err(refusal) = self.admit() {
            self.unpin(also.as_slice());
            return self.respond(run.reply_to, Response::Refused(refusal));
        }
        self.owner.owned.borrow_mut().pin(parent, None);
        let then = PendingRead::Parent { parent, also, run: Box::new(run) };
        self.read_from_store(then, |store, token| store.read_message(token, parent.get()));
    }

    /// A parent read (`read_parent`) completed with `record`: keeps it at hand (unless a
    /// newer version is) and runs the action again.
    pub fn parent_ready(
        &self,
        parent: MessageId,
        record: Option<crate::store::MessageRecord>,
        run: MessageRun,
    ) {
        if let Some(record) = record {
            if let Some(entry) = self.owner.owned.borrow_mut().detached.get_mut(&parent) {
                entry.message.get_or_insert_with(|| record.into_message());
            }
        }
        self.run_room_action(run);
    }

    /// `message` (outside every window) is at hand or read (`record`): applies `run` to it,
    /// after reading the parent of a comment it deletes when no version of it is at hand.
    pub fn detached_ready(
        &self,
        message: MessageId,
        record: Option<crate::store::MessageRecord>,
        run: MessageRun,
    ) {
        let record = record.map(|r| r.into_message());
        if !run.parent_read && matches!(run.action, RoomAction::DeleteMessage(_)) {
            let mut owned = self.owner.owned.borrow_mut();
            let current = owned.version(message).or_else(|| record.clone());
            let comment = current.filter(|c| {
                c.id == message && c.parent_id != MessageId(0) && c.deleted_ms.is_none()
            });
            if let Some(comment) = comment.filter(|c| !owned.has_version(c.parent_id)) {
                // Kept at hand (it is the newest version) until the action runs again.
                let parent = comment.parent_id;
                owned.pin(message, Some(comment));
                drop(owned);
                return self.read_parent(parent, Some(message), run);
            }
        }
        let MessageRun { viewer, action, reply_to, .. } = run;
        let effects = self.apply_detached(message, record, &viewer, action);
        self.commit(effects, reply_to);
    }

    /// Applies an edit or deletion to `message`, older than its room's window, as read from
    /// the store (`record`; the newest version applied here wins over it): the room's rules
    /// (`Room::apply_detached`), and the same store ops and events as in the window. A
    /// deleted comment's parent counts one comment fewer when a version of it is at hand.
    fn apply_detached(
        &self,
        message: MessageId,
        record: Option<Arc<Message>>,
        viewer: &Viewer,
        action: RoomAction,
    ) -> Effects {
        let mut guard = self.owner.owned.borrow_mut();
        let owned = &mut *guard;
        let newest = owned.version(message);
        let Some(mut current) = newest.or(record) else {
            return Effects::refused(Refusal::NotFound("no such message"));
        };
        if current.id != message {
            return Effects::refused(Refusal::NotFound("no such message"));
        }
        let room_id = current.room;
        let parent_id = current.parent_id;
        let mut parent = (parent_id != MessageId(0)).then(|| owned.version(parent_id)).flatten();
        let Some(entry) = owned.rooms.get_mut(&room_id) else {
            return Effects::refused(Refusal::NotFound("no such message"));
        };
        let Some(write) = persist::Write::of(&action) else {
            return Effects::refused(Refusal::Invalid("not a change of a message".into()));
        };
        if let Err(refusal) = self.admit() {
            return Effects::refused(refusal);
        }
        let outcome = match entry.room.apply_detached(
            viewer,
            action,
            &mut current,
            now_ms(),
            parent.as_mut(),
        ) {
            Ok(outcome) => outcome,
            Err(refusal) => return Effects::refused(refusal),
        };
        owned.pin(message, Some(current));
        let mut pins = vec![message];
        pin_updated(owned, &outcome, parent_id, &mut pins);
        self.room_effects(owned, room_id, viewer, Some(write), outcome, pins)
    }

    /// The store ops, dialect hooks, bundles and membership commands of `outcome` on room
    /// `room_id` (which must exist), and the pins to drop once they are committed.
    fn room_effects(
        &self,
        owned: &mut Owned,
        room_id: RoomId,
        viewer: &Viewer,
        write: Option<persist::Write>,
        outcome: Outcome,
        pins: Vec<MessageId>,
    ) -> Effects {
        let Some(entry) = owned.rooms.get_mut(&room_id) else {
            return Effects::refused(Refusal::NotFound("no such room"));
        };
        let ops =
            write.as_ref().map(|w| persist::ops_for(&entry.room, w, &outcome)).unwrap_or_default();
        let Outcome { reply, events, joined, left, deleted, stored, .. } = outcome;
        let mut commands: Vec<(ShardId, Command)> = Vec::new();
        let change = RoomChange {
            room: &entry.room,
            events: &events,
            joined: joined.as_ref(),
            left: left.as_ref().map(|(user, _)| user),
            deleted,
        };
        for d in DialectId::all() {
            d.get().room_changed(self, &change);
        }
        if let Some((user, mask)) = left {
            let dialects = entry.set_member_dialects(&user, 0);
            let view = entry.room.view();
            let gone = Event::RoomDeleted { room: room_id };
            for shard in shards_in(mask) {
                entry.shard_counts[shard.0] = entry.shard_counts[shard.0].saturating_sub(1);
                let bundle = personal_bundle(&gone, &view, &user, false, dialects);
                commands.push((
                    shard,
                    Command::Unsubscribe {
                        room: room_id,
                        user: user.clone(),
                        bundle: Some(bundle),
                    },
                ));
            }
            entry.welcome_pending.remove(&user);
            commands.push((
                shard_of_user(&user, self.shard_count),
                Command::RoomLeft { user, room: room_id },
            ));
        }
        let mask = entry.shard_mask();
        let dialects = entry.dialect_mask();
        // Members not heard of yet may speak a dialect that routes through user owners.
        let decorated = if entry.welcome_pending.is_empty() {
            dialects
        } else {
            DialectId::all()
                .filter(|d| d.get().routes_through_user_owners())
                .fold(dialects, |m, d| m | d.bit())
        };
        let view =
            matches!(events.first(), Some(Event::RoomUpdated(_)) | Some(Event::RoomDeleted { .. }))
                .then(|| entry.room.view());
        for event in &events {
            let mut bundle = bundle_of(event, view.as_deref(), dialects);
            let cx = RoomEvent {
                room: &entry.room,
                view: view.as_deref(),
                event,
                stored: stored.as_ref(),
                actor: viewer.user(),
                joined: joined.as_ref(),
                receipts: owned.receipts.get(&room_id),
                deleted,
                connected: &entry.member_dialects,
                unknown: &entry.welcome_pending,
            };
            for d in DialectId::in_mask(decorated) {
                d.get().decorate(self, &cx, &mut bundle, &mut commands);
            }
            let bundle = Arc::new(bundle);
            for s in shards_in(mask) {
                let (room, bundle) = (room_id, bundle.clone());
                let command = if deleted {
                    Command::RoomGone { room, bundle }
                } else {
                    Command::Deliver { room, bundle }
                };
                commands.push((s, command));
            }
        }
        if let Some(user) = joined {
            entry.welcome_pending.insert(user.clone());
            commands.push((
                shard_of_user(&user, self.shard_count),
                Command::RoomJoined { user, room: room_id },
            ));
        }
        if deleted {
            owned.receipts.remove(&room_id);
            if let Some(gone) = owned.rooms.remove(&room_id) {
                if gone.room.kind == crate::model::RoomKind::Direct {
                    let pair = crate::model::action::direct_pair_of(gone.room.members.keys());
                    for (to, command) in
                        owned.index_direct(room_id, pair, self.id, self.shard_count)
                    {
                        self.send(to, command);
                    }
                }
                for message in &gone.room.history {
                    owned.message_rooms.remove(&message.id);
                }
                for user in gone.room.members.into_keys() {
                    commands.push((
                        shard_of_user(&user, self.shard_count),
                        Command::RoomLeft { user, room: room_id },
                    ));
                }
                crate::metrics::dec(&self.metrics.rooms);
            }
        }
        Effects { response: Response::Done(reply), commands, ops, pins }
    }

    /// A history page: from the in-memory window when it holds the whole answer, else read
    /// from the store off the loop.
    fn history(
        &self,
        room_id: RoomId,
        viewer: &Viewer,
        (after, before, limit, bytes_max): (Option<MessageId>, Option<MessageId>, usize, usize),
        reply_to: ReplyTo,
    ) {
        let mut guard = self.owner.owned.borrow_mut();
        let owned = &mut *guard;
        let Some(entry) = owned.rooms.get_mut(&room_id) else {
            drop(guard);
            return self.respond(reply_to, Response::Refused(Refusal::NotFound("no such room")));
        };
        let action = RoomAction::History { after, before, limit, bytes_max };
        let outcome = match entry.room.apply(viewer, action, &mut owned.message_ids, now_ms()) {
            Ok(outcome) => outcome,
            Err(refusal) => {
                drop(guard);
                return self.respond(reply_to, Response::Refused(refusal));
            }
        };
        let from_window = match &outcome.reply {
            Reply::Messages(page) => {
                persist::window_answers(&entry.room, after, before, limit, page)
            }
            _ => true,
        };
        drop(guard);
        if from_window {
            self.respond(reply_to, Response::Done(outcome.reply));
        } else {
            self.read_history_from_store(room_id, (after, before, limit, bytes_max), reply_to);
        }
    }

    /// User owner: the dialects of `user`'s connections on `shard` are now `dialects` (0: it
    /// has none there any more).
    pub fn user_shards_changed(
        self: &Rc<Self>,
        user: UserId,
        shard: ShardId,
        dialects: DialectMask,
    ) {
        let mut owned = self.owner.owned.borrow_mut();
        let record = owned.users.get_or_default(&user);
        let before = record.conns.presence();
        let gained = dialects & !record.conns.on(shard);
        record.conns.set(shard, dialects);
        let after = record.conns.presence();
        let rooms: Vec<RoomId> = record.rooms.iter().copied().collect();
        if record.is_idle() {
            owned.users.remove(&user);
        }
        self.metrics.users.store(owned.users.len() as u64, std::sync::atomic::Ordering::Relaxed);
        drop(owned);
        let attached = (gained != 0).then_some((shard, gained));
        for d in DialectId::in_mask(before.dialects | after.dialects) {
            d.get().presence_changed(self, &user, before, after, attached);
        }
        if before == after {
            return;
        }
        for room in rooms {
            self.send(
                shard_of_room(room, self.shard_count),
                Command::MemberShards {
                    room,
                    user: user.clone(),
                    mask: after.shards,
                    dialects: after.dialects,
                },
            );
        }
    }

    /// User owner: `user` joined or left `room`.
    pub fn user_membership_changed(self: &Rc<Self>, user: UserId, room: RoomId, joined: bool) {
        let mut owned = self.owner.owned.borrow_mut();
        let record = owned.users.get_or_default(&user);
        let presence = record.conns.presence();
        if joined {
            record.rooms.insert(room);
        } else {
            record.rooms.remove(room);
            if record.is_idle() {
                owned.users.remove(&user);
            }
        }
        self.metrics.users.store(owned.users.len() as u64, std::sync::atomic::Ordering::Relaxed);
        drop(owned);
        for d in DialectId::in_mask(presence.dialects) {
            d.get().rooms_changed(self, &user);
        }
        if joined {
            self.send(
                shard_of_room(room, self.shard_count),
                Command::MemberShards {
                    room,
                    user,
                    mask: presence.shards,
                    dialects: presence.dialects,
                },
            );
        }
    }

    /// Room owner: the user owner says `user`'s connections are on the shards in `mask` and
    /// speak `dialects`.
    pub fn member_shards(&self, room_id: RoomId, user: UserId, mask: u64, dialects: DialectMask) {
        let mut owned = self.owner.owned.borrow_mut();
        let mut commands: Vec<(ShardId, Command)> = Vec::new();
        match owned.rooms.get_mut(&room_id) {
            Some(entry) if entry.room.members.contains_key(&user) => {
                let welcome = entry.welcome_pending.remove(&user);
                let moderator =
                    entry.room.members.get(&user).is_some_and(|m| m.role >= Role::Moderator);
                entry.set_member_dialects(&user, if mask == 0 { 0 } else { dialects });
                let Some(member) = entry.room.members.get_mut(&user) else {
                    return;
                };
                let old = member.shard_mask;
                member.shard_mask = mask;
                let bundle = welcome.then(|| {
                    let view = entry.room.view();
                    let created = Event::RoomCreated(view.clone());
                    personal_bundle(&created, &view, &user, moderator, dialects)
                });
                for shard in shards_in(mask & !old) {
                    entry.shard_counts[shard.0] += 1;
                    commands.push((
                        shard,
                        Command::Subscribe {
                            room: room_id,
                            user: user.clone(),
                            bundle: bundle.clone(),
                        },
                    ));
                }
                for shard in shards_in(old & !mask) {
                    entry.shard_counts[shard.0] = entry.shard_counts[shard.0].saturating_sub(1);
                }
            }
            _ => {
                // Not (or no longer) a member: make sure no shard keeps it subscribed.
                for shard in shards_in(mask) {
                    commands.push((
                        shard,
                        Command::Unsubscribe { room: room_id, user: user.clone(), bundle: None },
                    ));
                }
            }
        }
        drop(owned);
        for (shard, command) in commands {
            self.send(shard, command);
        }
    }
}

impl Shard {
    /// Room owner: `user` sends `bundle` to `room`; its subscriber shards get it when `user`
    /// is a member (else it is dropped: only members may type into, or announce themselves
    /// in, a room).
    pub fn to_room(&self, room: RoomId, user: &UserId, bundle: Arc<Bundle>) {
        let Some((_, shards)) = self.owner.room_of_member(room, user) else {
            return;
        };
        for s in ShardId::all(self.shard_count).filter(|s| shards & s.bit() != 0) {
            self.send(s, Command::Deliver { room, bundle: bundle.clone() });
        }
    }
}

impl Outcome {
    /// True when the reply is a message this action created (so its id enters the index).
    fn reply_is_new_message(&self) -> bool {
        matches!(self.events.first(), Some(Event::MessageCreated(_)))
    }
}

#[cfg(test)]
mod size_tests {
    /// A user's record is one boxed (UserId, UserRecord) of at most 80 bytes (mimalloc's
    /// 80-byte class) plus 9 bytes per bucket of the owner's table (perf/RESULTS.md, idle
    /// memory); notifications and rooms cost one pointer each until the user has one, and
    /// where its connections are 16 bytes.
    #[test]
    fn user_record_stays_compact() {
        use std::mem::size_of;
        assert!(size_of::<(crate::model::UserId, super::UserRecord)>() <= 64);
        assert_eq!(size_of::<super::Notifications>(), 8);
        assert_eq!(size_of::<super::UserConns>(), 16);
    }

    /// `UserConns` keeps three shards inline and more in its box, each shard once.
    #[test]
    fn user_conns_spill_and_come_back() {
        use crate::model::ShardId;
        let mut conns = super::UserConns::default();
        assert!(conns.is_empty());
        for s in 0..6 {
            conns.set(ShardId(s), 1 << (s % 3));
        }
        conns.set(ShardId(2), 0b11);
        assert_eq!((conns.on(ShardId(2)), conns.on(ShardId(5)), conns.on(ShardId(6))), (3, 4, 0));
        assert_eq!(conns.presence().shards, 0b11_1111);
        assert!(matches!(conns.0, super::ShardDialects::Many(_)));
        for s in 0..4 {
            conns.set(ShardId(s), 0);
        }
        assert!(matches!(conns.0, super::ShardDialects::Few { len: 2, .. }));
        assert_eq!(conns.presence().shards, 0b11_0000);
        assert_eq!(conns.presence().dialects, 0b110);
        conns.set(ShardId(4), 0);
        conns.set(ShardId(5), 0);
        conns.set(ShardId(5), 0);
        assert!(conns.is_empty());
    }
}
