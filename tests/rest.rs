//! The REST API over real sockets: statuses, JSON errors, limits, permissions, history.

mod support;

use serde_json::json;
use support::*;

fn assert_error(response: &HttpResponse, status: u16, code: &str) {
    assert_eq!(response.status, status, "{:?}", String::from_utf8_lossy(&response.body));
    let body = response.json();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn rest_errors_have_the_right_status_and_json_body() {
    let server = start(1);
    let addr = server.addr;
    let service = service_token();
    assert_error(&call(addr, "GET", "/api/v1/rooms", None, None).await, 401, "unauthorized");
    assert_error(
        &call(addr, "GET", "/api/v1/rooms", Some("not-a-jwt"), None).await,
        401,
        "unauthorized",
    );
    assert_error(
        &call(addr, "GET", "/api/v1/nothing", Some(&service), None).await,
        404,
        "not_found",
    );
    assert_error(&call(addr, "GET", "/nowhere", None, None).await, 404, "not_found");
    assert_error(
        &call(addr, "PUT", "/api/v1/rooms", Some(&service), None).await,
        405,
        "method_not_allowed",
    );
    assert_error(
        &call(addr, "GET", "/api/v1/rooms/12345", Some(&service), None).await,
        404,
        "not_found",
    );
    assert_error(
        &call(addr, "GET", "/api/v1/rooms/abc", Some(&service), None).await,
        404,
        "not_found",
    );
    let bad_json = raw_request(
        addr,
        format!("POST /api/v1/rooms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {service}\r\nContent-Length: 5\r\n\r\n{{bad}}").as_bytes(),
    )
    .await;
    assert_error(&bad_json, 400, "invalid_request");
    let bad_kind = call(
        addr,
        "POST",
        "/api/v1/rooms",
        Some(&service),
        Some(json!({"name": "x", "kind": "weird"})),
    )
    .await;
    assert_error(&bad_kind, 400, "invalid_request");
    let huge = raw_request(
        addr,
        format!("POST /api/v1/rooms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {service}\r\nContent-Length: 2000000\r\n\r\n").as_bytes(),
    )
    .await;
    assert_error(&huge, 413, "body_too_large");
    let long_header =
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: {}\r\n\r\n", "a".repeat(9000));
    assert_eq!(raw_request(addr, long_header.as_bytes()).await.status, 431);
    let chunked = raw_request(
        addr,
        b"POST /api/v1/rooms HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(chunked.status, 411);
    let not_upgrade = call(addr, "GET", "/api/v1/events", Some(&user_token("a")), None).await;
    assert!(
        not_upgrade.status == 404 || not_upgrade.status == 426,
        "plain GET of the event endpoint: {}",
        not_upgrade.status
    );
}

#[tokio::test]
async fn rest_keep_alive_serves_many_requests_on_one_connection() {
    use tokio::io::AsyncWriteExt;
    let server = start(1);
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    for _ in 0..3 {
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let response = read_response(&mut stream).await;
        assert_eq!(response.status, 200);
        assert_eq!(response.json()["status"], "ok");
    }
}

#[tokio::test]
async fn rest_users_act_only_in_rooms_they_belong_to() {
    let server = start(1);
    let addr = server.addr;
    let room = create_room(addr, "private", &["alice"]).await;
    let mallory = user_token("mallory");
    let post = call(
        addr,
        "POST",
        &format!("/api/v1/rooms/{room}/messages"),
        Some(&mallory),
        Some(json!({"text": "hi"})),
    )
    .await;
    assert_eq!(post.status, 404, "non-members do not learn the room exists");
    let read =
        call(addr, "GET", &format!("/api/v1/rooms/{room}/messages"), Some(&mallory), None).await;
    assert_eq!(read.status, 404);
    let join =
        call(addr, "PUT", &format!("/api/v1/rooms/{room}/members/mallory"), Some(&mallory), None)
            .await;
    assert_eq!(join.status, 404);
    let spoof = call(
        addr,
        "POST",
        &format!("/api/v1/rooms/{room}/messages"),
        Some(&user_token("alice")),
        Some(json!({"text": "x", "author": "bob"})),
    )
    .await;
    assert_eq!(spoof.status, 403, "users post as themselves");
    let mine = call(addr, "GET", "/api/v1/rooms", Some(&user_token("alice")), None).await;
    assert_eq!(mine.status, 200);
    let rooms = mine.json()["rooms"].as_array().unwrap().clone();
    assert_eq!(rooms.len(), 1);
    assert_eq!(rooms[0]["id"], json!(room));
    assert_eq!(
        call(addr, "GET", "/api/v1/rooms", Some(&mallory), None).await.json()["rooms"],
        json!([])
    );
    let too_long = call(
        addr,
        "POST",
        &format!("/api/v1/rooms/{room}/messages"),
        Some(&user_token("alice")),
        Some(json!({"text": "x".repeat(70_000)})),
    )
    .await;
    assert_eq!(too_long.status, 413);
}

#[tokio::test]
async fn rest_history_pages_forward_and_backward_and_skips_deleted() {
    let server = start(2);
    let addr = server.addr;
    let room = create_room(addr, "history", &["alice"]).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        let m = post_message(addr, room, "alice", &format!("m{i}")).await;
        assert_eq!(m["seq"], json!(i + 1), "seq counts 1, 2, 3…");
        ids.push(m["id"].as_u64().unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase within a room");
    let token = user_token("alice");
    assert_eq!(history_texts(addr, room, &token, "limit=3").await, ["m0", "m1", "m2"]);
    assert_eq!(
        history_texts(addr, room, &token, &format!("after={}&limit=3", ids[2])).await,
        ["m3", "m4", "m5"]
    );
    assert_eq!(
        history_texts(addr, room, &token, &format!("before={}&limit=3", ids[9])).await,
        ["m6", "m7", "m8"]
    );
    let deleted =
        call(addr, "DELETE", &format!("/api/v1/messages/{}", ids[4]), Some(&token), None).await;
    assert_eq!(deleted.status, 204);
    assert_eq!(
        history_texts(addr, room, &token, &format!("after={}&limit=3", ids[2])).await,
        ["m3", "m5", "m6"]
    );
    let bad =
        call(addr, "GET", &format!("/api/v1/rooms/{room}/messages?limit=501"), Some(&token), None)
            .await;
    assert_eq!(bad.status, 400);
    // A bound that is not an integer, an empty one included (`after=`), is refused, not read
    // as absent (the OpenAPI contract: schemathesis sends `?after=&before=0`).
    for query in ["after=&before=0", "after=x", "before=", "limit=", "after=-1"] {
        let bad = call(
            addr,
            "GET",
            &format!("/api/v1/rooms/{room}/messages?{query}"),
            Some(&token),
            None,
        )
        .await;
        assert_eq!(bad.status, 400, "{query}");
    }
}

#[tokio::test]
async fn rest_metrics_and_health_answer() {
    let server = start(2);
    let health = call(server.addr, "GET", "/healthz", None, None).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["shards"], 2);
    let metrics = call(server.addr, "GET", "/metrics", None, None).await;
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8(metrics.body).unwrap();
    for name in [
        "roomcast_connections{shard=\"1\"}",
        "roomcast_frames_in_total",
        "roomcast_frames_out_total",
        "roomcast_bytes_in_total",
        "roomcast_bytes_out_total",
        "roomcast_events_delivered_total",
        "roomcast_slow_consumer_closes_total",
        "roomcast_mesh_ring_occupancy{from=\"0\",to=\"1\"}",
    ] {
        assert!(text.contains(name), "metrics has {name}");
    }
}

#[tokio::test]
async fn rest_user_writes_over_the_rate_get_429_and_services_are_exempt() {
    let mut config = config(1);
    config.actions_per_second = 1;
    config.actions_burst = 3;
    let server = start_with(config);
    let addr = server.addr;
    let room = create_room(addr, "limited", &["alice"]).await;
    let token = user_token("alice");
    let mut statuses = Vec::new();
    for i in 0..5 {
        let r = call(
            addr,
            "POST",
            &format!("/api/v1/rooms/{room}/messages"),
            Some(&token),
            Some(json!({"text": format!("m{i}")})),
        )
        .await;
        statuses.push(r.status);
        if r.status == 429 {
            assert_error(&r, 429, "rate_limited");
        }
    }
    assert_eq!(statuses, [201, 201, 201, 429, 429], "burst of 3, then refused");
    let reads =
        call(addr, "GET", &format!("/api/v1/rooms/{room}/messages"), Some(&token), None).await;
    assert_eq!(reads.status, 200, "reads are not limited");
    assert_eq!(
        reads.json()["messages"].as_array().unwrap().len(),
        3,
        "refused posts were not stored"
    );
    for _ in 0..5 {
        let r = call(
            addr,
            "POST",
            &format!("/api/v1/rooms/{room}/messages"),
            Some(&service_token()),
            Some(json!({"text": "svc", "author": "alice"})),
        )
        .await;
        assert_eq!(r.status, 201, "services are exempt");
    }
}

#[tokio::test]
async fn rest_read_and_delivered_receipts_are_cumulative_and_members_only() {
    let server = start(2);
    let addr = server.addr;
    let room = create_room(addr, "receipts", &["alice", "bob"]).await;
    for i in 0..5 {
        post_message(addr, room, "alice", &format!("m{i}")).await;
    }
    let bob = user_token("bob");
    let delivered =
        call(addr, "POST", &format!("/api/v1/rooms/{room}/delivered"), Some(&bob), None).await;
    assert_eq!(delivered.status, 200, "{:?}", String::from_utf8_lossy(&delivered.body));
    assert_eq!(delivered.json()["receipt"]["seq"], json!(5), "delivered up to the newest");
    assert_eq!(delivered.json()["receipt"]["unread"], json!(5), "nothing read yet");
    let read = call(
        addr,
        "POST",
        &format!("/api/v1/rooms/{room}/read"),
        Some(&bob),
        Some(json!({"seq": 3})),
    )
    .await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["receipt"]["seq"], json!(3), "marking 3 marks 1..3");
    assert_eq!(read.json()["receipt"]["unread"], json!(2));
    let beyond = call(
        addr,
        "POST",
        &format!("/api/v1/rooms/{room}/read"),
        Some(&bob),
        Some(json!({"seq": 99})),
    )
    .await;
    assert_eq!(beyond.status, 404, "no message 99");
    let stranger = call(
        addr,
        "POST",
        &format!("/api/v1/rooms/{room}/read"),
        Some(&user_token("mallory")),
        None,
    )
    .await;
    assert_eq!(stranger.status, 404, "non-members cannot mark");
    let service = call(
        addr,
        "POST",
        &format!("/api/v1/rooms/{room}/read"),
        Some(&service_token()),
        Some(json!({"user": "alice"})),
    )
    .await;
    assert_eq!(service.status, 200, "a service marks for a member");
    assert_eq!(service.json()["receipt"]["unread"], json!(0));
}

/// The `(path, method)` pairs of the router's table, `ROUTES`.
fn routed_operations() -> std::collections::BTreeSet<(String, String)> {
    roomcast::rest::ROUTES
        .iter()
        .flat_map(|(path, methods)| {
            methods.split(", ").map(|m| (path.to_string(), m.to_ascii_lowercase()))
        })
        .collect()
}

/// Follows a local `$ref` (`#/components/…`) in `doc` until a value without one.
fn resolve<'a>(
    doc: &'a serde_json::Value,
    mut value: &'a serde_json::Value,
) -> &'a serde_json::Value {
    while let Some(pointer) = value.get("$ref").and_then(|r| r.as_str()) {
        let pointer = pointer.strip_prefix('#').expect("a local $ref");
        value = doc.pointer(pointer).unwrap_or_else(|| panic!("dangling $ref {pointer}"));
    }
    value
}

#[tokio::test]
async fn rest_openapi_contract_is_served_and_documents_every_route() {
    let server = start(1);
    let addr = server.addr;
    let response = call(addr, "GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(response.status, 200, "served without a token");
    assert!(response.head.contains("Content-Type: application/json"), "{}", response.head);
    let doc = response.json();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1.")), "{}", doc["openapi"]);
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"), "openapi.yaml's info.version");
    let paths = doc["paths"].as_object().expect("paths");
    let methods = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
    let documented: std::collections::BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            let item = item.as_object().expect("path item");
            item.keys()
                .filter(|k| methods.contains(&k.as_str()))
                .map(|m| (path.clone(), m.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let routed = routed_operations();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(undocumented.is_empty(), "routes missing from openapi.yaml: {undocumented:?}");
    assert!(unrouted.is_empty(), "operations in openapi.yaml the router lacks: {unrouted:?}");

    // Every error response of every operation is the shared Error shape.
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("path item") {
            let Some(responses) = operation.get("responses").and_then(|r| r.as_object()) else {
                continue;
            };
            assert!(!responses.is_empty(), "{method} {path} has responses");
            for (status, response) in responses.iter().filter(|(s, _)| s.as_str() >= "400") {
                let schema = &resolve(&doc, response)["content"]["application/json"]["schema"];
                let schema = resolve(&doc, schema);
                let is_error = schema == &doc["components"]["schemas"]["Error"]
                    || schema["allOf"][0]["$ref"] == "#/components/schemas/Error";
                assert!(is_error, "{method} {path} {status}: not the Error schema: {schema}");
            }
        }
    }

    // The table is what the router answers: each of its routes is neither unknown (404 "no
    // route") nor refused for its method (405).
    let service = service_token();
    for (path, method) in &routed {
        let concrete = path.replace("{id}", "1").replace("{user}", "alice").replace("{sid}", "s1");
        let r = call(addr, &method.to_ascii_uppercase(), &concrete, Some(&service), None).await;
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            r.status != 405 && !(r.status == 404 && body.contains("no route")),
            "{method} {path} is in ROUTES but the router answers {}: {body}",
            r.status
        );
    }
}

#[tokio::test]
async fn rest_creating_a_room_over_the_member_cap_is_429_limit_exceeded() {
    // The README's limits table: past `--members-per-room-max`, 429 `limit_exceeded`, whether
    // the members listed alone or with the creating user are over it.
    let mut config = config(1);
    config.members_per_room_max = 2;
    let server = start_with(config);
    let addr = server.addr;
    let listed = json!({"name": "big", "members": ["a", "b", "c"]});
    let r = call(addr, "POST", "/api/v1/rooms", Some(&service_token()), Some(listed)).await;
    assert_error(&r, 429, "limit_exceeded");
    let with_creator = json!({"name": "big", "members": ["a", "b"]});
    let r = call(addr, "POST", "/api/v1/rooms", Some(&user_token("c")), Some(with_creator)).await;
    assert_error(&r, 429, "limit_exceeded");
    let fits = json!({"name": "fits", "members": ["a"]});
    let r = call(addr, "POST", "/api/v1/rooms", Some(&user_token("c")), Some(fits)).await;
    assert_eq!(r.status, 201);
}

#[tokio::test]
async fn rest_a_head_request_gets_no_content_and_keep_alive_stays_in_step() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start(1);
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");
    assert!(answer.contains("Allow: GET\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\n"), "no content after the head: {answer:?}");
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let next = read_response(&mut stream).await;
    assert_eq!(next.status, 200, "the next response on the connection is whole");
    assert_eq!(next.json()["status"], "ok");
}

#[tokio::test]
async fn rest_bodies_that_are_not_json_objects_are_400() {
    // serde takes a struct from an array of its fields too: `[5]` must not mark seq 5, nor
    // `["x"]` name a room.
    let server = start(1);
    let addr = server.addr;
    let room = create_room(addr, "bodies", &["alice"]).await;
    post_message(addr, room, "alice", "m").await;
    let alice = user_token("alice");
    for (path, body) in [
        (format!("/api/v1/rooms/{room}/read"), json!([1])),
        (format!("/api/v1/rooms/{room}/delivered"), json!([null, null])),
        ("/api/v1/rooms".to_string(), json!(["named by position"])),
        (format!("/api/v1/rooms/{room}/messages"), json!(["text"])),
        ("/api/v1/notifications/read".to_string(), json!([[1]])),
        (format!("/api/v1/rooms/{room}"), json!("x")),
        (format!("/api/v1/rooms/{room}/members/bob"), json!(null)),
    ] {
        let method = if path.contains("members") {
            "PUT"
        } else if path.ends_with(&room.to_string()) {
            "PATCH"
        } else {
            "POST"
        };
        let r = call(addr, method, &path, Some(&alice), Some(body.clone())).await;
        assert_error(&r, 400, "invalid_request");
    }
    let read = call(addr, "POST", &format!("/api/v1/rooms/{room}/read"), Some(&alice), None).await;
    assert_eq!(read.status, 200, "an empty body is still {{}}");
}

#[tokio::test]
async fn rest_a_user_naming_a_user_in_a_receipt_or_read_call_names_itself() {
    // Found by schemathesis' negative data: a user's `"user"` was ignored whatever it was.
    let server = start(2);
    let addr = server.addr;
    let room = create_room(addr, "naming", &["alice", "bob"]).await;
    post_message(addr, room, "alice", "m").await;
    let bob = user_token("bob");
    let read = format!("/api/v1/rooms/{room}/read");
    let delivered = format!("/api/v1/rooms/{room}/delivered");
    let notifications = "/api/v1/notifications/read".to_string();
    for path in [&read, &delivered, &notifications] {
        let body = |user: serde_json::Value| Some(json!({"ids": [], "user": user}));
        let r = call(addr, "POST", path, Some(&bob), body(json!(2.5))).await;
        assert_error(&r, 400, "invalid_request");
        let r = call(addr, "POST", path, Some(&bob), body(json!("a/b"))).await;
        assert_error(&r, 400, "invalid_request");
        let r = call(addr, "POST", path, Some(&bob), body(json!("alice"))).await;
        assert_error(&r, 403, "forbidden");
        let r = call(addr, "POST", path, Some(&bob), body(json!("bob"))).await;
        assert_eq!(r.status, 200, "{path}: {:?}", String::from_utf8_lossy(&r.body));
    }
}
