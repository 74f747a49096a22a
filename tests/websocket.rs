//! WebSocket protocol behaviour over raw sockets: limits and close codes, ping/pong, slow
//! consumers, upgrade errors, and graceful shutdown.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// Opens a WebSocket by hand and returns the socket after the 101.
async fn raw_ws(addr: std::net::SocketAddr, target: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "RFC 6455 accept key: {head}");
    stream
}

/// A client frame, masked unless `masked` is false.
fn frame(opcode: u8, payload: &[u8], fin: bool, masked: bool) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n < 65536 => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x12, 0x34, 0x56, 0x78];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// Reads server frames until a close frame; returns its code (`None` for an empty close).
async fn read_until_close(stream: &mut TcpStream) -> (Option<u16>, Vec<(u8, Vec<u8>)>) {
    let mut others = Vec::new();
    loop {
        let (b0, payload) = read_frame(stream).await;
        let opcode = b0 & 0x0f;
        if opcode == 8 {
            let code = (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
            return (code, others);
        }
        others.push((opcode, payload));
    }
}

async fn close_code_after(frames: &[Vec<u8>]) -> Option<u16> {
    let server = start(1);
    let mut stream = raw_ws(server.addr, "/echo").await;
    for f in frames {
        stream.write_all(f).await.unwrap();
    }
    read_until_close(&mut stream).await.0
}

#[tokio::test]
async fn ws_protocol_violations_close_with_their_codes() {
    assert_eq!(
        close_code_after(&[frame(1, b"hi", true, false)]).await,
        Some(1002),
        "unmasked client frame"
    );
    assert_eq!(close_code_after(&[frame(3, b"", true, true)]).await, Some(1002), "reserved opcode");
    assert_eq!(
        close_code_after(&[frame(0, b"x", true, true)]).await,
        Some(1002),
        "continuation without start"
    );
    assert_eq!(
        close_code_after(&[frame(1, &[0xff, 0xfe], true, true)]).await,
        Some(1007),
        "invalid UTF-8"
    );
    assert_eq!(
        close_code_after(&[frame(2, &vec![0u8; 70_000], true, true)]).await,
        Some(1009),
        "frame over 64 KiB"
    );
    let fragments =
        [frame(2, &vec![0u8; 40_000], false, true), frame(0, &vec![0u8; 40_000], true, true)];
    assert_eq!(close_code_after(&fragments).await, Some(1009), "message over 64 KiB");
    assert_eq!(
        close_code_after(&[frame(8, &1000u16.to_be_bytes(), true, true)]).await,
        Some(1000),
        "close is echoed"
    );
}

#[tokio::test]
async fn ws_fragments_with_interleaved_ping_are_reassembled() {
    let server = start(1);
    let mut stream = raw_ws(server.addr, "/echo").await;
    stream.write_all(&frame(1, b"Hel", false, true)).await.unwrap();
    stream.write_all(&frame(9, b"p", true, true)).await.unwrap();
    stream.write_all(&frame(0, b"lo", true, true)).await.unwrap();
    stream.write_all(&frame(8, &1000u16.to_be_bytes(), true, true)).await.unwrap();
    let (code, frames) = read_until_close(&mut stream).await;
    assert_eq!(code, Some(1000));
    assert_eq!(
        frames,
        vec![(10, b"p".to_vec()), (1, b"Hello".to_vec())],
        "pong first, then the whole message"
    );
}

#[tokio::test]
async fn ws_upgrade_errors_get_http_statuses() {
    let server = start(1);
    let bad_version = raw_request(
        server.addr,
        b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    )
    .await;
    assert_eq!(bad_version.status, 426);
    assert!(bad_version.head.to_ascii_lowercase().contains("sec-websocket-version: 13"));
    let no_key = raw_request(server.addr, b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n").await;
    assert_eq!(no_key.status, 400);
    let unknown = raw_request(
        server.addr,
        b"GET /nope HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await;
    assert_eq!(unknown.status, 404);
}

#[tokio::test]
async fn ws_slow_consumer_is_closed_and_counted_without_slowing_the_room() {
    let mut config = config(1);
    config.outbound_bytes_max = 64 * 1024;
    let server = start_with(config);
    let addr = server.addr;
    let room = create_room(addr, "firehose", &["fast", "slow"]).await;
    let mut fast = virola(addr, "fast").await;
    let token = user_token("slow");
    let mut slow = raw_ws(addr, &format!("/api/v1/events?access_token={token}")).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let text = "x".repeat(60_000);
    let count = 300;
    let reader = tokio::spawn(async move {
        let mut got = 0;
        while got < count {
            let event = next_of(&mut fast, "TextMessagesCreated").await;
            assert_eq!(event["data"]["messages"][0]["text"].as_str().map(str::len), Some(60_000));
            got += 1;
        }
        got
    });
    let posting = tokio::spawn(async move {
        for _ in 0..count {
            post_message(addr, room, "fast", &text).await;
        }
    });
    // Start reading the slow socket as soon as the server gives up on it: its close frame
    // follows the write still in flight, which needs the client to read. (A client that
    // stays silent for 5 s more is dropped without one.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while slow_consumer_closes(addr).await == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the slow consumer was never closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut tail = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut tail)).await;
    assert!(
        tail.windows(4).any(|w| w[0] == 0x88 && w[2..4] == 1008u16.to_be_bytes()),
        "close 1008 at the end"
    );
    posting.await.unwrap();
    assert_eq!(reader.await.unwrap(), count, "the fast member got every message");
    assert_eq!(slow_consumer_closes(addr).await, 1, "the slow consumer was closed once");
}

async fn slow_consumer_closes(addr: std::net::SocketAddr) -> u64 {
    metric(addr, "roomcast_slow_consumer_closes_total").await
}

#[tokio::test]
async fn ws_server_ping_is_answered_and_shutdown_closes_with_1001() {
    let mut config = config(2);
    config.ping_interval_ms = 100;
    let mut server = start_with(config);
    create_room(server.addr, "bye", &["alice"]).await;
    let mut ws = virola(server.addr, "alice").await;
    let got_ping = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            if let Some(Ok(Message::Ping(_))) = ws.next().await {
                return true;
            }
        }
    })
    .await;
    assert_eq!(got_ping, Ok(true), "the server pings");
    let stopper = std::thread::spawn(move || server.stop());
    let close = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
                Some(Ok(_)) => continue,
                other => panic!("no close frame: {other:?}"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(close, 1001);
    let _ = ws.send(Message::Close(None)).await;
    stopper.join().unwrap();
}

#[tokio::test]
async fn ws_frame_split_across_many_reads_is_reassembled_in_order() {
    let server = start(1);
    let mut stream = raw_ws(server.addr, "/echo").await;
    let payload: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    let bytes = frame(2, &payload, true, true);
    for piece in bytes.chunks(7_000) {
        stream.write_all(piece).await.unwrap();
        stream.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stream.write_all(&frame(8, &1000u16.to_be_bytes(), true, true)).await.unwrap();
    let (code, frames) = read_until_close(&mut stream).await;
    assert_eq!(code, Some(1000));
    assert_eq!(frames, vec![(2, payload)]);
}

#[tokio::test]
async fn ws_a_paused_reader_gets_every_frame_in_order_once_it_reads() {
    let mut config = config(1);
    config.outbound_bytes_max = 64 * 1024 * 1024;
    config.actions_per_second = 1_000_000;
    config.actions_burst = 1_000_000;
    let server = start_with(config);
    let addr = server.addr;
    let room = create_room(addr, "backlog", &["poster", "paused"]).await;
    let mut paused = virola(addr, "paused").await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    // 24 MB for a client that reads nothing yet: more than loopback's socket buffers hold, so
    // the server's writes find the send buffer full and must resume on the writable edge.
    let count = 400;
    let filler = "y".repeat(60_000);
    for i in 0..count {
        post_message(addr, room, "poster", &format!("{i:06}:{filler}")).await;
    }
    assert!(
        metric(addr, "roomcast_write_blocked_total").await > 0,
        "the writes to the paused reader blocked"
    );
    for i in 0..count {
        let event = next_of(&mut paused, "TextMessagesCreated").await;
        let text = event["data"]["messages"][0]["text"].as_str().unwrap_or_default();
        assert!(text.starts_with(&format!("{i:06}:")), "frame {i} arrived in order, whole");
        assert_eq!(text.len(), 7 + 60_000);
    }
    assert_eq!(slow_consumer_closes(addr).await, 0, "a reader within its bound is not dropped");
}

/// A shard-summed counter from `/metrics`.
async fn metric(addr: std::net::SocketAddr, name: &str) -> u64 {
    let metrics = String::from_utf8(call(addr, "GET", "/metrics", None, None).await.body).unwrap();
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
