//! The durable store end to end, with the real binary and real signals: `kill -9` mid-stream
//! at several points, restarts, history paging from disk across restarts, and a data directory
//! refusing another shard count.

mod support;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

fn spawn_server(
    data_dir: &std::path::Path,
    shards: usize,
    extra: &[&str],
) -> Result<Process, String> {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .args([
            "serve",
            "--listen",
            &addr.to_string(),
            "--shards",
            &shards.to_string(),
            "--no-pin-cpus",
        ])
        .args(["--jwt-secret", SECRET, "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env("ROOMCAST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    for _ in 0..200 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(Process { child, addr });
        }
        if let Ok(Some(_)) = child.try_wait() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                use std::io::Read;
                let _ = pipe.read_to_string(&mut stderr);
            }
            return Err(stderr);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Err("server did not listen in time".into())
}

fn kill9(process: &mut Process) {
    // SAFETY: sends SIGKILL to our own child process.
    unsafe { libc::kill(process.child.id() as i32, libc::SIGKILL) };
    let _ = process.child.wait();
}

/// Every live message of `room`, paged forward with `after=` (500 per page).
async fn all_messages(addr: SocketAddr, room: u64) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0u64;
    loop {
        let r = call(
            addr,
            "GET",
            &format!("/api/v1/rooms/{room}/messages?after={after}&limit=500"),
            Some(&service_token()),
            None,
        )
        .await;
        assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
        let page = r.json()["messages"].as_array().unwrap().clone();
        if page.is_empty() {
            return out;
        }
        after = page.last().unwrap()["id"].as_u64().unwrap();
        out.extend(page);
    }
}

/// Posts as fast as it can until the server dies; returns the acknowledged (id, text) pairs.
async fn poster(
    addr: SocketAddr,
    room: u64,
    user: &'static str,
    round: usize,
    acked: Arc<AtomicUsize>,
) -> Vec<(u64, String)> {
    let token = user_token(user);
    let mut acknowledged = Vec::new();
    for i in 0.. {
        let text = format!("{user}-r{round}-{i}");
        let body = json!({ "text": text }).to_string();
        let request = format!(
            "POST /api/v1/rooms/{room}/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let Ok(Ok(response)) =
            tokio::time::timeout(Duration::from_secs(5), try_request(addr, request.as_bytes()))
                .await
        else {
            return acknowledged;
        };
        match response {
            (201, body) => {
                let v: Value = serde_json::from_slice(&body).unwrap();
                acknowledged.push((v["message"]["id"].as_u64().unwrap(), text));
                acked.fetch_add(1, Ordering::Relaxed);
            }
            (status, _) => panic!("unexpected status {status}"),
        }
    }
    acknowledged
}

/// One request that may fail because the server was killed.
async fn try_request(addr: SocketAddr, bytes: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(bytes).await?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    let body_at =
        text.find("\r\n\r\n").map(|i| i + 4).ok_or_else(|| std::io::Error::other("no head end"))?;
    Ok((status, buf[body_at..].to_vec()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn durability_kill_9_mid_stream_keeps_every_acknowledged_message_exactly_once() {
    let dir = TempDir::new();
    let posters = ["p0", "p1", "p2", "p3"];
    let mut room = None;
    let mut acknowledged: HashMap<u64, String> = HashMap::new();
    let mut max_id_before_restart = 0u64;
    // Kill points: after this many acknowledgements in the round, with posts still in flight.
    for (round, kill_after_acks) in [20usize, 80, 200].into_iter().enumerate() {
        let mut server = spawn_server(&dir.0, 2, &[]).expect("server starts");
        let addr = server.addr;
        let room_id = match room {
            Some(id) => id,
            None => {
                let id = create_room(addr, "durable", &posters).await;
                room = Some(id);
                id
            }
        };
        let acked = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = posters
            .iter()
            .map(|p| tokio::spawn(poster(addr, room_id, p, round, acked.clone())))
            .collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while acked.load(Ordering::Relaxed) < kill_after_acks
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        kill9(&mut server);
        let mut round_ids = Vec::new();
        for task in tasks {
            for (id, text) in task.await.unwrap() {
                assert!(
                    id > max_id_before_restart,
                    "ids after a restart are larger than every earlier id"
                );
                round_ids.push(id);
                assert!(acknowledged.insert(id, text).is_none(), "an id was acknowledged twice");
            }
        }
        assert!(!round_ids.is_empty(), "round {round} acknowledged something before the kill");
        eprintln!("round {round}: {} messages acknowledged before kill -9", round_ids.len());
        max_id_before_restart = max_id_before_restart.max(*round_ids.iter().max().unwrap());

        let restarted = spawn_server(&dir.0, 2, &[]).expect("restart");
        let stored = all_messages(restarted.addr, room_id).await;
        let mut texts_seen = HashSet::new();
        let mut ids_seen = HashSet::new();
        for m in &stored {
            let text = m["text"].as_str().unwrap().to_string();
            assert!(texts_seen.insert(text.clone()), "message {text} is stored twice");
            ids_seen.insert(m["id"].as_u64().unwrap());
        }
        for (id, text) in &acknowledged {
            let found = stored
                .iter()
                .find(|m| m["id"] == json!(id))
                .unwrap_or_else(|| panic!("acknowledged message {id} ({text}) lost"));
            assert_eq!(found["text"], json!(text));
        }
        let seqs: Vec<u64> = stored.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seq increases");
        let room_json = call(
            restarted.addr,
            "GET",
            &format!("/api/v1/rooms/{room_id}"),
            Some(&service_token()),
            None,
        )
        .await;
        assert_eq!(room_json.status, 200, "the room survives");
        assert_eq!(
            room_json.json()["room"]["members"].as_array().unwrap().len(),
            posters.len(),
            "memberships survive"
        );
        let next =
            post_message(restarted.addr, room_id, "p0", &format!("after restart {round}")).await;
        assert!(
            next["id"].as_u64().unwrap() > *ids_seen.iter().max().unwrap(),
            "new ids keep increasing"
        );
        max_id_before_restart = max_id_before_restart.max(next["id"].as_u64().unwrap());
        acknowledged.insert(next["id"].as_u64().unwrap(), format!("after restart {round}"));
        drop(restarted);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durability_history_pages_from_disk_across_restarts_with_edits_and_deletions() {
    let dir = TempDir::new();
    // A window of 5 messages per room: most pages come from the store, not from memory.
    let window = ["--history-per-room-max", "5"];
    let server = spawn_server(&dir.0, 1, &window).unwrap();
    let addr = server.addr;
    let room = create_room(addr, "pages", &["alice", "bob"]).await;
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(post_message(addr, room, "alice", &format!("m{i}")).await["id"].as_u64().unwrap());
    }
    let token = user_token("alice");
    let edited = call(
        addr,
        "PATCH",
        &format!("/api/v1/messages/{}", ids[28]),
        Some(&token),
        Some(json!({"text": "m28 edited"})),
    )
    .await;
    assert_eq!(edited.status, 200);
    let deleted =
        call(addr, "DELETE", &format!("/api/v1/messages/{}", ids[27]), Some(&token), None).await;
    assert_eq!(deleted.status, 204);
    let removed = call(
        addr,
        "DELETE",
        &format!("/api/v1/rooms/{room}/members/bob"),
        Some(&service_token()),
        None,
    )
    .await;
    assert_eq!(removed.status, 204);
    drop(server);

    let server = spawn_server(&dir.0, 1, &window).unwrap();
    let addr = server.addr;
    assert_eq!(
        history_texts(addr, room, &token, "limit=3").await,
        ["m0", "m1", "m2"],
        "oldest page, from disk"
    );
    assert_eq!(
        history_texts(addr, room, &token, &format!("after={}&limit=4", ids[9])).await,
        ["m10", "m11", "m12", "m13"]
    );
    assert_eq!(
        history_texts(addr, room, &token, &format!("before={}&limit=3", ids[20])).await,
        ["m17", "m18", "m19"]
    );
    assert_eq!(
        history_texts(addr, room, &token, &format!("after={}&limit=10", ids[25])).await,
        ["m26", "m28 edited", "m29"],
        "edit and deletion survived"
    );
    let all = all_messages(addr, room).await;
    assert_eq!(all.len(), 29);
    let bob = call(
        addr,
        "GET",
        &format!("/api/v1/rooms/{room}/messages"),
        Some(&user_token("bob")),
        None,
    )
    .await;
    assert_eq!(bob.status, 404, "the removed member stays removed");
    let next = post_message(addr, room, "alice", "new").await;
    assert_eq!(next["seq"], json!(31), "seq continues after a restart");
    assert!(next["id"].as_u64().unwrap() > ids[29]);
}

#[tokio::test]
async fn durability_data_dir_refuses_another_shard_count() {
    let dir = TempDir::new();
    drop(spawn_server(&dir.0, 2, &[]).unwrap());
    let refused =
        spawn_server(&dir.0, 1, &[]).err().expect("a start with another shard count fails");
    assert!(
        refused.contains("2 shards") && refused.contains("--shards 2"),
        "clear message: {refused}"
    );
}
