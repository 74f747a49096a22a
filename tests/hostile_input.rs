//! Hostile input over real sockets: oversized messages and history pages (the bounds on a
//! stored message's encoded size and on a page's bytes), percent-encoded path segments, the one
//! rule for user ids at every entry point (JWT `sub`, JSON bodies, paths, BIG frames), and
//! fields of the wrong type. Each case asserts the refusal (status and error shape, or the
//! dialect's error), that a well-behaved client is still served, and for the size cases that
//! the process's resident memory stays bounded.
//!
//! The server runs in this process, so its memory is this process's `VmRSS`; the tests of this
//! file take one lock so that they never measure each other.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::*;
use tokio_tungstenite::tungstenite::Message;

/// One test of this file at a time: they measure the process's memory.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// This process's resident set, in bytes (`VmRSS` of /proc/self/status).
fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

const MIB: usize = 1 << 20;

/// A refusal in the REST API's error shape `{"error":{"code","message"}}` with `status`.
fn assert_refused(response: &HttpResponse, status: u16, what: &str) -> Value {
    assert_eq!(
        response.status,
        status,
        "{what}: {:?}",
        String::from_utf8_lossy(&response.body[..response.body.len().min(300)])
    );
    let body = response.json();
    assert!(body["error"]["code"].as_str().is_some_and(|c| !c.is_empty()), "{what}: {body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {body}");
    body
}

/// A well-behaved client is served: it creates a room, posts and reads the post back.
async fn still_served(addr: SocketAddr) {
    let room = create_room(addr, "calm", &["carol"]).await;
    let posted = post_message(addr, room, "carol", "still here").await;
    let texts = history_texts(addr, room, &user_token("carol"), "limit=10").await;
    assert_eq!(texts, vec!["still here".to_string()], "{posted}");
}

/// The members of `room`, as the service sees them.
async fn members(addr: SocketAddr, room: u64) -> Vec<String> {
    let r = call(addr, "GET", &format!("/api/v1/rooms/{room}"), Some(&service_token()), None).await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    let room = r.json();
    let list = room["room"]["members"].as_array().expect("members").clone();
    list.iter().map(|m| m["user"].as_str().expect("user").to_string()).collect()
}

/// Posts `body` to `room` as `user`.
async fn post(addr: SocketAddr, room: u64, user: &str, body: Value) -> HttpResponse {
    let path = format!("/api/v1/rooms/{room}/messages");
    call(addr, "POST", &path, Some(&user_token(user)), Some(body)).await
}

/// An HS256 token for any `sub`, signed without the minting checks (a hostile issuer).
fn token_with_sub(sub: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": sub, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign")
}

/// Opens a BIG socket for `user`.
async fn big(addr: SocketAddr, user: &str) -> Ws {
    ws_connect(addr, "/websocket", Auth::Header(&user_token(user))).await.expect("big connect").0
}

async fn send(ws: &mut Ws, value: Value) {
    ws.send(Message::text(value.to_string())).await.expect("send");
}

/// Sends a BIG request and returns its response or error frame (events are skipped), with the
/// size of its text.
async fn request(ws: &mut Ws, id: &str, payload_type: &str, payload: Value) -> (Value, usize) {
    let frame =
        json!({"type": "request", "id": id, "payloadType": payload_type, "payload": payload});
    send(ws, frame).await;
    answer(ws, id).await
}

/// The response to request `id`, or the next error frame, with its size.
async fn answer(ws: &mut Ws, id: &str) -> (Value, usize) {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an answer in time")
            .expect("stream open")
            .expect("frame");
        let text = match message {
            Message::Text(text) => text,
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => continue,
        };
        let frame: Value = serde_json::from_str(&text).expect("JSON");
        if (frame["type"] == "response" && frame["id"] == id) || frame.get("error").is_some() {
            return (frame, text.len());
        }
    }
}

/// The exception of a BIG error frame (panics on anything else).
fn exception(frame: &Value) -> String {
    frame["error"]["exception"]
        .as_str()
        .unwrap_or_else(|| panic!("expected BIG's error object, got {frame}"))
        .to_string()
}

#[tokio::test]
async fn oversized_messages_are_refused_with_413_and_memory_stays_bounded() {
    let _serial = SERIAL.lock().await;
    let server = start(1);
    let addr = server.addr;
    let room = create_room(addr, "big posts", &["alice"]).await;
    // Warm up what every post allocates once (store, buffers, the window's first message).
    for i in 0..5 {
        post_message(addr, room, "alice", &format!("warm {i}")).await;
    }
    let before = rss_bytes();
    let blob = "x".repeat(900 * 1024);
    for i in 0..50 {
        let body = if i % 2 == 0 {
            json!({"text": "hi", "attributes": {"blob": blob}})
        } else {
            json!({"text": "hi", "attachments": [blob]})
        };
        let refused = assert_refused(&post(addr, room, "alice", body).await, 413, "oversized");
        assert_eq!(refused["error"]["code"], "message_too_large", "{refused}");
    }
    // A service posting for a user is bounded the same way, and so is the kind.
    let body = json!({"text": "hi", "author": "alice", "attributes": {"blob": blob}});
    let path = format!("/api/v1/rooms/{room}/messages");
    let r = call(addr, "POST", &path, Some(&service_token()), Some(body)).await;
    assert_refused(&r, 413, "oversized for a service");
    let kind = json!({"text": "hi", "kind": "k".repeat(65)});
    assert_refused(&post(addr, room, "alice", kind).await, 400, "long kind");
    // Room attributes are bounded too.
    let attributes = json!({"name": "r", "attributes": {"blob": "y".repeat(70 * 1024)}});
    let r =
        call(addr, "POST", "/api/v1/rooms", Some(&service_token()), Some(attributes.clone())).await;
    assert_refused(&r, 400, "room attributes on create");
    let r = call(
        addr,
        "PATCH",
        &format!("/api/v1/rooms/{room}"),
        Some(&service_token()),
        Some(attributes),
    )
    .await;
    assert_refused(&r, 400, "room attributes on update");
    // An edit may not grow a stored message past the bound either.
    let near = json!({"text": "hi", "attributes": {"blob": "z".repeat(100 * 1024)}});
    let r = post(addr, room, "alice", near).await;
    assert_eq!(r.status, 201, "a message under the bound is stored");
    let id = r.json()["message"]["id"].as_u64().expect("id");
    let grow = json!({"text": "w".repeat(60 * 1024)});
    let r = call(
        addr,
        "PATCH",
        &format!("/api/v1/messages/{id}"),
        Some(&user_token("alice")),
        Some(grow),
    )
    .await;
    let refused = assert_refused(&r, 413, "edit past the bound");
    assert_eq!(refused["error"]["code"], "message_too_large", "{refused}");

    let grown = rss_bytes().saturating_sub(before);
    eprintln!("RSS grew by {} KiB over 50 refused posts", grown / 1024);
    assert!(grown < 32 * MIB, "50 refused posts grew the process by {} MiB", grown / MIB);
    let texts = history_texts(addr, room, &user_token("alice"), "limit=100").await;
    assert_eq!(texts.len(), 6, "only the warm-up posts and the one under the bound: {texts:?}");
    still_served(addr).await;
}

#[tokio::test]
async fn history_pages_are_bounded_in_bytes_and_say_so() {
    let _serial = SERIAL.lock().await;
    let server = start(1);
    let addr = server.addr;
    let room = create_room(addr, "heavy history", &["alice"]).await;
    let mut posted = Vec::new();
    for i in 0..30 {
        let body = json!({"text": format!("m{i}"), "attributes": {"pad": "p".repeat(100 * 1024)}});
        let r = post(addr, room, "alice", body).await;
        assert_eq!(r.status, 201, "{:?}", String::from_utf8_lossy(&r.body));
        posted.push(r.json()["message"]["id"].as_u64().expect("id"));
    }
    let before = rss_bytes();
    let token = user_token("alice");
    let page = |query: String| {
        let token = token.clone();
        async move {
            let path = format!("/api/v1/rooms/{room}/messages?{query}");
            let r = call(addr, "GET", &path, Some(&token), None).await;
            assert_eq!(r.status, 200, "{query}");
            assert!(r.body.len() <= 600 * 1024, "{query}: a page of {} bytes", r.body.len());
            let body = r.json();
            let ids: Vec<u64> = body["messages"]
                .as_array()
                .expect("messages")
                .iter()
                .map(|m| m["id"].as_u64().expect("id"))
                .collect();
            (ids, body["truncated"].as_bool().expect("a truncated flag"))
        }
    };
    // Forward: each page ends early and says so; paging on from the last id reads everything.
    let (first, truncated) = page("limit=300".into()).await;
    assert!(truncated && !first.is_empty() && first.len() < 30, "{first:?}");
    let mut seen = Vec::new();
    let mut after = None::<u64>;
    loop {
        let query = match after {
            Some(a) => format!("limit=300&after={a}"),
            None => "limit=300".into(),
        };
        let (ids, truncated) = page(query).await;
        if ids.is_empty() {
            assert!(!truncated);
            break;
        }
        after = ids.last().copied();
        seen.extend(ids);
    }
    assert_eq!(seen, posted, "paging forward reads every message once, in order");
    // Backward from the newest: pages end early too, keeping the newest messages.
    let mut back = Vec::new();
    let mut before_id = posted.last().copied().map(|id| id + 1);
    while let Some(b) = before_id {
        let (ids, _) = page(format!("limit=300&before={b}")).await;
        before_id = ids.first().copied();
        back.splice(0..0, ids);
    }
    assert_eq!(back, posted, "paging back reads every message once");
    // Three pages at once stay small.
    let (a, b, c) =
        tokio::join!(page("limit=500".into()), page("limit=500".into()), page("limit=500".into()));
    assert_eq!((a.0.len(), b.0.len()), (c.0.len(), c.0.len()));

    // BIG `messages`: the page ends early (fewer than `count`) and the socket stays open.
    let mut ws = big(addr, "alice").await;
    let (frame, size) =
        request(&mut ws, "h1", "messages", json!({"chatId": room.to_string(), "count": 300})).await;
    assert_eq!(frame["type"], "response", "{}", &frame.to_string()[..200]);
    let list = frame["payload"].as_array().expect("messages");
    assert!(!list.is_empty() && list.len() < 30, "{} messages", list.len());
    assert!(size <= 600 * 1024, "a BIG page of {size} bytes");
    assert_eq!(list.last().expect("newest")["message"], "m29", "paging back keeps the newest");
    let (frame, _) = request(&mut ws, "h2", "chats", json!({})).await;
    assert_eq!(frame["type"], "response", "the connection still serves requests");
    close(ws).await;

    let grown = rss_bytes().saturating_sub(before);
    eprintln!("RSS grew by {} KiB over the history pages", grown / 1024);
    assert!(grown < 64 * MIB, "paging grew the process by {} MiB", grown / MIB);
    still_served(addr).await;
}

#[tokio::test]
async fn path_segments_are_percent_decoded_and_bad_encodings_refused() {
    let _serial = SERIAL.lock().await;
    let server = start(2);
    let addr = server.addr;
    let service = service_token();
    let room = create_room(addr, "paths", &["alice"]).await;
    let member = |user: &str| format!("/api/v1/rooms/{room}/members/{user}");

    let r = call(addr, "PUT", &member("caf%C3%A9"), Some(&service), None).await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    assert!(members(addr, room).await.contains(&"café".to_string()), "decoded, not literal");
    let r = call(addr, "DELETE", &member("caf%C3%A9"), Some(&service), None).await;
    assert_eq!(r.status, 204, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(members(addr, room).await, vec!["alice".to_string()]);

    // Bad escapes, and decoded ids that break the user id rule.
    for bad in
        ["%ZZ", "bob%", "bob%4", "%C3", "%FF", "bob%00", "%2e%2e", "%2E", "a%2Fb", "a%20b", "%0A"]
    {
        let r = call(addr, "PUT", &member(bad), Some(&service), None).await;
        assert_refused(&r, 400, bad);
        let r = call(addr, "DELETE", &member(bad), Some(&service), None).await;
        assert_refused(&r, 400, bad);
        let path = format!("/api/v1/users/{bad}/notifications");
        let body = json!({"name": "n", "object_type": "t", "object_id": 1});
        let r = call(addr, "POST", &path, Some(&service), Some(body)).await;
        assert_refused(&r, 400, bad);
    }
    // A bad escape anywhere in the path, not only in a user id.
    let r = call(addr, "GET", &format!("/api/v1/rooms/{room}%"), Some(&service), None).await;
    assert_refused(&r, 400, "bad escape in a room id");
    let r = call(addr, "DELETE", "/api/v1/sessions/x?user=a%2Fb", Some(&service), None).await;
    assert_refused(&r, 400, "session user");
    assert_eq!(members(addr, room).await, vec!["alice".to_string()], "nothing was added");
    still_served(addr).await;
}

#[tokio::test]
async fn user_ids_follow_one_rule_in_bodies_tokens_and_frames() {
    let _serial = SERIAL.lock().await;
    let server = start(2);
    let addr = server.addr;
    let service = service_token();
    let too_long = "u".repeat(129);
    let bad_ids =
        ["a/b", "bob\u{0}", "..", ".", " alice", "al\nice", "\u{202e}eve", too_long.as_str()];
    for bad in bad_ids {
        let body = json!({"name": "r", "members": ["alice", bad]});
        let r = call(addr, "POST", "/api/v1/rooms", Some(&service), Some(body)).await;
        assert_refused(&r, 400, &format!("member {bad:?}"));
        let body = json!({"name": "r", "members": [{"user": bad, "role": "member"}]});
        let r = call(addr, "POST", "/api/v1/rooms", Some(&service), Some(body)).await;
        assert_refused(&r, 400, &format!("member object {bad:?}"));
    }
    let room = create_room(addr, "ids", &["1001", "alice", "u123", "café"]).await;
    let mut listed = members(addr, room).await;
    listed.sort();
    assert_eq!(listed, ["1001", "alice", "café", "u123"]);
    for bad in bad_ids {
        let path = format!("/api/v1/rooms/{room}/messages");
        let body = json!({"text": "hi", "author": bad});
        let r = call(addr, "POST", &path, Some(&service), Some(body)).await;
        assert_refused(&r, 400, &format!("author {bad:?}"));
        let body = json!({"name": "n", "object_type": "t", "object_id": 1, "source_user_id": bad});
        let r = call(addr, "POST", "/api/v1/users/alice/notifications", Some(&service), Some(body))
            .await;
        assert_refused(&r, 400, &format!("source_user_id {bad:?}"));
        let body = json!({"ids": [1], "user": bad});
        let r = call(addr, "POST", "/api/v1/notifications/read", Some(&service), Some(body)).await;
        assert_refused(&r, 400, &format!("read for {bad:?}"));

        // A token whose `sub` breaks the rule is refused everywhere.
        let token = token_with_sub(bad);
        let r = call(addr, "GET", "/api/v1/rooms", Some(&token), None).await;
        assert_refused(&r, 401, &format!("sub {bad:?}"));
        assert!(ws_connect(addr, "/websocket", Auth::Header(&token)).await.is_err(), "{bad:?}");
        assert!(ws_connect(addr, "/api/v1/events", Auth::Header(&token)).await.is_err(), "{bad:?}");
    }
    // A good token of an unusual but valid id works.
    let r = call(addr, "GET", "/api/v1/rooms", Some(&token_with_sub("café")), None).await;
    assert_eq!(r.status, 200);

    // BIG: a chatId that would create a dialog must name a valid user id.
    let mut ws = big(addr, "dave").await;
    for (i, bad) in bad_ids.iter().enumerate() {
        let id = format!("n{i}");
        let (frame, _) =
            request(&mut ws, &id, "new", json!({"chatId": bad, "message": "hi"})).await;
        assert!(!exception(&frame).is_empty(), "{bad:?}: {frame}");
    }
    let (frame, _) = request(&mut ws, "c", "chats", json!({})).await;
    assert_eq!(frame["payload"], json!([]), "no dialog was created");
    let (frame, _) =
        request(&mut ws, "ok", "new", json!({"chatId": "carol", "message": "hi"})).await;
    assert_eq!(frame["type"], "response", "a dialog with a valid id is created: {frame}");
    close(ws).await;
    still_served(addr).await;
}

#[tokio::test]
async fn fields_of_the_wrong_type_get_errors_never_defaults() {
    let _serial = SERIAL.lock().await;
    let server = start(2);
    let addr = server.addr;
    let service = service_token();
    for role in [json!(5), json!(true), json!({"r": 1}), json!(["owner"])] {
        let body = json!({"name": "r", "members": [{"user": "bob", "role": role}]});
        let r = call(addr, "POST", "/api/v1/rooms", Some(&service), Some(body)).await;
        assert_refused(&r, 400, &format!("role {role}"));
    }
    let body = json!({"name": "r", "members": [{"user": "bob", "role": "moderator"}]});
    let r = call(addr, "POST", "/api/v1/rooms", Some(&service), Some(body)).await;
    assert_eq!(r.status, 201, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["room"]["members"][0], json!({"user": "bob", "role": "moderator"}));

    let mut alice = big(addr, "alice").await;
    let mut bob = big(addr, "bob").await;
    // A payload that is not an object, a text that is not a string.
    for (i, payload) in [json!(5), json!("chats"), json!([1])].into_iter().enumerate() {
        let id = format!("p{i}");
        let frame =
            json!({"type": "request", "id": id, "payloadType": "chats", "payload": payload});
        send(&mut alice, frame).await;
        let (frame, _) = answer(&mut alice, &id).await;
        assert_eq!(exception(&frame), "payload must be an object", "{payload}");
    }
    let (frame, _) = request(&mut alice, "m", "new", json!({"chatId": "bob", "message": 5})).await;
    assert_eq!(exception(&frame), "message must be a string");
    let (frame, _) =
        request(&mut alice, "ok", "new", json!({"chatId": "bob", "message": "hi"})).await;
    assert_eq!(frame["type"], "response", "{frame}");
    let (frame, _) = request(&mut alice, "h", "messages", json!({"chatId": "bob"})).await;
    let texts: Vec<&str> = frame["payload"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["message"].as_str().expect("text"))
        .collect();
    assert_eq!(texts, ["hi"], "nothing was stored for the refused requests");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A typing event whose `stop` is not a boolean is ignored (events get no reply), never
    // read as "typing"; the next well-formed one is the first the peer sees.
    for stop in [json!("yes"), json!(1), json!({})] {
        let event = json!({"type": "event", "payloadType": "typing",
            "payload": {"chatId": "bob", "stop": stop}});
        send(&mut alice, event).await;
    }
    send(
        &mut alice,
        json!({"type": "event", "payloadType": "typing", "payload": {"chatId": "bob", "stop": true}}),
    )
    .await;
    let typing = loop {
        let frame = next_json(&mut bob).await;
        if frame["type"] == "event" && frame["eventType"] == "typing" {
            break frame;
        }
    };
    assert_eq!(typing["payload"]["stop"], true, "{typing}");
    close(alice).await;
    close(bob).await;
    still_served(addr).await;
}
