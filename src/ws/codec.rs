//! Server-side RFC 6455 frame decoder over caller-owned buffers (no IO), with
//! permessage-deflate (RFC 7692, no context takeover) when negotiated.
//!
//! Owns: consuming client frames from the front of a `BytesMut` read buffer, unmasking,
//! reassembling fragmented messages, UTF-8 and close-frame validation (header-level checks
//! live in the sibling `header` module). Target: Autobahn TestSuite cases 1–10.
//!
//! Invariants:
//! - A [`Decoder`] is small (a few words) and holds no buffer while idle: the partial
//!   fragmented message lives in a `BytesMut` that is empty (no allocation) between messages.
//! - Every check that the frame header alone allows (RSV, opcode, mask bit, control frame
//!   FIN/length, fragmentation state, frame and message size limits) is made as soon as the
//!   header bytes are present, before any payload is buffered.
//! - [`Incoming::Text`] always holds valid UTF-8. Fragmented text is validated fragment by
//!   fragment (fail fast); an incomplete trailing code point is carried to the next fragment.
//! - Unfragmented Text/Binary payloads are unmasked in place and split off the read buffer
//!   without copying (the returned `Bytes` shares the read buffer's allocation).
//! - Nothing a peer sends can panic; every violation is a [`WsError`] carrying the close code
//!   to send. After an error the decoder state is unspecified: close the connection.
//!
//! - A compressed message (RSV1 on its first frame, only when negotiated: else 1002) is
//!   inflated once complete, with a fresh (reset) decompressor, into at most
//!   `message_bytes_max` bytes (else 1009, having held no more than that); its text is
//!   UTF-8-checked then (no fail-fast inside compressed text).
//!
//! Limits: UTF-8 fail-fast works at fragment granularity; an invalid sequence inside a single
//! frame that is still arriving is reported once the whole frame is buffered.

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};

use super::close::{
    is_valid_close_code_from_peer, CLOSE_INVALID_PAYLOAD, CLOSE_PROTOCOL_ERROR, CLOSE_TOO_BIG,
};
use super::deflate::{inflate, InflateError};
use super::header::{
    apply_mask, parse_header, Header, MessageState, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT,
};

/// Size bounds applied by a [`Decoder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsLimits {
    /// Largest payload a single frame header may announce (else close 1009).
    pub frame_bytes_max: usize,
    /// Largest assembled message payload (else close 1009).
    pub message_bytes_max: usize,
}

impl Default for WsLimits {
    /// 64 KiB per frame and per message.
    fn default() -> Self {
        Self { frame_bytes_max: 64 * 1024, message_bytes_max: 64 * 1024 }
    }
}

/// One complete item decoded from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A complete text message; guaranteed valid UTF-8.
    Text(Bytes),
    /// A complete binary message.
    Binary(Bytes),
    /// A ping; the caller should answer with a pong carrying the same payload.
    Ping(Bytes),
    /// An unsolicited or answering pong.
    Pong(Bytes),
    /// A close frame; `code` is `None` for an empty payload, `reason` is valid UTF-8.
    Close {
        /// Close code sent by the peer (already validated), if any.
        code: Option<u16>,
        /// UTF-8 reason text (possibly empty).
        reason: Bytes,
    },
}

/// A protocol violation: close the connection with `close_code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsError {
    /// Close code to send to the peer (1002, 1007 or 1009).
    pub close_code: u16,
    /// Short static description, usable as the close reason.
    pub reason: &'static str,
}

impl WsError {
    const fn new(close_code: u16, reason: &'static str) -> Self {
        Self { close_code, reason }
    }
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "websocket error {}: {}", self.close_code, self.reason)
    }
}

impl std::error::Error for WsError {}

const ERR_CLOSE_LEN_1: WsError = WsError::new(CLOSE_PROTOCOL_ERROR, "close payload of 1 byte");
const ERR_CLOSE_CODE: WsError = WsError::new(CLOSE_PROTOCOL_ERROR, "invalid close code");
const ERR_STRAY_CONTINUATION: WsError =
    WsError::new(CLOSE_PROTOCOL_ERROR, "continuation without message");
const ERR_UTF8: WsError = WsError::new(CLOSE_INVALID_PAYLOAD, "invalid UTF-8 in text");
const ERR_CLOSE_UTF8: WsError = WsError::new(CLOSE_INVALID_PAYLOAD, "invalid UTF-8 in reason");
const ERR_INFLATED_TOO_BIG: WsError = WsError::new(CLOSE_TOO_BIG, "inflated message too big");
const ERR_INFLATE: WsError = WsError::new(CLOSE_INVALID_PAYLOAD, "invalid compressed data");

/// Kind of the fragmented data message in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MessageKind {
    Text,
    Binary,
}

/// Per-connection decode state (small; no buffer while idle).
#[derive(Debug)]
pub struct Decoder {
    limits: WsLimits,
    /// Kind of the fragmented message in progress, if any.
    fragmented: Option<MessageKind>,
    /// Unmasked payload of the fragmented message so far; empty (unallocated) when idle.
    partial: BytesMut,
    /// Prefix of `partial` known to be complete, valid UTF-8 (text messages only).
    utf8_checked: usize,
    /// permessage-deflate was negotiated (RSV1 allowed on a message's first frame).
    deflate: bool,
    /// The fragmented message in progress is compressed (`partial` holds compressed bytes).
    compressed: bool,
}

impl Decoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: WsLimits) -> Self {
        Self {
            limits,
            fragmented: None,
            partial: BytesMut::new(),
            utf8_checked: 0,
            deflate: false,
            compressed: false,
        }
    }

    /// The same decoder accepting compressed messages (permessage-deflate negotiated) or not.
    pub fn with_deflate(mut self, deflate: bool) -> Self {
        self.deflate = deflate;
        self
    }

    /// True when no fragmented message is in progress (the decoder holds nothing).
    pub fn is_idle(&self) -> bool {
        self.fragmented.is_none()
    }

    /// Decode from the front of `buf`, consuming the bytes of every frame it uses.
    ///
    /// Returns `Ok(Some(_))` for one complete message or control frame (call again: more
    /// may be buffered), `Ok(None)` when more bytes are needed (non-final fragments are
    /// absorbed into the decoder), or `Err` with the close code to send.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, WsError> {
        loop {
            let state = MessageState {
                in_message: self.fragmented.is_some(),
                message_len: self.partial.len(),
                deflate: self.deflate,
            };
            let Some(header) = parse_header(buf, &self.limits, state)? else {
                return Ok(None);
            };
            if buf.len() - header.header_len < header.payload_len {
                return Ok(None);
            }
            buf.advance(header.header_len);
            if let Some(item) = self.take_frame(header, buf)? {
                return Ok(Some(item));
            }
        }
    }

    /// Consume the (complete, buffered) payload of the frame described by `header`.
    fn take_frame(
        &mut self,
        header: Header,
        buf: &mut BytesMut,
    ) -> Result<Option<Incoming>, WsError> {
        let len = header.payload_len;
        apply_mask(&mut buf[..len], header.mask);
        match header.opcode {
            OP_PING => Ok(Some(Incoming::Ping(copy_control(buf, len)))),
            OP_PONG => Ok(Some(Incoming::Pong(copy_control(buf, len)))),
            OP_CLOSE => parse_close(copy_control(buf, len)).map(Some),
            OP_TEXT | OP_BINARY if header.fin && header.rsv1 => {
                let kind =
                    if header.opcode == OP_TEXT { MessageKind::Text } else { MessageKind::Binary };
                let inflated = self.inflate(kind, &buf[..len]);
                buf.advance(len);
                inflated.map(Some)
            }
            OP_TEXT | OP_BINARY if header.fin => {
                let payload = buf.split_to(len).freeze();
                if header.opcode == OP_BINARY {
                    return Ok(Some(Incoming::Binary(payload)));
                }
                std::str::from_utf8(&payload).map_err(|_| ERR_UTF8)?;
                Ok(Some(Incoming::Text(payload)))
            }
            _ => self.take_fragment(header, buf),
        }
    }

    /// Append a data fragment (first, middle or last) to the message in progress.
    fn take_fragment(
        &mut self,
        header: Header,
        buf: &mut BytesMut,
    ) -> Result<Option<Incoming>, WsError> {
        let kind = match (header.opcode, self.fragmented) {
            (OP_TEXT, _) => MessageKind::Text,
            (OP_BINARY, _) => MessageKind::Binary,
            (_, Some(kind)) => kind,
            (_, None) => return Err(ERR_STRAY_CONTINUATION),
        };
        if self.fragmented.is_none() {
            self.compressed = header.rsv1;
        }
        self.fragmented = Some(kind);
        self.partial.extend_from_slice(&buf[..header.payload_len]);
        buf.advance(header.payload_len);
        if kind == MessageKind::Text && !self.compressed {
            self.check_utf8_progress()?;
        }
        if !header.fin {
            return Ok(None);
        }
        if self.compressed {
            let compressed = std::mem::take(&mut self.partial);
            self.fragmented = None;
            self.compressed = false;
            return self.inflate(kind, &compressed).map(Some);
        }
        if kind == MessageKind::Text && self.utf8_checked != self.partial.len() {
            return Err(ERR_UTF8); // message ends inside a code point
        }
        let payload = std::mem::take(&mut self.partial).freeze();
        self.fragmented = None;
        self.utf8_checked = 0;
        Ok(Some(match kind {
            MessageKind::Text => Incoming::Text(payload),
            MessageKind::Binary => Incoming::Binary(payload),
        }))
    }

    /// A complete compressed message, inflated within `message_bytes_max` and checked.
    fn inflate(&self, kind: MessageKind, compressed: &[u8]) -> Result<Incoming, WsError> {
        let payload = inflate(compressed, self.limits.message_bytes_max).map_err(|e| match e {
            InflateError::TooBig => ERR_INFLATED_TOO_BIG,
            InflateError::Corrupt => ERR_INFLATE,
        })?;
        Ok(match kind {
            MessageKind::Text => {
                std::str::from_utf8(&payload).map_err(|_| ERR_UTF8)?;
                Incoming::Text(Bytes::from(payload))
            }
            MessageKind::Binary => Incoming::Binary(Bytes::from(payload)),
        })
    }

    /// Validate the not-yet-checked tail of `partial`, tolerating an incomplete last char.
    fn check_utf8_progress(&mut self) -> Result<(), WsError> {
        match std::str::from_utf8(&self.partial[self.utf8_checked..]) {
            Ok(_) => self.utf8_checked = self.partial.len(),
            Err(e) if e.error_len().is_none() => self.utf8_checked += e.valid_up_to(),
            Err(_) => return Err(ERR_UTF8),
        }
        Ok(())
    }
}

/// Copy a (≤ 125 byte) control payload out of `buf` so the read buffer stays unshared.
fn copy_control(buf: &mut BytesMut, len: usize) -> Bytes {
    let payload = Bytes::copy_from_slice(&buf[..len]);
    buf.advance(len);
    payload
}

/// Validate a close frame payload: empty, or a valid code plus a UTF-8 reason.
fn parse_close(payload: Bytes) -> Result<Incoming, WsError> {
    let code = match *payload {
        [] => return Ok(Incoming::Close { code: None, reason: Bytes::new() }),
        [_] => return Err(ERR_CLOSE_LEN_1),
        [hi, lo, ..] => u16::from_be_bytes([hi, lo]),
    };
    if !is_valid_close_code_from_peer(code) {
        return Err(ERR_CLOSE_CODE);
    }
    let reason = payload.slice(2..);
    std::str::from_utf8(&reason).map_err(|_| ERR_CLOSE_UTF8)?;
    Ok(Incoming::Close { code: Some(code), reason })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::header::{ERR_FRAME_TOO_BIG, ERR_MESSAGE_TOO_BIG, ERR_RSV as ERR_RSV_TEST};

    const FIN: u8 = 0x80;
    const KEY: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

    /// A masked client frame: `b0` is FIN|RSV|opcode, the payload is masked with `KEY`.
    fn client(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![b0];
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
        out.extend_from_slice(&KEY);
        let start = out.len();
        out.extend_from_slice(payload);
        apply_mask(&mut out[start..], KEY);
        out
    }

    fn cat(frames: &[Vec<u8>]) -> Vec<u8> {
        frames.concat()
    }

    type Outcome = Vec<Result<Incoming, WsError>>;

    /// Drain `dec` over `buf`, stopping at the first error.
    fn drain(dec: &mut Decoder, buf: &mut BytesMut, out: &mut Outcome) -> bool {
        loop {
            match dec.decode(buf) {
                Ok(Some(item)) => out.push(Ok(item)),
                Ok(None) => return true,
                Err(e) => {
                    out.push(Err(e));
                    return false;
                }
            }
        }
    }

    fn run_whole(input: &[u8], limits: WsLimits) -> Outcome {
        let (mut dec, mut out) = (Decoder::new(limits), Vec::new());
        drain(&mut dec, &mut BytesMut::from(input), &mut out);
        out
    }

    fn run_bytewise(input: &[u8], limits: WsLimits) -> Outcome {
        let (mut dec, mut out, mut buf) = (Decoder::new(limits), Vec::new(), BytesMut::new());
        for &byte in input {
            buf.extend_from_slice(&[byte]);
            if !drain(&mut dec, &mut buf, &mut out) {
                break;
            }
        }
        out
    }

    /// Whole-buffer and byte-at-a-time feeding must both give `expected`.
    fn check_with(input: &[u8], limits: WsLimits, expected: &[Result<Incoming, WsError>]) {
        assert_eq!(run_whole(input, limits), expected, "whole buffer");
        assert_eq!(run_bytewise(input, limits), expected, "byte at a time");
    }

    fn check(input: &[u8], expected: &[Result<Incoming, WsError>]) {
        check_with(input, WsLimits::default(), expected);
    }

    fn text(s: &[u8]) -> Result<Incoming, WsError> {
        Ok(Incoming::Text(Bytes::copy_from_slice(s)))
    }

    fn err(code: u16) -> impl Fn(&Outcome) -> bool {
        move |out| matches!(out.last(), Some(Err(e)) if e.close_code == code)
    }

    fn close(code: Option<u16>, reason: &str) -> Result<Incoming, WsError> {
        let reason = Bytes::copy_from_slice(reason.as_bytes());
        Ok(Incoming::Close { code, reason })
    }

    #[test]
    fn valid_frames() {
        let bin = Ok(Incoming::Binary(Bytes::from_static(&[0, 1, 2])));
        let ping = Ok(Incoming::Ping(Bytes::from_static(b"p")));
        let pong = Ok(Incoming::Pong(Bytes::new()));
        let long = vec![b'a'; 300];
        let table: Vec<(Vec<u8>, Outcome)> = vec![
            (client(FIN | 1, b"hello"), vec![text(b"hello")]),
            (client(FIN | 1, b""), vec![text(b"")]),
            (client(FIN | 2, &[0, 1, 2]), vec![bin]),
            (client(FIN | 9, b"p"), vec![ping.clone()]),
            (client(FIN | 0xA, b""), vec![pong]),
            (client(FIN | 1, &long), vec![text(&long)]),
            (client(FIN | 8, b""), vec![close(None, "")]),
            (client(FIN | 8, b"\x03\xe8bye"), vec![close(Some(1000), "bye")]),
            (client(FIN | 8, b"\x0f\xa0"), vec![close(Some(4000), "")]),
            (cat(&[client(FIN | 9, b"p"), client(FIN | 1, b"x")]), vec![ping, text(b"x")]),
        ];
        for (input, expected) in table {
            check(&input, &expected);
        }
    }

    #[test]
    fn protocol_errors() {
        let mut unmasked = client(FIN | 1, b"hi");
        unmasked[1] &= 0x7F;
        let mut msb = vec![FIN | 2, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1];
        msb.extend_from_slice(&KEY);
        let table: Vec<(Vec<u8>, u16)> = vec![
            (unmasked, 1002),
            (client(FIN | 0x40 | 1, b"x"), 1002),
            (client(FIN | 0x10 | 2, b"x"), 1002),
            (client(FIN | 3, b""), 1002),
            (client(FIN | 0xB, b""), 1002),
            (client(9, b"p"), 1002),
            (client(FIN | 9, &[0; 126]), 1002),
            (client(FIN, b"x"), 1002),
            (cat(&[client(1, b"a"), client(FIN | 1, b"b")]), 1002),
            (cat(&[client(2, b"a"), client(FIN | 2, b"b")]), 1002),
            (client(FIN | 8, b"\x03"), 1002),
            (client(FIN | 8, b"\x03\xed"), 1002), // 1005
            (client(FIN | 8, b"\x03\xf4"), 1002), // 1012
            (client(FIN | 8, b"\x03\xe8\xff"), 1007),
            (client(FIN | 1, b"\xff"), 1007),
            (client(FIN | 1, b"ok\xed\xa0\x80"), 1007), // surrogate
            (msb, 1002),
        ];
        for (input, code) in table {
            for out in
                [run_whole(&input, WsLimits::default()), run_bytewise(&input, WsLimits::default())]
            {
                assert!(err(code)(&out), "{input:02x?} gave {out:?}, want {code}");
            }
        }
    }

    #[test]
    fn fragmented_with_interleaved_ping() {
        let input = cat(&[
            client(1, b"he"),
            client(0, b"l"),
            client(FIN | 9, b"p"),
            client(FIN, b"lo"),
            client(2, b"\x01"),
            client(FIN, b"\x02"),
        ]);
        let ping = Ok(Incoming::Ping(Bytes::from_static(b"p")));
        let bin = Ok(Incoming::Binary(Bytes::from_static(&[1, 2])));
        check(&input, &[ping, text(b"hello"), bin]);
    }

    #[test]
    fn utf8_across_fragments() {
        // "€" = E2 82 AC split across fragments is fine.
        let split = cat(&[client(1, b"a\xe2"), client(0, b"\x82"), client(FIN, b"\xac")]);
        check(&split, &[text("a€".as_bytes())]);
        // Message ending inside a code point.
        check(&cat(&[client(1, b"a"), client(FIN, b"\xe2\x82")]), &[Err(ERR_UTF8)]);
        // Fail fast: the error surfaces after fragment 2, before any final fragment exists.
        check(&cat(&[client(1, b"ok"), client(0, b"\xe2\x28")]), &[Err(ERR_UTF8)]);
        check(&client(1, b"\xc0\xaf"), &[Err(ERR_UTF8)]);
    }

    #[test]
    fn too_big_from_header() {
        let limits = WsLimits { frame_bytes_max: 100, message_bytes_max: 150 };
        // Only the header is present: the error must not wait for the payload.
        let header_only = &client(FIN | 2, &[0; 101])[..8];
        check_with(header_only, limits, &[Err(ERR_FRAME_TOO_BIG)]);
        let big64 = [FIN | 2, 0x80 | 127, 0, 0, 0, 1, 0, 0, 0, 0];
        check_with(&big64, limits, &[Err(ERR_FRAME_TOO_BIG)]);
        let msg = cat(&[client(2, &[0; 100]), client(FIN, &[0; 51])]);
        check_with(&msg[..110], limits, &[Err(ERR_MESSAGE_TOO_BIG)]);
        let exact = cat(&[client(2, &[7; 100]), client(FIN, &[7; 50])]);
        check_with(&exact, limits, &[Ok(Incoming::Binary(vec![7; 150].into()))]);
        let large = vec![b'z'; 70_000];
        let wide = WsLimits { frame_bytes_max: 70_000, message_bytes_max: 70_000 };
        check_with(&client(FIN | 1, &large), wide, &[text(&large)]);
    }

    fn deflated(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        crate::ws::deflate::deflate_into(data, 15, &mut out);
        out
    }

    fn run_deflate(input: &[u8], limits: WsLimits) -> Outcome {
        let (mut dec, mut out) = (Decoder::new(limits).with_deflate(true), Vec::new());
        drain(&mut dec, &mut BytesMut::from(input), &mut out);
        let (mut dec, mut bytewise, mut buf) =
            (Decoder::new(limits).with_deflate(true), Vec::new(), BytesMut::new());
        for &byte in input {
            buf.extend_from_slice(&[byte]);
            if !drain(&mut dec, &mut buf, &mut bytewise) {
                break;
            }
        }
        assert_eq!(out, bytewise, "byte at a time");
        out
    }

    #[test]
    fn compressed_messages() {
        const RSV1: u8 = 0x40;
        let hello = deflated(b"hello hello hello");
        let limits = WsLimits::default();
        let (head, tail) = hello.split_at(hello.len() / 2);
        let table: Vec<(Vec<u8>, Outcome)> = vec![
            (client(FIN | RSV1 | 1, &hello), vec![text(b"hello hello hello")]),
            (
                client(FIN | RSV1 | 2, &hello),
                vec![Ok(Incoming::Binary(Bytes::from_static(b"hello hello hello")))],
            ),
            // Fragmented: RSV1 on the first frame only; a ping in between.
            (
                cat(&[client(RSV1 | 1, head), client(FIN | 9, b"p"), client(FIN, tail)]),
                vec![Ok(Incoming::Ping(Bytes::from_static(b"p"))), text(b"hello hello hello")],
            ),
            // A plain message between compressed ones.
            (
                cat(&[client(FIN | RSV1 | 1, &hello), client(FIN | 1, b"x")]),
                vec![text(b"hello hello hello"), text(b"x")],
            ),
            // RSV1 on a continuation or a control frame.
            (cat(&[client(RSV1 | 1, head), client(FIN | RSV1, tail)]), vec![Err(ERR_RSV_TEST)]),
            (cat(&[client(2, head), client(FIN | RSV1, tail)]), vec![Err(ERR_RSV_TEST)]),
            (client(FIN | RSV1 | 9, b""), vec![Err(ERR_RSV_TEST)]),
            (client(FIN | 0x20 | 1, &hello), vec![Err(ERR_RSV_TEST)]),
            // Invalid UTF-8 once inflated, and data that is not DEFLATE.
            (client(FIN | RSV1 | 1, &deflated(b"ok\xff")), vec![Err(ERR_UTF8)]),
            (client(FIN | RSV1 | 1, &[0xff, 0xff, 0xff]), vec![Err(ERR_INFLATE)]),
        ];
        for (input, expected) in table {
            assert_eq!(run_deflate(&input, limits), expected, "{input:02x?}");
        }
        // Without negotiation RSV1 stays a protocol error.
        let plain = run_whole(&client(FIN | RSV1 | 1, &hello), limits);
        assert!(err(1002)(&plain), "{plain:?}");
    }

    #[test]
    fn an_inflated_message_is_bounded() {
        let limits = WsLimits { frame_bytes_max: 4096, message_bytes_max: 100_000 };
        let bomb = deflated(&vec![b'a'; 1 << 20]);
        assert!(bomb.len() < 4096);
        let out = run_deflate(&client(FIN | 0x40 | 1, &bomb), limits);
        assert_eq!(out, vec![Err(ERR_INFLATED_TOO_BIG)]);
        assert_eq!(ERR_INFLATED_TOO_BIG.close_code, 1009);
        let exact = deflated(&vec![b'a'; 100_000]);
        let out = run_deflate(&client(FIN | 0x40 | 1, &exact), limits);
        assert_eq!(out, vec![text(&vec![b'a'; 100_000])]);
    }

    #[test]
    fn unfragmented_payload_is_not_copied_and_decoder_idles_empty() {
        let mut buf = BytesMut::from(&client(FIN | 1, b"zero copy")[..]);
        let start = buf.as_ptr() as usize;
        let mut dec = Decoder::new(WsLimits::default());
        let Ok(Some(Incoming::Text(payload))) = dec.decode(&mut buf) else {
            panic!("expected text");
        };
        assert_eq!(payload.as_ptr() as usize, start + 6);
        let mut buf = BytesMut::from(&cat(&[client(1, b"a"), client(FIN, b"b")])[..]);
        assert_eq!(dec.decode(&mut buf), text(b"ab").map(Some));
        assert_eq!(dec.partial.capacity(), 0);
        assert!(buf.is_empty());
        assert!(std::mem::size_of::<Decoder>() <= 72);
    }
}
