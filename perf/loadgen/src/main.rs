//! `loadgen`: an open-loop WebSocket fan-out load generator for roomcast and its peer servers.
//!
//! It opens N client WebSockets spread over R rooms (and over many loopback source addresses),
//! publishes stamped messages on a fixed schedule, times every delivery into HDR histograms (one
//! per thread, merged at the end), and prints one JSON line with rates, latency percentiles,
//! error counts and CPU use; with `--server-pid` it also samples the server's CPU and RSS and the
//! kernel's TCP memory at the edges of the measured window.
//!
//! Layout: `shared` (counters, window, phase signal), `worker` (one thread's connections and
//! publishers), `conn` (sockets and handshakes), `http` (tiny HTTP/1.1 client), `setup`
//! (roomcast rooms), `token` (JWTs), `stamp` (timestamps in message text), `rechat` (the Rechat
//! target's Socket.IO wire), `procfs` (readings).

// glibc malloc was ~13 % of the loadgen's samples in a connect storm; the load generator must
// not be the bottleneck.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use loadgen::{conn, http, procfs, token};

mod rechat;
mod setup;
mod shared;
mod stamp;
mod worker;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use serde::Serialize;

use crate::conn::source_ip;
use crate::shared::{Phase, Shared};
use crate::worker::{
    Config, ConnSpec, Hist, HttpTarget, HttpWorkerSpec, Publisher, Schedule, Target, ThreadPlan,
};

/// The most connections one process may hold (the open-file limit here is 20 000).
const MAX_CONNECTIONS: usize = 15_000;

#[derive(Parser, Debug)]
#[command(about = "Open-loop WebSocket fan-out load generator (one JSON line on stdout)")]
struct Args {
    /// Server protocol.
    #[arg(long, value_enum, default_value = "plain")]
    target: Target,
    /// Server base URL, e.g. ws://127.0.0.1:9001 or http://127.0.0.1:8080 (loopback only).
    #[arg(long)]
    url: String,
    /// WebSocket connections to open (at most 15 000).
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Rooms; connection i joins room i mod R.
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Publishing members per room.
    #[arg(long, default_value_t = 1)]
    publishers_per_room: usize,
    /// Total publish rate in messages per second, open loop.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Several total rates, run one after the other on the same connections (overrides
    /// --rate); one JSON line per step.
    #[arg(long, value_delimiter = ',')]
    rate_steps: Vec<f64>,
    /// With --rate-steps: stop after the first step whose p99 exceeds this many milliseconds
    /// or that delivers less than 95 % of what it should.
    #[arg(long)]
    stop_p99_ms: Option<f64>,
    /// Measured window in seconds (with --idle: how long to hold the connections).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Publishing before the measured window, in seconds.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Message text size in bytes (at least the stamp).
    #[arg(long, default_value_t = 64)]
    payload_bytes: usize,
    /// Only connect and hold: report the connect rate and errors.
    #[arg(long)]
    idle: bool,
    /// Load-generator threads (one current-thread runtime each).
    #[arg(long, default_value_t = default_threads())]
    threads: usize,
    /// roomcast: file holding the JWT secret (the server's DATA_DIR/jwt_secret).
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// roomcast: the JWT secret itself.
    #[arg(long)]
    secret: Option<String>,
    /// Rechat: authenticate with the token in the v4 CONNECT packet (`connect`, what
    /// `socket.io-client` 4 sends for `io(url, {auth: {token}})`) or with the `Authenticate`
    /// event (`event`, what Rechat's app calls).
    #[arg(long, value_enum, default_value = "connect")]
    rechat_auth: rechat::Auth,
    /// roomcast: HTTP keep-alive connections used by the publishers in total.
    #[arg(long, default_value_t = 32)]
    http_conns: usize,
    /// Connections per loopback source address (127.0.0.2, 127.0.0.3, …).
    #[arg(long, default_value_t = 5000)]
    conns_per_ip: usize,
    /// Connection attempts in flight at once, over all threads.
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Longest wait after the window for in-flight deliveries, in seconds.
    #[arg(long, default_value_t = 3.0)]
    drain: f64,
    /// Seconds to wait once connected before the first rate step (Rechat: the connect phase's
    /// presence events drain first).
    #[arg(long, default_value_t = 0.0)]
    pause: f64,
    /// With --idle: seconds to let the server settle before sampling its RSS.
    #[arg(long, default_value_t = 1.0)]
    settle: f64,
    /// Server process to sample (CPU from /proc/PID/stat, RSS from /proc/PID/status).
    #[arg(long)]
    server_pid: Option<u32>,
    /// More processes whose CPU counts as the server's (a cluster's other nodes and its NATS
    /// server), comma-separated.
    #[arg(long, value_delimiter = ',')]
    also_pids: Vec<u32>,
    /// WebSocket connections go to these base URLs in turn (connection i to the i mod k-th),
    /// instead of `--url` (which keeps the REST setup and publishing): members of one room on
    /// several nodes of a cluster. Comma-separated, loopback only.
    #[arg(long, value_delimiter = ',')]
    ws_url: Vec<String>,
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[derive(Serialize)]
struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

impl Latency {
    /// The percentiles of a histogram of nanoseconds, in µs.
    fn of(hist: &hdrhistogram::Histogram<u64>) -> Latency {
        let us = |q: f64| round(hist.value_at_quantile(q) as f64 / 1000.0, 1);
        Latency {
            p50: us(0.5),
            p90: us(0.9),
            p99: us(0.99),
            p999: us(0.999),
            max: round(hist.max() as f64 / 1000.0, 1),
        }
    }
}

#[derive(Serialize)]
struct ErrorKinds {
    connect: u64,
    closed: u64,
    http_status: u64,
    http_io: u64,
    send: u64,
    setup: u64,
    /// Rechat: `Message.Send` acks carrying an error object.
    ack: u64,
}

#[derive(Serialize, Default, Clone)]
struct ServerStats {
    pid: u32,
    rss_before_kb: Option<u64>,
    rss_connected_kb: Option<u64>,
    rss_end_kb: Option<u64>,
    cpu_window_s: Option<f64>,
    cpu_us_per_delivery: Option<f64>,
    /// Server CPU (utime+stime) from the first connect until all were connected.
    cpu_connect_s: Option<f64>,
    tcp_mem_pages_before: Option<u64>,
    tcp_mem_pages_connected: Option<u64>,
}

#[derive(Serialize)]
struct Report {
    target: Target,
    mode: &'static str,
    step: usize,
    connections: usize,
    rooms: usize,
    publishers: usize,
    connected: u64,
    setup_s: f64,
    connect_s: f64,
    connect_rate: f64,
    duration_s: f64,
    target_rate: f64,
    achieved_rate: f64,
    sent_in_window: u64,
    deliveries: u64,
    deliveries_per_s: f64,
    expected_deliveries: u64,
    delivery_ratio: f64,
    /// Frames received twice by a connection (see `Shared::duplicates`), over the run so far.
    duplicate_deliveries: u64,
    latency_us: Latency,
    /// Rechat: `Message.Send` written → its ack read, for messages sent inside the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    ack_latency_us: Option<Latency>,
    publish_lag: u64,
    publish_skipped: u64,
    http_reopened: u64,
    errors: u64,
    error_kinds: ErrorKinds,
    loadgen_cpu_s: f64,
    loadgen_cpu_window_s: f64,
    /// The loadgen's own CPU from the first connect until all were connected.
    loadgen_cpu_connect_s: f64,
    threads: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<ServerStats>,
}

fn main() {
    let args = Args::parse();
    if let Err(err) = run(args) {
        eprintln!("loadgen: {err}");
        std::process::exit(2);
    }
}

fn run(args: Args) -> Result<(), String> {
    let addr = parse_addr(&args.url)?;
    if !addr.ip().is_loopback() {
        return Err(format!("{addr} is not a loopback address; refusing"));
    }
    if args.connections > MAX_CONNECTIONS {
        return Err(format!("at most {MAX_CONNECTIONS} connections per process"));
    }
    let n = args.connections;
    let rooms = args.rooms.clamp(1, n.max(1));
    let threads = args.threads.max(1);
    let shared = Arc::new(Shared::new());
    let mut server = args.server_pid.map(|pid| ServerStats {
        pid,
        rss_before_kb: procfs::pid_rss_kb(pid),
        tcp_mem_pages_before: procfs::tcp_mem_pages(),
        ..ServerStats::default()
    });

    let room_size = |r: usize| (n / rooms + usize::from(r < n % rooms)) as u64;
    let is_publisher = |c: usize| !args.idle && c / rooms < args.publishers_per_room;
    let publishers = (0..n).filter(|&c| is_publisher(c)).count();
    let mut plans: Vec<ThreadPlan> = (0..threads).map(|_| ThreadPlan::default()).collect();
    let setup_start = Instant::now();

    // Publishers on their own sockets (plain, Rechat): equal shares of the rate, phases spread.
    let mut pub_index = 0usize;
    let mut ws_publisher = |c: usize, room_id: u64| {
        is_publisher(c).then(|| {
            let schedule = Schedule {
                share: 1.0 / publishers as f64,
                phase: pub_index as f64 / publishers as f64,
            };
            pub_index += 1;
            Publisher { schedule, room_size: room_size(c % rooms), room_id }
        })
    };
    let ws_addrs: Vec<SocketAddr> =
        args.ws_url.iter().map(|u| parse_addr(u)).collect::<Result<_, _>>()?;
    if ws_addrs.iter().any(|a| !a.ip().is_loopback()) {
        return Err("--ws-url: loopback addresses only".into());
    }
    let conn_spec = |c: usize, path: String, token: Option<String>, publisher| ConnSpec {
        addr: (!ws_addrs.is_empty()).then(|| ws_addrs[c % ws_addrs.len()]),
        src: source_ip(c, args.conns_per_ip),
        path,
        token,
        publisher,
    };

    match args.target {
        Target::Plain => {
            for c in 0..n {
                let path = format!("/ws?room=room-{}", c % rooms);
                plans[c % threads].conns.push(conn_spec(c, path, None, ws_publisher(c, 0)));
            }
        }
        Target::Rechat => {
            let (tokens, room_ids) = roomcast_setup(&args, addr, n, rooms, &shared)?;
            for (c, token) in tokens.into_iter().enumerate() {
                let room_id = room_ids.get(c % rooms).copied().flatten();
                let publisher = room_id.and_then(|id| ws_publisher(c, id));
                plans[c % threads].conns.push(conn_spec(
                    c,
                    rechat::PATH.into(),
                    Some(token),
                    publisher,
                ));
            }
        }
        Target::Roomcast => {
            let (tokens, room_ids) = roomcast_setup(&args, addr, n, rooms, &shared)?;
            for (c, token) in tokens.iter().enumerate() {
                let path = "/api/v1/events".to_string();
                plans[c % threads].conns.push(conn_spec(c, path, Some(token.clone()), None));
            }
            let authors: Vec<HttpTarget> = (0..n)
                .filter(|&c| is_publisher(c))
                .filter_map(|c| {
                    let id = room_ids.get(c % rooms).copied().flatten()?;
                    Some(HttpTarget {
                        path: format!("/api/v1/rooms/{id}/messages"),
                        token: tokens[c].clone(),
                        room_size: room_size(c % rooms),
                    })
                })
                .collect();
            for (w, spec) in http_workers(authors, args.http_conns).into_iter().enumerate() {
                let mut spec = spec;
                spec.src = source_ip(n + w, args.conns_per_ip);
                plans[w % threads].http.push(spec);
            }
        }
    }
    let setup_s = setup_start.elapsed().as_secs_f64();

    let cfg = Arc::new(Config {
        addr,
        target: args.target,
        payload: args.payload_bytes,
        warmup: Duration::from_secs_f64(args.warmup),
        duration: Duration::from_secs_f64(args.duration),
        connect_concurrency: args.connect_concurrency.div_ceil(threads),
        rechat_auth: args.rechat_auth,
    });

    let hists: Vec<Hist> = (0..threads).map(|_| Arc::new(Mutex::new(worker::new_hist()))).collect();
    let connect_start = Instant::now();
    let server_cpu_connect0 =
        server.as_ref().and_then(|s| procfs::pids_cpu_s(s.pid, &args.also_pids));
    let loadgen_cpu_connect0 = procfs::own_cpu_s();
    let handles: Vec<_> = plans
        .into_iter()
        .zip(&hists)
        .enumerate()
        .map(|(i, (plan, hist))| {
            let (cfg, shared, hist) = (cfg.clone(), shared.clone(), hist.clone());
            std::thread::Builder::new()
                .name(format!("loadgen-{i}"))
                .spawn(move || worker::run_thread(plan, cfg, shared, hist))
                .expect("spawn thread")
        })
        .collect();
    while shared.threads_connected.load(Relaxed) < threads {
        std::thread::sleep(Duration::from_millis(2));
    }
    let connect_s = connect_start.elapsed().as_secs_f64();
    let loadgen_cpu_connect_s = round(procfs::own_cpu_s() - loadgen_cpu_connect0, 3);
    if let Some(s) = server.as_mut() {
        s.cpu_connect_s = server_cpu_connect0
            .zip(procfs::pids_cpu_s(s.pid, &args.also_pids))
            .map(|(a, b)| round(b - a, 3));
    }
    let base = Base {
        args: &args,
        n,
        rooms,
        publishers,
        threads,
        setup_s,
        connect_s,
        loadgen_cpu_connect_s,
        connected: shared.connected.load(Relaxed),
    };

    if args.idle {
        std::thread::sleep(Duration::from_secs_f64(args.settle));
        if let Some(s) = server.as_mut() {
            s.rss_connected_kb = procfs::pid_rss_kb(s.pid);
            s.tcp_mem_pages_connected = procfs::tcp_mem_pages();
        }
        let cpu0 = server.as_ref().and_then(|s| procfs::pids_cpu_s(s.pid, &args.also_pids));
        let lg0 = procfs::own_cpu_s();
        std::thread::sleep(Duration::from_secs_f64((args.duration - args.settle).max(0.0)));
        let cpu =
            cpu0.zip(server.as_ref().and_then(|s| procfs::pids_cpu_s(s.pid, &args.also_pids)));
        let lg = procfs::own_cpu_s() - lg0;
        let report = base.report(0, 0.0, &shared, &hists, server.clone(), cpu, lg);
        print_line(&report)?;
    } else {
        std::thread::sleep(Duration::from_secs_f64(args.pause));
        let rates =
            if args.rate_steps.is_empty() { vec![args.rate] } else { args.rate_steps.clone() };
        for (step, &rate) in rates.iter().enumerate() {
            let go = Instant::now() + Duration::from_millis(50);
            let window_start = go + cfg.warmup;
            let window_end = window_start + cfg.duration;
            shared.window_start.store(shared.ns_of(window_start), Relaxed);
            shared.window_end.store(shared.ns_of(window_end), Relaxed);
            shared.reset_step();
            for h in &hists {
                h.lock().unwrap().reset();
            }
            shared.phase.send_replace(Phase::Go { at: go, step: step as u32, rate });
            sleep_until(window_start);
            if let Some(s) = server.as_mut() {
                s.rss_connected_kb = procfs::pid_rss_kb(s.pid);
                s.tcp_mem_pages_connected = procfs::tcp_mem_pages();
            }
            let cpu0 = server.as_ref().and_then(|s| procfs::pids_cpu_s(s.pid, &args.also_pids));
            let lg0 = procfs::own_cpu_s();
            sleep_until(window_end);
            let cpu =
                cpu0.zip(server.as_ref().and_then(|s| procfs::pids_cpu_s(s.pid, &args.also_pids)));
            let lg = procfs::own_cpu_s() - lg0;
            let drain_end = Instant::now() + Duration::from_secs_f64(args.drain);
            while Instant::now() < drain_end
                && shared.deliveries.load(Relaxed) < shared.expected.load(Relaxed)
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            if let Some(s) = server.as_mut() {
                s.rss_end_kb = procfs::pid_rss_kb(s.pid);
            }
            let report = base.report(step, rate, &shared, &hists, server.clone(), cpu, lg);
            print_line(&report)?;
            let failed = report.latency_us.p99 > args.stop_p99_ms.unwrap_or(f64::MAX) * 1000.0
                || (args.stop_p99_ms.is_some() && report.delivery_ratio < 0.95);
            if failed {
                break;
            }
        }
    }
    shared.stopping.store(true, Relaxed);
    shared.phase.send_replace(Phase::Stop);
    for handle in handles {
        let _ = handle.join();
    }
    Ok(())
}

/// What every report of a run shares.
struct Base<'a> {
    args: &'a Args,
    n: usize,
    rooms: usize,
    publishers: usize,
    threads: usize,
    setup_s: f64,
    connect_s: f64,
    loadgen_cpu_connect_s: f64,
    connected: u64,
}

impl Base<'_> {
    /// The report of one step; `cpu` is the server's CPU seconds at the window's two ends and
    /// `loadgen_window_s` our own CPU over the window.
    #[allow(clippy::too_many_arguments)]
    fn report(
        &self,
        step: usize,
        rate: f64,
        shared: &Shared,
        hists: &[Hist],
        mut server: Option<ServerStats>,
        cpu: Option<(f64, f64)>,
        loadgen_window_s: f64,
    ) -> Report {
        let args = self.args;
        let mut hist = worker::new_hist();
        for h in hists {
            hist.add(&*h.lock().unwrap()).expect("same bounds");
        }
        let deliveries = shared.deliveries.load(Relaxed);
        let expected = shared.expected.load(Relaxed);
        let sent_in_window = shared.sent_in_window.load(Relaxed);
        if let (Some(s), Some((a, b))) = (server.as_mut(), cpu) {
            s.cpu_window_s = Some(round(b - a, 3));
            if deliveries > 0 {
                s.cpu_us_per_delivery = Some(round((b - a) * 1e6 / deliveries as f64, 3));
            }
        }
        let e = &shared.errors;
        let ack_latency_us = (args.target == Target::Rechat && !args.idle)
            .then(|| Latency::of(&shared.ack_latency.lock().unwrap()));
        Report {
            target: args.target,
            mode: if args.idle { "idle" } else { "publish" },
            step,
            connections: self.n,
            rooms: self.rooms,
            publishers: self.publishers,
            connected: self.connected,
            setup_s: round(self.setup_s, 3),
            connect_s: round(self.connect_s, 3),
            connect_rate: round(self.connected as f64 / self.connect_s.max(1e-9), 1),
            duration_s: args.duration,
            target_rate: rate,
            achieved_rate: round(sent_in_window as f64 / args.duration, 1),
            sent_in_window,
            deliveries,
            deliveries_per_s: round(deliveries as f64 / args.duration, 1),
            expected_deliveries: expected,
            duplicate_deliveries: shared.duplicates.load(Relaxed),
            delivery_ratio: if expected > 0 {
                round(deliveries as f64 / expected as f64, 4)
            } else {
                0.0
            },
            latency_us: Latency::of(&hist),
            ack_latency_us,
            publish_lag: shared.publish_lag.load(Relaxed),
            publish_skipped: shared.publish_skipped.load(Relaxed),
            http_reopened: shared.http_reopened.load(Relaxed),
            errors: e.total(),
            error_kinds: ErrorKinds {
                connect: e.connect.load(Relaxed),
                closed: e.closed.load(Relaxed),
                http_status: e.http.load(Relaxed),
                http_io: e.http_io.load(Relaxed),
                send: e.send.load(Relaxed),
                setup: e.setup.load(Relaxed),
                ack: e.ack.load(Relaxed),
            },
            loadgen_cpu_s: round(procfs::own_cpu_s(), 3),
            loadgen_cpu_window_s: round(loadgen_window_s, 3),
            loadgen_cpu_connect_s: self.loadgen_cpu_connect_s,
            threads: self.threads,
            server,
        }
    }
}

fn print_line(report: &Report) -> Result<(), String> {
    use std::io::Write;
    let line = serde_json::to_string(report).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|_| out.flush()).map_err(|e| e.to_string())
}

/// Splits the authors over at most `conns` HTTP workers sharing the total rate.
fn http_workers(authors: Vec<HttpTarget>, conns: usize) -> Vec<HttpWorkerSpec> {
    let p = authors.len();
    if p == 0 {
        return Vec::new();
    }
    let conns = conns.max(1);
    let mut lists: Vec<Vec<HttpTarget>> = Vec::new();
    if p >= conns {
        lists.resize_with(conns, Vec::new);
        for (i, a) in authors.into_iter().enumerate() {
            lists[i % conns].push(a);
        }
    } else {
        // Fewer authors than connections: give each author the same number of connections.
        let per = conns / p;
        for _ in 0..per {
            for a in &authors {
                lists.push(vec![HttpTarget {
                    path: a.path.clone(),
                    token: a.token.clone(),
                    room_size: a.room_size,
                }]);
            }
        }
    }
    let slots_total: usize = lists.iter().map(Vec::len).sum();
    let count = lists.len();
    lists
        .into_iter()
        .enumerate()
        .map(|(w, targets)| HttpWorkerSpec {
            src: source_ip(0, 1),
            schedule: Schedule {
                share: targets.len() as f64 / slots_total as f64,
                phase: w as f64 / count as f64,
            },
            targets,
        })
        .collect()
}

/// roomcast and Rechat: a token for every connection (user `u<c>`), and unless `--idle` the
/// rooms made over REST with their members (each room's id, `None` where creation failed).
fn roomcast_setup(
    args: &Args,
    addr: SocketAddr,
    n: usize,
    rooms: usize,
    shared: &Arc<Shared>,
) -> Result<(Vec<String>, Vec<Option<u64>>), String> {
    let secret = read_secret(args)?;
    let minter = token::Minter::new(&secret);
    let tokens: Vec<String> = (0..n).map(|c| minter.mint(&format!("u{c}"), None)).collect();
    if args.idle {
        return Ok((tokens, Vec::new()));
    }
    let members: Vec<Vec<String>> =
        (0..rooms).map(|r| (r..n).step_by(rooms).map(|c| format!("u{c}")).collect()).collect();
    let service = minter.mint("loadgen", Some("service"));
    Ok((tokens, setup::create_rooms(addr, &service, &members, 8, shared)))
}

fn read_secret(args: &Args) -> Result<String, String> {
    if let Some(s) = &args.secret {
        return Ok(s.trim().to_string());
    }
    let path = args
        .secret_file
        .as_ref()
        .ok_or("--target roomcast|rechat needs --secret-file or --secret")?;
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// `ws://127.0.0.1:9001`, `http://localhost:8080/…` or `127.0.0.1:9001` → socket address.
fn parse_addr(url: &str) -> Result<SocketAddr, String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority
        .to_socket_addrs()
        .map_err(|e| format!("{url}: {e}"))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| format!("{url}: no IPv4 address"))
}

fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        std::thread::sleep(at - now);
    }
}

fn round(v: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (v * m).round() / m
}
