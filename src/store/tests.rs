//! Tests of the store on real files in temp directories: round trip through a restart, group
//! commit, history paging from disk, data-directory checks, corruption, failing commits.
//!
//! No timing assertions: waits poll with a generous deadline and only guard against hangs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::limits::STORE_HISTORY_READ_MAX;
use redb::ReadableDatabase;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "roomcast-store-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn no_wake() -> Wake {
    Arc::new(|| {})
}

fn open(dir: &Path, shard: usize, shards: usize, window: usize) -> (Store, Recovered) {
    check_data_dir(dir, shards).expect("data dir");
    let window = (window, usize::MAX);
    Store::open(dir, shard, shards, Durability::Fsync, window, 1024, no_wake()).expect("open")
}

fn room(id: u64, name: &str, last_seq: u64) -> RoomRecord {
    RoomRecord {
        id,
        kind: "group".into(),
        name: name.into(),
        description: format!("about {name}"),
        attributes: r#"{"x":1}"#.into(),
        created_ms: 1_000 + id,
        updated_ms: 2_000 + id,
        last_seq,
    }
}

fn message(room: u64, id: u64, seq: u64) -> MessageRecord {
    MessageRecord {
        id,
        seq,
        room,
        author: "alice".into(),
        text: format!("message {id}"),
        parent_id: 0,
        client_message_id: (id % 2 == 0).then(|| format!("c{id}")),
        kind: "Regular".into(),
        attachments: "[]".into(),
        attributes: "{}".into(),
        comment_count: 0,
        created_ms: 10_000 + id,
        edited_ms: 10_000 + id,
        modified_ms: 10_000 + id,
        deleted_ms: None,
    }
}

fn member(room: u64, user: &str, role: u8) -> StoreOp {
    StoreOp::PutMember { room, user: user.into(), role }
}

/// Drains completions until `count` have arrived (or panics after 30 s).
fn wait(store: &mut Store, count: usize) -> Vec<Completion> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < count {
        assert!(Instant::now() < deadline, "store completions did not arrive");
        store.drain_completions(&mut out);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(out.len(), count, "more completions than requests");
    out
}

fn submit_all(store: &mut Store, batches: Vec<Vec<StoreOp>>) {
    let n = batches.len();
    for (token, ops) in batches.into_iter().enumerate() {
        store.submit(token as u64, ops).expect("ring has room");
    }
    let done = wait(store, n);
    for (i, c) in done.into_iter().enumerate() {
        assert_eq!(c, Completion::Written { token: i as u64, result: Ok(()) });
    }
}

fn history(
    store: &mut Store,
    room: u64,
    after: Option<u64>,
    before: Option<u64>,
    limit: usize,
) -> Vec<u64> {
    let (ids, truncated) = history_bytes(store, room, after, before, (limit, usize::MAX));
    assert!(!truncated, "no byte bound, no early end");
    ids
}

/// A page read with a byte bound: its ids and whether it ended early.
fn history_bytes(
    store: &mut Store,
    room: u64,
    after: Option<u64>,
    before: Option<u64>,
    bounds: (usize, usize),
) -> (Vec<u64>, bool) {
    store.read_history(7, room, after, before, bounds).expect("read ring has room");
    match wait(store, 1).pop() {
        Some(Completion::History { token: 7, result }) => {
            let (page, truncated) = result.expect("history");
            (page.iter().map(|m| m.id).collect(), truncated)
        }
        other => panic!("unexpected completion {other:?}"),
    }
}

fn message_room(store: &mut Store, message: u64) -> Option<u64> {
    store.read_message(9, message).expect("read ring");
    match wait(store, 1).pop() {
        Some(Completion::Message { token: 9, result }) => result.expect("lookup").map(|m| m.room),
        other => panic!("unexpected completion {other:?}"),
    }
}

#[test]
fn round_trip_through_a_restart() {
    let dir = TempDir::new("roundtrip");
    // Shard 1 of 2 owns odd ids.
    let (mut store, recovered) = open(dir.path(), 1, 2, 3);
    assert_eq!(recovered, Recovered::default());

    let mut edited = message(1, 103, 3);
    edited.text = "edited".into();
    edited.edited_ms = 20_000;
    edited.modified_ms = 20_000;
    let mut deleted = message(1, 104, 4);
    deleted.text.clear();
    deleted.deleted_ms = Some(30_000);
    deleted.modified_ms = 30_000;
    submit_all(
        &mut store,
        vec![
            vec![
                StoreOp::PutRoom(room(1, "one", 0)),
                member(1, "alice", role_to_u8(crate::model::Role::Owner)),
                member(1, "bob", 0),
            ],
            (1..=5).map(|s| StoreOp::PutMessage(message(1, 100 + s, s))).collect(),
            vec![
                StoreOp::PutRoom(room(3, "three", 2)),
                member(3, "carol", 0),
                StoreOp::PutMessage(message(3, 201, 1)),
                StoreOp::PutMessage(message(3, 203, 2)),
            ],
            vec![StoreOp::PutRoom(room(5, "five", 0))],
            vec![
                StoreOp::PutMessage(edited.clone()),
                StoreOp::PutMessage(deleted.clone()),
                StoreOp::PutRoom(room(1, "one renamed", 5)),
                StoreOp::RemoveMember { room: 1, user: "bob".into() },
                member(1, "carol", 0),
                member(1, "carol", 1),
            ],
            vec![StoreOp::DeleteRoom(3), StoreOp::DeleteRoom(5)],
        ],
    );
    assert_eq!(message_room(&mut store, 101), Some(1));
    assert_eq!(message_room(&mut store, 201), None);
    let m = store.metrics();
    assert_eq!((m.batches, m.ops, m.commit_failures), (6, 21, 0));
    assert!(m.healthy && m.commits >= 1 && m.commits <= 6);
    drop(store);

    let (mut store, recovered) = open(dir.path(), 1, 2, 3);
    assert_eq!(recovered.max_room_id, 5, "deleted room 5 still counts");
    assert_eq!(recovered.max_message_id, 203, "deleted messages still count");
    assert_eq!(recovered.rooms.len(), 1);
    let r = &recovered.rooms[0];
    assert_eq!(r.room, room(1, "one renamed", 5));
    assert_eq!(r.members, vec![("alice".to_string(), 2), ("carol".to_string(), 1)]);
    assert_eq!(r.recent, vec![edited, deleted, message(1, 105, 5)]);
    // Beyond the window, from disk; the deleted message is skipped.
    assert_eq!(history(&mut store, 1, None, None, 10), vec![101, 102, 103, 105]);
    assert_eq!(message_room(&mut store, 102), Some(1));
    assert_eq!(message_room(&mut store, 203), None);
    let back = r.recent[0].clone().into_message();
    assert_eq!(MessageRecord::from(&*back), r.recent[0]);

    // Deleting room 3 took its members and messages with it: a record under its id (which a
    // real allocator would never reuse) comes back bare.
    submit_all(&mut store, vec![vec![StoreOp::PutRoom(room(3, "again", 0))]]);
    assert!(history(&mut store, 3, None, None, 10).is_empty());
    drop(store);
    let (_, recovered) = open(dir.path(), 1, 2, 3);
    let three = recovered.rooms.iter().find(|r| r.room.id == 3).expect("room 3");
    assert!(three.members.is_empty() && three.recent.is_empty());
}

#[test]
fn the_handle_can_move_into_a_shard_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<Store>();
    assert_send::<Completion>();
}

#[test]
fn group_commit_coalesces_back_to_back_batches() {
    let dir = TempDir::new("group");
    let (mut store, _) = open(dir.path(), 0, 1, 10);
    store.submit(u64::MAX, vec![StoreOp::PutRoom(room(4, "r", 0))]).expect("ring");
    assert_eq!(wait(&mut store, 1).len(), 1);
    let total = 1_000u64;
    let mut done = Vec::new();
    for token in 0..total {
        let mut ops = vec![StoreOp::PutMessage(message(4, 10 + token, token + 1))];
        loop {
            match store.submit(token, ops) {
                Ok(()) => break,
                Err(back) => {
                    ops = back;
                    store.drain_completions(&mut done);
                    std::thread::yield_now();
                }
            }
        }
    }
    let rest = total as usize - done.len();
    done.extend(wait(&mut store, rest));
    let tokens: Vec<u64> = done
        .iter()
        .map(|c| match c {
            Completion::Written { token, result } => {
                assert_eq!(result, &Ok(()));
                *token
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(tokens, (0..total).collect::<Vec<_>>());
    let m = store.metrics();
    assert_eq!(m.batches, total + 1);
    assert!(m.commits < 100, "{} commits for {total} batches: no group commit", m.commits);
    assert!(m.group_max_batches > 1);
    assert_eq!((m.write_ring_used, m.ring_capacity), (0, 1024));
    drop(store);
    let (_, recovered) = open(dir.path(), 0, 1, 10);
    assert_eq!(recovered.max_message_id, 10 + total - 1);
    assert_eq!(recovered.rooms[0].recent.len(), 10);
}

/// The in-memory window's semantics, as the reference for disk paging.
fn reference(
    ids: &[(u64, bool)],
    after: Option<u64>,
    before: Option<u64>,
    limit: usize,
) -> Vec<u64> {
    let limit = limit.min(STORE_HISTORY_READ_MAX);
    let live = ids.iter().filter(|(id, deleted)| {
        !deleted && after.is_none_or(|a| *id > a) && before.is_none_or(|b| *id < b)
    });
    if after.is_none() && before.is_some() {
        let mut v: Vec<u64> = live.rev().take(limit).map(|(id, _)| *id).collect();
        v.reverse();
        v
    } else {
        live.take(limit).map(|(id, _)| *id).collect()
    }
}

#[test]
fn history_pages_from_disk_across_the_window() {
    let dir = TempDir::new("history");
    let (mut store, _) = open(dir.path(), 0, 1, 3);
    let ids: Vec<(u64, bool)> = (1..=20).map(|i| (i * 10, i == 5 || i == 15)).collect();
    let mut ops = vec![StoreOp::PutRoom(room(7, "seven", 20))];
    for (seq, (id, deleted)) in ids.iter().enumerate() {
        let mut m = message(7, *id, seq as u64 + 1);
        if *deleted {
            m.deleted_ms = Some(1);
        }
        ops.push(StoreOp::PutMessage(m));
    }
    // A neighbouring room whose messages must never leak into room 7's pages.
    ops.push(StoreOp::PutRoom(room(8, "eight", 1)));
    ops.push(StoreOp::PutMessage(message(8, 15, 1)));
    ops.push(StoreOp::PutRoom(room(6, "six", 1)));
    ops.push(StoreOp::PutMessage(message(6, 5, 1)));
    submit_all(&mut store, vec![ops]);
    drop(store);

    let (mut store, recovered) = open(dir.path(), 0, 1, 3);
    let seven = recovered.rooms.iter().find(|r| r.room.id == 7).expect("room");
    let window: Vec<u64> = seven.recent.iter().map(|m| m.id).collect();
    assert_eq!(window, vec![180, 190, 200]);

    assert_eq!(history(&mut store, 7, None, None, 5), vec![10, 20, 30, 40, 60]);
    assert_eq!(history(&mut store, 7, Some(40), None, 3), vec![60, 70, 80]);
    assert_eq!(history(&mut store, 7, None, Some(160), 4), vec![110, 120, 130, 140]);
    // The page just older than the window, as a client scrolling back would ask.
    assert_eq!(history(&mut store, 7, None, Some(180), 2), vec![160, 170]);
    assert_eq!(history(&mut store, 7, None, None, 10_000).len(), 18);
    assert!(history(&mut store, 7, Some(u64::MAX), None, 5).is_empty());
    assert!(history(&mut store, 9, None, None, 5).is_empty());
    let bounds = [None, Some(0), Some(15), Some(50), Some(55), Some(150), Some(200), Some(999)];
    for after in bounds {
        for before in bounds {
            for limit in [0, 1, 2, 7, 600] {
                assert_eq!(
                    history(&mut store, 7, after, before, limit),
                    reference(&ids, after, before, limit),
                    "after {after:?} before {before:?} limit {limit}"
                );
            }
        }
    }
}

#[test]
fn history_pages_from_disk_end_early_at_their_byte_bound() {
    let dir = TempDir::new("history-bytes");
    let (mut store, _) = open(dir.path(), 0, 1, 3);
    let mut ops = vec![StoreOp::PutRoom(room(3, "three", 10))];
    for i in 1..=10u64 {
        let mut m = message(3, i * 10, i);
        m.text = "x".repeat(1000);
        m.client_message_id = None;
        ops.push(StoreOp::PutMessage(m));
    }
    submit_all(&mut store, vec![ops]);
    let mut one = message(3, 10, 1);
    one.text = "x".repeat(1000);
    one.client_message_id = None;
    let size = one.clone().into_message().encoded_len();
    // (after, before, limit, bytes_max, expected ids, truncated)
    type Case = (Option<u64>, Option<u64>, usize, usize, Vec<u64>, bool);
    let cases: Vec<Case> = vec![
        (None, None, 20, 10 * size, (1..=10).map(|i| i * 10).collect(), false),
        (None, None, 20, 3 * size + 10, vec![10, 20, 30], true),
        (Some(50), None, 20, 2 * size, vec![60, 70], true),
        (None, Some(100), 20, 2 * size, vec![80, 90], true),
        (None, None, 2, 5 * size, vec![10, 20], false),
        (Some(80), None, 20, 1, vec![90], true),
        (None, Some(20), 20, 0, vec![10], false),
        (Some(90), None, 20, 1, vec![100], false),
    ];
    for (after, before, limit, bytes_max, ids, truncated) in cases {
        assert_eq!(
            history_bytes(&mut store, 3, after, before, (limit, bytes_max)),
            (ids, truncated),
            "after {after:?} before {before:?} limit {limit} bytes {bytes_max}"
        );
    }
}

#[test]
fn data_dir_records_its_cluster_layout() {
    let dir = TempDir::new("layout");
    let node1 = Layout { shards: 2, nodes: 3, node: 1 };
    check_layout(dir.path(), node1).expect("first start");
    check_layout(dir.path(), node1).expect("same layout");
    for other in [
        Layout { shards: 2, nodes: 3, node: 0 },
        Layout { shards: 2, nodes: 2, node: 1 },
        Layout::alone(2),
    ] {
        let err = check_layout(dir.path(), other).expect_err("another layout").to_string();
        assert!(err.contains("--node 1 --nodes 3"), "{err}");
    }
    assert!(check_layout(dir.path(), Layout { shards: 3, nodes: 3, node: 1 }).is_err());
    // Its shards are global shards 2 and 3 of 6.
    let opened = Store::open(dir.path(), 3, 6, Durability::Fsync, (1, usize::MAX), 8, no_wake());
    assert!(opened.is_ok());
    // A directory made alone stays a node alone.
    let alone = TempDir::new("alone");
    check_data_dir(alone.path(), 2).expect("alone");
    assert!(check_layout(alone.path(), node1).is_err());
}

#[test]
fn data_dir_records_its_shard_count() {
    let dir = TempDir::new("shards");
    check_data_dir(dir.path(), 2).expect("first start");
    check_data_dir(dir.path(), 2).expect("same count");
    std::fs::write(dir.path().join("jwt_secret"), "keep me").expect("secret");
    let err = check_data_dir(dir.path(), 3).expect_err("other count").to_string();
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
    assert!(err.contains("created with 2 shards"), "{err}");
    assert!(err.contains("--shards 2"), "{err}");
    assert!(err.contains('3'), "{err}");
    let err = Store::open(dir.path(), 0, 3, Durability::Fsync, (1, usize::MAX), 8, no_wake())
        .err()
        .expect("open refuses too")
        .to_string();
    assert!(err.contains("--shards 2"), "{err}");
    assert_eq!(std::fs::read_to_string(dir.path().join("jwt_secret")).expect("secret"), "keep me");

    // Shard files without a format record are not adopted.
    let orphan = TempDir::new("orphan");
    std::fs::create_dir_all(orphan.path()).expect("dir");
    std::fs::write(shard_path(orphan.path(), 0), b"x").expect("file");
    let err = check_data_dir(orphan.path(), 1).expect_err("orphan").to_string();
    assert!(err.contains(FORMAT_FILE) && err.contains("shard-0.redb"), "{err}");

    // A garbled format record names itself.
    std::fs::write(dir.path().join(FORMAT_FILE), "shards = \"many\"").expect("garble");
    let err = check_data_dir(dir.path(), 2).expect_err("garbled").to_string();
    assert!(err.contains(FORMAT_FILE), "{err}");
}

#[test]
fn corrupt_files_are_errors_naming_the_file() {
    let dir = TempDir::new("corrupt");
    let (mut store, _) = open(dir.path(), 0, 1, 3);
    submit_all(
        &mut store,
        vec![vec![StoreOp::PutRoom(room(2, "r", 1)), StoreOp::PutMessage(message(2, 9, 1))]],
    );
    drop(store);
    let path = shard_path(dir.path(), 0);

    // A record whose bytes do not validate.
    {
        let db = redb::Database::create(&path).expect("raw open");
        let txn = db.begin_write().expect("txn");
        txn.open_table(db::ROOMS).expect("table").insert(3, &[0xff_u8; 5][..]).expect("insert");
        txn.commit().expect("commit");
    }
    let err = Store::open(dir.path(), 0, 1, Durability::Fsync, (3, usize::MAX), 8, no_wake())
        .err()
        .expect("bad record refused")
        .to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("room 3"), "{err}");

    // A file whose header is overwritten.
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[..64].fill(0xa5);
    std::fs::write(&path, &bytes).expect("write");
    let err = Store::open(dir.path(), 0, 1, Durability::Fsync, (3, usize::MAX), 8, no_wake())
        .err()
        .expect("corrupt file refused")
        .to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
}

#[test]
fn failed_commits_are_retried_until_they_succeed() {
    let dir = TempDir::new("retry");
    check_data_dir(dir.path(), 1).expect("dir");
    let wakes = Arc::new(AtomicUsize::new(0));
    let counter = wakes.clone();
    let (mut store, _) = Store::open(
        dir.path(),
        0,
        1,
        Durability::Fsync,
        (3, usize::MAX),
        2,
        Arc::new(move || {
            counter.fetch_add(1, Ordering::Relaxed);
        }),
    )
    .expect("open");
    store.fail_next_commits(4);
    let batch = |t: u64| vec![StoreOp::PutMessage(message(1, 100 + t, t + 1))];
    let mut token = 0;
    // The writer holds its failing group; its ring of 2 fills and refuses, giving ops back.
    let refused = loop {
        match store.submit(token, batch(token)) {
            Ok(()) => token += 1,
            Err(back) => break back,
        }
        assert!(token < 10, "the ring never filled");
    };
    assert_eq!(refused, batch(token));
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.is_healthy() {
        assert!(Instant::now() < deadline, "never unhealthy");
        std::thread::sleep(Duration::from_millis(1));
    }
    // Reads are served by their own thread meanwhile (or refused while the file reopens).
    store.read_message(1, 1).expect("read ring");
    let done = wait(&mut store, token as usize + 1);
    let mut written: Vec<u64> = Vec::new();
    for c in done {
        match c {
            Completion::Written { token, result } => {
                assert_eq!(result, Ok(()));
                written.push(token);
            }
            Completion::Message { token: 1, .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(written, (0..token).collect::<Vec<_>>(), "once each, in order");
    assert!(store.is_healthy());
    let m = store.metrics();
    assert_eq!(m.commit_failures, 4);
    assert_eq!(m.batches, token);
    assert!(wakes.load(Ordering::Relaxed) > 0);
    // The writer works normally afterwards.
    store.submit(99, batch(99)).expect("ring");
    assert_eq!(wait(&mut store, 1), vec![Completion::Written { token: 99, result: Ok(()) }]);
    drop(store);
    let (_, recovered) = open(dir.path(), 0, 1, 100);
    assert_eq!(recovered.max_message_id, 199);
    assert_eq!(recovered.rooms.len(), 0, "messages only, no room record");
}

#[test]
fn non_durable_commits_are_flushed_at_shutdown() {
    let dir = TempDir::new("nondurable");
    check_data_dir(dir.path(), 1).expect("dir");
    let (mut store, _) =
        Store::open(dir.path(), 0, 1, Durability::None, (5, usize::MAX), 16, no_wake())
            .expect("open");
    submit_all(
        &mut store,
        vec![vec![StoreOp::PutRoom(room(3, "r", 1)), StoreOp::PutMessage(message(3, 4, 1))]],
    );
    drop(store);
    let (_, recovered) = open(dir.path(), 0, 1, 5);
    assert_eq!(recovered.rooms.len(), 1);
    assert_eq!(recovered.rooms[0].recent, vec![message(3, 4, 1)]);
}

#[test]
fn notifications_and_revoked_sessions_survive_a_restart() {
    let dir = TempDir::new("osu");
    let (mut store, _) = open(dir.path(), 0, 1, 3);
    let note = |id: u64, read: bool| NotificationRecord {
        id,
        user: "1001".into(),
        name: "channel_message".into(),
        category: "channel".into(),
        object_type: "channel".into(),
        object_id: 7,
        source_user: Some("2002".into()),
        details: "{}".into(),
        created_ms: 5,
        read,
    };
    let now = crate::auth::now_unix_s();
    submit_all(
        &mut store,
        vec![
            vec![
                StoreOp::PutNotification(note(3, false)),
                StoreOp::PutNotification(note(4, false)),
            ],
            vec![
                StoreOp::PutNotification(note(4, true)),
                StoreOp::DeleteNotification { user: "1001".into(), id: 3 },
                StoreOp::RevokeSession {
                    sid: "a".into(),
                    user: "1001".into(),
                    expires_at: now + 60,
                },
                StoreOp::RevokeSession { sid: "old".into(), user: "1001".into(), expires_at: 1 },
            ],
        ],
    );
    drop(store);
    let (_store, recovered) = open(dir.path(), 0, 1, 3);
    assert_eq!(recovered.notifications, vec![note(4, true)]);
    assert_eq!(recovered.max_notification_id, 4);
    assert_eq!(
        recovered.revoked,
        vec![RevokedRecord { sid: "a".into(), user: "1001".into(), expires_at: now + 60 }],
        "expired revocations are skipped"
    );
}

#[test]
fn recovery_reads_the_newest_messages_within_the_windows_byte_bound() {
    let dir = TempDir::new("recover-bytes");
    let (mut store, _) = open(dir.path(), 0, 1, 100);
    let mut ops = vec![StoreOp::PutRoom(room(3, "three", 10))];
    let sized = |id: u64, seq: u64, len: usize| {
        let mut m = message(3, id, seq);
        m.text = "x".repeat(len);
        m.client_message_id = None;
        m
    };
    for i in 1..=10u64 {
        ops.push(StoreOp::PutMessage(sized(i * 10, i, 1000)));
    }
    submit_all(&mut store, vec![ops]);
    drop(store);
    let size = sized(10, 1, 1000).into_message().encoded_len();
    let recent = |window| {
        let (_, recovered) =
            Store::open(dir.path(), 0, 1, Durability::Fsync, window, 64, no_wake()).expect("open");
        recovered.rooms[0].recent.iter().map(|m| m.id).collect::<Vec<_>>()
    };
    assert_eq!(recent((100, 3 * size)), [80, 90, 100]);
    assert_eq!(recent((100, 3 * size - 1)), [90, 100]);
    assert_eq!(recent((2, 3 * size)), [90, 100], "the count bound too");
    assert_eq!(recent((100, 1)), [100], "the newest, whatever its size");
}

#[test]
fn a_rooms_last_seq_comes_from_its_newest_message_when_the_record_is_older() {
    let dir = TempDir::new("lastseq");
    let (mut store, _) = open(dir.path(), 0, 1, 2);
    // Posting does not rewrite the room record: it still says seq 1 after three messages.
    submit_all(
        &mut store,
        vec![
            vec![StoreOp::PutRoom(room(3, "r", 1)), StoreOp::PutMessage(message(3, 4, 1))],
            vec![StoreOp::PutMessage(message(3, 7, 2))],
            vec![StoreOp::PutMessage(message(3, 10, 3))],
            vec![StoreOp::PutRoom(room(6, "s", 5))],
        ],
    );
    drop(store);
    let (_, recovered) = open(dir.path(), 0, 1, 2);
    let last_seq = |id| recovered.rooms.iter().find(|r| r.room.id == id).map(|r| r.room.last_seq);
    assert_eq!(last_seq(3), Some(3), "taken from the newest message, beyond a window of 2");
    assert_eq!(last_seq(6), Some(5), "a room without messages keeps its record's");
}

#[test]
fn dialect_records_survive_a_restart_and_are_deleted_one_or_per_user() {
    let dir = TempDir::new("dialect");
    let (mut store, recovered) = open(dir.path(), 0, 1, 3);
    assert!(recovered.dialect_records.is_empty());
    let record = |dialect: u8, user: &str, key: &str, value: &[u8]| DialectRecord {
        dialect,
        user: user.into(),
        key: key.into(),
        value: value.to_vec(),
    };
    submit_all(
        &mut store,
        vec![
            vec![
                StoreOp::PutDialectRecord(record(3, "bob", "a", b"1")),
                StoreOp::PutDialectRecord(record(3, "bob", "b", b"2")),
                StoreOp::PutDialectRecord(record(3, "bobby", "a", b"3")),
                StoreOp::PutDialectRecord(record(3, "carol", "a", b"4")),
                StoreOp::PutDialectRecord(record(3, "carol", "b", b"5")),
                StoreOp::PutDialectRecord(record(2, "carol", "a", b"6")),
            ],
            vec![
                // Same key: replaced.
                StoreOp::PutDialectRecord(record(3, "bob", "b", b"2'")),
                StoreOp::DeleteDialectRecord { dialect: 3, user: "bob".into(), key: "a".into() },
                StoreOp::DeleteDialectRecords { dialect: 3, user: "carol".into() },
            ],
        ],
    );
    drop(store);
    let (_store, recovered) = open(dir.path(), 0, 1, 3);
    assert_eq!(
        recovered.dialect_records,
        vec![
            record(2, "carol", "a", b"6"),
            record(3, "bob", "b", b"2'"),
            record(3, "bobby", "a", b"3"),
        ]
    );
}

fn read_one(store: &mut Store) -> Option<MessageRecord> {
    match wait(store, 1).pop() {
        Some(Completion::Message { token: 11, result }) => result.expect("message read"),
        other => panic!("unexpected completion {other:?}"),
    }
}

#[test]
fn messages_are_read_by_id_and_by_room_and_seq() {
    let dir = TempDir::new("by-seq");
    let (mut store, _) = open(dir.path(), 0, 1, 4);
    // Room 1: seqs 1..=40 with sparse, uneven ids (other rooms take ids in between); room 2
    // has one message; room 3 none.
    let mut ops = vec![StoreOp::PutRoom(room(1, "one", 40)), StoreOp::PutRoom(room(2, "two", 1))];
    let mut id = 5;
    let mut ids = Vec::new();
    for seq in 1..=40u64 {
        id += 1 + (seq * 7) % 13;
        ids.push(id);
        ops.push(StoreOp::PutMessage(message(1, id, seq)));
    }
    ops.push(StoreOp::PutMessage(message(2, 3, 1)));
    submit_all(&mut store, vec![ops]);
    for (i, want) in ids.iter().enumerate() {
        store.read_message_by_seq(11, 1, i as u64 + 1).expect("read ring");
        assert_eq!(read_one(&mut store).map(|m| m.id), Some(*want), "seq {}", i + 1);
        store.read_message(11, *want).expect("read ring");
        let found = read_one(&mut store).expect("stored");
        assert_eq!((found.room, found.seq), (1, i as u64 + 1));
    }
    for (room, seq) in [(1, 0), (1, 41), (2, 2), (2, 0), (3, 1)] {
        store.read_message_by_seq(11, room, seq).expect("read ring");
        assert_eq!(read_one(&mut store), None, "room {room} seq {seq}");
    }
    store.read_message_by_seq(11, 2, 1).expect("read ring");
    assert_eq!(read_one(&mut store).map(|m| m.id), Some(3));
    store.read_message(11, 4).expect("read ring");
    assert_eq!(read_one(&mut store), None);
}

/// What a writer killed after logging but before applying leaves: records of the current
/// generation in the log, appended through the log itself.
fn log_by_hand(dir: &Path, batches: &[Vec<StoreOp>]) -> PathBuf {
    let db_path = shard_path(dir, 0);
    let gen = {
        let db = redb::Database::create(&db_path).expect("raw open");
        db::log_gen(&db).expect("meta").expect("a checkpoint recorded a generation")
    };
    let path = log::log_path(&db_path);
    let (mut log, found) = log::Log::open(&path, Some(gen)).expect("log");
    assert!(found.is_empty(), "a clean shutdown leaves nothing to replay");
    log.append(batches.iter()).expect("append");
    path
}

#[test]
fn logged_batches_are_replayed_at_start_and_then_not_again() {
    let dir = TempDir::new("replay");
    let (mut store, _) = open(dir.path(), 0, 1, 10);
    submit_all(&mut store, vec![vec![StoreOp::PutRoom(room(5, "r", 0))]]);
    drop(store);
    log_by_hand(
        dir.path(),
        &[
            vec![StoreOp::PutMessage(message(5, 11, 1))],
            vec![StoreOp::PutMessage(message(5, 12, 2)), member(5, "bob", 0)],
        ],
    );
    let (mut store, recovered) = open(dir.path(), 0, 1, 10);
    assert_eq!(store.metrics().replayed_batches, 2, "both logged batches counted as replayed");
    assert_eq!(store.metrics().log_bytes, 0, "the replay starts the log over");
    assert_eq!(recovered.rooms[0].recent, vec![message(5, 11, 1), message(5, 12, 2)]);
    assert_eq!(recovered.rooms[0].members, vec![("bob".to_string(), 0)]);
    assert_eq!(recovered.max_message_id, 12);
    // A later change to a replayed key is not undone by the old records at the next start.
    let mut edited = message(5, 11, 1);
    edited.text = "edited".into();
    submit_all(
        &mut store,
        vec![vec![
            StoreOp::PutMessage(edited.clone()),
            StoreOp::RemoveMember { room: 5, user: "bob".into() },
        ]],
    );
    let logged = store.metrics();
    assert!(logged.log_bytes > 0, "the committed batch is in the log");
    drop(store);
    let (store, recovered) = open(dir.path(), 0, 1, 10);
    assert_eq!(
        store.metrics().replayed_batches,
        0,
        "the shutdown checkpoint left nothing to replay"
    );
    assert_eq!(recovered.rooms[0].recent, vec![edited, message(5, 12, 2)]);
    assert!(recovered.rooms[0].members.is_empty());
}

#[test]
fn a_torn_or_corrupt_log_record_ends_the_replay_there() {
    for damage in ["torn", "corrupt"] {
        let dir = TempDir::new("torn");
        let (mut store, _) = open(dir.path(), 0, 1, 10);
        submit_all(&mut store, vec![vec![StoreOp::PutRoom(room(6, "r", 0))]]);
        drop(store);
        let batches: Vec<Vec<StoreOp>> =
            (1..=3).map(|i| vec![StoreOp::PutMessage(message(6, 20 + i, i))]).collect();
        let path = log_by_hand(dir.path(), &batches);
        let mut bytes = std::fs::read(&path).expect("read log");
        // Record boundaries from the headers (gen u64, len u32, crc u32, payload).
        let mut ends = Vec::new();
        let mut at = 0;
        for _ in 0..3 {
            let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().expect("4 bytes"));
            at += 16 + len as usize;
            ends.push(at);
        }
        match damage {
            // The last record half written, as a crash during its write leaves it.
            "torn" => bytes[(ends[1] + ends[2]) / 2..ends[2]].fill(0),
            // One byte of the second record's payload flipped: it and all after it are lost.
            _ => bytes[ends[0] + 20] ^= 0x40,
        }
        std::fs::write(&path, &bytes).expect("damage log");
        let (_, recovered) = open(dir.path(), 0, 1, 10);
        let want: Vec<MessageRecord> = match damage {
            "torn" => vec![message(6, 21, 1), message(6, 22, 2)],
            _ => vec![message(6, 21, 1)],
        };
        assert_eq!(recovered.rooms[0].recent, want, "{damage}");
    }
}

#[test]
fn log_records_of_another_generation_are_not_read() {
    let dir = TempDir::new("gen");
    std::fs::create_dir_all(dir.path()).expect("dir");
    let path = dir.path().join("x.log");
    let batch = vec![StoreOp::PutMessage(message(1, 2, 1))];
    let (mut log, found) = log::Log::open(&path, Some(4)).expect("log");
    assert!(found.is_empty());
    log.append([batch.clone(), batch.clone()].iter()).expect("append");
    drop(log);
    let (_, found) = log::Log::open(&path, Some(4)).expect("log");
    assert_eq!(found, vec![batch.clone(), batch.clone()]);
    for gen in [None, Some(3), Some(5)] {
        let (_, found) = log::Log::open(&path, gen).expect("log");
        assert!(found.is_empty(), "generation {gen:?}");
    }
    // A new generation overwrites the start; the old records after it are not read.
    let (mut log, _) = log::Log::open(&path, Some(5)).expect("log");
    log.append([batch.clone()].iter()).expect("append");
    assert_eq!(log.read_back().expect("read back"), vec![batch.clone()]);
    drop(log);
    let (_, found) = log::Log::open(&path, Some(5)).expect("log");
    assert_eq!(found, vec![batch]);
}

#[test]
fn reads_see_every_committed_batch_at_once() {
    let dir = TempDir::new("read-own");
    let (mut store, _) = open(dir.path(), 0, 1, 2);
    submit_all(&mut store, vec![vec![StoreOp::PutRoom(room(8, "r", 0))]]);
    for i in 1..=50u64 {
        submit_all(&mut store, vec![vec![StoreOp::PutMessage(message(8, 100 + i, i))]]);
        // Committed means logged; the read must not miss it while it waits to be applied.
        assert_eq!(message_room(&mut store, 100 + i), Some(8), "message {i}");
        assert_eq!(history(&mut store, 8, None, None, 500).len() as u64, i);
    }
}

#[test]
fn the_message_room_index_spans_blocks_keeps_one_entry_per_message_and_survives_a_restart() {
    let dir = TempDir::new("room-blocks");
    let block = 1u64 << db::MESSAGE_ROOM_BLOCK_BITS;
    let (mut store, _) = open(dir.path(), 0, 1, 2);
    let mut ops = vec![StoreOp::PutRoom(room(1, "one", 0)), StoreOp::PutRoom(room(2, "two", 0))];
    // Ids on both sides of block edges, rooms alternating, one batch per group.
    let ids = [block - 2, block - 1, block, block + 1, 3 * block + 5];
    for (seq, id) in ids.iter().enumerate() {
        ops.push(StoreOp::PutMessage(message(1 + *id % 2, *id, seq as u64 + 1)));
    }
    submit_all(&mut store, vec![ops]);
    // A later group: an edit of an indexed message (same id again), a new id below the block's
    // newest (an id the block lacks), and one far above.
    let mut edited = message(1 + (block - 1) % 2, block - 1, 2);
    edited.text = "edited".into();
    submit_all(
        &mut store,
        vec![vec![
            StoreOp::PutMessage(edited),
            StoreOp::PutMessage(message(2, block + 3, 9)),
            StoreOp::PutMessage(message(1, block - 7, 10)),
        ]],
    );
    let mut want: Vec<(u64, u64)> = ids.iter().map(|id| (*id, 1 + id % 2)).collect();
    want.extend([(block + 3, 2), (block - 7, 1)]);
    for (id, room) in &want {
        assert_eq!(message_room(&mut store, *id), Some(*room), "message {id}");
    }
    for absent in [block - 3, block + 2, 2 * block, 3 * block + 4] {
        assert_eq!(message_room(&mut store, absent), None, "message {absent} was never stored");
    }
    drop(store);
    let (mut store, _) = open(dir.path(), 0, 1, 2);
    for (id, room) in &want {
        assert_eq!(message_room(&mut store, *id), Some(*room), "message {id} after a restart");
    }
    store.read_message(9, block - 1).expect("read ring");
    match wait(&mut store, 1).pop() {
        Some(Completion::Message { result: Ok(Some(m)), .. }) => assert_eq!(m.text, "edited"),
        other => panic!("unexpected completion {other:?}"),
    }
    // The index holds each message once: one block's pairs are 16 bytes each.
    drop(store);
    let db = redb::Database::create(shard_path(dir.path(), 0)).expect("raw open");
    let txn = db.begin_read().expect("read");
    let blocks: redb::TableDefinition<u64, &[u8]> =
        redb::TableDefinition::new("message_room_blocks");
    let table = txn.open_table(blocks).expect("blocks table");
    let first = table.get(0).expect("get").expect("block 0").value().len();
    let second = table.get(1).expect("get").expect("block 1").value().len();
    assert_eq!((first, second), (3 * 16, 3 * 16), "block 0: 3 ids, block 1: 3 ids");
}

#[test]
fn a_deleted_rooms_messages_read_as_absent() {
    let dir = TempDir::new("room-blocks-delete");
    let (mut store, _) = open(dir.path(), 0, 1, 2);
    submit_all(
        &mut store,
        vec![vec![
            StoreOp::PutRoom(room(1, "one", 0)),
            StoreOp::PutRoom(room(2, "two", 0)),
            StoreOp::PutMessage(message(1, 10, 1)),
            StoreOp::PutMessage(message(2, 11, 1)),
        ]],
    );
    submit_all(&mut store, vec![vec![StoreOp::DeleteRoom(1)]]);
    store.read_message(9, 10).expect("read ring");
    assert!(
        matches!(wait(&mut store, 1).pop(), Some(Completion::Message { result: Ok(None), .. })),
        "the deleted room's message is gone"
    );
    assert_eq!(message_room(&mut store, 11), Some(2), "the other room's message stays");
}

#[test]
fn a_schema_1_file_is_read_through_its_old_index_and_marked_2() {
    let dir = TempDir::new("schema-1");
    let (mut store, _) = open(dir.path(), 0, 1, 2);
    submit_all(&mut store, vec![vec![StoreOp::PutRoom(room(1, "one", 0))]]);
    drop(store);
    // What a schema 1 build left: messages indexed one by one in `message_rooms`, none in
    // the blocks, and version 1 in `meta`.
    {
        let db = redb::Database::create(shard_path(dir.path(), 0)).expect("raw open");
        let txn = db.begin_write().expect("write");
        {
            let messages: redb::TableDefinition<(u64, u64), &[u8]> =
                redb::TableDefinition::new("messages");
            let old: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("message_rooms");
            let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
            let mut messages = txn.open_table(messages).expect("messages");
            let mut old = txn.open_table(old).expect("message_rooms");
            for (id, seq) in [(20u64, 1u64), (21, 2)] {
                let bytes =
                    rkyv::to_bytes::<rkyv::rancor::Error>(&message(1, id, seq)).expect("enc");
                messages.insert((1, id), bytes.as_slice()).expect("insert");
                old.insert(id, 1).expect("insert");
            }
            txn.open_table(meta).expect("meta").insert("schema_version", 1).expect("insert");
        }
        txn.commit().expect("commit");
    }
    let (mut store, recovered) = open(dir.path(), 0, 1, 2);
    assert_eq!(recovered.rooms[0].recent.len(), 2);
    assert_eq!(message_room(&mut store, 20), Some(1), "found through the old index");
    submit_all(&mut store, vec![vec![StoreOp::PutMessage(message(1, 22, 3))]]);
    assert_eq!(message_room(&mut store, 22), Some(1), "found through the blocks");
    submit_all(&mut store, vec![vec![StoreOp::DeleteRoom(1)]]);
    assert_eq!(
        message_room(&mut store, 21),
        None,
        "the old index forgets a deleted room's messages"
    );
    drop(store);
    let db = redb::Database::create(shard_path(dir.path(), 0)).expect("raw open");
    let txn = db.begin_read().expect("read");
    let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
    let version = txn.open_table(meta).expect("meta").get("schema_version").expect("get");
    assert_eq!(version.map(|v| v.value()), Some(2), "opened by this build: version 2");
}

/// Polls `cond` (or panics after 30 s).
fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "{what} never happened");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A group is written while the one before it syncs (its sync held at the test gate): nothing
/// is acknowledged before its own sync, completions come in submission order, and with
/// `fail_sync` the held sync fails and both groups are retried in order.
fn pipelined_groups_complete_in_order(fail_sync: bool) {
    let dir = TempDir::new("pipeline");
    let (mut store, _) = open(dir.path(), 0, 1, 100);
    let batch = |t: u64| vec![StoreOp::PutMessage(message(1, 100 + t, t + 1))];
    // A first sync held for a while: the writer wakes to write what arrived after half the
    // last sync's duration, so the next held sync leaves the test ample time to submit.
    store.sync_gate(Some(false));
    store.submit(0, batch(0)).expect("ring");
    until("the first sync", || store.sync_gate(None) == 1);
    std::thread::sleep(Duration::from_millis(200));
    assert!(store.drain_completions_now().is_empty(), "acknowledged before its sync");
    store.sync_gate(Some(true));
    assert_eq!(wait(&mut store, 1), vec![Completion::Written { token: 0, result: Ok(()) }]);

    store.sync_gate(Some(false));
    if fail_sync {
        store.fail_next_syncs(1);
    }
    store.submit(1, batch(1)).expect("ring");
    until("the second sync", || store.sync_gate(None) == 2);
    for t in 2..6 {
        store.submit(t, batch(t)).expect("ring");
    }
    until("a group written behind the syncing one", || store.pipelined_groups() == 1);
    // At most one group syncing and one written: these wait in the ring.
    for t in 6..8 {
        store.submit(t, batch(t)).expect("ring");
    }
    assert!(store.drain_completions_now().is_empty(), "acknowledged before its sync");
    assert_eq!(store.pipelined_groups(), 1);
    store.sync_gate(Some(true));
    let written: Vec<Completion> = wait(&mut store, 7);
    let expected: Vec<Completion> =
        (1..8).map(|token| Completion::Written { token, result: Ok(()) }).collect();
    assert_eq!(written, expected, "once each, in order");
    let m = store.metrics();
    assert_eq!(m.commit_failures, u64::from(fail_sync));
    assert_eq!(m.batches, 8);
    assert!(store.is_healthy());
    drop(store);
    let (_, recovered) = open(dir.path(), 0, 1, 100);
    assert_eq!(recovered.max_message_id, 107);
}

#[test]
fn a_group_is_written_while_the_one_before_syncs_and_acknowledged_after_its_own_sync() {
    pipelined_groups_complete_in_order(false);
}

#[test]
fn a_failed_sync_retries_the_syncing_and_the_written_group_in_order() {
    pipelined_groups_complete_in_order(true);
}

#[test]
fn a_failed_apply_on_the_apply_thread_is_retried_from_the_log() {
    let dir = TempDir::new("apply-fail");
    let (mut store, _) = open(dir.path(), 0, 1, 100);
    store.fail_next_applies(1);
    let n = crate::limits::STORE_APPLY_OPS as u64 + 100;
    // One op per batch: more than STORE_APPLY_OPS of them start an apply, which fails.
    submit_all(
        &mut store,
        (0..n).map(|i| vec![StoreOp::PutMessage(message(1, 100 + i, i + 1))]).collect(),
    );
    // The writer retries from the log: a checkpoint that applies every logged batch.
    until("the apply retried from the log", || {
        let m = store.metrics();
        m.commit_failures == 1 && m.checkpoints >= 1 && m.healthy
    });
    // Every acknowledged write is readable, the first and the last.
    assert_eq!(message_room(&mut store, 100), Some(1));
    assert_eq!(message_room(&mut store, 100 + n - 1), Some(1));
    assert_eq!(store.metrics().unapplied_batches, 0);
    // The writer works normally afterwards.
    submit_all(&mut store, vec![vec![StoreOp::PutMessage(message(1, 100 + n, n + 1))]]);
    drop(store);
    let (_, recovered) = open(dir.path(), 0, 1, 100);
    assert_eq!(recovered.max_message_id, 100 + n);
}
