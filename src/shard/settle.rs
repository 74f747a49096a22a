//! Settling a new connection's subscriptions before the client is told it is connected.
//!
//! Registering a connection (`Shard::attach`) tells the user's owner, which tells the owner of
//! each of the user's rooms, which subscribes the connection's shard: three hops on the mesh.
//! Until the last `Subscribe` is handled on the connection's shard, a message committed in a
//! room of the user would miss the new socket, and a client that pages history right after
//! the 101 (the documented way to catch up) could lose it. So the connection's shard waits
//! for that chain before it answers: it sends `SettleAttach` to the user's owner (behind the
//! attach's own `UserAttach`, on the same ring), the owner sends a `Barrier` to each of the
//! user's room owners (behind their `MemberShards`), and each room owner's answer comes back
//! behind its `Subscribe` on the ring to the connection's shard.
//!
//! Invariant: when [`Shard::settle_subscriptions`] returns true, every room the user was a
//! member of when the owner handled `SettleAttach` has this shard subscribed, and every
//! event those rooms commit from then on reaches the connection.

use super::Shard;
use crate::limits::BARRIER_TIMEOUT;
use crate::mesh::{Command, Response};
use crate::model::ids::{shard_of_room, shard_of_user};
use crate::model::room::Reply;
use crate::model::{Refusal, ShardId, UserId};

impl Shard {
    /// Connection shard: waits until `user`'s room owners have subscribed this shard for the
    /// connection registered just before (see the module doc). False when the user's owner
    /// refused (unreachable) or an answer did not come within `BARRIER_TIMEOUT` (an owner is
    /// stuck); the caller refuses the connection.
    pub async fn settle_subscriptions(&self, user: &UserId) -> bool {
        // Tokens `base..base + shard_count` for the room owners' barriers, then the owner's own.
        let base = self.next_call_token.get();
        let mut answers: Vec<_> = (0..=self.shard_count).map(|_| self.expect_answer()).collect();
        debug_assert_eq!(answers.first().map(|a| a.0), Some(base));
        let owner = shard_of_user(user, self.shard_count);
        if self.unreachable(owner) {
            for (token, _) in answers {
                self.pending.borrow_mut().remove(&token);
            }
            crate::metrics::inc(&self.metrics.attach_settle_timeouts_total);
            return false;
        }
        // Every token may be answered from another node: a node that goes down answers them.
        for (token, _) in &answers {
            self.await_from(*token, owner);
        }
        self.send(owner, Command::SettleAttach { from: self.id, user: user.clone(), base });
        let deadline = tokio::time::Instant::now() + BARRIER_TIMEOUT;
        // The user's owner first: without it nothing was relayed (a refusal is an owner that
        // cannot be reached). A room owner's refusal only says that owner is unreachable: its
        // rooms make no events meanwhile, so it does not hold the connection back.
        let mut settled = false;
        if let Some((token, rx)) = answers.pop() {
            settled =
                matches!(tokio::time::timeout_at(deadline, rx).await, Ok(Ok(Response::Done(_))));
            if !settled {
                self.pending.borrow_mut().remove(&token);
            }
        }
        for (token, rx) in answers {
            if !settled || tokio::time::timeout_at(deadline, rx).await.is_err() {
                settled = false;
                self.pending.borrow_mut().remove(&token);
            }
        }
        if !self.remote_pending.borrow().is_empty() {
            let mut remote = self.remote_pending.borrow_mut();
            (base..=base + self.shard_count as u64).for_each(|token| {
                remote.remove(&token);
            });
        }
        if !settled {
            crate::metrics::inc(&self.metrics.attach_settle_timeouts_total);
        }
        settled
    }

    /// User owner: answers a [`Command::SettleAttach`] of shard `from` for `user`: token
    /// `base + i` through a barrier on room owner `i`, or at once for a shard that owns none
    /// of the user's rooms; then token `base + shard_count` itself.
    pub fn settle_attach(&self, from: ShardId, user: &UserId, base: u64) {
        let room_owners = {
            let owned = self.owner.owned.borrow();
            owned.users.get(user).map_or(0, |record| {
                record
                    .rooms
                    .iter()
                    .fold(0u64, |mask, room| mask | shard_of_room(*room, self.shard_count).bit())
            })
        };
        for shard in ShardId::all(self.shard_count) {
            let token = base + shard.0 as u64;
            if room_owners & shard.bit() != 0 && self.unreachable(shard) {
                // A room owner on a down node: its rooms make no events meanwhile.
                let refusal = Refusal::Unavailable("that node of the cluster is down");
                self.send(from, Command::Response { token, response: Response::Refused(refusal) });
            } else if room_owners & shard.bit() != 0 {
                self.send(shard, Command::Barrier { from, token });
            } else {
                let response = Response::Done(Reply::Empty);
                self.send(from, Command::Response { token, response });
            }
        }
        // This owner's own answer: it handled the attach and relayed the barriers.
        let token = base + self.shard_count as u64;
        self.send(from, Command::Response { token, response: Response::Done(Reply::Empty) });
    }
}
