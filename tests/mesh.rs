//! Two shards: members of one room connected to both get every event exactly once, in order.

mod support;

use std::collections::HashSet;

use support::*;

#[tokio::test]
async fn mesh_members_on_both_shards_get_every_event_once_in_order() {
    let server = start(2);
    let addr = server.addr;
    let users: Vec<String> = (0..16).map(|i| format!("user{i}")).collect();
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    let room = create_room(addr, "across", &names).await;
    let mut clients = Vec::new();
    let mut shards = HashSet::new();
    for user in &users {
        let (ws, shard) =
            ws_connect(addr, "/api/v1/events", Auth::Header(&user_token(user))).await.unwrap();
        shards.insert(shard);
        clients.push(ws);
    }
    assert_eq!(shards.len(), 2, "SO_REUSEPORT spread 16 connections over both shards");

    let total = 40;
    let mut posters = Vec::new();
    for (p, author) in users.iter().take(4).cloned().enumerate() {
        posters.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..total / 4 {
                ids.push(
                    post_message(addr, room, &author, &format!("{p}-{i}")).await["id"]
                        .as_u64()
                        .unwrap(),
                );
            }
            ids
        }));
    }
    let mut all_ids = Vec::new();
    for poster in posters {
        all_ids.extend(poster.await.unwrap());
    }
    all_ids.sort_unstable();
    for ws in &mut clients {
        let mut seen = Vec::new();
        while seen.len() < total {
            let event = next_of(ws, "TextMessagesCreated").await;
            seen.push(event["data"]["messages"][0]["messageId"].as_u64().unwrap());
        }
        assert_eq!(seen, all_ids, "every event once, in the room's order");
        assert_silent(ws, 200).await;
    }
}

/// The 101 is the promise that the socket is subscribed: a message committed right after it
/// (here by a REST post sent the moment the handshake completes, on an already open
/// connection) reaches the new socket, for a user whose rooms live on other shards than its
/// socket. Each round uses a fresh user, so every attach is that user's first.
#[tokio::test]
async fn a_message_posted_right_after_the_handshake_reaches_the_new_socket() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut config = config(2);
    config.durability = roomcast::config::Durability::None;
    let server = start_with(config);
    let addr = server.addr;
    let rounds = 60;
    let mut missed = Vec::new();
    for round in 0..rounds {
        let user = format!("fresh{round}");
        // Many rooms, so the attach has work to do on every room owner.
        let mut rooms = Vec::new();
        for r in 0..8 {
            rooms.push(create_room(addr, &format!("r{round}-{r}"), &[&user, "poster"]).await);
        }
        let target = rooms[7];
        let body = serde_json::json!({"text": format!("race-{round}-marker")}).to_string();
        let request = format!(
            "POST /api/v1/rooms/{target}/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            user_token("poster"),
            body.len()
        );
        let mut rest = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut ws = virola(addr, &user).await;
        rest.write_all(request.as_bytes()).await.unwrap();
        let mut answer = [0u8; 12];
        rest.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"HTTP/1.1 201", "the post is acknowledged");
        let marker = format!("race-{round}-marker");
        let got = text_arrives(&mut ws, &marker, 1500).await;
        if !got {
            missed.push(round);
        }
    }
    assert!(missed.is_empty(), "rounds whose new socket missed the message: {missed:?}");
}

/// Whether a text frame containing `needle` arrives within `ms`.
async fn text_arrives(ws: &mut Ws, needle: &str, ms: u64) -> bool {
    use futures_util::StreamExt;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(ms);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return false,
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text)))) => {
                if text.contains(needle) {
                    return true;
                }
            }
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("stream ended: {other:?}"),
        }
    }
}
