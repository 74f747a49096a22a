//! A shard's part in the cluster's health (`src/cluster/`): what it does when another node
//! stops answering or (re)appears. Both arrive from the node's NATS thread in order with the
//! commands it received (`Command::NodeDown` / `Command::NodeUp`).
//!
//! Invariants: every answer this shard awaits from a down node (a `call`, an owner's `ask`, a
//! settle's tokens) is answered with 503 at once, so nothing hangs on a lost node; a down
//! node's shards hold no connection in any record this shard owns (user owners' `UserConns`,
//! room owners' member shard masks), so a connection that later opens on the restarted node
//! is subscribed afresh; a node that comes up is told the memberships of the users it owns
//! (`RoomJoined`), the connections here of those users (`UserAttach`), and where the users
//! owned here are connected, for its rooms (`MemberShards`): that rebuilds its user records
//! and its rooms' subscribers.

use std::rc::Rc;

use super::Shard;
use crate::mesh::{Command, Response};
use crate::model::ids::{shard_of_room, shard_of_user};
use crate::model::{Refusal, RoomId, ShardId, UserId};

impl Shard {
    /// Node `node` stopped answering.
    pub fn node_down(self: &Rc<Self>, node: usize) {
        let topology = self.topology;
        // Everything awaited from it: 503.
        let tokens: Vec<u64> = self
            .remote_pending
            .borrow()
            .iter()
            .filter(|(_, n)| **n == node)
            .map(|(token, _)| *token)
            .collect();
        for token in tokens {
            self.remote_pending.borrow_mut().remove(&token);
            let refusal = Refusal::Unavailable("that node of the cluster is down");
            self.answer(token, Response::Refused(refusal));
        }
        let lost = topology.node_mask(node);
        // User owner: its shards hold none of our users' connections any more.
        let users: Vec<(UserId, u64)> = self
            .owner
            .owned
            .borrow()
            .users
            .iter()
            .filter_map(|(user, record)| {
                let shards = record.conns.presence().shards & lost;
                (shards != 0).then(|| (user.clone(), shards))
            })
            .collect();
        for (user, shards) in users {
            for shard in ShardId::all(self.shard_count).filter(|s| shards & s.bit() != 0) {
                self.user_shards_changed(user.clone(), shard, 0);
            }
        }
        // Room owner: its shards subscribe no member any more.
        let members: Vec<(RoomId, UserId, u64, crate::dialect::DialectMask)> = self
            .owner
            .owned
            .borrow()
            .rooms
            .iter()
            .flat_map(|(room, entry)| {
                entry.room.members.iter().filter(|(_, m)| m.shard_mask & lost != 0).map(
                    move |(user, m)| {
                        let dialects = entry.member_dialects.get(user).copied().unwrap_or(0);
                        (*room, user.clone(), m.shard_mask & !lost, dialects)
                    },
                )
            })
            .collect();
        for (room, user, mask, dialects) in members {
            self.member_shards(room, user, mask, dialects);
        }
    }

    /// Node `node` answers (again): tell it what it must know from this shard.
    pub fn node_up(self: &Rc<Self>, node: usize) {
        let topology = self.topology;
        let owned_by = |user: &UserId| {
            let owner = shard_of_user(user, self.shard_count);
            (topology.node_of(owner) == node).then_some(owner)
        };
        // Room owner: the memberships of the users it owns.
        let joined: Vec<(ShardId, UserId, RoomId)> = self
            .owner
            .owned
            .borrow()
            .rooms
            .iter()
            .flat_map(|(room, entry)| {
                entry.room.members.keys().filter_map(move |user| {
                    owned_by(user).map(|owner| (owner, user.clone(), *room))
                })
            })
            .collect();
        for (owner, user, room) in joined {
            self.send(owner, Command::RoomJoined { user, room });
        }
        // Room owner: its direct rooms' pairs that the node indexes.
        let pairs: Vec<(ShardId, (UserId, UserId), RoomId)> = {
            let owned = self.owner.owned.borrow();
            owned
                .rooms
                .keys()
                .filter_map(|room| {
                    let pair = owned.direct_pair_of_room(*room)?;
                    let owner =
                        crate::model::ids::shard_of_pair(&pair.0, &pair.1, self.shard_count);
                    (topology.node_of(owner) == node).then_some((owner, pair, *room))
                })
                .collect()
        };
        for (owner, pair, room) in pairs {
            self.send(owner, Command::DirectPair { pair, room, held: true });
        }
        // User owner: where its users' connections are, for the rooms the node owns.
        let members: Vec<(ShardId, RoomId, UserId, u64, crate::dialect::DialectMask)> = self
            .owner
            .owned
            .borrow()
            .users
            .iter()
            .flat_map(|(user, record)| {
                let presence = record.conns.presence();
                record.rooms.iter().filter_map(move |room| {
                    let owner = shard_of_room(*room, self.shard_count);
                    (presence.shards != 0 && topology.node_of(owner) == node)
                        .then(|| (owner, *room, user.clone(), presence.shards, presence.dialects))
                })
            })
            .collect();
        for (owner, room, user, mask, dialects) in members {
            self.send(owner, Command::MemberShards { room, user, mask, dialects });
        }
        // The node's first shard: every logout it knows, to each shard of the node. A node
        // that was down missed the logouts made meanwhile (sends to it are dropped), and one
        // that restarted rebuilt its replica from its own stores only: without this it would
        // accept a logged-out session whose user another node owns.
        if topology.local_of(self.id) == Some(0) {
            let revoked: Vec<(String, u64)> = self
                .conn
                .revoked
                .borrow()
                .live(crate::auth::now_unix_s())
                .map(|(sid, expires_at)| (sid.to_string(), expires_at))
                .collect();
            for local in 0..topology.shards {
                let to = ShardId(node * topology.shards + local);
                for (sid, expires_at) in &revoked {
                    self.send(
                        to,
                        Command::RevokeSession { sid: sid.clone(), expires_at: *expires_at },
                    );
                }
            }
        }
        // Connection side: this shard's connections of the users it owns.
        let attached: Vec<(ShardId, UserId)> = self
            .conn
            .subs
            .borrow()
            .users()
            .filter_map(|user| owned_by(user).map(|owner| (owner, user.clone())))
            .collect();
        for (owner, user) in attached {
            let dialects = self.conn.dialects_of(&user);
            if dialects != 0 {
                self.send(owner, Command::UserAttach { user, shard: self.id, dialects });
            }
        }
    }
}
