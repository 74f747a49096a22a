//! Messages older than the in-memory window (`history_per_room_max` = 3 here): REST and BIG
//! edits and deletions of them, BIG's seq lookups and `messages` from the first message, the
//! events each dialect's peers get, non-members refused, and a restart keeping it all. Also
//! the direct-room pair index: concurrent BIG `new`s of two users to each other make one room.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::SinkExt;
use serde_json::{json, Value};
use support::*;
use tokio_tungstenite::tungstenite::Message;

const WINDOW: usize = 3;

/// A server with a window of [`WINDOW`] messages per room on `dir`.
fn start_on(dir: &TempDir, shards: usize) -> roomcast::ServerHandle {
    let mut c = support::config(shards);
    c.data_dir = dir.0.clone();
    c.history_per_room_max = WINDOW;
    // Concurrent REST requests from one address (the race tests).
    c.http_connections_per_ip_max = 1024;
    roomcast::start(c).expect("server starts")
}

async fn big(addr: SocketAddr, user: &str) -> Ws {
    ws_connect(addr, "/websocket", Auth::Header(&user_token(user))).await.expect("big connect").0
}

async fn request(ws: &mut Ws, id: &str, payload_type: &str, payload: Value) -> Value {
    let frame =
        json!({"type": "request", "id": id, "payloadType": payload_type, "payload": payload});
    ws.send(Message::text(frame.to_string())).await.expect("send");
    loop {
        let frame = next_json(ws).await;
        if (frame["type"] == "response" && frame["id"] == id) || frame.get("error").is_some() {
            return frame;
        }
    }
}

async fn ok(ws: &mut Ws, id: &str, payload_type: &str, payload: Value) -> Value {
    let r = request(ws, id, payload_type, payload).await;
    assert_eq!(r["type"], "response", "{r}");
    r["payload"].clone()
}

async fn next_event(ws: &mut Ws, event_type: &str) -> Value {
    loop {
        let frame = next_json(ws).await;
        if frame["type"] == "event" && frame["eventType"] == event_type {
            return frame;
        }
    }
}

fn seqs(page: &Value) -> Vec<u64> {
    page.as_array().expect("a page").iter().map(|m| m["messageId"].as_u64().unwrap()).collect()
}

async fn edit(addr: SocketAddr, user: &str, id: u64, text: &str) -> HttpResponse {
    let path = format!("/api/v1/messages/{id}");
    call(addr, "PATCH", &path, Some(&user_token(user)), Some(json!({"text": text}))).await
}

async fn delete(addr: SocketAddr, user: &str, id: u64) -> HttpResponse {
    call(addr, "DELETE", &format!("/api/v1/messages/{id}"), Some(&user_token(user)), None).await
}

#[tokio::test]
async fn rest_edits_and_deletes_messages_older_than_the_window_and_a_restart_keeps_them() {
    let dir = TempDir::new();
    let handle = start_on(&dir, 2);
    let addr = handle.addr;
    let room = create_room(addr, "old", &["alice", "bob"]).await;
    let mut bob = virola(addr, "bob").await;
    let mut ids = Vec::new();
    for i in 1..=10 {
        ids.push(post_message(addr, room, "alice", &format!("m{i}")).await["id"].as_u64().unwrap());
    }

    // Not a member: 404, as for a message in the window; a member but not the author: 403.
    assert_eq!(edit(addr, "mallory", ids[0], "x").await.status, 404);
    assert_eq!(delete(addr, "mallory", ids[0]).await.status, 404);
    assert_eq!(edit(addr, "bob", ids[0], "x").await.status, 403);
    assert_eq!(edit(addr, "alice", 999_999_998, "x").await.status, 404);

    let r = edit(addr, "alice", ids[0], "m1, edited").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["message"]["text"], "m1, edited");
    let updated = next_of(&mut bob, "TextMessagesUpdated").await;
    assert_eq!(updated["data"]["messages"][0]["messageId"], ids[0]);
    assert_eq!(updated["data"]["messages"][0]["text"], "m1, edited");
    // A second edit builds on the first (the owner's newest version, not a stale read).
    assert_eq!(edit(addr, "alice", ids[0], "m1, edited twice").await.status, 200);
    next_of(&mut bob, "TextMessagesUpdated").await;

    assert_eq!(delete(addr, "alice", ids[1]).await.status, 204);
    let gone = next_of(&mut bob, "TextMessageDeleted").await;
    assert_eq!(gone["data"], json!({"parentMessageId": 0, "roomId": room, "messageId": ids[1]}));
    // Deleted: gone for edits and deletions, never resurrected.
    assert_eq!(delete(addr, "alice", ids[1]).await.status, 404);
    assert_eq!(edit(addr, "alice", ids[1], "back").await.status, 404);

    let token = user_token("bob");
    let texts = history_texts(addr, room, &token, "after=0&limit=3").await;
    assert_eq!(texts, ["m1, edited twice", "m3", "m4"]);
    close(bob).await;
    handle.shutdown();

    let handle = start_on(&dir, 2);
    let addr = handle.addr;
    let texts = history_texts(addr, room, &token, "after=0&limit=3").await;
    assert_eq!(texts, ["m1, edited twice", "m3", "m4"], "edits and deletions survive");
    assert_eq!(edit(addr, "alice", ids[2], "m3, after the restart").await.status, 200);
    assert_eq!(delete(addr, "alice", ids[1]).await.status, 404);
    let texts = history_texts(addr, room, &token, "after=0&limit=2").await;
    assert_eq!(texts, ["m1, edited twice", "m3, after the restart"]);
    handle.shutdown();
}

#[tokio::test]
async fn big_edits_deletes_and_pages_by_seq_older_than_the_window() {
    let dir = TempDir::new();
    let handle = start_on(&dir, 2);
    let addr = handle.addr;
    let mut alice = big(addr, "alice").await;
    let mut bob = big(addr, "bob").await;
    for i in 1..=10 {
        let sent = ok(
            &mut alice,
            &format!("n{i}"),
            "new",
            json!({"chatId": "bob", "message": format!("m{i}")}),
        )
        .await;
        assert_eq!(sent["messageId"], i);
    }
    let mut bob_virola = virola(addr, "bob").await;

    let edited = ok(
        &mut alice,
        "e1",
        "edit",
        json!({"chatId": "bob", "originalMessageId": 1, "message": "m1!"}),
    )
    .await;
    assert_eq!(edited["messageId"], 1);
    // BIG has no edit event; bob's Virola socket gets the update.
    let updated = next_of(&mut bob_virola, "TextMessagesUpdated").await;
    assert_eq!(updated["data"]["messages"][0]["text"], "m1!");

    ok(&mut alice, "d2", "delete", json!({"chatId": "bob", "originalMessageId": 2})).await;
    let deleted = next_event(&mut bob, "delete").await;
    assert_eq!(deleted["payload"]["chatId"], "alice");
    assert_eq!(deleted["payload"]["originalMessageId"], 2);
    next_of(&mut bob_virola, "TextMessageDeleted").await;

    // Pages from the very beginning, by startId and by endId.
    let from =
        ok(&mut bob, "p1", "messages", json!({"chatId": "alice", "startId": 1, "count": 3})).await;
    assert_eq!(seqs(&from), [1, 3, 4]);
    assert_eq!(from[0]["message"], "m1!");
    let until =
        ok(&mut bob, "p2", "messages", json!({"chatId": "alice", "endId": 3, "count": 5})).await;
    assert_eq!(seqs(&until), [1, 3]);
    // Bob may not edit alice's message; unknown seqs are BIG's own error.
    let r = request(
        &mut bob,
        "e2",
        "edit",
        json!({"chatId": "alice", "originalMessageId": 3, "message": "x"}),
    )
    .await;
    assert!(r.get("error").is_some(), "{r}");
    let r = request(
        &mut alice,
        "e3",
        "edit",
        json!({"chatId": "bob", "originalMessageId": 11, "message": "x"}),
    )
    .await;
    assert!(r["error"]["exception"].as_str().unwrap().contains("messageId is not exists"), "{r}");
    close(alice).await;
    close(bob).await;
    close(bob_virola).await;
    handle.shutdown();

    let handle = start_on(&dir, 2);
    let mut bob = big(handle.addr, "bob").await;
    let from =
        ok(&mut bob, "p1", "messages", json!({"chatId": "alice", "startId": 1, "count": 2})).await;
    assert_eq!(seqs(&from), [1, 3]);
    assert_eq!(from[0]["message"], "m1!", "the edit survives a restart");
    close(bob).await;
    handle.shutdown();
}

/// The ids of `user`'s direct rooms, over REST.
async fn direct_rooms(addr: SocketAddr, user: &str) -> Vec<u64> {
    let r = call(addr, "GET", "/api/v1/rooms", Some(&user_token(user)), None).await;
    assert_eq!(r.status, 200);
    let body = r.json();
    let rooms = body["rooms"].as_array().expect("rooms").clone();
    rooms.iter().filter(|r| r["kind"] == "direct").map(|r| r["id"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn concurrent_dialog_openings_make_one_direct_room_and_a_restart_keeps_it() {
    let dir = TempDir::new();
    let handle = start_on(&dir, 2);
    let addr = handle.addr;
    for round in 0..4 {
        let (a, b) = (format!("a{round}"), format!("b{round}"));
        // Several sockets each (the kernel spreads them over both shards), all sending at once.
        let mut tasks = Vec::new();
        for i in 0..6 {
            let (me, peer) =
                if i % 2 == 0 { (a.clone(), b.clone()) } else { (b.clone(), a.clone()) };
            tasks.push(tokio::spawn(async move {
                let mut ws = big(addr, &me).await;
                let r =
                    ok(&mut ws, "1", "new", json!({"chatId": peer, "message": format!("hi {i}")}))
                        .await;
                close(ws).await;
                r
            }));
        }
        for task in tasks {
            task.await.expect("opener");
        }
        let rooms = direct_rooms(addr, &a).await;
        assert_eq!(rooms.len(), 1, "one direct room for {a} and {b}: {rooms:?}");
        assert_eq!(direct_rooms(addr, &b).await, rooms);
        // REST asks for the same pair: the existing room, 200.
        let r = call(
            addr,
            "POST",
            "/api/v1/rooms",
            Some(&user_token(&a)),
            Some(json!({"kind": "direct", "members": [b]})),
        )
        .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["room"]["id"], rooms[0]);
    }
    let before = direct_rooms(addr, "a0").await;
    handle.shutdown();

    let handle = start_on(&dir, 2);
    let addr = handle.addr;
    let mut ws = big(addr, "b0").await;
    ok(&mut ws, "1", "new", json!({"chatId": "a0", "message": "after the restart"})).await;
    close(ws).await;
    let r = call(
        addr,
        "POST",
        "/api/v1/rooms",
        Some(&service_token()),
        Some(json!({"kind": "direct", "members": ["b0", "a0"]})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(direct_rooms(addr, "a0").await, before);
    tokio::time::sleep(Duration::from_millis(10)).await;
    handle.shutdown();
}

#[tokio::test]
async fn a_member_that_would_give_a_pair_a_second_direct_room_is_refused() {
    let server = start(1);
    let addr = server.addr;
    let create = |token: String, members: Value| async move {
        let body = json!({"kind": "direct", "members": members});
        call(addr, "POST", "/api/v1/rooms", Some(&token), Some(body)).await
    };
    let put = |room: u64, user: &'static str| async move {
        let path = format!("/api/v1/rooms/{room}/members/{user}");
        call(addr, "PUT", &path, Some(&service_token()), None).await.status
    };
    let r = create(user_token("x"), json!(["y"])).await;
    assert_eq!(r.status, 201);
    let dialog = r.json()["room"]["id"].as_u64().unwrap();
    // x alone: x's room with itself, another pair.
    let r = create(service_token(), json!(["x"])).await;
    assert_eq!(r.status, 201);
    let alone = r.json()["room"]["id"].as_u64().unwrap();
    assert_ne!(alone, dialog);
    // Adding y would make a second room of (x, y).
    assert_eq!(put(alone, "y").await, 409);
    // Once y has left the dialog, the pair is free again, and the other room takes it.
    let path = format!("/api/v1/rooms/{dialog}/members/y");
    assert_eq!(call(addr, "DELETE", &path, Some(&user_token("y")), None).await.status, 204);
    assert_eq!(put(alone, "y").await, 200);
    let r = create(user_token("y"), json!(["x"])).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["room"]["id"], alone);
}

/// Posts `text` as `user` in `room`, a comment on `parent`.
async fn comment(addr: SocketAddr, room: u64, user: &str, parent: u64, text: &str) -> HttpResponse {
    let path = format!("/api/v1/rooms/{room}/messages");
    let body = json!({"text": text, "parent_id": parent});
    call(addr, "POST", &path, Some(&user_token(user)), Some(body)).await
}

/// The comment count of message `id` of `room`, as history (from the store) shows it.
async fn comment_count(addr: SocketAddr, room: u64, id: u64) -> u64 {
    let path = format!("/api/v1/rooms/{room}/messages?after={}&limit=1", id - 1);
    let r = call(addr, "GET", &path, Some(&service_token()), None).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let body = r.json();
    assert_eq!(body["messages"][0]["id"], id, "{body}");
    body["messages"][0]["comment_count"].as_u64().expect("comment_count")
}

#[tokio::test]
async fn comments_on_a_message_older_than_the_window_count_on_it_across_a_restart() {
    let dir = TempDir::new();
    let handle = start_on(&dir, 2);
    let addr = handle.addr;
    let room = create_room(addr, "comments", &["alice", "bob"]).await;
    let mut bob = virola(addr, "bob").await;
    let parent = post_message(addr, room, "alice", "the topic").await["id"].as_u64().unwrap();
    for i in 0..WINDOW {
        post_message(addr, room, "alice", &format!("filler {i}")).await;
    }
    // Out of the window now; commenting on it still works, and counts.
    let r = comment(addr, room, "bob", parent, "a late reply").await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let reply = r.json()["message"]["id"].as_u64().unwrap();
    assert_eq!(r.json()["message"]["parent_id"], parent);
    // The members see the parent updated, as for a parent in the window.
    let updated = loop {
        let event = next_of(&mut bob, "TextMessagesUpdated").await;
        if event["data"]["messages"][0]["messageId"] == parent {
            break event;
        }
    };
    assert_eq!(updated["data"]["messages"][0]["commentCount"], 1);
    assert_eq!(comment_count(addr, room, parent).await, 1);
    assert_eq!(comment(addr, room, "alice", parent, "another").await.status, 201);
    assert_eq!(comment_count(addr, room, parent).await, 2);
    // No such parent, or another room's: 404 as before.
    assert_eq!(comment(addr, room, "bob", 999_999_998, "x").await.status, 404);
    let other = create_room(addr, "other", &["bob"]).await;
    assert_eq!(comment(addr, other, "bob", parent, "x").await.status, 404);
    // A deleted parent takes no comment.
    let gone = post_message(addr, room, "alice", "soon gone").await["id"].as_u64().unwrap();
    for i in 0..WINDOW {
        post_message(addr, room, "alice", &format!("more {i}")).await;
    }
    assert_eq!(delete(addr, "alice", gone).await.status, 204);
    assert_eq!(comment(addr, room, "bob", gone, "x").await.status, 404);
    close(bob).await;
    handle.shutdown();

    let handle = start_on(&dir, 2);
    let addr = handle.addr;
    assert_eq!(comment_count(addr, room, parent).await, 2);
    assert_eq!(comment(addr, room, "bob", parent, "after the restart").await.status, 201);
    assert_eq!(comment_count(addr, room, parent).await, 3);
    assert_eq!(delete(addr, "bob", reply).await.status, 204);
    assert_eq!(comment_count(addr, room, parent).await, 2);
    handle.shutdown();
}

#[tokio::test]
async fn deleting_a_comment_lowers_its_parents_count_when_the_parent_is_older_than_the_window() {
    let dir = TempDir::new();
    let handle = start_on(&dir, 2);
    let addr = handle.addr;
    let room = create_room(addr, "uncount", &["alice", "bob"]).await;
    let mut alice = virola(addr, "alice").await;
    let parent = post_message(addr, room, "alice", "the topic").await["id"].as_u64().unwrap();
    let id_of = |r: HttpResponse| {
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        r.json()["message"]["id"].as_u64().unwrap()
    };
    // Two comments while the parent is in the window.
    let old_comment = id_of(comment(addr, room, "bob", parent, "first").await);
    let new_comment = id_of(comment(addr, room, "bob", parent, "second").await);
    assert_eq!(comment_count(addr, room, parent).await, 2);
    // One filler: the parent and the first comment leave the window, the second stays.
    post_message(addr, room, "alice", "filler").await;

    // A comment in the window, its parent not: the parent counts one fewer.
    assert_eq!(delete(addr, "bob", new_comment).await.status, 204);
    assert_eq!(comment_count(addr, room, parent).await, 1);
    let updated = loop {
        let event = next_of(&mut alice, "TextMessagesUpdated").await;
        if event["data"]["messages"][0]["messageId"] == parent {
            break event;
        }
    };
    assert_eq!(updated["data"]["messages"][0]["commentCount"], 1);
    // A comment older than the window too.
    assert_eq!(delete(addr, "bob", old_comment).await.status, 204);
    assert_eq!(comment_count(addr, room, parent).await, 0);
    close(alice).await;
    handle.shutdown();

    let handle = start_on(&dir, 2);
    assert_eq!(comment_count(handle.addr, room, parent).await, 0, "stored");
    handle.shutdown();
}

/// A server whose window is bounded by bytes (`history_bytes_per_room_max`) long before its
/// count: a few messages of up to 4 KiB.
fn start_byte_bounded(dir: &TempDir) -> roomcast::ServerHandle {
    let mut c = support::config(2);
    c.data_dir = dir.0.clone();
    c.stored_message_bytes_max = 4096;
    c.history_page_bytes_max = 64 << 10;
    c.history_per_room_max = 1000;
    c.history_bytes_per_room_max = 8192;
    roomcast::start(c).expect("server starts")
}

/// One history page's (id, text) pairs.
async fn page(addr: SocketAddr, room: u64, query: &str) -> Vec<(u64, String)> {
    let path = format!("/api/v1/rooms/{room}/messages?{query}");
    let r = call(addr, "GET", &path, Some(&service_token()), None).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let body = r.json();
    let messages = body["messages"].as_array().expect("messages").clone();
    messages
        .iter()
        .map(|m| (m["id"].as_u64().unwrap(), m["text"].as_str().unwrap().into()))
        .collect()
}

/// The sum over shards of counter `name` in `/metrics`.
async fn metric_sum(addr: SocketAddr, name: &str) -> u64 {
    let r = call(addr, "GET", "/metrics", None, None).await;
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let prefix = format!("roomcast_{name}{{");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Every message of `room`, paged forward and then back in pages of `limit`, both ascending.
async fn all_both_ways(addr: SocketAddr, room: u64, limit: usize) -> [Vec<(u64, String)>; 2] {
    let mut forward = Vec::new();
    let mut after = 0;
    loop {
        let got = page(addr, room, &format!("after={after}&limit={limit}")).await;
        let Some(last) = got.last() else { break };
        after = last.0;
        forward.extend(got);
    }
    let mut back = Vec::new();
    let mut before = u64::MAX / 2;
    loop {
        let got = page(addr, room, &format!("before={before}&limit={limit}")).await;
        let Some(first) = got.first() else { break };
        before = first.0;
        back.splice(0..0, got);
    }
    [forward, back]
}

#[tokio::test]
async fn history_is_complete_and_in_order_across_a_byte_bounded_window_and_a_restart() {
    let dir = TempDir::new();
    let handle = start_byte_bounded(&dir);
    let addr = handle.addr;
    let room = create_room(addr, "bytes", &["alice"]).await;
    let mut posted = Vec::new();
    for i in 0..40 {
        // 100 to 3 000 bytes: the window holds two to a dozen of them.
        let text = format!("m{i}:{}", "x".repeat(100 + (i * 773) % 2900));
        let id = post_message(addr, room, "alice", &text).await["id"].as_u64().unwrap();
        posted.push((id, text));
    }
    assert!(
        metric_sum(addr, "history_window_byte_evictions_total").await >= 25,
        "the byte bound evicts messages the count bound (1000) would keep"
    );
    for limit in [1, 3, 7, 500] {
        let [forward, back] = all_both_ways(addr, room, limit).await;
        assert_eq!(forward, posted, "forward in pages of {limit}");
        assert_eq!(back, posted, "back in pages of {limit}");
    }
    // A message the byte bound evicted is edited through the store.
    let r = edit(addr, "alice", posted[30].0, "m30, edited").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    posted[30].1 = "m30, edited".into();
    handle.shutdown();

    // The window rebuilt at start keeps to the byte bound, and history is still whole.
    let handle = start_byte_bounded(&dir);
    let addr = handle.addr;
    let [forward, back] = all_both_ways(addr, room, 5).await;
    assert_eq!(forward, posted);
    assert_eq!(back, posted);
    let text = "m40: after the restart".to_string();
    let id = post_message(addr, room, "alice", &text).await["id"].as_u64().unwrap();
    posted.push((id, text));
    assert_eq!(all_both_ways(addr, room, 500).await, [posted.clone(), posted]);
    handle.shutdown();
}

/// Two users `x`, `y` whose pair's shard (of 2) is not the shard of `x` alone, so a room of `x`
/// alone is owned by one shard and the pair (x, y) by the other.
fn users_whose_pair_is_on_the_other_shard(tag: &str) -> (String, String) {
    use roomcast::model::ids::shard_of_pair;
    use roomcast::model::UserId;
    for i in 0..100 {
        let (x, y) = (format!("{tag}x{i}"), format!("{tag}y{i}"));
        let (ux, uy) = (UserId::new(&x), UserId::new(&y));
        if shard_of_pair(&ux, &ux, 2) != shard_of_pair(&ux, &uy, 2) {
            return (x, y);
        }
    }
    panic!("no such pair of users");
}

async fn create_direct(addr: SocketAddr, token: &str, members: Value) -> HttpResponse {
    let body = json!({"kind": "direct", "members": members});
    call(addr, "POST", "/api/v1/rooms", Some(token), Some(body)).await
}

async fn put_member(addr: SocketAddr, room: u64, user: &str) -> u16 {
    let path = format!("/api/v1/rooms/{room}/members/{user}");
    call(addr, "PUT", &path, Some(&service_token()), None).await.status
}

#[tokio::test]
async fn a_room_completed_through_another_shard_is_its_pairs_direct_room_across_a_restart() {
    let (x, y) = users_whose_pair_is_on_the_other_shard("done");
    let dir = TempDir::new();
    let handle = start_on(&dir, 2);
    let addr = handle.addr;
    // A service makes x's room alone (owned by the shard of (x, x)), then adds y: it is now
    // the direct room of (x, y), whose pair belongs to the other shard.
    let r = create_direct(addr, &service_token(), json!([x])).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let room = r.json()["room"]["id"].as_u64().unwrap();
    assert_eq!(put_member(addr, room, &y).await, 200);
    // Asking for the pair's direct room, by either user or the service: that room, 200.
    for (token, members) in [
        (user_token(&x), json!([y])),
        (user_token(&y), json!([x])),
        (service_token(), json!([y, x])),
    ] {
        let r = create_direct(addr, &token, members).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["room"]["id"], room);
    }
    // BIG opens the dialog in that room too.
    let mut ws = big(addr, &y).await;
    ok(&mut ws, "1", "new", json!({"chatId": x, "message": "hi"})).await;
    close(ws).await;
    assert_eq!(direct_rooms(addr, &x).await, [room]);
    assert_eq!(direct_rooms(addr, &y).await, [room]);
    handle.shutdown();

    // The index is rebuilt across shards at start.
    let handle = start_on(&dir, 2);
    let addr = handle.addr;
    let r = create_direct(addr, &user_token(&y), json!([x])).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["room"]["id"], room);
    // Once y has left, the pair is free: a new dialog is a new room.
    let path = format!("/api/v1/rooms/{room}/members/{y}");
    assert_eq!(call(addr, "DELETE", &path, Some(&user_token(&y)), None).await.status, 204);
    let r = create_direct(addr, &user_token(&x), json!([y])).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_ne!(r.json()["room"]["id"], room);
    handle.shutdown();
}

#[tokio::test]
async fn a_member_that_would_give_a_pair_on_another_shard_a_second_direct_room_is_refused() {
    let (x, y) = users_whose_pair_is_on_the_other_shard("refused");
    let server = start(2);
    let addr = server.addr;
    // The dialog of (x, y), made on the pair's shard; x's room alone on the other.
    let r = create_direct(addr, &user_token(&x), json!([y])).await;
    assert_eq!(r.status, 201);
    let dialog = r.json()["room"]["id"].as_u64().unwrap();
    let r = create_direct(addr, &service_token(), json!([x])).await;
    assert_eq!(r.status, 201);
    let alone = r.json()["room"]["id"].as_u64().unwrap();
    assert_ne!(dialog % 2, alone % 2, "the two rooms are owned by different shards");
    // Adding y would make a second room of (x, y).
    assert_eq!(put_member(addr, alone, &y).await, 409);
    assert_eq!(direct_rooms(addr, &y).await, [dialog]);
    // Once y has left the dialog, the pair is free again, and the other room takes it.
    let path = format!("/api/v1/rooms/{dialog}/members/{y}");
    assert_eq!(call(addr, "DELETE", &path, Some(&user_token(&y)), None).await.status, 204);
    assert_eq!(put_member(addr, alone, &y).await, 200);
    let r = create_direct(addr, &user_token(&y), json!([x])).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["room"]["id"], alone);
    // A deleted room frees its pair.
    let path = format!("/api/v1/rooms/{alone}");
    assert_eq!(call(addr, "DELETE", &path, Some(&service_token()), None).await.status, 204);
    let r = create_direct(addr, &user_token(&y), json!([x])).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
}

#[tokio::test]
async fn an_edit_racing_a_deletion_of_an_older_message_never_brings_it_back() {
    let dir = TempDir::new();
    let handle = start_on(&dir, 1);
    let addr = handle.addr;
    let room = create_room(addr, "race", &["alice"]).await;
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(post_message(addr, room, "alice", &format!("m{i}")).await["id"].as_u64().unwrap());
    }
    let old = &ids[..ids.len() - WINDOW];
    let mut tasks = Vec::new();
    for &id in old {
        tasks.push(tokio::spawn(async move {
            let r = delete(addr, "alice", id).await;
            assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
            (204, 204)
        }));
        tasks.push(tokio::spawn(async move {
            let status = edit(addr, "alice", id, "edited").await.status;
            (status, if status == 200 { 200 } else { 404 })
        }));
    }
    for task in tasks {
        let (got, want) = task.await.expect("request");
        assert_eq!(got, want);
    }
    // Every deletion was acknowledged: none of them may be undone by an edit read before it.
    let r = call(
        addr,
        "GET",
        &format!("/api/v1/rooms/{room}/messages?after=0&limit=500"),
        Some(&user_token("alice")),
        None,
    )
    .await;
    let left: Vec<u64> = r.json()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(left, ids[ids.len() - WINDOW..]);
    handle.shutdown();
}
