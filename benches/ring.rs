//! The mesh's SPSC ring: rtrb with 4096 slots (roomcast's default `--ring-slots`), one producer
//! thread pushing and one consumer thread popping, 64-bit items. Reports the time per item
//! moved across the two threads (busy-spinning on full/empty; no doorbells). On a 2-core machine
//! shared with the benchmark harness the two threads may land on the same core, so this is an
//! upper bound of the real cost.
//!
//! `cargo bench --bench ring -- --warm-up-time 1 --measurement-time 3`

use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rtrb::RingBuffer;

const SLOTS: usize = 4096;

/// Moves `n` items through a fresh ring from a producer thread to this thread.
fn transfer(n: u64) -> Duration {
    let (mut tx, mut rx) = RingBuffer::<u64>::new(SLOTS);
    let start = Instant::now();
    let producer = thread::spawn(move || {
        let mut i = 0u64;
        while i < n {
            if tx.push(i).is_ok() {
                i += 1;
            } else {
                std::hint::spin_loop();
            }
        }
    });
    let mut expected = 0u64;
    while expected < n {
        match rx.pop() {
            Ok(v) => {
                debug_assert_eq!(v, expected);
                expected += 1;
            }
            Err(_) => std::hint::spin_loop(),
        }
    }
    let elapsed = start.elapsed();
    producer.join().expect("producer");
    elapsed
}

/// Pushes and pops on one thread (no cache-line transfer): the ring's own cost.
fn same_thread(n: u64) -> Duration {
    let (mut tx, mut rx) = RingBuffer::<u64>::new(SLOTS);
    let start = Instant::now();
    for i in 0..n {
        tx.push(i).expect("room");
        std::hint::black_box(rx.pop().expect("item"));
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("rtrb_spsc_4096");
    const BATCH: u64 = 100_000;
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("two_threads_100k_items", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| transfer(BATCH)).sum())
    });
    group.bench_function("one_thread_100k_items", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| same_thread(BATCH)).sum())
    });
    group.finish();
}

/// The allocator the server binary uses (src/main.rs), so allocation costs match.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

criterion_group!(benches, bench);
criterion_main!(benches);
