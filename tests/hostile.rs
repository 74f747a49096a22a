//! Hostile HTTP clients over real sockets: connections that never finish a request (silent,
//! half-sent heads, one header byte at a time, short bodies, keep-alive connections idle after
//! a response) are closed by the server at their deadline, and connections still in the HTTP
//! phase are capped per shard and per source address.
//!
//! Every case checks three things: the outcome (the server closes the socket within a few
//! times the configured timeout, or answers 503), that a well-behaved client is served while
//! the hostile ones hang on, and that the server's descriptors stay bounded (this process's
//! `/proc/self/fd`: the server runs in-process). The tests of this file run one at a time, so
//! that the descriptor counts are their own.

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use roomcast::config::Config;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The HTTP deadlines of the test servers, in ms.
const TIMEOUT_MS: u64 = 300;
/// A hostile connection must be closed within this many times its deadline.
const CLOSE_WITHIN: u32 = 10;
/// Descriptors the server may open besides its connections while a case runs (lazily created
/// ones, a well-behaved client's connection closing).
const FD_SLACK: usize = 4;

/// The tests of this file count this process's descriptors: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One shard (so every connection meets the same caps), short HTTP deadlines.
fn hostile_config() -> Config {
    Config { handshake_timeout_ms: TIMEOUT_MS, http_keepalive_timeout_ms: TIMEOUT_MS, ..config(1) }
}

/// Descriptors open in this process.
fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").count()
}

/// The server's descriptors of connections on `port`: this process's TCP sockets whose local
/// port is `port` (a client's socket has it as its remote port), the listener excepted.
fn server_conn_fds(port: u16) -> usize {
    let inodes: HashSet<String> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .flatten()
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(target.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut count = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let local_port = local.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
            const LISTEN: &str = "0A";
            if local_port == Some(port) && *state != LISTEN && inodes.contains(*inode) {
                count += 1;
            }
        }
    }
    count
}

/// Waits (up to two seconds) for the server to hold at most `max` connection descriptors on
/// `port`; returns how many it holds.
async fn settle_server_fds(port: u16, max: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let held = server_conn_fds(port);
        if held <= max || Instant::now() >= deadline {
            return held;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TCP connection to `addr` from the loopback source address `src`.
async fn connect_from(addr: SocketAddr, src: [u8; 4]) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::from((src, 0))).expect("bind a loopback source address");
    socket.connect(addr).await.expect("connect")
}

/// `GET /healthz` from `src`; its status.
async fn healthz_from(addr: SocketAddr, src: [u8; 4]) -> u16 {
    let mut stream = connect_from(addr, src).await;
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    read_response(&mut stream).await.status
}

/// How long a hostile connection may stay open after its deadline started.
fn close_limit() -> Duration {
    Duration::from_millis(TIMEOUT_MS) * CLOSE_WITHIN
}

/// Reads until the server closes `stream` (EOF or a reset), at most until `deadline`; the bytes
/// read before, or an error saying it is still open.
async fn closed_by(stream: &mut TcpStream, deadline: Instant) -> Result<Vec<u8>, String> {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => {
                return Err(format!("still open; read so far: {:?}", String::from_utf8_lossy(&got)))
            }
            Ok(Ok(0)) => return Ok(got),
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(got),
            Ok(Err(e)) => return Err(format!("read failed: {e}")),
        }
    }
}

/// Asserts that every stream in `streams` is closed by the server, without a response, within
/// [`close_limit`] of `since`.
async fn assert_all_closed(streams: &mut [TcpStream], since: Instant, case: &str) {
    for (i, stream) in streams.iter_mut().enumerate() {
        match closed_by(stream, since + close_limit()).await {
            Ok(bytes) => assert!(
                bytes.is_empty(),
                "{case} #{i}: closed with unexpected bytes {:?}",
                String::from_utf8_lossy(&bytes)
            ),
            Err(e) => panic!(
                "{case} #{i}: not closed within {CLOSE_WITHIN} × {TIMEOUT_MS} ms: {e} (the \
                 server holds {} connection descriptors)",
                server_conn_fds(stream.peer_addr().map(|a| a.port()).unwrap_or(0))
            ),
        }
    }
}

/// What every deadline case checks once its hostile clients are open: a well-behaved client is
/// served meanwhile, each hostile socket is closed within [`close_limit`] of `since`, the
/// server then holds none of their descriptors and this process no more than the clients' own
/// plus [`FD_SLACK`], and it still serves.
async fn check_closed_and_bounded(
    server: &Server,
    hostile: &mut [TcpStream],
    baseline_fds: usize,
    since: Instant,
    case: &str,
) {
    assert_eq!(healthz_from(server.addr, [127, 0, 0, 1]).await, 200, "{case}: served meanwhile");
    assert_all_closed(hostile, since, case).await;
    let held = settle_server_fds(server.addr.port(), 0).await;
    assert_eq!(held, 0, "{case}: the server still holds descriptors of closed connections");
    let fds = fd_count();
    assert!(
        fds <= baseline_fds + hostile.len() + FD_SLACK,
        "{case}: {fds} descriptors open, from {baseline_fds} before {} hostile clients",
        hostile.len()
    );
    assert_eq!(healthz_from(server.addr, [127, 0, 0, 1]).await, 200, "{case}: served after");
}

/// A server for one case, warmed up (one request served), and this process's descriptor count.
async fn start_warm(config: Config) -> (Server, usize) {
    let server = start_with(config);
    assert_eq!(healthz_from(server.addr, [127, 0, 0, 1]).await, 200);
    settle_server_fds(server.addr.port(), 0).await;
    let fds = fd_count();
    (server, fds)
}

#[tokio::test]
async fn silent_connections_are_closed_at_the_head_deadline() {
    let _serial = SERIAL.lock().await;
    let (server, baseline) = start_warm(hostile_config()).await;
    let since = Instant::now();
    let mut hostile = Vec::new();
    for _ in 0..16 {
        hostile.push(connect_from(server.addr, [127, 0, 0, 1]).await);
    }
    check_closed_and_bounded(&server, &mut hostile, baseline, since, "silent").await;
}

#[tokio::test]
async fn half_sent_heads_are_closed_at_the_head_deadline() {
    let _serial = SERIAL.lock().await;
    let (server, baseline) = start_warm(hostile_config()).await;
    let since = Instant::now();
    let mut hostile = Vec::new();
    for _ in 0..8 {
        let mut stream = connect_from(server.addr, [127, 0, 0, 1]).await;
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nAccept: */").await.expect("write");
        hostile.push(stream);
    }
    check_closed_and_bounded(&server, &mut hostile, baseline, since, "half-sent head").await;
}

#[tokio::test]
async fn slowloris_heads_are_closed_at_the_whole_head_deadline() {
    let _serial = SERIAL.lock().await;
    let (server, baseline) = start_warm(hostile_config()).await;
    let since = Instant::now();
    let clients = 4;
    let mut hostile = Vec::new();
    for _ in 0..clients {
        let mut stream = connect_from(server.addr, [127, 0, 0, 1]).await;
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.expect("write");
        hostile.push(stream);
    }
    // One byte per client every sixth of the deadline: each byte comes well within the
    // deadline of the one before, the whole head never does.
    let interval = Duration::from_millis(TIMEOUT_MS / 6);
    let mut open: Vec<bool> = vec![true; clients];
    let mut served_meanwhile = false;
    while open.iter().any(|&o| o) && since.elapsed() < close_limit() {
        for (stream, open) in hostile.iter_mut().zip(open.iter_mut()).filter(|(_, o)| **o) {
            if stream.write_all(b"a").await.is_err() {
                *open = false;
                continue;
            }
            let mut chunk = [0u8; 256];
            match tokio::time::timeout(Duration::from_millis(1), stream.read(&mut chunk)).await {
                Err(_) => {}
                Ok(Ok(0) | Err(_)) => *open = false,
                Ok(Ok(n)) => {
                    panic!("slowloris: unexpected {:?}", String::from_utf8_lossy(&chunk[..n]))
                }
            }
        }
        if !served_meanwhile {
            assert_eq!(healthz_from(server.addr, [127, 0, 0, 1]).await, 200, "served meanwhile");
            served_meanwhile = true;
        }
        tokio::time::sleep(interval).await;
    }
    assert!(
        open.iter().all(|&o| !o),
        "slowloris: {} of {clients} still open after {CLOSE_WITHIN} × {TIMEOUT_MS} ms, one byte \
         every {interval:?} (the server holds {} connection descriptors)",
        open.iter().filter(|&&o| o).count(),
        server_conn_fds(server.addr.port())
    );
    check_closed_and_bounded(&server, &mut hostile, baseline, since, "slowloris").await;
}

#[tokio::test]
async fn short_bodies_are_closed_at_the_request_deadline() {
    let _serial = SERIAL.lock().await;
    let (server, baseline) = start_warm(hostile_config()).await;
    let since = Instant::now();
    let mut hostile = Vec::new();
    for _ in 0..8 {
        let mut stream = connect_from(server.addr, [127, 0, 0, 1]).await;
        let request =
            "POST /api/v1/rooms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                       Content-Length: 100\r\n\r\n{\"name\":";
        stream.write_all(request.as_bytes()).await.expect("write");
        hostile.push(stream);
    }
    check_closed_and_bounded(&server, &mut hostile, baseline, since, "short body").await;
}

#[tokio::test]
async fn keep_alive_connections_idle_after_a_response_are_closed() {
    let _serial = SERIAL.lock().await;
    let (server, baseline) = start_warm(hostile_config()).await;
    let mut hostile = Vec::new();
    for _ in 0..8 {
        let mut stream = connect_from(server.addr, [127, 0, 0, 1]).await;
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
        assert_eq!(read_response(&mut stream).await.status, 200);
        hostile.push(stream);
    }
    // The idle time starts after the last response.
    let since = Instant::now();
    check_closed_and_bounded(&server, &mut hostile, baseline, since, "keep-alive idle").await;
}

/// A 503 refusal: status, JSON error code, then the server closes the socket.
async fn assert_refused(stream: &mut TcpStream, case: &str) {
    let deadline = Instant::now() + close_limit();
    let bytes = closed_by(stream, deadline).await.unwrap_or_else(|e| panic!("{case}: {e}"));
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("HTTP/1.1 503 "), "{case}: {text:?}");
    assert!(text.contains("\"too_many_connections\""), "{case}: {text:?}");
}

/// Longer deadlines for the cap cases, so that the connections holding the cap are still
/// there when the next one comes.
const CAP_TIMEOUT_MS: u64 = 2_000;

/// Behind a load balancer every client arrives from its address: a trusted proxy is held to
/// the shard's cap only, while other addresses keep theirs.
#[tokio::test]
async fn a_trusted_proxy_is_not_held_to_the_per_address_cap() {
    let _serial = SERIAL.lock().await;
    let per_ip = 4;
    let config = Config {
        handshake_timeout_ms: CAP_TIMEOUT_MS,
        http_connections_per_ip_max: per_ip,
        http_trusted_proxies: "127.0.0.3/32, 10.0.0.0/8".into(),
        ..hostile_config()
    };
    let (server, _) = start_warm(config).await;
    let since = Instant::now();
    let mut holding = Vec::new();
    for _ in 0..3 * per_ip {
        holding.push(connect_from(server.addr, [127, 0, 0, 3]).await);
    }
    assert_eq!(healthz_from(server.addr, [127, 0, 0, 3]).await, 200, "the proxy is served");
    // Accepted in order before that request: a refusal would be waiting to be read by now.
    for (i, stream) in holding.iter_mut().enumerate() {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(20), stream.read(&mut byte)).await;
        assert!(read.is_err(), "held connection #{i} from the proxy was not refused: {read:?}");
    }
    // An address that is not a trusted proxy still has its cap.
    for _ in 0..per_ip {
        holding.push(connect_from(server.addr, [127, 0, 0, 4]).await);
    }
    let mut over = connect_from(server.addr, [127, 0, 0, 4]).await;
    assert_refused(&mut over, "over the per-address cap of an untrusted address").await;
    assert!(since.elapsed() < Duration::from_millis(CAP_TIMEOUT_MS), "checked before the deadline");
}

#[tokio::test]
async fn connections_from_one_address_over_its_cap_get_503() {
    let _serial = SERIAL.lock().await;
    let per_ip = 4;
    let config = Config {
        handshake_timeout_ms: CAP_TIMEOUT_MS,
        http_connections_per_ip_max: per_ip,
        ..hostile_config()
    };
    let (server, baseline) = start_warm(config).await;
    let since = Instant::now();
    let mut holding = Vec::new();
    for _ in 0..per_ip {
        holding.push(connect_from(server.addr, [127, 0, 0, 1]).await);
    }
    let over = 12;
    for i in 0..over {
        let mut stream = connect_from(server.addr, [127, 0, 0, 1]).await;
        assert_refused(&mut stream, &format!("over the per-address cap #{i}")).await;
    }
    // Another address is served meanwhile.
    assert_eq!(healthz_from(server.addr, [127, 0, 0, 2]).await, 200, "another address served");
    assert!(since.elapsed() < Duration::from_millis(CAP_TIMEOUT_MS), "checked before the deadline");
    let held = settle_server_fds(server.addr.port(), per_ip).await;
    assert_eq!(held, per_ip, "the server holds the capped connections only");
    let fds = fd_count();
    assert!(
        fds <= baseline + 2 * per_ip + FD_SLACK,
        "{fds} descriptors open, from {baseline} before {per_ip} held connections"
    );
    // The connections holding the cap are closed at their deadline, and the address is
    // served again.
    for (i, stream) in holding.iter_mut().enumerate() {
        let closed = closed_by(stream, since + Duration::from_millis(CAP_TIMEOUT_MS) * 3).await;
        assert_eq!(closed, Ok(Vec::new()), "holding connection #{i}");
    }
    assert_eq!(settle_server_fds(server.addr.port(), 0).await, 0);
    assert_eq!(healthz_from(server.addr, [127, 0, 0, 1]).await, 200, "served again");
}

#[tokio::test]
async fn http_phase_connections_over_the_shard_cap_get_503() {
    let _serial = SERIAL.lock().await;
    let per_shard = 6;
    let config = Config {
        handshake_timeout_ms: CAP_TIMEOUT_MS,
        http_connections_per_shard_max: per_shard,
        ..hostile_config()
    };
    let (server, baseline) = start_warm(config).await;
    // An upgraded connection is no longer in the HTTP phase: it is served while the cap is
    // full.
    let (mut echo, _) = ws_connect(server.addr, "/echo", Auth::None).await.expect("echo");
    let since = Instant::now();
    let mut holding = Vec::new();
    for i in 0..per_shard {
        // Several source addresses: the shard's cap, not an address's.
        holding.push(connect_from(server.addr, [127, 0, 0, 10 + i as u8]).await);
    }
    let mut refused = connect_from(server.addr, [127, 0, 0, 2]).await;
    assert_refused(&mut refused, "over the shard's HTTP-phase cap").await;
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    echo.send(Message::Text("still here".into())).await.expect("send");
    let answer = tokio::time::timeout(Duration::from_secs(5), echo.next()).await;
    assert!(
        matches!(&answer, Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "still here"),
        "the WebSocket is served meanwhile: {answer:?}"
    );
    assert!(since.elapsed() < Duration::from_millis(CAP_TIMEOUT_MS), "checked before the deadline");
    let held = settle_server_fds(server.addr.port(), per_shard + 1).await;
    assert_eq!(held, per_shard + 1, "the capped connections and the WebSocket");
    let fds = fd_count();
    assert!(
        fds <= baseline + 2 * (per_shard + 1) + 1 + FD_SLACK,
        "{fds} descriptors open, from {baseline} before {per_shard} held connections"
    );
    for (i, stream) in holding.iter_mut().enumerate() {
        let closed = closed_by(stream, since + Duration::from_millis(CAP_TIMEOUT_MS) * 3).await;
        assert_eq!(closed, Ok(Vec::new()), "holding connection #{i}");
    }
    assert_eq!(healthz_from(server.addr, [127, 0, 0, 2]).await, 200, "served again");
    let metrics = call(server.addr, "GET", "/metrics", None, None).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("roomcast_http_refused_shard_cap_total{shard=\"0\"} 1\n"),
        "the refusal is counted: {text}"
    );
    close(echo).await;
}

/// The value of `roomcast_<name>{shard="0"}` in a `/metrics` text.
fn metric(text: &str, name: &str) -> u64 {
    let prefix = format!("roomcast_{name}{{shard=\"0\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// A child process, killed when dropped (also when a test fails).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn out_of_descriptors_accept_backs_off_and_recovers() {
    let _serial = SERIAL.lock().await;
    // The real binary in a process of its own, with room for about 30 connections.
    const FD_LIMIT: usize = 48;
    const DEADLINE_MS: u64 = 1_000;
    let dir = TempDir::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let log_path = dir.0.join("server.log");
    let child = std::process::Command::new("sh")
        .args(["-c", &format!("ulimit -n {FD_LIMIT} && exec \"$@\""), "sh"])
        .arg(env!("CARGO_BIN_EXE_roomcast"))
        .args(["serve", "--listen", &addr.to_string(), "--shards", "1", "--no-pin-cpus"])
        .args(["--jwt-secret", SECRET, "--durability", "none"])
        .args(["--handshake-timeout-ms", &DEADLINE_MS.to_string()])
        .args(["--http-connections-per-ip-max", "1000"])
        .arg("--data-dir")
        .arg(dir.0.join("data"))
        .env("ROOMCAST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).expect("log file"))
        .spawn()
        .expect("spawn the server");
    let child = KillOnDrop(child);
    let fds_of_server =
        |pid: u32| std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count);
    let mut up = false;
    for _ in 0..400 {
        if TcpStream::connect(addr).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(up, "the server listens");
    assert_eq!(healthz_from(addr, [127, 0, 0, 1]).await, 200);
    let resting = fds_of_server(child.0.id());

    let since = Instant::now();
    let mut hostile = Vec::new();
    for _ in 0..60 {
        hostile.push(connect_from(addr, [127, 0, 0, 1]).await);
    }
    // Queued behind the silent connections: served once theirs are closed at the deadline.
    let limit = Duration::from_millis(DEADLINE_MS) * CLOSE_WITHIN;
    let served = tokio::time::timeout(limit, healthz_from(addr, [127, 0, 0, 2])).await;
    assert_eq!(served.ok(), Some(200), "a well-behaved client is served once descriptors free up");
    for (i, stream) in hostile.iter_mut().enumerate() {
        let closed = closed_by(stream, since + limit).await;
        assert_eq!(closed, Ok(Vec::new()), "silent connection #{i}");
    }
    assert!(fds_of_server(child.0.id()) <= FD_LIMIT);
    let metrics = call(addr, "GET", "/metrics", None, None).await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    let (errors, backoffs) =
        (metric(&text, "accept_errors_total"), metric(&text, "accept_backoffs_total"));
    let settled = fds_of_server(child.0.id());
    drop(child);
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let logged = log.matches("accept failed").count();
    // Pauses doubling from 10 ms to 1 s: a few failures per exhaustion, not one per 10 ms, and
    // one log line per streak of failures.
    assert!(logged <= 4, "{logged} 'accept failed' lines logged");
    assert!(errors <= 60, "{errors} failed accepts: the loop spun");
    assert!(
        errors >= 1 && backoffs >= 1,
        "out of descriptors is counted: {errors} errors, {backoffs} pauses"
    );
    eprintln!("out of descriptors: {errors} failed accepts, {backoffs} pauses, {logged} logged");
    assert!(settled <= resting + FD_SLACK, "{settled} descriptors after, {resting} at rest");
}

#[tokio::test]
async fn clients_that_never_read_their_responses_are_closed() {
    let _serial = SERIAL.lock().await;
    let (server, baseline) = start_warm(hostile_config()).await;
    // Pipelined requests whose answers (several MiB) fill both socket buffers when nobody reads
    // them (a small receive buffer on the client's side, the kernel's largest send buffer on
    // the server's).
    let mut hostile = Vec::new();
    for _ in 0..2 {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
        let mut stream = socket.connect(server.addr).await.expect("connect");
        let requests = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(1500);
        stream.write_all(requests.as_bytes()).await.expect("write the requests");
        hostile.push(stream);
    }
    assert_eq!(healthz_from(server.addr, [127, 0, 0, 1]).await, 200, "served meanwhile");
    // Nothing is read for the whole time a response may stall, and a bit more.
    tokio::time::sleep(close_limit()).await;
    let held = settle_server_fds(server.addr.port(), 0).await;
    assert_eq!(held, 0, "the server still holds the sockets of clients that do not read");
    let fds = fd_count();
    assert!(fds <= baseline + hostile.len() + FD_SLACK, "{fds} descriptors, {baseline} before");
    for (i, stream) in hostile.iter_mut().enumerate() {
        // What was sent before the close is still there to read; then the end.
        let mut chunk = vec![0u8; 64 * 1024];
        let ended = loop {
            match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await {
                Ok(Ok(0) | Err(_)) => break true,
                Ok(Ok(_)) => continue,
                Err(_) => break false,
            }
        };
        assert!(ended, "client #{i}: the connection ends");
    }
    assert_eq!(healthz_from(server.addr, [127, 0, 0, 1]).await, 200, "served after");
}
