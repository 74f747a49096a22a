//! Does `IORING_OP_SEND_ZC` pay for roomcast's frames? (issue #14: "SEND_ZC for large frames
//! (measure it)").
//!
//! One io_uring (as a shard's: one issuer) sends the same frame to `CONNS` loopback TCP
//! connections per round, as the writer does in a fan-out pass: with `send` (the kernel copies
//! the frame into the socket) or with `send_zc` (the kernel pins the pages; a second completion,
//! the notification, says when the buffer is free again). One thread per connection reads
//! everything on the other end. Reported per frame size: the process's CPU (user + system, from
//! `getrusage`, so the readers and the loopback's receive path count too) per send and per
//! KiB, and wall time per round. Run: `cargo bench --bench send_zc` (env `ROUNDS`, `CONNS`).
//!
//! Loopback is the only network here; on it the kernel delivers a zero-copy skb to a local
//! socket by copying it then (`skb_orphan_frags_rx`), so send_zc's saving cannot show, only its
//! extra cost (page pinning, the notification). The numbers are what this machine can say.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Instant;

use io_uring::{cqueue, opcode, types, IoUring};

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `CONNS` connected pairs: the sending ends, and a reader thread draining each receiving end.
fn connect(conns: usize) -> Vec<TcpStream> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut senders = Vec::with_capacity(conns);
    for _ in 0..conns {
        let sender = TcpStream::connect(addr).expect("connect");
        sender.set_nodelay(true).expect("nodelay");
        let (mut receiver, _) = listener.accept().expect("accept");
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 256 * 1024];
            while matches!(receiver.read(&mut buf), Ok(n) if n > 0) {}
        });
        senders.push(sender);
    }
    senders
}

/// Sends `frame` to every socket `rounds` times; returns (CPU s, wall s).
fn run(
    ring: &mut IoUring,
    sockets: &[TcpStream],
    frame: &[u8],
    rounds: usize,
    zc: bool,
) -> (f64, f64) {
    let (cpu0, wall0) = (cpu_seconds(), Instant::now());
    for _ in 0..rounds {
        for (i, socket) in sockets.iter().enumerate() {
            let fd = types::Fd(socket.as_raw_fd());
            let (ptr, len) = (frame.as_ptr(), frame.len() as u32);
            let sqe = if zc {
                opcode::SendZc::new(fd, ptr, len)
                    .flags(libc::MSG_NOSIGNAL | libc::MSG_WAITALL)
                    .build()
            } else {
                opcode::Send::new(fd, ptr, len)
                    .flags(libc::MSG_NOSIGNAL | libc::MSG_WAITALL)
                    .build()
            };
            // SAFETY: `frame` outlives the round: every completion (and notification) is reaped
            // below before it returns.
            unsafe { ring.submission().push(&sqe.user_data(i as u64)).expect("sq has room") };
        }
        // Each send completes once; a zero-copy one also notifies when its buffer is free.
        let mut outstanding = sockets.len() * if zc { 2 } else { 1 };
        while outstanding > 0 {
            ring.submit_and_wait(1).expect("submit");
            for cqe in ring.completion() {
                assert!(
                    cqe.result() >= 0 || cqueue::notif(cqe.flags()),
                    "send failed: {}",
                    cqe.result()
                );
                assert!(
                    cqe.result() < 0
                        || cqueue::notif(cqe.flags())
                        || cqe.result() as usize == frame.len(),
                    "short send"
                );
                outstanding -= 1;
                // A zero-copy send that failed has no notification to wait for.
                if zc && !cqueue::notif(cqe.flags()) && !cqueue::more(cqe.flags()) {
                    outstanding -= 1;
                }
            }
        }
    }
    (cpu_seconds() - cpu0, wall0.elapsed().as_secs_f64())
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` (criterion's convention): nothing to list.
    }
    let conns = env_usize("CONNS", 64);
    let rounds_base = env_usize("ROUNDS", 2000);
    let reps = env_usize("REPS", 3);
    let sockets = connect(conns);
    let mut ring = IoUring::new(2 * conns as u32).expect("io_uring");
    println!("conns={conns} reps={reps} (median of reps; CPU = whole process, user + system)");
    println!(
        "{:>9} {:>7} {:>14} {:>14} {:>12}",
        "frame B", "op", "CPU-µs/send", "CPU-µs/KiB", "wall ms/round"
    );
    for size in [300usize, 4 * 1024, 16 * 1024, 64 * 1024, 256 * 1024] {
        let frame = vec![b'x'; size];
        // About the same bytes per size: fewer rounds for large frames.
        let rounds = (rounds_base * 300 / size).clamp(20, rounds_base);
        for zc in [false, true] {
            let mut cpu = Vec::new();
            let mut wall = Vec::new();
            for _ in 0..reps {
                let (c, w) = run(&mut ring, &sockets, &frame, rounds, zc);
                cpu.push(c / (rounds * conns) as f64 * 1e6);
                wall.push(w / rounds as f64 * 1e3);
            }
            cpu.sort_by(f64::total_cmp);
            wall.sort_by(f64::total_cmp);
            let (c, w) = (cpu[reps / 2], wall[reps / 2]);
            let op = if zc { "send_zc" } else { "send" };
            println!("{size:>9} {op:>7} {c:>14.2} {:>14.3} {w:>12.3}", c / (size as f64 / 1024.0));
        }
    }
}
