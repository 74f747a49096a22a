//! Prebuilt server frames: header and payload encoded once into a single `Bytes`.
//!
//! Owns: encoding unmasked, FIN-set server frames (text, binary, ping, pong, close) so that
//! one encoded frame can be shared by many recipients (cloning a `Bytes` is a refcount bump).
//!
//! Invariants: every returned `Bytes` is a complete frame ready to write to a socket;
//! control frames never exceed 125 payload bytes (`ping`/`pong` truncate longer payloads,
//! `close` truncates its reason on a char boundary). [`text_from_writer`] costs exactly one
//! allocation and no copy of the payload.
//!
//! Limits: no fragmentation, no masking (server → client only), no extensions.

use bytes::Bytes;

use super::header::{
    frame_header_len, CONTROL_PAYLOAD_MAX as CONTROL_MAX, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG,
    OP_TEXT,
};

/// Largest header of an unmasked frame (2 + 8 byte extended length).
const HEADER_MAX: usize = 10;

/// Write the header for `opcode`/`len` into `out`, which must be exactly
/// `frame_header_len(len)` bytes long.
fn write_header(out: &mut [u8], opcode: u8, len: usize) {
    out[0] = 0x80 | opcode;
    match out.len() {
        2 => out[1] = len as u8,
        4 => {
            out[1] = 126;
            out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out[1] = 127;
            out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

/// Encode one frame with the given opcode and payload.
fn encode(opcode: u8, payload: &[u8]) -> Bytes {
    let header_len = frame_header_len(payload.len());
    let mut out = vec![0u8; header_len];
    out.reserve_exact(payload.len());
    write_header(&mut out, opcode, payload.len());
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// A text frame; `payload` must be valid UTF-8 (the caller's responsibility).
pub fn text(payload: &[u8]) -> Bytes {
    debug_assert!(std::str::from_utf8(payload).is_ok());
    encode(OP_TEXT, payload)
}

/// A binary frame.
pub fn binary(payload: &[u8]) -> Bytes {
    encode(OP_BINARY, payload)
}

/// A ping frame; payloads over 125 bytes are truncated.
pub fn ping(payload: &[u8]) -> Bytes {
    encode(OP_PING, &payload[..payload.len().min(CONTROL_MAX)])
}

/// A pong frame; payloads over 125 bytes are truncated.
pub fn pong(payload: &[u8]) -> Bytes {
    encode(OP_PONG, &payload[..payload.len().min(CONTROL_MAX)])
}

/// A close frame with `code` and `reason`, the reason truncated on a char boundary so the
/// payload fits in 125 bytes.
pub fn close(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(CONTROL_MAX - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = [0u8; CONTROL_MAX];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    encode(OP_CLOSE, &payload[..2 + end])
}

/// A text frame whose payload is written by `f` straight into the frame's buffer.
///
/// Reserves the largest header (10 bytes) in front, lets `f` append the payload (e.g. with
/// `serde_json::to_writer`), then writes the real header right-aligned before the payload
/// and returns the frame sliced to start at it: one allocation, no copy. `f` must write
/// valid UTF-8 and must only append.
pub fn text_from_writer(f: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    text_from_writer_with_capacity(256, f)
}

/// [`text_from_writer`] with a buffer of `capacity` bytes (header included) to start with, for
/// payloads known to be larger than a few hundred bytes (no copy as the buffer grows).
pub fn text_from_writer_with_capacity(capacity: usize, f: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    let mut out = Vec::with_capacity(capacity.max(HEADER_MAX));
    out.resize(HEADER_MAX, 0);
    f(&mut out);
    let payload_len = out.len().saturating_sub(HEADER_MAX);
    debug_assert!(std::str::from_utf8(&out[HEADER_MAX..]).is_ok());
    let start = HEADER_MAX - frame_header_len(payload_len);
    write_header(&mut out[start..HEADER_MAX], OP_TEXT, payload_len);
    Bytes::from(out).slice(start..)
}

/// Two text frames back to back in one buffer (one allocation of about `capacity` bytes), their
/// payloads written by `first` then `second` as in [`text_from_writer`]: once the second
/// payload's length is known, the first frame moves right over the unused part of the second's
/// reserved header (at most 8 bytes), a `memmove` of the first frame instead of copying both.
pub fn text_pair_from_writers(
    capacity: usize,
    first: impl FnOnce(&mut Vec<u8>),
    second: impl FnOnce(&mut Vec<u8>),
) -> Bytes {
    let mut out = Vec::with_capacity(capacity.max(2 * HEADER_MAX));
    out.resize(HEADER_MAX, 0);
    first(&mut out);
    let first_end = out.len();
    let first_len = first_end - HEADER_MAX;
    out.resize(first_end + HEADER_MAX, 0);
    second(&mut out);
    let second_len = out.len() - first_end - HEADER_MAX;
    debug_assert!(std::str::from_utf8(&out[HEADER_MAX..first_end]).is_ok());
    debug_assert!(std::str::from_utf8(&out[first_end + HEADER_MAX..]).is_ok());
    let start = HEADER_MAX - frame_header_len(first_len);
    write_header(&mut out[start..HEADER_MAX], OP_TEXT, first_len);
    let gap = HEADER_MAX - frame_header_len(second_len);
    write_header(&mut out[first_end + gap..first_end + HEADER_MAX], OP_TEXT, second_len);
    out.copy_within(start..first_end, start + gap);
    Bytes::from(out).slice(start + gap..)
}

/// The payload of a complete unmasked frame built by this module (tests and tools read frames
/// back with it).
pub fn payload(frame: &[u8]) -> &[u8] {
    let start = match frame.get(1).map(|b| b & 0x7f) {
        Some(126) => 4,
        Some(127) => 10,
        _ => 2,
    };
    frame.get(start..).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::codec::{Decoder, Incoming, WsLimits};
    use crate::ws::header::apply_mask;
    use bytes::BytesMut;

    /// Turn a server frame into the equivalent masked client frame.
    fn mask_server_frame(frame: &[u8]) -> Vec<u8> {
        let header_len = match frame[1] & 0x7F {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        let key = [0xA1, 0x02, 0xB3, 0x44];
        let mut out = frame[..header_len].to_vec();
        out[1] |= 0x80;
        out.extend_from_slice(&key);
        let start = out.len();
        out.extend_from_slice(&frame[header_len..]);
        apply_mask(&mut out[start..], key);
        out
    }

    fn round_trip(frame: &Bytes) -> Incoming {
        let limits = WsLimits { frame_bytes_max: 1 << 20, message_bytes_max: 1 << 20 };
        let mut buf = BytesMut::from(&mask_server_frame(frame)[..]);
        let item = Decoder::new(limits).decode(&mut buf);
        assert!(buf.is_empty());
        item.ok().flatten().expect("one complete frame")
    }

    #[test]
    fn round_trips() {
        let large = "x".repeat(70_000);
        let mid = "y".repeat(300);
        for s in ["", "hi", mid.as_str(), large.as_str()] {
            let want = Incoming::Text(Bytes::copy_from_slice(s.as_bytes()));
            assert_eq!(round_trip(&text(s.as_bytes())), want);
            let frame = text(s.as_bytes());
            assert_eq!(frame.len(), frame_header_len(s.len()) + s.len());
        }
        let want = Incoming::Binary(Bytes::from_static(&[9, 8]));
        assert_eq!(round_trip(&binary(&[9, 8])), want);
        let want = Incoming::Ping(Bytes::from_static(b"p"));
        assert_eq!(round_trip(&ping(b"p")), want);
        let want = Incoming::Pong(Bytes::from(vec![1; 125]));
        assert_eq!(round_trip(&pong(&[1; 200])), want);
    }

    #[test]
    fn close_truncates_on_char_boundary() {
        let reason = "é".repeat(100); // 200 bytes, 2 bytes per char
        let Incoming::Close { code, reason } = round_trip(&close(1001, &reason)) else {
            panic!("expected close");
        };
        assert_eq!(code, Some(1001));
        assert_eq!(reason.len(), 122);
        let short = round_trip(&close(1000, "bye"));
        let want = Incoming::Close { code: Some(1000), reason: Bytes::from_static(b"bye") };
        assert_eq!(short, want);
    }

    #[test]
    fn text_from_writer_matches_text() {
        for n in [0usize, 5, 125, 126, 65_535, 65_536] {
            let payload = "a".repeat(n);
            let framed = text_from_writer(|v| v.extend_from_slice(payload.as_bytes()));
            assert_eq!(framed, text(payload.as_bytes()), "len {n}");
        }
        let value = serde_json::json!({"type": "msg", "body": "hé"});
        let framed = text_from_writer(|v| {
            let _ = serde_json::to_writer(&mut *v, &value);
        });
        let want = Incoming::Text(Bytes::from(value.to_string()));
        assert_eq!(round_trip(&framed), want);
    }

    #[test]
    fn text_pair_from_writers_matches_two_texts() {
        let sizes = [0usize, 5, 125, 126, 65_535, 65_536];
        for a in sizes {
            for b in sizes {
                let (pa, pb) = ("a".repeat(a), "é".repeat(b / 2));
                let framed = text_pair_from_writers(
                    16,
                    |v| v.extend_from_slice(pa.as_bytes()),
                    |v| v.extend_from_slice(pb.as_bytes()),
                );
                let want = [text(pa.as_bytes()), text(pb.as_bytes())].concat();
                assert_eq!(framed, want, "lens {a} {b}");
            }
        }
    }
}
