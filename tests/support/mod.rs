//! Test support: start an in-process server on 127.0.0.1:0, mint tokens, a tiny HTTP/1.1
//! client for the REST API, and WebSocket client helpers (tokio-tungstenite).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use roomcast::auth::{mint_hs256, MintClaims};
use roomcast::config::Config;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The HS256 secret every test server uses.
pub const SECRET: &str = "test-secret-for-roomcast-integration-tests";

/// A WebSocket client connection.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A running test server; stops when dropped.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    handle: Option<roomcast::ServerHandle>,
    _dir: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown();
        }
    }
}

impl Server {
    /// Stops the server now (clients see their close frames).
    pub fn stop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown();
        }
    }

    /// Asks the server to stop without waiting.
    pub fn trigger_stop(&self) {
        if let Some(handle) = &self.handle {
            handle.trigger_shutdown();
        }
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// A fresh empty directory.
    pub fn new() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "roomcast-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A test configuration: loopback port 0, no pinning, a known secret.
pub fn config(shards: usize) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        shards,
        pin_cpus: false,
        jwt_secret: Some(SECRET.to_string()),
        echo_endpoint: Some("/echo".to_string()),
        ..Config::default()
    }
}

/// Starts a server with `config`.
pub fn start_with(mut config: Config) -> Server {
    let dir = TempDir::new();
    config.data_dir = dir.0.clone();
    let handle = roomcast::start(config).expect("server starts");
    Server { addr: handle.addr, handle: Some(handle), _dir: dir }
}

/// Starts a server with `shards` shards and default limits.
pub fn start(shards: usize) -> Server {
    start_with(config(shards))
}

/// A user token valid for an hour.
pub fn user_token(user: &str) -> String {
    mint(user, None, 3600)
}

/// A service (backend) token.
pub fn service_token() -> String {
    mint("backend", Some("service"), 3600)
}

/// Any token.
pub fn mint(user: &str, role: Option<&str>, ttl_s: u64) -> String {
    let claims = MintClaims {
        sub: user.to_string(),
        role: role.map(str::to_string),
        sid: None,
        scopes: None,
        ttl_s,
    };
    mint_hs256(SECRET.as_bytes(), &claims).expect("mint")
}

/// An HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Raw head (status line and headers).
    pub head: String,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("body is not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body))
        })
    }
}

/// Sends raw bytes and reads one response (Content-Length framed).
pub async fn raw_request(addr: SocketAddr, bytes: &[u8]) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    read_response(&mut stream).await
}

/// Reads one response from `stream` (a TCP or TLS stream).
pub async fn read_response<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> HttpResponse {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("response in time")
            .expect("read");
        assert!(n > 0, "connection closed before a response: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.expect("read body");
        assert!(n > 0, "closed mid-body");
        body.extend_from_slice(&chunk[..n]);
    }
    HttpResponse { status, head, body }
}

/// One REST call with a bearer token and an optional JSON body.
pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> HttpResponse {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    raw_request(addr, request.as_bytes()).await
}

/// Creates a room as the service with `members`; returns its id.
pub async fn create_room(addr: SocketAddr, name: &str, members: &[&str]) -> u64 {
    let r = call(
        addr,
        "POST",
        "/api/v1/rooms",
        Some(&service_token()),
        Some(serde_json::json!({"name": name, "members": members})),
    )
    .await;
    assert_eq!(r.status, 201, "create room: {:?}", String::from_utf8_lossy(&r.body));
    r.json()["room"]["id"].as_u64().expect("room id")
}

/// Posts a message as `user`; returns the message JSON.
pub async fn post_message(addr: SocketAddr, room: u64, user: &str, text: &str) -> Value {
    let r = call(
        addr,
        "POST",
        &format!("/api/v1/rooms/{room}/messages"),
        Some(&user_token(user)),
        Some(serde_json::json!({"text": text})),
    )
    .await;
    assert_eq!(r.status, 201, "post: {:?}", String::from_utf8_lossy(&r.body));
    r.json()["message"].clone()
}

/// How a WebSocket client authenticates.
pub enum Auth<'a> {
    /// `Authorization: Bearer`.
    Header(&'a str),
    /// `?access_token=`.
    Query(&'a str),
    /// `Cookie: VirolaUserSessionId=`.
    Cookie(&'a str),
    /// Nothing.
    None,
}

/// Opens a WebSocket to `path`; returns it and the shard that accepted it.
pub async fn ws_connect(
    addr: SocketAddr,
    path: &str,
    auth: Auth<'_>,
) -> Result<(Ws, usize), tokio_tungstenite::tungstenite::Error> {
    let url = match auth {
        Auth::Query(token) => format!("ws://{addr}{path}?access_token={token}"),
        _ => format!("ws://{addr}{path}"),
    };
    let mut request = url.into_client_request()?;
    match auth {
        Auth::Header(token) => {
            request
                .headers_mut()
                .insert("Authorization", format!("Bearer {token}").parse().expect("header"));
        }
        Auth::Cookie(token) => {
            request.headers_mut().insert(
                "Cookie",
                format!("other=1; VirolaUserSessionId={token}").parse().expect("header"),
            );
        }
        _ => {}
    }
    let (ws, response) = tokio_tungstenite::connect_async(request).await?;
    let shard = response
        .headers()
        .get("x-roomcast-shard")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok((ws, shard))
}

/// Opens a Virola event stream for `user` (bearer header).
pub async fn virola(addr: SocketAddr, user: &str) -> Ws {
    ws_connect(addr, "/api/v1/events", Auth::Header(&user_token(user)))
        .await
        .expect("virola connect")
        .0
}

/// The next text frame as JSON (pings are answered by the client library), within 5 s.
pub async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("an event in time")
            .expect("stream open")
            .expect("frame");
        match message {
            Message::Text(text) => return serde_json::from_str(&text).expect("JSON event"),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => continue,
        }
    }
}

/// The next event of `kind`, skipping others (e.g. RoomUpdated noise).
pub async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let event = next_json(ws).await;
        if event["type"] == kind {
            return event;
        }
    }
}

/// Asserts no text frame arrives within `ms`.
pub async fn assert_silent(ws: &mut Ws, ms: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return,
            Ok(Some(Ok(Message::Text(text)))) => panic!("unexpected event: {text}"),
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("stream ended: {other:?}"),
        }
    }
}

/// Sends a close and drains until the server's close arrives.
pub async fn close(mut ws: Ws) {
    let _ = ws.send(Message::Close(None)).await;
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(2), ws.next()).await {}
}

/// The texts of one history page (`GET /api/v1/rooms/{room}/messages?{query}`), asserting 200.
pub async fn history_texts(addr: SocketAddr, room: u64, token: &str, query: &str) -> Vec<String> {
    let r = call(addr, "GET", &format!("/api/v1/rooms/{room}/messages?{query}"), Some(token), None)
        .await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    r.json()["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["text"].as_str().expect("text").to_string())
        .collect()
}

/// Every event frame arriving within `ms`.
pub async fn events_within(ws: &mut Ws, ms: u64) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
    let mut events = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return events,
            Ok(Some(Ok(Message::Text(text)))) => {
                let v: Value = serde_json::from_str(&text).expect("JSON");
                if v["type"] == "event" {
                    events.push(v);
                }
            }
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("stream ended: {other:?}"),
        }
    }
}

/// A server process on a fixed data directory.
pub struct Process {
    /// The child process.
    pub child: std::process::Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the built `roomcast` binary as a process of its own (for tests that need more
/// descriptors than one process holds, signals, or a crash): `serve` on a free loopback port
/// with the test secret, `dir` as its data directory, `--no-pin-cpus`, then `args`; warnings
/// only on its stderr, dropped. Waits (10 s) until it listens; dropping the [`Process`] kills it.
pub fn spawn_server_process(dir: &std::path::Path, args: &[&str]) -> Process {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("address");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .args(["serve", "--listen", &addr.to_string(), "--no-pin-cpus"])
        .args(["--jwt-secret", SECRET, "--data-dir"])
        .arg(dir)
        .args(args)
        .env("ROOMCAST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the server starts");
    let mut process = Process { child, addr };
    for _ in 0..400 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return process;
        }
        let exited = process.child.try_wait().expect("the server's status");
        assert!(exited.is_none(), "the server exited at start: {exited:?}");
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("the server did not listen in time");
}

/// A labelled metric of a `/metrics` text, summed over its labels (shards).
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The next server frame off a raw WebSocket stream, within 5 s: (its first byte — FIN, RSV
/// bits and opcode — and its payload).
pub async fn read_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut header = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut header))
        .await
        .expect("frame in time")
        .expect("frame");
    assert_eq!(header[1] & 0x80, 0, "server frames are unmasked");
    let len = match header[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            stream.read_exact(&mut b).await.unwrap();
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            stream.read_exact(&mut b).await.unwrap();
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.unwrap();
    (header[0], payload)
}
