//! The store writer's cost per message: N messages through one shard's [`Store`] with `fsync`
//! (or `none`) durability, one message per submitted batch (as a REST post submits), at most
//! `OUTSTANDING` batches in flight (the closed-loop posters of `perf/scenarios/ingest.sh`),
//! over `ROOMS` rooms. Prints one JSON line: messages/s (wall), the writer's CPU per message
//! (the writer thread and its log-sync and apply threads, from `/proc/self/task/*/schedstat`
//! and `stat`, so the bench loop's own spinning does not count), commits and the mean group
//! size.
//!
//! Run: `cargo bench --bench store_writer` (env: `N` 200000, `OUTSTANDING` 100, `ROOMS` 10,
//! `DURABILITY` fsync|none, `TEXT_BYTES` 64, `DIR` a directory for the data files (default: the
//! system temp dir)). Under callgrind use a small `N` (e.g. 20000) and `--separate-threads=yes`.
//! Not a criterion bench: criterion times the calling thread, and the cost here is on the
//! writer thread.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use roomcast::store::{
    check_data_dir, Completion, Durability, MessageRecord, RoomRecord, Store, StoreOp,
};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn message(room: u64, id: u64, seq: u64, text: &str) -> MessageRecord {
    MessageRecord {
        id,
        seq,
        room,
        author: format!("poster-{}", id % 100),
        text: text.to_string(),
        parent_id: 0,
        client_message_id: None,
        kind: "Regular".into(),
        attachments: "[]".into(),
        attributes: "{}".into(),
        comment_count: 0,
        created_ms: 1_700_000_000_000 + id,
        edited_ms: 0,
        modified_ms: 1_700_000_000_000 + id,
        deleted_ms: None,
    }
}

/// (CPU ns from schedstat, utime ticks, stime ticks) of this process's threads named in
/// `names` (the writer and its helper threads), summed; `None` if none of them exists.
fn thread_cpu(names: &[&str]) -> Option<(u64, u64, u64)> {
    let mut sum: Option<(u64, u64, u64)> = None;
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = entry.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
        if !names.contains(&comm.trim()) {
            continue;
        }
        let sched = std::fs::read_to_string(dir.join("schedstat")).ok()?;
        let ns: u64 = sched.split_whitespace().next()?.parse().ok()?;
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        // Fields after the ")" that ends comm: state is field 3; utime 14, stime 15.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        let (a, b, c) = sum.unwrap_or_default();
        sum = Some((a + ns, b + utime, c + stime));
    }
    sum
}

/// The store's writing threads: the writer and (with the log) its sync and apply threads.
const WRITER_THREADS: [&str; 3] = ["store-w0", "store-s0", "store-a0"];

fn drain(store: &mut Store, buf: &mut Vec<Completion>) -> u64 {
    store.drain_completions(buf);
    let n = buf.iter().filter(|c| matches!(c, Completion::Written { result: Ok(()), .. })).count();
    assert_eq!(n, buf.len(), "a batch failed: {buf:?}");
    buf.clear();
    n as u64
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let n: u64 = env("N", 200_000);
    let outstanding: u64 = env("OUTSTANDING", 100);
    let rooms: u64 = env("ROOMS", 10).max(1);
    let text_bytes: usize = env("TEXT_BYTES", 64);
    let durability = match std::env::var("DURABILITY").as_deref() {
        Ok("none") => Durability::None,
        _ => Durability::Fsync,
    };
    let base: PathBuf = std::env::var_os("DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = base.join(format!("roomcast-store-writer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    check_data_dir(&dir, 1).expect("data dir");
    let (mut store, _) =
        Store::open(&dir, 0, 1, durability, (100, usize::MAX), 4096, Arc::new(|| {}))
            .expect("open");
    let mut done = Vec::new();
    let setup: Vec<StoreOp> = (1..=rooms)
        .map(|id| {
            StoreOp::PutRoom(RoomRecord {
                id,
                kind: "group".into(),
                name: format!("room {id}"),
                description: String::new(),
                attributes: "{}".into(),
                created_ms: 0,
                updated_ms: 0,
                last_seq: 0,
            })
        })
        .collect();
    store.submit(0, setup).expect("ring");
    while drain(&mut store, &mut done) == 0 {
        std::thread::yield_now();
    }
    let text = "x".repeat(text_bytes);
    let before_metrics = store.metrics();
    let before_cpu = thread_cpu(&WRITER_THREADS).expect("writer thread");
    let start = Instant::now();
    let (mut submitted, mut completed) = (0u64, 0u64);
    let mut seqs = vec![0u64; rooms as usize + 1];
    while completed < n {
        while submitted < n && submitted - completed < outstanding {
            let id = rooms + 1 + submitted;
            let room = 1 + submitted % rooms;
            seqs[room as usize] += 1;
            let op = StoreOp::PutMessage(message(room, id, seqs[room as usize], &text));
            if store.submit(submitted + 1, vec![op]).is_err() {
                break;
            }
            submitted += 1;
        }
        let got = drain(&mut store, &mut done);
        if got == 0 {
            std::thread::yield_now();
        }
        completed += got;
    }
    let wall = start.elapsed().as_secs_f64();
    let after_cpu = thread_cpu(&WRITER_THREADS).expect("writer thread");
    let m = store.metrics();
    let commits = m.commits - before_metrics.commits;
    let tick_us = 1e6 / 100.0; // USER_HZ
    let per = |v: f64| v / n as f64;
    println!(
        "{{\"n\":{n},\"outstanding\":{outstanding},\"rooms\":{rooms},\"text_bytes\":{text_bytes},\
         \"durability\":\"{}\",\"msgs_per_s\":{:.0},\"writer_cpu_us_per_msg\":{:.2},\
         \"writer_user_us_per_msg\":{:.2},\"writer_sys_us_per_msg\":{:.2},\"commits\":{commits},\
         \"msgs_per_commit\":{:.1},\"commit_us_wall\":{:.0},\"file_bytes\":{}}}",
        if durability == Durability::Fsync { "fsync" } else { "none" },
        n as f64 / wall,
        per((after_cpu.0 - before_cpu.0) as f64 / 1000.0),
        per((after_cpu.1 - before_cpu.1) as f64 * tick_us),
        per((after_cpu.2 - before_cpu.2) as f64 * tick_us),
        n as f64 / commits.max(1) as f64,
        wall * 1e6 / commits.max(1) as f64,
        std::fs::metadata(store.path()).map_or(0, |m| m.len()),
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
