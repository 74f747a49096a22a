//! IO-free WebSocket codec (RFC 6455, server side, no extensions).
//!
//! Owns: decoding client frames ([`codec`]; header parsing and masking in the private
//! `header` module), close codes ([`close`]) and prebuilt server frames ([`frame`]).
//! Invariants: no IO and no allocation beyond the returned payloads; nothing a peer sends
//! can panic. Limits: no permessage-deflate, no subprotocols.

pub mod close;
pub mod codec;
pub mod frame;
mod header;

pub use close::*;
pub use codec::{Decoder, Incoming, WsError, WsLimits};
pub use header::{apply_mask, frame_header_len};
