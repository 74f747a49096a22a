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
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

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
