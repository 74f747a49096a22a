//! The mesh: one bounded lock-free SPSC ring per ordered pair of shards, plus one doorbell per
//! shard. It is the only door between shards.
//!
//! Invariants: each ring has exactly one producer (the sending shard) and one consumer (the
//! receiving shard); a full ring never drops and never blocks the loop: the command is parked
//! in the sender's local queue and retried on the next pass. Parked queues are bounded by
//! admission control: new client actions are refused (503) while a peer's parked queue is over
//! its admission bound (`Shard::call`), but commands produced by actions already admitted are
//! always kept.

pub mod command;
pub mod doorbell;
pub mod request;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::cluster::{Health, Topology};

pub use command::Command;
pub use doorbell::Doorbell;
pub use request::{Request, Response};

use crate::model::ShardId;

/// Ring occupancy gauges shared with the metrics endpoint: `[from * n + to]`.
#[derive(Debug)]
pub struct RingGauges {
    /// Slots in use at the last push, per ordered pair.
    pub occupancy: Vec<AtomicU64>,
    /// Highest occupancy seen, per ordered pair.
    pub occupancy_max: Vec<AtomicU64>,
    /// Commands parked because the ring was full, per sending shard.
    pub parked: Vec<AtomicU64>,
    /// Slots per ring.
    pub slots: usize,
    /// Number of shards.
    pub shard_count: usize,
}

/// One shard's side of the mesh: producers to every peer, consumers from every peer. In a
/// cluster (`src/cluster/`), also a producer to the node's NATS thread for the shards of other
/// nodes, and a consumer of what that thread received for this shard.
///
/// Shard ids are global (`node * shards + local`); `producers`, `parked` and the doorbells are
/// indexed by the local index.
pub struct MeshEndpoint {
    shard: ShardId,
    local: usize,
    topology: Topology,
    producers: Vec<Option<rtrb::Producer<Command>>>,
    consumers: Vec<(ShardId, rtrb::Consumer<Command>)>,
    doorbells: Arc<Vec<Doorbell>>,
    parked: Vec<VecDeque<Command>>,
    gauges: Arc<RingGauges>,
    remote: Option<RemoteLink>,
}

/// A shard's end of the cluster thread: outbound commands (with their global destination),
/// parked in order when the ring is full, and the thread's wakeup.
pub struct RemoteLink {
    /// To the NATS thread.
    pub out: rtrb::Producer<(ShardId, Command)>,
    /// From the NATS thread.
    pub inbound: rtrb::Consumer<Command>,
    /// Commands waiting for room in `out`, in order.
    pub parked: VecDeque<(ShardId, Command)>,
    /// Wakes the NATS thread.
    pub wake: Arc<tokio::sync::Notify>,
    /// Which nodes answer.
    pub health: Arc<Health>,
}

/// The built mesh: one endpoint per shard, every shard's doorbell, and the shared gauges.
pub struct Built {
    /// Endpoint `i` belongs to shard `i`.
    pub endpoints: Vec<MeshEndpoint>,
    /// Doorbell `i` wakes shard `i` (the main thread rings them all at shutdown).
    pub doorbells: Arc<Vec<Doorbell>>,
    /// Occupancy gauges for `/metrics`.
    pub gauges: Arc<RingGauges>,
}

/// Builds the full mesh for `shard_count` shards with `slots` commands per ring (a node alone).
pub fn build(shard_count: usize, slots: usize) -> std::io::Result<Built> {
    build_for(Topology::alone(shard_count), slots)
}

/// Builds the mesh of this node's `topology.shards` local shards.
pub fn build_for(topology: Topology, slots: usize) -> std::io::Result<Built> {
    let shard_count = topology.shards;
    let doorbells =
        Arc::new((0..shard_count).map(|_| Doorbell::new()).collect::<std::io::Result<Vec<_>>>()?);
    let pairs = shard_count * shard_count;
    let gauges = Arc::new(RingGauges {
        occupancy: (0..pairs).map(|_| AtomicU64::new(0)).collect(),
        occupancy_max: (0..pairs).map(|_| AtomicU64::new(0)).collect(),
        parked: (0..shard_count).map(|_| AtomicU64::new(0)).collect(),
        slots,
        shard_count,
    });
    let mut endpoints: Vec<MeshEndpoint> = (0..shard_count)
        .map(|local| MeshEndpoint {
            shard: topology.global(local),
            local,
            topology,
            remote: None,
            producers: (0..shard_count).map(|_| None).collect(),
            consumers: Vec::new(),
            doorbells: doorbells.clone(),
            parked: (0..shard_count).map(|_| VecDeque::new()).collect(),
            gauges: gauges.clone(),
        })
        .collect();
    for from in 0..shard_count {
        for to in 0..shard_count {
            if from == to {
                continue;
            }
            let (producer, consumer) = rtrb::RingBuffer::new(slots);
            endpoints[from].producers[to] = Some(producer);
            endpoints[to].consumers.push((topology.global(from), consumer));
        }
    }
    Ok(Built { endpoints, doorbells, gauges })
}

impl MeshEndpoint {
    /// This endpoint's shard.
    pub fn shard(&self) -> ShardId {
        self.shard
    }

    /// This shard's own doorbell.
    pub fn own_doorbell(&self) -> &Doorbell {
        &self.doorbells[self.local]
    }

    /// The cluster's shape as this node sees it.
    pub fn topology(&self) -> Topology {
        self.topology
    }

    /// Connects this endpoint to the node's NATS thread.
    pub fn link_remote(&mut self, link: RemoteLink) {
        self.remote = Some(link);
    }

    /// Which nodes answer (`None` alone).
    pub fn health(&self) -> Option<&Arc<Health>> {
        self.remote.as_ref().map(|r| &r.health)
    }

    /// Whether shard `to` is on a node that does not answer now.
    pub fn unreachable(&self, to: ShardId) -> bool {
        let node = self.topology.node_of(to);
        node != self.topology.node && self.remote.as_ref().is_none_or(|r| !r.health.is_up(node))
    }

    /// Sends `command` to peer `to` (never to self): pushes it, or parks it when the ring is full
    /// or earlier commands are parked (order per peer is kept). Returns false when it was parked.
    /// A shard of another node goes through the NATS thread's ring (parked the same way).
    pub fn send(&mut self, to: ShardId, command: Command) -> bool {
        debug_assert_ne!(to, self.shard, "self-sends go through the local inbox");
        let Some(local) = self.topology.local_of(to) else {
            return self.send_remote(to, command);
        };
        let to = ShardId(local);
        if !self.parked[to.0].is_empty() {
            self.parked[to.0].push_back(command);
            self.gauges.parked[self.local].fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let Some(producer) = self.producers[to.0].as_mut() else {
            return false;
        };
        match producer.push(command) {
            Ok(()) => {
                self.note_occupancy(to);
                self.doorbells[to.0].ring();
                true
            }
            Err(rtrb::PushError::Full(command)) => {
                self.parked[to.0].push_back(command);
                self.gauges.parked[self.local].fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Hands `command` for shard `to` of another node to the NATS thread (or parks it).
    fn send_remote(&mut self, to: ShardId, command: Command) -> bool {
        let Some(remote) = self.remote.as_mut() else {
            // Alone, every shard is local: a caller computed an id out of range.
            tracing::error!(shard = self.shard.get(), to = to.get(), "no such shard");
            return true;
        };
        if !remote.parked.is_empty() {
            remote.parked.push_back((to, command));
            self.gauges.parked[self.local].fetch_add(1, Ordering::Relaxed);
            return false;
        }
        match remote.out.push((to, command)) {
            Ok(()) => {
                remote.wake.notify_one();
                true
            }
            Err(rtrb::PushError::Full(item)) => {
                remote.parked.push_back(item);
                self.gauges.parked[self.local].fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    fn note_occupancy(&self, to: ShardId) {
        let Some(producer) = self.producers[to.0].as_ref() else {
            return;
        };
        let used = (producer.buffer().capacity() - producer.slots()) as u64;
        let index = self.local * self.gauges.shard_count + to.0;
        self.gauges.occupancy[index].store(used, Ordering::Relaxed);
        self.gauges.occupancy_max[index].fetch_max(used, Ordering::Relaxed);
    }

    /// Retries parked commands in order; returns how many are still parked.
    pub fn retry_parked(&mut self) -> usize {
        let mut left = 0;
        if let Some(remote) = self.remote.as_mut() {
            let mut moved = 0u64;
            while let Some(item) = remote.parked.pop_front() {
                match remote.out.push(item) {
                    Ok(()) => moved += 1,
                    Err(rtrb::PushError::Full(item)) => {
                        remote.parked.push_front(item);
                        break;
                    }
                }
            }
            if moved > 0 {
                self.gauges.parked[self.local].fetch_sub(moved, Ordering::Relaxed);
                remote.wake.notify_one();
            }
            left += remote.parked.len();
        }
        for to in 0..self.parked.len() {
            let mut moved = 0u64;
            while let Some(command) = self.parked[to].pop_front() {
                let Some(producer) = self.producers[to].as_mut() else {
                    break;
                };
                match producer.push(command) {
                    Ok(()) => moved += 1,
                    Err(rtrb::PushError::Full(command)) => {
                        self.parked[to].push_front(command);
                        break;
                    }
                }
            }
            if moved > 0 {
                self.gauges.parked[self.local].fetch_sub(moved, Ordering::Relaxed);
                self.note_occupancy(ShardId(to));
                self.doorbells[to].ring();
            }
            left += self.parked[to].len();
        }
        left
    }

    /// Commands parked for peer `to`.
    pub fn parked_for(&self, to: ShardId) -> usize {
        match self.topology.local_of(to) {
            Some(local) => self.parked.get(local).map_or(0, VecDeque::len),
            None => self.remote.as_ref().map_or(0, |r| r.parked.len()),
        }
    }

    /// Pops up to `budget` commands from every peer's ring into `out`; returns how many.
    pub fn drain(&mut self, out: &mut Vec<Command>, budget: usize) -> usize {
        let before = out.len();
        for (_, consumer) in &mut self.consumers {
            while out.len() - before < budget {
                match consumer.pop() {
                    Ok(command) => out.push(command),
                    Err(_) => break,
                }
            }
        }
        if let Some(remote) = self.remote.as_mut() {
            let start = out.len();
            while out.len() - start < budget {
                match remote.inbound.pop() {
                    Ok(command) => out.push(command),
                    Err(_) => break,
                }
            }
        }
        out.len() - before
    }
}
