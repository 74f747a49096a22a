//! osu! `/notifications` end to end: real tokio-tungstenite clients (and a raw client that never
//! answers pings), REST writes, exact wire JSON; two shards for session logout; a restart for
//! durable notifications and revocations.

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use roomcast::auth::{mint_hs256, MintClaims};
use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// A token for `user` with session `sid` and `scopes` (None: the default, `*`).
fn token(user: &str, sid: Option<&str>, scopes: Option<&[&str]>) -> String {
    let claims = MintClaims {
        sub: user.to_string(),
        role: None,
        sid: sid.map(str::to_string),
        scopes: scopes.map(|s| s.iter().map(|x| x.to_string()).collect()),
        ttl_s: 3600,
    };
    mint_hs256(SECRET.as_bytes(), &claims).expect("mint")
}

/// Opens an osu! socket and waits for `connection.ready`; returns it and its shard.
async fn osu(addr: SocketAddr, token: &str) -> (Ws, usize) {
    let (mut ws, shard) =
        ws_connect(addr, "/notifications", Auth::Header(token)).await.expect("osu connect");
    assert_eq!(next_json(&mut ws).await, json!({"event": "connection.ready"}));
    (ws, shard)
}

/// Sends `chat.start` and gives the server a moment to read it.
async fn chat_start(ws: &mut Ws) {
    ws.send(Message::text(r#"{"event":"chat.start"}"#)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// The next frame whose `event` is `name`.
async fn next_event(ws: &mut Ws, name: &str) -> Value {
    loop {
        let event = next_json(ws).await;
        if event["event"] == name {
            return event;
        }
    }
}

/// Asserts the server ends the connection (close frame, EOF or reset) within 5 s, after
/// optionally yielding text frames, which are returned.
async fn until_closed(ws: &mut Ws) -> (Vec<Value>, bool) {
    let mut texts = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Err(_) => panic!("still open; got {texts:?}"),
            Ok(Some(Ok(Message::Text(t)))) => texts.push(serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(Message::Close(_)))) => return (texts, true),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => return (texts, false),
        }
    }
}

async fn notify(addr: SocketAddr, user: &str, body: Value) -> HttpResponse {
    call(
        addr,
        "POST",
        &format!("/api/v1/users/{user}/notifications"),
        Some(&service_token()),
        Some(body),
    )
    .await
}

#[tokio::test]
async fn osu_auth_by_header_or_query_and_failures_complete_the_handshake_then_drop() {
    let server = start(1);
    let addr = server.addr;
    let (ws, _) = osu(addr, &token("1001", None, None)).await;
    close(ws).await;
    let (mut ws, _) =
        ws_connect(addr, "/notifications/any/path", Auth::Query(&token("1001", None, None)))
            .await
            .unwrap();
    assert_eq!(next_json(&mut ws).await, json!({"event": "connection.ready"}));
    close(ws).await;

    let chat_only = token("1001", None, Some(&["chat.read"]));
    let (ws, _) = osu(addr, &chat_only).await;
    close(ws).await;

    let refused = [
        ("bad token", format!("ws://{addr}/notifications"), Some("nope".to_string())),
        ("no token", format!("ws://{addr}/notifications"), None),
        (
            "query ignored when an Authorization header is sent",
            format!("ws://{addr}/notifications?access_token={}", token("1001", None, None)),
            Some("nope".to_string()),
        ),
        (
            "a scope that is neither * nor chat.read",
            format!("ws://{addr}/notifications"),
            Some(token("1001", None, Some(&["identify"]))),
        ),
    ];
    for (what, url, bearer) in refused {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = url.into_client_request().unwrap();
        if let Some(b) = bearer {
            request.headers_mut().insert("Authorization", format!("Bearer {b}").parse().unwrap());
        }
        let (mut ws, response) = tokio_tungstenite::connect_async(request)
            .await
            .unwrap_or_else(|e| panic!("{what}: the handshake completes: {e}"));
        assert_eq!(response.status(), 101, "{what}");
        let (texts, closed) = until_closed(&mut ws).await;
        assert_eq!(texts, vec![json!({"error": "authentication failed"})], "{what}");
        assert!(!closed, "{what}: dropped without a close frame");
    }
    let plain = call(addr, "GET", "/notifications", None, None).await;
    assert_eq!(plain.status, 426);
}

#[tokio::test]
async fn osu_chat_is_gated_by_chat_start_echoes_own_messages_and_ignores_bad_frames() {
    let server = start(1);
    let addr = server.addr;
    let room = create_room(addr, "team", &["1001", "2002"]).await;
    let (mut alice, _) = osu(addr, &token("1001", None, None)).await;
    let (mut carol, _) = osu(addr, &token("3003", None, None)).await;
    chat_start(&mut carol).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    post_message(addr, room, "2002", "before chat.start").await;
    assert_silent(&mut alice, 300).await;

    for junk in ["not json", "{}", r#"{"event":1}"#, r#"{"event":"chat.stop"}"#, "[1,2]"] {
        alice.send(Message::text(junk)).await.unwrap();
    }
    alice.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    chat_start(&mut alice).await;
    let posted = post_message(addr, room, "2002", "hello osu").await;
    let event = next_event(&mut alice, "chat.message.new").await;
    let messages = event["data"]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m["channel_id"], json!(room));
    assert_eq!(m["content"], "hello osu");
    assert_eq!(m["message_id"], posted["id"]);
    assert_eq!(m["sender_id"], json!(2002), "numeric ids are integers");
    assert_eq!(m["is_action"], false);
    assert_eq!(m["type"], "plain");
    let ts = m["timestamp"].as_str().unwrap();
    assert!(ts.len() == 25 && ts.ends_with("+00:00") && ts.as_bytes()[10] == b'T', "{ts}");
    assert!(m.get("uuid").is_none(), "no uuid unless the sender gave one");
    let users = event["data"]["users"].as_array().unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["id"], json!(2002));
    assert_eq!(users[0]["username"], "2002");

    // Its own message comes back too, with the client's uuid.
    let r = call(
        addr,
        "POST",
        &format!("/api/v1/rooms/{room}/messages"),
        Some(&user_token("1001")),
        Some(json!({"text": "mine", "client_message_id": "u-42"})),
    )
    .await;
    assert_eq!(r.status, 201);
    let own = next_event(&mut alice, "chat.message.new").await;
    assert_eq!(own["data"]["messages"][0]["sender_id"], json!(1001));
    assert_eq!(own["data"]["messages"][0]["uuid"], "u-42");
    assert_silent(&mut carol, 200).await;

    alice.send(Message::text(r#"{"event":"chat.end"}"#)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    post_message(addr, room, "2002", "after chat.end").await;
    assert_silent(&mut alice, 300).await;
}

#[tokio::test]
async fn osu_join_and_part_render_the_channel_for_that_user() {
    let server = start(1);
    let addr = server.addr;
    let r = call(
        addr,
        "POST",
        "/api/v1/rooms",
        Some(&service_token()),
        Some(json!({"kind": "direct", "name": "dm", "members": ["1001"],
            "attributes": {"users": {"1001": {"username": "alice", "avatar_url": "https://a/1001"}}}})),
    )
    .await;
    assert_eq!(r.status, 201);
    let room = r.json()["room"]["id"].as_u64().unwrap();
    let (mut bob, _) = osu(addr, &token("2002", None, None)).await;
    let (mut bob_quiet, _) = osu(addr, &token("2002", None, None)).await;
    chat_start(&mut bob).await;

    let added = call(
        addr,
        "PUT",
        &format!("/api/v1/rooms/{room}/members/2002"),
        Some(&service_token()),
        None,
    )
    .await;
    assert_eq!(added.status, 200);
    let join = next_event(&mut bob, "chat.channel.join").await;
    let c = &join["data"];
    assert_eq!(c["channel_id"], json!(room));
    assert_eq!(c["type"], "PM");
    assert_eq!(c["name"], "alice", "a PM is named after the other user");
    assert_eq!(c["icon"], "https://a/1001");
    assert_eq!(c["users"], json!([1001, 2002]));
    assert_eq!(c["moderated"], false);
    assert_eq!(c["current_user_attributes"]["can_message"], true);
    assert!(c.get("last_message_id").is_some() && c.get("description").is_some());
    assert_silent(&mut bob_quiet, 200).await;

    let removed = call(
        addr,
        "DELETE",
        &format!("/api/v1/rooms/{room}/members/2002"),
        Some(&user_token("2002")),
        None,
    )
    .await;
    assert_eq!(removed.status, 204);
    let part = next_event(&mut bob, "chat.channel.part").await;
    assert_eq!(part["data"]["channel_id"], json!(room));
    assert_eq!(part["data"]["name"], "alice");
    assert_silent(&mut bob_quiet, 200).await;
}

#[tokio::test]
async fn osu_message_senders_are_named_from_the_room_attributes_as_join_names_them() {
    let server = start(2);
    let addr = server.addr;
    let attributes =
        json!({"users": {"1001": {"username": "alice", "avatar_url": "https://a/1001"}}});
    let r = call(
        addr,
        "POST",
        "/api/v1/rooms",
        Some(&service_token()),
        Some(json!({"kind": "group", "name": "crew", "members": ["1001", "2002", "3003"],
            "attributes": attributes})),
    )
    .await;
    assert_eq!(r.status, 201);
    let room = r.json()["room"]["id"].as_u64().unwrap();
    let (mut bob, _) = osu(addr, &token("2002", None, None)).await;
    chat_start(&mut bob).await;

    // A sender the attributes name: its username and avatar, as chat.channel.join shows them.
    post_message(addr, room, "1001", "named").await;
    let event = next_event(&mut bob, "chat.message.new").await;
    let user = &event["data"]["users"][0];
    assert_eq!(user["id"], json!(1001));
    assert_eq!(user["username"], "alice");
    assert_eq!(user["avatar_url"], "https://a/1001");
    // A sender they do not name: its id and no avatar, as before.
    post_message(addr, room, "3003", "unnamed").await;
    let event = next_event(&mut bob, "chat.message.new").await;
    let user = &event["data"]["users"][0];
    assert_eq!((&user["username"], &user["avatar_url"]), (&json!("3003"), &json!("")));
}

#[tokio::test]
async fn osu_public_rooms_deliver_only_to_recently_active_members() {
    let server = start(1);
    let addr = server.addr;
    let r = call(
        addr,
        "POST",
        "/api/v1/rooms",
        Some(&service_token()),
        Some(json!({"kind": "public", "name": "lobby", "members": ["1001", "2002"]})),
    )
    .await;
    let room = r.json()["room"]["id"].as_u64().unwrap();
    let (mut alice, _) = osu(addr, &token("1001", None, None)).await;
    let mut alice_virola = virola(addr, "1001").await;
    chat_start(&mut alice).await;

    post_message(addr, room, "2002", "idle alice misses this").await;
    assert_eq!(
        next_of(&mut alice_virola, "TextMessagesCreated").await["data"]["messages"][0]["text"],
        "idle alice misses this",
        "Virola is unaffected"
    );
    assert_silent(&mut alice, 300).await;

    let ack =
        call(addr, "POST", &format!("/api/v1/rooms/{room}/ack"), Some(&user_token("1001")), None)
            .await;
    assert_eq!(ack.status, 204);
    post_message(addr, room, "2002", "active alice gets this").await;
    let event = next_event(&mut alice, "chat.message.new").await;
    assert_eq!(event["data"]["messages"][0]["content"], "active alice gets this");

    // Joining counts as activity.
    let (mut dave, _) = osu(addr, &token("4004", None, None)).await;
    chat_start(&mut dave).await;
    let joined = call(
        addr,
        "PUT",
        &format!("/api/v1/rooms/{room}/members/4004"),
        Some(&user_token("4004")),
        None,
    )
    .await;
    assert_eq!(joined.status, 200);
    assert_eq!(next_event(&mut dave, "chat.channel.join").await["data"]["type"], "PUBLIC");
    post_message(addr, room, "2002", "dave joined").await;
    assert_eq!(
        next_event(&mut dave, "chat.message.new").await["data"]["messages"][0]["content"],
        "dave joined"
    );
    let stranger =
        call(addr, "POST", &format!("/api/v1/rooms/{room}/ack"), Some(&user_token("5005")), None)
            .await;
    assert_eq!(stranger.status, 403);
}

#[tokio::test]
async fn osu_notifications_reach_scope_star_connections_and_read_marks_them() {
    let server = start(2);
    let addr = server.addr;
    let (mut full, _) = osu(addr, &token("1001", None, None)).await;
    let (mut full2, _) = osu(addr, &token("1001", None, Some(&["*"]))).await;
    let (mut chat_only, _) = osu(addr, &token("1001", None, Some(&["chat.read"]))).await;
    chat_start(&mut chat_only).await;
    let (mut other, _) = osu(addr, &token("2002", None, None)).await;

    let r = notify(
        addr,
        "1001",
        json!({"name": "channel_message", "object_type": "channel", "object_id": 4512,
            "source_user_id": 2002, "details": {"title": "mp?", "username": "bob"}}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", String::from_utf8_lossy(&r.body));
    let created = r.json()["notification"].clone();
    let id = created["id"].as_u64().unwrap();
    for ws in [&mut full, &mut full2] {
        let new = next_event(ws, "new").await;
        let n = &new["data"];
        assert_eq!(n["id"], json!(id));
        assert_eq!(n["name"], "channel_message");
        assert_eq!(n["object_type"], "channel");
        assert_eq!(n["object_id"], json!(4512));
        assert_eq!(n["source_user_id"], json!(2002));
        assert_eq!(n["is_read"], false);
        assert_eq!(n["details"], json!({"title": "mp?", "username": "bob"}));
        assert!(n["created_at"].as_str().unwrap().ends_with("+00:00"));
    }
    let forbidden = call(
        addr,
        "POST",
        "/api/v1/users/1001/notifications",
        Some(&user_token("2002")),
        Some(json!({"name": "x", "object_type": "y"})),
    )
    .await;
    assert_eq!(forbidden.status, 403, "only services post notifications");

    let read = call(
        addr,
        "POST",
        "/api/v1/notifications/read",
        Some(&user_token("1001")),
        Some(json!({"ids": [id, 999_999]})),
    )
    .await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["read"], json!([id]));
    for ws in [&mut full, &mut full2] {
        let event = next_event(ws, "read").await;
        assert_eq!(event["ids"], json!([id]), "the seed's top-level ids");
        assert_eq!(
            event["data"]["notifications"],
            json!([{"category": "channel", "id": id, "object_id": 4512, "object_type": "channel"}])
        );
        assert_eq!(event["data"]["read_count"], json!(1));
        assert!(event["data"]["timestamp"].as_str().unwrap().ends_with("+00:00"));
    }
    assert_silent(&mut chat_only, 300).await;
    assert_silent(&mut other, 100).await;
}

#[tokio::test]
async fn osu_logout_closes_exactly_one_session_on_every_shard_and_refuses_its_token() {
    let server = start(2);
    let addr = server.addr;
    let token_a = token("1001", Some("session-a"), None);
    let token_b = token("1001", Some("session-b"), None);
    let mut a_socks = Vec::new();
    let mut shards = HashSet::new();
    while shards.len() < 2 && a_socks.len() < 32 {
        let (ws, shard) = osu(addr, &token_a).await;
        shards.insert(shard);
        a_socks.push(ws);
    }
    assert_eq!(shards.len(), 2, "session A has sockets on both shards");
    let (mut a_virola, _) =
        ws_connect(addr, "/api/v1/events", Auth::Header(&token_a)).await.unwrap();
    let mut b_socks = Vec::new();
    let mut b_shards = HashSet::new();
    while b_shards.len() < 2 && b_socks.len() < 32 {
        let (ws, shard) = osu(addr, &token_b).await;
        b_shards.insert(shard);
        b_socks.push(ws);
    }

    // Another user may not log session A out; a service must name the user.
    let r =
        call(addr, "DELETE", "/api/v1/sessions/session-a", Some(&user_token("2002")), None).await;
    assert_eq!(r.status, 404);
    let r = call(addr, "DELETE", "/api/v1/sessions/session-a", Some(&service_token()), None).await;
    assert_eq!(r.status, 400);

    // User 1001 (with session B's token) logs session A out by id.
    let r = call(addr, "DELETE", "/api/v1/sessions/session-a", Some(&token_b), None).await;
    assert_eq!(r.status, 204, "{:?}", String::from_utf8_lossy(&r.body));
    for ws in &mut a_socks {
        let (texts, closed) = until_closed(ws).await;
        assert_eq!(texts, vec![json!({"event": "logout"})]);
        assert!(closed, "logout is followed by a close frame");
    }
    let (_, closed) = until_closed(&mut a_virola).await;
    assert!(closed);

    let refused = call(addr, "GET", "/api/v1/rooms", Some(&token_a), None).await;
    assert_eq!(refused.status, 401, "the REST API refuses the session");
    let (mut again, _) = ws_connect(addr, "/notifications", Auth::Header(&token_a)).await.unwrap();
    assert_eq!(until_closed(&mut again).await.0, vec![json!({"error": "authentication failed"})]);
    let virola_again = ws_connect(addr, "/api/v1/events", Auth::Header(&token_a)).await;
    assert!(virola_again.is_err(), "Virola refuses it with 401");

    // Session B is untouched, on every shard.
    let r = notify(addr, "1001", json!({"name": "n", "object_type": "t", "object_id": 1})).await;
    assert_eq!(r.status, 201);
    for ws in &mut b_socks {
        assert_eq!(next_event(ws, "new").await["data"]["name"], "n");
    }
    assert_eq!(call(addr, "GET", "/api/v1/rooms", Some(&token_b), None).await.status, 200);

    // A service logs session B out naming the user; a user logs its own current session out.
    let r =
        call(addr, "DELETE", "/api/v1/sessions/session-b?user=1001", Some(&service_token()), None)
            .await;
    assert_eq!(r.status, 204);
    for ws in &mut b_socks {
        assert_eq!(until_closed(ws).await.0, vec![json!({"event": "logout"})]);
    }
    let token_c = token("1001", Some("session-c"), None);
    let r = call(addr, "DELETE", "/api/v1/sessions/session-c", Some(&token_c), None).await;
    assert_eq!(r.status, 204);
    assert_eq!(call(addr, "GET", "/api/v1/rooms", Some(&token_c), None).await.status, 401);
}

#[tokio::test]
async fn a_token_the_shard_cached_is_refused_once_its_session_is_logged_out() {
    let server = start(1);
    let addr = server.addr;
    let token_a = token("1001", Some("session-a"), None);
    let token_b = token("1001", Some("session-b"), None);
    // Each call is a new connection: only the shard's token cache can remember the bearer.
    assert_eq!(call(addr, "GET", "/api/v1/rooms", Some(&token_a), None).await.status, 200);
    assert_eq!(call(addr, "GET", "/api/v1/rooms", Some(&token_a), None).await.status, 200);
    let metrics = String::from_utf8(call(addr, "GET", "/metrics", None, None).await.body).unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("roomcast_auth_cache_tokens{") && !l.ends_with(" 0")),
        "the verified bearer is cached"
    );
    // The session logs itself out (a user may always end its own current session).
    let r = call(addr, "DELETE", "/api/v1/sessions/session-a", Some(&token_a), None).await;
    assert_eq!(r.status, 204, "{:?}", String::from_utf8_lossy(&r.body));
    let refused = call(addr, "GET", "/api/v1/rooms", Some(&token_a), None).await;
    assert_eq!(refused.status, 401, "the cached identity of a logged-out session is not reused");
    assert_eq!(call(addr, "GET", "/api/v1/rooms", Some(&token_b), None).await.status, 200);
}

#[tokio::test]
async fn osu_drops_a_connection_that_misses_a_pong_and_keeps_one_that_answers() {
    let mut config = config(1);
    config.ping_interval_ms = 200;
    let server = start_with(config);
    let addr = server.addr;
    let (mut good, _) = osu(addr, &token("1001", None, None)).await;
    // The library client answers pings while it reads: keep reading it all along.
    let good_reader = tokio::spawn(async move {
        let mut pings = 0;
        loop {
            match tokio::time::timeout(Duration::from_secs(10), good.next()).await {
                Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["event"] == "new" {
                        return (pings, v);
                    }
                }
                other => panic!("the answering client lost its socket: {other:?}"),
            }
        }
    });

    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /notifications HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: Bearer {}\r\n\r\n",
        token("1001", None, None)
    );
    raw.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), raw.read(&mut chunk)).await {
            Err(_) => panic!("a client that never answers pings was not dropped"),
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&chunk[..n]),
        }
    }
    assert!(received.starts_with(b"HTTP/1.1 101"), "upgraded");
    // Dropped at the first ping that finds the one before unanswered: after one or two
    // pings, not kept on being pinged.
    let head_end = received.windows(4).position(|w| w == b"\r\n\r\n").expect("head") + 4;
    let pings = received[head_end..].chunks(2).filter(|f| *f == [0x89, 0x00]).count();
    assert!((1..=2).contains(&pings), "pinged once or twice before the drop, got {pings}");

    tokio::time::sleep(Duration::from_millis(800)).await;
    let r =
        notify(addr, "1001", json!({"name": "still", "object_type": "t", "object_id": 1})).await;
    assert_eq!(r.status, 201);
    let (pings, new) = good_reader.await.unwrap();
    assert_eq!(new["data"]["name"], "still");
    // Kept through several pings (each one judges the previous): how many depends on how
    // fast a loaded machine runs the sweeper, so only "more than two" is asserted.
    assert!(pings >= 3, "pinged repeatedly and kept: {pings}");
}

#[tokio::test]
async fn osu_notifications_and_logouts_survive_a_restart() {
    let dir = TempDir::new();
    let token_a = token("1001", Some("gone"), None);
    let start_here = || {
        let mut c = config(2);
        c.data_dir = dir.0.clone();
        roomcast::start(c).expect("server starts")
    };
    let handle = start_here();
    let addr = handle.addr;
    let (ws, _) = osu(addr, &token_a).await;
    let r = notify(addr, "1001", json!({"name": "kept", "object_type": "t", "object_id": 7})).await;
    let id = r.json()["notification"]["id"].as_u64().unwrap();
    let r = call(addr, "DELETE", "/api/v1/sessions/gone", Some(&token_a), None).await;
    assert_eq!(r.status, 204);
    drop(ws);
    handle.shutdown();

    let handle = start_here();
    let addr = handle.addr;
    assert_eq!(call(addr, "GET", "/api/v1/rooms", Some(&token_a), None).await.status, 401);
    let (mut ws, _) = osu(addr, &token("1001", None, None)).await;
    let r = notify(addr, "1001", json!({"name": "next", "object_type": "t", "object_id": 8})).await;
    let next_id = r.json()["notification"]["id"].as_u64().unwrap();
    assert!(next_id > id, "ids keep increasing");
    assert_eq!(next_event(&mut ws, "new").await["data"]["id"], json!(next_id));
    let read = call(
        addr,
        "POST",
        "/api/v1/notifications/read",
        Some(&user_token("1001")),
        Some(json!({"ids": [id]})),
    )
    .await;
    assert_eq!(read.json()["read"], json!([id]), "the stored notification came back");
    assert_eq!(next_event(&mut ws, "read").await["ids"], json!([id]));
    drop(ws);
    handle.shutdown();
}
