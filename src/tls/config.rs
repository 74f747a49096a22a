//! The certificate files → rustls `ServerConfig`, shared by the shards and swapped on reload.
//!
//! Invariants: a [`Certificates`] always holds a config that loaded whole (a reload that fails
//! keeps the previous one); `generation` grows by one with each swap, after the swap, so a
//! shard that sees a new generation finds the new config (or a newer one) behind the lock.
//! The lock is taken only by a reload and by a shard's first accept after one.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use super::session::{TlsError, TlsSession};

/// The one application protocol offered (ALPN): roomcast speaks HTTP/1.1 and WebSocket over it.
const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// rustls's `ring` provider with X25519 as the first key exchange: rustls 0.23.48 lists
/// P-384 first for `ring`, whose P-384 has no assembly and cost ~1.4 ms of CPU per handshake
/// here (perf/RESULTS.md); X25519, what clients offer first, costs a fraction of that. `ring`
/// builds with no system package (aws-lc-rs needs its C build); it has no post-quantum key
/// exchange, hence rustls's deprecation note.
#[allow(deprecated)]
pub fn crypto_provider() -> rustls::crypto::CryptoProvider {
    use rustls::crypto::ring::{default_provider, kx_group};
    rustls::crypto::CryptoProvider {
        kx_groups: vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
        ..default_provider()
    }
}

/// Reads the PEM chain `cert` and key `key` into a server config (TLS 1.2 and 1.3, ALPN
/// `http/1.1`, the `ring` provider); the error names the file and what is wrong with it.
pub fn load_server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let read = |path: &Path, what: &str| {
        std::fs::read(path).map_err(|e| format!("{what} {}: {e}", path.display()))
    };
    let cert_pem = read(cert, "tls_cert")?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("tls_cert {}: not a PEM certificate chain: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("tls_cert {}: no CERTIFICATE block in the PEM file", cert.display()));
    }
    let key_pem = read(key, "tls_key")?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        format!("tls_key {}: no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}", key.display())
    })?;
    let provider = Arc::new(crypto_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("tls: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => format!(
                "tls_key {} does not match the certificate in {}",
                key.display(),
                cert.display()
            ),
            other => format!("tls_cert {} / tls_key {}: {other}", cert.display(), key.display()),
        })?;
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Ok(Arc::new(config))
}

/// The server's certificate files and the config made from them: one for the whole server,
/// shared by every shard, replaced whole by [`Certificates::reload`].
pub struct Certificates {
    cert: PathBuf,
    key: PathBuf,
    /// The config new connections get.
    current: Mutex<Arc<ServerConfig>>,
    /// Swaps so far; shards compare it with the generation of their copy.
    generation: AtomicU64,
}

impl Certificates {
    /// Loads the files once; an error (see [`load_server_config`]) stops the start.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Certificates>, String> {
        let config = load_server_config(cert, key)?;
        Ok(Arc::new(Certificates {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: Mutex::new(config),
            generation: AtomicU64::new(0),
        }))
    }

    /// Reads the files again and, when they load, makes them the config of every new
    /// connection; on an error the previous config stays. Open connections keep theirs.
    pub fn reload(&self) -> Result<(), String> {
        let config = load_server_config(&self.cert, &self.key)?;
        *self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = config;
        self.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    fn snapshot(&self) -> (u64, Arc<ServerConfig>) {
        // Generation first: a swap between the two reads is seen again at the next accept.
        let generation = self.generation.load(Ordering::Acquire);
        let config = self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        (generation, config)
    }
}

/// A shard's view of the [`Certificates`]: its own copy of the current config, refreshed when
/// the shared generation moved (one atomic load per accept, the lock only after a reload).
pub struct ShardTls {
    shared: Arc<Certificates>,
    cached: RefCell<(u64, Arc<ServerConfig>)>,
}

impl ShardTls {
    /// The shard's copy of `shared`'s current config.
    pub fn new(shared: Arc<Certificates>) -> ShardTls {
        let cached = RefCell::new(shared.snapshot());
        ShardTls { shared, cached }
    }

    /// The config for a new connection.
    pub fn config(&self) -> Arc<ServerConfig> {
        let generation = self.shared.generation.load(Ordering::Acquire);
        let mut cached = self.cached.borrow_mut();
        if cached.0 != generation {
            *cached = self.shared.snapshot();
        }
        cached.1.clone()
    }

    /// The TLS state of a newly accepted connection (its handshake runs as it reads).
    pub fn accept(&self) -> Result<TlsSession, TlsError> {
        TlsSession::new(self.config())
    }
}
