//! Virola `/api/v1/events` end to end: real WebSocket clients, REST writes, exact wire JSON.

mod support;

use serde_json::json;
use support::*;

#[tokio::test]
async fn virola_members_receive_created_message_with_exact_fields_and_non_member_nothing() {
    let server = start(1);
    let addr = server.addr;
    let room = create_room(addr, "general", &["101", "bob"]).await;
    let (mut alice, _) =
        ws_connect(addr, "/api/v1/events", Auth::Header(&user_token("101"))).await.unwrap();
    let (mut bob, _) =
        ws_connect(addr, "/api/v1/events", Auth::Query(&user_token("bob"))).await.unwrap();
    let (mut carol, _) =
        ws_connect(addr, "/api/v1/events", Auth::Cookie(&user_token("carol"))).await.unwrap();

    let posted = post_message(addr, room, "101", "Build 1.4.2 is ready").await;
    let id = posted["id"].as_u64().unwrap();
    for ws in [&mut alice, &mut bob] {
        let event = next_of(ws, "TextMessagesCreated").await;
        let message = &event["data"]["messages"][0];
        assert_eq!(event["data"]["messages"].as_array().unwrap().len(), 1);
        assert_eq!(message["messageId"], json!(id));
        assert_eq!(message["parentMessageId"], json!(0));
        assert_eq!(message["userId"], json!(101), "numeric user ids render as integers");
        assert_eq!(message["roomId"], json!(room));
        assert_eq!(message["text"], json!("Build 1.4.2 is ready"));
        assert_eq!(message["messageType"], json!("Regular"));
        assert_eq!(message["markupType"], json!("TextPlain"));
        assert_eq!(message["priority"], json!("Normal"));
        assert_eq!(message["createdUtc"], posted["created_ms"]);
        assert_eq!(message["lastEditedUtc"], posted["created_ms"]);
        assert_eq!(message["commentCount"], json!(0));
        assert_eq!(message["attachments"], json!([]));
        assert_eq!(message["readTimestamps"], json!([]));
        assert!(message["createdUtc"].as_u64().unwrap() > 1_700_000_000_000, "milliseconds");
    }
    assert_silent(&mut carol, 300).await;
}

#[tokio::test]
async fn virola_edit_and_delete_reach_members_in_order() {
    let server = start(1);
    let addr = server.addr;
    let room = create_room(addr, "edits", &["alice", "bob"]).await;
    let mut bob = virola(addr, "bob").await;
    let posted = post_message(addr, room, "alice", "first").await;
    let id = posted["id"].as_u64().unwrap();
    let edited = call(
        addr,
        "PATCH",
        &format!("/api/v1/messages/{id}"),
        Some(&user_token("alice")),
        Some(json!({"text": "first, edited"})),
    )
    .await;
    assert_eq!(edited.status, 200);
    let forbidden = call(
        addr,
        "PATCH",
        &format!("/api/v1/messages/{id}"),
        Some(&user_token("bob")),
        Some(json!({"text": "hijack"})),
    )
    .await;
    assert_eq!(forbidden.status, 403, "only the author edits");
    let deleted =
        call(addr, "DELETE", &format!("/api/v1/messages/{id}"), Some(&user_token("alice")), None)
            .await;
    assert_eq!(deleted.status, 204);

    assert_eq!(
        next_of(&mut bob, "TextMessagesCreated").await["data"]["messages"][0]["text"],
        "first"
    );
    let updated = next_json(&mut bob).await;
    assert_eq!(updated["type"], "TextMessagesUpdated");
    let m = &updated["data"]["messages"][0];
    assert_eq!(m["text"], "first, edited");
    let created_ms = m["createdUtc"].as_u64().expect("createdUtc is an integer");
    let edited_ms = m["lastEditedUtc"].as_u64().expect("lastEditedUtc is an integer");
    assert!(edited_ms >= created_ms, "lastEditedUtc {edited_ms} < createdUtc {created_ms}");
    let gone = next_json(&mut bob).await;
    assert_eq!(
        gone,
        json!({"type": "TextMessageDeleted", "data": {"parentMessageId": 0, "roomId": room, "messageId": id}})
    );
    let again =
        call(addr, "DELETE", &format!("/api/v1/messages/{id}"), Some(&user_token("alice")), None)
            .await;
    assert_eq!(again.status, 404);
}

#[tokio::test]
async fn virola_membership_changes_create_and_delete_rooms_for_that_user_only() {
    let server = start(1);
    let addr = server.addr;
    let room = create_room(addr, "team", &["alice"]).await;
    let mut alice = virola(addr, "alice").await;
    let mut dave = virola(addr, "dave").await;

    let added = call(
        addr,
        "PUT",
        &format!("/api/v1/rooms/{room}/members/dave"),
        Some(&service_token()),
        None,
    )
    .await;
    assert_eq!(added.status, 200);
    let created = next_of(&mut dave, "RoomCreated").await;
    let r = &created["data"]["room"];
    assert_eq!(r["roomId"], json!(room));
    assert_eq!(r["displayName"], "team");
    assert_eq!(r["roomType"], "Private");
    assert_eq!(r["isModerator"], false);
    assert_eq!(r["lastMessage"], json!(null));
    for key in ["createdUtc", "lastModifiedUtc", "unreadMessageCount", "isArchived", "isPinned"] {
        assert!(r.get(key).is_some(), "RoomCreated.room has {key}");
    }
    assert_eq!(next_of(&mut alice, "RoomUpdated").await["data"]["room"]["roomId"], json!(room));

    post_message(addr, room, "alice", "welcome dave").await;
    assert_eq!(
        next_of(&mut dave, "TextMessagesCreated").await["data"]["messages"][0]["text"],
        "welcome dave"
    );

    let removed = call(
        addr,
        "DELETE",
        &format!("/api/v1/rooms/{room}/members/dave"),
        Some(&service_token()),
        None,
    )
    .await;
    assert_eq!(removed.status, 204);
    assert_eq!(
        next_json(&mut dave).await,
        json!({"type": "RoomDeleted", "data": {"roomId": room}})
    );
    post_message(addr, room, "alice", "dave cannot see this").await;
    assert_eq!(
        next_of(&mut alice, "TextMessagesCreated").await["data"]["messages"][0]["text"],
        "welcome dave"
    );
    assert_eq!(
        next_of(&mut alice, "TextMessagesCreated").await["data"]["messages"][0]["text"],
        "dave cannot see this"
    );
    assert_silent(&mut dave, 300).await;
}

#[tokio::test]
async fn virola_room_update_and_delete_reach_members_and_moderators_see_is_moderator() {
    let server = start(1);
    let addr = server.addr;
    let created = call(
        addr,
        "POST",
        "/api/v1/rooms",
        Some(&user_token("owner1")),
        Some(json!({"name": "plans", "members": ["bob"]})),
    )
    .await;
    assert_eq!(created.status, 201);
    let room = created.json()["room"]["id"].as_u64().unwrap();
    let mut owner = virola(addr, "owner1").await;
    let mut bob = virola(addr, "bob").await;

    let patched = call(
        addr,
        "PATCH",
        &format!("/api/v1/rooms/{room}"),
        Some(&user_token("owner1")),
        Some(json!({"name": "Release planning"})),
    )
    .await;
    assert_eq!(patched.status, 200);
    assert_eq!(patched.json()["room"]["name"], "Release planning");
    let as_owner = next_of(&mut owner, "RoomUpdated").await;
    assert_eq!(as_owner["data"]["room"]["displayName"], "Release planning");
    assert_eq!(as_owner["data"]["room"]["isModerator"], true);
    let as_bob = next_of(&mut bob, "RoomUpdated").await;
    assert_eq!(as_bob["data"]["room"]["isModerator"], false);

    let bob_patch = call(
        addr,
        "PATCH",
        &format!("/api/v1/rooms/{room}"),
        Some(&user_token("bob")),
        Some(json!({"name": "mine"})),
    )
    .await;
    assert_eq!(bob_patch.status, 403);
    let bob_delete =
        call(addr, "DELETE", &format!("/api/v1/rooms/{room}"), Some(&user_token("bob")), None)
            .await;
    assert_eq!(bob_delete.status, 403);
    let deleted =
        call(addr, "DELETE", &format!("/api/v1/rooms/{room}"), Some(&user_token("owner1")), None)
            .await;
    assert_eq!(deleted.status, 204);
    for ws in [&mut owner, &mut bob] {
        assert_eq!(
            next_of(ws, "RoomDeleted").await,
            json!({"type": "RoomDeleted", "data": {"roomId": room}})
        );
    }
    let gone =
        call(addr, "GET", &format!("/api/v1/rooms/{room}"), Some(&service_token()), None).await;
    assert_eq!(gone.status, 404);
}

#[tokio::test]
async fn virola_author_receives_own_message_on_every_connection() {
    let server = start(1);
    let addr = server.addr;
    let room = create_room(addr, "echo", &["alice"]).await;
    let mut first = virola(addr, "alice").await;
    let mut second = virola(addr, "alice").await;
    post_message(addr, room, "alice", "mine").await;
    for ws in [&mut first, &mut second] {
        assert_eq!(next_of(ws, "TextMessagesCreated").await["data"]["messages"][0]["text"], "mine");
    }
}

#[tokio::test]
async fn virola_upgrade_refuses_missing_expired_forged_and_unsigned_tokens_with_401() {
    let server = start(1);
    let addr = server.addr;
    let expired = {
        let now = roomcast::auth::now_unix_s();
        let claims = serde_json::json!({"sub": "alice", "exp": now - 3600, "iat": now - 7200});
        let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
    };
    let forged = {
        let good = user_token("alice");
        let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
        parts[2] = "AAAA".repeat(10);
        parts.join(".")
    };
    let unsigned = {
        use base64_url as b64;
        format!(
            "{}.{}.",
            b64::encode(br#"{"alg":"none","typ":"JWT"}"#),
            b64::encode(br#"{"sub":"alice","exp":9999999999}"#)
        )
    };
    for token in [None, Some(expired), Some(forged), Some(unsigned), Some("garbage".to_string())] {
        let mut request = "GET /api/v1/events HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n".to_string();
        if let Some(token) = &token {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        request.push_str("\r\n");
        let response = raw_request(addr, request.as_bytes()).await;
        assert_eq!(response.status, 401, "token {token:?}");
        assert_eq!(response.json()["httpStatusCode"], 401);
        assert!(response.json()["errorText"].as_str().is_some());
    }
}

/// Minimal base64url without padding for hand-built tokens.
mod base64_url {
    pub fn encode(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}
