//! Per-shard counters and gauges, and their Prometheus text rendering for `GET /metrics`.
//!
//! Each shard writes only its own `ShardMetrics` (relaxed atomics, no contention); any shard
//! renders all of them on request.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::mesh::RingGauges;

macro_rules! shard_metrics {
    ($($(#[doc = $doc:literal])* $name:ident: $kind:literal;)*) => {
        /// Counters and gauges of one shard.
        #[derive(Debug, Default)]
        pub struct ShardMetrics {
            $($(#[doc = $doc])* pub $name: AtomicU64,)*
        }

        impl ShardMetrics {
            fn render_into(all: &[Arc<ShardMetrics>], first: usize, out: &mut String) {
                $(
                    let help = concat!($($doc),*).trim();
                    let _ = writeln!(out, "# HELP roomcast_{} {}", stringify!($name), help);
                    let _ = writeln!(out, "# TYPE roomcast_{} {}", stringify!($name), $kind);
                    for (shard, m) in all.iter().enumerate() {
                        let shard = first + shard;
                        let _ = writeln!(out, "roomcast_{}{{shard=\"{}\"}} {}", stringify!($name), shard, m.$name.load(Ordering::Relaxed));
                    }
                )*
            }
        }
    };
}

shard_metrics! {
    /// Open connections (HTTP and WebSocket).
    connections: "gauge";
    /// Open WebSocket connections.
    websockets: "gauge";
    /// Connections accepted since start.
    connections_accepted_total: "counter";
    /// Failed accepts (out of descriptors, a connection lost before it was taken, …).
    accept_errors_total: "counter";
    /// Pauses of the accept loop after a failed accept (out of descriptors or memory, or an
    /// unknown error), instead of retrying at once.
    accept_backoffs_total: "counter";
    /// Connections refused because the shard was at its connection limit.
    connections_refused_total: "counter";
    /// When the shard's loop last ran its heartbeat task (ms since the Unix epoch, every
    /// 250 ms): a loop that stops updating it is stuck (the systemd watchdog is fed only while
    /// every shard's is recent).
    loop_heartbeat_ms: "gauge";
    /// Upgrade requests handed to the shard their dialect's state lives on
    /// (`Dialect::home_shard`).
    upgrades_handed_off_total: "counter";
    /// TLS connections that failed: a handshake refused (a plain-TCP client, a protocol
    /// version or cipher suite not offered) or a bad record.
    tls_errors_total: "counter";
    /// Connections in the HTTP phase (accepted, not upgraded), at most
    /// `http_connections_per_shard_max`.
    http_phase_connections: "gauge";
    /// Connections refused (503) because the shard held `http_connections_per_shard_max`
    /// HTTP-phase connections.
    http_refused_shard_cap_total: "counter";
    /// Connections refused (503) because their source address held
    /// `http_connections_per_ip_max` HTTP-phase connections on the shard.
    http_refused_ip_cap_total: "counter";
    /// WebSocket upgrades refused because the user held `connections_per_user_max` connections
    /// on the shard.
    user_connection_limit_refused_total: "counter";
    /// New event connections refused (503, or the dialect's error) because the user's room
    /// owners did not confirm their subscriptions in time (`Shard::settle_subscriptions`).
    attach_settle_timeouts_total: "counter";
    /// WebSocket frames received.
    frames_in_total: "counter";
    /// WebSocket frames queued for sending.
    frames_out_total: "counter";
    /// Bytes received on all connections.
    bytes_in_total: "counter";
    /// Bytes written on all connections.
    bytes_out_total: "counter";
    /// send/sendmsg operations the connection writer queued on the shard's WebSocket ring
    /// (named for the `writev` it once was).
    writev_total: "counter";
    /// Sends that wrote part of their frames (the socket's buffer filled; the rest goes next).
    write_blocked_total: "counter";
    /// Operations of WebSocket sessions in the kernel: one multishot receive per open session,
    /// plus sends and cancellations in flight (an idle shard holds one per connection).
    ws_ops_in_flight: "gauge";
    /// Provided receive buffers the shard holds outside the kernel (0 between completions).
    recv_buffers_held: "gauge";
    /// Provided receive buffers handed to the kernel so far (`WS_RECV_BUFFERS_FIRST`, doubled
    /// at each ENOBUFS up to `WS_RECV_BUFFERS`; each is resident once used).
    recv_buffers_posted: "gauge";
    /// Sessions keeping the bytes of an incomplete frame.
    ws_partial_frames: "gauge";
    /// Receives that found no provided buffer (ENOBUFS) and were re-armed.
    recv_enobufs_total: "counter";
    /// Multishot receives re-armed after they stopped (ENOBUFS, a full completion queue).
    recv_rearms_total: "counter";
    /// io_uring_enter calls on the shard's WebSocket ring (submits and reaps).
    uring_enters_total: "counter";
    /// Submissions of tokio-uring's queue by the shard's loop while it stayed busy (REST and
    /// accepts would otherwise wait until the loop went idle).
    runtime_flushes_total: "counter";
    /// Connections with frames waiting for the shard's writer (bounded by the connections).
    write_pending: "gauge";
    /// Event frames handed to subscribed connections.
    events_delivered_total: "counter";
    /// Connections closed because their outbound queue passed its bound.
    slow_consumer_closes_total: "counter";
    /// Open BIG connections.
    big_connections: "gauge";
    /// Rooms owned here with receipt marks.
    receipt_rooms: "gauge";
    /// BIG requests answered (responses and error replies).
    big_requests_total: "counter";
    /// BIG requests refused as duplicates of a recent request id.
    big_duplicate_requests_total: "counter";
    /// BIG chat-list refreshes dropped because too many were pending on the shard.
    big_chats_dropped_total: "counter";
    /// BIG connections closed after `big_silence_ms` without a frame.
    big_silence_closes_total: "counter";
    /// Users with unacknowledged BIG events kept on this shard (their owner).
    big_unacked_users: "gauge";
    /// Unacknowledged BIG events re-sent.
    big_resent_total: "counter";
    /// Users whose BIG connections were closed for too many unacknowledged events.
    big_unacked_overflows_total: "counter";
    /// BIG events not kept because too many users had unacknowledged events.
    big_unacked_dropped_total: "counter";
    /// HTTP requests served.
    http_requests_total: "counter";
    /// Upgrades or requests refused for a missing or bad token.
    auth_failures_total: "counter";
    /// Verified tokens cached on this shard (bounded by `TOKEN_CACHE_MAX`).
    auth_cache_tokens: "gauge";
    /// Client actions refused by the per-user rate limit (`actions_per_second`).
    rate_limited_total: "counter";
    /// Connections closed for a WebSocket protocol error.
    protocol_errors_total: "counter";
    /// Connections closed for missing pongs, an HTTP request (head and body) not received whole
    /// by its deadline, or an HTTP response the client took nothing of for as long
    /// (`handshake_timeout_ms`).
    timeouts_total: "counter";
    /// Keep-alive HTTP connections closed after `http_keepalive_timeout_ms` idle.
    http_keepalive_closes_total: "counter";
    /// Rooms owned by this shard.
    rooms: "gauge";
    /// Messages pushed out of a room's in-memory window by its byte bound
    /// (`history_bytes_per_room_max`) before its count bound; they are read from the store.
    history_window_byte_evictions_total: "counter";
    /// Users owned by this shard with connections or rooms.
    users: "gauge";
    /// Store write transactions committed (each a group of batches).
    store_commits_total: "counter";
    /// Store commit attempts that failed (each is retried).
    store_commit_failures_total: "counter";
    /// Store batches committed (one per acknowledged write).
    store_batches_total: "counter";
    /// 1 while the store's commits succeed, 0 while they fail.
    store_healthy: "gauge";
    /// Batches waiting in the store's write ring.
    store_write_ring_used: "gauge";
    /// Checkpoints of the store's write-ahead log into redb (`--durability fsync`).
    store_checkpoints_total: "counter";
    /// Bytes in the write-ahead log's current generation.
    store_log_bytes: "gauge";
    /// Batches durable in the log but not yet applied to redb (see `STORE_APPLY_PENDING_MAX`).
    store_unapplied_batches: "gauge";
    /// Batches replayed from the write-ahead log when the store opened (after a crash).
    store_log_replayed_batches: "gauge";
}

/// All shards' metrics plus the mesh gauges.
#[derive(Debug)]
pub struct Registry {
    /// One entry per shard, indexed by shard id.
    pub shards: Vec<Arc<ShardMetrics>>,
    /// Ring occupancy and parked commands.
    pub rings: Arc<RingGauges>,
    /// Which nodes of the cluster answer, and the NATS thread's counters (`None` alone).
    pub cluster: Option<Arc<crate::cluster::Health>>,
    /// The global id of this node's first shard (`shards[i]` is shard `first_shard + i`).
    pub first_shard: usize,
}

impl Registry {
    /// Renders everything in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        ShardMetrics::render_into(&self.shards, self.first_shard, &mut out);
        let n = self.rings.shard_count;
        let _ = writeln!(out, "# HELP roomcast_mesh_ring_slots Capacity of each mesh ring.");
        let _ = writeln!(out, "# TYPE roomcast_mesh_ring_slots gauge");
        let _ = writeln!(out, "roomcast_mesh_ring_slots {}", self.rings.slots);
        for (name, values) in [
            ("mesh_ring_occupancy", &self.rings.occupancy),
            ("mesh_ring_occupancy_max", &self.rings.occupancy_max),
        ] {
            let _ = writeln!(
                out,
                "# HELP roomcast_{name} Commands queued in the ring from one shard to another."
            );
            let _ = writeln!(out, "# TYPE roomcast_{name} gauge");
            for from in 0..n {
                for to in (0..n).filter(|&to| to != from) {
                    let v = values[from * n + to].load(Ordering::Relaxed);
                    let _ = writeln!(out, "roomcast_{name}{{from=\"{from}\",to=\"{to}\"}} {v}");
                }
            }
        }
        let _ =
            writeln!(out, "# HELP roomcast_mesh_parked Commands waiting because a ring was full.");
        let _ = writeln!(out, "# TYPE roomcast_mesh_parked gauge");
        for (shard, v) in self.rings.parked.iter().enumerate() {
            let _ = writeln!(
                out,
                "roomcast_mesh_parked{{shard=\"{shard}\"}} {}",
                v.load(Ordering::Relaxed)
            );
        }
        if let Some(cluster) = &self.cluster {
            cluster.render_into(&mut out);
        }
        out
    }
}

/// Adds one to a counter.
#[inline]
pub fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Adds `n` to a counter.
#[inline]
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Subtracts one from a gauge.
#[inline]
pub fn dec(gauge: &AtomicU64) {
    gauge.fetch_sub(1, Ordering::Relaxed);
}
