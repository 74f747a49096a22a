//! permessage-deflate on a realistic chat frame: a Virola `TextMessagesCreated` frame of about
//! 300 payload bytes (a 150-character English message), rendered by
//! `roomcast::dialect::virola::render::render`.
//!
//! - `deflate/compress_frame_300B`: `roomcast::ws::deflate::compress_frames` of that frame (what
//!   the first deflate recipient of a bundle pays, once per event and dialect);
//! - `deflate/inflate_300B`: `roomcast::ws::deflate::inflate` of its compressed payload (what a
//!   client, or the server for a client message of that size, pays);
//! - `deflate/deliver_100_{plain,deflate}`: `roomcast::fanout::deliver` of a fresh bundle to 100
//!   recipients, plain or all deflate (compression included: one per bundle), so the difference
//!   divided by 100 is the compression's CPU per delivery.
//!
//! The frame sizes and their ratio are printed first. `cargo bench --bench deflate --
//! --warm-up-time 1 --measurement-time 3`

use std::cell::Cell;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use roomcast::dialect::{virola, DialectId};
use roomcast::fanout::{self, Bundle, Recipient};
use roomcast::model::{Event, Message, MessageId, RoomId, Seq, UserId};
use roomcast::ws::deflate::{compress_frames, inflate};
use roomcast::ws::frame;
use std::hint::black_box;

const NOW: u64 = 1_795_000_000_000;
const THRESHOLD: usize = 128;

fn chat_frame() -> Bytes {
    let message = Message {
        id: MessageId(4_294_967_311),
        seq: Seq(1234),
        room: RoomId(17),
        author: UserId::new("u1234"),
        text: "Build 1.4.2 is green on every platform; the artifacts are uploaded. Please \
               check the changelog before we tag it tomorrow at 10:00. Thanks, everyone!"
            .into(),
        parent_id: MessageId(0),
        client_message_id: None,
        kind: "Regular".into(),
        attachments: "[]".into(),
        attributes: "{}".into(),
        comment_count: 0,
        created_ms: NOW,
        edited_ms: NOW,
        modified_ms: NOW,
        deleted_ms: None,
    };
    virola::render::render(&Event::MessageCreated(Arc::new(message)), false)
}

/// A recipient that counts what it is handed (the queue push is the same for both kinds).
struct Counter {
    deflate: bool,
    user: UserId,
    bytes: Cell<usize>,
}

impl Recipient for Counter {
    fn dialect(&self) -> DialectId {
        virola::ID
    }

    fn user(&self) -> &UserId {
        &self.user
    }

    fn flags(&self) -> u8 {
        0
    }

    fn deflate_threshold(&self) -> Option<usize> {
        self.deflate.then_some(THRESHOLD)
    }

    fn queue(&self, frame: Bytes) {
        self.bytes.set(self.bytes.get() + frame.len());
    }
}

fn bench(c: &mut Criterion) {
    let plain = chat_frame();
    let compressed = compress_frames(&plain, THRESHOLD, 15);
    let payload = frame::payload(&plain).len();
    let deflated = frame::payload(&compressed);
    eprintln!(
        "Virola TextMessagesCreated: payload {payload} B, frame {} B plain, {} B compressed \
         (payload {} B): {:.2} of the plain frame",
        plain.len(),
        compressed.len(),
        deflated.len(),
        compressed.len() as f64 / plain.len() as f64
    );
    // CPU time (this thread's), which a loaded machine does not inflate as it does wall time.
    let render = || {
        let message = chat_frame();
        black_box(message);
    };
    eprintln!("CPU per op (thread CPU time, 20 000 ops each):");
    eprintln!("  render the Virola frame: {:.2} us", cpu_us(render));
    eprintln!(
        "  compress_frames: {:.2} us",
        cpu_us(|| {
            black_box(compress_frames(black_box(&plain), THRESHOLD, 15));
        })
    );
    eprintln!(
        "  inflate: {:.2} us",
        cpu_us(|| {
            let _ = black_box(inflate(black_box(deflated), 1 << 16));
        })
    );
    // What the level and the window cost on this frame (flate2 on zlib-rs, reset per message).
    let payload_bytes = frame::payload(&plain).to_vec();
    for (level, bits) in [(1, 9), (1, 15), (6, 9), (6, 15), (9, 15)] {
        let mut c =
            flate2::Compress::new_with_window_bits(flate2::Compression::new(level), false, bits);
        let mut out = Vec::with_capacity(4096);
        let us = cpu_us(|| {
            c.reset();
            out.clear();
            let _ = c.compress_vec(&payload_bytes, &mut out, flate2::FlushCompress::Sync);
        });
        eprintln!(
            "  level {level}, window 2^{bits}: {us:.2} us, {} B",
            out.len().saturating_sub(4)
        );
    }
    c.bench_function("deflate/compress_frame_300B", |b| {
        b.iter(|| compress_frames(black_box(&plain), THRESHOLD, 15))
    });
    c.bench_function("deflate/inflate_300B", |b| b.iter(|| inflate(black_box(deflated), 1 << 16)));

    for deflate in [false, true] {
        let conns: Vec<Counter> = (0..100)
            .map(|i| Counter { deflate, user: UserId::new(&format!("u{i}")), bytes: Cell::new(0) })
            .collect();
        let keys: Vec<usize> = (0..conns.len()).collect();
        let name =
            if deflate { "deflate/deliver_100_deflate" } else { "deflate/deliver_100_plain" };
        c.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let mut bundle = Bundle::default();
                    bundle.frames[virola::ID.index()] = Some(plain.clone());
                    bundle
                },
                |bundle| fanout::deliver(&keys, |k| conns.get(k), black_box(&bundle)),
                BatchSize::SmallInput,
            )
        });
    }
}

/// This thread's CPU time per call of `f`, in µs, over 20 000 calls.
fn cpu_us(mut f: impl FnMut()) -> f64 {
    let now = || {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes the timespec we pass.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        ts.tv_sec as f64 * 1e6 + ts.tv_nsec as f64 / 1e3
    };
    for _ in 0..1000 {
        f();
    }
    let start = now();
    for _ in 0..20_000 {
        f();
    }
    (now() - start) / 20_000.0
}

/// The allocator the server binary uses (src/main.rs), so allocation costs match.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

criterion_group!(benches, bench);
criterion_main!(benches);
