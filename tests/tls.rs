//! TLS on the listener (`--tls-cert`/`--tls-key`), end to end over real rustls clients that
//! trust only a CA this test makes (rcgen): REST, the Virola, osu!, BIG and Rechat sockets
//! (Rechat's long-polling session upgraded on another shard, so the TLS state moves with the
//! handoff), ALPN, large and many frames to a slow reader, a plain-TCP client and a TLS 1.1
//! ClientHello refused cleanly, bad certificate files refused at start, and SIGHUP reloading
//! the certificate of a running `roomcast serve` without dropping its connections.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use roomcast::config::Config;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::Connector;

/// rustls's `ring` provider (the server's too; deprecated only for lacking post-quantum key
/// exchange).
#[allow(deprecated)]
fn ring_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A test certificate authority.
struct Ca {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.key_usages =
            vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("CA cert");
        Ca { der: cert.der().clone(), issuer: rcgen::Issuer::new(params, key) }
    }

    /// A server certificate for localhost and 127.0.0.1: (chain PEM, key PEM).
    fn server(&self) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("server key");
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("params");
        let cert = params.signed_by(&key, &self.issuer).expect("server cert");
        (cert.pem(), key.serialize_pem())
    }

    /// A rustls client config trusting only this CA, offering `alpn`.
    fn client(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).expect("root");
        let provider = ring_provider();
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// Writes a server certificate of `ca` as `cert.pem` and `key.pem` in `dir`.
fn write_server_files(ca: &Ca, dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = ca.server();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert).expect("cert file");
    std::fs::write(&key_path, key).expect("key file");
    (cert_path, key_path)
}

/// A TLS server with `shards` shards: the server, its CA and the directory of its files.
fn tls_server(shards: usize, adjust: impl FnOnce(&mut Config)) -> (Server, Ca, TempDir) {
    let ca = Ca::new("roomcast test CA");
    let files = TempDir::new();
    let (cert, key) = write_server_files(&ca, &files.0);
    let mut config = config(shards);
    config.tls_cert = Some(cert);
    config.tls_key = Some(key);
    adjust(&mut config);
    (start_with(config), ca, files)
}

/// A TLS connection to `addr`, verifying the server as `127.0.0.1`.
async fn tls_connect(addr: SocketAddr, client: Arc<rustls::ClientConfig>) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("127.0.0.1").expect("name");
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio_rustls::TlsConnector::from(client).connect(name, tcp),
    )
    .await
    .expect("handshake in time")
    .expect("TLS handshake")
}

/// One REST call over TLS (HTTP/1.1, `Connection: close`).
async fn https(
    addr: SocketAddr,
    ca: &Ca,
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
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let mut stream = tls_connect(addr, ca.client(&[b"http/1.1"])).await;
    stream.write_all(request.as_bytes()).await.expect("write");
    read_response(&mut stream).await
}

async fn create_room_tls(addr: SocketAddr, ca: &Ca, members: &[&str]) -> u64 {
    let body = json!({"name": "tls", "members": members});
    let r = https(addr, ca, "POST", "/api/v1/rooms", Some(&service_token()), Some(body)).await;
    assert_eq!(r.status, 201, "{:?}", String::from_utf8_lossy(&r.body));
    r.json()["room"]["id"].as_u64().expect("room id")
}

async fn post_tls(addr: SocketAddr, ca: &Ca, room: u64, user: &str, text: &str) -> Value {
    let path = format!("/api/v1/rooms/{room}/messages");
    let body = json!({"text": text});
    let r = https(addr, ca, "POST", &path, Some(&user_token(user)), Some(body)).await;
    assert_eq!(r.status, 201, "{:?}", String::from_utf8_lossy(&r.body));
    r.json()["message"].clone()
}

/// A wss:// socket to `path` with a bearer token; and the shard that took it.
async fn wss(addr: SocketAddr, ca: &Ca, path: &str, token: Option<&str>) -> (Ws, usize) {
    wss_with(addr, ca.client(&[b"http/1.1"]), path, token, None).await
}

async fn wss_with(
    addr: SocketAddr,
    client: Arc<rustls::ClientConfig>,
    path: &str,
    token: Option<&str>,
    recv_buffer: Option<u32>,
) -> (Ws, usize) {
    let mut request =
        format!("wss://127.0.0.1:{}{path}", addr.port()).into_client_request().expect("request");
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().expect("header");
        request.headers_mut().insert("Authorization", value);
    }
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    if let Some(bytes) = recv_buffer {
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
    }
    let tcp = socket.connect(addr).await.expect("connect");
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    let (ws, response) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::client_async_tls_with_config(
            request,
            tcp,
            Some(config),
            Some(Connector::Rustls(client)),
        ),
    )
    .await
    .expect("upgrade in time")
    .expect("wss upgrade");
    let shard = response
        .headers()
        .get("x-roomcast-shard")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (ws, shard)
}

async fn next_text(ws: &mut Ws) -> String {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame in time")
            .expect("stream open")
            .expect("frame");
        match message {
            Message::Text(text) => return text.to_string(),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => continue,
        }
    }
}

/// The first text frame containing `needle`.
async fn text_containing(ws: &mut Ws, needle: &str) -> String {
    loop {
        let text = next_text(ws).await;
        if text.contains(needle) {
            return text;
        }
    }
}

#[tokio::test]
async fn rest_and_every_dialect_work_over_tls() {
    let (server, ca, _files) = tls_server(2, |_| {});
    let addr = server.addr;
    let health = https(addr, &ca, "GET", "/healthz", None, None).await;
    assert_eq!(health.status, 200);
    let room = create_room_tls(addr, &ca, &["1001", "2002", "3003", "4004"]).await;

    // Virola.
    let (mut virola, _) = wss(addr, &ca, "/api/v1/events", Some(&user_token("1001"))).await;
    // osu!: connection.ready, then chat.start.
    let (mut osu, _) = wss(addr, &ca, "/notifications", Some(&user_token("2002"))).await;
    assert_eq!(
        serde_json::from_str::<Value>(&next_text(&mut osu).await).unwrap()["event"],
        "connection.ready"
    );
    osu.send(Message::text(r#"{"event":"chat.start"}"#)).await.unwrap();
    // BIG: a short frame is a ping.
    let (mut big, _) = wss(addr, &ca, "/websocket", Some(&user_token("3003"))).await;
    big.send(Message::text("ping")).await.unwrap();
    assert_eq!(next_text(&mut big).await, r#"{"event":"pong"}"#);
    // Rechat, Engine.IO v4 by hand: open, connect the namespace, authenticate.
    let (mut rechat, _) = wss(addr, &ca, "/socket.io/?EIO=4&transport=websocket", None).await;
    assert!(next_text(&mut rechat).await.starts_with("0{"), "open packet");
    rechat.send(Message::text("40")).await.unwrap();
    assert!(next_text(&mut rechat).await.starts_with("40"), "namespace connected");
    let auth = format!(r#"421["Authenticate","{}"]"#, user_token("4004"));
    rechat.send(Message::text(auth)).await.unwrap();
    let ack = text_containing(&mut rechat, "431[").await;
    assert!(ack.starts_with("431[null"), "{ack}");
    // Let osu!'s chat.start land before the message.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let posted = post_tls(addr, &ca, room, "1001", "over tls").await;
    let event = text_containing(&mut virola, "TextMessagesCreated").await;
    assert!(event.contains("over tls"), "{event}");
    let event = text_containing(&mut osu, "chat.message.new").await;
    let event: Value = serde_json::from_str(&event).unwrap();
    assert_eq!(event["data"]["messages"][0]["content"], "over tls");
    assert_eq!(event["data"]["messages"][0]["message_id"], posted["id"]);
    let event = text_containing(&mut big, r#""eventType":"new""#).await;
    assert!(event.contains("over tls"), "{event}");
    let event = text_containing(&mut rechat, "over tls").await;
    assert!(event.starts_with("42"), "{event}");

    // And back: a Rechat message reaches the Virola socket.
    let send = format!(
        r#"422["Message.Send","{room}",{{"comment":"from rechat","message_type":"TopLevel"}}]"#
    );
    rechat.send(Message::text(send)).await.unwrap();
    let event = text_containing(&mut virola, "from rechat").await;
    assert!(event.contains("TextMessagesCreated"), "{event}");
    for ws in [virola, osu, big, rechat] {
        close(ws).await;
    }
}

#[tokio::test]
async fn rechat_polling_upgrades_over_tls_on_the_sessions_shard() {
    let (server, ca, _files) = tls_server(2, |_| {});
    let addr = server.addr;
    // Sessions live on the shard that opened them; an upgrade accepted by the other shard is
    // handed there with its TLS state. Some of the attempts land on the other shard.
    for attempt in 0..6 {
        let r = https(addr, &ca, "GET", "/socket.io/?EIO=4&transport=polling", None, None).await;
        assert_eq!(r.status, 200);
        let body = String::from_utf8(r.body).unwrap();
        let open: Value = serde_json::from_str(body.strip_prefix('0').expect("open")).unwrap();
        let sid = open["sid"].as_str().expect("sid").to_string();
        let path = format!("/socket.io/?EIO=4&transport=websocket&sid={sid}");
        let (mut ws, _) = wss(addr, &ca, &path, None).await;
        ws.send(Message::text("2probe")).await.unwrap();
        assert_eq!(next_text(&mut ws).await, "3probe", "attempt {attempt}");
        ws.send(Message::text("5")).await.unwrap();
        ws.send(Message::text("40")).await.unwrap();
        assert!(text_containing(&mut ws, "40").await.starts_with("40"), "attempt {attempt}");
        close(ws).await;
    }
    let metrics = https(addr, &ca, "GET", "/metrics", None, None).await;
    let text = String::from_utf8(metrics.body).unwrap();
    let handed: u64 = text
        .lines()
        .filter(|l| l.starts_with("roomcast_upgrades_handed_off_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(handed > 0, "no upgrade was handed off in 6 attempts:\n{text}");
}

#[tokio::test]
async fn alpn_is_http_1_1_and_tls_1_2_works_too() {
    let (server, ca, _files) = tls_server(1, |_| {});
    let stream = tls_connect(server.addr, ca.client(&[b"h2", b"http/1.1"])).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(stream.get_ref().1.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
    drop(stream);
    // A TLS 1.2-only client.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der.clone()).unwrap();
    let provider = ring_provider();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut stream = tls_connect(server.addr, Arc::new(config)).await;
    assert_eq!(stream.get_ref().1.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut stream).await.status, 200);
}

/// Reads until the server closes (EOF or reset) within 10 s; what it sent.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("the server closes the connection")
        {
            Ok(0) | Err(_) => return seen,
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A TLS 1.1 ClientHello (no supported_versions extension), record version TLS 1.0.
fn tls_1_1_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02]; // legacy_version: TLS 1.1
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // no session id
                  // Suites the server has (ECDHE ECDSA/RSA with AES-128-GCM): only the version is wrong.
    body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x2b, 0xc0, 0x2f]);
    body.extend_from_slice(&[0x01, 0x00]); // null compression
                                           // signature_algorithms (ECDSA P-256 SHA-256, RSA PKCS#1 SHA-256), supported_groups
                                           // (P-256), ec_point_formats (uncompressed).
    let extensions: [u8; 24] = [
        0x00, 0x0d, 0x00, 0x06, 0x00, 0x04, 0x04, 0x03, 0x04, 0x01, // signature_algorithms
        0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x17, // supported_groups
        0x00, 0x0b, 0x00, 0x02, 0x01, 0x00, // ec_point_formats
    ];
    body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    body.extend_from_slice(&extensions);
    let mut handshake = vec![0x01, 0x00];
    handshake.extend_from_slice(&(body.len() as u16).to_be_bytes());
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[tokio::test]
async fn plain_tcp_and_tls_1_1_clients_are_refused_cleanly() {
    let (server, ca, _files) = tls_server(1, |_| {});
    // Plain HTTP to the TLS listener: no HTTP answer, the connection ends.
    let mut plain = TcpStream::connect(server.addr).await.unwrap();
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let answer = read_until_closed(&mut plain).await;
    assert!(!answer.starts_with(b"HTTP/"), "{:?}", String::from_utf8_lossy(&answer));
    // TLS 1.1: a protocol_version alert (21 = alert, 2 = fatal, 70 = protocol_version), then
    // the end.
    let mut old = TcpStream::connect(server.addr).await.unwrap();
    old.write_all(&tls_1_1_client_hello()).await.unwrap();
    let answer = read_until_closed(&mut old).await;
    assert!(answer.len() >= 7, "an alert: {answer:?}");
    assert_eq!((answer[0], answer[5], answer[6]), (21, 2, 70), "{answer:?}");
    // The server goes on serving TLS clients.
    assert_eq!(https(server.addr, &ca, "GET", "/healthz", None, None).await.status, 200);
    let metrics = https(server.addr, &ca, "GET", "/metrics", None, None).await;
    let text = String::from_utf8(metrics.body).unwrap();
    let errors: u64 = text
        .lines()
        .filter(|l| l.starts_with("roomcast_tls_errors_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(errors, 2, "{text}");
}

#[tokio::test]
async fn large_frames_and_a_slow_reader_get_every_frame_in_order_over_tls() {
    let (server, ca, _files) = tls_server(2, |c| {
        c.frame_bytes_max = 1 << 20;
        c.message_bytes_max = 1 << 20;
        c.stored_message_bytes_max = 256 << 10;
        c.history_page_bytes_max = 1 << 20;
        c.rest_body_bytes_max = 1 << 20;
        c.outbound_bytes_max = 32 << 20;
        c.actions_burst = 1000;
    });
    let addr = server.addr;
    // A 200 KiB message through the echo endpoint: decrypted in many records, sent back in
    // many.
    let (mut echo, _) = wss(addr, &ca, "/echo", None).await;
    let big: String = (0..200 * 1024).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    echo.send(Message::text(big.clone())).await.unwrap();
    assert_eq!(next_text(&mut echo).await, big);
    close(echo).await;

    // A reader with a small receive buffer that reads nothing while 40 messages of 200 KiB
    // (8 MB, more than the kernel buffers hold) are broadcast, then reads them all.
    let room = create_room_tls(addr, &ca, &["slow", "poster"]).await;
    let (mut slow, _) = wss_with(
        addr,
        ca.client(&[b"http/1.1"]),
        "/api/v1/events",
        Some(&user_token("slow")),
        Some(4096),
    )
    .await;
    let text = |i: usize| format!("{i:04}:{}", &big[..200 * 1024 - 5]);
    for i in 0..40 {
        post_tls(addr, &ca, room, "poster", &text(i)).await;
    }
    for i in 0..40 {
        let event = text_containing(&mut slow, "TextMessagesCreated").await;
        let prefix = format!("{i:04}:");
        assert!(event.contains(&prefix), "message {i} out of order: {}", &event[..200]);
        assert!(event.contains(&text(i)), "message {i} whole");
    }
    let metrics = https(addr, &ca, "GET", "/metrics", None, None).await;
    let body = String::from_utf8(metrics.body).unwrap();
    let blocked: u64 = body
        .lines()
        .filter(|l| l.starts_with("roomcast_write_blocked_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(blocked > 0, "the reader never made the writer wait:\n{body}");
    close(slow).await;
}

#[test]
fn bad_certificate_files_stop_the_start_with_a_message() {
    let ca = Ca::new("roomcast test CA");
    let other = Ca::new("another CA");
    let dir = TempDir::new();
    let (cert, key) = write_server_files(&ca, &dir.0);
    let start = |cert: &Path, key: &Path| {
        let mut config = config(1);
        config.tls_cert = Some(cert.to_path_buf());
        config.tls_key = Some(key.to_path_buf());
        let data = TempDir::new();
        config.data_dir = data.0.join("data");
        let started = roomcast::start(config);
        assert!(!data.0.join("data").exists(), "nothing created on a refused start");
        match started {
            Ok(_) => panic!("started with bad TLS files"),
            Err(e) => e,
        }
    };
    let missing = dir.0.join("missing.pem");
    let e = start(&missing, &key);
    assert!(e.contains("tls_cert") && e.contains("missing.pem"), "{e}");
    let garbage = dir.0.join("garbage.pem");
    std::fs::write(&garbage, "not a PEM file\n").unwrap();
    let e = start(&garbage, &key);
    assert!(e.contains("no CERTIFICATE"), "{e}");
    let e = start(&cert, &garbage);
    assert!(e.contains("tls_key") && e.contains("private key"), "{e}");
    // A key of another certificate.
    let other_dir = TempDir::new();
    let (_, other_key) = write_server_files(&other, &other_dir.0);
    let e = start(&cert, &other_key);
    assert!(e.contains("does not match"), "{e}");
}

/// Starts `roomcast serve` over TLS with the files in `dir`; waits until it answers.
async fn serve_process(dir: &Path, ca: &Ca) -> Process {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .args(["serve", "--listen", &addr.to_string(), "--shards", "2", "--no-pin-cpus"])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--jwt-secret", SECRET])
        .arg("--tls-cert")
        .arg(dir.join("cert.pem"))
        .arg("--tls-key")
        .arg(dir.join("key.pem"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn roomcast");
    let process = Process { child, addr };
    for _ in 0..100 {
        if let Ok(tcp) = TcpStream::connect(addr).await {
            let name = ServerName::try_from("127.0.0.1").unwrap();
            let connector = tokio_rustls::TlsConnector::from(ca.client(&[]));
            if connector.connect(name, tcp).await.is_ok() {
                return process;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("roomcast did not start");
}

/// Whether a client trusting only `ca` completes a handshake with `addr`.
async fn trusted_by(addr: SocketAddr, ca: &Ca) -> bool {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let connector = tokio_rustls::TlsConnector::from(ca.client(&[]));
    tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .expect("handshake ends in time")
        .is_ok()
}

fn sighup(process: &Process) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &process.child.id().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_keeps_open_sockets() {
    let dir = TempDir::new();
    let (old_ca, new_ca) = (Ca::new("old CA"), Ca::new("new CA"));
    write_server_files(&old_ca, &dir.0);
    let server = serve_process(&dir.0, &old_ca).await;
    let addr = server.addr;
    let room = create_room_tls(addr, &old_ca, &["alice", "bob"]).await;
    let (mut alice, _) = wss(addr, &old_ca, "/api/v1/events", Some(&user_token("alice"))).await;
    post_tls(addr, &old_ca, room, "bob", "before reload").await;
    assert!(text_containing(&mut alice, "TextMessagesCreated").await.contains("before reload"));

    // New files, then SIGHUP: new connections get the new certificate.
    write_server_files(&new_ca, &dir.0);
    sighup(&server);
    let mut reloaded = false;
    for _ in 0..100 {
        if trusted_by(addr, &new_ca).await {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reloaded, "the new certificate is served after SIGHUP");
    assert!(!trusted_by(addr, &old_ca).await, "the old certificate is no longer served");
    // The socket opened before the reload is still up and receives.
    post_tls(addr, &new_ca, room, "bob", "after reload").await;
    assert!(text_containing(&mut alice, "TextMessagesCreated").await.contains("after reload"));

    // A bad file: the reload fails and the last good certificate stays.
    std::fs::write(dir.0.join("cert.pem"), "garbage").unwrap();
    sighup(&server);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(trusted_by(addr, &new_ca).await, "a failed reload keeps the certificate");
    post_tls(addr, &new_ca, room, "bob", "after a failed reload").await;
    let event = text_containing(&mut alice, "TextMessagesCreated").await;
    assert!(event.contains("after a failed reload"), "{event}");
    close(alice).await;
}
