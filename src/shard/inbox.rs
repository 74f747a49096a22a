//! The inbox task: wakes on the shard's doorbell (peers pushed into its rings) or on a local
//! self-send, drains commands in bounded batches, and dispatches each to its handler.
//!
//! Invariant: the doorbell is disarmed before the rings are drained, so no push is missed; a
//! batch is at most `MESH_DRAIN_BUDGET` commands per ring, after which the task yields so the
//! connection writers it woke get to submit their writes.

use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use tokio::io::unix::AsyncFd;

use crate::limits::MESH_DRAIN_BUDGET;
use crate::mesh::Command;

use super::Shard;

/// Runs until the shard stops.
pub async fn run(shard: Rc<Shard>, doorbell: AsyncFd<OwnedFd>) {
    let mut batch: Vec<Command> = Vec::with_capacity(256);
    loop {
        tokio::select! {
            ready = doorbell.readable() => {
                if let Ok(mut guard) = ready {
                    guard.clear_ready();
                }
            }
            () = shard.inbox_wake.notified() => {}
        }
        shard.mesh.borrow().own_doorbell().disarm();
        if shard.stop.load(Ordering::Acquire) && !shard.shutting_down.get() {
            shard.begin_shutdown();
        }
        shard.drain_store();
        shard.note_store_metrics();
        loop {
            batch.clear();
            shard.mesh.borrow_mut().drain(&mut batch, MESH_DRAIN_BUDGET);
            batch.extend(shard.inbox.borrow_mut().drain(..));
            if batch.is_empty() {
                break;
            }
            for command in batch.drain(..) {
                handle(&shard, command);
            }
            shard.drain_store();
            // Client input (REST on tokio-uring's ring) gets its turn before more fan-out.
            shard.conn.ws.ring.flush_runtime();
            tokio::task::yield_now().await;
        }
    }
}

/// Dispatches one command.
fn handle(shard: &Rc<Shard>, command: Command) {
    match command {
        Command::Request { from, token, request } => {
            shard.execute(request, super::ReplyTo::Remote { from, token });
        }
        Command::Response { token, response } => shard.answer(token, response),
        Command::ToRoom { room, user, bundle } => shard.to_room(room, &user, bundle),
        Command::Deliver { room, bundle } => shard.deliver(room, &bundle),
        Command::Subscribe { room, user, bundle } => {
            let keys = shard.conn.subs.borrow_mut().subscribe(room, &user);
            if let Some(bundle) = bundle {
                shard.deliver_to(&keys, &bundle);
            }
        }
        Command::Unsubscribe { room, user, bundle } => {
            let keys = shard.conn.subs.borrow_mut().unsubscribe(room, &user);
            if let Some(bundle) = bundle {
                shard.deliver_to(&keys, &bundle);
            }
        }
        Command::RoomGone { room, bundle } => {
            let keys = shard.conn.subs.borrow_mut().drop_room(room);
            let conns = shard.conn.slab.borrow();
            crate::fanout::deliver(&keys, |k| conns.get(k), &bundle);
        }
        Command::UserAttach { user, shard: s, dialects } => {
            shard.user_shards_changed(user, s, dialects)
        }
        Command::UserDetach { user, shard: s } => shard.user_shards_changed(user, s, 0),
        Command::RoomJoined { user, room } => shard.user_membership_changed(user, room, true),
        Command::RoomLeft { user, room } => shard.user_membership_changed(user, room, false),
        Command::MemberShards { room, user, mask, dialects } => {
            shard.member_shards(room, user, mask, dialects)
        }
        Command::DeliverToUser { user, bundle } => {
            let keys: Vec<usize> = shard.conn.subs.borrow().conns_of(&user).to_vec();
            shard.deliver_to(&keys, &bundle);
        }
        Command::RevokeSession { sid, expires_at } => shard.revoke_local(&sid, expires_at),
        Command::SessionSeen { user, sid, expires_at } => shard.session_seen(user, sid, expires_at),
        Command::SettleAttach { from, user, base } => shard.settle_attach(from, &user, base),
        Command::Barrier { from, token } => shard.send(
            from,
            Command::Response {
                token,
                response: super::Response::Done(crate::model::room::Reply::Empty),
            },
        ),
        Command::DirectPair { pair, room, held } => {
            shard.owner.owned.borrow_mut().set_pair(pair, room, held)
        }
        Command::Dialect { dialect, payload } => dialect.get().on_command(shard, payload),
        Command::Drained { from, round } => {
            if let Some(marks) = shard.drained_from.get(round) {
                marks.set(marks.get() | from.bit());
            }
        }
        Command::Adopt(handoff) => crate::net::http_conn::adopt(shard, *handoff),
        Command::Shutdown => shard.begin_shutdown(),
        Command::NodeDown(node) => shard.node_down(node),
        Command::NodeUp(node) => shard.node_up(node),
    }
}
