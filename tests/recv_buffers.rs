//! The shard's provided receive buffers run out: more data waits at once than the ring has
//! buffers posted (`limits::WS_RECV_BUFFERS_FIRST`, growing to `WS_RECV_BUFFERS`). Each
//! multishot receive that found no buffer ends with `ENOBUFS` and is re-armed, and no byte is
//! lost: every client gets its echo.
//!
//! To make it happen for certain, the server is stopped (`SIGSTOP`) while every client writes
//! its frame, so all the data is waiting in the sockets when it continues. The reaper hands
//! back each enter's buffers before the next enter, and one enter runs up to 20 deferred
//! receives: so each frame spans several buffers (16 KiB: 8 of 2 KiB), and one enter's
//! receives need more than the 64 first posted. The server runs as its own process for that.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

/// Sockets with data at once.
const CONNECTIONS: usize = 800;
/// Bytes of each connection's first frame: 8 provided buffers' worth.
const FRAME_BYTES: usize = 16 * 1024;
/// Connections from one loopback source address (below `http_connections_per_ip_max`).
const PER_ADDRESS: usize = 50;

fn spawn_server(dir: &std::path::Path) -> Process {
    spawn_server_process(dir, &["--shards", "1", "--echo-endpoint", "/echo"])
}

/// An upgraded echo WebSocket from loopback source address number `n / PER_ADDRESS`.
async fn upgrade(addr: SocketAddr, n: usize) -> TcpStream {
    let n = 2 + (n / PER_ADDRESS) as u32;
    let src = Ipv4Addr::new(127, (n >> 16) as u8, (n >> 8) as u8, n as u8);
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::from((src, 0))).expect("bind a loopback source address");
    let mut stream = socket.connect(addr).await.expect("connect");
    let head = format!(
        "GET /echo HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("send the upgrade");
    let response = read_response(&mut stream).await;
    assert_eq!(response.status, 101, "the echo endpoint upgrades");
    stream
}

/// A masked text frame (client to server) carrying `text` (< 64 KiB).
fn masked_text(text: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = if text.len() < 126 {
        vec![0x81, 0x80 | text.len() as u8]
    } else {
        let len = u16::try_from(text.len()).expect("a 16-bit length");
        let [hi, lo] = len.to_be_bytes();
        vec![0x81, 0x80 | 126, hi, lo]
    };
    frame.extend_from_slice(&mask);
    frame.extend(text.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

fn signal(process: &Process, signal: libc::c_int) {
    // SAFETY: kill(2) on our own child's pid.
    let done = unsafe { libc::kill(process.child.id() as libc::pid_t, signal) };
    assert_eq!(done, 0, "signal {signal} reached the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receives_that_find_no_buffer_are_rearmed_and_lose_nothing() {
    let dir = TempDir::new();
    let server = spawn_server(&dir.0);
    let addr = server.addr;
    let mut streams = Vec::with_capacity(CONNECTIONS);
    for chunk in (0..CONNECTIONS).collect::<Vec<_>>().chunks(100) {
        streams
            .extend(futures_util::future::join_all(chunk.iter().map(|&n| upgrade(addr, n))).await);
    }
    let before = String::from_utf8(call(addr, "GET", "/metrics", None, None).await.body)
        .expect("UTF-8 metrics");

    let first = |n: usize| {
        let mut text = format!("frame of connection {n} ");
        text.extend(std::iter::repeat_n('x', FRAME_BYTES - text.len()));
        text
    };
    signal(&server, libc::SIGSTOP);
    for (n, stream) in streams.iter_mut().enumerate() {
        stream.write_all(&masked_text(first(n).as_bytes())).await.expect("write while stopped");
    }
    // The frames are in the server's socket buffers once written (loopback); give the kernel
    // a moment past that before the server runs again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal(&server, libc::SIGCONT);

    for (n, stream) in streams.iter_mut().enumerate() {
        let (opcode, payload) = tokio::time::timeout(Duration::from_secs(30), read_frame(stream))
            .await
            .unwrap_or_else(|_| panic!("connection {n} got its echo in time"));
        assert_eq!(opcode, 0x81, "a final text frame back on connection {n}");
        assert!(payload == first(n).as_bytes(), "its own bytes on connection {n}");
    }
    let after = String::from_utf8(call(addr, "GET", "/metrics", None, None).await.body)
        .expect("UTF-8 metrics");
    let enobufs = metric(&after, "roomcast_recv_enobufs_total")
        - metric(&before, "roomcast_recv_enobufs_total");
    assert!(enobufs > 0, "some receives found the buffer ring empty (the case under test)");
    assert!(
        metric(&after, "roomcast_recv_rearms_total")
            >= metric(&before, "roomcast_recv_rearms_total") + enobufs,
        "every receive that ended with ENOBUFS was re-armed"
    );

    // Still served after the re-arm: a second frame on every connection comes back too.
    for (n, stream) in streams.iter_mut().enumerate() {
        stream.write_all(&masked_text(format!("again {n}").as_bytes())).await.expect("write");
    }
    for (n, stream) in streams.iter_mut().enumerate() {
        let (_, payload) = tokio::time::timeout(Duration::from_secs(30), read_frame(stream))
            .await
            .unwrap_or_else(|_| panic!("connection {n} got its second echo in time"));
        assert_eq!(payload, format!("again {n}").into_bytes());
    }
    drop(server);
}
