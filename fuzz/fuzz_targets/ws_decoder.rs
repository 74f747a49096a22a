//! `ws::codec::Decoder::decode` under small and large limits, fed whole and in chunks, with
//! permessage-deflate negotiated or not.
//!
//! The first bytes choose the limits, deflate (the low bit of the first) and the chunk sizes;
//! the rest is the client's stream. With deflate, compressed messages are inflated within the
//! message limit (a bomb is an error, never an item past the limit).
//! Invariants: no panic; messages within `message_bytes_max`, control payloads within 125
//! bytes, text and close reasons UTF-8, close codes only as a peer may send; the same items
//! and the same final error whether the stream arrives at once or in pieces; an item,
//! encoded again as a masked client frame, decodes to itself.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use roomcast::ws::close::is_valid_close_code_from_peer;
use roomcast::ws::codec::{Decoder, Incoming, WsError, WsLimits};

/// Decoding ended: the items, and the error or `None` when more bytes were wanted.
type Outcome = (Vec<Incoming>, Option<WsError>);

fn drain(decoder: &mut Decoder, buf: &mut BytesMut, items: &mut Vec<Incoming>) -> Option<WsError> {
    loop {
        match decoder.decode(buf) {
            Ok(Some(item)) => items.push(item),
            Ok(None) => return None,
            Err(e) => return Some(e),
        }
    }
}

fn whole(limits: WsLimits, deflate: bool, stream: &[u8]) -> Outcome {
    let mut decoder = Decoder::new(limits).with_deflate(deflate);
    let mut buf = BytesMut::from(stream);
    let mut items = Vec::new();
    let error = drain(&mut decoder, &mut buf, &mut items);
    (items, error)
}

fn chunked(limits: WsLimits, deflate: bool, stream: &[u8], sizes: &[u8]) -> Outcome {
    let mut decoder = Decoder::new(limits).with_deflate(deflate);
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    let mut rest = stream;
    let mut i = 0;
    while !rest.is_empty() {
        let n = (usize::from(sizes.get(i % sizes.len().max(1)).copied().unwrap_or(1)) % 17 + 1)
            .min(rest.len());
        i += 1;
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        if let Some(e) = drain(&mut decoder, &mut buf, &mut items) {
            return (items, Some(e));
        }
    }
    (items, None)
}

/// A masked client frame carrying `item` whole, and its payload's length.
fn client_frame(item: &Incoming) -> (Vec<u8>, usize) {
    let (opcode, payload): (u8, Vec<u8>) = match item {
        Incoming::Text(p) => (0x1, p.to_vec()),
        Incoming::Binary(p) => (0x2, p.to_vec()),
        Incoming::Ping(p) => (0x9, p.to_vec()),
        Incoming::Pong(p) => (0xA, p.to_vec()),
        Incoming::Close { code: None, .. } => (0x8, Vec::new()),
        Incoming::Close { code: Some(code), reason } => {
            let mut p = code.to_be_bytes().to_vec();
            p.extend_from_slice(reason);
            (0x8, p)
        }
    };
    let key = [0x12, 0x34, 0x56, 0x78];
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    (out, payload.len())
}

fn check(limits: WsLimits, item: &Incoming) {
    match item {
        Incoming::Text(p) => {
            assert!(p.len() <= limits.message_bytes_max);
            assert!(std::str::from_utf8(p).is_ok(), "text is not UTF-8");
        }
        Incoming::Binary(p) => assert!(p.len() <= limits.message_bytes_max),
        Incoming::Ping(p) | Incoming::Pong(p) => assert!(p.len() <= 125),
        Incoming::Close { code, reason } => {
            assert!(reason.len() <= 123);
            assert!(code.is_some() || reason.is_empty());
            assert!(std::str::from_utf8(reason).is_ok(), "close reason is not UTF-8");
            if let Some(code) = code {
                assert!(is_valid_close_code_from_peer(*code), "close code {code}");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [a, b, rest @ ..] = data else { return };
    let deflate = a & 1 == 1;
    let (sizes, stream) = rest.split_at(rest.len().min(4));
    let small =
        WsLimits { frame_bytes_max: usize::from(*a), message_bytes_max: usize::from(*b) * 2 };
    let large = WsLimits { frame_bytes_max: 16 << 20, message_bytes_max: 16 << 20 };
    for limits in [small, large, WsLimits::default()] {
        let at_once = whole(limits, deflate, stream);
        let pieces = chunked(limits, deflate, stream, sizes);
        assert_eq!(at_once, pieces, "whole and chunked differ");
        for item in &at_once.0 {
            check(limits, item);
            let (frame, len) = client_frame(item);
            if len <= limits.frame_bytes_max {
                let (again, error) = whole(limits, deflate, &frame);
                assert_eq!(error, None, "re-encoded {item:?}");
                assert_eq!(again, vec![item.clone()]);
            }
        }
    }
});
