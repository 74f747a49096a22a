//! permessage-deflate (RFC 7692) over real sockets: the negotiation's answers (offers, declined
//! offers, `--deflate off`), compressed client messages (raw frames compressed with flate2
//! here), a zip bomb (1009 with the process's memory bounded), RSV1 without negotiation
//! (1002), and broadcasts: compressed for deflate clients, plain for the others in the same
//! room, byte-identical for every deflate subscriber.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ANSWER: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
const RSV1: u8 = 0x40;

/// One test of this file at a time: one of them measures the process's memory.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Opens a WebSocket at `target` by hand with `extra` header lines; returns the socket after the
/// 101 and the response's `Sec-WebSocket-Extensions`, if any.
async fn raw_ws(addr: SocketAddr, target: &str, extra: &str) -> (TcpStream, Option<String>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
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
    let extensions = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("sec-websocket-extensions").then(|| value.trim().to_string())
    });
    (stream, extensions)
}

/// The `Sec-WebSocket-Extensions` answer to one upgrade offering `offer` (header lines).
async fn answer_to(addr: SocketAddr, offer: &str) -> Option<String> {
    raw_ws(addr, "/echo", offer).await.1
}

/// A masked client frame with first byte `b0`.
fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![b0];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n < 65536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let key = [0x12, 0x34, 0x56, 0x78];
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// `data` compressed as one permessage-deflate message (raw DEFLATE, sync flush, the
/// `00 00 ff ff` tail removed).
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut out = deflate_flushed(data);
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// `data` compressed by a fresh compressor and sync-flushed, tail kept: byte-aligned and
/// self-contained, so copies of it back to back are a valid stream of `data` repeated.
fn deflate_flushed(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    let mut input = data;
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.len().max(1 << 16));
        }
        let before = c.total_in();
        c.compress_vec(input, &mut out, FlushCompress::Sync).unwrap();
        input = &input[(c.total_in() - before) as usize..];
        if input.is_empty() && out.capacity() - out.len() >= 1024 {
            return out;
        }
    }
}

/// A message of `data` repeated `times` times, compressed.
fn deflate_repeated(data: &[u8], times: usize) -> Vec<u8> {
    let mut out = deflate_flushed(data).repeat(times);
    out.truncate(out.len() - 4);
    out
}

/// A compressed server message's bytes.
fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut d = Decompress::new(false);
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(1 << 20);
    d.decompress_vec(&input, &mut out, FlushDecompress::Sync).unwrap();
    assert_eq!(d.total_in() as usize, input.len(), "all input inflated");
    out
}

/// The next data frame, skipping pings.
async fn read_data(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    loop {
        let (b0, payload) = read_frame(stream).await;
        if b0 & 0x0f != 9 {
            return (b0, payload);
        }
    }
}

/// The next data frame whose (inflated) text holds `kind`: (first byte, payload as sent).
async fn read_event(stream: &mut TcpStream, kind: &str) -> (u8, Vec<u8>) {
    loop {
        let (b0, payload) = read_data(stream).await;
        let text = if b0 & RSV1 != 0 { inflate(&payload) } else { payload.clone() };
        if String::from_utf8_lossy(&text).contains(kind) {
            return (b0, payload);
        }
    }
}

/// The close code the server sends next (after any data frames).
async fn close_code(stream: &mut TcpStream) -> Option<u16> {
    loop {
        let (b0, payload) = read_frame(stream).await;
        if b0 & 0x0f == 8 {
            return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
        }
    }
}

#[tokio::test]
async fn negotiation_answers_offers_and_declines_what_it_cannot_honour() {
    let _serial = SERIAL.lock().await;
    let server = start(1);
    let addr = server.addr;
    let with_bits = |bits: u8| format!("{ANSWER}; server_max_window_bits={bits}");
    let table: Vec<(&str, Option<String>)> = vec![
        ("", None),
        ("Sec-WebSocket-Extensions: permessage-deflate\r\n", Some(ANSWER.into())),
        (
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
            Some(ANSWER.into()),
        ),
        (
            "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; \
             client_max_window_bits; server_no_context_takeover; server_max_window_bits=15\r\n",
            Some(with_bits(15)),
        ),
        (
            "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n",
            Some(with_bits(10)),
        ),
        // Other extensions are skipped; a malformed offer is declined, the next one taken.
        (
            "Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; bogus, permessage-deflate\r\n",
            Some(ANSWER.into()),
        ),
        ("Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=99\r\n", None),
        ("Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits\r\n", None),
        ("Sec-WebSocket-Extensions: permessage-deflate; \"\r\n", None),
        ("Sec-WebSocket-Extensions: ;;;,,,\"\\\r\n", None),
    ];
    for (offer, want) in table {
        assert_eq!(answer_to(addr, offer).await, want, "{offer:?}");
    }
    let many = vec!["x-other"; 20].join(", ");
    let offer = format!("Sec-WebSocket-Extensions: {many}, permessage-deflate\r\n");
    assert_eq!(answer_to(addr, &offer).await, None, "offers past the bound are not read");

    // --deflate off: never negotiated, and RSV1 stays a protocol error.
    let off = start_with(roomcast::config::Config {
        deflate: roomcast::config::Switch::Off,
        ..config(1)
    });
    let (mut stream, answer) =
        raw_ws(off.addr, "/echo", "Sec-WebSocket-Extensions: permessage-deflate\r\n").await;
    assert_eq!(answer, None);
    stream.write_all(&frame(0x80 | RSV1 | 1, &deflate(b"hello"))).await.unwrap();
    assert_eq!(close_code(&mut stream).await, Some(1002));
}

#[tokio::test]
async fn unnegotiated_rsv1_is_a_protocol_error() {
    let _serial = SERIAL.lock().await;
    let server = start(1);
    let (mut stream, answer) = raw_ws(server.addr, "/echo", "").await;
    assert_eq!(answer, None);
    stream.write_all(&frame(0x80 | RSV1 | 1, &deflate(b"hello"))).await.unwrap();
    assert_eq!(close_code(&mut stream).await, Some(1002));
}

#[tokio::test]
async fn compressed_client_messages_are_inflated_and_echoed_compressed() {
    let _serial = SERIAL.lock().await;
    let server = start(1);
    let offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
    let (mut stream, answer) = raw_ws(server.addr, "/echo", offer).await;
    assert_eq!(answer.as_deref(), Some(ANSWER));
    let text =
        r#"{"type":"message","text":"the same words, the same words, the same words"}"#.repeat(6);
    // One compressed frame: the echo (over the 128-byte threshold) comes back compressed.
    stream.write_all(&frame(0x80 | RSV1 | 1, &deflate(text.as_bytes()))).await.unwrap();
    let (b0, payload) = read_data(&mut stream).await;
    assert_eq!(b0, 0x80 | RSV1 | 1, "a compressed text frame");
    assert!(payload.len() < text.len() / 2);
    assert_eq!(inflate(&payload), text.as_bytes());
    // A compressed message in three fragments, a ping between them.
    let compressed = deflate(text.as_bytes());
    let (a, rest) = compressed.split_at(compressed.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    let mut fragments = frame(RSV1 | 1, a);
    fragments.extend(frame(0, b));
    fragments.extend(frame(0x89, b"p"));
    fragments.extend(frame(0x80, c));
    stream.write_all(&fragments).await.unwrap();
    let (b0, pong) = read_frame(&mut stream).await;
    assert_eq!((b0, pong.as_slice()), (0x8A, &b"p"[..]), "pongs are never compressed");
    let (b0, payload) = read_data(&mut stream).await;
    assert_eq!(b0, 0x80 | RSV1 | 1);
    assert_eq!(inflate(&payload), text.as_bytes());
    // The echo endpoint compresses every reply, small ones too; a plain client message is
    // fine on a deflate connection.
    stream.write_all(&frame(0x80 | RSV1 | 2, &deflate(b"tiny"))).await.unwrap();
    let (b0, payload) = read_data(&mut stream).await;
    assert_eq!((b0, inflate(&payload)), (0x80 | RSV1 | 2, b"tiny".to_vec()));
    stream.write_all(&frame(0x81, b"plain")).await.unwrap();
    let (b0, payload) = read_data(&mut stream).await;
    assert_eq!((b0, inflate(&payload)), (0x80 | RSV1 | 1, b"plain".to_vec()));
    // Invalid UTF-8 inside compressed text: 1007.
    stream.write_all(&frame(0x80 | RSV1 | 1, &deflate(b"ok\xff"))).await.unwrap();
    assert_eq!(close_code(&mut stream).await, Some(1007));

    // server_max_window_bits below 15 is honoured: replies compressed within a 512-byte
    // window; 8 (which zlib cannot make for raw DEFLATE): replies plain.
    let offer = "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=9\r\n";
    let (mut stream, answer) = raw_ws(server.addr, "/echo", offer).await;
    assert_eq!(answer, Some(format!("{ANSWER}; server_max_window_bits=9")));
    stream.write_all(&frame(0x80 | RSV1 | 1, &deflate(text.as_bytes()))).await.unwrap();
    let (b0, payload) = read_data(&mut stream).await;
    assert_eq!(b0, 0x80 | RSV1 | 1);
    let mut small = Decompress::new_with_window_bits(false, 9);
    let mut input = payload.clone();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(4096);
    small.decompress_vec(&input, &mut out, FlushDecompress::Sync).unwrap();
    assert_eq!(out, text.as_bytes(), "inflates with a 9-bit window");
    let offer = "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8\r\n";
    let (mut stream, answer) = raw_ws(server.addr, "/echo", offer).await;
    assert_eq!(answer, Some(format!("{ANSWER}; server_max_window_bits=8")));
    stream.write_all(&frame(0x80 | RSV1 | 1, &deflate(text.as_bytes()))).await.unwrap();
    assert_eq!(read_data(&mut stream).await, (0x81, text.into_bytes()));
}

/// This process's resident set, in bytes (`VmRSS` of /proc/self/status).
fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kib: usize = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

#[tokio::test]
async fn a_zip_bomb_gets_1009_without_a_memory_spike() {
    const MIB: usize = 1 << 20;
    let _serial = SERIAL.lock().await;
    // 1 MiB messages; each bomb is ~250 KiB on the wire and inflates to 256 MiB.
    let server = start_with(roomcast::config::Config {
        frame_bytes_max: MIB,
        message_bytes_max: MIB,
        ..config(1)
    });
    let bomb = deflate_repeated(&vec![0u8; MIB], 256);
    assert!(bomb.len() < MIB, "{}", bomb.len());
    let bomb = frame(0x80 | RSV1 | 2, &bomb);
    let offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n";
    let mut streams = Vec::new();
    for _ in 0..8 {
        streams.push(raw_ws(server.addr, "/echo", offer).await.0);
    }
    let before = rss_bytes();
    for stream in &mut streams {
        stream.write_all(&bomb).await.unwrap();
    }
    for stream in &mut streams {
        assert_eq!(close_code(stream).await, Some(1009));
    }
    let grown = rss_bytes().saturating_sub(before);
    assert!(grown < 48 * MIB, "8 bombs grew the process by {} MiB", grown / MIB);
    // A message just under the bound still inflates.
    let (mut stream, _) = raw_ws(server.addr, "/echo", offer).await;
    let fits = deflate(&vec![b'a'; MIB - 16]);
    stream.write_all(&frame(0x80 | RSV1 | 2, &fits)).await.unwrap();
    let (b0, payload) = read_data(&mut stream).await;
    assert_eq!(b0, 0x80 | RSV1 | 2);
    assert_eq!(inflate(&payload).len(), MIB - 16);
}

#[tokio::test]
async fn a_broadcast_is_compressed_for_deflate_clients_shared_and_plain_for_others() {
    let _serial = SERIAL.lock().await;
    let server = start(2);
    let addr = server.addr;
    let room = create_room(addr, "mixed", &["alice", "bob", "carol"]).await;
    let offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n";
    let auth = |user: &str| format!("Authorization: Bearer {}\r\n", user_token(user));
    let (mut alice, answer) =
        raw_ws(addr, "/api/v1/events", &format!("{}{offer}", auth("alice"))).await;
    assert_eq!(answer.as_deref(), Some(ANSWER));
    let (mut carol, _) = raw_ws(addr, "/api/v1/events", &format!("{}{offer}", auth("carol"))).await;
    let (mut bob, answer) = raw_ws(addr, "/api/v1/events", &auth("bob")).await;
    assert_eq!(answer, None);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A realistic chat message: its Virola frame is well over the threshold.
    let text = "Hey team, the build for release 1.4.2 is green on all platforms. I have \
                uploaded the artifacts to the usual place; please check the changelog and \
                tell me if anything is missing before we tag it tomorrow morning. Thanks!";
    post_message(addr, room, "bob", text).await;
    let (b0, plain) = read_event(&mut bob, "TextMessagesCreated").await;
    assert_eq!(b0, 0x81, "a plain client gets a plain frame");
    let (b0, compressed) = read_event(&mut alice, "TextMessagesCreated").await;
    assert_eq!(b0, 0x80 | RSV1 | 1, "a deflate client gets a compressed frame");
    assert!(compressed.len() < plain.len(), "{} vs {}", compressed.len(), plain.len());
    assert_eq!(inflate(&compressed), plain, "the same event");
    let event: serde_json::Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(event["data"]["messages"][0]["text"], serde_json::json!(text));
    let (b0, other) = read_event(&mut carol, "TextMessagesCreated").await;
    assert_eq!(b0, 0x80 | RSV1 | 1);
    assert_eq!(other, compressed, "every deflate subscriber gets the same compressed bytes");
}
