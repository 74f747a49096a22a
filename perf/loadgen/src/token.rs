//! HS256 JWT minting for the roomcast target.
//!
//! The secret is the server's `DATA_DIR/jwt_secret` text, trimmed; the hex text itself (not the
//! bytes it spells) is the HMAC key, as the server reads it.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, EncodingKey, Header};
use serde::Serialize;

/// The claims roomcast reads: subject, expiry, issue time, a unique id, and an optional role.
#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: u64,
    iat: u64,
    jti: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
}

/// Mints tokens signed with one shared secret.
pub struct Minter {
    key: EncodingKey,
    header: Header,
    now: u64,
    serial: std::cell::Cell<u64>,
}

impl Minter {
    /// Builds a minter from the secret text (already trimmed by the caller or not: it is trimmed).
    pub fn new(secret: &str) -> Self {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Self {
            key: EncodingKey::from_secret(secret.trim().as_bytes()),
            header: Header::default(),
            now,
            serial: std::cell::Cell::new(0),
        }
    }

    /// A token for `user`, valid for a day, with `role` if given (e.g. `"service"`).
    pub fn mint(&self, user: &str, role: Option<&str>) -> String {
        let serial = self.serial.get();
        self.serial.set(serial + 1);
        let claims = Claims {
            sub: user,
            exp: self.now + 24 * 3600,
            iat: self.now,
            jti: format!("lg-{:x}-{serial:x}", self.now),
            role,
        };
        encode(&self.header, &claims, &self.key).expect("HS256 encoding cannot fail")
    }
}
