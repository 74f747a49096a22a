//! IO-free WebSocket codec (RFC 6455, server side) with permessage-deflate (RFC 7692).
//!
//! Owns: decoding client frames ([`codec`]; header parsing and masking in the private
//! `header` module), close codes ([`close`]), prebuilt server frames ([`frame`]), the
//! `Sec-WebSocket-Extensions` negotiation ([`extension`]) and inflating/compressing messages
//! ([`deflate`]).
//! Invariants: no IO and no allocation beyond the returned payloads (and the per-thread
//! (de)compressor, reused); nothing a peer sends can panic. Limits: no subprotocols;
//! permessage-deflate only without context takeover.

pub mod close;
pub mod codec;
pub mod deflate;
pub mod extension;
pub mod frame;
mod header;

pub use close::*;
pub use codec::{Decoder, Incoming, WsError, WsLimits};
pub use header::{apply_mask, frame_header_len};
