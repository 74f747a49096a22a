//! Several nodes as one service: the mesh between nodes, over NATS.
//!
//! A cluster is `nodes` nodes of `shards` shards each; global shard `g = node * shards + local`,
//! and rooms, users and ids hash over the `nodes * shards` global shards exactly as they hash
//! over one node's shards alone. A command for a shard of another node leaves its shard through
//! a bounded SPSC ring to the node's NATS thread (`node`), which encodes it (`wire`) and
//! publishes it on the destination node's subject `<prefix>.w<version>.node.<n>.mesh`; the receiving
//! node's thread decodes it and pushes it into the destination shard's ring from that thread,
//! ringing its doorbell. Shards never block on the network. Which nodes answer is `health`.
//!
//! Invariants: one publisher connection per node and one subject per destination node, so
//! NATS keeps the order of every (sender shard, receiver shard) pair, as the rings do; a
//! command that cannot reach its node (down) is never sent: requests are refused with 503 at
//! once (`Shard::call`), and what was in flight is answered with 503 when the node is found
//! down (`Command::NodeDown`); a node that comes (back) up is told again what it must know
//! (`Command::NodeUp`: memberships and connections of its users). `Command::Adopt` (a socket)
//! and the drain's `Drained` never cross nodes.

pub mod health;
pub mod node;
pub mod wire;

pub use health::Health;

use crate::model::ShardId;

/// The cluster's shape as one node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topology {
    /// This node.
    pub node: usize,
    /// Nodes in the cluster.
    pub nodes: usize,
    /// Shards per node.
    pub shards: usize,
}

impl Topology {
    /// A node alone with `shards` shards.
    pub fn alone(shards: usize) -> Topology {
        Topology { node: 0, nodes: 1, shards }
    }

    /// Shards in the cluster.
    pub fn global_count(&self) -> usize {
        self.nodes * self.shards
    }

    /// The global id of this node's shard `local`.
    pub fn global(&self, local: usize) -> ShardId {
        ShardId(self.node * self.shards + local)
    }

    /// The node that runs global shard `shard`.
    pub fn node_of(&self, shard: ShardId) -> usize {
        shard.0 / self.shards.max(1)
    }

    /// The local index of `shard` when this node runs it.
    pub fn local_of(&self, shard: ShardId) -> Option<usize> {
        let base = self.node * self.shards;
        (shard.0 >= base && shard.0 < base + self.shards).then(|| shard.0 - base)
    }

    /// The bits of this node's shards in a global shard mask.
    pub fn node_mask(&self, node: usize) -> u64 {
        let bits = if self.shards >= 64 { u64::MAX } else { (1u64 << self.shards) - 1 };
        bits.checked_shl((node * self.shards) as u32).unwrap_or(0)
    }

    /// This node's shards (global ids).
    pub fn local_shards(&self) -> impl Iterator<Item = ShardId> + '_ {
        (0..self.shards).map(|local| self.global(local))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_ids_map_to_nodes_and_back() {
        let t = Topology { node: 1, nodes: 3, shards: 2 };
        assert_eq!(t.global_count(), 6);
        assert_eq!(t.global(0), ShardId(2));
        assert_eq!(t.global(1), ShardId(3));
        assert_eq!(t.node_of(ShardId(5)), 2);
        assert_eq!(t.local_of(ShardId(3)), Some(1));
        assert_eq!(t.local_of(ShardId(4)), None);
        assert_eq!(t.local_of(ShardId(1)), None);
        assert_eq!(t.node_mask(1), 0b1100);
        assert_eq!(t.local_shards().collect::<Vec<_>>(), vec![ShardId(2), ShardId(3)]);
        let alone = Topology::alone(4);
        assert_eq!(alone.local_of(ShardId(3)), Some(3));
        assert_eq!(alone.node_mask(0), 0b1111);
    }
}
