//! Operating the server: one server per address and per data directory (the real binary, two
//! processes), failed starts that leave nothing behind, the `token` command's errors, the start
//! banner and log output, the per-user connection cap in each dialect's shape, and the HTTP
//! details a user meets first (`GET /`, 405 with `Allow`, one 400 code, the header count).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use support::*;
use tokio_tungstenite::tungstenite::Message;

const BIN: &str = env!("CARGO_BIN_EXE_roomcast");

/// A `roomcast serve` process, killed on drop.
struct Serve {
    child: Child,
    /// Every line it printed on stdout so far arrives here.
    stdout: mpsc::Receiver<String>,
    /// Its stderr, read to the end once it exits (or is killed).
    stderr: std::thread::JoinHandle<String>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    /// Starts `roomcast serve` with `args` (one shard, no pinning, logs at info).
    fn spawn(args: &[&str]) -> Serve {
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(["--shards", "1", "--no-pin-cpus"])
            .args(args)
            .env("ROOMCAST_LOG", "info")
            .env_remove("ROOMCAST_JWT_SECRET")
            .env_remove("ROOMCAST_DATA_DIR")
            .env_remove("ROOMCAST_LISTEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn roomcast serve");
        let out = child.stdout.take().expect("stdout");
        let (tx, stdout) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut err = child.stderr.take().expect("stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            text
        });
        Serve { child, stdout, stderr }
    }

    /// Waits for the banner; returns the address and every banner line.
    fn listening(&mut self) -> (SocketAddr, Vec<String>) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut lines = Vec::new();
        let mut addr = None;
        while Instant::now() < deadline {
            match self.stdout.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("roomcast listening on http://") {
                        let text = rest.split_whitespace().next().expect("address");
                        addr = Some(text.parse().expect("a socket address"));
                    }
                    let last = line.starts_with("serving in the foreground");
                    lines.push(line);
                    if addr.is_some() && (last || lines.len() >= 5) {
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if addr.is_some() {
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        match addr {
            Some(addr) => (addr, lines),
            None => panic!("the server did not start: {lines:?}"),
        }
    }

    /// Waits (at most `secs`) for the process to exit: its status and stderr. `None` if it is
    /// still running then.
    fn exit_within(mut self, secs: u64) -> Option<(std::process::ExitStatus, String)> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let stderr = std::mem::replace(&mut self.stderr, std::thread::spawn(String::new));
                return Some((status, stderr.join().expect("stderr")));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        None
    }
}

/// `GET path` over a fresh connection: status and body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("response");
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// Runs `roomcast token` with `args`.
fn token_cli(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("token")
        .args(args)
        .env_remove("ROOMCAST_JWT_SECRET")
        .env_remove("ROOMCAST_DATA_DIR")
        .env_remove("ROOMCAST_CONFIG")
        .output()
        .expect("run roomcast token")
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

#[test]
fn a_second_server_on_the_same_address_fails_to_start_and_the_first_keeps_serving() {
    let tmp = TempDir::new();
    let first_dir = tmp.0.join("first");
    let mut first = Serve::spawn(&["--listen", "127.0.0.1:0", "--data-dir", path_arg(&first_dir)]);
    let (addr, banner) = first.listening();
    assert_eq!(get(addr, "/healthz").0, 200);

    // Another data directory and another secret, on the same address.
    let second_dir = tmp.0.join("second");
    let second = Serve::spawn(&[
        "--listen",
        &addr.to_string(),
        "--data-dir",
        path_arg(&second_dir),
        "--jwt-secret",
        "another-secret",
    ]);
    let Some((status, stderr)) = second.exit_within(15) else {
        panic!("a second server on {addr} started (it would take half of the connections)");
    };
    assert!(!status.success(), "exit status {status}");
    assert!(
        stderr.contains(&format!("listen on {addr}"))
            && stderr.contains("already served by another roomcast process"),
        "a clear message: {stderr}"
    );
    assert!(!second_dir.exists(), "the failed start left {} behind", second_dir.display());
    for _ in 0..20 {
        assert_eq!(get(addr, "/healthz").0, 200, "the first server still serves");
    }

    // The banner: durability as the flag spells it, this binary's own name, the foreground.
    let banner = banner.join("\n");
    assert!(banner.contains("(durability: fsync)"), "{banner}");
    assert!(banner.contains(&format!("mint a token: {BIN} token --user alice")), "{banner}");
    assert!(!banner.contains("cargo run"), "{banner}");
    assert!(banner.contains("stop with Ctrl-C"), "{banner}");
}

#[test]
fn logs_written_to_a_pipe_have_no_colour_codes() {
    let tmp = TempDir::new();
    let mut server = Serve::spawn(&["--listen", "127.0.0.1:0", "--data-dir", path_arg(&tmp.0)]);
    let (addr, _) = server.listening();
    assert_eq!(get(addr, "/healthz").0, 200);
    // SAFETY: sends SIGTERM to our own child.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let (status, stderr) = server.exit_within(15).expect("SIGTERM stops the server");
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("generated a new JWT secret"), "an info line was logged: {stderr}");
    assert!(!stderr.contains('\u{1b}'), "no ANSI escapes in a pipe: {stderr:?}");
}

#[test]
fn a_data_directory_held_by_a_running_server_is_refused_as_in_use() {
    let tmp = TempDir::new();
    let mut first = Serve::spawn(&["--listen", "127.0.0.1:0", "--data-dir", path_arg(&tmp.0)]);
    let (addr, _) = first.listening();
    let second = Serve::spawn(&["--listen", "127.0.0.1:0", "--data-dir", path_arg(&tmp.0)]);
    let Some((status, stderr)) = second.exit_within(15) else {
        panic!("a second server on the same data directory started");
    };
    assert!(!status.success(), "exit status {status}");
    assert!(
        stderr.contains("is already in use by another roomcast process")
            && stderr.contains(&format!("(pid {})", first.child.id())),
        "a clear message naming the holder: {stderr}"
    );
    assert!(!stderr.contains("corrupt"), "{stderr}");
    assert_eq!(get(addr, "/healthz").0, 200, "the first server still serves");
}

#[test]
fn a_failed_start_leaves_no_new_data_directory_behind() {
    let tmp = TempDir::new();
    // The address is taken by another program: refused before the data directory is made.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let fresh = tmp.0.join("new").join("deeper");
    let start = Serve::spawn(&["--listen", &addr, "--data-dir", path_arg(&fresh)]);
    let (status, stderr) = start.exit_within(15).expect("the start fails");
    assert!(!status.success());
    assert!(stderr.contains("already in use by another process"), "{stderr}");
    assert!(!tmp.0.join("new").exists(), "left {} behind", fresh.display());

    // A failure after the directory was made (and its secret generated): it goes again.
    let missing_key = tmp.0.join("missing.pem");
    let start = Serve::spawn(&[
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        path_arg(&fresh),
        "--jwt-rsa-public-key",
        path_arg(&missing_key),
    ]);
    let (status, stderr) = start.exit_within(15).expect("the start fails");
    assert!(!status.success());
    assert!(stderr.contains("missing.pem"), "{stderr}");
    assert!(!tmp.0.join("new").exists(), "left {} behind", fresh.display());
    assert!(tmp.0.exists(), "an existing parent stays");
}

#[test]
fn token_command_errors_are_clear() {
    let tmp = TempDir::new();
    let empty = tmp.0.join("no-secret-here");
    let out = token_cli(&["--user", "alice", "--data-dir", path_arg(&empty)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "no token from a directory without a secret");
    assert!(out.stdout.is_empty(), "printed a token: {:?}", String::from_utf8_lossy(&out.stdout));
    assert!(stderr.contains("no JWT secret") && stderr.contains("--create-secret"), "{stderr}");
    assert!(!empty.exists(), "nothing created without --create-secret");

    let out = token_cli(&["--user", "alice", "--data-dir", path_arg(&empty), "--create-secret"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(empty.join("jwt_secret").exists());
    let out = token_cli(&["--user", "alice", "--data-dir", path_arg(&empty)]);
    assert!(out.status.success(), "the secret is there now");

    for (args, expected) in [
        (&["--user", "alice", "--ttl", "0"][..], "--ttl must be at least 1"),
        (&["--user", ""][..], "--user must name a user"),
    ] {
        let mut args = args.to_vec();
        args.extend(["--data-dir", path_arg(&empty)]);
        let out = token_cli(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("invalid access token"), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn get_root_describes_the_server_and_its_endpoints() {
    let server = start(1);
    let r = call(server.addr, "GET", "/", None, None).await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    assert!(r.head.to_ascii_lowercase().contains("content-type: application/json"), "{}", r.head);
    let body = r.json();
    assert_eq!(body["name"], "roomcast");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    let endpoints: Vec<(String, String)> = body["websocket"]
        .as_array()
        .expect("websocket endpoints")
        .iter()
        .map(|d| (d["name"].as_str().unwrap().into(), d["endpoint"].as_str().unwrap().into()))
        .collect();
    for (name, path) in
        [("virola", "/api/v1/events"), ("osu", "/notifications"), ("big", "/websocket")]
    {
        assert!(endpoints.contains(&(name.into(), path.into())), "{name}: {endpoints:?}");
    }
    let rest = body["rest"].as_array().expect("rest paths");
    assert!(rest.contains(&json!({"path": "/api/v1/rooms", "methods": ["GET", "POST"]})));
    assert!(rest.contains(&json!({"path": "/healthz", "methods": ["GET"]})));
    assert!(body["docs"].as_str().is_some_and(|d| d.contains("README")), "{body}");
    let r = call(server.addr, "POST", "/", None, None).await;
    assert_eq!(r.status, 405);
}

/// The value of header `name` in a response head.
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

#[tokio::test]
async fn a_405_carries_allow_with_the_paths_methods() {
    let server = start(1);
    let service = service_token();
    for (method, path, allow) in [
        ("PUT", "/api/v1/rooms", "GET, POST"),
        ("POST", "/api/v1/rooms/1", "GET, PATCH, DELETE"),
        ("GET", "/api/v1/rooms/1/members/bob", "PUT, DELETE"),
        ("DELETE", "/api/v1/rooms/1/read", "POST"),
        ("GET", "/api/v1/messages/5", "PATCH, DELETE"),
        ("GET", "/api/v1/sessions/s", "DELETE"),
        ("POST", "/healthz", "GET"),
        ("DELETE", "/metrics", "GET"),
    ] {
        let r = call(server.addr, method, path, Some(&service), None).await;
        assert_eq!(r.status, 405, "{method} {path}");
        assert_eq!(header(&r.head, "allow").as_deref(), Some(allow), "{method} {path}: {}", r.head);
        assert_eq!(r.json()["error"]["code"], "method_not_allowed");
        assert_eq!(r.json()["error"]["message"], format!("allowed methods: {allow}"));
    }
}

#[tokio::test]
async fn http_400s_use_one_error_code_and_the_header_count_limit_is_named() {
    let server = start(1);
    let bad_head = raw_request(server.addr, b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n").await;
    assert_eq!(bad_head.status, 400);
    assert_eq!(bad_head.json()["error"]["code"], "invalid_request");
    let bad_key = raw_request(
        server.addr,
        b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n\r\n",
    )
    .await;
    assert_eq!(bad_key.status, 400);
    assert_eq!(bad_key.json()["error"]["code"], "invalid_request");
    // 65 short headers (well under the 8 KiB head limit) are over the count of 64.
    let many: String = (0..65).map(|i| format!("X-{i}: v\r\n")).collect();
    let r =
        raw_request(server.addr, format!("GET /healthz HTTP/1.1\r\n{many}\r\n").as_bytes()).await;
    assert_eq!(r.status, 431);
    assert!(r.json()["error"]["message"].as_str().is_some_and(|m| m.contains("64")), "{r:?}");
}

/// A raw upgrade request to `path` with a bearer token: the server's HTTP answer.
async fn upgrade_request(addr: SocketAddr, path: &str, token: &str) -> HttpResponse {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: Bearer {token}\r\n\r\n"
    );
    raw_request(addr, request.as_bytes()).await
}

/// The shard-0 value of counter `name` in `/metrics`.
async fn counter(addr: SocketAddr, name: &str) -> u64 {
    let r = call(addr, "GET", "/metrics", None, None).await;
    let text = String::from_utf8_lossy(&r.body).to_string();
    let prefix = format!("roomcast_{name}{{shard=\"0\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix).and_then(|v| v.parse().ok()))
        .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
}

#[tokio::test]
async fn the_per_user_connection_cap_refuses_in_each_dialects_shape_and_counts() {
    // A small cap from the TOML file's key (the same as --connections-per-user-max).
    let mut config = roomcast::config::merge(
        &roomcast::config::ServeArgs::default(),
        Some("connections_per_user_max = 3"),
    )
    .expect("connections_per_user_max is a setting");
    let base = support::config(1);
    config.listen = base.listen;
    config.shards = 1;
    config.pin_cpus = false;
    config.jwt_secret = base.jwt_secret;
    let server = start_with(config);
    let addr = server.addr;
    let token = user_token("1001");

    // Three sockets of one user, in two dialects: the cap counts them all.
    let mut held = vec![virola(addr, "1001").await, virola(addr, "1001").await];
    let (mut osu, _) = ws_connect(addr, "/notifications", Auth::Header(&token)).await.unwrap();
    assert_eq!(next_json(&mut osu).await, json!({"event": "connection.ready"}));
    held.push(osu);

    // Virola: its own error body with 429, before the upgrade.
    let r = upgrade_request(addr, "/api/v1/events", &token).await;
    assert_eq!(r.status, 429, "{}", r.head);
    assert_eq!(r.json()["httpStatusCode"], 429);
    assert!(r.json()["errorText"].as_str().is_some_and(|t| t.contains("too many connections")));

    // BIG: Spring's error body with 429, before the upgrade.
    let r = upgrade_request(addr, "/websocket", &token).await;
    assert_eq!(r.status, 429, "{}", r.head);
    assert_eq!(r.json()["error"], "Too Many Requests");
    assert_eq!(r.json()["status"], 429);
    assert!(r.json()["timestamp"].as_u64().is_some());

    // osu!: the handshake completes, then `{"error":…}` and the connection is dropped.
    let (mut refused, _) = ws_connect(addr, "/notifications", Auth::Header(&token)).await.unwrap();
    let frame = tokio::time::timeout(Duration::from_secs(5), refused.next())
        .await
        .expect("a refusal in time")
        .expect("a frame")
        .expect("a frame");
    assert_eq!(frame, Message::text(r#"{"error":"too many connections"}"#));
    let end = tokio::time::timeout(Duration::from_secs(5), refused.next()).await.expect("dropped");
    assert!(!matches!(end, Some(Ok(Message::Text(_)))), "{end:?}");

    assert_eq!(counter(addr, "user_connection_limit_refused_total").await, 3);

    // Another user is not affected; a closed socket frees its slot.
    close(virola(addr, "1002").await).await;
    close(held.pop().unwrap()).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match ws_connect(addr, "/api/v1/events", Auth::Header(&token)).await {
            Ok((ws, _)) => {
                held.push(ws);
                break;
            }
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the freed slot was not reusable: {e}"),
        }
    }
    drop(held);
}
