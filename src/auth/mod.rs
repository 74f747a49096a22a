//! JWT authentication: verification of connection tokens, minting of HS256
//! tokens, and the shared-secret file in the data directory.
//!
//! # What this module owns
//! - [`Verifier`]: built once from [`AuthSettings`]; [`Verifier::verify`] runs on
//!   every connection attempt and turns a compact JWT into an [`Identity`].
//! - [`mint_hs256`]: issues tokens for the `roomcast token` subcommand and tests.
//! - [`load_or_create_secret`]: the only IO here (`<data_dir>/jwt_secret`).
//!
//! # Invariants
//! - Exactly three algorithms can ever be accepted: HS256 (shared secret),
//!   RS256 (RSA public key) and ES256 (P-256 public key), each only when its
//!   key is configured. Everything else, `none` included, is
//!   [`AuthError::AlgorithmNotAllowed`]; keys never cross algorithm families,
//!   so an RSA public key can never be used as an HMAC secret.
//! - `exp` is required and enforced (with the configured leeway); `sub` is
//!   required and is a non-empty string or an integer (kept as its decimal text) that keeps
//!   the user id rule (`model::UserId::check`: length and characters); a token whose `sub`
//!   breaks it is refused.
//!
//! # Limits
//! - `aud` and `iss` are not checked: there is no audience/issuer setting, so a
//!   token signed by a configured key is accepted whatever audience it names.
//! - `nbf` is enforced only when present.
//! - The header segment is capped at
//!   [`JWT_HEADER_SEGMENT_BYTES_MAX`](crate::limits::JWT_HEADER_SEGMENT_BYTES_MAX) before any
//!   decoding.

pub mod cache;
mod hs256;
mod mint;
mod secret;
mod verify;

#[cfg(test)]
mod tests;

use std::fmt;

pub use cache::TokenCache;
pub use mint::{mint_hs256, now_unix_s, MintClaims};
pub use secret::{load_or_create_secret, load_secret, SECRET_FILE_NAME};
pub use verify::{AuthSettings, Verifier};

/// Verifies `token` with `verifier` and refuses a session for which `is_revoked` says it was
/// logged out; the refusal's text says why.
pub fn authenticate(
    verifier: &Verifier,
    token: Option<&str>,
    is_revoked: impl Fn(&str) -> bool,
) -> Result<Identity, String> {
    match token {
        None => Err("missing access token".to_string()),
        Some(token) => match verifier.verify(token) {
            Ok(identity) if identity.session.as_deref().is_some_and(is_revoked) => {
                Err("the session was logged out".to_string())
            }
            Ok(identity) => Ok(identity),
            Err(e) => Err(e.to_string()),
        },
    }
}

/// Who a verified token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user id: the JWT `sub` claim (numeric subs as their decimal text).
    pub user: String,
    /// The session id: the `sid` claim, else the `jti` claim, else `None`.
    pub session: Option<String>,
    /// True when the `role` claim is exactly `"service"`.
    pub is_service: bool,
    /// The `scopes` array claim, else the space-separated `scope` string
    /// claim, else `["*"]`. An explicitly empty claim yields no scopes.
    pub scopes: Vec<String>,
    /// The `exp` claim, unix seconds.
    pub expires_at: u64,
}

/// Why a token was refused (or could not be minted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No token was presented.
    Missing,
    /// The token is not a well-formed compact JWT (shape, base64 or JSON).
    Malformed,
    /// The token's `exp` is in the past (beyond the leeway).
    Expired,
    /// The signature does not match the configured key.
    BadSignature,
    /// The header's `alg` is not one this server is configured to accept.
    AlgorithmNotAllowed,
    /// Anything else (missing or ill-typed claims, bad key material, ...).
    Invalid(String),
}

impl AuthError {
    /// A stable machine-readable code for responses and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "token_missing",
            AuthError::Malformed => "token_malformed",
            AuthError::Expired => "token_expired",
            AuthError::BadSignature => "token_bad_signature",
            AuthError::AlgorithmNotAllowed => "token_algorithm_not_allowed",
            AuthError::Invalid(_) => "token_invalid",
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::Missing => f.write_str("no access token was provided"),
            AuthError::Malformed => f.write_str("the access token is not a well-formed JWT"),
            AuthError::Expired => f.write_str("the access token has expired"),
            AuthError::BadSignature => {
                f.write_str("the access token signature does not match the server key")
            }
            AuthError::AlgorithmNotAllowed => {
                f.write_str("the access token uses a signing algorithm this server does not accept")
            }
            AuthError::Invalid(reason) => write!(f, "invalid access token: {reason}"),
        }
    }
}

impl std::error::Error for AuthError {}

/// Lowercase hex of `bytes` (used for the secret file and `jti`).
fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}
