//! `soak`: connection churn against roomcast for a long run, to see whether the server leaks.
//!
//! Four kinds of clients run side by side on one current-thread runtime, all on loopback with
//! source addresses spread over 127.0.0.0/8:
//!
//! - **churn**: `--rate` new authenticated WebSocket connections per second to
//!   `GET /api/v1/events` (user `u<k>`, a member of room `k mod --rooms`), each living a random
//!   time in `[--life-min-ms, --life-max-ms]` and reading its events; a `--post-share` of them
//!   post one message to their room through REST (a fresh HTTP connection) while connected. At
//!   the end of its life a connection sends a close frame and waits for the answer, or (a
//!   `--abrupt-share` of them) just drops the socket.
//! - **slow readers** (`--slow-readers` at once): upgrade by hand with a small `SO_RCVBUF`,
//!   join the hot room (`--hot-rate` messages/s of `--hot-payload-bytes` posted by one
//!   keep-alive poster) and stop reading for `--slow-stall-s`; then read what is there and
//!   report how the server ended the connection, and start over. (The server's 1008 close
//!   frame waits behind the full socket, which it drops after its closing deadline, so such a
//!   reader mostly sees an EOF with no close frame; the server counts the slow-consumer close.)
//! - **silent TCP** (`--silent-tcp` at once): connect and say nothing; the server must close
//!   them by its handshake deadline.
//! - **silent WebSockets** (`--silent-ws` at once): upgrade by hand and never answer a ping; the
//!   raw bytes are read (pings counted, never answered) until the server closes them.
//!
//! At most `--max-open` sockets are open at once (new churn connections are skipped above it,
//! counted in `skipped_cap`); the run stops by itself after `--duration` s plus a short grace.
//! A progress line (JSON) goes to stderr every `--report-s`, one summary line to stdout.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::cell::Cell;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use loadgen::conn::{source_ip, tcp_connect_with, ws_connect};
use loadgen::http::HttpConn;
use loadgen::procfs::own_cpu_s;
use loadgen::token::Minter;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing churn connection waits for the server's close answer.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// A silent socket not closed by the server after this long is given up (and counted).
const SILENT_GIVE_UP: Duration = Duration::from_secs(150);
/// How long a slow reader reads once its stall is over, looking for the server's close.
const DRAIN_FOR: Duration = Duration::from_secs(5);

#[derive(Parser, Debug)]
#[command(about = "Connection churn, slow readers and silent sockets against roomcast")]
struct Args {
    /// roomcast base URL (loopback only), e.g. http://127.0.0.1:8080
    #[arg(long)]
    url: String,
    /// The server's DATA_DIR/jwt_secret.
    #[arg(long)]
    secret_file: PathBuf,
    /// Seconds of churn; the run then closes what is open and stops.
    #[arg(long, default_value_t = 600.0)]
    duration: f64,
    /// New churn connections per second.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    #[arg(long, default_value_t = 500)]
    life_min_ms: u64,
    #[arg(long, default_value_t = 4500)]
    life_max_ms: u64,
    /// Rooms the churn users are spread over.
    #[arg(long, default_value_t = 100)]
    rooms: usize,
    /// Distinct churn users (`u0`…); user `u<k>` is in room `k mod rooms`.
    #[arg(long, default_value_t = 5000)]
    users: usize,
    /// Share of churn connections that post one message through REST while connected.
    #[arg(long, default_value_t = 0.2)]
    post_share: f64,
    /// Share of churn connections that drop the socket instead of a close handshake.
    #[arg(long, default_value_t = 0.25)]
    abrupt_share: f64,
    #[arg(long, default_value_t = 64)]
    payload_bytes: usize,
    #[arg(long, default_value_t = 8)]
    slow_readers: usize,
    #[arg(long, default_value_t = 60)]
    slow_stall_s: u64,
    /// SO_RCVBUF of a slow reader's socket.
    #[arg(long, default_value_t = 4096)]
    slow_rcvbuf: usize,
    #[arg(long, default_value_t = 20.0)]
    hot_rate: f64,
    #[arg(long, default_value_t = 16384)]
    hot_payload_bytes: usize,
    #[arg(long, default_value_t = 50)]
    silent_tcp: usize,
    #[arg(long, default_value_t = 50)]
    silent_ws: usize,
    /// Most sockets open at once (all kinds).
    #[arg(long, default_value_t = 15_000)]
    max_open: usize,
    /// Source addresses 127.0.0.2… the churn rotates over.
    #[arg(long, default_value_t = 250)]
    source_ips: usize,
    #[arg(long, default_value_t = 10.0)]
    report_s: f64,
}

macro_rules! stats {
    ($($name:ident),* $(,)?) => {
        #[derive(Default)]
        struct Stats { $($name: Cell<u64>,)* }
        impl Stats {
            fn json(&self) -> serde_json::Value {
                let mut m = serde_json::Map::new();
                $(m.insert(stringify!($name).into(), self.$name.get().into());)*
                serde_json::Value::Object(m)
            }
        }
    };
}

stats! {
    opened, connect_errors, skipped_cap, closed_clean, closed_abrupt, closed_by_server,
    close_timeouts, events, posts_ok, posts_failed, hot_posts_ok, hot_posts_failed,
    slow_sessions, slow_closed_1008, slow_closed_other, slow_closed_no_frame, slow_not_closed,
    slow_errors, silent_tcp_sessions, silent_tcp_closed, silent_tcp_not_closed, silent_ws_sessions,
    silent_ws_closed, silent_ws_not_closed, silent_ws_pings, silent_errors,
}

fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

struct Ctx {
    args: Args,
    addr: SocketAddr,
    minter: Minter,
    rooms: Vec<u64>,
    hot_room: u64,
    stats: Stats,
    open: Cell<usize>,
    max_open: Cell<usize>,
    rng: Cell<u64>,
    serial: Cell<u64>,
    stop: Cell<bool>,
    start: Instant,
}

impl Ctx {
    fn rand(&self) -> u64 {
        // xorshift64*
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&self) -> f64 {
        (self.rand() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// A fresh source address, rotating over `--source-ips` addresses.
    fn src(&self) -> std::net::Ipv4Addr {
        let n = self.serial.get();
        self.serial.set(n + 1);
        source_ip((n % self.args.source_ips.max(1) as u64) as usize, 1)
    }
    fn enter(&self) -> bool {
        if self.open.get() >= self.args.max_open {
            return false;
        }
        self.open.set(self.open.get() + 1);
        self.max_open.set(self.max_open.get().max(self.open.get()));
        true
    }
    fn leave(&self) {
        self.open.set(self.open.get() - 1);
    }
}

fn main() {
    let args = Args::parse();
    let base = args.url.trim_end_matches('/');
    let hostport = base.strip_prefix("http://").unwrap_or(base);
    let addr = hostport.to_socket_addrs().ok().and_then(|mut a| a.next()).expect("--url host:port");
    assert!(addr.ip().is_loopback(), "only loopback targets are accepted");
    assert!(args.max_open <= 15_000, "--max-open is capped at 15 000");
    let secret = std::fs::read_to_string(&args.secret_file).expect("read --secret-file");
    let minter = Minter::new(&secret);

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let t0 = Instant::now();
        let (rooms, hot_room) = create_rooms(addr, &minter, &args).await;
        let setup_s = t0.elapsed().as_secs_f64();
        let ctx = Rc::new(Ctx {
            args,
            addr,
            minter,
            rooms,
            hot_room,
            stats: Stats::default(),
            open: Cell::new(0),
            max_open: Cell::new(0),
            rng: Cell::new(0x9E37_79B9_7F4A_7C15),
            serial: Cell::new(0),
            stop: Cell::new(false),
            start: Instant::now(),
        });
        run(ctx.clone()).await;
        let out = serde_json::json!({
            "setup_s": setup_s,
            "duration_s": ctx.args.duration,
            "rate": ctx.args.rate,
            "achieved_rate": ctx.stats.opened.get() as f64 / ctx.args.duration,
            "max_open": ctx.max_open.get(),
            "open_at_end": ctx.open.get(),
            "loadgen_cpu_s": own_cpu_s(),
            "stats": ctx.stats.json(),
        });
        println!("{out}");
    });
}

/// Creates `--rooms` churn rooms (user `u<k>` in room `k mod rooms`) and the hot room (the
/// slow readers and the hot poster).
async fn create_rooms(addr: SocketAddr, minter: &Minter, args: &Args) -> (Vec<u64>, u64) {
    let token = minter.mint("soak-service", Some("service"));
    let mut conn = HttpConn::connect(addr, source_ip(0, 1)).await.expect("connect for set-up");
    let mut ids = Vec::new();
    for r in 0..=args.rooms {
        let (name, members): (String, Vec<String>) = if r < args.rooms {
            let members = (r..args.users).step_by(args.rooms.max(1)).map(|k| format!("u{k}"));
            (format!("soak-{r}"), members.collect())
        } else {
            let mut m: Vec<String> = (0..args.slow_readers).map(|j| format!("slow{j}")).collect();
            m.push("hot-poster".into());
            ("soak-hot".into(), m)
        };
        let body = serde_json::json!({ "name": name, "kind": "group", "members": members });
        let (status, resp) = conn
            .request("POST", "/api/v1/rooms", &token, body.to_string().as_bytes())
            .await
            .expect("create room");
        assert!((200..300).contains(&status), "create {name}: HTTP {status}");
        let value: serde_json::Value = serde_json::from_slice(&resp).expect("room JSON");
        ids.push(value["room"]["id"].as_u64().expect("room.id"));
    }
    let hot = ids.pop().expect("hot room");
    (ids, hot)
}

async fn run(ctx: Rc<Ctx>) {
    let mut tasks = Vec::new();
    for j in 0..ctx.args.slow_readers {
        tasks.push(tokio::task::spawn_local(slow_reader(ctx.clone(), j)));
    }
    if ctx.args.slow_readers > 0 {
        tasks.push(tokio::task::spawn_local(hot_poster(ctx.clone())));
    }
    for j in 0..ctx.args.silent_tcp {
        tasks.push(tokio::task::spawn_local(silent_tcp(ctx.clone(), j)));
    }
    for j in 0..ctx.args.silent_ws {
        tasks.push(tokio::task::spawn_local(silent_ws(ctx.clone(), j)));
    }
    tasks.push(tokio::task::spawn_local(reporter(ctx.clone())));

    // Churn: spawn what is due every 10 ms (never more than 1 s worth at once).
    let duration = Duration::from_secs_f64(ctx.args.duration);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut spawned: u64 = 0;
    loop {
        tick.tick().await;
        let elapsed = ctx.start.elapsed();
        if elapsed >= duration {
            break;
        }
        let due = (elapsed.as_secs_f64() * ctx.args.rate) as u64;
        let burst = (ctx.args.rate as u64).max(1);
        if due > spawned + burst {
            spawned = due - burst;
        }
        while spawned < due {
            let i = spawned;
            spawned += 1;
            if ctx.enter() {
                tokio::task::spawn_local(churn_one(ctx.clone(), i));
            } else {
                bump(&ctx.stats.skipped_cap);
            }
        }
    }
    ctx.stop.set(true);
    // Let the churn connections live out their lives (≤ life_max) and close; the long-lived
    // slow and silent sockets are dropped when the runtime ends.
    let grace = Duration::from_millis(ctx.args.life_max_ms) + CLOSE_WAIT + Duration::from_secs(1);
    tokio::time::sleep(grace).await;
    report(&ctx);
    for t in tasks {
        t.abort();
    }
}

fn report(ctx: &Ctx) {
    let line = serde_json::json!({
        "t_s": (ctx.start.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        "open": ctx.open.get(),
        "loadgen_cpu_s": (own_cpu_s() * 10.0).round() / 10.0,
        "stats": ctx.stats.json(),
    });
    eprintln!("{line}");
}

async fn reporter(ctx: Rc<Ctx>) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(ctx.args.report_s));
    tick.tick().await;
    loop {
        tick.tick().await;
        report(&ctx);
    }
}

async fn churn_one(ctx: Rc<Ctx>, i: u64) {
    churn_life(&ctx, i).await;
    ctx.leave();
}

async fn churn_life(ctx: &Rc<Ctx>, i: u64) {
    let a = &ctx.args;
    let user = (i % a.users as u64) as usize;
    let room = ctx.rooms[user % ctx.rooms.len()];
    let src = ctx.src();
    let token = ctx.minter.mint(&format!("u{user}"), None);
    let span = a.life_max_ms.saturating_sub(a.life_min_ms);
    let life = Duration::from_millis(a.life_min_ms + ctx.rand() % (span + 1));
    let posts = ctx.unit() < a.post_share;
    let abrupt = ctx.unit() < a.abrupt_share;
    let ws = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        ws_connect(ctx.addr, src, "/api/v1/events", Some(&token)),
    )
    .await
    {
        Ok(Ok(ws)) => ws,
        Ok(Err(err)) => return connect_failed(ctx, &err),
        Err(_) => return connect_failed(ctx, "timed out"),
    };
    bump(&ctx.stats.opened);
    let deadline = tokio::time::Instant::now() + life;
    if posts {
        // Post a little into the life, while connected, on a fresh HTTP connection.
        let ctx2 = ctx.clone();
        let delay = life / 4;
        tokio::task::spawn_local(async move {
            tokio::time::sleep(delay).await;
            post_once(&ctx2, src, room, &token, i).await;
        });
    }
    let (mut sink, mut stream) = ws.split();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(_))) => bump(&ctx.stats.events),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    bump(&ctx.stats.closed_by_server);
                    return;
                }
                Some(Ok(_)) => {}
            },
        }
    }
    if abrupt {
        bump(&ctx.stats.closed_abrupt);
        return; // dropping both halves closes the socket without a close frame
    }
    let closing = async {
        sink.send(Message::Close(None)).await.ok()?;
        while let Some(Ok(_)) = stream.next().await {}
        Some(())
    };
    match tokio::time::timeout(CLOSE_WAIT, closing).await {
        Ok(_) => bump(&ctx.stats.closed_clean),
        Err(_) => bump(&ctx.stats.close_timeouts),
    }
}

fn connect_failed(ctx: &Ctx, err: &str) {
    let n = ctx.stats.connect_errors.get();
    bump(&ctx.stats.connect_errors);
    if n < 5 || n.is_power_of_two() {
        eprintln!("connect error #{}: {err}", n + 1);
    }
}

async fn post_once(ctx: &Ctx, src: std::net::Ipv4Addr, room: u64, token: &str, i: u64) {
    if !ctx.enter() {
        bump(&ctx.stats.skipped_cap);
        return;
    }
    let body = message_body(&format!("c{i}"), ctx.args.payload_bytes);
    let path = format!("/api/v1/rooms/{room}/messages");
    let result = tokio::time::timeout(CONNECT_TIMEOUT, async {
        let mut c = HttpConn::connect(ctx.addr, src).await?;
        c.request("POST", &path, token, body.as_bytes()).await
    })
    .await;
    ctx.leave();
    match result {
        Ok(Ok((status, _))) if (200..300).contains(&status) => bump(&ctx.stats.posts_ok),
        other => {
            let n = ctx.stats.posts_failed.get();
            bump(&ctx.stats.posts_failed);
            if n < 5 {
                match other {
                    Ok(Ok((status, body))) => {
                        eprintln!("post: HTTP {status}: {}", String::from_utf8_lossy(&body))
                    }
                    Ok(Err(err)) => eprintln!("post: {err}"),
                    Err(_) => eprintln!("post: timed out"),
                }
            }
        }
    }
}

fn message_body(prefix: &str, payload_bytes: usize) -> String {
    let mut text = format!("{prefix} ");
    while text.len() < payload_bytes {
        text.push('x');
    }
    format!("{{\"text\":\"{text}\"}}")
}

/// One keep-alive connection posting `--hot-rate` large messages per second to the hot room.
async fn hot_poster(ctx: Rc<Ctx>) {
    let token = ctx.minter.mint("hot-poster", None);
    let path = format!("/api/v1/rooms/{}/messages", ctx.hot_room);
    let body = message_body("hot", ctx.args.hot_payload_bytes);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / ctx.args.hot_rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut conn: Option<HttpConn> = None;
    while !ctx.stop.get() {
        tick.tick().await;
        if conn.is_none() {
            conn = HttpConn::connect(ctx.addr, source_ip(1, 1)).await.ok();
        }
        let Some(c) = conn.as_mut() else {
            bump(&ctx.stats.hot_posts_failed);
            continue;
        };
        match c.request("POST", &path, &token, body.as_bytes()).await {
            Ok((status, _)) if (200..300).contains(&status) => bump(&ctx.stats.hot_posts_ok),
            Ok(_) => bump(&ctx.stats.hot_posts_failed),
            Err(_) => {
                // A keep-alive connection the server closed: reopen (not counted as a failure
                // unless it fails again).
                conn = None;
            }
        }
    }
}

/// Upgrades to a WebSocket by hand (so nothing answers pings): the stream and any bytes read
/// past the 101 response head.
async fn raw_upgrade(
    ctx: &Ctx,
    user: &str,
    rcvbuf: Option<usize>,
) -> Result<(TcpStream, Vec<u8>), String> {
    let token = ctx.minter.mint(user, None);
    let mut s = tcp_connect_with(ctx.addr, ctx.src(), rcvbuf).await.map_err(|e| e.to_string())?;
    let req = format!(
        "GET /api/v1/events HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: Bearer {token}\r\n\r\n",
        ctx.addr
    );
    s.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed during upgrade".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if !buf.starts_with(b"HTTP/1.1 101") {
                return Err(String::from_utf8_lossy(&buf[..end]).into_owned());
            }
            return Ok((s, buf.split_off(end + 4)));
        }
        if buf.len() > 16384 {
            return Err("upgrade response too long".into());
        }
    }
}

/// What a raw reader saw of the server's frames.
#[derive(Default)]
struct Frames {
    pings: u64,
    close_code: Option<u16>,
    bytes: u64,
}

impl Frames {
    /// Consumes the complete frames at the front of `buf`.
    fn scan(&mut self, buf: &mut Vec<u8>) {
        let mut at = 0;
        loop {
            let b = &buf[at..];
            if b.len() < 2 {
                break;
            }
            let opcode = b[0] & 0x0f;
            let masked = b[1] & 0x80 != 0;
            let (len, mut head): (usize, usize) = match b[1] & 0x7f {
                126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
                127 if b.len() >= 10 => {
                    (u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize, 10)
                }
                126 | 127 => break,
                n => (n as usize, 2),
            };
            if masked {
                head += 4;
            }
            if b.len() < head.saturating_add(len) {
                break;
            }
            match opcode {
                0x9 => self.pings += 1,
                0x8 if len >= 2 => {
                    self.close_code = Some(u16::from_be_bytes([b[head], b[head + 1]]))
                }
                0x8 => self.close_code = Some(1005),
                _ => {}
            }
            at += head + len;
        }
        self.bytes += at as u64;
        buf.drain(..at);
    }
}

/// Reads raw frames until EOF or `limit`: `Ok(true)` at EOF (the server closed), `Ok(false)`
/// when the limit passed first.
async fn read_until_eof(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    frames: &mut Frames,
    limit: Duration,
) -> std::io::Result<bool> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut chunk = vec![0u8; 65536];
    frames.scan(buf);
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Err(_) => return Ok(false),
            Ok(Ok(0)) => return Ok(true),
            Ok(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                frames.scan(buf);
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(true),
            Ok(Err(e)) => return Err(e),
        }
    }
}

async fn slow_reader(ctx: Rc<Ctx>, j: usize) {
    let user = format!("slow{j}");
    // Stagger the starts over the stall so closes spread out.
    let stall = Duration::from_secs(ctx.args.slow_stall_s);
    tokio::time::sleep(stall.mul_f64(j as f64 / ctx.args.slow_readers.max(1) as f64)).await;
    while !ctx.stop.get() {
        if !ctx.enter() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let done = slow_session(&ctx, &user, stall).await;
        ctx.leave();
        if done.is_err() {
            bump(&ctx.stats.slow_errors);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

async fn slow_session(ctx: &Ctx, user: &str, stall: Duration) -> Result<(), String> {
    let (mut s, mut buf) = raw_upgrade(ctx, user, Some(ctx.args.slow_rcvbuf)).await?;
    bump(&ctx.stats.slow_sessions);
    tokio::time::sleep(stall).await; // read nothing: the server's queue for us fills up
    let mut frames = Frames::default();
    let closed = read_until_eof(&mut s, &mut buf, &mut frames, DRAIN_FOR)
        .await
        .map_err(|e| e.to_string())?;
    let counter = match (closed, frames.close_code) {
        (false, _) => &ctx.stats.slow_not_closed,
        (true, Some(1008)) => &ctx.stats.slow_closed_1008,
        (true, Some(_)) => &ctx.stats.slow_closed_other,
        (true, None) => &ctx.stats.slow_closed_no_frame,
    };
    bump(counter);
    Ok(())
}

async fn silent_tcp(ctx: Rc<Ctx>, j: usize) {
    // Stagger the starts over the handshake deadline.
    tokio::time::sleep(Duration::from_millis(200 * j as u64)).await;
    while !ctx.stop.get() {
        if !ctx.enter() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let result = async {
            let mut s = tcp_connect_with(ctx.addr, ctx.src(), None).await?;
            bump(&ctx.stats.silent_tcp_sessions);
            read_until_eof(&mut s, &mut Vec::new(), &mut Frames::default(), SILENT_GIVE_UP).await
        }
        .await;
        ctx.leave();
        match result {
            Ok(true) => bump(&ctx.stats.silent_tcp_closed),
            Ok(false) => bump(&ctx.stats.silent_tcp_not_closed),
            Err(_) => {
                bump(&ctx.stats.silent_errors);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn silent_ws(ctx: Rc<Ctx>, j: usize) {
    let user = format!("silent{j}");
    tokio::time::sleep(Duration::from_millis(1200 * j as u64)).await;
    while !ctx.stop.get() {
        if !ctx.enter() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let result = async {
            let (mut s, mut buf) = raw_upgrade(&ctx, &user, None).await?;
            bump(&ctx.stats.silent_ws_sessions);
            let mut frames = Frames::default();
            let closed = read_until_eof(&mut s, &mut buf, &mut frames, SILENT_GIVE_UP)
                .await
                .map_err(|e| e.to_string())?;
            ctx.stats.silent_ws_pings.set(ctx.stats.silent_ws_pings.get() + frames.pings);
            Ok::<bool, String>(closed)
        }
        .await;
        ctx.leave();
        match result {
            Ok(true) => bump(&ctx.stats.silent_ws_closed),
            Ok(false) => bump(&ctx.stats.silent_ws_not_closed),
            Err(err) => {
                if ctx.stats.silent_errors.get() < 3 {
                    eprintln!("silent ws: {err}");
                }
                bump(&ctx.stats.silent_errors);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
