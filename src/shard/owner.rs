//! The owner side of the life of a message: permission → ids → (store) → events → bundles →
//! subscriber shards. Also the user records (rooms and connection shards per user).
//!
//! Invariants: only this shard mutates the rooms and users it owns; a room's `shard_counts[s]`
//! is the number of its members whose connection mask has bit `s`, so bundles go exactly to the
//! shards with subscribers; a removed member is unsubscribed (through the same FIFO ring as
//! later deliveries) before any later event of the room is sent.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::dialect::{osu, render_all, DialectKind};
use crate::fanout::{Alternative, Bundle, EventClass, OsuRouting};
use crate::mesh::Command;
use crate::model::ids::{now_ms, shard_of_room, shard_of_user, IdAllocator};
use crate::model::room::{Outcome, Reply};
use crate::model::{
    Event, Notification, Refusal, Role, Room, RoomAction, RoomId, RoomKind, RoomView, UserId,
    Viewer,
};

use super::commit::{Effects, ReplyTo};
use super::persist;
use super::request::{Request, Response};
use super::Shard;

/// A user's record on its owner shard.
#[derive(Debug, Default)]
pub struct UserRecord {
    /// Rooms the user is a member of.
    pub rooms: crate::model::RoomSet,
    /// Shards holding its connections (bit per shard).
    pub shard_mask: u64,
    /// Its notifications by id, at most `users::NOTIFICATIONS_PER_USER_MAX` (oldest evicted).
    pub notifications: BTreeMap<u64, Notification>,
    /// Sessions its connections showed (id → token expiry, unix s), bounded.
    pub sessions: super::sessions::SeenSessions,
}

impl UserRecord {
    /// True when nothing needs the record (it may be dropped).
    pub fn is_idle(&self) -> bool {
        self.shard_mask == 0
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
    /// Members who joined and still await their RoomCreated.
    pub welcome_pending: HashSet<UserId>,
    /// Public rooms: when each member was last active (posted, joined, acked), ms; entries
    /// older than `users::ACTIVE_WINDOW_MS` are pruned.
    pub active: HashMap<UserId, u64>,
}

impl OwnedRoom {
    fn shard_mask(&self) -> u64 {
        self.shard_counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .fold(0, |m, (s, _)| m | (1 << s))
    }
}

/// Everything one shard owns.
#[derive(Debug)]
pub struct Owned {
    /// Rooms owned here.
    pub rooms: HashMap<RoomId, OwnedRoom>,
    /// Users owned here.
    pub users: HashMap<UserId, UserRecord>,
    /// Message id → room, for messages still in a room's window.
    pub message_rooms: HashMap<u64, RoomId>,
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
    pub fn new(shard: usize, shard_count: usize) -> Self {
        Owned {
            rooms: HashMap::new(),
            users: HashMap::new(),
            message_rooms: HashMap::new(),
            room_ids: IdAllocator::new(shard, shard_count, 0),
            message_ids: IdAllocator::new(shard, shard_count, 0),
            notification_ids: IdAllocator::new(shard, shard_count, 0),
            receipts: HashMap::new(),
        }
    }
}

fn bit(shard: usize) -> u64 {
    1u64 << shard
}

fn shards_in(mask: u64) -> impl Iterator<Item = usize> {
    (0..64).filter(move |s| mask & (1 << s) != 0)
}

/// A bundle of `event` for everyone, with moderators getting their own rendering; osu!
/// connections get chat messages only when their user is in `osu_only` (if given).
fn bundle_of(
    event: &Event,
    room: Option<&RoomView>,
    osu_only: Option<&HashSet<UserId>>,
) -> Arc<Bundle> {
    let frames = render_all(event, false);
    let alternative = match (event, room) {
        (Event::RoomUpdated(_) | Event::RoomCreated(_), Some(view)) => {
            let users: HashSet<UserId> = view
                .members
                .iter()
                .filter(|(_, r)| *r >= Role::Moderator)
                .map(|(u, _)| u.clone())
                .collect();
            (!users.is_empty())
                .then(|| Box::new(Alternative { users, frames: render_all(event, true) }))
        }
        _ => None,
    };
    let (class, osu) = match event {
        Event::MessageCreated(_) => (
            EventClass::Chat,
            osu_only.map(|only| {
                Box::new(OsuRouting { only: Some(only.clone()), ..Default::default() })
            }),
        ),
        _ => (EventClass::Room, None),
    };
    Arc::new(Bundle { frames, alternative, class, osu, big: None })
}

/// A bundle for one user only; `osu` adds its osu! frame (a channel join/part) as a chat event.
fn personal_bundle(event: &Event, moderator: bool, osu: Option<bytes::Bytes>) -> Arc<Bundle> {
    let mut frames = render_all(event, moderator);
    let class = if osu.is_some() { EventClass::Chat } else { EventClass::Room };
    if osu.is_some() {
        frames[DialectKind::Osu as usize] = osu;
    }
    Arc::new(Bundle { frames, alternative: None, class, osu: None, big: None })
}

/// The RoomDeleted bundle of a deleted room: osu! connections get `chat.channel.part`, a PM
/// rendered for each of its (at most two) members.
fn room_gone_bundle(room: RoomId, view: &RoomView) -> Arc<Bundle> {
    let mut frames = render_all(&Event::RoomDeleted { room }, false);
    let mut routing = OsuRouting::default();
    if view.kind == RoomKind::Direct {
        routing.per_viewer = view
            .members
            .iter()
            .map(|(u, _)| (u.clone(), osu::channel_event(false, view, u)))
            .collect();
    } else {
        frames[DialectKind::Osu as usize] = Some(osu::channel_event(false, view, &UserId::new("")));
    }
    Arc::new(Bundle {
        frames,
        alternative: None,
        class: EventClass::Chat,
        osu: Some(Box::new(routing)),
        big: None,
    })
}

impl Shard {
    /// Executes a request this shard owns and answers `reply_to`: reads at once, writes once
    /// their effects are committed (see `Shard::commit`).
    pub fn execute(&self, request: Request, reply_to: ReplyTo) {
        match request {
            Request::CreateRoom { viewer, spec } => {
                let effects = self.create_room(&viewer, spec);
                self.commit(effects, reply_to);
            }
            Request::Room {
                room,
                viewer,
                action: RoomAction::History { after, before, limit },
            } => {
                self.history(room, &viewer, (after, before, limit), reply_to);
            }
            Request::Room { room, viewer, action } => {
                let effects = self.apply_room(room, &viewer, action);
                self.commit(effects, reply_to);
            }
            Request::Message { message, viewer, action } => {
                let room = self.owned.borrow().message_rooms.get(&message).copied();
                let effects = match room {
                    Some(room) => self.apply_room(room, &viewer, action),
                    None => Effects::refused(Refusal::NotFound("no such message")),
                };
                self.commit(effects, reply_to);
            }
            Request::UserRooms { user } => {
                let owned = self.owned.borrow();
                let mut rooms: Vec<RoomId> = owned
                    .users
                    .get(&user)
                    .map(|u| u.rooms.iter().copied().collect())
                    .unwrap_or_default();
                drop(owned);
                rooms.sort_unstable();
                self.respond(reply_to, Response::RoomIds(rooms));
            }
            Request::RoomViews { rooms, viewer, limit } => {
                let response = self.room_views(rooms, &viewer, limit);
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
            Request::MessageBySeq { room, viewer, seq } => {
                let response = self.message_by_seq(room, &viewer, seq);
                self.respond(reply_to, response);
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

    fn room_views(&self, rooms: Option<Vec<RoomId>>, viewer: &Viewer, limit: usize) -> Response {
        let owned = self.owned.borrow();
        let visible = |r: &OwnedRoom| match viewer {
            Viewer::Service => true,
            Viewer::User(u) => r.room.members.contains_key(u),
        };
        let views = match rooms {
            Some(ids) => ids
                .iter()
                .filter_map(|id| owned.rooms.get(id))
                .filter(|r| visible(r))
                .take(limit)
                .map(|r| r.room.view())
                .collect(),
            None => owned
                .rooms
                .values()
                .filter(|r| visible(r))
                .take(limit)
                .map(|r| r.room.view())
                .collect(),
        };
        Response::Rooms(views)
    }

    fn create_room(&self, viewer: &Viewer, spec: crate::model::action::NewRoom) -> Effects {
        if let Err(refusal) = self.admit() {
            return Effects::refused(refusal);
        }
        let limits = &self.config;
        let mut owned = self.owned.borrow_mut();
        if owned.rooms.len() >= limits.rooms_per_shard_max {
            return Effects::refused(Refusal::Full("this shard holds its maximum number of rooms"));
        }
        let id = owned.room_ids.next_id();
        debug_assert_eq!(shard_of_room(id, self.shard_count), self.id);
        let room = match Room::create(
            id,
            spec,
            viewer,
            now_ms(),
            limits.history_per_room_max,
            limits.members_per_room_max,
        ) {
            Ok(room) => room,
            Err(refusal) => return Effects::refused(refusal),
        };
        let members: Vec<UserId> = room.members.keys().cloned().collect();
        let view = room.view();
        let ops = persist::ops_for_new_room(&room);
        owned.rooms.insert(
            id,
            OwnedRoom {
                room,
                shard_counts: vec![0; self.shard_count],
                welcome_pending: members.iter().cloned().collect(),
                active: HashMap::new(),
            },
        );
        crate::metrics::inc(&self.metrics.rooms);
        drop(owned);
        let commands = members
            .into_iter()
            .map(|user| {
                (shard_of_user(&user, self.shard_count), Command::RoomJoined { user, room: id })
            })
            .collect();
        Effects { response: Response::Done(Reply::Room(view)), commands, ops }
    }

    fn apply_room(&self, room_id: RoomId, viewer: &Viewer, action: RoomAction) -> Effects {
        let mut guard = self.owned.borrow_mut();
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
        let history_full = entry.room.history.len() >= entry.room.history_max;
        let oldest = entry.room.history.front().map(|m| m.id);
        let outcome = match entry.room.apply(viewer, action, &mut owned.message_ids, now_ms()) {
            Ok(outcome) => outcome,
            Err(refusal) => return Effects::refused(refusal),
        };
        if let (Some(stored), true) = (&outcome.stored, outcome.reply_is_new_message()) {
            if history_full {
                if let Some(evicted) = oldest {
                    owned.message_rooms.remove(&evicted);
                }
            }
            owned.message_rooms.insert(stored.id, room_id);
        }
        let ops =
            write.as_ref().map(|w| persist::ops_for(&entry.room, w, &outcome)).unwrap_or_default();
        let Outcome { reply, events, joined, left, deleted, stored } = outcome;
        let mut commands: Vec<(usize, Command)> = Vec::new();
        let osu_only = super::users::note_activity(entry, &events, joined.as_ref(), now_ms());
        if let Some((user, mask)) = left {
            entry.active.remove(&user);
            let part = (mask != 0).then(|| osu::channel_event(false, &entry.room.view(), &user));
            for shard in shards_in(mask) {
                entry.shard_counts[shard] = entry.shard_counts[shard].saturating_sub(1);
                let bundle =
                    personal_bundle(&Event::RoomDeleted { room: room_id }, false, part.clone());
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
        let view =
            matches!(events.first(), Some(Event::RoomUpdated(_)) | Some(Event::RoomDeleted { .. }))
                .then(|| entry.room.view());
        for event in &events {
            let bundle = match (event, view.as_deref()) {
                (Event::RoomDeleted { room }, Some(view)) if deleted => {
                    room_gone_bundle(*room, view)
                }
                _ => bundle_of(event, view.as_deref(), osu_only.as_ref()),
            };
            let receipts = owned.receipts.get(&room_id);
            let bundle = super::big::with_big(
                bundle,
                &entry.room,
                event,
                (stored.as_ref(), viewer.user()),
                receipts,
            );
            if deleted {
                shards_in(mask).for_each(|s| {
                    commands.push((s, Command::RoomGone { room: room_id, bundle: bundle.clone() }))
                });
            } else {
                shards_in(mask).for_each(|s| {
                    commands.push((s, Command::Deliver { room: room_id, bundle: bundle.clone() }))
                });
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
        drop(guard);
        Effects { response: Response::Done(reply), commands, ops }
    }

    /// A history page: from the in-memory window when it holds the whole answer, else read
    /// from the store off the loop.
    fn history(
        &self,
        room_id: RoomId,
        viewer: &Viewer,
        (after, before, limit): (Option<u64>, Option<u64>, usize),
        reply_to: ReplyTo,
    ) {
        let mut guard = self.owned.borrow_mut();
        let owned = &mut *guard;
        let Some(entry) = owned.rooms.get_mut(&room_id) else {
            drop(guard);
            return self.respond(reply_to, Response::Refused(Refusal::NotFound("no such room")));
        };
        let action = RoomAction::History { after, before, limit };
        let outcome = match entry.room.apply(viewer, action, &mut owned.message_ids, now_ms()) {
            Ok(outcome) => outcome,
            Err(refusal) => {
                drop(guard);
                return self.respond(reply_to, Response::Refused(refusal));
            }
        };
        let page = match &outcome.reply {
            Reply::Messages(page) => page.as_slice(),
            _ => &[],
        };
        let from_window = persist::window_answers(&entry.room, after, before, limit, page);
        drop(guard);
        if from_window {
            self.respond(reply_to, Response::Done(outcome.reply));
        } else {
            self.read_history_from_store(room_id, after, before, limit, reply_to);
        }
    }

    /// User owner: a shard gained or lost `user`'s connections.
    pub fn user_shards_changed(&self, user: UserId, shard: usize, attached: bool) {
        let mut owned = self.owned.borrow_mut();
        let record = owned.users.entry(user.clone()).or_default();
        let was = record.shard_mask;
        if attached {
            record.shard_mask |= bit(shard);
        } else {
            record.shard_mask &= !bit(shard);
        }
        let mask = record.shard_mask;
        let rooms: Vec<RoomId> = record.rooms.iter().copied().collect();
        if record.is_idle() {
            owned.users.remove(&user);
        }
        self.metrics.users.store(owned.users.len() as u64, std::sync::atomic::Ordering::Relaxed);
        drop(owned);
        if attached {
            self.big_resend_to(&user, shard);
        }
        // BIG presence and delivered marks: only while BIG clients are connected (the work
        // spawns a task per user that comes online, which Virola/osu!-only servers never need).
        if (was == 0) != (mask == 0) && crate::dialect::in_use(crate::dialect::DialectKind::Big) {
            self.big_online_changed(user.clone(), mask != 0);
        }
        for room in rooms {
            self.send(
                shard_of_room(room, self.shard_count),
                Command::MemberShards { room, user: user.clone(), mask },
            );
        }
    }

    /// User owner: `user` joined or left `room`.
    pub fn user_membership_changed(&self, user: UserId, room: RoomId, joined: bool) {
        let mut owned = self.owned.borrow_mut();
        let record = owned.users.entry(user.clone()).or_default();
        let mask = record.shard_mask;
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
        if mask != 0 {
            self.big_chats_changed(user.clone());
        }
        if joined {
            self.send(
                shard_of_room(room, self.shard_count),
                Command::MemberShards { room, user, mask },
            );
        }
    }

    /// Room owner: the user owner says `user`'s connections are on the shards in `mask`.
    pub fn member_shards(&self, room_id: RoomId, user: UserId, mask: u64) {
        let mut owned = self.owned.borrow_mut();
        let mut commands: Vec<(usize, Command)> = Vec::new();
        match owned.rooms.get_mut(&room_id) {
            Some(entry) if entry.room.members.contains_key(&user) => {
                let welcome = entry.welcome_pending.remove(&user);
                let moderator =
                    entry.room.members.get(&user).is_some_and(|m| m.role >= Role::Moderator);
                let Some(member) = entry.room.members.get_mut(&user) else {
                    return;
                };
                let old = member.shard_mask;
                member.shard_mask = mask;
                let bundle = welcome.then(|| {
                    let view = entry.room.view();
                    let join = osu::channel_event(true, &view, &user);
                    personal_bundle(&Event::RoomCreated(view), moderator, Some(join))
                });
                for shard in shards_in(mask & !old) {
                    entry.shard_counts[shard] += 1;
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
                    entry.shard_counts[shard] = entry.shard_counts[shard].saturating_sub(1);
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

impl Outcome {
    /// True when the reply is a message this action created (so its id enters the index).
    fn reply_is_new_message(&self) -> bool {
        matches!(self.events.first(), Some(Event::MessageCreated(_)))
    }
}
