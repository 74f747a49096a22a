//! permessage-deflate (RFC 7692) without context takeover: inflating one client message with a
//! bound on its inflated size, and compressing the messages of prebuilt server frames.
//!
//! Owns: [`inflate`] (a message's compressed payload → its bytes, at most a given size) and
//! [`compress_frames`] (one or several complete server frames → the same frames with each
//! large enough data message compressed, within a given window, and RSV1 set).
//!
//! Invariants:
//! - No context is kept between messages (both sides negotiated `no_context_takeover`): each
//!   message starts from a reset (de)compressor. The (de)compressor itself is one per thread
//!   (a shard's), reused, so no connection ever holds one.
//! - [`inflate`] never holds more than `max + 1` bytes of output, however small the input:
//!   the output starts small and doubles as it fills, capped there, so a zip bomb costs at
//!   most the bound, then [`InflateError::TooBig`].
//! - [`compress_frames`] never compresses control frames, fragments or frames with RSV bits
//!   already set, and keeps a message under the threshold plain, and one that compression
//!   would not make smaller (unless the threshold is 0: then every data message).
//!
//! Limits: compression level 6 (zlib's default), through flate2's zlib-rs backend (pure Rust),
//! which takes windows of 2^9 to 2^15 bytes; the inflater always has a 32 KiB window, enough
//! for whatever window the client chose.

use std::cell::RefCell;

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::header::{frame_header_len, OP_BINARY, OP_TEXT};

/// The bytes RFC 7692 §7.2.1 strips from the end of a compressed message (an empty stored
/// block from a sync flush), and §7.2.2 appends before inflating.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The first output allocation while inflating is at most this (then it doubles).
const INFLATE_CHUNK: usize = 16 * 1024;

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates to more than the bound.
    TooBig,
    /// It is not a valid DEFLATE stream.
    Corrupt,
}

/// Smallest and largest compression window (log2) the compressor can use for raw DEFLATE.
pub const WINDOW_BITS_MIN: u8 = 9;
/// The largest window, 32 KiB: what broadcast frames are compressed with.
pub const WINDOW_BITS_MAX: u8 = 15;

thread_local! {
    static INFLATER: RefCell<Decompress> = RefCell::new(Decompress::new(false));
    /// One compressor per window size, made on first use (each holds its window and hash
    /// tables: a few hundred KiB at 15 bits), per thread.
    static DEFLATERS: RefCell<[Option<Compress>; 7]> = const { RefCell::new([const { None }; 7]) };
}

/// Inflates one message's compressed payload (RFC 7692 §7.2.2: `00 00 ff ff` appended) into
/// at most `max` bytes.
pub fn inflate(compressed: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
    INFLATER.with(|inflater| {
        let mut inflater = inflater.borrow_mut();
        inflater.reset(false);
        inflate_with(&mut inflater, compressed, max)
    })
}

fn inflate_with(
    d: &mut Decompress,
    compressed: &[u8],
    max: usize,
) -> Result<Vec<u8>, InflateError> {
    let first = compressed.len().saturating_mul(4).clamp(256, INFLATE_CHUNK);
    let mut out: Vec<u8> = Vec::with_capacity(first.min(max.saturating_add(1)));
    let (mut body, mut tail): (&[u8], &[u8]) = (compressed, &TAIL);
    loop {
        if out.len() > max {
            return Err(InflateError::TooBig);
        }
        if out.len() == out.capacity() {
            // Grow by doubling (amortised copies), never past one byte over the bound.
            let room = out.len().max(256).min(max + 1 - out.len());
            out.reserve_exact(room);
        }
        let input = if body.is_empty() { tail } else { body };
        let (in_before, out_before) = (d.total_in(), out.len());
        let status = d
            .decompress_vec(input, &mut out, FlushDecompress::Sync)
            .map_err(|_| InflateError::Corrupt)?;
        let consumed = (d.total_in() - in_before) as usize;
        if body.is_empty() {
            tail = &tail[consumed..];
        } else {
            body = &body[consumed..];
        }
        let produced = out.len() - out_before;
        if status == Status::StreamEnd {
            break; // a final block: anything after it is ignored
        }
        let room_left = out.len() < out.capacity();
        let input_left = !body.is_empty() || !tail.is_empty();
        // All input in with room to spare: everything came out. No progress with room to
        // spare: the stream is cut short, and nothing more can come out.
        if room_left && (!input_left || (consumed == 0 && produced == 0)) {
            break;
        }
    }
    if out.len() > max {
        return Err(InflateError::TooBig);
    }
    Ok(out)
}

/// Compresses `payload` as one message: raw DEFLATE with a `2^window_bits`-byte window
/// (clamped to 9..=15), sync-flushed, without the trailing `00 00 ff ff` (RFC 7692 §7.2.1),
/// appended to `out`.
pub fn deflate_into(payload: &[u8], window_bits: u8, out: &mut Vec<u8>) {
    let bits = window_bits.clamp(WINDOW_BITS_MIN, WINDOW_BITS_MAX);
    DEFLATERS.with(|deflaters| {
        let mut deflaters = deflaters.borrow_mut();
        let c = deflaters[usize::from(bits - WINDOW_BITS_MIN)].get_or_insert_with(|| {
            Compress::new_with_window_bits(Compression::default(), false, bits)
        });
        c.reset();
        let mut input = payload;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(input.len() / 2 + 64);
            }
            let before = c.total_in();
            // A compressor with room to write and valid input cannot fail.
            let _ = c.compress_vec(input, out, FlushCompress::Sync);
            input = &input[(c.total_in() - before) as usize..];
            // The sync flush is complete once all input is in and output room was left over.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
    });
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    }
}

/// `frames` (one or several complete, unmasked server frames back to back) with each
/// unfragmented text/binary frame of at least `threshold` payload bytes compressed with a
/// `2^window_bits`-byte window (RSV1 set), unless that would not make it smaller (with
/// `threshold` 0, every such frame, smaller or not). Returns `frames` itself (a refcount
/// bump) when nothing was compressed or the bytes are not a sequence of frames.
pub fn compress_frames(frames: &Bytes, threshold: usize, window_bits: u8) -> Bytes {
    let mut out: Option<Vec<u8>> = None;
    let mut at = 0;
    while at < frames.len() {
        let Some((header_len, payload_len)) = server_frame_at(&frames[at..]) else {
            return frames.clone();
        };
        let (b0, start) = (frames[at], at + header_len);
        let end = start + payload_len;
        let opcode = b0 & 0x0f;
        let data = b0 & 0xf0 == 0x80 && (opcode == OP_TEXT || opcode == OP_BINARY);
        if data && payload_len >= threshold {
            let mut compressed = Vec::with_capacity(payload_len / 2 + 64);
            deflate_into(&frames[start..end], window_bits, &mut compressed);
            if compressed.len() < payload_len || threshold == 0 {
                let out = out.get_or_insert_with(|| {
                    let mut v = Vec::with_capacity(frames.len());
                    v.extend_from_slice(&frames[..at]);
                    v
                });
                push_header(out, b0 | 0x40, compressed.len());
                out.extend_from_slice(&compressed);
                at = end;
                continue;
            }
        }
        if let Some(out) = out.as_mut() {
            out.extend_from_slice(&frames[at..end]);
        }
        at = end;
    }
    out.map_or_else(|| frames.clone(), Bytes::from)
}

/// A complete frame at the front of `buf`: (header length, payload length).
fn server_frame_at(buf: &[u8]) -> Option<(usize, usize)> {
    let b1 = *buf.get(1)?;
    if b1 & 0x80 != 0 {
        return None; // masked: not a server frame
    }
    let (header_len, len) = match b1 & 0x7f {
        126 => (4, usize::from(u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?))),
        127 => (10, usize::try_from(u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?)).ok()?),
        n => (2, usize::from(n)),
    };
    (buf.len() - header_len >= len).then_some((header_len, len))
}

/// Appends an unmasked frame header with first byte `b0` for `len` payload bytes.
fn push_header(out: &mut Vec<u8>, b0: u8, len: usize) {
    out.push(b0);
    match frame_header_len(len) {
        2 => out.push(len as u8),
        4 => {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::frame;

    fn sample(n: usize) -> Vec<u8> {
        let mut s = Vec::new();
        while s.len() < n {
            s.extend_from_slice(
                br#"{"type":"message","room":42,"text":"hello there, general kenobi"},"#,
            );
        }
        s.truncate(n);
        s
    }

    #[test]
    fn round_trip_sizes() {
        for n in [0, 1, 100, 300, 4096, 70_000, 300_000] {
            let data = sample(n);
            for bits in [9, 12, 15] {
                let mut compressed = Vec::new();
                deflate_into(&data, bits, &mut compressed);
                assert_eq!(inflate(&compressed, n).as_deref(), Ok(&data[..]), "{n} {bits}");
                if n > 0 {
                    assert_eq!(inflate(&compressed, n - 1), Err(InflateError::TooBig), "{n}");
                }
                let mut small = Decompress::new_with_window_bits(false, bits);
                let mut input = compressed.clone();
                input.extend_from_slice(&TAIL);
                assert_eq!(inflate_with(&mut small, &input, n).as_deref(), Ok(&data[..]));
            }
        }
    }

    #[test]
    fn the_rfc_examples_inflate() {
        // RFC 7692 §7.2.3.1 and §7.2.3.3: "Hello" compressed, and as a stored block.
        let compressed = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflate(&compressed, 5).as_deref(), Ok(&b"Hello"[..]));
        let stored = [0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00];
        assert_eq!(inflate(&stored, 100).as_deref(), Ok(&b"Hello"[..]));
        // With BFINAL set (§7.2.3.4's final block).
        let last = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        assert_eq!(inflate(&last, 100).as_deref(), Ok(&b"Hello"[..]));
        assert_eq!(inflate(&[], 10).as_deref(), Ok(&b""[..]));
        assert_eq!(inflate(&[0xff, 0xff, 0xff], 10), Err(InflateError::Corrupt));
    }

    #[test]
    fn a_bomb_stops_at_the_bound() {
        let zeros = vec![0u8; 8 << 20];
        let mut bomb = Vec::new();
        deflate_into(&zeros, 15, &mut bomb);
        assert!(bomb.len() < 16 << 10, "{}", bomb.len());
        assert_eq!(inflate(&bomb, 1 << 20), Err(InflateError::TooBig));
        assert_eq!(inflate(&bomb, 8 << 20).map(|v| v.len()), Ok(8 << 20));
    }

    #[test]
    fn compress_frames_compresses_each_data_message_above_the_threshold() {
        let long = sample(300);
        let small = sample(20);
        let frames =
            [frame::text(&long), frame::ping(b"p"), frame::text(&small), frame::binary(&long)]
                .concat();
        let frames = Bytes::from(frames);
        let out = compress_frames(&frames, 128, 15);
        assert!(out.len() < frames.len());
        // Walk the result: compressed, ping, plain, compressed.
        let mut at = 0;
        let mut got = Vec::new();
        while at < out.len() {
            let (h, len) = server_frame_at(&out[at..]).expect("a frame");
            let payload = &out[at + h..at + h + len];
            let plain = if out[at] & 0x40 != 0 {
                inflate(payload, 1 << 20).expect("inflates")
            } else {
                payload.to_vec()
            };
            got.push((out[at] & 0xbf, plain));
            at += h + len;
        }
        let want = vec![(0x81, long.clone()), (0x89, b"p".to_vec()), (0x81, small), (0x82, long)];
        assert_eq!(got, want);
        // Below the threshold, incompressible or not frames: the same bytes back.
        let plain = Bytes::from(frame::text(&sample(100)).to_vec());
        assert_eq!(compress_frames(&plain, 128, 15).as_ptr(), plain.as_ptr());
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..400)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let noisy = frame::binary(&noise);
        assert_eq!(compress_frames(&noisy, 128, 15), noisy);
        // Threshold 0: compressed even when it does not shrink.
        let forced = compress_frames(&noisy, 0, 15);
        assert_eq!(forced[0], 0xC2);
        assert_eq!(inflate(frame::payload(&forced), 1000).as_deref(), Ok(&noise[..]));
        let garbage = Bytes::from_static(&[0x81, 0x7e, 0x01]);
        assert_eq!(compress_frames(&garbage, 0, 15), garbage);
    }
}
