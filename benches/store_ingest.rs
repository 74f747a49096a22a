//! Store ingest: messages per second committed by one shard's store, with `fsync` and `none`
//! durability, at 1, 10 and 100 messages per submitted batch.
//!
//! Each iteration submits one batch without waiting (as a shard loop does), so group commit
//! coalesces whatever is queued; the measured time ends when the last batch's completion has
//! arrived. Files live in a fresh directory under the system temp dir, removed afterwards.
//! Run: `cargo bench --bench store_ingest`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use roomcast::store::{
    check_data_dir, Completion, Durability, MessageRecord, RoomRecord, Store, StoreOp,
};

fn message(room: u64, id: u64) -> MessageRecord {
    MessageRecord {
        id,
        seq: id,
        room,
        author: "bench-user".into(),
        text: "a typical short chat message of some sixty bytes or so, ok?".into(),
        parent_id: 0,
        client_message_id: Some(format!("c{id}")),
        kind: "Regular".into(),
        attachments: "[]".into(),
        attributes: "{}".into(),
        comment_count: 0,
        created_ms: 1_700_000_000_000 + id,
        edited_ms: 1_700_000_000_000 + id,
        modified_ms: 1_700_000_000_000 + id,
        deleted_ms: None,
    }
}

fn ingest(c: &mut Criterion) {
    let root: PathBuf = std::env::temp_dir().join(format!("roomcast-bench-{}", std::process::id()));
    let mut group = c.benchmark_group("store_ingest");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(4));
    for (name, durability) in [("fsync", Durability::Fsync), ("none", Durability::None)] {
        for batch in [1u64, 10, 100] {
            let dir = root.join(format!("{name}-{batch}"));
            let _ = std::fs::remove_dir_all(&dir);
            check_data_dir(&dir, 1).expect("data dir");
            let (mut store, _) =
                Store::open(&dir, 0, 1, durability, (100, usize::MAX), 4096, Arc::new(|| {}))
                    .expect("open");
            let room = 1;
            let first = vec![StoreOp::PutRoom(RoomRecord {
                id: room,
                kind: "group".into(),
                name: "bench".into(),
                description: String::new(),
                attributes: "{}".into(),
                created_ms: 0,
                updated_ms: 0,
                last_seq: 0,
            })];
            store.submit(0, first).expect("ring");
            let mut done = Vec::new();
            while done.is_empty() {
                store.drain_completions(&mut done);
                std::thread::yield_now();
            }
            let mut next_id = 1u64;
            group.throughput(Throughput::Elements(batch));
            group.bench_with_input(BenchmarkId::new(name, batch), &batch, |b, &batch| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    let mut completed = 0u64;
                    for token in 0..iters {
                        let mut ops: Vec<StoreOp> = (0..batch)
                            .map(|i| StoreOp::PutMessage(message(room, next_id + i)))
                            .collect();
                        next_id += batch;
                        while let Err(back) = store.submit(token, ops) {
                            ops = back;
                            completed += drain(&mut store, &mut done);
                            std::thread::yield_now();
                        }
                        completed += drain(&mut store, &mut done);
                    }
                    while completed < iters {
                        completed += drain(&mut store, &mut done);
                        std::thread::yield_now();
                    }
                    start.elapsed()
                });
            });
            drop(store);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&root);
}

/// Drains completions, returning how many batches were committed.
fn drain(store: &mut Store, buf: &mut Vec<Completion>) -> u64 {
    store.drain_completions(buf);
    let n = buf.iter().filter(|c| matches!(c, Completion::Written { result: Ok(()), .. })).count();
    assert_eq!(n, buf.len(), "a batch failed: {buf:?}");
    buf.clear();
    n as u64
}

criterion_group!(benches, ingest);
criterion_main!(benches);
