//! The graceful drain a shard runs once it stops accepting (SIGTERM): every acknowledged
//! message's frames reach the connections that should get them before those are told to go.
//!
//! 1. Its HTTP requests in flight finish (a request that starts after the drain began gets 503,
//!    no connection is kept alive and nothing new is accepted; a waiting long-poll answers at
//!    once).
//! 2. Two rounds of `Command::Drained` through the mesh. A shard sends round 0 once its own
//!    requests are answered, and round 1 once every shard's round 0 reached it. A room owner
//!    sends a message's deliveries before its acknowledgement, in the same step (`release`),
//!    and every acknowledgement of a request that was in flight anywhere came before that
//!    shard's round 0; so an owner's round 1 leaves after all its deliveries, on the same
//!    FIFO rings, and a shard that has every round 1 has queued every one of them.
//! 3. Every event connection is closed with 1001 after its queued frames (the close frame
//!    goes behind them), and the shard waits for the connections to go.
//!
//! Every wait ends at the same deadline, `drain_ms` after the drain began; then the shard
//! stops with whatever is left (the store's last group is committed after the shards end,
//! `Store::shutdown`).

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::Shard;
use crate::mesh::Command;
use crate::ws::close::CLOSE_GOING_AWAY;

/// How often the drain looks again at what it waits for.
const DRAIN_POLL: Duration = Duration::from_millis(5);

/// Runs the drain (see the module doc); returns when done or at the deadline.
pub async fn drain(shard: &Rc<Shard>) {
    let deadline = Instant::now() + Duration::from_millis(shard.config.drain_ms);
    until(deadline, || shard.requests_in_flight.get() == 0).await;
    // The drain is one node's: its own shards only (another node keeps serving).
    let others = shard
        .topology
        .local_shards()
        .filter(|s| *s != shard.id)
        .fold(0u64, |mask, s| mask | s.bit());
    for round in 0..shard.drained_from.len() {
        for to in shard.topology.local_shards().filter(|s| *s != shard.id) {
            shard.send(to, Command::Drained { from: shard.id, round });
        }
        until(deadline, || shard.drained_from[round].get() & others == others).await;
    }
    let conns: Vec<_> = shard.conn.slab.borrow().iter().map(|(_, c)| c.clone()).collect();
    for conn in conns {
        conn.close(CLOSE_GOING_AWAY, "server shutting down");
    }
    until(deadline, || shard.metrics.connections.load(Ordering::Relaxed) == 0).await;
}

/// Waits until `done` holds or `deadline` passes.
async fn until(deadline: Instant, done: impl Fn() -> bool) {
    while !done() && Instant::now() < deadline {
        tokio::time::sleep(DRAIN_POLL).await;
    }
}
