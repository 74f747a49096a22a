//! `ingest`: durable-ingest benchmark for roomcast over REST.
//!
//! Creates `--rooms` rooms with a service token, then runs `--posters` closed-loop posters, each
//! on its own keep-alive HTTP/1.1 connection: a poster sends `POST /api/v1/rooms/{id}/messages`
//! and sends the next one when the answer arrives. Every answer that arrives inside the measured
//! window (after `--warmup`, for `--duration`) is counted; a 201 is an acknowledgement and its
//! latency (request about to be written → whole response read) goes into an HDR histogram.
//! Prints one JSON line.
//!
//! Self-contained on purpose (the `loadgen` crate has no library target): a small HTTP/1.1
//! client, HS256 minting and `/proc` readings live here. Posters are spread over `--threads`
//! OS threads, each running a current-thread tokio runtime.

// glibc malloc was ~13 % of the loadgen's samples in a connect storm; the load generator must
// not be the bottleneck.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream as StdTcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use loadgen::http::{parse_head, HttpConn};
use loadgen::procfs::{own_cpu_s, pid_cpu_s};
use loadgen::token::Minter;
use serde::Serialize;

/// Largest latency the histogram holds, in µs (60 s).
const HIST_MAX_US: u64 = 60_000_000;
/// How long after the window closes an unanswered request is given up (counted `unanswered`).
const DRAIN: Duration = Duration::from_secs(2);
#[derive(Parser, Debug)]
#[command(about = "Durable-ingest benchmark: closed-loop REST posters (one JSON line on stdout)")]
struct Args {
    /// Server base URL, e.g. http://127.0.0.1:8080 (loopback only).
    #[arg(long)]
    url: String,
    /// The server's `DATA_DIR/jwt_secret`; its trimmed text is the HS256 key.
    #[arg(long)]
    secret_file: PathBuf,
    /// Concurrent posters, one keep-alive connection and one request in flight each.
    #[arg(long, default_value_t = 10)]
    posters: usize,
    /// Rooms; poster i posts to room i mod R (and is its member).
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Measured window in seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Posting before the measured window, in seconds.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Message text length in bytes.
    #[arg(long, default_value_t = 64)]
    payload_bytes: usize,
    /// OS threads, each with a current-thread runtime (1 or 2 are plenty for 100 connections).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Label copied into the output (the server's `--durability`).
    #[arg(long, default_value = "unknown")]
    durability: String,
    /// Server process id: its CPU over the window is reported.
    #[arg(long)]
    server_pid: Option<u32>,
}

fn main() {
    let args = Args::parse();
    match run(&args) {
        Ok(report) => {
            let line = serde_json::to_string(&report).expect("report serialises");
            let mut out = io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        Err(err) => {
            eprintln!("ingest: {err}");
            std::process::exit(2);
        }
    }
}

#[derive(Serialize)]
struct Report {
    mode: &'static str,
    posters: usize,
    rooms: usize,
    rooms_created: usize,
    durability: String,
    threads: usize,
    payload_bytes: usize,
    setup_s: f64,
    warmup_s: f64,
    duration_s: f64,
    acknowledged: u64,
    acked_per_s: f64,
    latency_us: Latency,
    errors: u64,
    errors_window: u64,
    error_kinds: ErrorKinds,
    loadgen_cpu_s: f64,
    loadgen_cpu_window_s: f64,
    store_window: Option<StoreWindow>,
    server: Option<ServerCpu>,
}

#[derive(Serialize)]
struct Latency {
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    max: u64,
    mean: f64,
}

/// Errors over the whole run (set-up, warm-up, window and drain); `errors_window` in the report
/// counts only the answers that arrived inside the window.
#[derive(Serialize, Default, Clone)]
struct ErrorKinds {
    /// Non-201 answers by status code.
    http_status: BTreeMap<u16, u64>,
    /// Connections lost or unreadable answers (the poster reconnects).
    io: u64,
    /// Failed connects.
    connect: u64,
    /// Rooms that could not be created.
    setup: u64,
    /// Requests still unanswered `DRAIN` after the window closed (the poster gives up).
    unanswered: u64,
    /// Error answers or failures that arrived inside the window.
    #[serde(skip)]
    window: u64,
}

impl ErrorKinds {
    fn total(&self) -> u64 {
        self.http_status.values().sum::<u64>()
            + self.io
            + self.connect
            + self.setup
            + self.unanswered
    }

    fn merge(&mut self, other: &ErrorKinds) {
        for (status, n) in &other.http_status {
            *self.http_status.entry(*status).or_default() += n;
        }
        self.io += other.io;
        self.connect += other.connect;
        self.setup += other.setup;
        self.unanswered += other.unanswered;
        self.window += other.window;
    }
}

/// The store counters of `/metrics` (summed over shards) across the measured window.
#[derive(Serialize)]
struct StoreWindow {
    commits: u64,
    batches: u64,
    batches_per_commit: f64,
}

#[derive(Serialize)]
struct ServerCpu {
    pid: u32,
    cpu_window_s: Option<f64>,
    cpu_us_per_ack: Option<f64>,
}

/// When the window opens and closes, shared by every poster.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    open: Instant,
    close: Instant,
}

/// What one thread's posters measured.
struct Tally {
    hist: Histogram<u64>,
    acked: u64,
    errors: ErrorKinds,
}

fn run(args: &Args) -> Result<Report, String> {
    if args.posters == 0 || args.rooms == 0 {
        return Err("--posters and --rooms must be at least 1".into());
    }
    let addr = parse_url(&args.url)?;
    let secret = std::fs::read_to_string(&args.secret_file)
        .map_err(|e| format!("reading {}: {e}", args.secret_file.display()))?;
    let minter = Minter::new(secret.trim());

    // Set-up: create the rooms, members = the posters that post there.
    let setup_start = Instant::now();
    let service = minter.mint("ingest-backend", Some("service"));
    let mut setup_errors = ErrorKinds::default();
    let room_ids = current_thread().block_on(create_rooms(addr, &service, args, &mut setup_errors));
    let setup_s = setup_start.elapsed().as_secs_f64();
    let rooms_created = room_ids.iter().filter(|id| id.is_some()).count();
    if rooms_created == 0 {
        return Err("no room could be created".into());
    }

    // One poster = (its user token, its room id).
    let posters: Vec<(usize, String, u64)> = (0..args.posters)
        .filter_map(|i| {
            let room = room_ids[i % args.rooms]?;
            Some((i, minter.mint(&poster_name(i), None), room))
        })
        .collect();

    let start = Instant::now() + Duration::from_millis(50);
    let open = start + Duration::from_secs_f64(args.warmup);
    let window = Window { start, open, close: open + Duration::from_secs_f64(args.duration) };
    let threads = args.threads.clamp(1, args.posters);
    let cpu_start = own_cpu_s();
    let mut handles = Vec::new();
    for t in 0..threads {
        let mine: Vec<(usize, String, u64)> =
            posters.iter().filter(|(i, _, _)| i % threads == t).cloned().collect();
        let payload_bytes = args.payload_bytes;
        handles.push(
            std::thread::Builder::new()
                .name(format!("ingest-{t}"))
                .spawn(move || {
                    current_thread().block_on(run_posters(addr, mine, payload_bytes, window))
                })
                .map_err(|e| format!("spawning a thread: {e}"))?,
        );
    }

    // Sample the server and ourselves at the window's edges.
    sleep_until(window.open);
    let cpu_open = own_cpu_s();
    let server_open = args.server_pid.and_then(pid_cpu_s);
    let store_open = store_counters(addr);
    sleep_until(window.close);
    let cpu_close = own_cpu_s();
    let server_close = args.server_pid.and_then(pid_cpu_s);
    let store_close = store_counters(addr);

    let mut hist = new_hist();
    let mut acked = 0;
    let mut errors = setup_errors;
    for handle in handles {
        let tally = handle.join().map_err(|_| "a poster thread panicked".to_string())?;
        hist.add(&tally.hist).map_err(|e| format!("merging histograms: {e}"))?;
        acked += tally.acked;
        errors.merge(&tally.errors);
    }
    let loadgen_cpu_s = own_cpu_s() - cpu_start;

    let store_window = match (store_open, store_close) {
        (Some((c0, b0)), Some((c1, b1))) => {
            let (commits, batches) = (c1.saturating_sub(c0), b1.saturating_sub(b0));
            let batches_per_commit =
                if commits > 0 { batches as f64 / commits as f64 } else { 0.0 };
            Some(StoreWindow { commits, batches, batches_per_commit })
        }
        _ => None,
    };
    let server = args.server_pid.map(|pid| {
        let cpu_window_s = match (server_open, server_close) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        let cpu_us_per_ack = cpu_window_s.filter(|_| acked > 0).map(|s| s * 1e6 / acked as f64);
        ServerCpu { pid, cpu_window_s, cpu_us_per_ack }
    });
    let duration_s = (window.close - window.open).as_secs_f64();
    Ok(Report {
        mode: "ingest",
        posters: args.posters,
        rooms: args.rooms,
        rooms_created,
        durability: args.durability.clone(),
        threads,
        payload_bytes: args.payload_bytes,
        setup_s,
        warmup_s: args.warmup,
        duration_s,
        acknowledged: acked,
        acked_per_s: acked as f64 / duration_s,
        latency_us: Latency {
            p50: hist.value_at_quantile(0.50),
            p90: hist.value_at_quantile(0.90),
            p99: hist.value_at_quantile(0.99),
            p999: hist.value_at_quantile(0.999),
            max: hist.max(),
            mean: hist.mean(),
        },
        errors: errors.total(),
        errors_window: errors.window,
        error_kinds: errors,
        loadgen_cpu_s,
        loadgen_cpu_window_s: cpu_close - cpu_open,
        store_window,
        server,
    })
}

fn poster_name(i: usize) -> String {
    format!("p{i}")
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("histogram bounds")
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// `http://HOST:PORT` → a loopback socket address.
fn parse_url(url: &str) -> Result<SocketAddr, String> {
    let rest = url.strip_prefix("http://").ok_or("--url must start with http://")?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    let addr = hostport
        .to_socket_addrs()
        .map_err(|e| format!("resolving {hostport}: {e}"))?
        .next()
        .ok_or_else(|| format!("{hostport} resolves to nothing"))?;
    if !addr.ip().is_loopback() {
        return Err(format!("{addr} is not a loopback address"));
    }
    Ok(addr)
}

/// Creates the rooms one after the other on one connection; `None` where creation failed.
async fn create_rooms(
    addr: SocketAddr,
    token: &str,
    args: &Args,
    errors: &mut ErrorKinds,
) -> Vec<Option<u64>> {
    let mut conn = None;
    let mut ids = Vec::with_capacity(args.rooms);
    for r in 0..args.rooms {
        let members: Vec<String> = (r..args.posters).step_by(args.rooms).map(poster_name).collect();
        let body = serde_json::json!({ "name": format!("ingest-{r}"), "kind": "group", "members": members })
            .to_string();
        let mut id = None;
        for _attempt in 0..2 {
            if conn.is_none() {
                conn = HttpConn::connect(addr, Ipv4Addr::LOCALHOST).await.ok();
            }
            let Some(c) = conn.as_mut() else { break };
            match c.request("POST", "/api/v1/rooms", token, body.as_bytes()).await {
                Ok((201 | 200, reply)) => {
                    id = room_id(&reply);
                    break;
                }
                Ok((status, reply)) => {
                    eprintln!("create ingest-{r}: HTTP {status}: {}", lossy(&reply));
                    break;
                }
                Err(err) => {
                    eprintln!("create ingest-{r}: {err}");
                    conn = None;
                }
            }
        }
        if id.is_none() {
            errors.setup += 1;
        }
        ids.push(id);
    }
    ids
}

fn room_id(body: &[u8]) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("room")?.get("id")?.as_u64()
}

fn lossy(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
}

/// Runs this thread's posters until the window closes.
async fn run_posters(
    addr: SocketAddr,
    posters: Vec<(usize, String, u64)>,
    payload_bytes: usize,
    window: Window,
) -> Tally {
    let tasks: Vec<_> = posters
        .into_iter()
        .map(|(i, token, room)| tokio::spawn(poster(addr, i, token, room, payload_bytes, window)))
        .collect();
    let mut tally = Tally { hist: new_hist(), acked: 0, errors: ErrorKinds::default() };
    for task in tasks {
        if let Ok(t) = task.await {
            let _ = tally.hist.add(&t.hist);
            tally.acked += t.acked;
            tally.errors.merge(&t.errors);
        }
    }
    tally
}

/// One closed-loop poster: the next request goes out when the previous answer has arrived.
async fn poster(
    addr: SocketAddr,
    index: usize,
    token: String,
    room: u64,
    payload_bytes: usize,
    window: Window,
) -> Tally {
    let mut tally = Tally { hist: new_hist(), acked: 0, errors: ErrorKinds::default() };
    let path = format!("/api/v1/rooms/{room}/messages");
    let mut conn: Option<HttpConn> = None;
    let mut n: u64 = 0;
    let mut diagnostics = 0;
    // Start all posters together (after set-up), not as each task happens to be polled.
    tokio::time::sleep_until(window.start.into()).await;
    while Instant::now() < window.close {
        if conn.is_none() {
            match HttpConn::connect(addr, Ipv4Addr::LOCALHOST).await {
                Ok(c) => conn = Some(c),
                Err(err) => {
                    tally.errors.connect += 1;
                    if diagnostics < 3 {
                        diagnostics += 1;
                        eprintln!("poster {index}: connect: {err}");
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected above");
        let body = message_body(index, n, payload_bytes);
        n += 1;
        let sent = Instant::now();
        let deadline = (window.close + DRAIN).into();
        let Ok(result) =
            tokio::time::timeout_at(deadline, c.request("POST", &path, &token, body.as_bytes()))
                .await
        else {
            tally.errors.unanswered += 1;
            eprintln!("poster {index}: no answer {DRAIN:?} after the window closed; giving up");
            break;
        };
        let done = Instant::now();
        // An answer counts when it arrives inside the window.
        let counted = done >= window.open && done < window.close;
        match result {
            Ok((201, _)) => {
                if counted {
                    tally.acked += 1;
                    let us = (done - sent).as_micros() as u64;
                    tally.hist.saturating_record(us.max(1));
                }
            }
            Ok((status, reply)) => {
                *tally.errors.http_status.entry(status).or_default() += 1;
                tally.errors.window += u64::from(counted);
                if diagnostics < 3 {
                    diagnostics += 1;
                    eprintln!("poster {index}: HTTP {status}: {}", lossy(&reply));
                }
                if status == 503 || status == 429 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            Err(err) => {
                tally.errors.io += 1;
                tally.errors.window += u64::from(counted);
                if diagnostics < 3 {
                    diagnostics += 1;
                    eprintln!("poster {index}: {err}");
                }
                conn = None;
            }
        }
    }
    tally
}

/// `{"text":"p<i> m<n> xxx…"}` with a text of `payload_bytes` bytes (at least the prefix).
fn message_body(index: usize, n: u64, payload_bytes: usize) -> String {
    let mut text = format!("p{index} m{n} ");
    while text.len() < payload_bytes {
        text.push('x');
    }
    format!("{{\"text\":\"{text}\"}}")
}

/// `(roomcast_store_commits_total, roomcast_store_batches_total)` summed over shards, read with
/// a blocking `GET /metrics`; `None` if the server did not answer.
fn store_counters(addr: SocketAddr) -> Option<(u64, u64)> {
    let mut stream = StdTcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    // The server may keep the connection open despite `close`: stop once the body is complete.
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
        if let Ok(Some((_, head_len, body_len))) = parse_head(&raw) {
            if raw.len() >= head_len + body_len {
                text.push_str(&String::from_utf8_lossy(&raw[head_len..head_len + body_len]));
                break;
            }
        }
    }
    let sum = |name: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    if text.is_empty() {
        return None;
    }
    Some((sum("roomcast_store_commits_total"), sum("roomcast_store_batches_total")))
}
