//! Token verification: [`AuthSettings`] in, [`Verifier`] out.
//!
//! Invariants: decoding keys and `Validation`s are built once in
//! [`Verifier::new`]; [`Verifier::verify`] peeks the header's `alg` itself
//! (one small base64url + JSON decode of the header segment) and picks the one
//! matching key slot, so a token can never be checked against a key of another
//! algorithm family. The JWT library still re-checks that the header `alg` is
//! the single algorithm allowed for that slot.
//!
//! Limits: see the parent module (`aud`/`iss` unchecked; header segment capped).

use std::borrow::Cow;
use std::fmt;

use jsonwebtoken::errors::{Error as JwtError, ErrorKind};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::{AuthError, Identity};
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
        Ok(Verifier {
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
        let slot = match peek_alg(token)?.as_ref() {
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

/// Decodes only the header segment and returns its `alg`.
fn peek_alg(token: &str) -> Result<String, AuthError> {
    let header_b64 = token.split('.').next().unwrap_or_default();
    if header_b64.is_empty() || header_b64.len() > JWT_HEADER_SEGMENT_BYTES_MAX {
        return Err(AuthError::Malformed);
    }
    let header_json = b64url_decode(header_b64.as_bytes()).ok_or(AuthError::Malformed)?;
    let header: HeaderPeek<'_> =
        serde_json::from_slice(&header_json).map_err(|_| AuthError::Malformed)?;
    Ok(header.alg.into_owned())
}

/// Unpadded base64url decoding (RFC 7515 §2); `None` on any invalid input.
fn b64url_decode(input: &[u8]) -> Option<Vec<u8>> {
    if input.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in input {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
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
            Some(SubClaim::Text(s)) if !s.is_empty() => s,
            Some(SubClaim::Unsigned(n)) => n.to_string(),
            Some(SubClaim::Signed(n)) => n.to_string(),
            None => return Err(AuthError::Invalid("the `sub` claim is required".into())),
            Some(_) => {
                return Err(AuthError::Invalid(
                    "the `sub` claim must be a non-empty string or an integer".into(),
                ))
            }
        };
        if let Err(e) = UserId::check(&user) {
            return Err(AuthError::Invalid(format!("the `sub` claim is not a user id: {e}")));
        }
        // The library already required `exp` and checked it is a number.
        let expires_at = match self.exp {
            Some(ExpClaim::Number(exp)) if exp.is_finite() && exp >= 0.0 => exp as u64,
            _ => return Err(AuthError::Invalid("the `exp` claim has the wrong type".into())),
        };
        let scopes = match (self.scopes, self.scope) {
            (Some(list), _) => list,
            (None, Some(text)) => text.split_whitespace().map(str::to_owned).collect(),
            (None, None) => vec!["*".to_owned()],
        };
        Ok(Identity {
            user,
            session: self.sid.or(self.jti),
            is_service: self.role.as_deref() == Some("service"),
            scopes,
            expires_at,
        })
    }
}

#[cfg(test)]
mod unit {
    use super::b64url_decode;

    #[test]
    fn base64url_decodes_rfc4648_vectors() {
        let cases: [(&str, &str); 7] = [
            ("", ""),
            ("Zg", "f"),
            ("Zm8", "fo"),
            ("Zm9v", "foo"),
            ("Zm9vYg", "foob"),
            ("Zm9vYmE", "fooba"),
            ("Zm9vYmFy", "foobar"),
        ];
        for (enc, dec) in cases {
            assert_eq!(b64url_decode(enc.as_bytes()).as_deref(), Some(dec.as_bytes()));
        }
        assert_eq!(b64url_decode(b"-_8").as_deref(), Some(&[0xfb, 0xff][..]));
        assert_eq!(b64url_decode(b"Zm9vY"), None);
        assert_eq!(b64url_decode(b"Zm9v+g"), None);
        assert_eq!(b64url_decode(b"Zg=="), None);
    }
}
