//! Token verification: [`AuthSettings`] in, [`Verifier`] out.
//!
//! Invariants: decoding keys and `Validation`s are built once in
//! [`Verifier::new`]; [`Verifier::verify`] peeks the header's `alg` itself
//! (one small base64url + JSON decode of the header segment) and picks the one
//! matching key slot, so a token can never be checked against a key of another
//! algorithm family. The JWT library still re-checks that the header `alg` is
//! the single algorithm allowed for that slot. HS256 tokens are checked by `hs256` (the same
//! rules in one pass, the HMAC key schedule computed here once), RS256 and ES256 by the
//! library.
//!
//! Limits: see the parent module (`aud`/`iss` unchecked; header segment capped).

use std::borrow::Cow;
use std::fmt;

use jsonwebtoken::errors::{Error as JwtError, ErrorKind};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::hs256::Hs256Key;
use super::{now_unix_s, AuthError, Identity};
use crate::limits::JWT_HEADER_SEGMENT_BYTES_MAX;
use crate::model::UserId;

/// Key material and clock tolerance for a [`Verifier`].
///
/// `Debug` never prints key material.
#[derive(Clone, Default)]
pub struct AuthSettings {
    /// Shared secret enabling HS256 (raw bytes; must be non-empty if given).
    pub hs256_secret: Option<Vec<u8>>,
    /// PEM-encoded RSA public key (SPKI or PKCS#1) enabling RS256.
    pub rsa_public_pem: Option<Vec<u8>>,
    /// PEM-encoded EC P-256 public key (SPKI) enabling ES256.
    pub ec_public_pem: Option<Vec<u8>>,
    /// Clock-skew tolerance applied to `exp` (and `nbf`), in seconds.
    pub leeway_s: u64,
}

impl fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthSettings")
            .field("hs256_secret", &self.hs256_secret.as_ref().map(|_| "<redacted>"))
            .field("rsa_public_pem", &self.rsa_public_pem.is_some())
            .field("ec_public_pem", &self.ec_public_pem.is_some())
            .field("leeway_s", &self.leeway_s)
            .finish()
    }
}

/// One accepted algorithm: its key and its validation rules.
#[derive(Clone)]
struct Slot {
    key: DecodingKey,
    validation: Validation,
}

/// Verifies compact JWTs against the configured keys. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Verifier {
    hs256: Option<Slot>,
    /// The HS256 slot's key, as `hs256` checks it (set exactly when `hs256` is).
    hs256_key: Option<Hs256Key>,
    rs256: Option<Slot>,
    es256: Option<Slot>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("hs256", &self.hs256.is_some())
            .field("rs256", &self.rs256.is_some())
            .field("es256", &self.es256.is_some())
            .finish()
    }
}

impl Verifier {
    /// Builds the keys and validations. Fails with [`AuthError::Invalid`] when a
    /// PEM does not parse, the HS256 secret is empty, or no key is configured.
    pub fn new(settings: &AuthSettings) -> Result<Verifier, AuthError> {
        let hs256 = match &settings.hs256_secret {
            Some(secret) if secret.is_empty() => {
                return Err(AuthError::Invalid("the HS256 secret is empty".into()))
            }
            Some(secret) => Some(DecodingKey::from_secret(secret)),
            None => None,
        };
        let rs256 = settings
            .rsa_public_pem
            .as_deref()
            .map(|pem| {
                DecodingKey::from_rsa_pem(pem)
                    .map_err(|e| AuthError::Invalid(format!("RSA public key PEM: {e}")))
            })
            .transpose()?;
        let es256 = settings
            .ec_public_pem
            .as_deref()
            .map(|pem| {
                DecodingKey::from_ec_pem(pem)
                    .map_err(|e| AuthError::Invalid(format!("EC public key PEM: {e}")))
            })
            .transpose()?;
        if hs256.is_none() && rs256.is_none() && es256.is_none() {
            return Err(AuthError::Invalid("no JWT verification key is configured".into()));
        }
        let slot = |key, alg| Slot { key, validation: validation_for(alg, settings.leeway_s) };
        let hs256_key = match &settings.hs256_secret {
            Some(secret) => Some(
                Hs256Key::new(secret, settings.leeway_s)
                    .ok_or_else(|| AuthError::Invalid("the HS256 secret is unusable".into()))?,
            ),
            None => None,
        };
        Ok(Verifier {
            hs256_key,
            hs256: hs256.map(|k| slot(k, Algorithm::HS256)),
            rs256: rs256.map(|k| slot(k, Algorithm::RS256)),
            es256: es256.map(|k| slot(k, Algorithm::ES256)),
        })
    }

    /// Which algorithms this verifier accepts, e.g. `["HS256", "ES256"]`.
    pub fn algorithms(&self) -> Vec<&'static str> {
        [(&self.hs256, "HS256"), (&self.rs256, "RS256"), (&self.es256, "ES256")]
            .into_iter()
            .filter_map(|(slot, name)| slot.as_ref().map(|_| name))
            .collect()
    }

    /// Verifies `token` (compact JWS, surrounding whitespace ignored) and maps
    /// its claims to an [`Identity`].
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let (alg, header_json) = peek_alg(token)?;
        if alg == "HS256" {
            let key = self.hs256_key.as_ref().ok_or(AuthError::AlgorithmNotAllowed)?;
            return key.verify(token, &header_json, now_unix_s());
        }
        self.verify_with_library(token, alg)
    }

    /// [`Verifier::verify`] through `jsonwebtoken::decode` for `alg`'s slot (RS256, ES256;
    /// HS256 too in tests, to check `hs256` against it).
    fn verify_with_library(&self, token: &str, alg: &str) -> Result<Identity, AuthError> {
        let slot = match alg {
            "HS256" => self.hs256.as_ref(),
            "RS256" => self.rs256.as_ref(),
            "ES256" => self.es256.as_ref(),
            _ => None,
        }
        .ok_or(AuthError::AlgorithmNotAllowed)?;
        let data = jsonwebtoken::decode::<RawClaims>(token, &slot.key, &slot.validation)
            .map_err(map_jwt_error)?;
        data.claims.into_identity()
    }
}

/// The validation rules for one algorithm: `exp` required and enforced,
/// `nbf` enforced when present, audience not checked (no audience setting).
fn validation_for(alg: Algorithm, leeway_s: u64) -> Validation {
    let mut validation = Validation::new(alg);
    validation.leeway = leeway_s;
    validation.set_required_spec_claims(&["exp"]);
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    validation
}

/// The header fields we look at before choosing a key.
#[derive(Deserialize)]
struct HeaderPeek<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
}

/// Decodes only the header segment (base64url as the JWT library decodes it: no padding,
/// canonical trailing bits) and returns its `alg` (one of the three this module knows, or `""`
/// for any other) and the decoded header.
fn peek_alg(token: &str) -> Result<(&'static str, Vec<u8>), AuthError> {
    use base64::Engine;
    let header_b64 = token.split('.').next().unwrap_or_default();
    if header_b64.is_empty() || header_b64.len() > JWT_HEADER_SEGMENT_BYTES_MAX {
        return Err(AuthError::Malformed);
    }
    let header_json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header_b64)
        .map_err(|_| AuthError::Malformed)?;
    if super::hs256::is_plain_header(&header_json) {
        return Ok(("HS256", header_json));
    }
    let header: HeaderPeek<'_> =
        serde_json::from_slice(&header_json).map_err(|_| AuthError::Malformed)?;
    let alg = match header.alg.as_ref() {
        "HS256" => "HS256",
        "RS256" => "RS256",
        "ES256" => "ES256",
        _ => "",
    };
    Ok((alg, header_json))
}

/// Maps the JWT library's error kinds onto ours.
fn map_jwt_error(e: JwtError) -> AuthError {
    match e.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::MissingAlgorithm => AuthError::AlgorithmNotAllowed,
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => AuthError::Malformed,
        ErrorKind::MissingRequiredClaim(claim) => {
            AuthError::Invalid(format!("the `{claim}` claim is required"))
        }
        ErrorKind::InvalidClaimFormat(claim) => {
            AuthError::Invalid(format!("the `{claim}` claim has the wrong type"))
        }
        ErrorKind::ImmatureSignature => AuthError::Invalid("the token is not valid yet".into()),
        _ => AuthError::Invalid(e.to_string()),
    }
}

/// The claims we read. Lenient on types the library validates itself (`exp`)
/// and on `sub` (checked in [`RawClaims::into_identity`]).
#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    sub: Option<SubClaim>,
    #[serde(default)]
    exp: Option<ExpClaim>,
    #[serde(default)]
    sid: Option<String>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    scope: Option<String>,
}

/// `exp` as it may appear on the wire (ill-typed values are reported by the
/// library as a claim-format error rather than as malformed JSON).
#[derive(Deserialize)]
#[serde(untagged)]
enum ExpClaim {
    Number(f64),
    Other(serde::de::IgnoredAny),
}

/// `sub` as it may appear on the wire.
#[derive(Deserialize)]
#[serde(untagged)]
enum SubClaim {
    Text(String),
    Unsigned(u64),
    Signed(i64),
    Other(serde::de::IgnoredAny),
}

impl RawClaims {
    /// Applies the `sub` rules and the scope/session fallbacks.
    fn into_identity(self) -> Result<Identity, AuthError> {
        let user = match self.sub {
            Some(SubClaim::Text(s)) if !s.is_empty() => Some(Some(s)),
            Some(SubClaim::Unsigned(n)) => Some(Some(n.to_string())),
            Some(SubClaim::Signed(n)) => Some(Some(n.to_string())),
            None => None,
            Some(_) => Some(None),
        };
        // The library already required `exp` and checked it is a number.
        let expires_at = match self.exp {
            Some(ExpClaim::Number(exp)) if exp.is_finite() && exp >= 0.0 => exp as u64,
            _ => return Err(AuthError::Invalid("the `exp` claim has the wrong type".into())),
        };
        let claims = CheckedClaims {
            user,
            expires_at,
            session: self.sid.or(self.jti),
            role: self.role.as_deref(),
            scopes: self.scopes,
            scope: self.scope.as_deref(),
        };
        claims.into_identity()
    }
}

/// What both decoders (`RawClaims` here, `hs256::Claims`) read from a verified token, before
/// the rules that make it an [`Identity`].
pub(super) struct CheckedClaims<'a> {
    /// `sub`: absent (`None`), of the wrong type or empty (`Some(None)`), or its text.
    pub user: Option<Option<String>>,
    pub expires_at: u64,
    /// `sid`, else `jti`.
    pub session: Option<String>,
    pub role: Option<&'a str>,
    pub scopes: Option<Vec<String>>,
    pub scope: Option<&'a str>,
}

impl CheckedClaims<'_> {
    /// The `sub` rules (required, a user id) and the scope fallbacks (`scopes`, else `scope`
    /// split on whitespace, else every scope).
    pub(super) fn into_identity(self) -> Result<Identity, AuthError> {
        let user = match self.user {
            Some(Some(user)) => user,
            None => return Err(AuthError::Invalid("the `sub` claim is required".into())),
            Some(None) => {
                return Err(AuthError::Invalid(
                    "the `sub` claim must be a non-empty string or an integer".into(),
                ))
            }
        };
        if let Err(e) = UserId::check(&user) {
            return Err(AuthError::Invalid(format!("the `sub` claim is not a user id: {e}")));
        }
        let scopes = match (self.scopes, self.scope) {
            (Some(list), _) => list,
            (None, Some(text)) => text.split_whitespace().map(str::to_owned).collect(),
            (None, None) => vec!["*".to_owned()],
        };
        Ok(Identity {
            user,
            session: self.session,
            is_service: self.role == Some("service"),
            scopes,
            expires_at: self.expires_at,
        })
    }
}

#[cfg(test)]
impl Verifier {
    /// Verifies `token` through `jsonwebtoken` whatever its algorithm, as before `hs256`
    /// existed: what `hs256` must agree with.
    pub(super) fn verify_by_library(&self, token: &str) -> Result<Identity, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let (alg, _) = peek_alg(token)?;
        self.verify_with_library(token, alg)
    }
}
