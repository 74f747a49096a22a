//! roomcast: a thread-per-core io_uring WebSocket chat event server.
//!
//! # Layout
//! - [`config`]: every runtime setting and bound, from flags, `ROOMCAST_*` env and a TOML file.
//! - [`auth`]: JWT verification and minting; the secret file in the data directory.
//! - [`ws`]: IO-free WebSocket codec on our own buffers (RFC 6455).
//! - [`http`]: IO-free HTTP/1.1 request-head parsing, responses, and the WebSocket upgrade.

pub mod auth;
pub mod config;
pub mod http;
pub mod ws;
