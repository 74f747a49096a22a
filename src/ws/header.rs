//! Frame-header layer of the WebSocket codec: opcodes, masking, and client header parsing.
//!
//! Owns: the opcode constants, [`frame_header_len`] for server frames, [`apply_mask`], and
//! [`parse_header`], which validates everything a client frame header alone can reveal.
//!
//! Invariants: `parse_header` never consumes input and never panics; it reports an error
//! as soon as the offending bit or length is visible (2 bytes for RSV/opcode/mask/control
//! rules, the extended length for size limits), so nothing is buffered for a doomed frame.
//! Limits: headers are not required to use the minimal length encoding.

use super::close::{CLOSE_PROTOCOL_ERROR, CLOSE_TOO_BIG};
use super::codec::{WsError, WsLimits};

pub(crate) const OP_CONTINUATION: u8 = 0x0;
pub(crate) const OP_TEXT: u8 = 0x1;
pub(crate) const OP_BINARY: u8 = 0x2;
pub(crate) const OP_CLOSE: u8 = 0x8;
pub(crate) const OP_PING: u8 = 0x9;
pub(crate) const OP_PONG: u8 = 0xA;

/// Largest payload of a control frame (RFC 6455 §5.5).
pub(crate) const CONTROL_PAYLOAD_MAX: usize = 125;

const fn protocol(reason: &'static str) -> WsError {
    WsError { close_code: CLOSE_PROTOCOL_ERROR, reason }
}

pub(crate) const ERR_RSV: WsError = protocol("reserved bits set");
const ERR_OPCODE: WsError = protocol("unknown opcode");
const ERR_UNMASKED: WsError = protocol("client frame not masked");
const ERR_CONTROL_FRAGMENTED: WsError = protocol("fragmented control frame");
const ERR_CONTROL_TOO_LONG: WsError = protocol("control frame too long");
const ERR_LEN_MSB: WsError = protocol("frame length MSB set");
const ERR_STRAY_CONTINUATION: WsError = protocol("continuation without message");
const ERR_INTERLEAVED_DATA: WsError = protocol("new message inside fragmented message");
pub(crate) const ERR_FRAME_TOO_BIG: WsError =
    WsError { close_code: CLOSE_TOO_BIG, reason: "frame too big" };
pub(crate) const ERR_MESSAGE_TOO_BIG: WsError =
    WsError { close_code: CLOSE_TOO_BIG, reason: "message too big" };

/// Header length of an unmasked (server) frame carrying `payload_len` bytes: 2, 4 or 10.
pub fn frame_header_len(payload_len: usize) -> usize {
    match payload_len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// XOR `buf` with the 4-byte masking `key` (RFC 6455 §5.3), 8 bytes at a time.
///
/// `buf` must start at the first payload byte (mask offset 0). Masking is its own inverse.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    let [a, b, c, d] = key;
    let key64 = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        if let Ok(word) = <[u8; 8]>::try_from(&*chunk) {
            chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ key64).to_ne_bytes());
        }
    }
    // The remainder starts at a multiple of 8, so the key phase is 0 again.
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i & 3];
    }
}

/// A parsed, validated client frame header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub fin: bool,
    /// RSV1: the message this frame starts is compressed (permessage-deflate only).
    pub rsv1: bool,
    pub opcode: u8,
    pub mask: [u8; 4],
    /// Bytes of header including the mask key (6, 8 or 14).
    pub header_len: usize,
    pub payload_len: usize,
}

/// Decoder state the header rules depend on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MessageState {
    /// A fragmented data message is in progress.
    pub in_message: bool,
    /// Payload bytes of that message received so far.
    pub message_len: usize,
    /// permessage-deflate was negotiated: RSV1 may start a data message.
    pub deflate: bool,
}

/// Parse and validate the client frame header at the front of `buf` without consuming it.
///
/// `Ok(None)` means more bytes are needed to finish the header.
pub(crate) fn parse_header(
    buf: &[u8],
    limits: &WsLimits,
    state: MessageState,
) -> Result<Option<Header>, WsError> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0F;
    // RSV1 marks a compressed message: only with permessage-deflate, only on the first frame
    // of a data message (RFC 7692 §6.1). RSV2 and RSV3 are never valid.
    let rsv1 = b0 & 0x40 != 0;
    let starts_message = opcode == OP_TEXT || opcode == OP_BINARY;
    if b0 & 0x30 != 0 || (rsv1 && !(state.deflate && starts_message)) {
        return Err(ERR_RSV);
    }
    if b1 & 0x80 == 0 {
        return Err(ERR_UNMASKED);
    }
    check_opcode(opcode, fin, usize::from(b1 & 0x7F), state.in_message)?;
    let (ext_len, payload_len) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(&[x, y]) => (2, u64::from(u16::from_be_bytes([x, y]))),
            _ => return Ok(None),
        },
        127 => match buf.get(2..10).and_then(|s| <[u8; 8]>::try_from(s).ok()) {
            Some(bytes) => (8, u64::from_be_bytes(bytes)),
            None => return Ok(None),
        },
        n => (0, u64::from(n)),
    };
    let payload_len = check_size(opcode, payload_len, limits, state.message_len)?;
    let header_len = 2 + ext_len + 4;
    let Some(&[k0, k1, k2, k3]) = buf.get(header_len - 4..header_len) else {
        return Ok(None);
    };
    Ok(Some(Header { fin, rsv1, opcode, mask: [k0, k1, k2, k3], header_len, payload_len }))
}

/// Opcode, control-frame and fragmentation-state rules (RFC 6455 §5.2, §5.4, §5.5).
fn check_opcode(opcode: u8, fin: bool, len7: usize, in_message: bool) -> Result<(), WsError> {
    match opcode {
        OP_CLOSE | OP_PING | OP_PONG if !fin => Err(ERR_CONTROL_FRAGMENTED),
        OP_CLOSE | OP_PING | OP_PONG if len7 > CONTROL_PAYLOAD_MAX => Err(ERR_CONTROL_TOO_LONG),
        OP_CLOSE | OP_PING | OP_PONG => Ok(()),
        OP_CONTINUATION if !in_message => Err(ERR_STRAY_CONTINUATION),
        OP_TEXT | OP_BINARY if in_message => Err(ERR_INTERLEAVED_DATA),
        OP_CONTINUATION | OP_TEXT | OP_BINARY => Ok(()),
        _ => Err(ERR_OPCODE),
    }
}

/// Frame and message size limits, checked from the announced length alone.
fn check_size(
    opcode: u8,
    payload_len: u64,
    limits: &WsLimits,
    message_len: usize,
) -> Result<usize, WsError> {
    if payload_len >> 63 != 0 {
        return Err(ERR_LEN_MSB);
    }
    let len = match usize::try_from(payload_len) {
        Ok(len) if len <= limits.frame_bytes_max => len,
        _ => return Err(ERR_FRAME_TOO_BIG),
    };
    if opcode < OP_CLOSE && message_len.saturating_add(len) > limits.message_bytes_max {
        return Err(ERR_MESSAGE_TOO_BIG);
    }
    // Header (≤ 14 bytes) + payload must fit in usize for the buffer arithmetic.
    len.checked_add(14).ok_or(ERR_FRAME_TOO_BIG)?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];
    const IDLE: MessageState = MessageState { in_message: false, message_len: 0, deflate: false };

    #[test]
    fn mask_matches_bytewise_xor() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).collect();
            let mut fast = data.clone();
            apply_mask(&mut fast, KEY);
            let slow: Vec<u8> = data.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]).collect();
            assert_eq!(fast, slow);
        }
    }

    #[test]
    fn header_lengths() {
        assert_eq!((frame_header_len(125), frame_header_len(126)), (2, 4));
        assert_eq!((frame_header_len(65535), frame_header_len(65536)), (4, 10));
    }

    #[test]
    fn parse_needs_whole_header_and_reports_lengths() {
        let limits = WsLimits::default();
        let frame = [0x82, 0x80 | 126, 0x01, 0x00, 1, 2, 3, 4];
        for cut in 0..frame.len() {
            assert!(matches!(parse_header(&frame[..cut], &limits, IDLE), Ok(None)));
        }
        let Ok(Some(h)) = parse_header(&frame, &limits, IDLE) else {
            panic!("complete header");
        };
        assert_eq!((h.fin, h.opcode, h.header_len, h.payload_len), (true, 2, 8, 256));
        assert_eq!(h.mask, [1, 2, 3, 4]);
    }

    #[test]
    fn minimal_input_is_enough_to_fail() {
        let limits = WsLimits::default();
        for two in [[0xC1, 0x80], [0x81, 0x00], [0x83, 0x80], [0x09, 0x80], [0x80, 0x80]] {
            let got = parse_header(&two, &limits, IDLE);
            assert_eq!(got.map(|_| ()).map_err(|e| e.close_code), Err(1002));
        }
    }
}
