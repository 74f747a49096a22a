//! Operating the server: one server per address and per data directory (the real binary, two
//! processes), failed starts that leave nothing behind, the `token` command's errors, the start
//! banner and log output, the per-user connection cap in each dialect's shape, and the HTTP
//! details a user meets first (`GET /` as JSON or the web console, the console's files and its
//! token minting, 405 with `Allow`, one 400 code, the header count).

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
    /// Starts `roomcast serve` with `args` (one shard unless they say, no pinning, logs at
    /// info).
    fn spawn(args: &[&str]) -> Serve {
        Serve::spawn_with_env(args, &[])
    }

    /// [`Serve::spawn`] with extra environment variables.
    fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> Serve {
        let shards: &[&str] = if args.contains(&"--shards") { &[] } else { &["--shards", "1"] };
        let mut child = Command::new(BIN)
            .envs(env.iter().copied())
            .arg("serve")
            .args(shards)
            .arg("--no-pin-cpus")
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
    for (name, path) in [
        ("virola", "/api/v1/events"),
        ("osu", "/notifications"),
        ("big", "/websocket"),
        ("rechat", "/socket.io/"),
    ] {
        assert!(endpoints.contains(&(name.into(), path.into())), "{name}: {endpoints:?}");
    }
    let rest = body["rest"].as_array().expect("rest paths");
    assert!(rest.contains(&json!({"path": "/api/v1/rooms", "methods": ["GET", "POST"]})));
    assert!(rest.contains(&json!({"path": "/healthz", "methods": ["GET"]})));
    assert!(body["docs"].as_str().is_some_and(|d| d.contains("README")), "{body}");
    let r = call(server.addr, "POST", "/", None, None).await;
    assert_eq!(r.status, 405);
}

/// A GET of `path` with `Accept: accept`.
async fn get_accepting(addr: SocketAddr, path: &str, accept: &str) -> HttpResponse {
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\n\r\n");
    raw_request(addr, request.as_bytes()).await
}

#[tokio::test]
async fn get_root_serves_the_console_to_browsers_and_json_to_other_clients() {
    let server = start(1);
    let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let r = get_accepting(server.addr, "/", browser).await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(header(&r.head, "content-type").as_deref(), Some("text/html; charset=utf-8"));
    let csp = header(&r.head, "content-security-policy").expect("a CSP");
    assert_eq!(csp, roomcast::rest::console::CSP);
    for directive in ["default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(header(&r.head, "x-content-type-options").as_deref(), Some("nosniff"));
    let page = String::from_utf8_lossy(&r.body);
    assert!(page.contains(r#"<script src="/console/app.js""#), "{page}");
    assert!(!page.contains("<script>") && !page.contains("style="), "no inline script or style");

    // Other clients keep the JSON index (curl's */*, an API client's application/json).
    for accept in ["*/*", "application/json"] {
        let r = get_accepting(server.addr, "/", accept).await;
        assert_eq!(header(&r.head, "content-type").as_deref(), Some("application/json"));
        assert_eq!(r.json()["name"], "roomcast");
        assert_eq!(r.json()["console"], json!({"path": "/", "mint": false}));
        assert_eq!(header(&r.head, "vary").as_deref(), Some("Accept"));
    }

    for (path, content_type) in [
        ("/console/index.html", "text/html; charset=utf-8"),
        ("/console/app.js", "text/javascript; charset=utf-8"),
        ("/console/style.css", "text/css; charset=utf-8"),
        ("/console/icon.svg", "image/svg+xml"),
    ] {
        let r = call(server.addr, "GET", path, None, None).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(header(&r.head, "content-type").as_deref(), Some(content_type), "{path}");
        assert_eq!(header(&r.head, "content-security-policy").as_deref(), Some(csp.as_str()));
        assert!(!r.body.is_empty(), "{path}");
    }
    let r = call(server.addr, "GET", "/console/secret.txt", None, None).await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (404, Some("not_found")));
    let r = call(server.addr, "POST", "/console/app.js", None, None).await;
    assert_eq!((r.status, header(&r.head, "allow").as_deref()), (405, Some("GET")));
}

#[tokio::test]
async fn the_console_mints_tokens_only_when_the_server_allows_it() {
    let off = start(1);
    let r = call(off.addr, "POST", "/console/token", None, Some(json!({"user": "alice"}))).await;
    assert_eq!(r.status, 404, "{r:?}");
    assert!(r.json()["error"]["message"].as_str().is_some_and(|m| m.contains("--console-mint")));
    let r = call(off.addr, "GET", "/console/token", None, None).await;
    assert_eq!((r.status, header(&r.head, "allow").as_deref()), (405, Some("POST")));

    let on = start_with(roomcast::config::Config {
        console_mint: true,
        actions_per_second: 1,
        actions_burst: 3,
        ..config(1)
    });
    let index = call(on.addr, "GET", "/", None, None).await.json();
    assert_eq!(index["console"], json!({"path": "/", "mint": true}));
    let r = call(on.addr, "POST", "/console/token", None, Some(json!({"user": "alice"}))).await;
    assert_eq!(r.status, 201, "{r:?}");
    let minted = r.json();
    assert_eq!(
        (minted["user"].as_str(), minted["expires_in"].as_u64()),
        (Some("alice"), Some(3600))
    );
    let token = minted["token"].as_str().expect("a token").to_string();

    // The token is alice's, on REST and on a socket opened the browser's way (query).
    let (mut ws, _) = ws_connect(on.addr, "/api/v1/events", Auth::Query(&token)).await.unwrap();
    let r = call(on.addr, "POST", "/api/v1/rooms", Some(&token), Some(json!({"name": "c"}))).await;
    assert_eq!(r.status, 201, "{r:?}");
    let room = r.json()["room"].clone();
    assert_eq!(room["members"], json!([{"user": "alice", "role": "owner"}]));
    assert_eq!(next_of(&mut ws, "RoomCreated").await["data"]["room"]["roomId"], room["id"]);
    let rooms = call(on.addr, "GET", "/api/v1/rooms", Some(&token), None).await;
    assert_eq!(rooms.json()["rooms"][0]["id"], room["id"]);
    close(ws).await;

    // The user id rule applies, and each mint is one of the user's rate-limited actions (one
    // shard: the buckets are per shard).
    for body in [json!({"user": "a/b"}), json!({"user": ""}), json!({}), json!({"user": [1]})] {
        let r = call(on.addr, "POST", "/console/token", None, Some(body.clone())).await;
        assert_eq!(r.status, 400, "{body}: {r:?}");
    }
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = call(on.addr, "POST", "/console/token", None, Some(json!({"user": "bob"}))).await;
        statuses.push(r.status);
    }
    assert_eq!(statuses[..3], [201, 201, 201]);
    assert_eq!(statuses[3], 429, "{statuses:?}");
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

/// Posts `text` to `room` as `user` over a fresh connection: the status, or `None` when the
/// server did not answer (refused, reset, closed).
async fn try_post(addr: SocketAddr, room: u64, user: &str, text: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = json!({ "text": text }).to_string();
    let request = format!(
        "POST /api/v1/rooms/{room}/messages HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        user_token(user),
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut response))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&response);
    text.split(' ').nth(1).and_then(|s| s.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_every_acknowledged_message_to_its_subscribers_then_closes_1001() {
    let tmp = TempDir::new();
    let dir = path_arg(&tmp.0).to_string();
    let args = ["--listen", "127.0.0.1:0", "--data-dir", &dir, "--jwt-secret", SECRET];
    let mut server = Serve::spawn(&[&args[..], &["--shards", "2", "--drain-ms", "10000"]].concat());
    let (addr, _) = server.listening();
    let room = create_room(addr, "drained", &["alice", "bob"]).await;
    let mut bob = virola(addr, "bob").await;
    // Bob's subscription is in place (it is made asynchronously after the 101) once a message
    // reaches him: post until one does.
    'subscribed: for attempt in 0..50 {
        post_message(addr, room, "alice", &format!("ready-{attempt}")).await;
        while let Ok(frame) = tokio::time::timeout(Duration::from_millis(200), bob.next()).await {
            if let Some(Ok(Message::Text(text))) = frame {
                if text.contains("TextMessagesCreated") {
                    break 'subscribed;
                }
            }
        }
        assert!(attempt < 49, "bob never received a message");
    }

    // Publishers post until the server stops answering; each remembers what was acknowledged.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut publishers = Vec::new();
    for p in 0..4 {
        let acked = acked.clone();
        publishers.push(tokio::spawn(async move {
            for n in 0.. {
                let text = format!("drain-{p}-{n}");
                match try_post(addr, room, "alice", &text).await {
                    Some(201) => acked.lock().unwrap().push(text),
                    Some(503) => continue,
                    _ => return,
                }
            }
        }));
    }
    while acked.lock().unwrap().len() < 200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // SAFETY: sends SIGTERM to our own child.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };

    // Bob gets every frame queued for him, then the close 1001.
    let mut received = std::collections::HashSet::new();
    let close = loop {
        let frame = tokio::time::timeout(Duration::from_secs(20), bob.next())
            .await
            .expect("frames or the close within the drain");
        match frame {
            Some(Ok(Message::Text(text))) => {
                let event: serde_json::Value = serde_json::from_str(&text).expect("JSON");
                if event["type"] == "TextMessagesCreated" {
                    for m in event["data"]["messages"].as_array().into_iter().flatten() {
                        received.insert(m["text"].as_str().unwrap_or_default().to_string());
                    }
                }
            }
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            other => panic!("the socket ended without a close frame: {other:?}"),
        }
    };
    assert_eq!(close, Some(1001));
    for publisher in publishers {
        publisher.await.expect("publisher");
    }
    let acked = acked.lock().unwrap().clone();
    let missing: Vec<&String> = acked.iter().filter(|t| !received.contains(*t)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged not delivered: {missing:?}",
        missing.len(),
        acked.len()
    );
    let drain_started = Instant::now();
    let (status, stderr) =
        tokio::task::spawn_blocking(move || server.exit_within(20)).await.unwrap().expect("exits");
    eprintln!("the server exited {:?} after bob's close", drain_started.elapsed());
    assert!(status.success(), "{status}: {stderr}");

    // After a restart every acknowledged message is in the room's history.
    let mut again = Serve::spawn(&[&args[..], &["--shards", "2"]].concat());
    let (addr, _) = again.listening();
    let mut stored = std::collections::HashSet::new();
    let mut after = 0u64;
    loop {
        let path = format!("/api/v1/rooms/{room}/messages?limit=100&after={after}");
        let r = call(addr, "GET", &path, Some(&user_token("bob")), None).await;
        assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
        let page = r.json()["messages"].as_array().cloned().unwrap_or_default();
        if page.is_empty() {
            break;
        }
        for m in &page {
            stored.insert(m["text"].as_str().unwrap_or_default().to_string());
        }
        match page.iter().filter_map(|m| m["id"].as_u64()).max() {
            Some(last) if last > after => after = last,
            _ => break,
        }
    }
    let lost: Vec<&String> = acked.iter().filter(|t| !stored.contains(*t)).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    drop(again);
}

#[test]
fn systemd_hears_ready_watchdog_and_stopping() {
    let tmp = TempDir::new();
    let socket_path = tmp.0.join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("bind");
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let data = tmp.0.join("data");
    let server = Serve::spawn_with_env(
        &["--listen", "127.0.0.1:0", "--data-dir", path_arg(&data), "--shards", "2"],
        &[("NOTIFY_SOCKET", path_arg(&socket_path)), ("WATCHDOG_USEC", "2000000")],
    );
    let mut heard = Vec::new();
    let next = || {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).expect("a notification in time");
        String::from_utf8_lossy(&buf[..n]).trim_end().to_string()
    };
    // READY=1 first (every shard listens), then the watchdog, fed while the loops run.
    heard.push(next());
    assert_eq!(heard[0], "READY=1");
    for _ in 0..3 {
        heard.push(next());
        assert_eq!(heard.last().map(String::as_str), Some("WATCHDOG=1"), "{heard:?}");
    }
    // SAFETY: sends SIGTERM to our own child.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    while heard.last().map(String::as_str) != Some("STOPPING=1") {
        heard.push(next());
    }
    let (status, stderr) = server.exit_within(15).expect("the drain ends");
    assert!(status.success(), "{status}: {stderr}");
}
