//! BIG presence and typing. Presence: when a user's first connection opens (or its last one
//! closes), its user owner gathers its direct-room peers and tells each peer's owner
//! (`BigPresence`), which sends `online` / `offline` (with `lastSeen`) to the peer's
//! connections, keeps it unacknowledged under the key `<user>::status` (so a newer state
//! replaces an older one), and — for `online` — answers with the peer's own `online` when the
//! peer is connected. Typing: the room owner renders `typing` once per variant and sends it to
//! the room's subscriber shards like any event, but it is never kept or re-sent.
//!
//! Invariants: presence is sent only when the user is still in that state once its peers are
//! known (an `online` that raced with the last close is dropped); a user is told only about
//! peers it shares a direct room with, at most `BIG_CHATS_MAX` of them; only BIG connections
//! count as online.

use std::collections::HashSet;
use std::rc::Rc;
use std::sync::Arc;

use super::owner::{deliveries, event_id, keep, user_room_views};
use super::{send, wire, BigCommand, ID};
use crate::fanout::Bundle;
use crate::limits::BIG_CHATS_MAX;
use crate::mesh::Command;
use crate::model::ids::{now_ms, shard_of_room, shard_of_user};
use crate::model::{RoomId, RoomKind, Seq, ShardId, UserId};
use crate::shard::Shard;

/// User owner: `user`'s first BIG connection opened (`online`) or its last one closed.
pub fn online_changed(shard: &Rc<Shard>, user: UserId, online: bool) {
    let last_seen = if online { 0 } else { now_ms() };
    let shard = shard.clone();
    tokio_uring::spawn(async move {
        let Ok(views) = user_room_views(&shard, &user, false).await else {
            return;
        };
        let is_online = shard.owner.user_presence(&user).dialects & ID.bit() != 0;
        if is_online != online {
            return;
        }
        if online {
            // Messages addressed to the user are delivered now (their authors get `dlvrd`).
            for view in views.iter().filter(|v| v.last_seq > Seq(0)) {
                let (room, user) = (view.id, user.clone());
                let mark = BigCommand::Mark { room, user, read: false, seq: None };
                send(&shard, shard_of_room(room, shard.shard_count), mark);
            }
        }
        let peers: HashSet<UserId> = views
            .iter()
            .filter(|v| v.kind == RoomKind::Direct)
            .flat_map(|v| v.members.iter().map(|(u, _)| u.clone()))
            .filter(|u| u != &user)
            .take(BIG_CHATS_MAX)
            .collect();
        for peer in peers {
            let owner = shard_of_user(&peer, shard.shard_count);
            let about = user.clone();
            let command =
                BigCommand::Presence { to: peer, about, online, last_seen, answer: online };
            send(&shard, owner, command);
        }
    });
}

/// User owner of `to`: `about` came online or went offline.
pub fn tell(
    shard: &Rc<Shard>,
    to: UserId,
    about: UserId,
    online: bool,
    last_seen: u64,
    answer: bool,
) {
    let presence = shard.owner.user_presence(&to);
    if presence.shards == 0 {
        return;
    }
    let id = event_id(shard, 'p');
    let frame = wire::presence(&id, now_ms(), &about, online, last_seen);
    let key: Arc<str> = Arc::from(format!("{about}::status"));
    let ops = keep(shard, to.clone(), Arc::from(id), Some(key), frame.clone());
    shard.commit_then(ops, deliveries(shard, &to, presence.shards, frame));
    if answer && presence.dialects & ID.bit() != 0 {
        let owner = shard_of_user(&about, shard.shard_count);
        let command = BigCommand::Presence {
            to: about,
            about: to,
            online: true,
            last_seen: 0,
            answer: false,
        };
        send(shard, owner, command);
    }
}

/// Room owner: `user` types in `room` (or stopped); its other members' BIG connections get
/// `typing`, a direct room's peer with `chatId` = the typer. Never kept or re-sent.
pub fn typing(shard: &Shard, room: RoomId, user: UserId, stop: bool) {
    let id = event_id(shard, 't');
    let Some((kind, shards)) = shard.owner.room_of_member(room, &user) else {
        return;
    };
    let chat = if kind == RoomKind::Direct { user.as_str().to_string() } else { room.to_string() };
    let mut bundle = Bundle::default();
    bundle.frames[ID.index()] = Some(wire::typing(&id, now_ms(), &user, &chat, stop));
    bundle.routing[ID.index()] =
        Some(Box::new(crate::fanout::Routing { skip: Some(user), ..Default::default() }));
    let bundle = Arc::new(bundle);
    for s in ShardId::all(shard.shard_count).filter(|s| shards & s.bit() != 0) {
        shard.send(s, Command::Deliver { room, bundle: bundle.clone() });
    }
}
