//! BIG messenger `/websocket` end to end: real tokio-tungstenite clients, exact wire JSON;
//! auth (401 body), ping/pong, request/response framing, duplicate ids and the error form,
//! dialogs (`chatId` = peer id) and groups, history, edits and deletions, the `chats` event,
//! cross-dialect delivery with Virola and osu!, the silence close, and two shards.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::*;
use tokio_tungstenite::tungstenite::Message;

/// Opens a BIG socket for `user`.
async fn big(addr: SocketAddr, user: &str) -> Ws {
    ws_connect(addr, "/websocket", Auth::Header(&user_token(user))).await.expect("big connect").0
}

async fn send(ws: &mut Ws, value: Value) {
    ws.send(Message::text(value.to_string())).await.expect("send");
}

/// Sends a request and returns its response (or error object), skipping events.
async fn request(ws: &mut Ws, id: &str, payload_type: &str, payload: Value) -> Value {
    send(ws, json!({"type": "request", "id": id, "payloadType": payload_type, "payload": payload}))
        .await;
    loop {
        let frame = next_json(ws).await;
        if frame["type"] == "response" && frame["id"] == id {
            return frame;
        }
        if frame.get("error").is_some() {
            return frame;
        }
    }
}

/// The payload of a successful response.
async fn ok(ws: &mut Ws, id: &str, payload_type: &str, payload: Value) -> Value {
    let r = request(ws, id, payload_type, payload).await;
    assert_eq!(r["type"], "response", "{r}");
    assert!(r["timestamp"].as_u64().is_some(), "{r}");
    r["payload"].clone()
}

/// The next server event of `event_type`, skipping others.
async fn next_event(ws: &mut Ws, event_type: &str) -> Value {
    loop {
        let frame = next_json(ws).await;
        if frame["type"] == "event" && frame["eventType"] == event_type {
            assert!(frame["id"].as_str().is_some_and(|id| !id.is_empty()), "{frame}");
            assert!(frame["timestamp"].as_u64().is_some(), "{frame}");
            return frame;
        }
    }
}

/// Asserts no event of `event_type` arrives within `ms`.
async fn no_event(ws: &mut Ws, event_type: &str, ms: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return,
            Ok(Some(Ok(Message::Text(text)))) => {
                let v: Value = serde_json::from_str(&text).expect("JSON");
                assert_ne!(v["eventType"], event_type, "unexpected {text}");
            }
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("stream ended: {other:?}"),
        }
    }
}

#[tokio::test]
async fn missing_or_bad_token_gets_401_with_bigs_body_before_upgrade() {
    let server = start(1);
    for auth in ["", "Authorization: Bearer nope\r\n"] {
        let request = format!(
            "GET /websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{auth}\r\n"
        );
        let r = raw_request(server.addr, request.as_bytes()).await;
        assert_eq!(r.status, 401, "{}", r.head);
        let body = r.json();
        assert_eq!(body["error"], "Unauthorized");
        assert_eq!(body["status"], 401);
        assert!(body["timestamp"].as_u64().is_some_and(|t| t > 1_600_000_000_000));
    }
    // A plain GET is told to upgrade.
    let r = call(server.addr, "GET", "/websocket", Some(&user_token("alice")), None).await;
    assert_eq!(r.status, 426);
    // A bad query token (the browser's way in) is refused the same way.
    let request = "GET /websocket?access_token=nope HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
                   Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                   Sec-WebSocket-Version: 13\r\n\r\n";
    let r = raw_request(server.addr, request.as_bytes()).await;
    assert_eq!(r.status, 401, "{}", r.head);
    assert_eq!(r.json()["error"], "Unauthorized");
}

/// Browsers cannot set `Authorization` on a WebSocket: `?access_token=` opens the same
/// session (requests answered as the token's user).
#[tokio::test]
async fn a_query_token_opens_a_session_for_browsers() {
    let server = start(1);
    let token = user_token("alice");
    let (mut ws, _) = ws_connect(server.addr, "/websocket", Auth::Query(&token)).await.unwrap();
    assert_eq!(ok(&mut ws, "1", "chats", json!({})).await, json!([]));
    close(ws).await;
}

#[tokio::test]
async fn short_frames_are_pings_and_get_pong() {
    let server = start(1);
    let mut ws = big(server.addr, "alice").await;
    for ping in ["ping", "1", "\t", "abcde"] {
        ws.send(Message::text(ping)).await.unwrap();
        assert_eq!(next_json(&mut ws).await, json!({"event": "pong"}));
    }
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(next_json(&mut ws).await, json!({"event": "pong"}));
    close(ws).await;
}

#[tokio::test]
async fn bad_frames_get_the_real_error_form_and_duplicate_ids_are_refused_unexecuted() {
    let server = start(1);
    let mut alice = big(server.addr, "alice").await;
    ws_send_text(&mut alice, "this is not json").await;
    let e = next_json(&mut alice).await;
    assert_eq!(e["error"]["incomingMessage"], "this is not json");
    assert!(e["error"]["exception"].as_str().is_some());

    let r = request(&mut alice, "7", "nonsense", json!({})).await;
    assert!(r["error"]["exception"].as_str().unwrap().contains("nonsense"), "{r}");

    let new = json!({"chatId": "bob", "message": "once", "clientMessageId": "c-1"});
    let first = ok(&mut alice, "1", "new", new.clone()).await;
    assert_eq!(first["messageId"], 1);
    assert_eq!(first["clientMessageId"], "c-1");
    let dup = request(&mut alice, "1", "new", new).await;
    assert_eq!(
        dup,
        json!({"error": {"id": "1", "type": "warning", "exception": "Duplicate request id"}})
    );
    // Not executed: one message in the dialog.
    let history = ok(&mut alice, "2", "messages", json!({"chatId": "bob"})).await;
    assert_eq!(history.as_array().unwrap().len(), 1, "{history}");
    // An unknown message id is the real server's exception.
    let r = request(
        &mut alice,
        "3",
        "edit",
        json!({"chatId": "bob", "originalMessageId": 99,
        "message": "x"}),
    )
    .await;
    assert_eq!(r["error"]["exception"], "messageId is not exists", "{r}");
    close(alice).await;
}

async fn ws_send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.expect("send");
}

async fn dialog_both_ways(shards: usize) {
    let server = start(shards);
    let mut alice = big(server.addr, "alice").await;
    let mut bob = big(server.addr, "bob").await;
    assert_eq!(ok(&mut bob, "0", "chats", json!({})).await, json!([]));

    let sent = ok(
        &mut alice,
        "1",
        "new",
        json!({"chatId": "bob", "message": "hi bob", "clientMessageId": "u-1"}),
    )
    .await;
    assert_eq!(sent["messageId"], 1);
    assert_eq!(sent["clientMessageId"], "u-1");

    // Bob: the dialog appears (chats), then the message arrives, with chatId = alice.
    let chats = first_of(&mut bob, &["chats", "new"]).await;
    assert_eq!(chats["eventType"], "chats", "{chats}");
    let new = next_event(&mut bob, "new").await;
    assert_eq!(chats["payload"][0]["type"], "dialog");
    assert_eq!(chats["payload"][0]["id"], "alice");
    let p = &new["payload"];
    assert_eq!(p["chatId"], "alice");
    assert_eq!(p["sender"], "alice");
    assert_eq!(p["messageId"], 1);
    assert_eq!(p["clientMessageId"], "u-1");
    assert_eq!(p["message"], "hi bob");
    assert_eq!(p["timestamp"], sent["timestamp"]);

    // Alice gets her chat list too, but no echo of her own message.
    let chats = next_event(&mut alice, "chats").await;
    assert_eq!(chats["payload"][0]["id"], "bob");
    no_event(&mut alice, "new", 300).await;

    // Bob answers in the same dialog: alice sees chatId = bob, messageId 2.
    let reply = ok(&mut bob, "1", "new", json!({"chatId": "alice", "message": "hi alice"})).await;
    assert_eq!(reply["messageId"], 2);
    let new = next_event(&mut alice, "new").await;
    assert_eq!(new["payload"]["chatId"], "bob");
    assert_eq!(new["payload"]["messageId"], 2);

    // Chat and chat list as each side sees them.
    let chat = ok(&mut alice, "2", "chat", json!({"chatId": "bob"})).await;
    assert_eq!(chat["chatId"], "bob");
    assert_eq!(chat["type"], "dialog");
    assert_eq!(chat["lastMessageId"], 2);
    let list = ok(&mut bob, "2", "chats", json!({})).await;
    assert_eq!(list[0]["id"], "alice");
    assert_eq!(list[0]["lastMessageId"], 2);
    assert_eq!(list[0]["lastMessageAuthor"], "bob");
    assert_eq!(list[0]["isMine"], true);

    // Edit, then history shows the new text; delete reaches the other side.
    let edited = ok(
        &mut alice,
        "3",
        "edit",
        json!({"chatId": "bob", "originalMessageId": 1, "message": "hey"}),
    )
    .await;
    assert_eq!(edited["messageId"], 1);
    let history = ok(&mut bob, "3", "messages", json!({"chatId": "alice"})).await;
    let texts: Vec<&str> =
        history.as_array().unwrap().iter().map(|m| m["message"].as_str().unwrap()).collect();
    assert_eq!(texts, ["hey", "hi alice"]);
    assert_eq!(history[0]["sender"], "alice");
    assert_eq!(history[0]["messageId"], 1);
    assert!(history[0]["updatedAt"].as_u64().is_some());

    ok(&mut alice, "4", "delete", json!({"chatId": "bob", "originalMessageId": 1})).await;
    let deleted = next_event(&mut bob, "delete").await;
    assert_eq!(deleted["payload"]["chatId"], "alice");
    assert_eq!(deleted["payload"]["originalMessageId"], 1);
    no_event(&mut alice, "delete", 300).await;
    let history = ok(&mut bob, "4", "messages", json!({"chatId": "alice"})).await;
    assert_eq!(history.as_array().unwrap().len(), 1);
    close(alice).await;
    close(bob).await;
}

#[tokio::test]
async fn dialog_messages_go_both_ways_with_the_peer_as_chat_id() {
    dialog_both_ways(1).await;
}

#[tokio::test]
async fn dialog_works_across_two_shards() {
    dialog_both_ways(2).await;
}

#[tokio::test]
async fn history_pages_by_start_id_end_id_and_count() {
    let server = start(1);
    let mut alice = big(server.addr, "alice").await;
    for i in 1..=6 {
        ok(
            &mut alice,
            &format!("n{i}"),
            "new",
            json!({"chatId": "bob", "message": format!("m{i}")}),
        )
        .await;
    }
    let seqs = |v: &Value| -> Vec<u64> {
        v.as_array().unwrap().iter().map(|m| m["messageId"].as_u64().unwrap()).collect()
    };
    let newest = ok(&mut alice, "a", "messages", json!({"chatId": "bob", "count": 2})).await;
    assert_eq!(seqs(&newest), [5, 6]);
    let from =
        ok(&mut alice, "b", "messages", json!({"chatId": "bob", "startId": 3, "count": 2})).await;
    assert_eq!(seqs(&from), [3, 4]);
    let until =
        ok(&mut alice, "c", "messages", json!({"chatId": "bob", "endId": 3, "count": 5})).await;
    assert_eq!(seqs(&until), [1, 2, 3]);
    let r = request(&mut alice, "d", "messages", json!({"chatId": "bob", "count": 501})).await;
    assert!(r["error"]["exception"].as_str().unwrap().contains("count"), "{r}");
    close(alice).await;
}

#[tokio::test]
async fn group_messages_reach_virola_and_osu_and_back() {
    let server = start(2);
    let room = create_room(server.addr, "team", &["alice", "carol", "dave"]).await;
    let mut alice = big(server.addr, "alice").await;
    let mut carol = virola(server.addr, "carol").await;
    let osu_token = user_token("dave");
    let (mut dave, _) =
        ws_connect(server.addr, "/notifications", Auth::Header(&osu_token)).await.unwrap();
    assert_eq!(next_json(&mut dave).await["event"], "connection.ready");
    dave.send(Message::text(r#"{"event":"chat.start"}"#)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let chats = ok(&mut alice, "1", "chats", json!({})).await;
    assert_eq!(chats[0]["id"], room.to_string());
    assert_eq!(chats[0]["type"], "group");
    assert_eq!(chats[0]["name"], "team");

    // BIG → Virola and osu!.
    let sent = ok(
        &mut alice,
        "2",
        "new",
        json!({"chatId": room.to_string(), "message": "from big", "clientMessageId": "b-1"}),
    )
    .await;
    assert_eq!(sent["messageId"], 1);
    let v = next_of(&mut carol, "TextMessagesCreated").await;
    assert!(v.to_string().contains("from big"), "{v}");
    let o = loop {
        let e = next_json(&mut dave).await;
        if e["event"] == "chat.message.new" {
            break e;
        }
    };
    assert_eq!(o["data"]["messages"][0]["content"], "from big");
    assert_eq!(o["data"]["messages"][0]["uuid"], "b-1");

    // REST (the Virola user) → BIG: chatId = room id, messageId = the room's seq.
    post_message(server.addr, room, "carol", "from virola").await;
    let new = next_event(&mut alice, "new").await;
    assert_eq!(new["payload"]["chatId"], room.to_string());
    assert_eq!(new["payload"]["sender"], "carol");
    assert_eq!(new["payload"]["messageId"], 2);
    assert_eq!(new["payload"]["message"], "from virola");
    close(alice).await;
    close(carol).await;
    close(dave).await;
}

#[tokio::test]
async fn a_silent_connection_is_closed_and_pings_keep_it_open() {
    let mut config = support::config(1);
    config.big_silence_ms = 600;
    let server = start_with(config);
    let mut quiet = big(server.addr, "alice").await;
    let mut chatty = big(server.addr, "bob").await;
    let started = std::time::Instant::now();
    let mut closed_code = None;
    while started.elapsed() < Duration::from_secs(3) {
        chatty.send(Message::text("ping")).await.unwrap();
        assert_eq!(next_json(&mut chatty).await, json!({"event": "pong"}));
        match tokio::time::timeout(Duration::from_millis(200), quiet.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => {
                closed_code = Some(frame.map(|f| u16::from(f.code)));
                break;
            }
            Ok(None | Some(Err(_))) => {
                closed_code = Some(None);
                break;
            }
            _ => {}
        }
    }
    assert_eq!(closed_code, Some(Some(1011)), "the silent socket is closed with 1011");
    assert!(started.elapsed() >= Duration::from_millis(500));
    // The chatty one is still served.
    assert_eq!(ok(&mut chatty, "1", "chats", json!({})).await, json!([]));
    close(chatty).await;
}

/// A server whose unacknowledged BIG events are re-sent every `resend_ms`.
fn server_resending(shards: usize, resend_ms: u64, unacked_max: usize) -> Server {
    let mut config = support::config(shards);
    config.big_resend_ms = resend_ms;
    config.big_unacked_max = unacked_max;
    start_with(config)
}

async fn ack(ws: &mut Ws, id: &Value) {
    send(ws, json!({"type": "ack", "id": id})).await;
}

#[tokio::test]
async fn events_are_resent_until_acknowledged() {
    let server = server_resending(2, 300, 256);
    let mut alice = big(server.addr, "alice").await;
    let mut bob = big(server.addr, "bob").await;
    ok(&mut alice, "1", "new", json!({"chatId": "bob", "message": "one"})).await;
    let first = next_event(&mut bob, "new").await;
    // Not acknowledged: the same event (same id) comes again, and again.
    let again = next_event(&mut bob, "new").await;
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["payload"], first["payload"]);
    let chats = next_event(&mut bob, "chats").await;
    // Acknowledge both: nothing comes back any more.
    ack(&mut bob, &first["id"]).await;
    ack(&mut bob, &chats["id"]).await;
    // Drained, not slept through: a resend already under way as the acks went out may land.
    let _ = events_within(&mut bob, 350).await;
    let later = events_within(&mut bob, 900).await;
    assert!(later.is_empty(), "acknowledged events are not re-sent: {later:?}");
    // The sender's own `chats` event is re-sent to her until she acknowledges it too.
    let hers = next_event(&mut alice, "chats").await;
    let hers_again = next_event(&mut alice, "chats").await;
    assert_eq!(hers["id"], hers_again["id"]);
    close(alice).await;
    close(bob).await;
}

#[tokio::test]
async fn a_reconnecting_user_gets_its_unacknowledged_events_at_once() {
    // Resending every 30 s: what arrives quickly comes from the reconnect, not the interval.
    let server = server_resending(2, 30_000, 256);
    let mut alice = big(server.addr, "alice").await;
    let mut bob = big(server.addr, "bob").await;
    ok(&mut alice, "1", "new", json!({"chatId": "bob", "message": "while you were here"})).await;
    let first = next_event(&mut bob, "new").await;
    close(bob).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut bob = big(server.addr, "bob").await;
    let again = next_event(&mut bob, "new").await;
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["payload"]["message"], "while you were here");
    close(alice).await;
    close(bob).await;
}

#[tokio::test]
async fn chat_list_events_are_coalesced_per_user() {
    let server = server_resending(1, 400, 256);
    let mut bob = big(server.addr, "bob").await;
    for name in ["g1", "g2", "g3"] {
        create_room(server.addr, name, &["bob"]).await;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Skip what was sent live; then every re-sent list is the newest one, once per interval.
    let _ = events_within(&mut bob, 300).await;
    let resent = events_within(&mut bob, 1300).await;
    let lists: Vec<&Value> = resent.iter().filter(|e| e["eventType"] == "chats").collect();
    assert!(!lists.is_empty() && lists.len() <= 4, "one list per resend: {}", lists.len());
    for list in &lists {
        assert_eq!(list["id"], lists[0]["id"]);
        assert_eq!(list["payload"].as_array().unwrap().len(), 3, "{list}");
    }
    close(bob).await;
}

#[tokio::test]
async fn too_many_unacknowledged_events_close_the_connection() {
    let server = server_resending(1, 60_000, 3);
    let mut alice = big(server.addr, "alice").await;
    let mut bob = big(server.addr, "bob").await;
    for i in 0..5 {
        ok(&mut alice, &i.to_string(), "new", json!({"chatId": "bob", "message": format!("m{i}")}))
            .await;
    }
    let mut told = false;
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(5), bob.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let v: Value = serde_json::from_str(&text).unwrap();
                if v["error"]["type"] == "overflow" {
                    told = true;
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => {}
            other => panic!("no close: {other:?}"),
        }
    };
    assert!(told, "the connection is told before it is closed");
    assert_eq!(code, Some(1008));
    // A fresh connection starts with an empty store and works.
    let mut bob = big(server.addr, "bob").await;
    assert_eq!(ok(&mut bob, "x", "chats", json!({})).await[0]["id"], "alice");
    close(alice).await;
    close(bob).await;
}

#[tokio::test]
async fn presence_online_for_both_sides_and_offline_on_client_event() {
    let server = start(2);
    let mut alice = big(server.addr, "alice").await;
    ok(&mut alice, "1", "new", json!({"chatId": "bob", "message": "are you there?"})).await;
    let mut carol = big(server.addr, "carol").await; // no dialog with anyone: told nothing
    let mut bob = big(server.addr, "bob").await;
    let online = next_event(&mut alice, "online").await;
    assert_eq!(online["payload"], json!({"userId": "bob"}));
    let peer = next_event(&mut bob, "online").await;
    assert_eq!(peer["payload"], json!({"userId": "alice"}));

    // Bob's client says it goes away: the socket is closed, alice gets `offline`.
    let before = roomcast::model::ids::now_ms();
    send(&mut bob, json!({"type": "event", "payloadType": "offline"})).await;
    let offline = next_event(&mut alice, "offline").await;
    assert_eq!(offline["payload"]["userId"], "bob");
    assert!(offline["payload"]["lastSeen"].as_u64().unwrap() >= before);
    no_event(&mut carol, "online", 200).await;
    close(alice).await;
    close(carol).await;
}

#[tokio::test]
async fn twenty_seconds_of_silence_mean_offline_for_the_peers() {
    let mut config = support::config(2);
    config.big_silence_ms = 700;
    let server = start_with(config);
    let mut alice = big(server.addr, "alice").await;
    ok(&mut alice, "1", "new", json!({"chatId": "bob", "message": "hi"})).await;
    let bob = big(server.addr, "bob").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    let (mut online, mut offline) = (false, None);
    while std::time::Instant::now() < deadline && offline.is_none() {
        ws_send_text(&mut alice, "ping").await;
        for event in events_within(&mut alice, 200).await {
            match event["eventType"].as_str() {
                Some("online") => online = true,
                Some("offline") => offline = Some(event),
                _ => {}
            }
        }
    }
    assert!(online, "bob came online first");
    let offline = offline.expect("bob's silence ends in offline");
    assert_eq!(offline["payload"]["userId"], "bob");
    drop(bob);
    close(alice).await;
}

#[tokio::test]
async fn typing_reaches_the_peer_once_and_is_never_resent() {
    let server = server_resending(2, 250, 256);
    let mut alice = big(server.addr, "alice").await;
    let mut bob = big(server.addr, "bob").await;
    ok(&mut alice, "1", "new", json!({"chatId": "bob", "message": "hi"})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    send(
        &mut alice,
        json!({"type": "event", "payloadType": "typing", "payload": {"chatId": "bob"}}),
    )
    .await;
    let typing = next_event(&mut bob, "typing").await;
    assert_eq!(typing["payload"], json!({"userId": "alice", "chatId": "alice"}));
    let later = events_within(&mut bob, 800).await;
    assert!(later.iter().all(|e| e["eventType"] != "typing"), "typing is not re-sent: {later:?}");
    send(
        &mut alice,
        json!({"type": "event", "payloadType": "typing", "payload": {"chatId": "bob", "stop": true}}),
    )
    .await;
    let stopped = next_event(&mut bob, "typing").await;
    assert_eq!(stopped["payload"]["stop"], true);
    no_event(&mut alice, "typing", 300).await;
    close(alice).await;
    close(bob).await;
}

#[tokio::test]
async fn receipts_flow_both_ways_cumulatively_and_are_not_repeated() {
    let server = start(2);
    let mut alice = big(server.addr, "alice").await;
    let mut bob = big(server.addr, "bob").await;
    ok(&mut alice, "1", "new", json!({"chatId": "bob", "message": "m1", "clientMessageId": "c1"}))
        .await;
    let new = next_event(&mut bob, "new").await;
    assert_eq!(new["payload"]["missed"], 1);
    // Bob is online: delivered at once, alice hears it.
    let dlvrd = next_event(&mut alice, "dlvrd").await;
    assert_eq!(dlvrd["payload"]["chatId"], "bob");
    assert_eq!(dlvrd["payload"]["messageId"], 1);
    assert_eq!(dlvrd["payload"]["clientMessageId"], "c1");
    ok(&mut alice, "2", "new", json!({"chatId": "bob", "message": "m2", "clientMessageId": "c2"}))
        .await;
    assert_eq!(next_event(&mut bob, "new").await["payload"]["missed"], 2);
    assert_eq!(next_event(&mut alice, "dlvrd").await["payload"]["messageId"], 2);

    // Reading 2 reads 1 too; alice gets one `read`.
    let read = ok(&mut bob, "1", "read", json!({"chatId": "alice", "messageId": 2})).await;
    assert_eq!(read["chatId"], "alice");
    assert_eq!(read["messageId"], 2);
    assert_eq!(read["missed"], 0);
    assert_eq!(read["clientMessageId"], "c2");
    let event = next_event(&mut alice, "read").await;
    assert_eq!(event["payload"]["messageId"], 2);
    assert_eq!(event["payload"]["userId"], "bob");
    assert_eq!(event["payload"]["timestamp"], read["timestamp"]);
    // Repeated: same answer, no new event.
    let again = ok(&mut bob, "2", "read", json!({"chatId": "alice", "messageId": 1})).await;
    assert_eq!(again["messageId"], 2);
    assert_eq!(again["timestamp"], read["timestamp"]);
    no_event(&mut alice, "read", 400).await;

    // The other direction: bob writes, alice reads.
    ok(&mut bob, "3", "new", json!({"chatId": "alice", "message": "m3", "clientMessageId": "c3"}))
        .await;
    let new = next_event(&mut alice, "new").await;
    assert_eq!(new["payload"]["messageId"], 3);
    assert_eq!(new["payload"]["missed"], 1, "alice's own messages count as read");
    assert_eq!(next_event(&mut bob, "dlvrd").await["payload"]["messageId"], 3);
    let read = ok(&mut alice, "3", "read", json!({"chatId": "bob"})).await;
    assert_eq!(read["messageId"], 3);
    let event = next_event(&mut bob, "read").await;
    assert_eq!(event["payload"]["chatId"], "alice");
    assert_eq!(event["payload"]["clientMessageId"], "c3");
    let r = request(&mut alice, "4", "dlvrd", json!({"chatId": "bob", "messageId": 99})).await;
    assert_eq!(r["error"]["exception"], "messageId is not exists");
    close(alice).await;
    close(bob).await;
}

#[tokio::test]
async fn connecting_marks_waiting_messages_delivered_and_receipts_survive_a_restart() {
    let dir = TempDir::new();
    let start_here = || {
        let mut c = support::config(2);
        c.data_dir = dir.0.clone();
        roomcast::start(c).expect("server starts")
    };
    let handle = start_here();
    let addr = handle.addr;
    let mut alice = big(addr, "alice").await;
    for i in 1..=3 {
        let id = format!("r{i}");
        ok(&mut alice, &id, "new", json!({"chatId": "bob", "message": id, "clientMessageId": id}))
            .await;
    }
    no_event(&mut alice, "dlvrd", 300).await;
    // Bob connects: everything waiting is delivered, alice gets one `dlvrd` for the newest.
    let mut bob = big(addr, "bob").await;
    let dlvrd = next_event(&mut alice, "dlvrd").await;
    assert_eq!(dlvrd["payload"]["messageId"], 3);
    assert_eq!(dlvrd["payload"]["clientMessageId"], "r3");
    let read = ok(&mut bob, "1", "read", json!({"chatId": "alice", "messageId": 2})).await;
    assert_eq!(read["missed"], 1);
    let read_event = next_event(&mut alice, "read").await;
    close(alice).await;
    close(bob).await;
    handle.shutdown();

    // After a restart the marks are there: repeating them changes nothing.
    let handle = start_here();
    let addr = handle.addr;
    let mut alice = big(addr, "alice").await;
    let mut bob = big(addr, "bob").await;
    let again = ok(&mut bob, "1", "read", json!({"chatId": "alice", "messageId": 2})).await;
    assert_eq!(again["timestamp"], read["timestamp"], "the stored mark");
    let delivered = ok(&mut bob, "2", "dlvrd", json!({"chatId": "alice"})).await;
    assert_eq!(delivered["messageId"], 3);
    // No new `read`: only the unacknowledged one from before the restart comes again.
    let events = events_within(&mut alice, 300).await;
    let reads: Vec<&Value> = events.iter().filter(|e| e["eventType"] == "read").collect();
    assert!(reads.iter().all(|e| e["id"] == read_event["id"]), "{reads:?}");
    close(alice).await;
    close(bob).await;
    handle.shutdown();
}

#[tokio::test]
async fn the_chat_list_is_sent_when_a_chat_appears_and_when_it_goes() {
    let server = start(2);
    let mut bob = big(server.addr, "bob").await;
    let room = create_room(server.addr, "crew", &["bob", "carol"]).await;
    let appeared = next_event(&mut bob, "chats").await;
    assert_eq!(appeared["payload"][0]["id"], room.to_string());
    assert_eq!(appeared["payload"][0]["name"], "crew");
    ack(&mut bob, &appeared["id"]).await;
    let r = call(
        server.addr,
        "DELETE",
        &format!("/api/v1/rooms/{room}/members/bob"),
        Some(&service_token()),
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    let gone = next_event(&mut bob, "chats").await;
    assert_eq!(gone["payload"], json!([]));
    assert_ne!(gone["id"], appeared["id"]);
    close(bob).await;
}

/// The first event of `event_types` that arrives, skipping others.
async fn first_of(ws: &mut Ws, event_types: &[&str]) -> Value {
    loop {
        let frame = next_json(ws).await;
        if frame["type"] == "event" && event_types.iter().any(|t| frame["eventType"] == *t) {
            return frame;
        }
    }
}

#[tokio::test]
async fn a_new_dialog_s_chat_list_comes_before_its_first_message() {
    // Several dialogs on two shards, so that the pair, the room and the users' owners differ.
    let server = start(2);
    for i in 0..6 {
        let (a, b) = (format!("first-a{i}"), format!("first-b{i}"));
        let mut alice = big(server.addr, &a).await;
        let mut bob = big(server.addr, &b).await;
        // Answered through bob's user owner: it knows bob is connected before the dialog is made.
        assert_eq!(ok(&mut bob, "0", "chats", json!({})).await, json!([]));
        let new = json!({"chatId": b, "message": "hello", "clientMessageId": format!("f{i}")});
        ok(&mut alice, "1", "new", new).await;
        // The sheet: `chats` first, so that the `new`'s chatId is a chat the client knows.
        let first = first_of(&mut bob, &["chats", "new"]).await;
        assert_eq!(first["eventType"], "chats", "dialog {i}: {first}");
        assert_eq!(first["payload"][0]["id"], a.as_str());
        let new = next_event(&mut bob, "new").await;
        assert_eq!(new["payload"]["chatId"], a.as_str());
        assert_eq!(new["payload"]["message"], "hello");
        close(alice).await;
        close(bob).await;
    }
}

#[tokio::test]
async fn chat_lists_and_chats_carry_unread_counts_last_text_and_status() {
    let server = start(2);
    let mut alice = big(server.addr, "alice").await;
    let mut bob = big(server.addr, "bob").await;
    ok(&mut bob, "0", "chats", json!({})).await;
    for (i, text) in ["m1", "m2"].iter().enumerate() {
        let id = format!("{i}");
        ok(&mut alice, &id, "new", json!({"chatId": "bob", "message": text})).await;
    }
    let mut missed = 0;
    while missed < 2 {
        missed = next_event(&mut bob, "new").await["payload"]["missed"].as_u64().unwrap();
    }
    // Delivered to bob (online) but not read.
    while next_event(&mut alice, "dlvrd").await["payload"]["messageId"] != 2 {}

    // Bob's view: two unread messages, the newest one's text, unread.
    let list = ok(&mut bob, "1", "chats", json!({})).await;
    let item = &list[0];
    assert_eq!(item["id"], "alice");
    assert_eq!(item["missed"], 2, "{item}");
    assert_eq!(item["lastMessageText"], "m2");
    assert_eq!(item["lastMessageStatus"], "unread");
    assert_eq!(item["isMine"], false);
    let chat = ok(&mut bob, "2", "chat", json!({"chatId": "alice"})).await;
    assert_eq!(chat["missed"], 2, "{chat}");
    assert_eq!(chat["lastMessageId"], 2);
    // Alice's view: her own message, nothing unread, delivered but not read by bob.
    let list = ok(&mut alice, "a", "chats", json!({})).await;
    assert_eq!(list[0]["missed"], 0, "{list}");
    assert_eq!(list[0]["lastMessageText"], "m2");
    assert_eq!(list[0]["lastMessageStatus"], "unread");
    assert_eq!(list[0]["isMine"], true);

    // Bob reads the first: one left.
    ok(&mut bob, "3", "read", json!({"chatId": "alice", "messageId": 1})).await;
    assert_eq!(ok(&mut bob, "4", "chats", json!({})).await[0]["missed"], 1);
    assert_eq!(ok(&mut bob, "5", "chat", json!({"chatId": "alice"})).await["missed"], 1);
    // Bob reads everything: none left, and alice sees her message read.
    ok(&mut bob, "6", "read", json!({"chatId": "alice"})).await;
    let item = &ok(&mut bob, "7", "chats", json!({})).await[0];
    assert_eq!((&item["missed"], &item["lastMessageStatus"]), (&json!(0), &json!("read")));
    next_event(&mut alice, "read").await;
    assert_eq!(ok(&mut alice, "b", "chats", json!({})).await[0]["lastMessageStatus"], "read");

    // A message to a user who never connected: undelivered, on the author's side.
    ok(&mut alice, "c", "new", json!({"chatId": "carol", "message": "are you there?"})).await;
    let list = ok(&mut alice, "d", "chats", json!({})).await;
    let to_carol = list.as_array().unwrap().iter().find(|c| c["id"] == "carol").unwrap();
    assert_eq!(to_carol["lastMessageStatus"], "undelivered", "{to_carol}");
    assert_eq!(to_carol["lastMessageText"], "are you there?");
    close(alice).await;
    close(bob).await;
}
