//! Which nodes answer: each node publishes a heartbeat on `<prefix>.w<version>.node.<n>.health` every
//! [`HEARTBEAT_PERIOD`]; a node is up while its last heartbeat is younger than
//! [`DOWN_AFTER`] and this node's NATS connection is up. Shards read it (atomics) to refuse
//! at once what a down node would never answer; `/metrics` and `/healthz` show it.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// How often a node says it is alive.
pub const HEARTBEAT_PERIOD: Duration = Duration::from_millis(100);

/// A node is down after this long without a heartbeat: what a request already sent to it
/// waits at most before its 503 (requests made after are refused at once).
pub const DOWN_AFTER: Duration = Duration::from_millis(750);

/// The cluster as this node sees it, plus the NATS thread's counters.
#[derive(Debug)]
pub struct Health {
    /// This node.
    pub node: usize,
    /// Up, per node (this node's own entry is always true).
    up: Vec<AtomicBool>,
    /// Whether this node's NATS connection is up.
    pub connected: AtomicBool,
    /// Messages published (each a batch of commands for one node).
    pub published_total: AtomicU64,
    /// Commands sent to other nodes.
    pub commands_out_total: AtomicU64,
    /// Commands received from other nodes.
    pub commands_in_total: AtomicU64,
    /// Bytes published.
    pub bytes_out_total: AtomicU64,
    /// Received messages that could not be decoded (dropped).
    pub malformed_total: AtomicU64,
    /// Commands that cannot cross nodes, or whose node was down, dropped.
    pub dropped_total: AtomicU64,
    /// Commands larger than the NATS server's `max_payload` on their own, dropped (an
    /// owner's request among them answered 413 at once).
    pub oversized_total: AtomicU64,
    /// The NATS server's `max_payload` (bytes; 0 before the first connection).
    pub max_payload: AtomicU64,
    /// Heartbeats of nodes that speak another wire version (ignored).
    pub version_mismatch_total: AtomicU64,
    /// Commands waiting because a shard's inbound ring was full.
    pub inbound_parked: AtomicU64,
    /// Publishes that failed (connection lost meanwhile).
    pub publish_errors_total: AtomicU64,
    /// NATS slow-consumer events (the server dropped messages for this node).
    pub slow_consumer_total: AtomicU64,
}

impl Health {
    /// Every other node down until it is heard from.
    pub fn new(node: usize, nodes: usize) -> Health {
        Health {
            node,
            up: (0..nodes).map(|n| AtomicBool::new(n == node)).collect(),
            connected: AtomicBool::new(false),
            published_total: AtomicU64::new(0),
            commands_out_total: AtomicU64::new(0),
            commands_in_total: AtomicU64::new(0),
            bytes_out_total: AtomicU64::new(0),
            malformed_total: AtomicU64::new(0),
            dropped_total: AtomicU64::new(0),
            oversized_total: AtomicU64::new(0),
            max_payload: AtomicU64::new(0),
            version_mismatch_total: AtomicU64::new(0),
            inbound_parked: AtomicU64::new(0),
            publish_errors_total: AtomicU64::new(0),
            slow_consumer_total: AtomicU64::new(0),
        }
    }

    /// Nodes in the cluster.
    pub fn nodes(&self) -> usize {
        self.up.len()
    }

    /// Whether `node` answers (this node always does).
    pub fn is_up(&self, node: usize) -> bool {
        node == self.node
            || (self.connected.load(Ordering::Acquire)
                && self.up.get(node).is_some_and(|up| up.load(Ordering::Acquire)))
    }

    /// Records whether `node` answers; true when that changed.
    pub fn set_up(&self, node: usize, up: bool) -> bool {
        match self.up.get(node) {
            Some(flag) if node != self.node => flag.swap(up, Ordering::AcqRel) != up,
            _ => false,
        }
    }

    /// Whether every node answers.
    pub fn all_up(&self) -> bool {
        (0..self.nodes()).all(|n| self.is_up(n))
    }

    /// `{"node": n, "nodes": [{"node": 0, "up": true}, …], "connected": bool}` for `/healthz`.
    pub fn json(&self) -> serde_json::Value {
        let nodes: Vec<_> = (0..self.nodes())
            .map(|n| serde_json::json!({ "node": n, "up": self.is_up(n) }))
            .collect();
        serde_json::json!({
            "node": self.node,
            "connected": self.connected.load(Ordering::Acquire),
            "nodes": nodes,
        })
    }

    /// The Prometheus lines.
    pub fn render_into(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP roomcast_cluster_node_up Whether a node answers (1) or not.");
        let _ = writeln!(out, "# TYPE roomcast_cluster_node_up gauge");
        for n in 0..self.nodes() {
            let _ = writeln!(
                out,
                "roomcast_cluster_node_up{{node=\"{n}\"}} {}",
                u8::from(self.is_up(n))
            );
        }
        let _ =
            writeln!(out, "# HELP roomcast_cluster_connected Whether the NATS connection is up.");
        let _ = writeln!(out, "# TYPE roomcast_cluster_connected gauge");
        let _ = writeln!(
            out,
            "roomcast_cluster_connected {}",
            u8::from(self.connected.load(Ordering::Acquire))
        );
        for (name, kind, help, value) in [
            ("published_total", "counter", "NATS messages published.", &self.published_total),
            (
                "commands_out_total",
                "counter",
                "Commands sent to other nodes.",
                &self.commands_out_total,
            ),
            (
                "commands_in_total",
                "counter",
                "Commands received from other nodes.",
                &self.commands_in_total,
            ),
            ("bytes_out_total", "counter", "Bytes published to NATS.", &self.bytes_out_total),
            (
                "malformed_total",
                "counter",
                "Received messages that did not decode (dropped).",
                &self.malformed_total,
            ),
            (
                "dropped_total",
                "counter",
                "Commands not sent: down node or not sendable.",
                &self.dropped_total,
            ),
            (
                "oversized_total",
                "counter",
                "Commands over the NATS server's max_payload, dropped.",
                &self.oversized_total,
            ),
            ("max_payload_bytes", "gauge", "The NATS server's max_payload.", &self.max_payload),
            (
                "version_mismatch_total",
                "counter",
                "Heartbeats of nodes on another wire version (ignored).",
                &self.version_mismatch_total,
            ),
            (
                "inbound_parked",
                "gauge",
                "Received commands waiting for a full shard ring.",
                &self.inbound_parked,
            ),
            (
                "publish_errors_total",
                "counter",
                "Publishes that failed.",
                &self.publish_errors_total,
            ),
            (
                "slow_consumer_total",
                "counter",
                "NATS slow-consumer events.",
                &self.slow_consumer_total,
            ),
        ] {
            let _ = writeln!(out, "# HELP roomcast_cluster_{name} {help}");
            let _ = writeln!(out, "# TYPE roomcast_cluster_{name} {kind}");
            let _ = writeln!(out, "roomcast_cluster_{name} {}", value.load(Ordering::Relaxed));
        }
    }
}
