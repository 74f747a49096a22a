//! TLS (rustls, user space: this kernel has no kTLS) on the server's one listener: with
//! `--tls-cert`/`--tls-key`, every accepted connection is TLS 1.2 or 1.3 with ALPN `http/1.1`.
//!
//! - `config`: the certificate files → a rustls `ServerConfig` (clear errors for a missing file,
//!   bad PEM or a key that does not match), the [`Certificates`] shared by every shard and
//!   swapped whole on `SIGHUP`, and each shard's [`ShardTls`] copy of the current one.
//! - `session`: [`TlsSession`], one connection's TLS state on its shard (rustls's unbuffered
//!   connection): ciphertext read → plaintext appended to the buffer the HTTP and WebSocket
//!   code already parses; plaintext frames to write → ciphertext records.
//! - `io`: the WebSocket read seam ([`decrypt`]): ciphertext the shard's ring received →
//!   plaintext in the session's buffer, through the shard's one ciphertext buffer.
//!
//! Invariants: a connection's TLS state is touched only by its shard (it moves with a handoff,
//! before anything else touches it); the hot path takes no lock (a shard reads the shared
//! config only at accept, and only when its generation changed); an idle connection holds no
//! buffer (only rustls's connection state: keys and the record layer).

mod config;
mod io;
mod session;

pub use config::{crypto_provider, load_server_config, Certificates, ShardTls};
pub use io::decrypt;
pub use session::{Progress, TlsError, TlsSession};
