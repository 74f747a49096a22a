//! REST post body decoding: simd-json (what `roomcast::rest::json::parse_body` uses, including
//! its copy of the body into an owned buffer) vs serde_json, into a struct shaped like the
//! server's private `PostBody` for `POST /api/v1/rooms/{id}/messages`.
//!
//! `cargo bench --bench json_decode -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, Criterion};
use serde::Deserialize;
use serde_json::Value;
use std::hint::black_box;

/// Same fields and attributes as `PostBody` in src/rest/messages.rs.
#[allow(dead_code)]
#[derive(Deserialize)]
struct PostBody {
    #[serde(alias = "content")]
    text: Option<String>,
    parent_id: Option<u64>,
    client_message_id: Option<String>,
    kind: Option<String>,
    attachments: Option<Value>,
    attributes: Option<Value>,
    author: Option<Value>,
}

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
        group.bench_function(format!("simd_json/{name}"), |b| {
            b.iter(|| {
                let mut owned = black_box(body).to_vec();
                let v: PostBody = simd_json::serde::from_slice(&mut owned).expect("valid");
                v
            })
        });
        group.bench_function(format!("serde_json/{name}"), |b| {
            b.iter(|| {
                let v: PostBody = serde_json::from_slice(black_box(body)).expect("valid");
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
