//! `http::query`: `query_param`, `percent_decode`, `path_segment`, `cookie` and `bearer`.
//!
//! Invariants: no panic; nothing to decode borrows the input unchanged; a decoded path
//! segment, percent-encoded again, decodes to itself; a query value, form-encoded again,
//! decodes to itself; a cookie value and a bearer token are (trimmed) slices of the header.
#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use roomcast::http::head::{Method, RequestHead};
use roomcast::http::query::{bearer, cookie, path_segment, percent_decode, query_param};

fn head(cookie: &[u8], authorization: &[u8]) -> RequestHead {
    RequestHead {
        method: Method::from_token("GET"),
        path: "/".into(),
        query: None,
        version: 1,
        headers: [
            ("cookie".into(), cookie.to_vec()),
            ("authorization".into(), authorization.to_vec()),
        ]
        .into_iter()
        .collect(),
        content_length: 0,
        keep_alive: true,
        chunked: false,
    }
}

fuzz_target!(|data: &[u8]| {
    // Header values may be any bytes; the string functions get the UTF-8 view.
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (a, b) = (&data[..split], data.get(split + 1..).unwrap_or(&[]));
    let h = head(a, b);
    if let Some(value) = cookie(&h, "session") {
        let header = std::str::from_utf8(a).expect("a cookie comes from a UTF-8 header");
        assert!(header.contains(value));
    }
    for name in ["", "a", "token"] {
        let _ = cookie(&h, name);
    }
    if let Some(token) = bearer(&h) {
        assert!(!token.is_empty() && token.trim() == token);
        assert!(std::str::from_utf8(b).expect("UTF-8").contains(token));
    }

    let text = String::from_utf8_lossy(data);
    let text = text.as_ref();

    let decoded = percent_decode(text);
    if !text.contains(['%', '+']) {
        assert!(matches!(decoded, Cow::Borrowed(s) if s == text));
    }

    for name in ["room", "token", "a b", ""] {
        if let Some(value) = query_param(text, name) {
            let encoded: String = utf8_percent_encode(&value, NON_ALPHANUMERIC).to_string();
            let query = format!("{}={encoded}", utf8_percent_encode(name, NON_ALPHANUMERIC));
            if !name.is_empty() {
                assert_eq!(query_param(&query, name).as_deref(), Some(value.as_ref()));
            }
        }
    }

    for segment in text.split('/') {
        match path_segment(segment) {
            Ok(decoded) => {
                if !segment.contains('%') {
                    assert!(matches!(decoded, Cow::Borrowed(s) if s == segment));
                }
                let encoded = utf8_percent_encode(&decoded, NON_ALPHANUMERIC).to_string();
                assert_eq!(path_segment(&encoded).as_deref(), Ok(decoded.as_ref()));
            }
            Err(_) => assert!(segment.contains('%')),
        }
    }
});
