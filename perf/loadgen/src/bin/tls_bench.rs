//! TLS next to plain, against one running server (`--pid` is the server's: its CPU and RSS are
//! read from /proc). With `--ca PEM` every connection is TLS (rustls, `ring`, trusting that CA),
//! else plain TCP; the server must be started to match (`--tls-cert`/`--tls-key` or not).
//!
//! - `idle`: opens `--conns` Virola sockets (raw upgrade, then nothing), waits `--settle`
//!   seconds, prints the server's RSS growth per connection.
//! - `handshakes`: for `--seconds`, `--concurrency` loops each open a connection, do one
//!   `GET /healthz` and close; prints connections per second and per server CPU-second.
//! - `fanout`: one room of `--conns` Virola sockets that count the frames they read,
//!   `--messages` posts (about 300 bytes of JSON each) at `--rate`/s over one keep-alive
//!   REST connection; prints the server's CPU per delivery.
//!
//! `tls_bench MODE --addr 127.0.0.1:8443 --pid PID --secret S [--ca ca.pem] [--tls12]`

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use loadgen::conn::{source_ip, tcp_connect};
use loadgen::procfs::pid_cpu_s;
use loadgen::token::Minter;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Idle,
    Handshakes,
    Fanout,
}

#[derive(Parser)]
struct Args {
    mode: Mode,
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// The server's pid.
    #[arg(long)]
    pid: u32,
    /// The server's HS256 secret.
    #[arg(long, default_value = "")]
    secret: String,
    /// Speak TLS, trusting this CA (PEM).
    #[arg(long)]
    ca: Option<std::path::PathBuf>,
    /// TLS 1.2 only (default: 1.3).
    #[arg(long)]
    tls12: bool,
    #[arg(long, default_value_t = 5000)]
    conns: usize,
    #[arg(long, default_value_t = 3)]
    settle: u64,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    #[arg(long, default_value_t = 200)]
    messages: usize,
    #[arg(long, default_value_t = 50)]
    rate: u64,
}

/// A TCP or TLS client stream.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type Stream = Pin<Box<dyn Io>>;

#[derive(Clone)]
struct Dialer {
    addr: SocketAddr,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl Dialer {
    fn new(args: &Args) -> Dialer {
        let tls = args.ca.as_ref().map(|path| {
            use rustls::pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls::pki_types::CertificateDer::pem_file_iter(path).expect("CA file") {
                roots.add(cert.expect("CA PEM")).expect("CA cert");
            }
            // X25519 first, as browsers, OpenSSL and the server (rustls lists P-384 first for
            // ring).
            #[allow(deprecated)]
            let provider = Arc::new({
                use rustls::crypto::ring::{default_provider, kx_group};
                rustls::crypto::CryptoProvider {
                    kx_groups: vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
                    ..default_provider()
                }
            });
            let versions: &[&rustls::SupportedProtocolVersion] =
                if args.tls12 { &[&rustls::version::TLS12] } else { &[&rustls::version::TLS13] };
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(versions)
                .expect("versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            // Every connection a full handshake: no resumption.
            config.resumption = rustls::client::Resumption::disabled();
            tokio_rustls::TlsConnector::from(Arc::new(config))
        });
        Dialer { addr: args.addr, tls }
    }

    async fn dial(&self, index: usize) -> std::io::Result<Stream> {
        let tcp = tcp_connect(self.addr, source_ip(index, 5000)).await?;
        match &self.tls {
            None => Ok(Box::pin(tcp)),
            Some(connector) => {
                let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
                Ok(Box::pin(connector.connect(name, tcp).await?))
            }
        }
    }
}

/// Reads one HTTP response (Content-Length framed); its status and body.
async fn response(stream: &mut Stream, buf: &mut Vec<u8>) -> std::io::Result<(u16, Vec<u8>)> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..at]).to_string();
            let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buf.len() < at + 4 + length {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[at + 4..at + 4 + length].to_vec();
            buf.drain(..at + 4 + length);
            return Ok((status, body));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn request(
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    method: &str,
    path: &str,
    token: &str,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    stream.write_all(&out).await?;
    response(stream, buf).await
}

/// Opens a Virola socket for `token`; returns the stream and bytes read past the 101.
async fn virola(dialer: &Dialer, index: usize, token: &str) -> std::io::Result<(Stream, Vec<u8>)> {
    let mut stream = dialer.dial(index).await?;
    let upgrade = format!(
        "GET /api/v1/events HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: Bearer {token}\r\n\r\n"
    );
    stream.write_all(upgrade.as_bytes()).await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            assert!(buf.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&buf));
            buf.drain(..at + 4);
            return Ok((stream, buf));
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("server status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

async fn idle(args: &Args, dialer: Dialer, minter: &Minter) {
    let before = rss_kib(args.pid);
    let mut held = Vec::with_capacity(args.conns);
    let mut pending = Vec::new();
    for i in 0..args.conns {
        let (dialer, token) = (dialer.clone(), minter.mint(&format!("i{i}"), None));
        pending.push(tokio::spawn(async move { virola(&dialer, i, &token).await }));
        if pending.len() == 50 {
            for task in pending.drain(..) {
                held.push(task.await.expect("task").expect("connect").0);
            }
        }
    }
    for task in pending.drain(..) {
        held.push(task.await.expect("task").expect("connect").0);
    }
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let after = rss_kib(args.pid);
    println!(
        "idle tls={} conns={} rss_before={before}KiB rss_after={after}KiB per_conn={:.0}B",
        args.ca.is_some(),
        held.len(),
        (after.saturating_sub(before) * 1024) as f64 / held.len() as f64
    );
}

async fn handshakes(args: &Args, dialer: Dialer) {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let cpu0 = pid_cpu_s(args.pid).expect("server cpu");
    let start = Instant::now();
    let end = start + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for worker in 0..args.concurrency {
        let (dialer, done, failed) = (dialer.clone(), done.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut index = worker;
            while Instant::now() < end {
                index += 1000;
                let ok = async {
                    let mut stream = dialer.dial(index).await?;
                    stream
                        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        .await?;
                    let (status, _) = response(&mut stream, &mut Vec::new()).await?;
                    std::io::Result::Ok(status == 200)
                }
                .await;
                match ok {
                    Ok(true) => done.fetch_add(1, Relaxed),
                    _ => failed.fetch_add(1, Relaxed),
                };
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = pid_cpu_s(args.pid).expect("server cpu") - cpu0;
    let n = done.load(Relaxed);
    println!(
        "handshakes tls={} tls12={} connections={n} failed={} per_s={:.0} server_cpu={cpu:.2}s \
         per_server_cpu_s={:.0} server_cpu_per_conn={:.1}us",
        args.ca.is_some(),
        args.tls12,
        failed.load(Relaxed),
        n as f64 / elapsed,
        n as f64 / cpu.max(1e-9),
        cpu * 1e6 / n.max(1) as f64
    );
}

/// The chat text: with the Virola envelope, a payload of about 300 bytes (as deflate_fanout).
const TEXT: &str = "Build 1.4.2 is green on every platform; the artifacts are uploaded. Please \
                    check the changelog before we tag it tomorrow at 10:00. Thanks, everyone!";

async fn count_frames(mut stream: Stream, mut buf: Vec<u8>, frames: Arc<AtomicU64>) {
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        loop {
            if buf.len() < 2 {
                break;
            }
            let (header, len) = match buf[1] & 0x7f {
                126 if buf.len() >= 4 => (4, usize::from(u16::from_be_bytes([buf[2], buf[3]]))),
                127 if buf.len() >= 10 => {
                    (10, u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize)
                }
                126 | 127 => break,
                n => (2, usize::from(n)),
            };
            if buf.len() < header + len {
                break;
            }
            if matches!(buf[0] & 0x0f, 1 | 2) {
                frames.fetch_add(1, Relaxed);
            }
            buf.drain(..header + len);
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn fanout(args: &Args, dialer: Dialer, minter: &Minter) {
    let service = minter.mint("backend", Some("service"));
    let members: Vec<String> = (0..args.conns).map(|i| format!("f{i}")).collect();
    let mut http = dialer.dial(0).await.expect("http");
    let mut buf = Vec::new();
    let body = serde_json::json!({"name": "tls-fanout", "members": members});
    let (status, reply) = request(
        &mut http,
        &mut buf,
        "POST",
        "/api/v1/rooms",
        &service,
        body.to_string().as_bytes(),
    )
    .await
    .expect("create room");
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&reply));
    let room = serde_json::from_slice::<serde_json::Value>(&reply).expect("json")["room"]["id"]
        .as_u64()
        .expect("room id");
    let frames = Arc::new(AtomicU64::new(0));
    for (i, user) in members.iter().enumerate() {
        let (stream, rest) = virola(&dialer, i + 1, &minter.mint(user, None)).await.expect("ws");
        tokio::spawn(count_frames(stream, rest, frames.clone()));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let poster = minter.mint(&members[0], None);
    let body = serde_json::json!({ "text": TEXT }).to_string();
    let want = (args.conns * args.messages) as u64;
    let cpu0 = pid_cpu_s(args.pid).expect("server cpu");
    let start = Instant::now();
    let period = Duration::from_micros(1_000_000 / args.rate.max(1));
    let path = format!("/api/v1/rooms/{room}/messages");
    for i in 0..args.messages {
        let (status, _) = request(&mut http, &mut buf, "POST", &path, &poster, body.as_bytes())
            .await
            .expect("post");
        assert_eq!(status, 201);
        tokio::time::sleep_until((start + period * (i as u32 + 1)).into()).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while frames.load(Relaxed) < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cpu = pid_cpu_s(args.pid).expect("server cpu") - cpu0;
    let got = frames.load(Relaxed);
    println!(
        "fanout tls={} members={} messages={} deliveries={got}/{want} server_cpu={cpu:.3}s \
         cpu_per_delivery={:.2}us elapsed={:.2}s",
        args.ca.is_some(),
        args.conns,
        args.messages,
        cpu * 1e6 / got.max(1) as f64,
        start.elapsed().as_secs_f64()
    );
}

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let dialer = Dialer::new(&args);
    let minter = Minter::new(&args.secret);
    rt.block_on(async {
        match args.mode {
            Mode::Idle => idle(&args, dialer, &minter).await,
            Mode::Handshakes => handshakes(&args, dialer).await,
            Mode::Fanout => fanout(&args, dialer, &minter).await,
        }
    });
}
