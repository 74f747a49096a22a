//! HS256 token minting for the `roomcast token` subcommand and tests.
//!
//! Invariants: every minted token carries `sub`, `iat`, `exp = iat + ttl_s`
//! and a random 128-bit `jti` (32 hex chars); `role`, `sid` and `scopes` are
//! written only when given. Limits: HS256 only (asymmetric tokens come from an
//! external issuer); `sub` must be non-empty and `ttl_s` positive.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use super::{to_hex, AuthError};

/// What to put in a minted token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintClaims {
    /// The user id (`sub`); must be non-empty.
    pub sub: String,
    /// Optional `role` claim (`"service"` marks a service identity).
    pub role: Option<String>,
    /// Optional session id (`sid`).
    pub sid: Option<String>,
    /// Optional `scopes` array; absent means the verifier's default (`["*"]`).
    pub scopes: Option<Vec<String>>,
    /// Lifetime in seconds from now; must be positive.
    pub ttl_s: u64,
}

/// The wire form of a minted token's claims.
#[derive(Serialize)]
struct WireClaims<'a> {
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scopes: Option<&'a [String]>,
    iat: u64,
    exp: u64,
    jti: String,
}

/// Current wall-clock time in unix seconds (0 if the clock is before 1970).
pub fn now_unix_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Signs an HS256 token for `claims` with `secret`, adding `iat`, `exp` and a
/// random `jti`. Fails with [`AuthError::Invalid`] on an empty secret, a `sub`
/// that breaks the user id rule (`model::UserId`) or a zero `ttl_s`.
pub fn mint_hs256(secret: &[u8], claims: &MintClaims) -> Result<String, AuthError> {
    if secret.is_empty() {
        return Err(AuthError::Invalid("the signing secret is empty".into()));
    }
    if let Err(e) = crate::model::UserId::check(&claims.sub) {
        return Err(AuthError::Invalid(format!("the `sub` claim is not a user id: {e}")));
    }
    if claims.ttl_s == 0 {
        return Err(AuthError::Invalid("the token lifetime must be positive".into()));
    }
    let iat = now_unix_s();
    let wire = WireClaims {
        sub: &claims.sub,
        role: claims.role.as_deref(),
        sid: claims.sid.as_deref(),
        scopes: claims.scopes.as_deref(),
        iat,
        exp: iat.saturating_add(claims.ttl_s),
        jti: to_hex(&rand::random::<[u8; 16]>()),
    };
    let key = EncodingKey::from_secret(secret);
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &wire, &key)
        .map_err(|e| AuthError::Invalid(format!("signing failed: {e}")))
}
