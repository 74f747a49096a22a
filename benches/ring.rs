//! The mesh: `roomcast::mesh::MeshEndpoint::send` / `drain` between two endpoints of a 2-shard
//! mesh built by `mesh::build` with 4096 slots per ring (roomcast's default `--ring-slots`),
//! carrying the real `mesh::Command::Deliver { room, bundle: Arc<Bundle> }` (one `Arc` clone
//! per send, dropped by the consumer, as a shard's inbox does after handling it).
//!
//! - `two_threads_100k_items`: shard 0's endpoint sends from a producer thread (a send that
//!   finds the ring full parks the command, and the producer spins on `retry_parked`, as the
//!   shard's retry task does); shard 1's endpoint drains on this thread in batches of at most
//!   1024 and disarms its doorbell each time it finds the rings empty (as the inbox task does on
//!   each wake-up), so the producer's doorbell `ring` writes the eventfd at most once per such
//!   pass. Busy-spinning, no waiting on the eventfd. Reports the time per command moved; on a
//!   2-core machine shared with the harness the two threads may land on the same core, so this
//!   is an upper bound of the real cost.
//! - `one_thread_100k_items`: one send then one drain on this thread (no cache-line transfer;
//!   the doorbell is rung once and never disarmed): the endpoints' own cost.
//!
//! `cargo bench --bench ring -- --warm-up-time 1 --measurement-time 3`

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use roomcast::fanout::Bundle;
use roomcast::mesh::{self, Command, MeshEndpoint};
use roomcast::model::{RoomId, ShardId};

const SLOTS: usize = 4096;
/// Commands taken from each ring per drain (the inbox task's `DRAIN_BUDGET`).
const DRAIN_BUDGET: usize = 1024;

/// A fresh 2-shard mesh: shard 0's endpoint and shard 1's.
fn endpoints() -> (MeshEndpoint, MeshEndpoint) {
    let mut built = mesh::build(2, SLOTS).expect("eventfds");
    let one = built.endpoints.pop().expect("shard 1");
    let zero = built.endpoints.pop().expect("shard 0");
    (zero, one)
}

fn deliver(room: u64, bundle: &Arc<Bundle>) -> Command {
    Command::Deliver { room: RoomId(room), bundle: bundle.clone() }
}

/// Moves `n` commands from shard 0's endpoint on a producer thread to shard 1's on this one.
fn transfer(n: u64, bundle: &Arc<Bundle>) -> Duration {
    let (mut tx, mut rx) = endpoints();
    let mut batch = Vec::with_capacity(DRAIN_BUDGET);
    let producer_bundle = bundle.clone();
    let start = Instant::now();
    let producer = thread::spawn(move || {
        for room in 0..n {
            if !tx.send(ShardId(1), deliver(room, &producer_bundle)) {
                while tx.retry_parked() > 0 {
                    std::hint::spin_loop();
                }
            }
        }
    });
    let mut received = 0u64;
    while received < n {
        rx.own_doorbell().disarm();
        loop {
            let got = rx.drain(&mut batch, DRAIN_BUDGET);
            if got == 0 {
                break;
            }
            debug_assert!(
                matches!(batch[0], Command::Deliver { room, .. } if room == RoomId(received))
            );
            received += got as u64;
            batch.clear();
        }
        std::hint::spin_loop();
    }
    let elapsed = start.elapsed();
    producer.join().expect("producer");
    elapsed
}

/// Sends and drains on one thread, one command at a time.
fn same_thread(n: u64, bundle: &Arc<Bundle>) -> Duration {
    let (mut tx, mut rx) = endpoints();
    let mut batch = Vec::with_capacity(DRAIN_BUDGET);
    let start = Instant::now();
    for room in 0..n {
        assert!(tx.send(ShardId(1), deliver(room, bundle)), "room in the ring");
        assert_eq!(rx.drain(&mut batch, DRAIN_BUDGET), 1);
        std::hint::black_box(&batch);
        batch.clear();
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let bundle = Arc::new(Bundle::default());
    let mut group = c.benchmark_group("mesh_endpoint_4096");
    const BATCH: u64 = 100_000;
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("two_threads_100k_items", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| transfer(BATCH, &bundle)).sum())
    });
    group.bench_function("one_thread_100k_items", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| same_thread(BATCH, &bundle)).sum())
    });
    group.finish();
}

/// The allocator the server binary uses (src/main.rs), so allocation costs match.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

criterion_group!(benches, bench);
criterion_main!(benches);
