//! Fan-out without sockets: one pre-rendered `Bytes` frame queued on 10 000 subscribers by
//! iterating `roomcast::fanout::Subscriptions::topic`, mimicking `Shard::deliver`
//! (slab lookup per key, `Bundle::frame_for`, `Bytes::clone` into the connection's
//! `VecDeque<Bytes>` with a byte budget check). The queues are drained between iterations
//! (outside the timing), as the writers would. Also: the same with all connections in one room
//! vs 10 rooms x 1 000.
//!
//! `cargo bench --bench fanout -- --warm-up-time 1 --measurement-time 3`

use std::cell::RefCell;
use std::collections::VecDeque;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use roomcast::dialect::{virola, DialectId};
use roomcast::fanout::{Bundle, Subscriptions};
use roomcast::model::{RoomId, UserId};
use roomcast::ws::frame;
use slab::Slab;

/// What `Shard::deliver` touches of a connection: its dialect, user and outbound queue.
struct FakeConn {
    dialect: DialectId,
    user: UserId,
    out: RefCell<Out>,
}

#[derive(Default)]
struct Out {
    frames: VecDeque<Bytes>,
    bytes: usize,
    flushing: bool,
}

const OUTBOUND_MAX: usize = 1 << 20;

fn setup(conns: usize, rooms: u64) -> (Slab<FakeConn>, Subscriptions) {
    let mut slab = Slab::with_capacity(conns);
    let mut subs = Subscriptions::default();
    for i in 0..conns {
        let user = UserId::new(&format!("u{i}"));
        let key = slab.insert(FakeConn {
            dialect: virola::ID,
            user: user.clone(),
            out: RefCell::new(Out::default()),
        });
        subs.add_conn(&user, key);
        subs.subscribe(RoomId(i as u64 % rooms), &user);
    }
    (slab, subs)
}

/// `Shard::deliver` minus the socket writer spawn: returns the deliveries made.
fn deliver(slab: &Slab<FakeConn>, subs: &Subscriptions, room: RoomId, bundle: &Bundle) -> u64 {
    let mut delivered = 0;
    for key in subs.topic(room) {
        if let Some(conn) = slab.get(*key) {
            if let Some(frame) = bundle.frame_for(conn.dialect, &conn.user, 0) {
                let mut out = conn.out.borrow_mut();
                if out.bytes + frame.len() > OUTBOUND_MAX {
                    continue;
                }
                out.bytes += frame.len();
                out.frames.push_back(frame.clone());
                if !out.flushing {
                    out.flushing = true; // the real server spawns the writer task here
                }
                delivered += 1;
            }
        }
    }
    delivered
}

fn drain(slab: &Slab<FakeConn>) {
    for (_, conn) in slab.iter() {
        let mut out = conn.out.borrow_mut();
        out.frames.clear();
        out.bytes = 0;
        out.flushing = false;
    }
}

fn bench(c: &mut Criterion) {
    let text = format!(
        "{{\"type\":\"TextMessagesCreated\",\"data\":{{\"messages\":[{{\"text\":\"{}\"}}]}}}}",
        "x".repeat(64)
    );
    let mut bundle = Bundle::default();
    bundle.frames[virola::ID.index()] = Some(frame::text(text.as_bytes()));

    let mut group = c.benchmark_group("fanout_queue");
    for (name, rooms) in [("1_room_x_10000", 1u64), ("10_rooms_x_1000_all", 10)] {
        let (slab, subs) = setup(10_000, rooms);
        group.throughput(Throughput::Elements(10_000));
        group.bench_function(name, |b| {
            b.iter_batched(
                || drain(&slab),
                |()| {
                    let mut n = 0;
                    for room in 0..rooms {
                        n += deliver(&slab, &subs, RoomId(room), &bundle);
                    }
                    assert_eq!(n, 10_000);
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// The allocator the server binary uses (src/main.rs), so allocation costs match.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

criterion_group!(benches, bench);
criterion_main!(benches);
