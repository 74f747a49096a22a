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

/// One cluster at a time: three nodes and a NATS server per test on a 2-core machine are
/// enough load; several at once could starve a node's heartbeats past the down timeout.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
    /// The NATS server (`None` while it is killed), and how to start it again on its port.
    nats: Option<Process>,
    nats_command: (PathBuf, u16, Vec<String>),
    url: String,
    /// Extra arguments every node gets (NATS credentials).
    node_args: Vec<String>,
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

/// On a failure, each node's cluster counters (what crossed, what was dropped).
impl Drop for Cluster {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for (node, addr) in self.addrs.iter().enumerate() {
            use std::io::{Read, Write};
            let Ok(mut stream) = std::net::TcpStream::connect(addr) else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let request =
                format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            let _ = stream.write_all(request.as_bytes());
            let mut text = String::new();
            let _ = stream.read_to_string(&mut text);
            for line in text.lines().filter(|l| {
                l.starts_with("roomcast_cluster") || l.starts_with("roomcast_mesh_parked")
            }) {
                eprintln!("node {node}: {line}");
            }
        }
    }
}

impl Cluster {
    /// Starts NATS and `n` nodes of one shard each, and waits until every node sees every
    /// other one up.
    async fn start(nats: &Path, n: usize) -> Cluster {
        Cluster::start_with(nats, n, &[], &[]).await
    }

    /// [`Cluster::start`] with extra `nats-server` arguments and extra node arguments.
    async fn start_with(nats: &Path, n: usize, nats_args: &[&str], node_args: &[&str]) -> Cluster {
        let port = free_port();
        let nats_command =
            (nats.to_path_buf(), port, nats_args.iter().map(|a| a.to_string()).collect());
        let addrs: Vec<SocketAddr> =
            (0..n).map(|_| format!("127.0.0.1:{}", free_port()).parse().unwrap()).collect();
        let mut cluster = Cluster {
            nats: None,
            nats_command,
            url: format!("nats://127.0.0.1:{port}"),
            node_args: node_args.iter().map(|a| a.to_string()).collect(),
            prefix: format!("rc{}", std::process::id()),
            nodes: (0..n).map(|_| None).collect(),
            addrs,
            dirs: (0..n).map(|_| TempDir::new()).collect(),
        };
        cluster.start_nats();
        for node in 0..n {
            cluster.spawn(node);
        }
        for node in 0..n {
            cluster.wait_all_up(node).await;
        }
        cluster
    }

    /// Starts the NATS server (again) on its port.
    fn start_nats(&mut self) {
        let (binary, port, args) = &self.nats_command;
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.nats = Some(Process(child));
        wait_listening(format!("127.0.0.1:{port}").parse().unwrap(), "nats-server");
    }

    /// `kill -9` the NATS server.
    fn kill_nats(&mut self) {
        self.nats = None;
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
            .args(&self.node_args)
            .env("ROOMCAST_LOG", std::env::var("CLUSTER_TEST_LOG").unwrap_or("warn".into()))
            .stdout(Stdio::null())
            .stderr(match std::env::var("CLUSTER_TEST_LOG_DIR") {
                Ok(dir) => std::fs::File::create(format!("{dir}/node{node}.log"))
                    .map(Stdio::from)
                    .unwrap_or(Stdio::inherit()),
                Err(_) => Stdio::inherit(),
            })
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
    let _serial = ONE_AT_A_TIME.lock().await;
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

/// A user name whose owner shard is on node `node` of `nodes` (one shard each).
fn owned_by(node: usize, nodes: usize) -> String {
    (0..)
        .map(|i| format!("k{node}-{i}"))
        .find(|name| {
            let user = roomcast::model::UserId::new(name);
            roomcast::model::ids::shard_of_user(&user, nodes).get() == node
        })
        .expect("some name hashes there")
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

/// Three users, user i owned by node i, and three rooms with all three as members, room i owned
/// by node i (a room is made on the shard that creates it): the users' names and the rooms.
async fn owned_users_and_rooms(cluster: &Cluster) -> (Vec<String>, Vec<u64>) {
    let names: Vec<String> = (0..3).map(|node| owned_by(node, 3)).collect();
    let members = [names[0].as_str(), names[1].as_str(), names[2].as_str()];
    let mut rooms = Vec::new();
    for node in 0..3 {
        rooms.push(create_room(cluster.addr(node), &format!("r{node}"), &members).await);
    }
    (names, rooms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_fails_fast_and_comes_back_with_its_rooms() {
    let Some(nats) = nats_or_skip("a_killed_node_fails_fast") else { return };
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(&nats, 3).await;
    // Users owned by the node their socket is on (user `members[i]` by node i): after the
    // restart, a history request through node i follows, on the same FIFO, what node i tells
    // the restarted node about its user (`NodeUp`), so the old sockets are subscribed again
    // by the time it is answered.
    let (names, rooms) = owned_users_and_rooms(&cluster).await;
    let members = [names[0].as_str(), names[1].as_str(), names[2].as_str()];
    let mut k0 = virola(cluster.addr(0), members[0]).await;
    let mut k1 = virola(cluster.addr(1), members[1]).await;
    let k2 = virola(cluster.addr(2), members[2]).await;
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
    let (status, took) = try_post(cluster.addr(1), rooms[2], members[1], "lost").await;
    assert_eq!((status, took < Duration::from_secs(1)), (503, true), "in flight: {took:?}");
    cluster.wait_down(0, 2).await;
    for attempt in 0..5 {
        let (status, took) = try_post(cluster.addr(0), rooms[2], members[0], "lost").await;
        assert_eq!(status, 503, "attempt {attempt}");
        assert!(took < Duration::from_secs(1), "503 within a second, took {took:?}");
    }
    let (status, took) = try_post(cluster.addr(1), rooms[2], members[1], "lost").await;
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
    for (node, member) in members.iter().enumerate() {
        let token = user_token(member);
        let texts = history_texts(cluster.addr(node), rooms[2], &token, "").await;
        for text in &acknowledged {
            assert!(texts.contains(text), "{text} kept, node {node} sees {texts:?}");
        }
        assert!(!texts.iter().any(|t| t == "lost"), "a refused post was not stored");
    }
    // The sockets that stayed on nodes 0 and 1 get the room's new events again, and a client
    // of the lost node reconnects to another node and gets them too.
    let mut k2 = virola(cluster.addr(0), members[2]).await;
    post_message(cluster.addr(1), rooms[2], members[1], "after").await;
    for ws in [&mut k0, &mut k1, &mut k2] {
        assert_eq!(virola_text(ws).await, "after");
    }
}

/// Node `node`'s `/healthz` body and its cluster lines of `/metrics`.
async fn health_and_metrics(cluster: &Cluster, node: usize) -> (Value, Vec<String>) {
    let health = call(cluster.addr(node), "GET", "/healthz", None, None).await;
    assert_eq!(health.status, 200, "node {node} answers /healthz");
    let metrics = call(cluster.addr(node), "GET", "/metrics", None, None).await;
    assert_eq!(metrics.status, 200, "node {node} answers /metrics");
    let lines = String::from_utf8_lossy(&metrics.body)
        .lines()
        .filter(|l| {
            l.starts_with("roomcast_cluster_connected ")
                || l.starts_with("roomcast_cluster_node_up")
        })
        .map(str::to_string)
        .collect();
    (health.json(), lines)
}

/// The cluster lines of `/metrics` a node shows with NATS `connected` and node `up[n]`.
fn cluster_lines(connected: bool, up: &[bool]) -> Vec<String> {
    let mut lines: Vec<String> = up
        .iter()
        .enumerate()
        .map(|(n, up)| format!("roomcast_cluster_node_up{{node=\"{n}\"}} {}", u8::from(*up)))
        .collect();
    lines.push(format!("roomcast_cluster_connected {}", u8::from(connected)));
    lines
}

/// The texts of every message of `room` (one page of up to 500), through node `node`.
async fn all_texts(cluster: &Cluster, node: usize, room: u64, user: &str) -> Vec<String> {
    history_texts(cluster.addr(node), room, &user_token(user), "limit=500").await
}

/// NATS itself dies (SIGKILL) under three nodes with clients, then starts again on its port:
/// meanwhile each node says the others are down, answers what needs them with 503 at once and
/// serves what is its own; after, the nodes reconnect, a room across them delivers to every node
/// in its order, and every acknowledged message is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_fails_fast_and_the_cluster_recovers_when_nats_returns() {
    let Some(nats) = nats_or_skip("a_nats_outage") else { return };
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(&nats, 3).await;
    // User `members[i]` is owned by node i and has its socket there; room i is owned by node i.
    let (names, rooms) = owned_users_and_rooms(&cluster).await;
    let members = [names[0].as_str(), names[1].as_str(), names[2].as_str()];
    let mut clients = Vec::new();
    for (node, member) in members.iter().enumerate() {
        clients.push(virola(cluster.addr(node), member).await);
    }
    // Before: a message into each room through another node; every socket gets all three (rooms
    // of different owners are not ordered with each other).
    let mut acknowledged: Vec<(usize, String)> = Vec::new();
    for (room, id) in rooms.iter().enumerate() {
        let via = (room + 1) % 3;
        let text = format!("before-{room}");
        post_message(cluster.addr(via), *id, members[via], &text).await;
        acknowledged.push((room, text));
    }
    for ws in &mut clients {
        let mut got = vec![virola_text(ws).await, virola_text(ws).await, virola_text(ws).await];
        got.sort();
        assert_eq!(got, ["before-0", "before-1", "before-2"]);
    }

    cluster.kill_nats();
    let outage = Instant::now();
    // Each node reports its NATS connection lost and the two others down (still 200: it serves).
    for node in 0..3 {
        let alone: Vec<bool> = (0..3).map(|n| n == node).collect();
        cluster.wait_health(node, |up| up == alone.as_slice()).await;
        let (health, metrics) = health_and_metrics(&cluster, node).await;
        assert_eq!(
            (&health["status"], &health["cluster"]["connected"]),
            (&json!("degraded"), &json!(false)),
            "node {node}: {health}"
        );
        assert_eq!(metrics, cluster_lines(false, &alone), "node {node}'s /metrics");
    }
    // What needs another node: 503 with Retry-After, at once, from every node.
    let refused_at_once = || async {
        for (node, member) in members.iter().enumerate() {
            for other in (0..3).filter(|o| *o != node) {
                let (status, took) = try_post(cluster.addr(node), rooms[other], member, "x").await;
                assert_eq!(status, 503, "node {node} posting into node {other}'s room");
                assert!(took < Duration::from_secs(1), "503 within a second, took {took:?}");
            }
        }
    };
    refused_at_once().await;
    // What is a node's own keeps working: its user posts into its room, its socket hears it, a
    // new socket of its user opens and hears the next one, the history is read.
    for node in 0..3 {
        let text = format!("during-{node}");
        post_message(cluster.addr(node), rooms[node], members[node], &text).await;
        assert_eq!(virola_text(&mut clients[node]).await, text);
        acknowledged.push((node, text));
        let mut fresh = virola(cluster.addr(node), members[node]).await;
        let text = format!("during-{node}-again");
        post_message(cluster.addr(node), rooms[node], members[node], &text).await;
        assert_eq!(virola_text(&mut clients[node]).await, text);
        assert_eq!(virola_text(&mut fresh).await, text);
        let texts = all_texts(&cluster, node, rooms[node], members[node]).await;
        assert_eq!(texts[texts.len() - 2..], [format!("during-{node}"), text.clone()]);
        acknowledged.push((node, text));
    }

    // Still so, 3 s into the outage, past the heartbeats' timeout, while the NATS clients retry
    // (a round every 250 ms: the writes, refused or not, count against the users' rate).
    let mut every = tokio::time::interval(Duration::from_millis(250));
    while outage.elapsed() < Duration::from_secs(3) {
        every.tick().await;
        refused_at_once().await;
    }

    // NATS comes back on its port: every node reconnects and sees every other up.
    cluster.start_nats();
    for node in 0..3 {
        cluster.wait_all_up(node).await;
        let (health, metrics) = health_and_metrics(&cluster, node).await;
        assert_eq!(
            (&health["status"], &health["cluster"]["connected"]),
            (&json!("ok"), &json!(true)),
            "node {node}: {health}"
        );
        assert_eq!(metrics, cluster_lines(true, &[true; 3]), "node {node}'s /metrics");
    }
    // The nodes tell each other again where their users are (`NodeUp`) once they are up: post
    // into each room through its owner until every socket hears it (bounded). What was posted
    // during the outage is not sent again (the other nodes' sockets catch up by history, as
    // after any reconnect): a socket's next texts are probes.
    for room in 0..3 {
        let probe = format!("probe-{room}");
        let mut heard = [false; 3];
        let deadline = Instant::now() + Duration::from_secs(10);
        while heard.contains(&false) {
            assert!(Instant::now() < deadline, "room {room} reaches only {heard:?}");
            post_message(cluster.addr(room), rooms[room], members[room], &probe).await;
            for (node, ws) in clients.iter_mut().enumerate() {
                if heard[node] {
                    continue;
                }
                // (More probes of the rooms before may still come: skipped.)
                let this_probe = async {
                    loop {
                        let text = virola_text(ws).await;
                        assert!(text.starts_with("probe-"), "node {node}'s socket got {text}");
                        if text == probe {
                            return;
                        }
                    }
                };
                let wait = Duration::from_millis(300);
                heard[node] = tokio::time::timeout(wait, this_probe).await.is_ok();
            }
        }
    }
    // The service is back: messages into every room through every node, each socket gets every
    // one of them, each room's in the order they were acknowledged.
    let mut posted: Vec<Vec<String>> = vec![Vec::new(); 3];
    for i in 0..4 {
        for room in 0..3 {
            let via = (room + i) % 3;
            let text = format!("after-{room}-{i}");
            post_message(cluster.addr(via), rooms[room], members[via], &text).await;
            posted[room].push(text.clone());
            acknowledged.push((room, text));
        }
    }
    for (node, ws) in clients.iter_mut().enumerate() {
        let mut got: Vec<Vec<String>> = vec![Vec::new(); 3];
        while got.iter().map(Vec::len).sum::<usize>() < 12 {
            let text = virola_text(ws).await;
            if text.starts_with("probe-") {
                continue;
            }
            let room = text.strip_prefix("after-").and_then(|t| t[..1].parse::<usize>().ok());
            let room = room.unwrap_or_else(|| panic!("node {node}'s socket got {text}"));
            got[room].push(text);
        }
        assert_eq!(got, posted, "node {node}'s socket: every room in its order");
    }
    // Nothing acknowledged is lost: every node reads every room's acknowledged messages.
    for (node, member) in members.iter().enumerate() {
        for (room, id) in rooms.iter().enumerate() {
            let texts = all_texts(&cluster, node, *id, member).await;
            for (_, text) in acknowledged.iter().filter(|(r, _)| *r == room) {
                assert!(texts.contains(text), "{text} kept, node {node} reads {texts:?}");
            }
        }
    }
}

// --- Clients of the other dialects (as in tests/big.rs, osu.rs, rechat.rs) ----------------

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text.to_string())).await.expect("send");
}

/// A BIG socket of `user`.
async fn big(addr: SocketAddr, user: &str) -> Ws {
    ws_connect(addr, "/websocket", Auth::Header(&user_token(user))).await.expect("big").0
}

/// A BIG request's successful response payload (events before it are skipped).
async fn big_ok(ws: &mut Ws, id: &str, payload_type: &str, payload: Value) -> Value {
    big_request(ws, id, payload_type, payload).await.0
}

/// A BIG request's successful response payload, and the frames that came before it.
async fn big_request(
    ws: &mut Ws,
    id: &str,
    payload_type: &str,
    payload: Value,
) -> (Value, Vec<Value>) {
    let request =
        json!({"type": "request", "id": id, "payloadType": payload_type, "payload": payload});
    send_text(ws, &request.to_string()).await;
    let mut before = Vec::new();
    loop {
        let frame = next_json(ws).await;
        if frame["type"] == "response" && frame["id"] == id {
            return (frame["payload"].clone(), before);
        }
        assert!(frame.get("error").is_none(), "{frame}");
        before.push(frame);
    }
}

/// The next BIG event of `event_type`.
async fn big_event(ws: &mut Ws, event_type: &str) -> Value {
    loop {
        let frame = next_json(ws).await;
        if frame["type"] == "event" && frame["eventType"] == event_type {
            return frame;
        }
    }
}

/// A token for osu! user `user` with session `sid`.
fn session_token(user: &str, sid: &str) -> String {
    let claims = roomcast::auth::MintClaims {
        sub: user.to_string(),
        role: None,
        sid: Some(sid.to_string()),
        scopes: None,
        ttl_s: 3600,
    };
    roomcast::auth::mint_hs256(SECRET.as_bytes(), &claims).expect("mint")
}

/// An osu! socket, after its `connection.ready`.
async fn osu(addr: SocketAddr, token: &str) -> Ws {
    let (mut ws, _) = ws_connect(addr, "/notifications", Auth::Header(token)).await.expect("osu");
    assert_eq!(next_json(&mut ws).await, json!({"event": "connection.ready"}));
    ws
}

/// The next osu! frame whose `event` is `name`.
async fn osu_event(ws: &mut Ws, name: &str) -> Value {
    loop {
        let event = next_json(ws).await;
        if event["event"] == name {
            return event;
        }
    }
}

/// The text frames until the server ends the connection (within 5 s).
async fn until_closed(ws: &mut Ws) -> Vec<Value> {
    let mut texts = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Err(_) => panic!("still open; got {texts:?}"),
            Ok(Some(Ok(Message::Text(t)))) => texts.push(serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) => return texts,
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// A Rechat (Engine.IO v3) socket of `user`, authenticated.
async fn rechat(addr: SocketAddr, user: &str) -> Ws {
    let path = "/socket.io/?EIO=3&transport=websocket";
    let (mut ws, _) = ws_connect(addr, path, Auth::None).await.expect("rechat");
    assert!(rechat_next(&mut ws).await.starts_with('0'), "open packet");
    assert_eq!(rechat_next(&mut ws).await, "40");
    send_text(&mut ws, &format!(r#"421["Authenticate","{}"]"#, user_token(user))).await;
    loop {
        let text = rechat_next(&mut ws).await;
        if let Some(ack) = text.strip_prefix("431") {
            let ack: Value = serde_json::from_str(ack).expect("ack");
            assert_eq!((&ack[0], &ack[1]["id"]), (&Value::Null, &json!(user)), "{ack}");
            return ws;
        }
    }
}

/// The next text packet of a Rechat socket (pings `2` are answered `3`).
async fn rechat_next(ws: &mut Ws) -> String {
    loop {
        let text = match next_frame(ws).await {
            Message::Text(text) => text.to_string(),
            _ => continue,
        };
        if text == "2" {
            send_text(ws, "3").await;
            continue;
        }
        return text;
    }
}

async fn next_frame(ws: &mut Ws) -> Message {
    tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("a frame in time")
        .expect("open")
        .expect("frame")
}

/// The next Rechat `Message.Sent`'s comment.
async fn rechat_message(ws: &mut Ws) -> String {
    loop {
        let text = rechat_next(ws).await;
        let Some(event) = text.strip_prefix("42") else { continue };
        let items: Value = serde_json::from_str(event).expect("event JSON");
        if items[0] == "Message.Sent" {
            return items[2]["comment"].as_str().expect("comment").to_string();
        }
    }
}

/// The next osu! `chat.message.new`'s content.
async fn osu_message(ws: &mut Ws) -> String {
    let event = osu_event(ws, "chat.message.new").await;
    event["data"]["messages"][0]["content"].as_str().expect("content").to_string()
}

/// The messages of the first `count` BIG `new` events of `frames` then of `ws`, each event
/// once: one not acknowledged is sent again (same id) every `big_resend_ms`.
async fn big_messages(ws: &mut Ws, frames: Vec<Value>, count: usize) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut messages = Vec::new();
    let mut frames = frames.into_iter();
    while messages.len() < count {
        let frame = match frames.next() {
            Some(frame) => frame,
            None => big_event(ws, "new").await,
        };
        if frame["type"] == "event"
            && frame["eventType"] == "new"
            && seen.insert(frame["id"].clone())
        {
            messages.push(frame["payload"]["message"].as_str().expect("message").to_string());
        }
    }
    messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_four_dialects_on_three_nodes_share_a_room_in_order() {
    let Some(nats) = nats_or_skip("all_four_dialects") else { return };
    let _serial = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::start(&nats, 3).await;
    four_dialects([cluster.addr(0), cluster.addr(1), cluster.addr(2)]).await;
}

/// The same on one node of three shards: what the cluster must match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_four_dialects_on_one_node_for_reference() {
    let server = start(3);
    four_dialects([server.addr; 3]).await;
}

async fn four_dialects(addrs: [SocketAddr; 3]) {
    struct Addrs([SocketAddr; 3]);
    impl Addrs {
        fn addr(&self, node: usize) -> SocketAddr {
            self.0[node]
        }
    }
    let cluster = Addrs(addrs);
    let members = ["vi", "1001", "bg", "rc"];
    let room = create_room(cluster.addr(1), "mixed", &members).await;
    let mut vi = virola(cluster.addr(0), "vi").await;
    let mut os = osu(cluster.addr(1), &user_token("1001")).await;
    send_text(&mut os, r#"{"event":"chat.start"}"#).await;
    let mut bg = big(cluster.addr(2), "bg").await;
    let chats = big_ok(&mut bg, "0", "chats", json!({})).await;
    assert_eq!(chats[0]["id"], room.to_string(), "BIG lists the room made on another node");
    let mut rc = rechat(cluster.addr(0), "rc").await;
    // osu!'s chat.start is read before the first message: a round trip on its socket's node
    // (a REST call on the same node is not ordered with it, so wait for the gate to show).
    let mut expected = Vec::new();
    loop {
        post_message(cluster.addr(2), room, "vi", "warm-up").await;
        let osu_got = tokio::time::timeout(Duration::from_millis(300), osu_message(&mut os)).await;
        expected.push("warm-up".to_string());
        if osu_got.is_ok() {
            break;
        }
    }
    // One message from each dialect's side, through every node.
    post_message(cluster.addr(1), room, "vi", "from rest").await;
    expected.push("from rest".into());
    let new = json!({"chatId": room.to_string(), "message": "from big"});
    let (_, big_before) = big_request(&mut bg, "1", "new", new).await;
    expected.push("from big".into());
    let send = format!(
        r#"422["Message.Send","{room}",{{"comment":"from rechat","message_type":"TopLevel"}}]"#
    );
    send_text(&mut rc, &send).await;
    expected.push("from rechat".into());
    post_message(cluster.addr(0), room, "1001", "from osu user").await;
    expected.push("from osu user".into());

    // The room's order (the Rechat post and the next REST post race): Virola's, the same set.
    let mut got = Vec::new();
    for _ in &expected {
        match tokio::time::timeout(Duration::from_secs(3), virola_text(&mut vi)).await {
            Ok(text) => got.push(text),
            Err(_) => panic!("Virola got {got:?} of {expected:?}"),
        }
    }
    let (mut sorted_got, mut sorted_expected) = (got.clone(), expected.clone());
    sorted_got.sort();
    sorted_expected.sort();
    assert_eq!(sorted_got, sorted_expected, "Virola on node 0: every message once");
    let expected = got;
    let mut got = Vec::new();
    for _ in &expected {
        got.push(rechat_message(&mut rc).await);
    }
    assert_eq!(got, expected, "Rechat on node 0");
    // BIG does not echo its own `new` to the sender's socket; the events that came before the
    // answer to its `new` are BIG's first ones.
    let mut without_own = expected.clone();
    without_own.retain(|t| t != "from big");
    let got = big_messages(&mut bg, big_before, without_own.len()).await;
    assert_eq!(got, without_own, "BIG on node 2");
    let tail: Vec<String> = expected.iter().skip_while(|t| *t == "warm-up").cloned().collect();
    let mut got = Vec::new();
    for _ in &tail {
        got.push(osu_message(&mut os).await);
    }
    assert_eq!(got, tail, "osu! on node 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn osu_notifications_and_logout_reach_every_node() {
    let Some(nats) = nats_or_skip("osu_notifications_and_logout") else { return };
    let _serial = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::start(&nats, 3).await;
    let (token_a, token_b) =
        (session_token("1001", "session-a"), session_token("1001", "session-b"));
    // Session A on every node, session B on node 1; another user on node 2.
    let mut a0 = osu(cluster.addr(0), &token_a).await;
    let mut a2 = osu(cluster.addr(2), &token_a).await;
    let mut a1 = osu(cluster.addr(1), &token_a).await;
    let mut b1 = osu(cluster.addr(1), &token_b).await;
    let mut other = osu(cluster.addr(2), &user_token("2002")).await;

    // A notification posted on node 1 reaches the user's sockets on every node.
    let body = json!({"name": "channel_message", "object_type": "channel", "object_id": 7});
    let r = call(
        cluster.addr(1),
        "POST",
        "/api/v1/users/1001/notifications",
        Some(&service_token()),
        Some(body),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", String::from_utf8_lossy(&r.body));
    let id = r.json()["notification"]["id"].as_u64().expect("id");
    for ws in [&mut a0, &mut a2, &mut a1, &mut b1] {
        assert_eq!(osu_event(ws, "new").await["data"]["id"], json!(id));
    }
    // Read through node 2: every socket hears it.
    let r = call(
        cluster.addr(2),
        "POST",
        "/api/v1/notifications/read",
        Some(&user_token("1001")),
        Some(json!({"ids": [id]})),
    )
    .await;
    assert_eq!((r.status, &r.json()["read"]), (200, &json!([id])));
    for ws in [&mut a0, &mut a2, &mut a1, &mut b1] {
        assert_eq!(osu_event(ws, "read").await["ids"], json!([id]));
    }

    // Session B logs session A out through node 0: A's sockets on every node get `logout` and
    // close; its token is refused everywhere; B goes on.
    let r =
        call(cluster.addr(0), "DELETE", "/api/v1/sessions/session-a", Some(&token_b), None).await;
    assert_eq!(r.status, 204, "{:?}", String::from_utf8_lossy(&r.body));
    for ws in [&mut a0, &mut a2, &mut a1] {
        assert_eq!(until_closed(ws).await, vec![json!({"event": "logout"})]);
    }
    // Each node closed its sockets of the session as it recorded the logout: each refuses it.
    for node in 0..3 {
        let refused = call(cluster.addr(node), "GET", "/api/v1/rooms", Some(&token_a), None).await;
        assert_eq!(refused.status, 401, "node {node} refuses the logged-out session");
    }
    let body = json!({"name": "after", "object_type": "t", "object_id": 1});
    let r = call(
        cluster.addr(2),
        "POST",
        "/api/v1/users/1001/notifications",
        Some(&service_token()),
        Some(body),
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(osu_event(&mut b1, "new").await["data"]["name"], "after");
    // The other user heard none of it: its first frame is its own notification.
    let body = json!({"name": "mine", "object_type": "t", "object_id": 2});
    let r = call(
        cluster.addr(0),
        "POST",
        "/api/v1/users/2002/notifications",
        Some(&service_token()),
        Some(body),
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(next_json(&mut other).await["data"]["name"], "mine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_acks_presence_and_receipts_cross_nodes() {
    let Some(nats) = nats_or_skip("big_acks_presence_and_receipts") else { return };
    let _serial = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::start(&nats, 3).await;
    // Alice on node 0 opens a dialog with bob (chatId = the peer) while he is away.
    let mut alice = big(cluster.addr(0), "alice").await;
    big_ok(&mut alice, "1", "new", json!({"chatId": "bob", "message": "m0"})).await;
    // Bob comes online on node 1: both hear the other's presence.
    let mut bob = big(cluster.addr(1), "bob").await;
    assert_eq!(big_event(&mut alice, "online").await["payload"], json!({"userId": "bob"}));
    assert_eq!(big_event(&mut bob, "online").await["payload"], json!({"userId": "alice"}));
    // Bob gets m1 (unacknowledged until he says so); alice hears it delivered.
    let sent = json!({"chatId": "bob", "message": "m1", "clientMessageId": "c1"});
    big_ok(&mut alice, "2", "new", sent).await;
    let first = big_event(&mut bob, "new").await;
    assert_eq!(first["payload"]["message"], "m1");
    // (m0 was marked delivered as bob connected: that `dlvrd` may come first.)
    let mut dlvrd = big_event(&mut alice, "dlvrd").await;
    if dlvrd["payload"]["messageId"] == json!(1) {
        dlvrd = big_event(&mut alice, "dlvrd").await;
    }
    let p = &dlvrd["payload"];
    assert_eq!(
        (&p["chatId"], &p["messageId"], &p["clientMessageId"]),
        (&json!("bob"), &json!(2), &json!("c1"))
    );
    // Not acknowledged: reconnecting on node 2, bob gets it again at once, same id.
    close(bob).await;
    let mut bob = big(cluster.addr(2), "bob").await;
    let again = big_event(&mut bob, "new").await;
    assert_eq!(again["id"], first["id"]);
    // Acknowledged from node 2: reconnecting on node 0 brings only what is new.
    send_text(&mut bob, &json!({"type": "ack", "id": again["id"]}).to_string()).await;
    // Bob reads m1 through node 2: alice (node 0) gets `read`.
    let read = big_ok(&mut bob, "2", "read", json!({"chatId": "alice", "messageId": 2})).await;
    assert_eq!((&read["messageId"], &read["clientMessageId"]), (&json!(2), &json!("c1")));
    let event = big_event(&mut alice, "read").await;
    assert_eq!(
        (&event["payload"]["messageId"], &event["payload"]["userId"]),
        (&json!(2), &json!("bob"))
    );
    close(bob).await;
    let mut bob = big(cluster.addr(0), "bob").await;
    big_ok(&mut alice, "3", "new", json!({"chatId": "bob", "message": "m2"})).await;
    let next = big_event(&mut bob, "new").await;
    assert_eq!(next["payload"]["message"], "m2", "the acknowledged m1 is not sent again");
    // Bob says he goes away (on node 0): alice hears `offline`.
    send_text(&mut bob, &json!({"type": "event", "payloadType": "offline"}).to_string()).await;
    assert_eq!(big_event(&mut alice, "offline").await["payload"]["userId"], "bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_with_sigterm_drains_and_exits_and_the_others_see_it_go() {
    let Some(nats) = nats_or_skip("a_node_stopped_with_sigterm") else { return };
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(&nats, 2).await;
    let room = create_room(cluster.addr(0), "r", &["t0", "t1"]).await;
    let mut t0 = virola(cluster.addr(0), "t0").await;
    post_message(cluster.addr(1), room, "t1", "before").await;
    assert_eq!(virola_text(&mut t0).await, "before");
    let (mut process, _) = cluster.nodes[1].take().expect("node 1");
    let pid = process.0.id() as libc::pid_t;
    // SAFETY: signalling a child this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = tokio::task::spawn_blocking(move || process.0.wait()).await.unwrap().unwrap();
    assert!(status.success(), "a drained node exits 0: {status:?}");
    cluster.wait_down(0, 1).await;
    post_message(cluster.addr(0), room, "t0", "after").await;
    assert_eq!(virola_text(&mut t0).await, "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_made_while_a_node_was_down_is_enforced_when_it_returns() {
    let Some(nats) = nats_or_skip("a_logout_made_while_a_node_was_down") else { return };
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(&nats, 3).await;
    // The user's owner is node 0; node 2 neither owns it nor stores its logouts.
    let user = owned_by(0, 3);
    let token = session_token(&user, "session-x");
    let mut socket = osu(cluster.addr(0), &token).await;
    let served = call(cluster.addr(2), "GET", "/api/v1/rooms", Some(&token), None).await;
    assert_eq!(served.status, 200, "node 2 serves the session before the logout");

    cluster.kill(2);
    cluster.wait_down(0, 2).await;
    let r = call(cluster.addr(0), "DELETE", "/api/v1/sessions/session-x", Some(&token), None).await;
    assert_eq!(r.status, 204, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(until_closed(&mut socket).await, vec![json!({"event": "logout"})]);
    for node in 0..2 {
        let refused = call(cluster.addr(node), "GET", "/api/v1/rooms", Some(&token), None).await;
        assert_eq!(refused.status, 401, "node {node} refuses the logged-out session");
    }

    // Node 2 comes back with only its own data directory: the nodes that stayed up tell it.
    cluster.spawn(2);
    cluster.wait_all_up(2).await;
    cluster.wait_all_up(0).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = call(cluster.addr(2), "GET", "/api/v1/rooms", Some(&token), None).await.status;
        if status == 401 {
            break;
        }
        assert_eq!(status, 200, "only the session's state may change");
        assert!(
            Instant::now() < deadline,
            "node 2 still serves a session logged out while it was down"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // Another session of the same user is still served there.
    let other = session_token(&user, "session-y");
    let served = call(cluster.addr(2), "GET", "/api/v1/rooms", Some(&other), None).await;
    assert_eq!(served.status, 200, "a session never logged out is served");
}

/// The NATS server asks for credentials: nodes that give them (a token; a user and password)
/// form the cluster and deliver across it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_authenticate_to_a_nats_server_that_requires_it() {
    let Some(nats) = nats_or_skip("nodes_authenticate_to_nats") else { return };
    let _serial = ONE_AT_A_TIME.lock().await;
    let logins: [(&[&str], &[&str]); 2] = [
        (&["--auth", "s3cret-token"], &["--cluster-token", "s3cret-token"]),
        (
            &["--user", "roomcast", "--pass", "pa55word"],
            &["--cluster-user", "roomcast", "--cluster-password", "pa55word"],
        ),
    ];
    for (nats_args, node_args) in logins {
        deliver_across_two_nodes(&nats, nats_args, node_args).await;
    }
}

/// Starts two nodes with the given NATS and node arguments; a message posted on node 0 reaches
/// a reader on node 1.
async fn deliver_across_two_nodes(nats: &Path, nats_args: &[&str], node_args: &[&str]) {
    let cluster = Cluster::start_with(nats, 2, nats_args, node_args).await;
    let (a, b) = (owned_by(0, 2), owned_by(1, 2));
    let room = create_room(cluster.addr(0), "authenticated", &[a.as_str(), b.as_str()]).await;
    let mut reader = virola(cluster.addr(1), &b).await;
    post_message(cluster.addr(0), room, &a, "over an authenticated mesh").await;
    assert_eq!(virola_text(&mut reader).await, "over an authenticated mesh", "{node_args:?}");
}

/// The NATS server speaks TLS only, with a certificate of a test CA made here: nodes that
/// trust the CA (`--cluster-tls-ca`) form the cluster over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_reach_nats_over_tls() {
    let Some(nats) = nats_or_skip("nodes_reach_nats_over_tls") else { return };
    let _serial = ONE_AT_A_TIME.lock().await;
    let dir = TempDir::new();
    let made = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/tls-test-ca.sh"))
        .arg(&dir.0)
        .stdout(Stdio::null())
        .status()
        .expect("run .ci/tls-test-ca.sh (needs openssl)");
    assert!(made.success(), "the test CA was made");
    let path = |name: &str| dir.0.join(name).to_string_lossy().into_owned();
    let (cert, key, ca) = (path("cert.pem"), path("key.pem"), path("ca.pem"));
    let nats_args = ["--tls", "--tlscert", &cert, "--tlskey", &key];
    deliver_across_two_nodes(&nats, &nats_args, &["--cluster-tls-ca", &ca]).await;
}

/// One value of node `node`'s `/metrics` (the line `name value`).
async fn metric(cluster: &Cluster, node: usize, name: &str) -> u64 {
    let metrics = call(cluster.addr(node), "GET", "/metrics", None, None).await;
    let body = String::from_utf8_lossy(&metrics.body).to_string();
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("node {node} has no metric {name}"))
}

/// A NATS server with a small `max_payload` (16 KiB): a command over it on its own is not sent,
/// without taking the rest of its batch along. An event too large to cross is counted and the
/// other node's members get the events before and after it; a post, or a history page, through
/// a node that would have to send it across is refused at once with 413 (not left to time out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_over_the_nats_max_payload_is_refused_and_the_rest_still_crosses() {
    let Some(nats) = nats_or_skip("a_command_over_the_nats_max_payload") else { return };
    let _serial = ONE_AT_A_TIME.lock().await;
    let conf = TempDir::new();
    let conf_file = conf.0.join("nats.conf");
    std::fs::write(&conf_file, "max_payload: 16384\n").expect("write nats.conf");
    let conf_path = conf_file.to_string_lossy().to_string();
    let cluster = Cluster::start_with(&nats, 2, &["-c", &conf_path], &[]).await;
    assert_eq!(metric(&cluster, 0, "roomcast_cluster_max_payload_bytes").await, 16384);

    // The room is owned by node 0 (made there); its member reads on node 1.
    let room = create_room(cluster.addr(0), "big-and-small", &["poster", "reader"]).await;
    let mut reader = virola(cluster.addr(1), "reader").await;
    post_message(cluster.addr(0), room, "poster", "before").await;
    assert_eq!(virola_text(&mut reader).await, "before");

    // Stored on its owner (201), but its event is over 16 KiB: not sent to node 1.
    let big = "b".repeat(20_000);
    post_message(cluster.addr(0), room, "poster", &big).await;
    post_message(cluster.addr(0), room, "poster", "after").await;
    assert_eq!(virola_text(&mut reader).await, "after", "the event after the big one arrives");
    assert!(metric(&cluster, 0, "roomcast_cluster_oversized_total").await >= 1);
    assert_eq!(metric(&cluster, 0, "roomcast_cluster_publish_errors_total").await, 0);

    // Through node 1: the post's request, and a history page holding the big message, would
    // be over the limit on the way: 413 at once, with a reason.
    let (status, took) = try_post(cluster.addr(1), room, "reader", &big).await;
    assert_eq!(status, 413, "a post too large to reach its room's node");
    assert!(took < Duration::from_secs(5), "refused at once, not timed out: {took:?}");
    let token = user_token("reader");
    let path = format!("/api/v1/rooms/{room}/messages?limit=10");
    let page = call(cluster.addr(1), "GET", &path, Some(&token), None).await;
    assert_eq!(page.status, 413, "{}", String::from_utf8_lossy(&page.body));
    let reason = String::from_utf8_lossy(&page.body).to_string();
    assert!(reason.contains("NATS"), "the reason is given: {reason}");
    // Pages that fit still come across, and node 1 itself is unharmed.
    let texts = history_texts(cluster.addr(1), room, &token, "limit=1").await;
    assert_eq!(texts, ["before"], "the first page (oldest first) fits");
    post_message(cluster.addr(1), room, "reader", "small from node 1").await;
    assert_eq!(virola_text(&mut reader).await, "small from node 1");
}

/// Nodes of another wire version (another roomcast release) are kept apart, not decoded: a
/// heartbeat on the first version's subject (`<prefix>.node.<n>.health`, no version token) or
/// on another version's is counted and ignored, and a batch on the first version's mesh subject
/// is never read; the nodes of this version go on seeing each other up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_of_another_wire_version_are_counted_and_not_decoded() {
    let Some(nats) = nats_or_skip("nodes_of_another_wire_version") else { return };
    let _serial = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::start(&nats, 2).await;
    let client = async_nats::connect(cluster.url.as_str()).await.expect("a NATS client");
    let prefix = &cluster.prefix;
    let beat = bytes::Bytes::from_static(&[1, 5]);
    for subject in [format!("{prefix}.node.1.health"), format!("{prefix}.w99.node.1.health")] {
        client.publish(subject, beat.clone()).await.expect("publish");
    }
    let junk = bytes::Bytes::from_static(b"\xff\xff\xff not a batch of this version");
    client.publish(format!("{prefix}.node.0.mesh"), junk).await.expect("publish");
    client.flush().await.expect("flush");
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&cluster, 0, "roomcast_cluster_version_mismatch_total").await < 2 {
        assert!(Instant::now() < deadline, "node 0 counts both foreign heartbeats");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metric(&cluster, 0, "roomcast_cluster_malformed_total").await, 0);
    assert_eq!(metric(&cluster, 0, "roomcast_cluster_node_up{node=\"1\"}").await, 1);
    // And the two nodes of this version still work together.
    let room = create_room(cluster.addr(0), "same-version", &["a"]).await;
    let mut reader = virola(cluster.addr(1), "a").await;
    post_message(cluster.addr(0), room, "a", "still here").await;
    assert_eq!(virola_text(&mut reader).await, "still here");
}
