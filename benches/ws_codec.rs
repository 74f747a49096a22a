//! WebSocket codec: decoding one masked client text frame (100 B and 4 KiB payloads) with
//! `roomcast::ws::Decoder`, and encoding one server text frame with `roomcast::ws::frame::text`.
//!
//! `cargo bench --bench ws_codec -- --warm-up-time 1 --measurement-time 3`

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use roomcast::ws::{apply_mask, frame, Decoder, Incoming, WsLimits};
use std::hint::black_box;

/// A masked, FIN-set client text frame carrying `len` bytes of ASCII.
fn masked_text_frame(len: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![0x81u8];
    match len {
        0..=125 => out.push(0x80 | len as u8),
        126..=65535 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    let start = out.len();
    out.extend_from_slice(&payload);
    apply_mask(&mut out[start..], key);
    out
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("ws_decode_masked_text");
    for (name, len) in [("100B", 100usize), ("4KiB", 4096)] {
        let wire = masked_text_frame(len);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(name, |b| {
            let mut decoder = Decoder::new(WsLimits::default());
            // The frame is copied into a fresh buffer per iteration (the decoder unmasks in
            // place and consumes the bytes), as a read into a connection's buffer would.
            b.iter_batched_ref(
                || BytesMut::from(&wire[..]),
                |buf| match decoder.decode(buf) {
                    Ok(Some(Incoming::Text(t))) => black_box(t.len()),
                    other => panic!("unexpected {other:?}"),
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

/// What `frame::text` does with one allocation sized for header + payload up front (the
/// current code allocates the header, then `reserve_exact`s the payload: a second allocation
/// and a copy). A bench-local comparison, not server code.
fn text_one_alloc(payload: &[u8]) -> bytes::Bytes {
    let len = payload.len();
    let mut out = Vec::with_capacity(10 + len);
    out.push(0x81);
    match len {
        0..=125 => out.push(len as u8),
        126..=65535 => {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    bytes::Bytes::from(out)
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("ws_encode_text");
    for (name, len) in [("100B", 100usize), ("4KiB", 4096)] {
        let payload = vec![b'x'; len];
        assert_eq!(frame::text(&payload), text_one_alloc(&payload));
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(name, |b| b.iter(|| frame::text(black_box(&payload))));
        group.bench_function(format!("{name}_one_alloc_variant"), |b| {
            b.iter(|| text_one_alloc(black_box(&payload)))
        });
    }
    group.finish();
}

/// The allocator the server binary uses (src/main.rs), so allocation costs match.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

criterion_group!(benches, decode, encode);
criterion_main!(benches);
