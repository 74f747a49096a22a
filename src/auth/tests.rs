//! Tests for [`crate::auth`]: verification (all algorithms and refusal paths),
//! claim mapping, minting and the secret file.
//!
//! The PEM key pairs below are throwaway test keys generated with
//! `openssl genpkey` (RSA 2048, EC P-256) solely for these tests.

use std::path::PathBuf;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;
use crate::limits::JWT_HEADER_SEGMENT_BYTES_MAX;

const RSA_PRIVATE_PEM: &str = "\
-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCVv/M0ZL8e6grK
G3imM7nfhiyvxL/PY0VPcfwE1DqxbEweh7HCI93MGtx8zpT+O4C8/emEhThSX+G8
vdhzSCBuMn4l6V012e3GNJ9wY7FJIkjvcwX3OEZKNKeSKzda9XZkz/BcO0K58+Sq
MMqahJRNWroZhA6Djz8yQ77gtv9JSfoE6yUqjHIW7gBA4IMwGmXU2/idA+ehUOlX
/TPEISQdrcVWDIdFeP4BMnb5dOOfrXp92tdO4F9DmhXM6uwA87nuvZwyvYCsf1Fe
47YHyL6gPCWl3o67zwOX4yhTdcLG/+buAihJShFYGUYyWZXqa8MwLkerufQVHsqj
Nv8XsgXrAgMBAAECggEABUA3zOyDbxgRzMht0JYbvGS+CGPDvgfjFEgQ6DJw5GvB
t4hWiVIsos2GUbIEs21utDHLEGSDdw/5oF6fylsLGBIZLkcih5LerYaG2LAGNWRI
Xm0QFn0Yqd1yysNNK5lTz3EjInjJfC+7IuSXFhf0A0pdICvrPl21f5O0i7ie9vjd
VcvLToXAmveCC/Mb3eSuaLzglquxlAG7SI6VtYyZY7YkC0M2/qq9Pv9U83fkMcW+
8WUbpAhoDieVbBgy8wE9xj/k/EgS2jLuXNxKhIjs2bhTvYMHOn2lZXbIV39L5rIX
Yat3Q1gdlM/cOEtWQy+fJFcAVbYYOv+pgZpnIPHQkQKBgQDN907PxxIbw2IcRvUG
VvJfg8da7Cki8+7Cg3wBfrIwf+Vz4KShgBZ0ijIXqg25tpjtsQkfSqUaZeq6mDTO
3V0C2bl1Zf60UYxZ/XleQy6sw5aBxH4/ir1OmPu5RMBWM42i0gQIprZf5ccovSGF
v9yNa41lfuf+f8WKdDJpCaf9/QKBgQC6IKVYePjDa1+pqZUPkD0oP1X43g1RE4D6
PMp3/lM4NHMDGT+KqHNBwHY9k+6qSDk7kql/vkQr2X3w9wmMZ/fFLOSZTPYmVktb
OB/F9pJXFOKGfQeNLzB3YOrMKF8LNlDWS1rtoxd9NRzAFiG4i+/eqBgB9NlRep/S
pY8WdjSkBwKBgGhR/J8Mq0VYntbHsc82NqjeLBkHSIalmqb2xdZT/5jFDsi0XW5X
XAhG/rwxq6YGsEqjwoUQ37MRL+S2tviX8kZBVMf7kxhtvXLPCawOxxNGNXMgvPke
Imgu4ECka+69Sd3QFa70Eadc0JT3xoTh+qm+ce2Ya5ThzoIj/GxrMaVZAoGBAK71
KPe1HwFy2QV+puNuTk6a2pGJCTOBBegzZI7OviNDCimLfjM0jMLtyzeu6tWd9k6N
Wk795s7hLoVncc5NnJX30RpZQbhfvY4Nf7BySrUYqKaKuKJ6DTDqJUurV0wOzoXh
Z6Ohft7vIgtdwmza/atqjsaoBe+VOM6lWY9fpbPZAoGAfZb/ywh0s2l2emx5QO5A
VumutfXcHlpey98QjSM5GGfbPZLXZKsK1+Kvqc1PD/+Yl9Km2RMLIIOm+TuVeswG
G8kyKzLomqndfrM1RfmkdFfZbowUczWqKiqwQ3m0pk3VuSUsPO1MhH+NCBjt4f2l
w68VvwvsUUd201JmeOnP7yU=
-----END PRIVATE KEY-----
";

const RSA_PUBLIC_PEM: &str = "\
-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAlb/zNGS/HuoKyht4pjO5
34Ysr8S/z2NFT3H8BNQ6sWxMHoexwiPdzBrcfM6U/juAvP3phIU4Ul/hvL3Yc0gg
bjJ+JeldNdntxjSfcGOxSSJI73MF9zhGSjSnkis3WvV2ZM/wXDtCufPkqjDKmoSU
TVq6GYQOg48/MkO+4Lb/SUn6BOslKoxyFu4AQOCDMBpl1Nv4nQPnoVDpV/0zxCEk
Ha3FVgyHRXj+ATJ2+XTjn616fdrXTuBfQ5oVzOrsAPO57r2cMr2ArH9RXuO2B8i+
oDwlpd6Ou88Dl+MoU3XCxv/m7gIoSUoRWBlGMlmV6mvDMC5Hq7n0FR7Kozb/F7IF
6wIDAQAB
-----END PUBLIC KEY-----
";

const EC_PRIVATE_PEM: &str = "\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgfSWVlOE/q+mFhI7c
/QrEnsg4ieuqVGLxSQ4ANrgdKgmhRANCAAR/pCCEVXs060q4iuTQR/E0MoJRZUEe
rm8klB0rbpkJeGw5SWKGU2Dqcb3Z0zesiqok69JZP5q3khsgiQIZQHtA
-----END PRIVATE KEY-----
";

const EC_PUBLIC_PEM: &str = "\
-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEf6QghFV7NOtKuIrk0EfxNDKCUWVB
Hq5vJJQdK26ZCXhsOUlihlNg6nG92dM3rIqqJOvSWT+at5IbIIkCGUB7QA==
-----END PUBLIC KEY-----
";

const SECRET: &[u8] = b"test-secret-0123456789abcdef0123456789";

fn hs_verifier() -> Verifier {
    let settings = AuthSettings { hs256_secret: Some(SECRET.to_vec()), ..Default::default() };
    Verifier::new(&settings).expect("HS256 verifier")
}

fn in_one_hour() -> u64 {
    now_unix_s() + 3600
}

/// Signs arbitrary JSON claims with the given algorithm and key.
fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).expect("sign test token")
}

fn sign_hs(claims: &Value) -> String {
    sign(Algorithm::HS256, &EncodingKey::from_secret(SECRET), claims)
}

/// Unpadded base64url encoding, for hand-built tokens.
fn b64url(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

fn hand_built(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes()),
        signature
    )
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "roomcast-auth-{tag}-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn hs256_string_sub_with_sid_role_and_scopes_array() {
    let exp = in_one_hour();
    let token = sign_hs(&json!({
        "sub": "alice", "exp": exp, "sid": "s-1", "jti": "j-1",
        "role": "service", "scopes": ["rooms:read", "rooms:write"],
    }));
    let id = hs_verifier().verify(&token).expect("valid token");
    assert_eq!(
        id,
        Identity {
            user: "alice".into(),
            session: Some("s-1".into()),
            is_service: true,
            scopes: vec!["rooms:read".into(), "rooms:write".into()],
            expires_at: exp,
        }
    );
}

#[test]
fn hs256_numeric_sub_jti_fallback_and_space_separated_scope() {
    let token = sign_hs(&json!({
        "sub": 12345, "exp": in_one_hour(), "jti": "j-9", "role": "user",
        "scope": "a  b c",
    }));
    let id = hs_verifier().verify(&token).expect("valid token");
    assert_eq!(id.user, "12345");
    assert_eq!(id.session.as_deref(), Some("j-9"));
    assert!(!id.is_service);
    assert_eq!(id.scopes, ["a", "b", "c"]);
}

#[test]
fn hs256_defaults_without_optional_claims() {
    let token = sign_hs(&json!({"sub": "bob", "exp": in_one_hour()}));
    let id = hs_verifier().verify(&format!("  {token}\n")).expect("valid token");
    assert_eq!(id.session, None);
    assert!(!id.is_service);
    assert_eq!(id.scopes, ["*"]);
    let negative = sign_hs(&json!({"sub": -7, "exp": in_one_hour()}));
    assert_eq!(hs_verifier().verify(&negative).map(|i| i.user), Ok("-7".into()));
}

#[test]
fn expired_is_refused_and_leeway_applies() {
    let token = sign_hs(&json!({"sub": "a", "exp": now_unix_s() - 120}));
    assert_eq!(hs_verifier().verify(&token), Err(AuthError::Expired));
    let lenient = Verifier::new(&AuthSettings {
        hs256_secret: Some(SECRET.to_vec()),
        leeway_s: 600,
        ..Default::default()
    })
    .expect("verifier");
    assert!(lenient.verify(&token).is_ok());
}

#[test]
fn wrong_secret_and_tampered_payload_are_bad_signature() {
    let other = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another secret"),
        &json!({"sub": "a", "exp": in_one_hour()}),
    );
    assert_eq!(hs_verifier().verify(&other), Err(AuthError::BadSignature));

    let good = sign_hs(&json!({"sub": "a", "exp": in_one_hour()}));
    let parts: Vec<&str> = good.split('.').collect();
    let forged_payload =
        b64url(json!({"sub": "admin", "exp": in_one_hour()}).to_string().as_bytes());
    let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    assert_eq!(hs_verifier().verify(&forged), Err(AuthError::BadSignature));
}

#[test]
fn alg_none_is_refused() {
    let claims = json!({"sub": "a", "exp": in_one_hour()});
    let token = hand_built(&json!({"alg": "none", "typ": "JWT"}), &claims, "");
    assert_eq!(hs_verifier().verify(&token), Err(AuthError::AlgorithmNotAllowed));
    let upper = hand_built(&json!({"alg": "NONE"}), &claims, "");
    assert_eq!(hs_verifier().verify(&upper), Err(AuthError::AlgorithmNotAllowed));
}

#[test]
fn hs384_is_refused() {
    let token = sign(
        Algorithm::HS384,
        &EncodingKey::from_secret(SECRET),
        &json!({"sub": "a", "exp": in_one_hour()}),
    );
    assert_eq!(hs_verifier().verify(&token), Err(AuthError::AlgorithmNotAllowed));
}

#[test]
fn rs256_accepted_with_rsa_key() {
    let verifier = Verifier::new(&AuthSettings {
        rsa_public_pem: Some(RSA_PUBLIC_PEM.as_bytes().to_vec()),
        ..Default::default()
    })
    .expect("RS256 verifier");
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()).expect("RSA private key");
    let token = sign(Algorithm::RS256, &key, &json!({"sub": "r", "exp": in_one_hour()}));
    assert_eq!(verifier.verify(&token).map(|i| i.user), Ok("r".into()));
    assert_eq!(verifier.algorithms(), ["RS256"]);

    // Key confusion: HS256 signed with the public PEM as the HMAC secret.
    let confused = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(RSA_PUBLIC_PEM.as_bytes()),
        &json!({"sub": "r", "exp": in_one_hour()}),
    );
    assert_eq!(verifier.verify(&confused), Err(AuthError::AlgorithmNotAllowed));
}

#[test]
fn rs256_refused_when_only_hs256_configured() {
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()).expect("RSA private key");
    let token = sign(Algorithm::RS256, &key, &json!({"sub": "r", "exp": in_one_hour()}));
    assert_eq!(hs_verifier().verify(&token), Err(AuthError::AlgorithmNotAllowed));
}

#[test]
fn es256_accepted_alongside_hs256() {
    let verifier = Verifier::new(&AuthSettings {
        hs256_secret: Some(SECRET.to_vec()),
        ec_public_pem: Some(EC_PUBLIC_PEM.as_bytes().to_vec()),
        ..Default::default()
    })
    .expect("verifier");
    let key = EncodingKey::from_ec_pem(EC_PRIVATE_PEM.as_bytes()).expect("EC private key");
    let token = sign(Algorithm::ES256, &key, &json!({"sub": "e", "exp": in_one_hour()}));
    assert_eq!(verifier.verify(&token).map(|i| i.user), Ok("e".into()));
    let hs = sign_hs(&json!({"sub": "h", "exp": in_one_hour()}));
    assert_eq!(verifier.verify(&hs).map(|i| i.user), Ok("h".into()));
    assert_eq!(verifier.algorithms(), ["HS256", "ES256"]);
}

#[test]
fn missing_or_bad_sub_and_missing_exp_are_refused() {
    let v = hs_verifier();
    let exp = in_one_hour();
    for claims in [
        json!({"exp": exp}),
        json!({"sub": "", "exp": exp}),
        json!({"sub": null, "exp": exp}),
        json!({"sub": 1.5, "exp": exp}),
        json!({"sub": "a"}),
        json!({"sub": "a", "exp": "tomorrow"}),
    ] {
        let result = v.verify(&sign_hs(&claims));
        assert!(matches!(result, Err(AuthError::Invalid(_))), "{claims}: {result:?}");
    }
    // A structured `sub` trips the JWT library's own claim parser first.
    let structured = v.verify(&sign_hs(&json!({"sub": ["a"], "exp": exp})));
    assert_eq!(structured, Err(AuthError::Malformed));
}

#[test]
fn a_sub_that_breaks_the_user_id_rule_is_refused() {
    let v = hs_verifier();
    let exp = in_one_hour();
    let too_long = "u".repeat(crate::limits::USER_ID_BYTES_MAX + 1);
    for sub in ["a/b", "bob\u{0}", "..", ".", "al ice", "x\ny", "\u{202e}x", too_long.as_str()] {
        let result = v.verify(&sign_hs(&json!({"sub": sub, "exp": exp})));
        match result {
            Err(AuthError::Invalid(reason)) => {
                assert!(reason.contains("not a user id"), "{reason}")
            }
            other => panic!("{sub:?}: {other:?}"),
        }
    }
    for sub in ["1001", "alice", "u123", "café", "auth0|abc", "alice@example.com"] {
        let token = sign_hs(&json!({"sub": sub, "exp": exp}));
        assert_eq!(v.verify(&token).map(|i| i.user), Ok(sub.to_string()), "{sub:?}");
    }
    let negative = sign_hs(&json!({"sub": -7, "exp": exp}));
    assert_eq!(v.verify(&negative).map(|i| i.user), Ok("-7".to_string()));
}

#[test]
fn minting_refuses_a_sub_that_is_not_a_user_id() {
    for sub in ["", "a/b", "x y", ".."] {
        let claims = MintClaims { sub: sub.into(), role: None, sid: None, scopes: None, ttl_s: 60 };
        let result = mint_hs256(b"secret", &claims);
        assert!(matches!(result, Err(AuthError::Invalid(_))), "{sub:?}: {result:?}");
    }
}

#[test]
fn missing_and_malformed_tokens() {
    let v = hs_verifier();
    assert_eq!(v.verify(""), Err(AuthError::Missing));
    assert_eq!(v.verify("   "), Err(AuthError::Missing));
    for bad in ["abc", "a.b", "!!!.e30.sig", "e30.e30.sig", ".e30.sig"] {
        assert_eq!(v.verify(bad), Err(AuthError::Malformed), "{bad}");
    }
    // The signature is checked before the payload is decoded.
    let header = b64url(br#"{"alg":"HS256"}"#);
    let forged = format!("{header}.%%%.sig");
    assert_eq!(v.verify(&forged), Err(AuthError::BadSignature));
    assert_eq!(v.verify(&format!("{header}.e30.%%%")), Err(AuthError::Malformed));
    let huge = "A".repeat(JWT_HEADER_SEGMENT_BYTES_MAX + 4);
    assert_eq!(v.verify(&format!("{huge}.e30.x")), Err(AuthError::Malformed));
}

#[test]
fn constructor_refuses_bad_configuration() {
    assert!(matches!(Verifier::new(&AuthSettings::default()), Err(AuthError::Invalid(_))));
    let empty = AuthSettings { hs256_secret: Some(Vec::new()), ..Default::default() };
    assert!(matches!(Verifier::new(&empty), Err(AuthError::Invalid(_))));
    let bad_pem = AuthSettings { rsa_public_pem: Some(b"nope".to_vec()), ..Default::default() };
    assert!(matches!(Verifier::new(&bad_pem), Err(AuthError::Invalid(_))));
    let bad_ec = AuthSettings { ec_public_pem: Some(b"nope".to_vec()), ..Default::default() };
    assert!(matches!(Verifier::new(&bad_ec), Err(AuthError::Invalid(_))));
    let debug =
        format!("{:?}", AuthSettings { hs256_secret: Some(SECRET.to_vec()), ..Default::default() });
    assert!(!debug.contains("test-secret"), "{debug}");
}

#[test]
fn error_codes_and_messages_are_distinct() {
    let all = [
        AuthError::Missing,
        AuthError::Malformed,
        AuthError::Expired,
        AuthError::BadSignature,
        AuthError::AlgorithmNotAllowed,
        AuthError::Invalid("x".into()),
    ];
    let codes: std::collections::HashSet<_> = all.iter().map(AuthError::code).collect();
    assert_eq!(codes.len(), all.len());
    assert_eq!(AuthError::Expired.code(), "token_expired");
    assert!(all.iter().all(|e| !e.to_string().is_empty()));
}

#[test]
fn minted_token_round_trips() {
    let claims = MintClaims {
        sub: "svc".into(),
        role: Some("service".into()),
        sid: None,
        scopes: Some(vec!["rooms:*".into()]),
        ttl_s: 60,
    };
    let token = mint_hs256(SECRET, &claims).expect("mint");
    let id = hs_verifier().verify(&token).expect("verify minted");
    assert_eq!(id.user, "svc");
    assert!(id.is_service);
    assert_eq!(id.scopes, ["rooms:*"]);
    let jti = id.session.expect("jti as session fallback");
    assert_eq!(jti.len(), 32);
    let now = now_unix_s();
    assert!(id.expires_at >= now + 59 && id.expires_at <= now + 61);
    let again = mint_hs256(SECRET, &claims).expect("mint");
    assert_ne!(hs_verifier().verify(&again).map(|i| i.session), Ok(Some(jti)));
}

#[test]
fn minting_refuses_bad_input() {
    let ok =
        MintClaims { sub: "a".into(), role: None, sid: Some("s".into()), scopes: None, ttl_s: 5 };
    assert!(mint_hs256(b"", &ok).is_err());
    assert!(mint_hs256(SECRET, &MintClaims { sub: String::new(), ..ok.clone() }).is_err());
    assert!(mint_hs256(SECRET, &MintClaims { ttl_s: 0, ..ok.clone() }).is_err());
    let id = hs_verifier().verify(&mint_hs256(SECRET, &ok).expect("mint")).expect("verify");
    assert_eq!(id.session.as_deref(), Some("s"));
}

#[test]
fn secret_file_is_created_private_and_reused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("secret").join("nested");
    let (first, created) = load_or_create_secret(&dir).expect("create secret");
    assert!(created);
    assert_eq!(first.len(), 64);
    assert!(first.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)));
    let meta = std::fs::metadata(dir.join(SECRET_FILE_NAME)).expect("stat secret");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let (second, created) = load_or_create_secret(&dir).expect("reuse secret");
    assert!(!created);
    assert_eq!(first, second);
    let leftovers = std::fs::read_dir(&dir).expect("list").count();
    assert_eq!(leftovers, 1, "only the secret file remains");

    let claims = MintClaims { sub: "a".into(), role: None, sid: None, scopes: None, ttl_s: 5 };
    let token = mint_hs256(&second, &claims).expect("mint");
    let verifier = Verifier::new(&AuthSettings { hs256_secret: Some(first), ..Default::default() });
    assert!(verifier.expect("verifier").verify(&token).is_ok());
    let _ = std::fs::remove_dir_all(dir.parent().unwrap_or(&dir));
}

#[test]
fn secret_file_contents_are_trimmed_and_empty_is_refused() {
    let dir = temp_dir("trim");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join(SECRET_FILE_NAME);
    std::fs::write(&path, "  shared-hex-secret \n").expect("write");
    let (secret, created) = load_or_create_secret(&dir).expect("load");
    assert!(!created);
    assert_eq!(secret, b"shared-hex-secret");
    std::fs::write(&path, " \n\t").expect("write");
    let err = load_or_create_secret(&dir).expect_err("empty secret refused");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Signs raw header and claims JSON text (duplicates, odd types) with the test secret.
fn sign_raw(header: &str, claims: &str) -> String {
    use hmac::Mac;
    let message = format!("{}.{}", b64url(header.as_bytes()), b64url(claims.as_bytes()));
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET).expect("any key length");
    mac.update(message.as_bytes());
    format!("{message}.{}", b64url(&mac.finalize().into_bytes()))
}

#[test]
fn hs256_one_pass_agrees_with_the_library_on_edge_cases() {
    let v = hs_verifier();
    let exp = in_one_hour();
    let past = now_unix_s() - 3600;
    let later = now_unix_s() + 7200;
    let claims = [
        format!(r#"{{"sub":"a","exp":{exp}}}"#),
        format!(r#"{{"sub":"a","exp":{exp}.4}}"#),
        format!(r#"{{"sub":"a","exp":{past}}}"#),
        format!(r#"{{"sub":"a","exp":{past}.0}}"#),
        format!(r#"{{"sub":"a","exp":-{exp}}}"#),
        r#"{"sub":"a","exp":-0.0}"#.to_string(),
        r#"{"sub":"a","exp":1e30}"#.to_string(),
        r#"{"sub":"a","exp":null}"#.to_string(),
        r#"{"sub":"a","exp":"1"}"#.to_string(),
        r#"{"sub":"a","exp":true}"#.to_string(),
        r#"{"sub":"a","exp":[]}"#.to_string(),
        r#"{"sub":"a","exp":{}}"#.to_string(),
        r#"{"sub":"a","exp":[1]}"#.to_string(),
        r#"{"sub":"a","exp":{"a":1}}"#.to_string(),
        r#"{"sub":"a"}"#.to_string(),
        format!(r#"{{"sub":"a","exp":{exp},"exp":{exp}}}"#),
        format!(r#"{{"sub":"a","sub":"b","exp":{exp}}}"#),
        format!(r#"{{"sub":"a","exp":{exp},"nbf":{later}}}"#),
        format!(r#"{{"sub":"a","exp":{exp},"nbf":{past}}}"#),
        format!(r#"{{"sub":"a","exp":{exp},"nbf":"x"}}"#),
        format!(r#"{{"sub":"a","exp":{exp},"nbf":[]}}"#),
        format!(r#"{{"sub":"a","exp":{exp},"nbf":1,"nbf":1}}"#),
        format!(r#"{{"sub":"a","exp":{exp},"iss":5,"aud":[1,{{}}]}}"#),
        format!(r#"{{"sub":"a","exp":{exp},"iss":"x","iss":"y"}}"#),
        format!(r#"{{"sub":"a","exp":{exp},"aud":null,"aud":null}}"#),
        format!(r#"{{"sub":1.5,"exp":{exp}}}"#),
        format!(r#"{{"sub":true,"exp":{exp}}}"#),
        format!(r#"{{"sub":null,"exp":{exp}}}"#),
        format!(r#"{{"sub":"","exp":{exp}}}"#),
        format!(r#"{{"sub":[],"exp":{exp}}}"#),
        format!(r#"{{"sub":{{}},"exp":{exp}}}"#),
        format!(r#"{{"sub":-7,"exp":{exp}}}"#),
        format!(r#"{{"sub":18446744073709551615,"exp":{exp}}}"#),
        format!(r#"{{"sub":"a\/b","exp":{exp}}}"#),
        format!(r#"{{"sub":"caf\u00e9","exp":{exp}}}"#),
        format!(r#"{{"sub":"a","exp":{exp},"sid":5}}"#),
        format!(r#"{{"sub":"a","exp":{exp},"sid":null,"jti":"j"}}"#),
        format!(r#"{{"sub":"a","exp":{exp},"sid":"s\n","jti":"j"}}"#),
        format!(r#"{{"sub":"a","exp":{exp},"role":"service","scope":"x y"}}"#),
        format!(r#"{{"sub":"a","exp":{exp},"role":["service"]}}"#),
        format!(r#"{{"sub":"a","exp":{exp},"scopes":["a",1]}}"#),
        format!(r#"{{"sub":"a","exp":{exp},"scopes":[],"scope":"b"}}"#),
        format!(r#"{{"sub":"a","exp":{exp},"other":{{"deep":[1,2,{{}}]}}}}"#),
        format!(r#"{{"sub":"a","exp":{exp}}} "#),
        format!(r#"{{"sub":"a","exp":{exp}}}x"#),
        r#"[1,2]"#.to_string(),
        r#"[4000000000,0,null,null,null]"#.to_string(),
        r#""text""#.to_string(),
        String::new(),
    ];
    let headers = [
        r#"{"alg":"HS256"}"#,
        r#"{"typ":"JWT","alg":"HS256"}"#,
        r#"{"alg":"HS256","typ":"JWT"}"#,
        r#"{"alg":"HS256","typ":"JWT" }"#,
        r#"{"alg":"HS256","foo":5}"#,
        r#"{"alg":"HS256","foo":"bar"}"#,
        r#"{"alg":"HS384"}"#,
        r#"{"alg":"none"}"#,
        r#"{"alg":5}"#,
        r#"{}"#,
        r#"{"alg":"HS256","typ":"JWT","kid":"k1"}"#,
        r#"{"alg":"HS256","kid":5}"#,
        r#"{"alg":"HS256","alg":"HS256"}"#,
        r#"{"typ":"JWT","alg":"HS256","x5c":["AA"]}"#,
    ];
    let mut compared = 0;
    for header in headers {
        for claim in &claims {
            let token = sign_raw(header, claim);
            compared += 1;
            if claim.starts_with('[') {
                // The one intended difference: the claims set must be an object (refused as
                // malformed, unless the header was refused first, as by the library).
                let (ours, library) = (v.verify(&token), v.verify_by_library(&token));
                assert!(ours == Err(AuthError::Malformed) || ours == library, "{header} {claim}");
                assert!(ours.is_err(), "{header} {claim}");
                continue;
            }
            assert_eq!(v.verify(&token), v.verify_by_library(&token), "{header} {claim}");
        }
    }
    // Tampered and cut tokens, through both.
    let good = sign_raw(headers[0], &claims[0]);
    let (message, signature) = good.rsplit_once('.').expect("three parts");
    let mut others = vec![
        format!("{message}."),
        format!("{message}.{}", &signature[1..]),
        format!("{message}.{signature}A"),
        format!("{message}.{signature}=="),
        format!("{message}.{}", "A".repeat(200)),
        format!("{message}.{}", "%".repeat(200)),
        format!("{message}.x.{signature}"),
        format!("{message}x.{signature}"),
        format!("x.{good}"),
        message.to_string(),
    ];
    // A header segment with non-canonical trailing bits (`{"alg":"HS256"}` is 15 bytes: its
    // base64url ends in a character holding 4 unused bits).
    let header_b64 = b64url(headers[0].as_bytes());
    let mut bits = header_b64.clone().into_bytes();
    if let Some(last) = bits.last_mut() {
        *last = if *last == b'9' { b'8' } else { *last + 1 };
    }
    let noncanonical = String::from_utf8(bits).expect("ascii");
    others.push(good.replacen(&header_b64, &noncanonical, 1));
    for token in &others {
        assert_eq!(v.verify(token), v.verify_by_library(token), "{token}");
        compared += 1;
    }
    assert_eq!(v.verify(&others[others.len() - 1]), Err(AuthError::Malformed));
    assert!(compared > 250);
}

#[test]
fn hs256_leeway_and_not_before_in_one_pass() {
    let lenient = Verifier::new(&AuthSettings {
        hs256_secret: Some(SECRET.to_vec()),
        leeway_s: 600,
        ..Default::default()
    })
    .expect("verifier");
    let now = now_unix_s();
    let soon_expired =
        sign_raw(r#"{"alg":"HS256"}"#, &format!(r#"{{"sub":"a","exp":{}}}"#, now - 60));
    assert!(lenient.verify(&soon_expired).is_ok());
    assert_eq!(hs_verifier().verify(&soon_expired), Err(AuthError::Expired));
    let early = format!(r#"{{"sub":"a","exp":{},"nbf":{}}}"#, now + 3600, now + 300);
    let early = sign_raw(r#"{"alg":"HS256"}"#, &early);
    assert!(lenient.verify(&early).is_ok());
    assert!(matches!(hs_verifier().verify(&early), Err(AuthError::Invalid(_))));
    // Only HS256 tokens take the one-pass path; an HS256 token without an HS256 key is refused.
    let es_only = Verifier::new(&AuthSettings {
        ec_public_pem: Some(EC_PUBLIC_PEM.as_bytes().to_vec()),
        ..Default::default()
    })
    .expect("verifier");
    assert_eq!(es_only.verify(&soon_expired), Err(AuthError::AlgorithmNotAllowed));
}
