//! HS256 tokens verified in one pass: the header decoded once, the signature checked with an
//! HMAC whose key schedule was computed at start, the claims decoded once into a borrowed
//! struct. Every connection of a storm carries a new token, so this runs once per connection.
//!
//! Invariants: it accepts and refuses exactly what `jsonwebtoken::decode` with the HS256
//! `Validation` of `verify::validation_for` followed by `RawClaims::into_identity` does (same
//! error kinds, same order: header, signature, claims; `tests.rs` checks the two against each
//! other on edge cases): the header is a `jsonwebtoken::Header` whose `alg` is HS256, decoded
//! with the same base64url engine (no padding, canonical trailing bits); the signature is
//! compared in constant time (`Mac::verify_slice`) before the payload is decoded; `exp` is
//! required and enforced with the leeway, `nbf` when present; duplicate claims are malformed.
//! Two intended differences, both stricter or saner: the claims must be a JSON object (serde
//! would read an array as the fields in order, and the library's two structs then read the
//! same array differently), and `now - leeway` saturates where the library would wrap.

use std::borrow::Cow;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, Header};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use sha2::Sha256;

use super::verify::CheckedClaims;
use super::{AuthError, Identity};

/// An HS256 key: the HMAC state after the key's inner and outer pads, cloned per token.
#[derive(Clone)]
pub(super) struct Hs256Key {
    mac: Hmac<Sha256>,
    leeway_s: u64,
}

impl Hs256Key {
    /// The key for `secret` (any length, as HMAC allows; the caller refuses an empty one).
    pub(super) fn new(secret: &[u8], leeway_s: u64) -> Option<Hs256Key> {
        Some(Hs256Key { mac: Hmac::<Sha256>::new_from_slice(secret).ok()?, leeway_s })
    }

    /// Verifies `token` (trimmed; its header's `alg` already read as HS256 from `header_json`,
    /// the decoded first segment) and maps its claims to an [`Identity`].
    pub(super) fn verify(
        &self,
        token: &str,
        header_json: &[u8],
        now_s: u64,
    ) -> Result<Identity, AuthError> {
        let (message, signature) = token.rsplit_once('.').ok_or(AuthError::Malformed)?;
        let (header_b64, payload_b64) = message.rsplit_once('.').ok_or(AuthError::Malformed)?;
        if header_b64.contains('.') {
            // Four or more segments: the library reads the rest as the header's base64.
            return Err(AuthError::Malformed);
        }
        if !is_plain_header(header_json) {
            let header: Header =
                serde_json::from_slice(header_json).map_err(|_| AuthError::Malformed)?;
            if header.alg != Algorithm::HS256 {
                return Err(AuthError::AlgorithmNotAllowed);
            }
        }
        let mut mac = self.mac.clone();
        mac.update(message.as_bytes());
        let mut tag = [0u8; 64];
        let verified = if signature.len() <= 84 {
            // 84 base64 characters decode to at most 63 bytes: `tag` always has room.
            let len = URL_SAFE_NO_PAD
                .decode_slice(signature, &mut tag)
                .map_err(|_| AuthError::Malformed)?;
            mac.verify_slice(&tag[..len])
        } else {
            let long = URL_SAFE_NO_PAD.decode(signature).map_err(|_| AuthError::Malformed)?;
            mac.verify_slice(&long)
        };
        if verified.is_err() {
            return Err(AuthError::BadSignature);
        }
        let payload = URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| AuthError::Malformed)?;
        if payload.trim_ascii_start().first() != Some(&b'{') {
            // RFC 7519 §7.2: the claims set is a JSON object.
            return Err(AuthError::Malformed);
        }
        let claims: Claims<'_> =
            serde_json::from_slice(&payload).map_err(|_| AuthError::Malformed)?;
        claims.validate(now_s, self.leeway_s)?;
        claims.into_identity()
    }
}

/// True when `header_json` is byte for byte one of the usual HS256 headers, which decode to a
/// `Header` with `alg` HS256 and nothing but `typ` (JWT) besides; the library's `Header` (with
/// its flattened extras, buffered field by field) is decoded only for any other.
pub(super) fn is_plain_header(header_json: &[u8]) -> bool {
    const PLAIN: [&[u8]; 3] = [
        br#"{"typ":"JWT","alg":"HS256"}"#,
        br#"{"alg":"HS256","typ":"JWT"}"#,
        br#"{"alg":"HS256"}"#,
    ];
    PLAIN.contains(&header_json)
}

/// Every claim either of the library's two claim structs declares (its `ClaimsForValidation`
/// and our `RawClaims`), so a duplicate of any of them is malformed as there.
#[derive(Deserialize)]
struct Claims<'a> {
    #[serde(default, borrow)]
    sub: Option<Sub<'a>>,
    #[serde(default)]
    exp: Numeric,
    #[serde(default)]
    nbf: Numeric,
    #[serde(default)]
    #[allow(dead_code)]
    iss: Option<IgnoredAny>,
    #[serde(default)]
    #[allow(dead_code)]
    aud: Option<IgnoredAny>,
    #[serde(default, borrow)]
    sid: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    jti: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    role: Option<Cow<'a, str>>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default, borrow)]
    scope: Option<Cow<'a, str>>,
}

impl Claims<'_> {
    /// The library's `validate` with `exp` required, `exp` and `nbf` enforced.
    fn validate(&self, now_s: u64, leeway_s: u64) -> Result<(), AuthError> {
        let Some(exp) = self.exp.parsed() else {
            return Err(AuthError::Invalid("the `exp` claim is required".into()));
        };
        if matches!(self.nbf, Numeric::Failed) {
            return Err(AuthError::Invalid("the `nbf` claim has the wrong type".into()));
        }
        if exp < now_s.saturating_sub(leeway_s) {
            return Err(AuthError::Expired);
        }
        if self.nbf.parsed().is_some_and(|nbf| nbf > now_s.saturating_add(leeway_s)) {
            return Err(AuthError::Invalid("the token is not valid yet".into()));
        }
        Ok(())
    }

    /// `RawClaims::into_identity`: the `sub` rules and the scope/session fallbacks.
    fn into_identity(self) -> Result<Identity, AuthError> {
        let user = match self.sub {
            Some(Sub::Text(s)) if !s.is_empty() => Some(Some(s.into_owned())),
            Some(Sub::Unsigned(n)) => Some(Some(n.to_string())),
            Some(Sub::Signed(n)) => Some(Some(n.to_string())),
            None => None,
            Some(_) => Some(None),
        };
        // `RawClaims` reads `exp` as an f64 and truncates it.
        let expires_at = match self.exp {
            Numeric::Unsigned(n) => n as f64 as u64,
            Numeric::Float(f) => f as u64,
            _ => return Err(AuthError::Invalid("the `exp` claim has the wrong type".into())),
        };
        let claims = CheckedClaims {
            user,
            expires_at,
            session: self.sid.or(self.jti).map(Cow::into_owned),
            role: self.role.as_deref(),
            scopes: self.scopes,
            scope: self.scope.as_deref(),
        };
        claims.into_identity()
    }
}

/// `sub` as it may appear: what `RawClaims` takes, and a structured value refused as the
/// library's own `sub` parser refuses it (malformed).
enum Sub<'a> {
    Text(Cow<'a, str>),
    Unsigned(u64),
    Signed(i64),
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for Sub<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SubVisitor;
        impl<'de> Visitor<'de> for SubVisitor {
            type Value = Sub<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Sub::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Sub::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Sub::Text(Cow::Owned(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Sub::Unsigned(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Sub::Signed(v))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Sub::Other)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Sub::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Sub::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
                Err(de::Error::custom("a structured `sub`"))
            }
            fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
                Err(de::Error::custom("a structured `sub`"))
            }
        }
        deserializer.deserialize_any(SubVisitor)
    }
}

/// `exp` or `nbf` as the library's `numeric_type` reads it: a non-negative integer, or a float
/// rounded; anything else fails to parse, except a non-empty array or object, which leaves
/// that parser mid-value (malformed).
#[derive(Default, Clone, Copy)]
enum Numeric {
    #[default]
    Absent,
    Unsigned(u64),
    Float(f64),
    Failed,
}

impl Numeric {
    /// The value the library validates with (floats rounded).
    fn parsed(&self) -> Option<u64> {
        match *self {
            Numeric::Unsigned(n) => Some(n),
            Numeric::Float(f) => Some(f.round() as u64),
            Numeric::Absent | Numeric::Failed => None,
        }
    }
}

impl<'de> Deserialize<'de> for Numeric {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumericVisitor;
        impl<'de> Visitor<'de> for NumericVisitor {
            type Value = Numeric;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Numeric::Unsigned(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                if v.is_finite() && v >= 0.0 && v < (u64::MAX as f64) {
                    Ok(Numeric::Float(v))
                } else {
                    Ok(Numeric::Failed)
                }
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Numeric::Failed)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Numeric::Failed)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Numeric::Failed)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Numeric::Failed)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                match seq.next_element::<IgnoredAny>()? {
                    None => Ok(Numeric::Failed),
                    Some(_) => Err(de::Error::custom("a non-empty array")),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                match map.next_key::<IgnoredAny>()? {
                    None => Ok(Numeric::Failed),
                    Some(_) => Err(de::Error::custom("a non-empty object")),
                }
            }
        }
        deserializer.deserialize_any(NumericVisitor)
    }
}
