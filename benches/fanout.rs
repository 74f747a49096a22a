//! Fan-out without sockets: one pre-rendered `Bytes` frame handed to 10 000 subscribers by
//! `roomcast::fanout::deliver`, the loop `Shard::deliver` runs, over the keys of
//! `roomcast::fanout::Subscriptions::topic` (slab lookup per key, `Bundle::frame_for`,
//! `Bytes::clone` queued on the recipient). The bench's recipient implements
//! `fanout::Recipient` with what `Conn::send` does minus the metrics and the writer: a
//! `VecDeque<Bytes>` behind a byte budget check, and a "scheduled" flag set on the first frame.
//! The queues are drained between iterations (outside the timing), as the writer would. Both
//! with all connections in one room and in 10 rooms x 1 000.
//!
//! `cargo bench --bench fanout -- --warm-up-time 1 --measurement-time 3`

use std::cell::RefCell;
use std::collections::VecDeque;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use roomcast::dialect::{virola, DialectId};
use roomcast::fanout::{self, Bundle, Recipient, Subscriptions};
use roomcast::model::{RoomId, UserId};
use roomcast::ws::frame;
use slab::Slab;

/// What delivery touches of a connection: its dialect, user, flags and outbound queue.
struct BenchConn {
    dialect: DialectId,
    user: UserId,
    out: RefCell<Out>,
}

#[derive(Default)]
struct Out {
    frames: VecDeque<Bytes>,
    bytes: usize,
    scheduled: bool,
}

/// `outbound_bytes_max`'s default.
const OUTBOUND_MAX: usize = 1 << 20;

impl Recipient for BenchConn {
    #[inline]
    fn dialect(&self) -> DialectId {
        self.dialect
    }

    #[inline]
    fn user(&self) -> &UserId {
        &self.user
    }

    #[inline]
    fn flags(&self) -> u8 {
        0
    }

    #[inline]
    fn queue(&self, frame: Bytes) {
        let mut out = self.out.borrow_mut();
        if out.bytes + frame.len() > OUTBOUND_MAX {
            return; // the server closes the connection as a slow consumer here
        }
        out.bytes += frame.len();
        out.frames.push_back(frame);
        if !out.scheduled {
            out.scheduled = true; // the server puts the connection on the writer's list here
        }
    }
}

fn setup(conns: usize, rooms: u64) -> (Slab<BenchConn>, Subscriptions) {
    let mut slab = Slab::with_capacity(conns);
    let mut subs = Subscriptions::default();
    for i in 0..conns {
        let user = UserId::new(&format!("u{i}"));
        let key = slab.insert(BenchConn {
            dialect: virola::ID,
            user: user.clone(),
            out: RefCell::new(Out::default()),
        });
        subs.add_conn(&user, key);
        subs.subscribe(RoomId(i as u64 % rooms), &user);
    }
    (slab, subs)
}

fn drain(slab: &Slab<BenchConn>) {
    for (_, conn) in slab.iter() {
        let mut out = conn.out.borrow_mut();
        out.frames.clear();
        out.bytes = 0;
        out.scheduled = false;
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
                        n += fanout::deliver(subs.topic(RoomId(room)), |k| slab.get(k), &bundle);
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
