//! Starting and stopping the server: one pinned OS thread per shard, each running one
//! single-threaded tokio-uring runtime with its own `SO_REUSEPORT` listener on the same port
//! (claimed through `net::bind`, which refuses an address another server holds).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::io::unix::AsyncFd;

use crate::auth::Verifier;
use crate::config::Config;
use crate::limits::{
    LOOP_HEARTBEAT_PERIOD, TOKEN_CACHE_MAX, URING_CQ_ENTRIES, URING_SQ_ENTRIES, WS_FIXED_FILES,
    WS_RECV_BUFFERS, WS_RECV_BUFFER_BYTES, WS_URING_CQ_ENTRIES, WS_URING_SQ_ENTRIES,
};
use crate::mesh::{self, Doorbell, MeshEndpoint};
use crate::metrics::{Registry, ShardMetrics};
use crate::model::ShardId;

use super::{inbox, owner, Shard};

/// A running server: its address, and the means to stop it.
pub struct ServerHandle {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Number of shards.
    pub shard_count: usize,
    stop: Arc<AtomicBool>,
    doorbells: Arc<Vec<Doorbell>>,
    threads: Vec<JoinHandle<()>>,
    metrics: Vec<Arc<ShardMetrics>>,
    /// The TLS certificates, when the listener speaks TLS.
    tls: Option<Arc<crate::tls::Certificates>>,
    /// The NATS thread and its own stop flag: it stops after the shards (their drain still
    /// talks to other nodes).
    cluster: Option<(JoinHandle<()>, Arc<AtomicBool>)>,
}

/// Whether every shard's loop is running: read from any thread (the systemd watchdog).
#[derive(Clone)]
pub struct Health {
    metrics: Vec<Arc<ShardMetrics>>,
}

impl Health {
    /// True when every shard's loop ran its heartbeat within `within_ms` (a shard that has not
    /// yet counts from `started_ms`).
    pub fn loops_alive(&self, within_ms: u64, started_ms: u64) -> bool {
        let now = crate::model::ids::now_ms();
        self.metrics.iter().all(|m| {
            let beat = m.loop_heartbeat_ms.load(Ordering::Relaxed).max(started_ms);
            now.saturating_sub(beat) <= within_ms
        })
    }
}

impl ServerHandle {
    /// Asks every shard to close its connections with 1001 and stop.
    pub fn trigger_shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        for doorbell in self.doorbells.iter() {
            doorbell.ring_always();
        }
    }

    /// The shards' liveness, for a watchdog thread.
    pub fn health(&self) -> Health {
        Health { metrics: self.metrics.clone() }
    }

    /// Reads the TLS certificate files again (on SIGHUP): new connections get them, open ones
    /// keep theirs; an error keeps the previous certificates. `Ok(false)` without TLS.
    pub fn reload_tls(&self) -> Result<bool, String> {
        match &self.tls {
            Some(certificates) => certificates.reload().map(|()| true),
            None => Ok(false),
        }
    }

    /// Stops the server and waits for every shard thread to end.
    pub fn shutdown(self) {
        self.trigger_shutdown();
        self.join();
    }

    /// Waits for every shard thread to end (after `trigger_shutdown`), then for the NATS
    /// thread, which flushes what the shards sent last.
    pub fn join(mut self) {
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        if let Some((thread, stop)) = self.cluster.take() {
            stop.store(true, Ordering::Release);
            let _ = thread.join();
        }
    }
}

/// What the server holds for as long as any shard thread runs: the listen address's lock and
/// the data directory's lock. Each shard thread keeps a clone; the last one to end frees both.
struct Held {
    _address: crate::net::bind::AddressLock,
    _data_dir: crate::store::DataDirLock,
}

/// Starts every shard and returns once all listen.
///
/// The order makes a refused start harmless: the listen address is claimed first (refused when
/// another server holds it, before the data directory is touched), then the data directory is
/// created if absent and locked (refused when another server holds it); a start that fails after
/// creating the directory removes it again.
pub fn start(config: Config) -> Result<ServerHandle, String> {
    config.validate()?;
    // Before anything is claimed or created: a bad certificate leaves no trace.
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::Certificates::load(cert, key)?),
        _ => None,
    };
    let shard_count = config.shard_count();
    let claimed = crate::net::bind::claim(config.listen, shard_count)?;
    let layout =
        crate::store::Layout { shards: shard_count, nodes: config.nodes, node: config.node };
    let (dir_lock, created) =
        crate::store::open_data_dir(&config.data_dir, layout).map_err(|e| e.to_string())?;
    let addr = claimed.addr;
    let (address_lock, sockets) = (claimed.lock, claimed.sockets);
    let held = Arc::new(Held { _address: address_lock, _data_dir: dir_lock });
    let started = start_shards(config, addr, sockets, &held, tls);
    if started.is_err() {
        // Still holding the lock: nobody else can be using what is removed.
        created.remove();
    }
    started
}

/// Everything after the address and the data directory are held: keys, stores, shard threads.
fn start_shards(
    config: Config,
    addr: SocketAddr,
    sockets: crate::net::bind::Sockets,
    held: &Arc<Held>,
    tls: Option<Arc<crate::tls::Certificates>>,
) -> Result<ServerHandle, String> {
    let (settings, created) =
        crate::config::auth_settings(&config).map_err(|e| format!("jwt keys: {e}"))?;
    if created {
        tracing::info!(
            "generated a new JWT secret in {}",
            config.data_dir.join(crate::auth::SECRET_FILE_NAME).display()
        );
    }
    let verifier = Arc::new(Verifier::new(&settings).map_err(|e| format!("jwt keys: {e}"))?);
    let console_mint: Option<Arc<[u8]>> =
        settings.hs256_secret.as_deref().filter(|_| config.console_mint).map(Arc::from);
    let local_count = config.shard_count();
    let topology = crate::cluster::Topology {
        node: config.node,
        nodes: if config.clustered() { config.nodes } else { 1 },
        shards: local_count,
    };
    // Rooms, users and ids hash over every node's shards; this node runs `local_count`.
    let shard_count = topology.global_count();
    let config = Arc::new(config);
    let mesh::Built { mut endpoints, doorbells, gauges: rings } =
        mesh::build_for(topology, config.ring_slots).map_err(|e| e.to_string())?;
    let cluster = config.clustered().then(|| {
        let health = Arc::new(crate::cluster::Health::new(topology.node, topology.nodes));
        let (links, parts) =
            crate::cluster::node::links(topology, config.ring_slots, health.clone());
        for (endpoint, link) in endpoints.iter_mut().zip(links) {
            endpoint.link_remote(link);
        }
        (health, parts)
    });
    let metrics: Vec<Arc<ShardMetrics>> = (0..local_count).map(|_| Arc::default()).collect();
    let registry = Arc::new(Registry {
        shards: metrics.clone(),
        rings,
        cluster: cluster.as_ref().map(|(health, _)| health.clone()),
        first_shard: topology.global(0).0,
    });
    let mut stores = Vec::with_capacity(local_count);
    let mut revoked: Vec<crate::store::RevokedRecord> = Vec::new();
    for local in 0..local_count {
        let id = topology.global(local).0;
        let bells = doorbells.clone();
        let wake: crate::store::Wake = Arc::new(move || bells[local].ring());
        let (store, recovered) = crate::store::Store::open(
            &config.data_dir,
            id,
            shard_count,
            config.durability,
            (config.history_per_room_max, config.history_bytes_per_room_max),
            config.ring_slots,
            wake,
        )
        .map_err(|e| e.to_string())?;
        revoked.extend(recovered.revoked.iter().cloned());
        let mut recovered = recovered;
        let dialect_records = std::mem::take(&mut recovered.dialect_records);
        let (owned, memberships) = super::persist::recover(
            ShardId(id),
            shard_count,
            recovered,
            (config.history_per_room_max, config.history_bytes_per_room_max),
            config.members_per_room_max,
        );
        stores.push((store, owned, memberships, dialect_records));
    }
    let mut owned: Vec<&mut owner::Owned> = stores.iter_mut().map(|s| &mut s.1).collect();
    super::persist::index_direct_rooms(&mut owned, topology);
    // Ready: the sockets bound at the start listen from now on.
    let listeners = sockets.listen(addr)?;
    let stop = Arc::new(AtomicBool::new(false));
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let mut handle = ServerHandle {
        addr,
        shard_count: local_count,
        stop: stop.clone(),
        doorbells,
        threads: Vec::new(),
        metrics: metrics.clone(),
        tls: tls.clone(),
        cluster: None,
    };
    if let Some((_, parts)) = cluster {
        let cluster_stop = Arc::new(AtomicBool::new(false));
        let thread = crate::cluster::node::spawn(
            config.clone(),
            topology,
            parts,
            handle.doorbells.clone(),
            cluster_stop.clone(),
        )
        .map_err(|e| format!("starting the cluster thread: {e}"))?;
        handle.cluster = Some((thread, cluster_stop));
    }
    let shard_inputs = endpoints.into_iter().zip(listeners).zip(stores);
    let now_s = crate::auth::now_unix_s();
    for (local, ((endpoint, listener), (store, owned, memberships, dialect_records))) in
        shard_inputs.enumerate()
    {
        let id = topology.global(local).0;
        // Every shard refuses every logged-out session from its first accept on.
        let mut replica = super::sessions::Revoked::default();
        for record in &revoked {
            replica.insert(&record.sid, record.expires_at, now_s);
        }
        let parts = ShardParts {
            revoked: replica,
            store,
            owned,
            memberships,
            dialect_records,
            id: ShardId(id),
            shard_count,
            topology,
            config: config.clone(),
            verifier: verifier.clone(),
            console_mint: console_mint.clone(),
            metrics: metrics[local].clone(),
            registry: registry.clone(),
            stop: stop.clone(),
            tls: tls.clone(),
        };
        let core = (config.pin_cpus && !cores.is_empty()).then(|| cores[local % cores.len()]);
        let held = held.clone();
        let spawned = std::thread::Builder::new().name(format!("shard-{id}")).spawn(move || {
            let _held = held;
            if let Some(core) = core {
                core_affinity::set_for_current(core);
            }
            // Queues sized for fan-out: the defaults (256 SQ / 512 CQ) overflowed the
            // completion queue about 0.7 times per delivery (perf/RESULTS.md). COOP_TASKRUN:
            // a completion finished on another CPU (a peer's bytes through loopback softirq)
            // no longer interrupts the shard to run its task work, which runs at the shard's
            // next syscall instead (ARCHITECTURE.md, "tokio-uring's ring with COOP_TASKRUN").
            let runtime_ring = |coop: bool| {
                let mut uring = tokio_uring::uring_builder();
                uring.setup_cqsize(URING_CQ_ENTRIES);
                if coop {
                    uring.setup_coop_taskrun();
                }
                let mut builder = tokio_uring::builder();
                builder.entries(URING_SQ_ENTRIES).uring_builder(&uring);
                crate::net::uring::runtime_ring::RuntimeRing::build(&builder, URING_SQ_ENTRIES)
            };
            let built = runtime_ring(true).or_else(|e| {
                // Kernels before 5.19 refuse the flag.
                tracing::warn!(shard = id, "io_uring COOP_TASKRUN refused ({e}); without it");
                runtime_ring(false)
            });
            match built {
                Ok((runtime, ring)) => {
                    runtime.block_on(shard_main(parts, endpoint, listener, ring))
                }
                Err(e) => tracing::error!(shard = id, "shard runtime setup failed: {e}"),
            }
        });
        match spawned {
            Ok(thread) => handle.threads.push(thread),
            Err(e) => {
                // Stop the shards already running before the start reports its failure.
                handle.shutdown();
                return Err(format!("starting shard {id}: {e}"));
            }
        }
    }
    Ok(handle)
}

/// What a shard thread is given to build its `Shard`.
struct ShardParts {
    revoked: super::sessions::Revoked,
    store: crate::store::Store,
    owned: owner::Owned,
    memberships: Vec<(crate::model::UserId, crate::model::RoomId)>,
    dialect_records: Vec<crate::store::DialectRecord>,
    id: ShardId,
    shard_count: usize,
    topology: crate::cluster::Topology,
    config: Arc<Config>,
    verifier: Arc<Verifier>,
    console_mint: Option<Arc<[u8]>>,
    metrics: Arc<ShardMetrics>,
    registry: Arc<Registry>,
    stop: Arc<AtomicBool>,
    tls: Option<Arc<crate::tls::Certificates>>,
}

async fn shard_main(
    parts: ShardParts,
    endpoint: MeshEndpoint,
    listener: std::net::TcpListener,
    runtime_ring: crate::net::uring::runtime_ring::RuntimeRing,
) {
    let registered = endpoint.own_doorbell().try_clone_fd().and_then(|fd| {
        // SAFETY: `fd` is an owned, open eventfd that the AsyncFd owns until it is dropped.
        unsafe { AsyncFd::register(fd) }.map_err(|e| std::io::Error::other(e.to_string()))
    });
    let doorbell = match registered {
        Ok(fd) => fd,
        Err(e) => {
            tracing::error!(shard = parts.id.get(), "doorbell registration failed: {e}");
            return;
        }
    };
    let ring = crate::net::uring::Ring::new(
        parts.metrics.clone(),
        runtime_ring,
        WS_URING_SQ_ENTRIES,
        WS_URING_CQ_ENTRIES,
        WS_RECV_BUFFERS,
        WS_RECV_BUFFER_BYTES,
        WS_FIXED_FILES,
    );
    let ring = match ring {
        Ok(ring) => Rc::new(ring),
        Err(e) => {
            tracing::error!(shard = parts.id.get(), "WebSocket io_uring setup failed: {e}");
            return;
        }
    };
    let writer = Rc::new(crate::net::conn::Writer::new(
        ring.clone(),
        parts.metrics.clone(),
        parts.config.outbound_bytes_max,
        parts.config.deflate_threshold_bytes,
    ));
    writer.install();
    let shard = Rc::new(Shard {
        id: parts.id,
        shard_count: parts.shard_count,
        topology: parts.topology,
        owner: super::OwnerSide::new(parts.owned, parts.store),
        dialects: crate::dialect::DIALECTS.iter().map(|d| RefCell::new(d.shard_state())).collect(),
        config: parts.config,
        verifier: parts.verifier,
        console_mint: parts.console_mint,
        metrics: parts.metrics,
        registry: parts.registry,
        stop: parts.stop,
        tls: parts.tls.map(crate::tls::ShardTls::new),
        mesh: RefCell::new(endpoint),
        inbox: RefCell::new(VecDeque::new()),
        inbox_wake: tokio::sync::Notify::new(),
        retry_running: Cell::new(false),
        retry_wake: tokio::sync::Notify::new(),
        pending: RefCell::new(std::collections::HashMap::new()),
        next_call_token: Cell::new(0),
        remote_pending: RefCell::new(std::collections::HashMap::new()),
        conn: super::ConnSide::new(
            crate::net::ws_session::Sessions::new(ring),
            writer.clone(),
            parts.revoked,
            crate::auth::TokenCache::new(TOKEN_CACHE_MAX),
        ),
        shutting_down: Cell::new(false),
        shutdown_wake: tokio::sync::Notify::new(),
        requests_in_flight: Cell::new(0),
        drained_from: [Cell::new(0), Cell::new(0)],
    });
    shard.metrics.rooms.store(shard.owner.owned.borrow().rooms.len() as u64, Ordering::Relaxed);
    // Each dialect gets its own records back before anything is accepted.
    let mut by_dialect: Vec<Vec<crate::store::DialectRecord>> =
        crate::dialect::DialectId::all().map(|_| Vec::new()).collect();
    for record in parts.dialect_records {
        match by_dialect.get_mut(usize::from(record.dialect)) {
            Some(records) => records.push(record),
            None => tracing::warn!(
                shard = shard.id.get(),
                dialect = record.dialect,
                "skipping a stored record of an unknown dialect"
            ),
        }
    }
    for (dialect, records) in crate::dialect::DialectId::all().zip(by_dialect) {
        dialect.get().recovered(&shard, records);
    }
    for (user, room) in parts.memberships {
        let owner = crate::model::ids::shard_of_user(&user, shard.shard_count);
        shard.send(owner, crate::mesh::Command::RoomJoined { user, room });
    }
    tokio_uring::spawn(inbox::run(shard.clone(), doorbell));
    tokio_uring::spawn(shard.clone().retry_parked());
    tokio_uring::spawn(crate::net::sweeper::run(shard.clone()));
    tokio_uring::spawn(heartbeat(shard.clone()));
    tokio_uring::spawn(writer.run());
    tokio_uring::spawn(crate::net::ws_session::run(shard.clone()));
    crate::net::listener::accept_loop(shard.clone(), listener).await;
    super::drain::drain(&shard).await;
}

/// Records every [`LOOP_HEARTBEAT_PERIOD`] that the shard's loop runs (`loop_heartbeat_ms`),
/// and gives back to the system the memory freed by a burst of connections opening or closing
/// once the shard's connection count stops moving ([`release_freed_memory`]).
async fn heartbeat(shard: Rc<Shard>) {
    let mut last_count = shard.metrics.connections.load(Ordering::Relaxed);
    // Quiet beats left to collect on: two, since the first collect's freed pages are purged
    // only by a later call once their delay has passed.
    let mut collects = 0u8;
    loop {
        let now = crate::model::ids::now_ms();
        shard.metrics.loop_heartbeat_ms.store(now, Ordering::Relaxed);
        let count = shard.metrics.connections.load(Ordering::Relaxed);
        if count != last_count {
            (last_count, collects) = (count, 2);
        } else if collects > 0 {
            collects -= 1;
            release_freed_memory();
        }
        tokio::time::sleep(LOOP_HEARTBEAT_PERIOD).await;
    }
}

/// mimalloc returns a thread's freed pages to the system (purges them, after its
/// `purge_delay`) only from within that thread's own allocator calls: a shard that goes idle
/// after a connect storm kept the pages its HTTP phase had freed (the upgrades' tasks and
/// buffers): about 1 MB at 1 000 connections (perf/RESULTS.md, idle memory, session 8).
/// `mi_collect(true)` frees this thread's empty pages (full ones' freed blocks included) and
/// purges every free range at once; it walks the thread's pages (a few hundred for tens of MB),
/// so the heartbeat calls it only after a burst, on the first two beats the connection count
/// did not move, never in steady traffic. Nothing to do with the system allocator
/// (`--features system-alloc`).
fn release_freed_memory() {
    #[cfg(not(feature = "system-alloc"))]
    // SAFETY: `mi_collect` only walks the calling thread's own heap; callable at any time.
    unsafe {
        libmimalloc_sys::mi_collect(true)
    };
}

impl Shard {
    /// Stops accepting and wakes everything that waits for shutdown.
    pub fn begin_shutdown(&self) {
        self.shutting_down.set(true);
        self.shutdown_wake.notify_waiters();
    }
}
