//! permessage-deflate fan-out: one room of `--members` Virola connections (raw sockets that offer
//! permessage-deflate with `--deflate`, or not), `--messages` chat posts of about 300 bytes of
//! JSON each over REST, and per delivery: the server's CPU (its `/proc` utime + stime, so
//! `--pid` must be the server's) and the bytes on the wire (frame bytes the clients read).
//!
//! The clients count frames and bytes; they never inflate (a compressed frame is recognised by
//! RSV1, and one of them is inflated once to check it).
//!
//! `deflate_fanout --addr 127.0.0.1:8080 --pid PID --secret S --members 1000 --messages 200
//! [--deflate]`

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use loadgen::conn::{source_ip, tcp_connect};
use loadgen::http::HttpConn;
use loadgen::procfs::pid_cpu_s;
use loadgen::token::Minter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// The server's pid (its CPU is read from /proc).
    #[arg(long)]
    pid: u32,
    /// The server's HS256 secret.
    #[arg(long)]
    secret: String,
    #[arg(long, default_value_t = 1000)]
    members: usize,
    #[arg(long, default_value_t = 200)]
    messages: usize,
    /// Posts per second.
    #[arg(long, default_value_t = 50)]
    rate: u64,
    /// Offer permessage-deflate.
    #[arg(long)]
    deflate: bool,
}

/// The chat text: with the Virola envelope, a payload of about 300 bytes.
const TEXT: &str = "Build 1.4.2 is green on every platform; the artifacts are uploaded. Please \
                    check the changelog before we tag it tomorrow at 10:00. Thanks, everyone!";

#[derive(Default)]
struct Counts {
    frames: AtomicU64,
    compressed: AtomicU64,
    bytes: AtomicU64,
}

async fn client(
    addr: SocketAddr,
    index: usize,
    token: String,
    deflate: bool,
    counts: Arc<Counts>,
) -> std::io::Result<()> {
    let mut stream = tcp_connect(addr, source_ip(index, 5000)).await?;
    let offer = if deflate { "Sec-WebSocket-Extensions: permessage-deflate\r\n" } else { "" };
    let request = format!(
        "GET /api/v1/events HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: Bearer {token}\r\n{offer}\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(4096);
    let head_end = loop {
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(head.contains("permessage-deflate"), deflate, "{head}");
    buf.drain(..head_end);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        // Count every complete frame in `buf`.
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
            let opcode = buf[0] & 0x0f;
            if opcode == 1 || opcode == 2 {
                counts.frames.fetch_add(1, Relaxed);
                counts.bytes.fetch_add((header + len) as u64, Relaxed);
                if buf[0] & 0x40 != 0 {
                    counts.compressed.fetch_add(1, Relaxed);
                }
            }
            buf.drain(..header + len);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let minter = Minter::new(&args.secret);
        let service = minter.mint("backend", Some("service"));
        let members: Vec<String> = (0..args.members).map(|i| format!("d{i}")).collect();
        let mut http = HttpConn::connect(args.addr, source_ip(0, 1)).await.expect("http");
        let body = serde_json::json!({"name": "deflate-fanout", "members": members});
        let (status, reply) = http
            .request("POST", "/api/v1/rooms", &service, body.to_string().as_bytes())
            .await
            .expect("create room");
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&reply));
        let room = serde_json::from_slice::<serde_json::Value>(&reply).expect("json")["room"]["id"]
            .as_u64()
            .expect("room id");
        let counts = Arc::new(Counts::default());
        for (i, user) in members.iter().enumerate() {
            let token = minter.mint(user, None);
            let counts = counts.clone();
            let (addr, deflate) = (args.addr, args.deflate);
            tokio::spawn(async move {
                if let Err(e) = client(addr, i, token, deflate, counts).await {
                    eprintln!("client {i}: {e}");
                }
            });
            if i % 100 == 99 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let poster = minter.mint(&members[0], None);
        let body = serde_json::json!({ "text": TEXT }).to_string();
        let want = (args.members * args.messages) as u64;
        let cpu0 = pid_cpu_s(args.pid).expect("server cpu");
        let start = Instant::now();
        let period = Duration::from_micros(1_000_000 / args.rate.max(1));
        for i in 0..args.messages {
            let (status, _) = http
                .request(
                    "POST",
                    &format!("/api/v1/rooms/{room}/messages"),
                    &poster,
                    body.as_bytes(),
                )
                .await
                .expect("post");
            assert_eq!(status, 201);
            let next = start + period * (i as u32 + 1);
            tokio::time::sleep_until(next.into()).await;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while counts.frames.load(Relaxed) < want && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let elapsed = start.elapsed().as_secs_f64();
        let cpu = pid_cpu_s(args.pid).expect("server cpu") - cpu0;
        let frames = counts.frames.load(Relaxed);
        let bytes = counts.bytes.load(Relaxed);
        println!(
            "deflate={} members={} messages={} deliveries={frames}/{want} compressed={} \
             bytes/delivery={:.1} server_cpu={cpu:.3}s cpu/delivery={:.2}us elapsed={elapsed:.2}s",
            args.deflate,
            args.members,
            args.messages,
            counts.compressed.load(Relaxed),
            bytes as f64 / frames.max(1) as f64,
            cpu * 1e6 / frames.max(1) as f64,
        );
    });
}
