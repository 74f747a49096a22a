//! Rechat `/socket.io/` end to end with raw Engine.IO packets: WebSocket text frames
//! (tokio-tungstenite) and long-polling requests. The open packet (v3 and v4), ping/pong and
//! the silence drop, ack numbering, malformed and binary packets, authentication and its
//! failure shape, presence, typing, membership, cross-dialect delivery both ways, and polling
//! payloads (v3 length-prefixed, v4 record-separated) forwarded across two shards.

mod support;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::*;
use tokio_tungstenite::tungstenite::Message;

/// A raw Engine.IO client: the socket and the packets read but not yet asked for.
struct Sio {
    ws: Ws,
    backlog: VecDeque<String>,
}

/// Opens a Rechat socket with Engine.IO `eio`; returns it and the open packet's JSON (the v3
/// `40` is consumed).
async fn open(addr: SocketAddr, eio: u8) -> (Sio, Value) {
    let path = format!("/socket.io/?EIO={eio}&transport=websocket");
    let (ws, _) = ws_connect(addr, &path, Auth::None).await.expect("rechat connect");
    let mut sio = Sio { ws, backlog: VecDeque::new() };
    let first = next_text(&mut sio).await;
    let open: Value =
        serde_json::from_str(first.strip_prefix('0').expect("open packet")).expect("open JSON");
    if eio == 3 {
        assert_eq!(next_text(&mut sio).await, "40");
    }
    (sio, open)
}

/// An authenticated v3 socket of `user`.
async fn authed(addr: SocketAddr, user: &str) -> Sio {
    let (mut ws, _) = open(addr, 3).await;
    send(&mut ws, &format!(r#"421["Authenticate","{}"]"#, user_token(user))).await;
    let ack = next_ack(&mut ws, 1).await;
    assert_eq!(ack[0], Value::Null, "{ack}");
    assert_eq!(ack[1]["id"], user);
    assert_eq!(ack[1]["type"], "user");
    ws
}

async fn send(sio: &mut Sio, text: &str) {
    sio.ws.send(Message::text(text.to_string())).await.expect("send");
}

/// The next text frame off the socket, within 5 s.
async fn read_text(ws: &mut Ws) -> String {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a packet in time")
            .expect("stream open")
            .expect("frame");
        match message {
            Message::Text(text) => return text.to_string(),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => continue,
        }
    }
}

/// The next packet (the backlog first).
async fn next_text(sio: &mut Sio) -> String {
    match sio.backlog.pop_front() {
        Some(text) => text,
        None => read_text(&mut sio.ws).await,
    }
}

/// The first packet `pick` takes (others stay in the backlog, in order).
async fn next_matching<T>(sio: &mut Sio, pick: impl Fn(&str) -> Option<T>) -> T {
    if let Some(i) = sio.backlog.iter().position(|t| pick(t).is_some()) {
        let text = sio.backlog.remove(i).expect("index");
        return pick(&text).expect("matched");
    }
    loop {
        let text = read_text(&mut sio.ws).await;
        match pick(&text) {
            Some(found) => return found,
            None => sio.backlog.push_back(text),
        }
    }
}

/// The ack `43<id>[…]`'s arguments.
async fn next_ack(sio: &mut Sio, id: u64) -> Value {
    let prefix = format!("43{id}[");
    next_matching(sio, |text| {
        text.strip_prefix(&prefix)
            .map(|rest| serde_json::from_str(&format!("[{rest}")).expect("ack JSON"))
    })
    .await
}

/// The next event named `name`: its arguments after the name.
async fn next_event(sio: &mut Sio, name: &str) -> Vec<Value> {
    next_matching(sio, |text| {
        let Value::Array(mut items) = serde_json::from_str(text.strip_prefix("42")?).ok()? else {
            return None;
        };
        (items.first() == Some(&json!(name))).then(|| {
            items.remove(0);
            items
        })
    })
    .await
}

/// Waits for the server's close frame (or the end of the stream); its code.
async fn closed(sio: &mut Sio, within_ms: u64) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(within_ms);
    loop {
        match tokio::time::timeout_at(deadline, sio.ws.next()).await {
            Err(_) => panic!("not closed within {within_ms} ms"),
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => continue,
            Ok(_) => return None,
        }
    }
}

#[tokio::test]
async fn open_packets_per_version_and_refused_handshakes() {
    let server = start(1);
    let (ws3, open3) = open(server.addr, 3).await;
    assert_eq!(open3["upgrades"], json!([]));
    assert_eq!(open3["pingInterval"], 25_000);
    assert_eq!(open3["pingTimeout"], 20_000);
    assert_eq!(open3["sid"].as_str().map(str::len), Some(20));
    assert!(open3.get("maxPayload").is_none());
    let (mut ws4, open4) = open(server.addr, 4).await;
    assert!(open4["maxPayload"].as_u64().is_some());
    assert_ne!(open3["sid"], open4["sid"]);
    // v4: nothing until the client's CONNECT, then 40{"sid"}.
    send(&mut ws4, "40").await;
    let connect = next_text(&mut ws4).await;
    let sid: Value = serde_json::from_str(connect.strip_prefix("40").expect("40")).expect("json");
    assert!(sid["sid"].as_str().is_some_and(|s| !s.is_empty()), "{connect}");
    // Another namespace is refused, the socket stays.
    send(&mut ws4, "40/admin,").await;
    assert_eq!(next_text(&mut ws4).await, r#"44/admin,{"message":"Invalid namespace"}"#);
    for query in [
        "EIO=5&transport=websocket",
        "transport=websocket",
        "EIO=3&transport=flashsocket",
        "EIO=3&transport=polling",
        "EIO=4&transport=websocket&sid=00AAAAAAAAAAAAAAAAAA",
    ] {
        let r = raw_request(
            server.addr,
            format!(
                "GET /socket.io/?{query} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Version: 13\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        assert_eq!(r.status, 400, "{query}");
        assert!(r.json()["code"].as_u64().is_some(), "{query}");
    }
    // Plain HTTP that is no polling request gets the engine.io error, not the REST 404.
    for (query, code) in [("EIO=3&transport=websocket", 3), ("EIO=9", 5), ("EIO=3&transport=x", 0)]
    {
        let r = raw_request(
            server.addr,
            format!("GET /socket.io/?{query} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!((r.status, r.json()["code"].as_u64()), (400, Some(code)), "{query}");
    }
    drop((ws3, ws4));
}

#[tokio::test]
async fn pings_pongs_and_the_silence_drop() {
    let mut config = config(1);
    config.rechat_ping_interval_ms = 300;
    config.rechat_ping_timeout_ms = 300;
    let server = start_with(config);
    // v3: the client pings, the server answers; the probe is answered too.
    let (mut v3, greeting) = open(server.addr, 3).await;
    assert_eq!(greeting["pingInterval"], 300);
    send(&mut v3, "2").await;
    assert_eq!(next_text(&mut v3).await, "3");
    send(&mut v3, "2probe").await;
    assert_eq!(next_text(&mut v3).await, "3probe");
    // A v3 client that keeps pinging stays well past interval + timeout.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        send(&mut v3, "2").await;
        assert_eq!(next_text(&mut v3).await, "3");
    }
    // v4: the server pings; answering keeps it; a ping left unanswered drops it after the
    // timeout (the next ping comes an interval after the last pong).
    let (mut v4, _) = open(server.addr, 4).await;
    for _ in 0..3 {
        assert_eq!(next_text(&mut v4).await, "2");
        send(&mut v4, "3").await;
    }
    let answered = std::time::Instant::now();
    closed(&mut v4, 3000).await;
    assert!(answered.elapsed() >= Duration::from_millis(500), "{:?}", answered.elapsed());
    // A silent v3 socket is dropped past interval + timeout.
    let started = std::time::Instant::now();
    let (mut silent3, _) = open(server.addr, 3).await;
    closed(&mut silent3, 3000).await;
    assert!(started.elapsed() >= Duration::from_millis(600), "{:?}", started.elapsed());
    drop(v3);
}

#[tokio::test]
async fn authentication_acks_and_refusals() {
    let mut config = config(2);
    config.jwt_leeway_s = 0;
    let server = start_with(config);
    let (mut ws, _) = open(server.addr, 3).await;
    // Before authentication every action is refused through its ack.
    send(&mut ws, r#"427["Message.Send","1",{"message_type":"TopLevel","comment":"hi"}]"#).await;
    assert_eq!(
        next_ack(&mut ws, 7).await,
        json!([{"http":401,"message":"Authentication required","code":"UnauthorizedAccess"}])
    );
    send(&mut ws, r#"428["User.Typing","1"]"#).await;
    assert_eq!(next_ack(&mut ws, 8).await[0]["code"], "UnauthorizedAccess");
    // A bad token gets Rechat's error object, exactly.
    send(&mut ws, r#"429["Authenticate","not-a-token"]"#).await;
    let ack = next_ack(&mut ws, 9).await;
    assert_eq!(
        ack,
        json!([{"http":401,"message":"Invalid credentials","code":"UnauthorizedAccess"}])
    );
    let expired = mint("alice", None, 1);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    send(&mut ws, &format!(r#"4210["Authenticate","{expired}"]"#)).await;
    assert_eq!(next_ack(&mut ws, 10).await[0]["http"], 401);
    // Validation errors and unknown events: an ack with the error, or nothing.
    send(&mut ws, r#"4211["Authenticate",5]"#).await;
    assert_eq!(next_ack(&mut ws, 11).await[0]["code"], "Validation");
    send(&mut ws, r#"4212["Replay",0]"#).await;
    send(&mut ws, "2").await;
    assert_eq!(next_text(&mut ws).await, "3", "unknown events are ignored");
    // Then a good token: (null, user), and Users.Online with itself.
    send(&mut ws, &format!(r#"4213["Authenticate","{}"]"#, user_token("alice"))).await;
    assert_eq!(next_event(&mut ws, "Users.Online").await, vec![json!(["alice"])]);
    let ack = next_ack(&mut ws, 13).await;
    assert_eq!(
        (&ack[0], &ack[1]["id"], &ack[1]["type"]),
        (&Value::Null, &json!("alice"), &json!("user"))
    );
    // Ack ids are echoed whatever their size and order.
    send(&mut ws, &format!(r#"42123456789["Authenticate","{}"]"#, user_token("alice"))).await;
    assert_eq!(next_ack(&mut ws, 123_456_789).await[0], Value::Null);
    send(&mut ws, &format!(r#"420["Authenticate","{}"]"#, user_token("alice"))).await;
    assert_eq!(next_ack(&mut ws, 0).await[0], Value::Null);
    // A v4 client may authenticate in its CONNECT; a bad token is a CONNECT_ERROR.
    let (mut v4, _) = open(server.addr, 4).await;
    send(&mut v4, r#"40{"token":"nope"}"#).await;
    let refused = next_text(&mut v4).await;
    let refused: Value = serde_json::from_str(refused.strip_prefix("44").expect("44")).unwrap();
    assert_eq!(refused["message"], "Invalid credentials");
    assert_eq!(refused["data"]["code"], "UnauthorizedAccess");
    send(&mut v4, &format!(r#"40{{"token":"{}"}}"#, user_token("bob"))).await;
    // The namespace's CONNECT answer comes first, then the events.
    assert!(next_text(&mut v4).await.starts_with("40{"));
    assert_eq!(next_event(&mut v4, "Users.Online").await, vec![json!(["bob"])]);
}

#[tokio::test]
async fn malformed_and_binary_packets_close_that_socket_only() {
    let server = start(1);
    let (mut keeper, _) = open(server.addr, 3).await;
    for bad in ["", "9", "x", "0{}", "4", "49", "42[", "42{}", "42[1]", "43[]", "45-[\"a\"]"] {
        let (mut ws, _) = open(server.addr, 3).await;
        send(&mut ws, bad).await;
        let code = closed(&mut ws, 3000).await;
        if bad == "45-[\"a\"]" {
            assert_eq!(code, Some(1003), "{bad:?}");
        } else {
            assert_eq!(code, Some(1002), "{bad:?}");
        }
    }
    let (mut ws, _) = open(server.addr, 3).await;
    ws.ws.send(Message::binary(vec![4u8, 1, 2])).await.expect("send");
    assert_eq!(closed(&mut ws, 3000).await, Some(1003));
    let (mut ws, _) = open(server.addr, 3).await;
    send(&mut ws, "b4AAEC").await;
    assert_eq!(closed(&mut ws, 3000).await, Some(1003));
    send(&mut keeper, "2").await;
    assert_eq!(next_text(&mut keeper).await, "3");
}

#[tokio::test]
async fn messages_presence_typing_and_membership_across_shards_and_dialects() {
    let server = start(2);
    let addr = server.addr;
    let room = create_room(addr, "Buyers", &["alice", "bob"]).await;
    let other = create_room(addr, "Elsewhere", &["carol"]).await;
    let mut bob = authed(addr, "bob").await;
    let mut bob_virola = virola(addr, "bob").await;
    // Alice authenticates: bob hears User.Online, alice gets Users.Online with both.
    let (mut alice, _) = open(addr, 3).await;
    send(&mut alice, &format!(r#"421["Authenticate","{}"]"#, user_token("alice"))).await;
    assert_eq!(next_event(&mut alice, "Users.Online").await, vec![json!(["alice", "bob"])]);
    assert_eq!(next_ack(&mut alice, 1).await[0], Value::Null);
    // (bob also hears his own User.Online, as every member of his rooms does.)
    while next_event(&mut bob, "User.Online").await != vec![json!("alice")] {}

    // Message.Send: stored, acked with the message, Message.Sent + Notification to everyone.
    send(
        &mut alice,
        &format!(
            r#"422["Message.Send","{room}",{{"comment":"open house?","message_type":"TopLevel","image_url":"https://i/1.png"}}]"#
        ),
    )
    .await;
    let ack = next_ack(&mut alice, 2).await;
    assert_eq!(ack[0], Value::Null, "{ack}");
    let message = &ack[1];
    assert_eq!((&message["type"], &message["comment"]), (&json!("message"), &json!("open house?")));
    assert_eq!(message["room"], room.to_string());
    for ws in [&mut alice, &mut bob] {
        let sent = next_event(ws, "Message.Sent").await;
        assert_eq!(sent[0]["type"], "room");
        assert_eq!(sent[0]["id"], room.to_string());
        assert_eq!(sent[0]["title"], "Buyers");
        assert_eq!(sent[0]["users"].as_array().map(Vec::len), Some(2));
        assert_eq!(sent[1]["id"], message["id"]);
        assert_eq!(sent[1]["image_url"], "https://i/1.png");
        assert_eq!(sent[1]["author"]["id"], "alice");
        assert!(sent[1]["created_at"].as_f64().is_some());
        let note = next_event(ws, "Notification").await;
        assert_eq!(note[0]["notification_type"], "UserSentMessage");
        assert_eq!(note[0]["room"], room.to_string());
    }
    // … and the Virola socket of the same room gets it as TextMessagesCreated.
    let created = next_of(&mut bob_virola, "TextMessagesCreated").await;
    assert_eq!(created["data"]["messages"][0]["text"], "open house?");
    let stored = history_texts(addr, room, &user_token("bob"), "limit=10").await;
    assert_eq!(stored, vec!["open house?".to_string()]);

    // A REST post reaches Rechat sockets as Message.Sent.
    post_message(addr, room, "bob", "from rest").await;
    assert_eq!(next_event(&mut alice, "Message.Sent").await[1]["comment"], "from rest");

    // Sending to a room one is not a member of, or that does not exist, is refused.
    send(&mut alice, &format!(r#"423["Message.Send","{other}",{{"message_type":"TopLevel"}}]"#))
        .await;
    // (a room one is not in is not found, as REST answers)
    assert_eq!(next_ack(&mut alice, 3).await[0]["http"], 404);
    send(&mut alice, r#"424["Message.Send","999999",{"message_type":"TopLevel"}]"#).await;
    assert_eq!(next_ack(&mut alice, 4).await[0]["code"], "ResourceNotFound");
    send(&mut alice, &format!(r#"425["Message.Send","{room}",{{}}]"#)).await;
    assert_eq!(next_ack(&mut alice, 5).await[0]["code"], "Validation");

    // Typing: the room, typer included, gets {user_id, room_id}; non-members type nowhere.
    send(&mut alice, &format!(r#"42["User.Typing","{room}"]"#)).await;
    for ws in [&mut alice, &mut bob] {
        let typing = next_event(ws, "User.Typing").await;
        assert_eq!(typing, vec![json!({"user_id": "alice", "room_id": room.to_string()})]);
    }
    send(&mut alice, &format!(r#"42["User.Typing","{other}"]"#)).await;
    send(&mut alice, &format!(r#"42["User.TypingEnded","{room}"]"#)).await;
    assert_eq!(next_event(&mut bob, "User.TypingEnded").await[0]["user_id"], "alice");

    // Membership: carol (connected) is added; the room hears Room.UserJoined and carol's
    // socket starts receiving the room at once.
    let mut carol = authed(addr, "carol").await;
    let added = call(
        addr,
        "PUT",
        &format!("/api/v1/rooms/{room}/members/carol"),
        Some(&service_token()),
        None,
    )
    .await;
    assert_eq!(added.status, 200);
    assert_eq!(next_event(&mut bob, "Room.UserJoined").await[0]["id"], "carol");
    post_message(addr, room, "bob", "welcome carol").await;
    assert_eq!(next_event(&mut carol, "Message.Sent").await[1]["comment"], "welcome carol");

    // Offline: bob's last Rechat socket closes → User.Offline to alice.
    close(bob.ws).await;
    assert_eq!(next_event(&mut alice, "User.Offline").await, vec![json!("bob")]);
    drop((bob_virola, carol));
}

#[tokio::test]
async fn logout_closes_the_sessions_sockets() {
    let server = start(2);
    let claims = roomcast::auth::MintClaims {
        sub: "dave".into(),
        role: None,
        sid: Some("sess-1".into()),
        scopes: None,
        ttl_s: 3600,
    };
    let token = roomcast::auth::mint_hs256(SECRET.as_bytes(), &claims).expect("mint");
    let (mut ws, _) = open(server.addr, 3).await;
    send(&mut ws, &format!(r#"421["Authenticate","{token}"]"#)).await;
    assert_eq!(next_ack(&mut ws, 1).await[0], Value::Null);
    let r = call(server.addr, "DELETE", "/api/v1/sessions/sess-1", Some(&token), None).await;
    assert_eq!(r.status, 204, "{:?}", String::from_utf8_lossy(&r.body));
    next_matching(&mut ws, |t| (t == "41").then_some(())).await;
    assert_eq!(closed(&mut ws, 3000).await, Some(1008));
}

/// One polling request (a new TCP connection each, so the kernel spreads them over shards).
async fn poll(addr: SocketAddr, query: &str, post: Option<&str>) -> (u16, String) {
    let request = match post {
        None => format!("GET /socket.io/?{query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        Some(body) => format!(
            "POST /socket.io/?{query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    };
    let r = raw_request(addr, request.as_bytes()).await;
    (r.status, String::from_utf8(r.body).expect("UTF-8 body"))
}

#[tokio::test]
async fn long_polling_payloads_per_version_across_shards() {
    let mut config = config(2);
    config.rechat_ping_interval_ms = 400;
    config.rechat_ping_timeout_ms = 2000;
    let server = start_with(config);
    let addr = server.addr;
    let room = create_room(addr, "polled", &["paula", "quinn"]).await;
    // v3: length-prefixed records; the handshake answers the open packet and 40.
    let (status, body) = poll(addr, "EIO=3&transport=polling", None).await;
    assert_eq!(status, 200, "{body}");
    let (len, rest) = body.split_once(':').expect("v3 record");
    let open: Value = serde_json::from_str(&rest[1..len.parse::<usize>().unwrap()]).expect("open");
    assert_eq!(open["upgrades"], json!(["websocket"]), "polling may upgrade");
    assert!(rest.ends_with("2:40"), "{body}");
    let sid = open["sid"].as_str().expect("sid").to_string();
    let q = format!("EIO=3&transport=polling&sid={sid}");
    // Several POSTs and GETs: whatever shard each lands on, the session answers.
    for _ in 0..4 {
        assert_eq!(poll(addr, &q, Some("1:2")).await, (200, "ok".into()));
        assert_eq!(poll(addr, &q, None).await, (200, "1:3".into()));
    }
    // A payload of several packets, acks in order, and an event delivered to the session.
    let auth = format!(r#"421["Authenticate","{}"]"#, user_token("paula"));
    let send =
        format!(r#"422["Message.Send","{room}",{{"comment":"é😀","message_type":"TopLevel"}}]"#);
    let payload =
        format!("{}:{auth}{}:{send}", auth.len(), send.chars().map(char::len_utf16).sum::<usize>());
    assert_eq!(poll(addr, &q, Some(&payload)).await.0, 200);
    let mut seen = String::new();
    while !(seen.contains("431[null")
        && seen.contains("\"Message.Sent\"")
        && seen.contains("432[null"))
    {
        let (status, body) = poll(addr, &q, None).await;
        assert_eq!(status, 200, "{body}");
        seen.push_str(&body);
    }
    // Nothing queued: a noop after pingInterval.
    assert_eq!(poll(addr, &q, None).await, (200, "1:6".into()));
    // A malformed payload ends the session.
    assert_eq!(poll(addr, &q, Some("5:2")).await.0, 400);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) = poll(addr, &q, None).await;
    assert!(status == 400 || body.ends_with(":1"), "{status} {body}");

    // v4: record-separated payloads; the server pings, the client answers.
    let (status, body) = poll(addr, "EIO=4&transport=polling", None).await;
    assert_eq!(status, 200);
    let open: Value = serde_json::from_str(body.strip_prefix('0').expect("open")).expect("open");
    let q = format!("EIO=4&transport=polling&sid={}", open["sid"].as_str().unwrap());
    assert_eq!(
        poll(addr, &q, Some(&format!(r#"40{{"token":"{}"}}"#, user_token("quinn")))).await.0,
        200
    );
    // The CONNECT answer, then (after the registration) Users.Online.
    let mut seen = String::new();
    while !(seen.contains("40{\"sid\"") && seen.contains("Users.Online")) {
        seen.push_str(&poll(addr, &q, None).await.1);
        seen.push('\u{1e}');
    }
    assert!(seen.find("40{\"sid\"") < seen.find("Users.Online"), "{seen}");
    post_message(addr, room, "paula", "to quinn").await;
    let mut seen = String::new();
    while !seen.contains("to quinn") {
        let body = poll(addr, &q, None).await.1;
        if body.split('\u{1e}').any(|p| p == "2") {
            assert_eq!(poll(addr, &q, Some("3")).await.0, 200);
        }
        seen.push_str(&body);
    }
    // Unknown sids are refused.
    let (status, body) = poll(addr, "EIO=4&transport=polling&sid=00AAAAAAAAAAAAAAAAAA", None).await;
    assert_eq!((status, body.as_str()), (400, r#"{"code":1,"message":"Session ID unknown"}"#));
}

/// A v3 polling session of `user` (authenticated, its ack read); its `sid`.
async fn polling_session(addr: SocketAddr, user: &str) -> String {
    let (status, body) = poll(addr, "EIO=3&transport=polling", None).await;
    assert_eq!(status, 200, "{body}");
    let (len, rest) = body.split_once(':').expect("v3 record");
    let open: Value = serde_json::from_str(&rest[1..len.parse::<usize>().unwrap()]).expect("open");
    let sid = open["sid"].as_str().expect("sid").to_string();
    let q = format!("EIO=3&transport=polling&sid={sid}");
    let auth = format!(r#"421["Authenticate","{}"]"#, user_token(user));
    assert_eq!(poll(addr, &q, Some(&format!("{}:{auth}", auth.len()))).await.0, 200);
    let mut seen = String::new();
    while !seen.contains("431[null") {
        seen.push_str(&poll(addr, &q, None).await.1);
    }
    sid
}

/// The WebSocket that upgrades polling session `sid` (`eio`), and the shard that served it.
async fn upgrade_socket(addr: SocketAddr, eio: u8, sid: &str) -> (Sio, usize) {
    let path = format!("/socket.io/?EIO={eio}&transport=websocket&sid={sid}");
    let (ws, shard) = ws_connect(addr, &path, Auth::None).await.expect("upgrade connect");
    (Sio { ws, backlog: VecDeque::new() }, shard)
}

#[tokio::test]
async fn polling_upgrades_to_websocket_on_the_sessions_shard() {
    let mut config = config(2);
    // Long enough that a GET returning quickly can only be the probe's doing.
    config.rechat_ping_interval_ms = 30_000;
    config.rechat_ping_timeout_ms = 30_000;
    let server = start_with(config);
    let addr = server.addr;
    let room = create_room(addr, "upgraded", &["ursula", "victor"]).await;
    let mut victor = authed(addr, "victor").await;
    next_event(&mut victor, "Users.Online").await;

    // Every upgrade is served by the shard its sid names, wherever the kernel put it.
    for _ in 0..6 {
        let sid = polling_session(addr, "walter").await;
        let home = roomcast::dialect::rechat::engineio::shard_of_sid(&sid, 2).expect("shard");
        let (ws, shard) = upgrade_socket(addr, 3, &sid).await;
        assert_eq!(shard, home.0, "{sid}");
        drop(ws);
    }

    let sid = polling_session(addr, "ursula").await;
    let q = format!("EIO=3&transport=polling&sid={sid}");
    next_event(&mut victor, "User.Online").await;
    // A GET waits; the probe makes it answer a noop at once.
    let waiting = tokio::spawn({
        let q = q.clone();
        async move { poll(addr, &q, None).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (mut ws, _) = upgrade_socket(addr, 3, &sid).await;
    send(&mut ws, "2probe").await;
    assert_eq!(next_text(&mut ws).await, "3probe");
    let answered = tokio::time::timeout(Duration::from_secs(5), waiting).await;
    assert_eq!(answered.expect("the GET answers").expect("task"), (200, "1:6".into()));
    // Sent while paused: an action whose ack is still to come, and an event for the session.
    let send_action = format!(
        r#"422["Message.Send","{room}",{{"comment":"in flight","message_type":"TopLevel"}}]"#
    );
    assert_eq!(poll(addr, &q, Some(&format!("{}:{send_action}", send_action.len()))).await.0, 200);
    post_message(addr, room, "victor", "while paused").await;
    // The upgrade: both come over the WebSocket, nothing is lost.
    send(&mut ws, "5").await;
    assert_eq!(next_ack(&mut ws, 2).await[0], Value::Null);
    let sent = next_event(&mut ws, "Message.Sent").await;
    let texts: Vec<String> = vec![sent[1]["comment"].as_str().unwrap_or("").to_string()];
    let sent = next_event(&mut ws, "Message.Sent").await;
    let mut texts = texts;
    texts.push(sent[1]["comment"].as_str().unwrap_or("").to_string());
    texts.sort();
    assert_eq!(texts, ["in flight", "while paused"]);
    // The WebSocket now carries the session: pings, actions and acks, events.
    send(&mut ws, "2").await;
    next_matching(&mut ws, |t| (t == "3").then_some(())).await;
    send(
        &mut ws,
        &format!(
            r#"423["Message.Send","{room}",{{"comment":"over ws","message_type":"TopLevel"}}]"#
        ),
    )
    .await;
    assert_eq!(next_ack(&mut ws, 3).await[0], Value::Null);
    // Polling for the session is over.
    assert_eq!(poll(addr, &q, None).await.0, 400);
    // Victor saw ursula's messages and no presence flap during the upgrade.
    let mut seen = Vec::new();
    while !seen.iter().any(|t: &String| t.contains("over ws")) {
        seen.push(next_text(&mut victor).await);
    }
    assert!(!seen.iter().any(|t| t.contains("User.Offline")), "{seen:?}");
    // Closing the WebSocket ends the session: ursula goes offline.
    drop(ws);
    assert_eq!(next_event(&mut victor, "User.Offline").await, vec![json!("ursula")]);
}

#[tokio::test]
async fn bad_upgrades_are_refused_and_polling_goes_on() {
    let mut config = config(1);
    config.rechat_ping_interval_ms = 1_000;
    config.rechat_ping_timeout_ms = 30_000;
    let server = start_with(config);
    let addr = server.addr;
    let room = create_room(addr, "probed", &["xena"]).await;
    let sid = polling_session(addr, "xena").await;
    let q = format!("EIO=3&transport=polling&sid={sid}");
    // Another revision than the session's: 400 before the upgrade.
    let path = format!("/socket.io/?EIO=4&transport=websocket&sid={sid}");
    match ws_connect(addr, &path, Auth::None).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 400),
        other => panic!("expected 400, got {:?}", other.map(|_| ())),
    }
    // A probe followed by anything but the upgrade closes that WebSocket only (1002).
    let (mut ws, _) = upgrade_socket(addr, 3, &sid).await;
    send(&mut ws, "2probe").await;
    assert_eq!(next_text(&mut ws).await, "3probe");
    send(&mut ws, r#"42["Message.Send"]"#).await;
    assert_eq!(closed(&mut ws, 3000).await, Some(1002));
    // The session is still polled, events included.
    tokio::time::sleep(Duration::from_millis(100)).await;
    post_message(addr, room, "xena", "still polling").await;
    let mut seen = String::new();
    while !seen.contains("still polling") {
        let (status, body) = poll(addr, &q, None).await;
        assert_eq!(status, 200, "{body}");
        seen.push_str(&body);
    }
    // Binary on the probing socket: 1003.
    let (mut ws, _) = upgrade_socket(addr, 3, &sid).await;
    ws.ws.send(Message::binary(vec![4u8, 1, 2])).await.expect("send");
    assert_eq!(closed(&mut ws, 3000).await, Some(1003));
    // Once upgraded, a second upgrade of the session is refused.
    let (mut ws, _) = upgrade_socket(addr, 3, &sid).await;
    send(&mut ws, "2probe").await;
    assert_eq!(next_text(&mut ws).await, "3probe");
    send(&mut ws, "5").await;
    send(&mut ws, "2").await;
    next_matching(&mut ws, |t| (t == "3").then_some(())).await;
    let path = format!("/socket.io/?EIO=3&transport=websocket&sid={sid}");
    match ws_connect(addr, &path, Auth::None).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 400),
        other => panic!("expected 400, got {:?}", other.map(|_| ())),
    }
    // Malformed input on the upgraded socket ends the session and its WebSocket.
    send(&mut ws, "x").await;
    assert!(matches!(closed(&mut ws, 3000).await, Some(1000 | 1002) | None));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(poll(addr, &q, None).await.0, 400);
}

/// A polling handshake (`GET`, or another `method`) with `origin`: the response.
async fn from_origin(addr: SocketAddr, method: &str, origin: Option<&str>) -> HttpResponse {
    let origin = origin.map(|o| format!("Origin: {o}\r\n")).unwrap_or_default();
    let request = format!(
        "{method} /socket.io/?EIO=3&transport=polling HTTP/1.1\r\nHost: x\r\n{origin}\
         Connection: close\r\n\r\n"
    );
    raw_request(addr, request.as_bytes()).await
}

#[tokio::test]
async fn browser_pages_get_cors_headers_for_allowed_origins_only() {
    // The default, as Rechat's server: every origin, reflected with credentials.
    let server = start(1);
    let r = from_origin(server.addr, "GET", Some("https://any.example")).await;
    assert_eq!(r.status, 200);
    assert!(r.head.contains("Access-Control-Allow-Origin: https://any.example\r\n"), "{}", r.head);
    assert!(r.head.contains("Access-Control-Allow-Credentials: true\r\n"), "{}", r.head);
    let r = from_origin(server.addr, "GET", None).await;
    assert!(r.head.contains("Access-Control-Allow-Origin: *\r\n"), "{}", r.head);
    let r = from_origin(server.addr, "OPTIONS", Some("https://any.example")).await;
    assert_eq!(r.status, 204, "{}", r.head);
    assert!(r.head.contains("Access-Control-Allow-Methods: GET, POST, OPTIONS\r\n"), "{}", r.head);
    drop(server);

    // A list: its origins are served, others get engine.io's 403, polling and WebSocket alike.
    let mut config = config(1);
    config.rechat_cors_origins = "https://app.example, http://localhost:3000".into();
    let server = start_with(config);
    let r = from_origin(server.addr, "GET", Some("http://localhost:3000")).await;
    assert_eq!(r.status, 200);
    assert!(
        r.head.contains("Access-Control-Allow-Origin: http://localhost:3000\r\n"),
        "{}",
        r.head
    );
    for method in ["GET", "OPTIONS"] {
        let r = from_origin(server.addr, method, Some("https://evil.example")).await;
        assert_eq!((r.status, r.json()["code"].as_u64()), (403, Some(4)), "{method}");
        assert!(!r.head.contains("Access-Control-Allow-Origin"), "{}", r.head);
    }
    let upgrade = |origin: &str| {
        format!(
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    };
    let r = raw_request(server.addr, upgrade("https://evil.example").as_bytes()).await;
    assert_eq!(r.status, 403, "{}", r.head);
    // An allowed page's WebSocket is served (101, then the open packet).
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut stream, upgrade("https://app.example").as_bytes())
        .await
        .expect("write");
    let mut head = vec![0u8; 512];
    let n = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut stream, &mut head),
    )
    .await
    .expect("in time")
    .expect("read");
    assert!(head[..n].starts_with(b"HTTP/1.1 101"), "{:?}", String::from_utf8_lossy(&head[..n]));
}

/// The `Authenticate` ack promises a subscribed socket: a message committed right after it
/// (by a REST post sent the moment the ack arrives, on an already open connection) reaches
/// the socket, for a fresh user whose rooms live on other shards than its socket.
#[tokio::test]
async fn a_message_posted_right_after_the_authenticate_ack_reaches_the_socket() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut config = support::config(2);
    config.durability = roomcast::config::Durability::None;
    let server = start_with(config);
    let addr = server.addr;
    let mut missed = Vec::new();
    for round in 0..40 {
        let user = format!("fresh{round}");
        let mut rooms = Vec::new();
        for r in 0..8 {
            rooms.push(create_room(addr, &format!("r{round}-{r}"), &[&user, "poster"]).await);
        }
        let marker = format!("race-{round}-marker");
        let body = json!({ "text": marker }).to_string();
        let request = format!(
            "POST /api/v1/rooms/{}/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            rooms[7],
            user_token("poster"),
            body.len()
        );
        let mut rest = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut sio = authed(addr, &user).await;
        rest.write_all(request.as_bytes()).await.unwrap();
        let mut answer = [0u8; 12];
        rest.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"HTTP/1.1 201", "the post is acknowledged");
        let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
        let mut got = sio.backlog.iter().any(|t| t.contains(&marker));
        while !got {
            match tokio::time::timeout_at(deadline, sio.ws.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => got = text.contains(&marker),
                Ok(Some(Ok(_))) => {}
                _ => break,
            }
        }
        if !got {
            missed.push(round);
        }
    }
    assert!(missed.is_empty(), "rounds whose socket missed the message: {missed:?}");
}
