//! Building a [`Config`] from flags, `ROOMCAST_*` environment variables and a
//! TOML file, plus the `roomcast token` arguments.
//!
//! Invariants: clap resolves flag > env into [`ServeArgs`] (every field is an
//! `Option`, `None` = not given); [`merge`] is pure and applies
//! args > TOML > default, then validates; [`load`] only adds reading the file.
//! Limits: the TOML file is read whole; keys are top-level only.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::builder::BoolishValueParser;
use serde::Deserialize;

use super::{Config, Durability, Switch};
use crate::auth::{self, AuthSettings, MintClaims};

/// Flags of `roomcast serve`; each also readable from its `ROOMCAST_*` variable.
#[derive(clap::Args, Clone, Default, PartialEq, Eq)]
pub struct ServeArgs {
    /// TOML config file (same keys as the flags, snake_case).
    #[arg(long, env = "ROOMCAST_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Listen address [default: 127.0.0.1:8080].
    #[arg(long, env = "ROOMCAST_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Shard threads, at most 64; 0 = one per core [default: 0].
    #[arg(long, env = "ROOMCAST_SHARDS")]
    pub shards: Option<usize>,
    /// Data directory [default: ./data].
    #[arg(long, env = "ROOMCAST_DATA_DIR", value_name = "PATH")]
    pub data_dir: Option<PathBuf>,
    /// HS256 secret [default: contents of DATA_DIR/jwt_secret, created if absent].
    #[arg(long, env = "ROOMCAST_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// RSA public key PEM file; enables RS256 tokens.
    #[arg(long, env = "ROOMCAST_JWT_RSA_PUBLIC_KEY", value_name = "PATH")]
    pub jwt_rsa_public_key: Option<PathBuf>,
    /// EC P-256 public key PEM file; enables ES256 tokens.
    #[arg(long, env = "ROOMCAST_JWT_EC_PUBLIC_KEY", value_name = "PATH")]
    pub jwt_ec_public_key: Option<PathBuf>,
    /// Token clock-skew tolerance in seconds [default: 60].
    #[arg(long, env = "ROOMCAST_JWT_LEEWAY_S")]
    pub jwt_leeway_s: Option<u64>,
    /// TLS certificate chain PEM file (leaf first); with `--tls-key`, every connection on the
    /// listener is TLS (https://, wss://). Reloaded on SIGHUP.
    #[arg(long, env = "ROOMCAST_TLS_CERT", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key PEM file (PKCS#8, PKCS#1 or SEC1) matching `--tls-cert`.
    #[arg(long, env = "ROOMCAST_TLS_KEY", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// Serve a plain WebSocket echo at this path (conformance runs only).
    #[arg(long, env = "ROOMCAST_ECHO_ENDPOINT", value_name = "PATH")]
    pub echo_endpoint: Option<String>,
    /// NATS server URL(s) of the cluster mesh, comma-separated (`nats://127.0.0.1:4222`);
    /// without it the node runs alone.
    #[arg(long, env = "ROOMCAST_CLUSTER_URL", value_name = "URL")]
    pub cluster_url: Option<String>,
    /// This node's index in the cluster, 0..nodes [default: 0].
    #[arg(long, env = "ROOMCAST_NODE")]
    pub node: Option<usize>,
    /// Nodes in the cluster [default: 1]; nodes * shards at most 64.
    #[arg(long, env = "ROOMCAST_NODES")]
    pub nodes: Option<usize>,
    /// Prefix of the cluster's NATS subjects [default: roomcast].
    #[arg(long, env = "ROOMCAST_CLUSTER_PREFIX", value_name = "PREFIX")]
    pub cluster_prefix: Option<String>,
    /// NATS credentials file (user JWT and NKey seed).
    #[arg(long, env = "ROOMCAST_CLUSTER_CREDS", value_name = "PATH")]
    pub cluster_creds: Option<PathBuf>,
    /// NATS user name (with `--cluster-password`).
    #[arg(long, env = "ROOMCAST_CLUSTER_USER")]
    pub cluster_user: Option<String>,
    /// NATS password.
    #[arg(long, env = "ROOMCAST_CLUSTER_PASSWORD", hide_env_values = true)]
    pub cluster_password: Option<String>,
    /// NATS token.
    #[arg(long, env = "ROOMCAST_CLUSTER_TOKEN", hide_env_values = true)]
    pub cluster_token: Option<String>,
    /// CA PEM file for TLS to the NATS server.
    #[arg(long, env = "ROOMCAST_CLUSTER_TLS_CA", value_name = "PEM")]
    pub cluster_tls_ca: Option<PathBuf>,
    /// Client certificate PEM file for TLS to the NATS server (with `--cluster-tls-key`).
    #[arg(long, env = "ROOMCAST_CLUSTER_TLS_CERT", value_name = "PEM")]
    pub cluster_tls_cert: Option<PathBuf>,
    /// Client key PEM file for `--cluster-tls-cert`.
    #[arg(long, env = "ROOMCAST_CLUSTER_TLS_KEY", value_name = "PEM")]
    pub cluster_tls_key: Option<PathBuf>,
    /// Do not pin shard threads to CPUs (`--no-pin-cpus` or `--no-pin-cpus=false`).
    #[arg(
        long,
        env = "ROOMCAST_NO_PIN_CPUS",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new(),
        value_name = "BOOL"
    )]
    pub no_pin_cpus: Option<bool>,
    /// Let the web console mint user tokens with this server's secret (`POST /console/token`):
    /// anyone who reaches the server can then act as any user. Dev servers only
    /// (`--console-mint` or `--console-mint=false`) [default: false].
    #[arg(
        long,
        env = "ROOMCAST_CONSOLE_MINT",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new(),
        value_name = "BOOL"
    )]
    pub console_mint: Option<bool>,
    /// fsync before acknowledging writes, or not [default: fsync].
    #[arg(long, env = "ROOMCAST_DURABILITY", value_enum)]
    pub durability: Option<Durability>,
    /// Largest WebSocket frame payload, bytes [default: 65536].
    #[arg(long, env = "ROOMCAST_FRAME_BYTES_MAX")]
    pub frame_bytes_max: Option<usize>,
    /// Largest WebSocket message, bytes [default: 65536].
    #[arg(long, env = "ROOMCAST_MESSAGE_BYTES_MAX")]
    pub message_bytes_max: Option<usize>,
    /// permessage-deflate (RFC 7692) with clients that offer it: on or off [default: on].
    #[arg(long, env = "ROOMCAST_DEFLATE", value_enum)]
    pub deflate: Option<Switch>,
    /// Frames with a smaller payload go uncompressed to deflate clients, bytes [default: 128].
    #[arg(long, env = "ROOMCAST_DEFLATE_THRESHOLD_BYTES")]
    pub deflate_threshold_bytes: Option<usize>,
    /// Largest HTTP request head, bytes [default: 8192].
    #[arg(long, env = "ROOMCAST_HTTP_HEAD_BYTES_MAX")]
    pub http_head_bytes_max: Option<usize>,
    /// Largest REST request body, bytes [default: 1048576].
    #[arg(long, env = "ROOMCAST_REST_BODY_BYTES_MAX")]
    pub rest_body_bytes_max: Option<usize>,
    /// Largest stored message (text, attachments, attributes, ids), encoded bytes
    /// [default: 131072].
    #[arg(long, env = "ROOMCAST_STORED_MESSAGE_BYTES_MAX")]
    pub stored_message_bytes_max: Option<usize>,
    /// Most encoded bytes of messages in one history page (REST, BIG `messages`)
    /// [default: 524288].
    #[arg(long, env = "ROOMCAST_HISTORY_PAGE_BYTES_MAX")]
    pub history_page_bytes_max: Option<usize>,
    /// Most bytes queued for one client, bytes [default: 1048576].
    #[arg(long, env = "ROOMCAST_OUTBOUND_BYTES_MAX")]
    pub outbound_bytes_max: Option<usize>,
    /// Deadline for a whole HTTP request (head and body; the first from accept, the WebSocket
    /// handshake included), ms [default: 10000].
    #[arg(long, env = "ROOMCAST_HANDSHAKE_TIMEOUT_MS")]
    pub handshake_timeout_ms: Option<u64>,
    /// Idle connection timeout, ms [default: 60000].
    #[arg(long, env = "ROOMCAST_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,
    /// Close a keep-alive HTTP connection idle this long after a response, ms [default: 60000].
    #[arg(long, env = "ROOMCAST_HTTP_KEEPALIVE_TIMEOUT_MS")]
    pub http_keepalive_timeout_ms: Option<u64>,
    /// HTTP-phase (not upgraded) connections per shard; more get 503 [default: 10000].
    #[arg(long, env = "ROOMCAST_HTTP_CONNECTIONS_PER_SHARD_MAX")]
    pub http_connections_per_shard_max: Option<usize>,
    /// HTTP-phase connections per shard from one IPv4 address or IPv6 /64; more get 503
    /// [default: 64].
    #[arg(long, env = "ROOMCAST_HTTP_CONNECTIONS_PER_IP_MAX")]
    pub http_connections_per_ip_max: Option<usize>,
    /// Addresses of load balancers and proxies in front of the server (comma-separated
    /// networks, `10.0.0.0/8,fd00::/8`, or addresses): their connections are not held to the
    /// per-address cap, only to the shard's [default: none].
    #[arg(long, env = "ROOMCAST_HTTP_TRUSTED_PROXIES")]
    pub http_trusted_proxies: Option<String>,
    /// Ping interval, ms [default: 20000].
    #[arg(long, env = "ROOMCAST_PING_INTERVAL_MS")]
    pub ping_interval_ms: Option<u64>,
    /// BIG: close a connection silent this long, ms [default: 20000].
    #[arg(long, env = "ROOMCAST_BIG_SILENCE_MS")]
    pub big_silence_ms: Option<u64>,
    /// BIG: re-send unacknowledged events every this many ms [default: 5000].
    #[arg(long, env = "ROOMCAST_BIG_RESEND_MS")]
    pub big_resend_ms: Option<u64>,
    /// BIG: unacknowledged events kept per user [default: 256].
    #[arg(long, env = "ROOMCAST_BIG_UNACKED_MAX")]
    pub big_unacked_max: Option<usize>,
    /// On SIGTERM, how long the drain may take (requests in flight answered, queued frames
    /// flushed, clients told to go with 1001) before the server stops anyway, ms
    /// [default: 10000].
    #[arg(long, env = "ROOMCAST_DRAIN_MS")]
    pub drain_ms: Option<u64>,
    /// Rechat: Engine.IO pingInterval, ms [default: 25000].
    #[arg(long, env = "ROOMCAST_RECHAT_PING_INTERVAL_MS")]
    pub rechat_ping_interval_ms: Option<u64>,
    /// Rechat: Engine.IO pingTimeout, ms [default: 20000].
    #[arg(long, env = "ROOMCAST_RECHAT_PING_TIMEOUT_MS")]
    pub rechat_ping_timeout_ms: Option<u64>,
    /// Rechat: the origins (`scheme://host[:port]`, comma-separated) whose pages may use the
    /// Socket.IO endpoint; `*` allows every origin, as Rechat's server does [default: *].
    #[arg(long, env = "ROOMCAST_RECHAT_CORS_ORIGINS")]
    pub rechat_cors_origins: Option<String>,
    /// Sustained actions per second of one user on one shard (REST writes, BIG requests and
    /// typing, over all of the user's connections there) [default: 100].
    #[arg(long, env = "ROOMCAST_ACTIONS_PER_SECOND")]
    pub actions_per_second: Option<u32>,
    /// Action burst of one user on one shard [default: 200].
    #[arg(long, env = "ROOMCAST_ACTIONS_BURST")]
    pub actions_burst: Option<u32>,
    /// Connections per shard [default: 100000].
    #[arg(long, env = "ROOMCAST_CONNECTIONS_PER_SHARD_MAX")]
    pub connections_per_shard_max: Option<usize>,
    /// WebSocket connections of one user on one shard [default: 64].
    #[arg(long, env = "ROOMCAST_CONNECTIONS_PER_USER_MAX")]
    pub connections_per_user_max: Option<usize>,
    /// Mesh ring capacity, slots, power of two [default: 4096].
    #[arg(long, env = "ROOMCAST_RING_SLOTS")]
    pub ring_slots: Option<usize>,
    /// Rooms per shard [default: 1000000].
    #[arg(long, env = "ROOMCAST_ROOMS_PER_SHARD_MAX")]
    pub rooms_per_shard_max: Option<usize>,
    /// In-memory history window per room, messages [default: 10000].
    #[arg(long, env = "ROOMCAST_HISTORY_PER_ROOM_MAX")]
    pub history_per_room_max: Option<usize>,
    /// In-memory history window per room, bytes of encoded messages [default: 8388608].
    #[arg(long, env = "ROOMCAST_HISTORY_BYTES_PER_ROOM_MAX")]
    pub history_bytes_per_room_max: Option<usize>,
    /// Members per room [default: 100000].
    #[arg(long, env = "ROOMCAST_MEMBERS_PER_ROOM_MAX")]
    pub members_per_room_max: Option<usize>,
    /// Initial read buffer per connection, bytes [default: 512].
    #[arg(long, env = "ROOMCAST_READ_BUFFER_BYTES_INITIAL")]
    pub read_buffer_bytes_initial: Option<usize>,
}

impl std::fmt::Debug for ServeArgs {
    /// Prints only the config path: the args may hold the JWT secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeArgs").field("config", &self.config).finish_non_exhaustive()
    }
}

/// The TOML file: the [`Config`] field names, all optional, nothing else.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    shards: Option<usize>,
    data_dir: Option<PathBuf>,
    jwt_secret: Option<String>,
    jwt_rsa_public_key: Option<PathBuf>,
    jwt_ec_public_key: Option<PathBuf>,
    jwt_leeway_s: Option<u64>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    echo_endpoint: Option<String>,
    cluster_url: Option<String>,
    node: Option<usize>,
    nodes: Option<usize>,
    cluster_prefix: Option<String>,
    cluster_creds: Option<PathBuf>,
    cluster_user: Option<String>,
    cluster_password: Option<String>,
    cluster_token: Option<String>,
    cluster_tls_ca: Option<PathBuf>,
    cluster_tls_cert: Option<PathBuf>,
    cluster_tls_key: Option<PathBuf>,
    pin_cpus: Option<bool>,
    console_mint: Option<bool>,
    durability: Option<Durability>,
    frame_bytes_max: Option<usize>,
    message_bytes_max: Option<usize>,
    deflate: Option<Switch>,
    deflate_threshold_bytes: Option<usize>,
    http_head_bytes_max: Option<usize>,
    rest_body_bytes_max: Option<usize>,
    stored_message_bytes_max: Option<usize>,
    history_page_bytes_max: Option<usize>,
    outbound_bytes_max: Option<usize>,
    handshake_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    http_keepalive_timeout_ms: Option<u64>,
    http_connections_per_shard_max: Option<usize>,
    http_connections_per_ip_max: Option<usize>,
    http_trusted_proxies: Option<String>,
    ping_interval_ms: Option<u64>,
    big_silence_ms: Option<u64>,
    big_resend_ms: Option<u64>,
    big_unacked_max: Option<usize>,
    drain_ms: Option<u64>,
    rechat_ping_interval_ms: Option<u64>,
    rechat_ping_timeout_ms: Option<u64>,
    rechat_cors_origins: Option<String>,
    actions_per_second: Option<u32>,
    actions_burst: Option<u32>,
    connections_per_shard_max: Option<usize>,
    connections_per_user_max: Option<usize>,
    ring_slots: Option<usize>,
    rooms_per_shard_max: Option<usize>,
    history_per_room_max: Option<usize>,
    history_bytes_per_room_max: Option<usize>,
    members_per_room_max: Option<usize>,
    read_buffer_bytes_initial: Option<usize>,
}

/// Copies every field that is `Some` in `$src` (a [`FileConfig`] or
/// [`ServeArgs`]) onto `$cfg`. `pin_cpus` differs between the two and is
/// handled by the callers.
macro_rules! overlay {
    ($cfg:expr, $src:expr) => {
        overlay!(@plain $cfg, $src,
            listen, shards, data_dir, jwt_leeway_s, durability, console_mint,
            frame_bytes_max, message_bytes_max, deflate, deflate_threshold_bytes,
            http_head_bytes_max,
            rest_body_bytes_max, stored_message_bytes_max, history_page_bytes_max,
            outbound_bytes_max, handshake_timeout_ms,
            idle_timeout_ms, http_keepalive_timeout_ms, http_connections_per_shard_max,
            http_connections_per_ip_max, http_trusted_proxies, ping_interval_ms, big_silence_ms,
            big_resend_ms,
            big_unacked_max,
            drain_ms, rechat_ping_interval_ms, rechat_ping_timeout_ms, rechat_cors_origins,
            actions_per_second, actions_burst,
            connections_per_shard_max, connections_per_user_max, ring_slots, rooms_per_shard_max,
            history_per_room_max, history_bytes_per_room_max, members_per_room_max,
            read_buffer_bytes_initial, node, nodes, cluster_prefix);
        overlay!(@optional $cfg, $src,
            jwt_secret, jwt_rsa_public_key, jwt_ec_public_key, echo_endpoint, tls_cert, tls_key,
            cluster_url, cluster_creds, cluster_user, cluster_password, cluster_token,
            cluster_tls_ca, cluster_tls_cert, cluster_tls_key);
    };
    (@plain $cfg:expr, $src:expr, $($field:ident),+) => {
        $( if let Some(v) = $src.$field.clone() { $cfg.$field = v; } )+
    };
    (@optional $cfg:expr, $src:expr, $($field:ident),+) => {
        $( if let Some(v) = $src.$field.clone() { $cfg.$field = Some(v); } )+
    };
}

/// Pure merge: `args` over the TOML text `toml_text` (if any) over
/// [`Config::default`], then [`Config::validate`]. `args.config` is ignored
/// here (the caller has already read that file into `toml_text`).
pub fn merge(args: &ServeArgs, toml_text: Option<&str>) -> Result<Config, String> {
    let file: FileConfig = match toml_text {
        Some(text) => toml::from_str(text).map_err(|e| format!("config file: {e}"))?,
        None => FileConfig::default(),
    };
    let mut config = Config::default();
    overlay!(config, file);
    if let Some(pin) = file.pin_cpus {
        config.pin_cpus = pin;
    }
    overlay!(config, args);
    if let Some(no_pin) = args.no_pin_cpus {
        config.pin_cpus = !no_pin;
    }
    config.validate()?;
    Ok(config)
}

/// Loads the configuration: reads the TOML file named by `--config` /
/// `ROOMCAST_CONFIG` (if any) and [`merge`]s it under `cli`.
pub fn load(cli: ServeArgs) -> Result<Config, String> {
    let text = match &cli.config {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?,
        ),
        None => None,
    };
    merge(&cli, text.as_deref()).map_err(|e| match &cli.config {
        Some(path) => format!("{e} (config file {})", path.display()),
        None => e,
    })
}

/// The HS256 secret: the configured `jwt_secret` (created = false), else
/// [`auth::load_or_create_secret`] on `data_dir`.
pub fn resolve_secret(config: &Config) -> io::Result<(Vec<u8>, bool)> {
    match &config.jwt_secret {
        Some(secret) => Ok((secret.as_bytes().to_vec(), false)),
        None => auth::load_or_create_secret(&config.data_dir),
    }
}

/// The HS256 secret `roomcast token` signs with: the configured `jwt_secret`, else
/// `data_dir/jwt_secret`. A missing file is an error naming the way out, unless `create`
/// (`--create-secret`) asks to create it: a new secret would sign tokens that a server running
/// on another data directory refuses. The bool is `true` when the file was created.
pub fn token_secret(config: &Config, create: bool) -> Result<(Vec<u8>, bool), String> {
    let path = config.data_dir.join(auth::SECRET_FILE_NAME);
    let failed = |e: io::Error| format!("jwt secret {}: {e}", path.display());
    if config.jwt_secret.is_some() || create {
        return resolve_secret(config).map_err(failed);
    }
    match auth::load_secret(&config.data_dir) {
        Ok(secret) => Ok((secret, false)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(format!(
            "no JWT secret at {}: give the data directory of the server (--data-dir; `serve` \
             creates the secret on its first start), or its secret (--jwt-secret), or add \
             --create-secret to create a new one there",
            path.display()
        )),
        Err(e) => Err(failed(e)),
    }
}

/// Everything a [`auth::Verifier`] needs: the resolved secret, the PEM files'
/// contents and the leeway. The bool is `true` when the secret file was created.
pub fn auth_settings(config: &Config) -> io::Result<(AuthSettings, bool)> {
    let (secret, created) = resolve_secret(config)?;
    let settings = AuthSettings {
        hs256_secret: Some(secret),
        rsa_public_pem: read_optional(config.jwt_rsa_public_key.as_deref())?,
        ec_public_pem: read_optional(config.jwt_ec_public_key.as_deref())?,
        leeway_s: config.jwt_leeway_s,
    };
    Ok((settings, created))
}

/// Reads `path` if given, naming the path in any error.
fn read_optional(path: Option<&Path>) -> io::Result<Option<Vec<u8>>> {
    path.map(|p| {
        std::fs::read(p).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))
    })
    .transpose()
}

/// Arguments of `roomcast token` (mints an HS256 token with the server's secret).
#[derive(clap::Args, Clone, PartialEq, Eq)]
pub struct TokenArgs {
    /// User id to put in `sub`.
    #[arg(long, value_name = "ID")]
    pub user: String,
    /// Role claim, e.g. `service`.
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 86_400)]
    pub ttl: u64,
    /// Session id claim (`sid`).
    #[arg(long, value_name = "ID")]
    pub sid: Option<String>,
    /// Comma-separated scopes [default: none in the token, i.e. all].
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub scopes: Option<Vec<String>>,
    /// Data directory holding `jwt_secret` [default: ./data].
    #[arg(long, env = "ROOMCAST_DATA_DIR", value_name = "PATH")]
    pub data_dir: Option<PathBuf>,
    /// HS256 secret [default: contents of DATA_DIR/jwt_secret].
    #[arg(long, env = "ROOMCAST_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// TOML config file (for `data_dir` / `jwt_secret`).
    #[arg(long, env = "ROOMCAST_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Create DATA_DIR/jwt_secret if it does not exist (without it, a missing secret is an
    /// error: a new secret signs tokens that a server with another secret refuses).
    #[arg(long)]
    pub create_secret: bool,
}

impl std::fmt::Debug for TokenArgs {
    /// Omits the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenArgs")
            .field("user", &self.user)
            .field("role", &self.role)
            .field("ttl", &self.ttl)
            .field("sid", &self.sid)
            .field("scopes", &self.scopes)
            .field("data_dir", &self.data_dir)
            .field("config", &self.config)
            .field("create_secret", &self.create_secret)
            .finish_non_exhaustive()
    }
}

impl TokenArgs {
    /// The serve arguments these imply, for [`load`] (only `config`,
    /// `data_dir` and `jwt_secret` are carried over).
    pub fn serve_args(&self) -> ServeArgs {
        ServeArgs {
            config: self.config.clone(),
            data_dir: self.data_dir.clone(),
            jwt_secret: self.jwt_secret.clone(),
            ..ServeArgs::default()
        }
    }

    /// Checks what the claims need: a non-blank `--user` and a positive `--ttl`.
    pub fn validate(&self) -> Result<(), String> {
        if self.user.trim().is_empty() {
            return Err("--user must name a user (it is the token's `sub`), not be empty".into());
        }
        if self.ttl == 0 {
            return Err("--ttl must be at least 1 (seconds the token is valid for)".into());
        }
        Ok(())
    }

    /// The claims to mint (empty scope items dropped).
    pub fn mint_claims(&self) -> MintClaims {
        MintClaims {
            sub: self.user.clone(),
            role: self.role.clone(),
            sid: self.sid.clone(),
            scopes: self.scopes.as_ref().map(|list| {
                list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).map(str::to_owned).collect()
            }),
            ttl_s: self.ttl,
        }
    }
}
