//! roomcast: a thread-per-core io_uring WebSocket chat event server.
//!
//! One shard per core, each a pinned thread running one single-threaded tokio-uring loop that
//! owns a slice of the connections, rooms and users; shards talk only through the SPSC mesh.
//! A room's owner renders each event once per dialect into complete frames and sends one
//! shared bundle to each shard holding subscribers, which queues it on every local subscriber.
//!
//! # Layout
//! - [`config`]: every runtime setting and bound, from flags, `ROOMCAST_*` env and a TOML file.
//! - [`limits`]: every fixed (not configurable) bound, named once, with checks of their relations.
//! - [`auth`]: JWT verification and minting; the secret file in the data directory.
//! - [`model`]: the core event model — rooms, messages, events — as pure data and transitions.
//! - [`shard`]: a core's state, the owner pipeline, the inbox task, start and shutdown.
//! - [`mesh`]: SPSC rings between shards, eventfd doorbells, the `Command` enum.
//! - [`fanout`]: bundles of pre-rendered frames and each shard's room subscriptions.
//! - [`net`]: accept loop, HTTP serving, WebSocket sessions, outbound queues and writers.
//! - [`ws`]: IO-free WebSocket codec on our own buffers (RFC 6455).
//! - [`http`]: IO-free HTTP/1.1 request-head parsing, responses, and the WebSocket upgrade.
//! - [`dialect`]: the wire protocols clients speak (Virola, osu!, BIG, the echo endpoint), one
//!   folder each behind the `Dialect` trait; the rest of the crate names none of them.
//! - [`rest`]: the REST API.
//! - [`store`]: the durable store: a redb file per shard, group commit off the loop.
//! - [`metrics`]: per-shard counters and the Prometheus endpoint.
//! - [`tls`]: rustls on the listener: certificates (reloaded on SIGHUP), per-connection state.

pub mod auth;
pub mod cluster;
pub mod config;
pub mod dialect;
pub mod fanout;
pub mod http;
pub mod limits;
pub mod mesh;
pub mod metrics;
pub mod model;
pub mod net;
pub mod rest;
pub mod shard;
pub mod store;
pub mod tls;
pub mod ws;

pub use shard::{start, ServerHandle};
