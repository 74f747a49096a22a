//! Every runtime setting and bound of the server, in one [`Config`].
//!
//! # What this module owns
//! - [`Config`] with its defaults ([`Config::default`]) and consistency rules
//!   ([`Config::validate`]); the rest of the server reads limits from here only.
//! - Loading ([`load`], [`merge`]): flag > `ROOMCAST_*` environment variable >
//!   TOML file (`--config` / `ROOMCAST_CONFIG`) > default. Flags and env are
//!   both parsed by clap into [`ServeArgs`]; the file uses the same field names
//!   (snake_case, top level) and unknown keys are an error naming the key.
//! - The `roomcast token` arguments ([`TokenArgs`]), [`resolve_secret`] and [`token_secret`].
//!
//! # Invariants (enforced by [`Config::validate`], which [`load`] always runs)
//! - Every limit is non-zero (`shards` may be 0 = one per core; `jwt_leeway_s`
//!   and `deflate_threshold_bytes` may be 0); `shards <= 64`; `outbound_bytes_max <= 1 GiB`;
//!   `frame_bytes_max <= message_bytes_max`;
//!   `stored_message_bytes_max` is more than a message's fixed overhead and at most
//!   `history_page_bytes_max` and `history_bytes_per_room_max`;
//!   `ring_slots` is a power of two; `ping_interval_ms < idle_timeout_ms`;
//!   `echo_endpoint` starts with `/`; a configured `jwt_secret` is non-empty; `tls_cert` and
//!   `tls_key` are both given or neither; the cluster settings (`Config::validate_cluster`).
//!
//! # Limits
//! - Relative paths (`data_dir`, key files) are relative to the working
//!   directory, not to the config file.
//! - `Debug` output redacts `jwt_secret`.

mod load;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use crate::limits::{MESSAGE_ENCODED_OVERHEAD_BYTES, OUTBOUND_BYTES_MAX_LIMIT, SHARDS_MAX};
use serde::Deserialize;

pub use load::{auth_settings, load, merge, resolve_secret, token_secret, ServeArgs, TokenArgs};

/// Whether acknowledged writes wait for `fsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Writes are fsynced before they are acknowledged (default).
    #[default]
    Fsync,
    /// No fsync: faster, but acknowledged writes can be lost on a crash.
    None,
}

/// permessage-deflate (RFC 7692) offered to clients, or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    /// Accepted when a client offers it (default).
    #[default]
    On,
    /// Never negotiated.
    Off,
}

impl fmt::Display for Switch {
    /// The name as the flag and the TOML file spell it (`on`, `off`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Switch::On => "on",
            Switch::Off => "off",
        })
    }
}

impl fmt::Display for Durability {
    /// The name as the flag and the TOML file spell it (`fsync`, `none`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Durability::Fsync => "fsync",
            Durability::None => "none",
        })
    }
}

/// All runtime settings. Field names carry their unit.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// Address the server listens on.
    pub listen: SocketAddr,
    /// Shard (thread) count; 0 = one per available core (see [`Config::shard_count`]).
    pub shards: usize,
    /// Directory for persistent state and the `jwt_secret` file.
    pub data_dir: PathBuf,
    /// HS256 secret given directly; `None` = use/create `data_dir/jwt_secret`.
    pub jwt_secret: Option<String>,
    /// PEM file with an RSA public key enabling RS256 tokens.
    pub jwt_rsa_public_key: Option<PathBuf>,
    /// PEM file with an EC P-256 public key enabling ES256 tokens.
    pub jwt_ec_public_key: Option<PathBuf>,
    /// Clock-skew tolerance for token `exp`/`nbf`, in seconds (may be 0).
    pub jwt_leeway_s: u64,
    /// TLS certificate chain PEM file; with `tls_key`, the listener speaks only TLS.
    pub tls_cert: Option<PathBuf>,
    /// TLS private key PEM file matching `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Path of a plain WebSocket echo endpoint (e.g. `/echo`), for conformance runs only.
    pub echo_endpoint: Option<String>,
    /// NATS server URL(s) of the cluster mesh (`nats://host:4222`, comma-separated); `None`
    /// = this node runs alone (`src/cluster/`).
    pub cluster_url: Option<String>,
    /// This node's index in the cluster, `0..nodes`.
    pub node: usize,
    /// Nodes in the cluster (1 = alone); `nodes * shards` global shards, at most 64.
    pub nodes: usize,
    /// Prefix of the cluster's NATS subjects (`<prefix>.w<version>.node.<n>.mesh`).
    pub cluster_prefix: String,
    /// NATS credentials file (JWT + NKey seed), if the NATS server wants one.
    pub cluster_creds: Option<PathBuf>,
    /// NATS user name (with `cluster_password`).
    pub cluster_user: Option<String>,
    /// NATS password (with `cluster_user`).
    pub cluster_password: Option<String>,
    /// NATS token.
    pub cluster_token: Option<String>,
    /// PEM file of the CA that signs the NATS server's certificate (enables TLS to NATS).
    pub cluster_tls_ca: Option<PathBuf>,
    /// PEM client certificate for NATS (mutual TLS), with `cluster_tls_key`.
    pub cluster_tls_cert: Option<PathBuf>,
    /// PEM private key of `cluster_tls_cert`.
    pub cluster_tls_key: Option<PathBuf>,
    /// Pin each shard thread to one CPU.
    pub pin_cpus: bool,
    /// The web console's `POST /console/token` mints user tokens with the server's HS256
    /// secret for anyone who asks: dev servers only (off by default).
    pub console_mint: bool,
    /// Whether writes are fsynced before acknowledgement.
    pub durability: Durability,
    /// Largest accepted WebSocket frame payload, in bytes.
    pub frame_bytes_max: usize,
    /// Largest accepted (reassembled) WebSocket message, in bytes; for a compressed message,
    /// both its compressed and its inflated size.
    pub message_bytes_max: usize,
    /// Negotiate permessage-deflate (RFC 7692, no context takeover) with clients that offer it.
    pub deflate: Switch,
    /// Broadcast frames with a smaller payload go uncompressed to deflate clients, in bytes
    /// (0 = compress every data frame that shrinks).
    pub deflate_threshold_bytes: usize,
    /// Largest accepted HTTP request head, in bytes.
    pub http_head_bytes_max: usize,
    /// Largest accepted REST request body, in bytes.
    pub rest_body_bytes_max: usize,
    /// Largest stored message, in bytes of its encoding (text, attachments, attributes, kind,
    /// ids: `model::event::message_encoded_len`); a larger post or edit is refused (REST 413).
    pub stored_message_bytes_max: usize,
    /// Most bytes of messages (encoded, as above) in one history page (REST, BIG `messages`);
    /// a page ends early before the message that would pass it (at least one message).
    pub history_page_bytes_max: usize,
    /// Most bytes queued for one slow client before it is dropped.
    pub outbound_bytes_max: usize,
    /// Deadline for a whole HTTP request (head and body) to arrive, in ms: counted from accept
    /// for a connection's first request (the WebSocket handshake included), from its first byte
    /// for a later one. Past it the socket is closed, however slowly bytes still trickle in. A
    /// client that takes nothing of a response being written for this long is closed too.
    pub handshake_timeout_ms: u64,
    /// A keep-alive connection that sends no byte of its next request for this long after a
    /// response is closed, in ms.
    pub http_keepalive_timeout_ms: u64,
    /// Most connections of one shard still in the HTTP phase (not upgraded to WebSocket); one
    /// more gets a short 503 and is closed.
    pub http_connections_per_shard_max: usize,
    /// Most HTTP-phase connections of one shard from one source address (IPv4, or an IPv6 /64);
    /// one more gets a short 503 and is closed.
    pub http_connections_per_ip_max: usize,
    /// Load balancers and proxies in front of the server: comma-separated networks (CIDR) or
    /// addresses, empty for none. Connections from them are exempt from
    /// `http_connections_per_ip_max` (every client behind one shares its address), not from
    /// `http_connections_per_shard_max`. See [`Config::trusted_proxies`].
    pub http_trusted_proxies: String,
    /// A connection silent for this long is closed, in ms.
    pub idle_timeout_ms: u64,
    /// Interval between server pings on a quiet connection, in ms.
    pub ping_interval_ms: u64,
    /// A BIG connection that sent no frame for this long is closed (`offline`), in ms.
    pub big_silence_ms: u64,
    /// Interval at which unacknowledged BIG events are re-sent, in ms.
    pub big_resend_ms: u64,
    /// Most unacknowledged BIG events kept per user; past it its connections are closed.
    pub big_unacked_max: usize,
    /// Rechat (Engine.IO) `pingInterval`, ms: v3 clients ping this often, v4 clients are pinged.
    pub rechat_ping_interval_ms: u64,
    /// On SIGTERM, the longest the drain may take (`shard::drain`), ms.
    pub drain_ms: u64,
    /// Rechat (Engine.IO) `pingTimeout`, ms: a session silent for the interval plus this is
    /// dropped.
    pub rechat_ping_timeout_ms: u64,
    /// Rechat: the origins whose pages may use `/socket.io/` (comma-separated
    /// `scheme://host[:port]`, or `*` for any): polling answers carry CORS headers for them,
    /// and a request from another origin gets engine.io's 403.
    pub rechat_cors_origins: String,
    /// Sustained action rate of one user on one shard (token-bucket refill per second): its
    /// REST writes and BIG requests and typing events, over all of its connections there.
    pub actions_per_second: u32,
    /// Action burst of one user on one shard (token-bucket capacity).
    pub actions_burst: u32,
    /// Most concurrent connections on one shard.
    pub connections_per_shard_max: usize,
    /// Most event connections (WebSockets) of one user on one shard; past it an upgrade is
    /// refused in its dialect's way.
    pub connections_per_user_max: usize,
    /// Capacity of each inter-shard mesh ring, in slots (power of two).
    pub ring_slots: usize,
    /// Most rooms owned by one shard.
    pub rooms_per_shard_max: usize,
    /// Messages kept per room in the in-memory history window.
    pub history_per_room_max: usize,
    /// Bytes (of the messages' encoded sizes) kept per room in the in-memory history window;
    /// the oldest go first, the newest message always stays. Older messages are read from the
    /// store.
    pub history_bytes_per_room_max: usize,
    /// Most members of one room.
    pub members_per_room_max: usize,
    /// Initial size of the buffer a WebSocket connection gets while a frame is incomplete, in
    /// bytes (between frames it holds none: reads go into the shard's shared buffer).
    pub read_buffer_bytes_initial: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            shards: 0,
            data_dir: PathBuf::from("./data"),
            jwt_secret: None,
            jwt_rsa_public_key: None,
            jwt_ec_public_key: None,
            jwt_leeway_s: 60,
            tls_cert: None,
            tls_key: None,
            echo_endpoint: None,
            cluster_url: None,
            node: 0,
            nodes: 1,
            cluster_prefix: "roomcast".into(),
            cluster_creds: None,
            cluster_user: None,
            cluster_password: None,
            cluster_token: None,
            cluster_tls_ca: None,
            cluster_tls_cert: None,
            cluster_tls_key: None,
            pin_cpus: true,
            console_mint: false,
            durability: Durability::Fsync,
            frame_bytes_max: 65_536,
            message_bytes_max: 65_536,
            deflate: Switch::On,
            deflate_threshold_bytes: 128,
            http_head_bytes_max: 8_192,
            rest_body_bytes_max: 1 << 20,
            stored_message_bytes_max: 128 << 10,
            history_page_bytes_max: 512 << 10,
            outbound_bytes_max: 1 << 20,
            handshake_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            http_keepalive_timeout_ms: 60_000,
            http_connections_per_shard_max: 10_000,
            http_connections_per_ip_max: 64,
            http_trusted_proxies: String::new(),
            ping_interval_ms: 20_000,
            big_silence_ms: 20_000,
            big_resend_ms: 5_000,
            big_unacked_max: 256,
            rechat_ping_interval_ms: 25_000,
            rechat_ping_timeout_ms: 20_000,
            drain_ms: 10_000,
            rechat_cors_origins: "*".into(),
            actions_per_second: 100,
            actions_burst: 200,
            connections_per_shard_max: 100_000,
            connections_per_user_max: 64,
            ring_slots: 4_096,
            rooms_per_shard_max: 1_000_000,
            history_per_room_max: 10_000,
            history_bytes_per_room_max: 8 << 20,
            members_per_room_max: 100_000,
            read_buffer_bytes_initial: 512,
        }
    }
}

/// Returns `Err("<field> must be greater than 0")` for the first zero field.
macro_rules! require_nonzero {
    ($cfg:expr, $($field:ident),+ $(,)?) => {
        $(
            if $cfg.$field == 0 {
                return Err(format!("{} must be greater than 0", stringify!($field)));
            }
        )+
    };
}

impl Config {
    /// `http_trusted_proxies` parsed: each entry a network (`10.0.0.0/8`) or one address (a
    /// /32 or /128), at most [`TRUSTED_PROXIES_MAX`](crate::limits::TRUSTED_PROXIES_MAX).
    pub fn trusted_proxies(&self) -> Result<Vec<ipnet::IpNet>, String> {
        let entries: Vec<&str> =
            self.http_trusted_proxies.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
        if entries.len() > crate::limits::TRUSTED_PROXIES_MAX {
            return Err(format!(
                "http_trusted_proxies: at most {} entries",
                crate::limits::TRUSTED_PROXIES_MAX
            ));
        }
        entries
            .into_iter()
            .map(|entry| {
                entry
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| {
                        format!("http_trusted_proxies: {entry:?} is not a network or an address")
                    })
            })
            .collect()
    }

    /// Checks bounds and relationships; the message names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        require_nonzero!(
            self,
            frame_bytes_max,
            message_bytes_max,
            http_head_bytes_max,
            rest_body_bytes_max,
            stored_message_bytes_max,
            history_page_bytes_max,
            outbound_bytes_max,
            handshake_timeout_ms,
            idle_timeout_ms,
            http_keepalive_timeout_ms,
            http_connections_per_shard_max,
            http_connections_per_ip_max,
            ping_interval_ms,
            big_silence_ms,
            big_resend_ms,
            big_unacked_max,
            rechat_ping_interval_ms,
            rechat_ping_timeout_ms,
            actions_per_second,
            actions_burst,
            connections_per_shard_max,
            connections_per_user_max,
            ring_slots,
            rooms_per_shard_max,
            history_per_room_max,
            history_bytes_per_room_max,
            members_per_room_max,
            read_buffer_bytes_initial,
        );
        if self.shards > SHARDS_MAX {
            return Err(format!("shards must be at most {SHARDS_MAX} (0 = one per core)"));
        }
        if self.outbound_bytes_max > OUTBOUND_BYTES_MAX_LIMIT {
            return Err(format!("outbound_bytes_max must be at most {OUTBOUND_BYTES_MAX_LIMIT}"));
        }
        if self.frame_bytes_max > self.message_bytes_max {
            return Err("frame_bytes_max must not exceed message_bytes_max".into());
        }
        if self.stored_message_bytes_max <= MESSAGE_ENCODED_OVERHEAD_BYTES {
            return Err(format!(
                "stored_message_bytes_max must be greater than {MESSAGE_ENCODED_OVERHEAD_BYTES} \
                 (what a message's ids and field names count)"
            ));
        }
        if self.history_page_bytes_max < self.stored_message_bytes_max {
            return Err("history_page_bytes_max must be at least stored_message_bytes_max".into());
        }
        if self.history_bytes_per_room_max < self.stored_message_bytes_max {
            return Err(
                "history_bytes_per_room_max must be at least stored_message_bytes_max".into()
            );
        }
        if !self.ring_slots.is_power_of_two() {
            return Err("ring_slots must be a power of two".into());
        }
        if self.ping_interval_ms >= self.idle_timeout_ms {
            return Err("ping_interval_ms must be less than idle_timeout_ms".into());
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err("data_dir must not be empty".into());
        }
        if self.jwt_secret.as_deref().is_some_and(str::is_empty) {
            return Err("jwt_secret must not be empty when given".into());
        }
        crate::dialect::rechat::cors::validate(&self.rechat_cors_origins)?;
        self.trusted_proxies()?;
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("tls_cert and tls_key go together: give both or neither".into());
        }
        self.validate_cluster()?;
        if let Some(path) = &self.echo_endpoint {
            if !path.starts_with('/') || path.contains(char::is_whitespace) {
                return Err("echo_endpoint must be a path starting with '/'".into());
            }
        }
        Ok(())
    }

    /// The cluster settings' rules: `node < nodes`; `nodes > 1` needs a `cluster_url`;
    /// `nodes * shards <= 64` global shards (a cluster needs an explicit `shards`, the same on
    /// every node); the prefix is a NATS subject token; user and password go together; the
    /// client certificate and key go together.
    fn validate_cluster(&self) -> Result<(), String> {
        if self.nodes == 0 {
            return Err("nodes must be at least 1".into());
        }
        if self.node >= self.nodes {
            return Err(format!("node must be less than nodes ({})", self.nodes));
        }
        if self.nodes > 1 && self.cluster_url.is_none() {
            return Err("nodes > 1 needs cluster_url (the NATS server)".into());
        }
        if self.cluster_url.is_some() {
            if self.shards == 0 {
                return Err("a cluster needs an explicit shards (the same on every node)".into());
            }
            if self.nodes * self.shards > SHARDS_MAX {
                return Err(format!("nodes * shards must be at most {SHARDS_MAX}"));
            }
        }
        if self.cluster_url.as_deref().is_some_and(|url| url.trim().is_empty()) {
            return Err("cluster_url must not be empty when given".into());
        }
        let prefix_ok = !self.cluster_prefix.is_empty()
            && self.cluster_prefix.split('.').all(|token| {
                !token.is_empty()
                    && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !prefix_ok {
            return Err("cluster_prefix must be dot-separated tokens of [A-Za-z0-9_-]".into());
        }
        if self.cluster_user.is_some() != self.cluster_password.is_some() {
            return Err("cluster_user and cluster_password go together".into());
        }
        if self.cluster_tls_cert.is_some() != self.cluster_tls_key.is_some() {
            return Err("cluster_tls_cert and cluster_tls_key go together".into());
        }
        Ok(())
    }

    /// Whether this node is part of a cluster (a NATS URL is configured).
    pub fn clustered(&self) -> bool {
        self.cluster_url.is_some()
    }

    /// The shard count to run: `shards`, or one per available core when 0
    /// (1 if unknown), never more than [`SHARDS_MAX`].
    pub fn shard_count(&self) -> usize {
        let n = match self.shards {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        n.clamp(1, SHARDS_MAX)
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = self.jwt_secret.as_ref().map(|_| "<redacted>");
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("shards", &self.shards)
            .field("data_dir", &self.data_dir)
            .field("jwt_secret", &secret)
            .field("jwt_rsa_public_key", &self.jwt_rsa_public_key)
            .field("jwt_ec_public_key", &self.jwt_ec_public_key)
            .field("jwt_leeway_s", &self.jwt_leeway_s)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("echo_endpoint", &self.echo_endpoint)
            .field("cluster_url", &self.cluster_url)
            .field("node", &self.node)
            .field("nodes", &self.nodes)
            .field("cluster_prefix", &self.cluster_prefix)
            .field("cluster_creds", &self.cluster_creds)
            .field("cluster_user", &self.cluster_user)
            .field("cluster_password", &self.cluster_password.as_ref().map(|_| "<redacted>"))
            .field("cluster_token", &self.cluster_token.as_ref().map(|_| "<redacted>"))
            .field("cluster_tls_ca", &self.cluster_tls_ca)
            .field("cluster_tls_cert", &self.cluster_tls_cert)
            .field("cluster_tls_key", &self.cluster_tls_key)
            .field("pin_cpus", &self.pin_cpus)
            .field("console_mint", &self.console_mint)
            .field("durability", &self.durability)
            .field("frame_bytes_max", &self.frame_bytes_max)
            .field("message_bytes_max", &self.message_bytes_max)
            .field("deflate", &self.deflate)
            .field("deflate_threshold_bytes", &self.deflate_threshold_bytes)
            .field("http_head_bytes_max", &self.http_head_bytes_max)
            .field("rest_body_bytes_max", &self.rest_body_bytes_max)
            .field("stored_message_bytes_max", &self.stored_message_bytes_max)
            .field("history_page_bytes_max", &self.history_page_bytes_max)
            .field("outbound_bytes_max", &self.outbound_bytes_max)
            .field("handshake_timeout_ms", &self.handshake_timeout_ms)
            .field("idle_timeout_ms", &self.idle_timeout_ms)
            .field("http_keepalive_timeout_ms", &self.http_keepalive_timeout_ms)
            .field("http_connections_per_shard_max", &self.http_connections_per_shard_max)
            .field("http_connections_per_ip_max", &self.http_connections_per_ip_max)
            .field("big_silence_ms", &self.big_silence_ms)
            .field("big_resend_ms", &self.big_resend_ms)
            .field("big_unacked_max", &self.big_unacked_max)
            .field("rechat_ping_interval_ms", &self.rechat_ping_interval_ms)
            .field("rechat_ping_timeout_ms", &self.rechat_ping_timeout_ms)
            .field("rechat_cors_origins", &self.rechat_cors_origins)
            .field("http_trusted_proxies", &self.http_trusted_proxies)
            .field("drain_ms", &self.drain_ms)
            .field("ping_interval_ms", &self.ping_interval_ms)
            .field("actions_per_second", &self.actions_per_second)
            .field("actions_burst", &self.actions_burst)
            .field("connections_per_shard_max", &self.connections_per_shard_max)
            .field("connections_per_user_max", &self.connections_per_user_max)
            .field("ring_slots", &self.ring_slots)
            .field("rooms_per_shard_max", &self.rooms_per_shard_max)
            .field("history_per_room_max", &self.history_per_room_max)
            .field("history_bytes_per_room_max", &self.history_bytes_per_room_max)
            .field("members_per_room_max", &self.members_per_room_max)
            .field("read_buffer_bytes_initial", &self.read_buffer_bytes_initial)
            .finish()
    }
}
