//! BIG's unacknowledged events survive a restart: the real binary is killed with `kill -9` and
//! started again on the same data directory; a reconnecting BIG client gets every event it had
//! not acknowledged (same ids, same frames), never one it had, and the per-user bound holds
//! (a coalesced or evicted event does not come back, an overflow empties the user's store).
//! A room event a client got survives a crash the moment after (its record is committed
//! before it is sent).

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::*;
use tokio_tungstenite::tungstenite::Message;

/// Starts the binary on `data_dir` with 2 shards, resending every 60 s (so what a client gets
/// at once comes from its reconnect) and at most `unacked_max` events per user.
fn spawn_server(data_dir: &std::path::Path, unacked_max: usize) -> Process {
    let unacked_max = unacked_max.to_string();
    let big = ["--big-resend-ms", "60000", "--big-unacked-max", &unacked_max];
    spawn_server_process(data_dir, &[&["--shards", "2"][..], &big].concat())
}

fn kill9(mut process: Process) {
    // SAFETY: sends SIGKILL to our own child process.
    unsafe { libc::kill(process.child.id() as i32, libc::SIGKILL) };
    let _ = process.child.wait();
}

/// Kills the server once what it was told is committed, and starts it again on `dir`.
async fn restart(process: Process, dir: &TempDir, unacked_max: usize) -> Process {
    // An event reaches a client only once its record is committed, but an ack's deletion of
    // it follows the ack by a ring hop and one group commit (milliseconds; a loaded machine
    // can take far longer).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    kill9(process);
    spawn_server(&dir.0, unacked_max)
}

/// Waits (at most 10 s) until `user`'s owner lists `count` rooms. After a restart the room
/// owners tell the user owners their members' rooms (`RoomJoined`); a BIG socket opened before
/// that news gets a fresh chat list when it arrives, which the per-user bound counts: the
/// bound tests open their sockets after it.
async fn rooms_known(addr: SocketAddr, user: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = call(addr, "GET", "/api/v1/rooms", Some(&user_token(user)), None).await;
        let listed =
            if r.status == 200 { r.json()["rooms"].as_array().map_or(0, Vec::len) } else { 0 };
        if listed >= count {
            return;
        }
        assert!(Instant::now() < deadline, "{user}'s owner never listed {count} rooms");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn big(addr: SocketAddr, user: &str) -> Ws {
    ws_connect(addr, "/websocket", Auth::Header(&user_token(user))).await.expect("big connect").0
}

/// Opens a BIG socket for `user` and waits until its user owner knows it is connected: a
/// request's answer comes through that owner, on the same ring as the socket's registration.
/// (Before that, a room created for the user could be told it has no BIG connection.)
async fn big_ready(addr: SocketAddr, user: &str) -> Ws {
    let mut ws = big(addr, user).await;
    send(&mut ws, json!({"type": "request", "id": "ready", "payloadType": "chats"})).await;
    while next_json(&mut ws).await["id"] != "ready" {}
    ws
}

async fn send(ws: &mut Ws, value: Value) {
    ws.send(Message::text(value.to_string())).await.expect("send");
}

async fn new_message(ws: &mut Ws, id: &str, chat: &str, text: &str) {
    let payload = json!({"chatId": chat, "message": text});
    send(ws, json!({"type": "request", "id": id, "payloadType": "new", "payload": payload})).await;
    loop {
        let frame = next_json(ws).await;
        if frame["type"] == "response" && frame["id"] == id {
            return;
        }
        assert!(frame.get("error").is_none(), "{frame}");
    }
}

async fn next_event(ws: &mut Ws, event_type: &str) -> Value {
    loop {
        let frame = next_json(ws).await;
        if frame["type"] == "event" && frame["eventType"] == event_type {
            return frame;
        }
    }
}

/// `events` without the chat lists made after the restart: a user owner that learns of the
/// user's rooms (`RoomJoined` at start) after the user reconnected sends a fresh list, whose id
/// none of `before` has.
fn without_fresh_lists(events: Vec<Value>, before: &[Value]) -> Vec<Value> {
    let known = |e: &Value| before.iter().any(|b| b["id"] == e["id"]);
    events.into_iter().filter(|e| e["eventType"] != "chats" || known(e)).collect()
}

async fn ack(ws: &mut Ws, id: &Value) {
    send(ws, json!({"type": "ack", "id": id})).await;
}

#[tokio::test]
async fn unacknowledged_events_are_resent_after_a_restart_with_the_same_ids() {
    let dir = TempDir::new();
    let server = spawn_server(&dir.0, 256);
    let mut alice = big(server.addr, "alice").await;
    let mut bob = big_ready(server.addr, "bob").await;
    new_message(&mut alice, "1", "bob", "before the crash").await;
    let chats = next_event(&mut bob, "chats").await;
    let new = next_event(&mut bob, "new").await;
    assert_eq!(chats["payload"][0]["id"], "alice", "{chats}");

    let server = restart(server, &dir, 256).await;
    let mut bob = big(server.addr, "bob").await;
    assert_eq!(next_event(&mut bob, "chats").await, chats);
    assert_eq!(next_event(&mut bob, "new").await, new, "the same frame, id and all");
    close(bob).await;
}

#[tokio::test]
async fn acknowledged_events_are_not_resent_after_a_restart() {
    let dir = TempDir::new();
    let server = spawn_server(&dir.0, 256);
    let mut alice = big(server.addr, "alice").await;
    let mut bob = big_ready(server.addr, "bob").await;
    new_message(&mut alice, "1", "bob", "seen").await;
    let chats = next_event(&mut bob, "chats").await;
    let new = next_event(&mut bob, "new").await;
    ack(&mut bob, &new["id"]).await;

    // Only the list comes back.
    let server = restart(server, &dir, 256).await;
    let mut bob = big(server.addr, "bob").await;
    let events = events_within(&mut bob, 1500).await;
    assert!(events.iter().all(|e| e["id"] != new["id"]), "acked, not re-sent: {events:?}");
    assert!(events.contains(&chats), "the unacknowledged list is re-sent: {events:?}");
    // Acknowledged after the restart: gone for good.
    for event in &events {
        ack(&mut bob, &event["id"]).await;
    }

    let server = restart(server, &dir, 256).await;
    let mut bob = big(server.addr, "bob").await;
    let again = without_fresh_lists(events_within(&mut bob, 1500).await, &events);
    assert!(again.is_empty(), "everything was acknowledged: {again:?}");
    close(bob).await;
}

#[tokio::test]
async fn the_per_user_bound_holds_across_restarts() {
    let dir = TempDir::new();
    let server = spawn_server(&dir.0, 3);
    let mut alice = big(server.addr, "alice").await;
    let mut bob = big_ready(server.addr, "bob").await;
    new_message(&mut alice, "0", "bob", "m0").await;
    let chats = next_event(&mut bob, "chats").await;
    let mut news = vec![next_event(&mut bob, "new").await];
    // Kept: the list, m0, m1; then m2 evicts the list (the oldest coalescable event).
    for i in 1..3 {
        new_message(&mut alice, &i.to_string(), "bob", &format!("m{i}")).await;
        news.push(next_event(&mut bob, "new").await);
    }

    let server = restart(server, &dir, 3).await;
    rooms_known(server.addr, "bob", 1).await;
    let mut bob = big(server.addr, "bob").await;
    let mut before = news.clone();
    before.push(chats);
    let events = without_fresh_lists(events_within(&mut bob, 1500).await, &before);
    assert_eq!(events, news, "exactly the three kept events, oldest first");

    // One more (alice's `online` as she connects) is past the bound: overflow, and the user's
    // store is emptied, on disk too.
    let alice = big(server.addr, "alice").await;
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(5), bob.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => {}
            other => panic!("no close: {other:?}"),
        }
    };
    assert_eq!(code, Some(1008));

    // Alice stays until the crash (her `offline` would be a new event for bob).
    let server = restart(server, &dir, 3).await;
    drop(alice);
    rooms_known(server.addr, "bob", 1).await;
    let mut bob = big(server.addr, "bob").await;
    let events = without_fresh_lists(events_within(&mut bob, 1500).await, &before);
    assert!(events.is_empty(), "the overflow emptied the store: {events:?}");
    close(bob).await;
}

#[tokio::test]
async fn a_lower_bound_after_a_restart_keeps_only_the_newest_events() {
    let dir = TempDir::new();
    let server = spawn_server(&dir.0, 256);
    let mut alice = big(server.addr, "alice").await;
    let mut bob = big_ready(server.addr, "bob").await;
    new_message(&mut alice, "0", "bob", "m0").await;
    let chats = next_event(&mut bob, "chats").await;
    let mut news = vec![next_event(&mut bob, "new").await];
    for i in 1..4 {
        new_message(&mut alice, &i.to_string(), "bob", &format!("m{i}")).await;
        news.push(next_event(&mut bob, "new").await);
    }
    ack(&mut bob, &chats["id"]).await;
    ack(&mut bob, &news[3]["id"]).await;

    // Kept: m0, m1, m2. Restarted with room for two: the two newest, oldest first.
    let server = restart(server, &dir, 2).await;
    rooms_known(server.addr, "bob", 1).await;
    let mut bob = big(server.addr, "bob").await;
    let mut before = news.clone();
    before.push(chats);
    let events = without_fresh_lists(events_within(&mut bob, 1500).await, &before);
    assert_eq!(events, news[1..3], "{events:?}");
    close(bob).await;
    drop(alice);
}

#[tokio::test]
async fn a_room_event_a_client_got_survives_a_crash_the_moment_after() {
    let dir = TempDir::new();
    let server = spawn_server(&dir.0, 256);
    let mut alice = big(server.addr, "alice").await;
    let mut bob = big_ready(server.addr, "bob").await;
    let mut carol = big_ready(server.addr, "carol").await;
    new_message(&mut alice, "0", "bob", "open the dialog").await;
    // A group too: its `new`s go to two recipients.
    let r = call(
        server.addr,
        "POST",
        "/api/v1/rooms",
        Some(&user_token("alice")),
        Some(json!({"kind": "group", "members": ["bob", "carol"]})),
    )
    .await;
    assert_eq!(r.status, 201);
    let group = r.json()["room"]["id"].as_u64().unwrap().to_string();
    // Once the group is in their chat lists, their sockets are subscribed to it.
    for ws in [&mut bob, &mut carol] {
        loop {
            let chats = next_event(ws, "chats").await;
            let items = chats["payload"].as_array().cloned().unwrap_or_default();
            if items.iter().any(|c| c["id"].as_str() == Some(&group)) {
                break;
            }
        }
    }
    for i in 1..=5 {
        new_message(&mut alice, &format!("d{i}"), "bob", &format!("dialog {i}")).await;
        new_message(&mut alice, &format!("g{i}"), &group, &format!("group {i}")).await;
    }
    // Every `new` each got since (none acknowledged); the server dies the moment the last
    // arrives.
    let got = [distinct_news(&mut bob, 10).await, distinct_news(&mut carol, 5).await];
    kill9(server);

    let server = spawn_server(&dir.0, 256);
    for (user, got) in [("bob", &got[0]), ("carol", &got[1])] {
        assert!(!got.is_empty(), "{user}");
        let mut ws = big(server.addr, user).await;
        // Each comes back, the same frame, id and all (bob also gets the dialog's first).
        let mut again = Vec::new();
        while again.len() < got.len() {
            let event = next_event(&mut ws, "new").await;
            if got.contains(&event) && !again.contains(&event) {
                again.push(event);
            }
        }
        close(ws).await;
    }
}

/// The first `n` distinct `new` events on `ws`.
async fn distinct_news(ws: &mut Ws, n: usize) -> Vec<Value> {
    let mut got = Vec::new();
    while got.len() < n {
        let event = next_event(ws, "new").await;
        if !got.contains(&event) {
            got.push(event);
        }
    }
    got
}
