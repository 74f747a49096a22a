//! Several nodes as one service, over NATS (`src/cluster/`): a real `nats-server` on a free
//! loopback port and three roomcast nodes (the built binary, one shard each, their own data
//! directories and ports), with real clients of every dialect spread over them.
//!
//! `nats-server` must be installed (`.ci/run` installs it): under CI (`CI=true`) a missing one
//! fails the test; elsewhere the tests say loudly that they skip.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

/// Where `nats-server` is, if it is installed.
fn nats_binary() -> Option<PathBuf> {
    let candidates =
        ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"];
    if let Some(found) = candidates.iter().map(PathBuf::from).find(|p| p.exists()) {
        return Some(found);
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join("nats-server"))
        .find(|p| p.exists())
}

/// `nats-server`, or `None` after saying loudly why the test skips (a failure under CI).
fn nats_or_skip(test: &str) -> Option<PathBuf> {
    match nats_binary() {
        Some(path) => Some(path),
        None if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => {
            panic!("nats-server is not installed: .ci/run must `apt-get install -y nats-server`")
        }
        None => {
            eprintln!("SKIPPED {test}: nats-server is not installed (apt-get install nats-server)");
            None
        }
    }
}

/// A child process killed (SIGKILL) when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The NATS server, three (or `n`) nodes, their directories.
struct Cluster {
    _nats: Process,
    url: String,
    prefix: String,
    nodes: Vec<Option<(Process, SocketAddr)>>,
    addrs: Vec<SocketAddr>,
    dirs: Vec<TempDir>,
}

/// Waits until `addr` accepts TCP, for at most 10 s.
fn wait_listening(addr: SocketAddr, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Cluster {
    /// Starts NATS and `n` nodes of one shard each, and waits until every node sees every
    /// other one up.
    async fn start(nats: &Path, n: usize) -> Cluster {
        let port = free_port();
        let child = Command::new(nats)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        let nats = Process(child);
        wait_listening(format!("127.0.0.1:{port}").parse().unwrap(), "nats-server");
        let addrs: Vec<SocketAddr> =
            (0..n).map(|_| format!("127.0.0.1:{}", free_port()).parse().unwrap()).collect();
        let mut cluster = Cluster {
            _nats: nats,
            url: format!("nats://127.0.0.1:{port}"),
            prefix: format!("rc{}", std::process::id()),
            nodes: (0..n).map(|_| None).collect(),
            addrs,
            dirs: (0..n).map(|_| TempDir::new()).collect(),
        };
        for node in 0..n {
            cluster.spawn(node);
        }
        for node in 0..n {
            cluster.wait_all_up(node).await;
        }
        cluster
    }

    /// Starts node `node` (again) with its data directory.
    fn spawn(&mut self, node: usize) {
        let addr = self.addrs[node];
        let child = Command::new(env!("CARGO_BIN_EXE_roomcast"))
            .args(["serve", "--listen", &addr.to_string(), "--shards", "1", "--no-pin-cpus"])
            .args(["--jwt-secret", SECRET, "--data-dir"])
            .arg(&self.dirs[node].0)
            .args(["--cluster-url", &self.url, "--cluster-prefix", &self.prefix])
            .args(["--node", &node.to_string(), "--nodes", &self.nodes.len().to_string()])
            .env("ROOMCAST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn a node");
        self.nodes[node] = Some((Process(child), addr));
        wait_listening(addr, "a node");
    }

    /// `kill -9` node `node`.
    fn kill(&mut self, node: usize) {
        self.nodes[node] = None;
    }

    fn addr(&self, node: usize) -> SocketAddr {
        self.addrs[node]
    }

    /// Waits (polling `/healthz`, at most 15 s) until node `node` sees every node up.
    async fn wait_all_up(&self, node: usize) {
        let want: Vec<usize> = (0..self.nodes.len()).filter(|n| self.nodes[*n].is_some()).collect();
        self.wait_health(node, |up| want.iter().all(|n| up[*n])).await;
    }

    /// Waits until node `node`'s `/healthz` shows node `other` down.
    async fn wait_down(&self, node: usize, other: usize) {
        self.wait_health(node, |up| !up[other]).await;
    }

    async fn wait_health(&self, node: usize, done: impl Fn(&[bool]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let r = call(self.addr(node), "GET", "/healthz", None, None).await;
            assert_eq!(r.status, 200);
            let body = r.json();
            let up: Vec<bool> = body["cluster"]["nodes"]
                .as_array()
                .expect("cluster health")
                .iter()
                .map(|n| n["up"].as_bool().unwrap_or(false))
                .collect();
            if done(&up) {
                return;
            }
            assert!(Instant::now() < deadline, "node {node} health: {body}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// The message ids of the next `count` Virola `TextMessagesCreated` events.
async fn virola_ids(ws: &mut Ws, count: usize) -> Vec<u64> {
    let mut ids = Vec::new();
    while ids.len() < count {
        let event = next_of(ws, "TextMessagesCreated").await;
        ids.push(event["data"]["messages"][0]["messageId"].as_u64().expect("id"));
    }
    ids
}

/// The text of the next Virola `TextMessagesCreated`.
async fn virola_text(ws: &mut Ws) -> String {
    next_of(ws, "TextMessagesCreated").await["data"]["messages"][0]["text"]
        .as_str()
        .expect("text")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virola_members_on_three_nodes_get_every_event_once_in_order() {
    let Some(nats) = nats_or_skip("virola_members_on_three_nodes") else { return };
    let cluster = Cluster::start(&nats, 3).await;
    // Users spread over the nodes; rooms made on each node (their owners hash anywhere).
    let users: Vec<String> = (0..6).map(|i| format!("v{i}")).collect();
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    let mut rooms = Vec::new();
    for node in 0..3 {
        rooms.push(create_room(cluster.addr(node), &format!("shared{node}"), &names).await);
    }
    let mut clients = Vec::new();
    for (i, user) in users.iter().enumerate() {
        clients.push(virola(cluster.addr(i % 3), user).await);
    }
    // An outsider on every node, in a room of its own.
    let lonely = create_room(cluster.addr(1), "lonely", &["outsider"]).await;
    let mut outsider = virola(cluster.addr(2), "outsider").await;

    // Concurrent posters on every node, into every room.
    let total_per_room = 12;
    let mut posters = Vec::new();
    for (p, user) in users.iter().cloned().enumerate() {
        let addr = cluster.addr((p + 1) % 3);
        let rooms = rooms.clone();
        posters.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..total_per_room / 6 {
                for room in &rooms {
                    let m = post_message(addr, *room, &user, &format!("{p}-{i}")).await;
                    ids.push(m["id"].as_u64().expect("id"));
                }
            }
            ids
        }));
    }
    let mut all: Vec<u64> = Vec::new();
    for poster in posters {
        all.extend(poster.await.unwrap());
    }
    // Every client sees every message of every room once; per room in the room's order.
    for ws in &mut clients {
        let seen = virola_ids(ws, all.len()).await;
        let mut sorted_seen = seen.clone();
        sorted_seen.sort_unstable();
        let mut sorted_all = all.clone();
        sorted_all.sort_unstable();
        assert_eq!(sorted_seen, sorted_all, "every event exactly once");
        for room_ids in all_by_room(&all, &seen, &rooms) {
            let mut in_order = room_ids.clone();
            in_order.sort_unstable();
            assert_eq!(room_ids, in_order, "a room's events in its order");
        }
    }
    // The outsider got none of it: its first event is the one of its own room.
    post_message(cluster.addr(0), lonely, "outsider", "only mine").await;
    assert_eq!(virola_text(&mut outsider).await, "only mine");
}

/// Groups `seen` (in arrival order) by room: a room's ids are those `all` posted into it
/// (ids are increasing within a room, and `id % shards` is the room's owner, so ids of one
/// room share their residue with the room id).
fn all_by_room(_all: &[u64], seen: &[u64], rooms: &[u64]) -> Vec<Vec<u64>> {
    rooms
        .iter()
        .map(|room| seen.iter().copied().filter(|id| id % 3 == room % 3).collect())
        .collect()
}

/// Posts `text` into `room` through node `addr`: the status, and how long the answer took.
async fn try_post(addr: SocketAddr, room: u64, user: &str, text: &str) -> (u16, Duration) {
    let started = Instant::now();
    let r = call(
        addr,
        "POST",
        &format!("/api/v1/rooms/{room}/messages"),
        Some(&user_token(user)),
        Some(json!({ "text": text })),
    )
    .await;
    if r.status == 503 {
        let head = r.head.to_ascii_lowercase();
        assert!(head.contains("retry-after"), "a 503 says when to retry: {head}");
    }
    (r.status, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_fails_fast_and_comes_back_with_its_rooms() {
    let Some(nats) = nats_or_skip("a_killed_node_fails_fast") else { return };
    let mut cluster = Cluster::start(&nats, 3).await;
    let members = ["k0", "k1", "k2"];
    // Room i is owned by node i (a room is made on the shard that creates it).
    let mut rooms = Vec::new();
    for node in 0..3 {
        let room = create_room(cluster.addr(node), &format!("r{node}"), &members).await;
        rooms.push(room);
    }
    let mut k0 = virola(cluster.addr(0), "k0").await;
    let mut k1 = virola(cluster.addr(1), "k1").await;
    let k2 = virola(cluster.addr(2), "k2").await;
    // Acknowledged writes into the room that will be lost, through every node.
    let mut acknowledged = Vec::new();
    for (i, node) in [0, 1, 2, 0].into_iter().enumerate() {
        let text = format!("before-{i}");
        post_message(cluster.addr(node), rooms[2], members[node], &text).await;
        acknowledged.push(text);
    }
    for ws in [&mut k0, &mut k1] {
        for text in &acknowledged {
            assert_eq!(&virola_text(ws).await, text);
        }
    }

    cluster.kill(2);
    drop(k2);
    // Requests for the lost node's room: 503 with Retry-After, each within a second: one
    // sent at once (in flight while the others find the node down), then more once they know.
    let (status, took) = try_post(cluster.addr(1), rooms[2], "k1", "lost").await;
    assert_eq!((status, took < Duration::from_secs(1)), (503, true), "in flight: {took:?}");
    cluster.wait_down(0, 2).await;
    for attempt in 0..5 {
        let (status, took) = try_post(cluster.addr(0), rooms[2], "k0", "lost").await;
        assert_eq!(status, 503, "attempt {attempt}");
        assert!(took < Duration::from_secs(1), "503 within a second, took {took:?}");
    }
    let (status, took) = try_post(cluster.addr(1), rooms[2], "k1", "lost").await;
    assert_eq!((status, took < Duration::from_secs(1)), (503, true), "{took:?}");
    // The other rooms keep working, across the two nodes left.
    for (node, room) in [(0, rooms[0]), (1, rooms[1]), (1, rooms[0]), (0, rooms[1])] {
        post_message(cluster.addr(node), room, members[node], &format!("alive-{room}-{node}"))
            .await;
    }
    for ws in [&mut k0, &mut k1] {
        for (node, room) in [(0, rooms[0]), (1, rooms[1]), (1, rooms[0]), (0, rooms[1])] {
            assert_eq!(virola_text(ws).await, format!("alive-{room}-{node}"));
        }
    }

    // The node comes back with its data directory: its room and everything acknowledged.
    cluster.spawn(2);
    for node in 0..3 {
        cluster.wait_all_up(node).await;
    }
    for node in 0..3 {
        let texts = history_texts(cluster.addr(node), rooms[2], &user_token("k1"), "").await;
        for text in &acknowledged {
            assert!(texts.contains(text), "{text} kept, node {node} sees {texts:?}");
        }
        assert!(!texts.iter().any(|t| t == "lost"), "a refused post was not stored");
    }
    // The sockets that stayed on nodes 0 and 1 get the room's new events again, and a client
    // of the lost node reconnects to another node and gets them too.
    let mut k2 = virola(cluster.addr(0), "k2").await;
    post_message(cluster.addr(1), rooms[2], "k1", "after").await;
    for ws in [&mut k0, &mut k1, &mut k2] {
        assert_eq!(virola_text(ws).await, "after");
    }
}
