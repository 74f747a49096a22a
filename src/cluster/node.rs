//! The node's NATS thread: one `async-nats` client on its own thread with its own
//! current-thread tokio runtime, the only place of the node that touches the network of the
//! cluster.
//!
//! Out: each local shard hands commands for shards of other nodes to this thread through a
//! bounded SPSC ring (`RemoteLink::out`, parked in the shard when full) and a wakeup; the
//! thread drains every ring, encodes the commands for each destination node into one batch
//! (consecutive copies of one broadcast ride in one frame with one bit per destination shard),
//! and publishes it once on `<prefix>.w<version>.node.<n>.mesh` (`wire::subject`). A command for a node that does not
//! answer is not sent: what waits for an answer is refused at once (`refuse`).
//!
//! In: each message of this node's subject is decoded once and its commands pushed into the
//! destination shards' inbound rings (`RemoteLink::inbound`), ringing their doorbells. A full
//! ring parks the command here, in order, up to [`INBOUND_PARKED_MAX`]; past it the thread
//! stops reading (NATS then buffers, and drops as a slow consumer, counted). A message that
//! does not decode is counted and dropped.
//!
//! Health: a heartbeat `(node, incarnation)` on `<prefix>.w<version>.node.<n>.health` every
//! [`HEARTBEAT_PERIOD`]; a node is down after [`DOWN_AFTER`] without one, or while the NATS
//! connection is down. Every change is told to each local shard in order with the commands
//! (`Command::NodeDown` / `NodeUp`); a node whose incarnation changed (restarted faster than
//! the timeout) is told down then up before its first command is delivered.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;

use super::health::{Health, DOWN_AFTER, HEARTBEAT_PERIOD};
use super::{wire, Topology};
use crate::config::Config;
use crate::mesh::{Command, Doorbell, RemoteLink, Response};
use crate::model::{Refusal, ShardId};

/// Received commands parked for full shard rings before the thread stops reading.
pub const INBOUND_PARKED_MAX: usize = 65_536;

/// A batch is published once it passes this many bytes (under NATS's default 1 MiB payload),
/// or the NATS server's `max_payload` when that is smaller.
const BATCH_BYTES_MAX: usize = 256 * 1024;

/// How long a stopping node tries to flush what its shards sent last.
const STOP_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// Commands taken from one shard's ring per pass.
const OUT_BUDGET: usize = 4096;

/// The thread's ends of the shards' links.
pub struct Parts {
    outbound: Vec<rtrb::Consumer<(ShardId, Command)>>,
    inbound: Vec<rtrb::Producer<Command>>,
    wake: Arc<tokio::sync::Notify>,
    health: Arc<Health>,
}

/// Makes one link per local shard (for `MeshEndpoint::link_remote`) and the thread's ends.
pub fn links(topology: Topology, slots: usize, health: Arc<Health>) -> (Vec<RemoteLink>, Parts) {
    let wake = Arc::new(tokio::sync::Notify::new());
    let mut links = Vec::new();
    let mut parts = Parts {
        outbound: Vec::new(),
        inbound: Vec::new(),
        wake: wake.clone(),
        health: health.clone(),
    };
    for _ in 0..topology.shards {
        let (out, out_consumer) = rtrb::RingBuffer::new(slots);
        let (in_producer, inbound) = rtrb::RingBuffer::new(slots);
        parts.outbound.push(out_consumer);
        parts.inbound.push(in_producer);
        links.push(RemoteLink {
            out,
            inbound,
            parked: VecDeque::new(),
            wake: wake.clone(),
            health: health.clone(),
        });
    }
    (links, parts)
}

/// Starts the thread; it runs until `stop` is set (then it flushes what it holds and ends).
pub fn spawn(
    config: Arc<Config>,
    topology: Topology,
    parts: Parts,
    doorbells: Arc<Vec<Doorbell>>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("cluster".into()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(e) => {
                tracing::error!("cluster runtime: {e}");
                return;
            }
        };
        runtime.block_on(run(config, topology, parts, doorbells, stop));
    })
}

/// The NATS connection options from the configuration.
async fn options(
    config: &Config,
    health: Arc<Health>,
) -> Result<async_nats::ConnectOptions, String> {
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("roomcast-node-{}", config.node))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .reconnect_delay_callback(|attempt| {
            Duration::from_millis((50 * attempt.min(20) as u64).max(50))
        })
        .subscription_capacity(INBOUND_PARKED_MAX)
        .event_callback(move |event| {
            let health = health.clone();
            async move {
                match event {
                    async_nats::Event::Connected => health.connected.store(true, Ordering::Release),
                    async_nats::Event::Disconnected | async_nats::Event::Closed => {
                        health.connected.store(false, Ordering::Release)
                    }
                    async_nats::Event::SlowConsumer(_) => {
                        crate::metrics::inc(&health.slow_consumer_total)
                    }
                    other => tracing::warn!("NATS: {other}"),
                }
            }
        });
    if let Some(path) = &config.cluster_creds {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| format!("cluster credentials {}: {e}", path.display()))?;
    }
    if let (Some(user), Some(password)) = (&config.cluster_user, &config.cluster_password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &config.cluster_token {
        options = options.token(token.clone());
    }
    if let Some(ca) = &config.cluster_tls_ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&config.cluster_tls_cert, &config.cluster_tls_key) {
        options = options.add_client_certificate(cert.clone(), key.clone()).require_tls(true);
    }
    Ok(options)
}

/// The thread's state.
struct Bridge {
    topology: Topology,
    health: Arc<Health>,
    parts: Parts,
    doorbells: Arc<Vec<Doorbell>>,
    /// Received commands waiting for room in a shard's inbound ring, per local shard.
    parked_in: Vec<VecDeque<Command>>,
    /// Local shards whose doorbell is due.
    ring_due: u64,
    /// Per node: the batch being built, and the last frame not yet encoded (a broadcast may
    /// still add destination bits to it).
    batches: Vec<Vec<u8>>,
    pending: Vec<Option<(ShardId, u64, Command)>>,
    /// Batches closed because the next frame would have taken them over `batch_limit`, in
    /// order, published before the open ones (a few at most: `drain_out` stops at the first).
    sealed: Vec<(usize, Vec<u8>)>,
    /// The largest batch: `BATCH_BYTES_MAX`, or the server's `max_payload` when smaller (a
    /// larger publish would be refused whole by the client).
    batch_limit: usize,
    /// Every batch's first bytes: this node and its incarnation.
    header: Vec<u8>,
    /// Per node: when its last heartbeat came, and its incarnation.
    last_seen: Vec<Option<Instant>>,
    incarnation: Vec<Option<u64>>,
    /// This node's incarnation (its start, in ms).
    own_incarnation: u64,
    /// Other wire versions already reported (at most 8 kept).
    versions_warned: Vec<u32>,
}

async fn run(
    config: Arc<Config>,
    topology: Topology,
    parts: Parts,
    doorbells: Arc<Vec<Doorbell>>,
    stop: Arc<AtomicBool>,
) {
    let health = parts.health.clone();
    let url = config.cluster_url.clone().unwrap_or_default();
    let options = match options(&config, health.clone()).await {
        Ok(options) => options,
        Err(e) => {
            tracing::error!("{e}");
            return;
        }
    };
    let client = match options.connect(url.as_str()).await {
        Ok(client) => client,
        Err(e) => {
            tracing::error!("cluster: connecting to {url}: {e}");
            return;
        }
    };
    let prefix = &config.cluster_prefix;
    let mesh_subject = wire::subject(prefix, topology.node, "mesh");
    let [any_health, first_health] = wire::health_subjects_any_version(prefix);
    let (mut mesh_sub, mut health_sub) = match (
        client.subscribe(mesh_subject).await,
        client.subscribe(any_health).await,
        client.subscribe(first_health).await,
    ) {
        (Ok(mesh), Ok(health), Ok(first)) => (mesh, futures_util::stream::select(health, first)),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            tracing::error!("cluster: subscribing: {e}");
            return;
        }
    };
    if client.connection_state() == async_nats::connection::State::Connected {
        health.connected.store(true, Ordering::Release);
    }
    let subjects: Vec<String> =
        (0..topology.nodes).map(|n| wire::subject(prefix, n, "mesh")).collect();
    let own_health = wire::subject(prefix, topology.node, "health");
    let nodes = topology.nodes;
    let own_incarnation = crate::model::ids::now_ms();
    let mut bridge = Bridge {
        topology,
        health: health.clone(),
        doorbells,
        parked_in: (0..topology.shards).map(|_| VecDeque::new()).collect(),
        ring_due: 0,
        batches: (0..nodes).map(|_| Vec::new()).collect(),
        pending: (0..nodes).map(|_| None).collect(),
        sealed: Vec::new(),
        batch_limit: BATCH_BYTES_MAX,
        header: postcard::to_allocvec(&(topology.node as u16, own_incarnation)).unwrap_or_default(),
        last_seen: vec![None; nodes],
        incarnation: vec![None; nodes],
        own_incarnation,
        versions_warned: Vec::new(),
        parts,
    };
    bridge.set_max_payload(client.server_info().max_payload);
    let wake = bridge.parts.wake.clone();
    let mut heartbeat = tokio::time::interval(HEARTBEAT_PERIOD);
    let mut check = tokio::time::interval(Duration::from_millis(50));
    let mut retry = tokio::time::interval(Duration::from_millis(1));
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(node = topology.node, nodes, "cluster: subscribed on NATS");
    loop {
        let reading = bridge.parked_total() < INBOUND_PARKED_MAX;
        tokio::select! {
            () = wake.notified() => {}
            message = mesh_sub.next(), if reading => {
                let Some(message) = message else { break };
                bridge.receive(&message.payload);
                // Take whatever else is already here before ringing the shards.
                while bridge.parked_total() < INBOUND_PARKED_MAX {
                    match futures_util::FutureExt::now_or_never(mesh_sub.next()) {
                        Some(Some(message)) => bridge.receive(&message.payload),
                        _ => break,
                    }
                }
            }
            message = health_sub.next() => {
                let Some(message) = message else { break };
                match wire::health_version(prefix, message.subject.as_str()) {
                    Some(wire::WIRE_VERSION) => bridge.heard(&message.payload),
                    version => bridge.other_version(version),
                }
            }
            _ = heartbeat.tick() => {
                // None while disconnected: async-nats would queue each beat (2 048 at most,
                // ~200 s of them), and once its queue is full every beat's publish would
                // hold this loop for its timeout, delaying the shards' 503s.
                if health.connected.load(Ordering::Acquire) {
                    let beat = (topology.node as u16, bridge.own_incarnation);
                    let beat = postcard::to_allocvec(&beat).unwrap_or_default();
                    // Never held up by a lost connection: a missed beat is only a missed beat.
                    let publish = client.publish(own_health.clone(), Bytes::from(beat));
                    let sent = tokio::time::timeout(HEARTBEAT_PERIOD, publish).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        crate::metrics::inc(&health.publish_errors_total);
                    }
                }
            }
            _ = check.tick() => {
                bridge.check_health();
                // After a reconnect the server (perhaps another one) may say otherwise.
                bridge.set_max_payload(client.server_info().max_payload);
                if stop.load(Ordering::Acquire) {
                    // What the shards sent last, flushed while NATS is there (bounded: a
                    // flush waits for a connection that may never come back).
                    let last = async {
                        while bridge.drain_out() {
                            bridge.publish(&client, &subjects).await;
                        }
                        bridge.publish(&client, &subjects).await;
                        let _ = client.flush().await;
                    };
                    let _ = tokio::time::timeout(STOP_FLUSH_TIMEOUT, last).await;
                    break;
                }
            }
            _ = retry.tick(), if bridge.parked_total() > 0 => {}
        }
        bridge.retry_in();
        while bridge.drain_out() {
            bridge.publish(&client, &subjects).await;
        }
        bridge.publish(&client, &subjects).await;
        bridge.ring();
    }
}

impl Bridge {
    fn parked_total(&self) -> usize {
        self.parked_in.iter().map(VecDeque::len).sum()
    }

    /// Hands `command` to local shard `local` (parked behind earlier ones when its ring is
    /// full).
    fn deliver_local(&mut self, local: usize, command: Command) {
        let Some(parked) = self.parked_in.get_mut(local) else {
            return;
        };
        if parked.is_empty() {
            match self.parts.inbound[local].push(command) {
                Ok(()) => {
                    self.ring_due |= 1 << local;
                    return;
                }
                Err(rtrb::PushError::Full(command)) => parked.push_back(command),
            }
        } else {
            parked.push_back(command);
        }
        crate::metrics::inc(&self.health.inbound_parked);
    }

    fn retry_in(&mut self) {
        for local in 0..self.parked_in.len() {
            while let Some(command) = self.parked_in[local].pop_front() {
                match self.parts.inbound[local].push(command) {
                    Ok(()) => {
                        self.ring_due |= 1 << local;
                        crate::metrics::dec(&self.health.inbound_parked);
                    }
                    Err(rtrb::PushError::Full(command)) => {
                        self.parked_in[local].push_front(command);
                        break;
                    }
                }
            }
        }
    }

    fn ring(&mut self) {
        for local in 0..self.doorbells.len() {
            if self.ring_due & (1 << local) != 0 {
                self.doorbells[local].ring();
            }
        }
        self.ring_due = 0;
    }

    /// Tells every local shard `command` (a node's change of state).
    fn tell_all(&mut self, make: impl Fn() -> Command) {
        for local in 0..self.topology.shards {
            self.deliver_local(local, make());
        }
    }

    /// A heartbeat of another wire version (or on no health subject at all): its bytes are not
    /// read, its node is not taken as up; counted, and said once per version.
    fn other_version(&mut self, version: Option<u32>) {
        crate::metrics::inc(&self.health.version_mismatch_total);
        let version = version.unwrap_or(0);
        if !self.versions_warned.contains(&version) && self.versions_warned.len() < 8 {
            self.versions_warned.push(version);
            tracing::error!(
                version,
                ours = wire::WIRE_VERSION,
                "cluster: a node speaks another wire version (another roomcast release); \
                 the two do not exchange commands and each sees the other down"
            );
        }
    }

    /// A heartbeat: `(node, incarnation)`.
    fn heard(&mut self, payload: &[u8]) {
        let Ok((node, incarnation)) = postcard::from_bytes::<(u16, u64)>(payload) else {
            crate::metrics::inc(&self.health.malformed_total);
            return;
        };
        let node = usize::from(node);
        if node >= self.topology.nodes || node == self.topology.node {
            return;
        }
        self.last_seen[node] = Some(Instant::now());
        self.seen_incarnation(node, incarnation);
    }

    /// Node `node` speaks with `incarnation`: up now; down first when it restarted.
    fn seen_incarnation(&mut self, node: usize, incarnation: u64) {
        let restarted = self.incarnation[node].is_some_and(|known| known != incarnation);
        self.incarnation[node] = Some(incarnation);
        if self.last_seen[node].is_none() {
            self.last_seen[node] = Some(Instant::now());
        }
        if restarted && self.health.set_up(node, false) {
            tracing::warn!(node, "cluster: node restarted");
            self.tell_all(|| Command::NodeDown(node));
        }
        if self.health.set_up(node, true) {
            tracing::info!(node, "cluster: node up");
            self.tell_all(|| Command::NodeUp(node));
        }
    }

    /// Marks nodes silent for [`DOWN_AFTER`] (or all, while disconnected) down.
    fn check_health(&mut self) {
        let connected = self.health.connected.load(Ordering::Acquire);
        let topology = self.topology;
        for node in (0..topology.nodes).filter(|n| *n != topology.node) {
            let fresh = self.last_seen[node].is_some_and(|at| at.elapsed() < DOWN_AFTER);
            if !(connected && fresh) && self.health.set_up(node, false) {
                tracing::warn!(node, "cluster: node down");
                self.last_seen[node] = None;
                self.tell_all(|| Command::NodeDown(node));
            }
        }
    }

    /// A message of this node's mesh subject: `(node, incarnation)` then frames.
    fn receive(&mut self, payload: &[u8]) {
        let Ok(((node, incarnation), rest)) = postcard::take_from_bytes::<(u16, u64)>(payload)
        else {
            crate::metrics::inc(&self.health.malformed_total);
            return;
        };
        let node = usize::from(node);
        if node >= self.topology.nodes || node == self.topology.node {
            crate::metrics::inc(&self.health.malformed_total);
            return;
        }
        if self.incarnation[node] != Some(incarnation) || !self.health.is_up(node) {
            self.seen_incarnation(node, incarnation);
        }
        let frames = match wire::decode_batch(rest) {
            Ok(frames) => frames,
            Err(frames) => {
                crate::metrics::inc(&self.health.malformed_total);
                frames
            }
        };
        let global = self.topology.global_count();
        for frame in frames {
            if !shards_in_range(&frame.command, global) || frame.from.0 >= global {
                crate::metrics::inc(&self.health.malformed_total);
                continue;
            }
            let locals: Vec<usize> = (0..self.topology.shards)
                .filter(|l| frame.to & self.topology.global(*l).bit() != 0)
                .collect();
            let Some((&last, first)) = locals.split_last() else {
                continue;
            };
            for &local in first {
                match wire::clone_broadcast(&frame.command) {
                    Some(copy) => self.deliver_local(local, copy),
                    None => crate::metrics::inc(&self.health.malformed_total),
                }
            }
            crate::metrics::add(&self.health.commands_in_total, locals.len() as u64);
            self.deliver_local(last, frame.command);
        }
    }

    /// Takes what the shards handed over and sorts it into the nodes' batches; true when it
    /// stopped early (a batch is full, or a ring gave its budget) and must run again after
    /// the batches are published.
    fn drain_out(&mut self) -> bool {
        let mut more = false;
        for local in 0..self.parts.outbound.len() {
            let from = self.topology.global(local);
            for _ in 0..OUT_BUDGET {
                if !self.sealed.is_empty()
                    || self.batches.iter().any(|b| b.len() >= self.batch_limit)
                {
                    return true;
                }
                let Ok((to, command)) = self.parts.outbound[local].pop() else {
                    break;
                };
                self.route(from, to, command);
            }
            more |= !self.parts.outbound[local].is_empty();
        }
        more
    }

    /// Sends `command` from `from` to shard `to` of another node (or refuses it).
    fn route(&mut self, from: ShardId, to: ShardId, command: Command) {
        let node = self.topology.node_of(to);
        if node >= self.topology.nodes {
            crate::metrics::inc(&self.health.dropped_total);
            return;
        }
        if let Some(local) = self.topology.local_of(to) {
            // A refusal for a local asker.
            self.deliver_local(local, command);
            return;
        }
        if !self.health.is_up(node) {
            crate::metrics::inc(&self.health.dropped_total);
            let down = Refusal::Unavailable("that node of the cluster is down");
            self.refuse(command, down);
            return;
        }
        crate::metrics::inc(&self.health.commands_out_total);
        if let Some((last_from, mask, last)) = self.pending[node].as_mut() {
            if *last_from == from && wire::same_broadcast(last, &command) {
                *mask |= to.bit();
                return;
            }
        }
        self.flush_pending(node);
        self.pending[node] = Some((from, to.bit(), command));
    }

    /// Takes the NATS server's `max_payload` (0: not known yet) as the bound on a batch.
    fn set_max_payload(&mut self, max_payload: usize) {
        if max_payload == 0 {
            return;
        }
        let limit = max_payload.min(BATCH_BYTES_MAX);
        if limit != self.batch_limit {
            tracing::info!(
                max_payload,
                batch_limit = limit,
                "cluster: the NATS server's max_payload"
            );
            self.batch_limit = limit;
        }
        self.health.max_payload.store(max_payload as u64, Ordering::Relaxed);
    }

    /// Encodes node `node`'s last frame into its batch. A frame that would take the batch
    /// over `batch_limit` starts the next batch; one over it on its own is dropped, counted
    /// and its asker refused (the other commands of the batch still go).
    fn flush_pending(&mut self, node: usize) {
        let Some((from, mask, command)) = self.pending[node].take() else {
            return;
        };
        let batch = &mut self.batches[node];
        if batch.is_empty() {
            batch.extend_from_slice(&self.header);
        }
        let start = batch.len();
        if !wire::encode_frame(batch, from, mask, &command) {
            tracing::warn!(?command, "cluster: a command that does not cross nodes");
            crate::metrics::inc(&self.health.dropped_total);
            return;
        }
        if batch.len() <= self.batch_limit {
            return;
        }
        let frame = batch.split_off(start);
        let alone = self.header.len() + frame.len();
        if alone > self.batch_limit {
            if start == self.header.len() {
                batch.clear();
            }
            crate::metrics::inc(&self.health.oversized_total);
            tracing::warn!(
                bytes = alone,
                limit = self.batch_limit,
                "cluster: a command over the NATS server's max_payload is not sent"
            );
            let refusal = Refusal::MessageTooLarge(format!(
                "{alone} bytes between nodes; the cluster's NATS server takes at most {}",
                self.batch_limit
            ));
            match command {
                Command::Response { token, .. } => {
                    // Its asker waits for an answer: the refusal goes instead.
                    let to = ShardId(mask.trailing_zeros() as usize);
                    let response = Response::Refused(refusal);
                    self.route(to, to, Command::Response { token, response });
                }
                command => self.refuse(command, refusal),
            }
            return;
        }
        // `start` is past the header here: the batch held other frames, which go first.
        let mut next = Vec::with_capacity(alone);
        next.extend_from_slice(&self.header);
        next.extend_from_slice(&frame);
        let full = std::mem::replace(batch, next);
        self.sealed.push((node, full));
    }

    /// What a down node would never answer (or a command too large to send), answered at
    /// once with `refusal` (the rest dropped: the node learns the state again when it comes
    /// back, `Command::NodeUp`).
    fn refuse(&mut self, command: Command, refusal: Refusal) {
        let refusal = Response::Refused(refusal);
        let (to, token) = match command {
            Command::Request { from, token, .. } | Command::Barrier { from, token } => {
                (from, token)
            }
            Command::SettleAttach { from, base, .. } => {
                (from, base + self.topology.global_count() as u64)
            }
            _ => return,
        };
        // The asker: a local shard, or a shard of another node (a relayed barrier's).
        self.route(to, to, Command::Response { token, response: refusal });
    }

    /// Publishes every node's batch (the sealed ones first, in order).
    async fn publish(&mut self, client: &async_nats::Client, subjects: &[String]) {
        for node in 0..self.batches.len() {
            self.flush_pending(node);
        }
        let mut sealed = std::mem::take(&mut self.sealed);
        for (node, batch) in sealed.drain(..) {
            self.publish_one(client, subjects, node, batch).await;
        }
        self.sealed = sealed;
        for node in 0..self.batches.len() {
            if self.batches[node].is_empty() {
                continue;
            }
            let batch = std::mem::take(&mut self.batches[node]);
            self.publish_one(client, subjects, node, batch).await;
        }
    }

    async fn publish_one(
        &self,
        client: &async_nats::Client,
        subjects: &[String],
        node: usize,
        batch: Vec<u8>,
    ) {
        let Some(subject) = subjects.get(node) else {
            return;
        };
        crate::metrics::inc(&self.health.published_total);
        crate::metrics::add(&self.health.bytes_out_total, batch.len() as u64);
        if client.publish(subject.clone(), Bytes::from(batch)).await.is_err() {
            crate::metrics::inc(&self.health.publish_errors_total);
        }
    }
}

/// Whether every shard id inside `command` names a shard of the cluster (a peer's bytes
/// index the owners' arrays).
fn shards_in_range(command: &Command, global: usize) -> bool {
    match command {
        Command::Request { from, .. }
        | Command::Barrier { from, .. }
        | Command::SettleAttach { from, .. }
        | Command::UserAttach { shard: from, .. }
        | Command::UserDetach { shard: from, .. } => from.0 < global,
        _ => true,
    }
}
