//! REST post body decoding: `roomcast::rest::json::post_body`, the decoder the server runs for
//! `POST /api/v1/rooms/{id}/messages` (serde_json through `parse_body`, into the real
//! `rest::json::PostBody`), next to simd-json decoding the same type (with the copy of the body
//! into an owned buffer that simd-json needs), the alternative `parse_body`'s doc compares it to.
//!
//! `cargo bench --bench json_decode -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, Criterion};
use roomcast::rest::json::{post_body, PostBody};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    // What the loadgen posts: a 64-byte stamped text.
    let small = format!("{{\"text\":\"t=123456789012;{}\"}}", "x".repeat(64 - 15));
    // A fuller body: client id, kind, attachments and attributes.
    let full = format!(
        "{{\"text\":\"{}\",\"client_message_id\":\"c-0123456789abcdef\",\"kind\":\"Regular\",\
         \"parent_id\":0,\"attachments\":[{{\"name\":\"a.png\",\"size\":1234}}],\
         \"attributes\":{{\"color\":\"red\",\"n\":3}}}}",
        "y".repeat(1000)
    );
    let mut group = c.benchmark_group("post_body_decode");
    for (name, body) in [("64B_text", small.as_bytes()), ("1KiB_full", full.as_bytes())] {
        assert!(post_body(body).is_ok(), "the server accepts the {name} body");
        group.bench_function(format!("post_body/{name}"), |b| {
            b.iter(|| post_body(black_box(body)).expect("valid"))
        });
        group.bench_function(format!("simd_json/{name}"), |b| {
            b.iter(|| {
                let mut owned = black_box(body).to_vec();
                let v: PostBody = simd_json::serde::from_slice(&mut owned).expect("valid");
                v
            })
        });
    }
    group.finish();
}

/// The allocator the server binary uses (src/main.rs), so allocation costs match.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

criterion_group!(benches, bench);
criterion_main!(benches);
