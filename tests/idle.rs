//! 10 000 idle WebSocket connections on one shard: each holds exactly one operation in the
//! kernel (its multishot receive on the shard's ring) and no read buffer, as `/metrics` says;
//! once the clients leave, every operation has completed.
//!
//! The server runs as its own process (the test's 10 000 client sockets and the server's would
//! pass one process's descriptor limit), and the clients' source addresses are spread over
//! 127.0.0.0/8 so the per-address cap on connections in the HTTP phase is never reached.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const CONNECTIONS: usize = 10_000;
/// Connections from one loopback source address (below `http_connections_per_ip_max`).
const PER_ADDRESS: usize = 50;
/// Upgrades in flight at once.
const CONCURRENT: usize = 200;

fn spawn_server(dir: &std::path::Path) -> Process {
    // No pings or idle closes during the test: the connections stay idle.
    let quiet = ["--ping-interval-ms", "600000", "--idle-timeout-ms", "1200000"];
    spawn_server_process(dir, &[&["--shards", "1"][..], &quiet].concat())
}

/// An upgraded Virola event stream of `user`, from loopback source address number `n`.
async fn upgrade(addr: SocketAddr, n: usize, token: String) -> TcpStream {
    let n = 2 + (n / PER_ADDRESS) as u32;
    let src = Ipv4Addr::new(127, (n >> 16) as u8, (n >> 8) as u8, n as u8);
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::from((src, 0))).expect("bind a loopback source address");
    let mut stream = socket.connect(addr).await.expect("connect");
    let head = format!(
        "GET /api/v1/events HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("send the upgrade");
    let mut response = Vec::new();
    let mut byte = [0u8; 1];
    while !response.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(60), stream.read(&mut byte))
            .await
            .expect("an answer in time")
            .expect("read");
        assert_eq!(n, 1, "the server answered the upgrade");
        response.push(byte[0]);
    }
    assert!(response.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&response));
    stream
}

async fn metrics(addr: SocketAddr) -> String {
    String::from_utf8(call(addr, "GET", "/metrics", None, None).await.body).expect("UTF-8")
}

/// Raises this process's (and so the server child's) open-file limit to its hard limit.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit on our own process with a valid struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    assert!(
        limit.rlim_max >= CONNECTIONS as u64 + 500,
        "the open-file limit ({}) cannot hold {CONNECTIONS} connections",
        limit.rlim_max
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_connections_hold_one_receive_each_and_no_buffer() {
    raise_open_file_limit();
    let dir = TempDir::new();
    let server = spawn_server(&dir.0);
    let addr = server.addr;
    let mut streams = Vec::with_capacity(CONNECTIONS);
    let mut start = 0;
    while start < CONNECTIONS {
        let end = (start + CONCURRENT).min(CONNECTIONS);
        let batch = (start..end).map(|n| upgrade(addr, n, user_token(&format!("idle{n}"))));
        streams.extend(futures_util::future::join_all(batch).await);
        start = end;
    }
    // Wait (generously) until the server says every connection is served and idle.
    let mut text = metrics(addr).await;
    for _ in 0..600 {
        if metric(&text, "roomcast_websockets") == CONNECTIONS as u64
            && metric(&text, "roomcast_ws_ops_in_flight") == CONNECTIONS as u64
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        text = metrics(addr).await;
    }
    assert_eq!(metric(&text, "roomcast_websockets"), CONNECTIONS as u64, "all connected");
    assert_eq!(
        metric(&text, "roomcast_ws_ops_in_flight"),
        CONNECTIONS as u64,
        "one multishot receive per idle connection and nothing else"
    );
    assert_eq!(metric(&text, "roomcast_recv_buffers_held"), 0, "no read buffer held");
    assert_eq!(metric(&text, "roomcast_ws_partial_frames"), 0, "no partial frame kept");

    // The clients leave: every receive completes and no operation is left.
    drop(streams);
    for _ in 0..600 {
        text = metrics(addr).await;
        if metric(&text, "roomcast_ws_ops_in_flight") == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(metric(&text, "roomcast_websockets"), 0, "all sessions ended");
    assert_eq!(metric(&text, "roomcast_ws_ops_in_flight"), 0, "no operation left in flight");
    drop(server);
}
