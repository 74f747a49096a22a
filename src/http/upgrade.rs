//! The server side of the WebSocket opening handshake (RFC 6455 §4.2).
//!
//! Owns: recognising an upgrade request ([`is_websocket_upgrade`]) and validating it into
//! the complete `101 Switching Protocols` response ([`accept`]).
//!
//! Invariants: `accept` only succeeds for `GET` over HTTP/1.1 with `Upgrade: websocket`,
//! `Connection: upgrade`, `Sec-WebSocket-Version: 13` and a `Sec-WebSocket-Key` that is the
//! base64 encoding of exactly 16 bytes. Failures are [`HttpError`]s whose `extra_headers`
//! carry what RFC 6455 requires (e.g. `Sec-WebSocket-Version: 13` on 426).
//! Limits: no subprotocol negotiation: an offered `Sec-WebSocket-Protocol` is ignored and
//! never echoed. `Sec-WebSocket-Extensions` (permessage-deflate) is answered by the caller
//! (`net::http_conn`, through `ws::extension`), which adds the header to this response.

use bytes::Bytes;
use tungstenite::handshake::derive_accept_key;

use super::head::{HttpError, Method, RequestHead};

const VERSION_HEADERS: &[(&str, &str)] = &[("Sec-WebSocket-Version", "13")];
const UPGRADE_HEADERS: &[(&str, &str)] =
    &[("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "13")];

/// Whether `head` asks for a WebSocket upgrade: `Upgrade` lists the token `websocket` and
/// `Connection` lists `upgrade` (both case-insensitive).
pub fn is_websocket_upgrade(head: &RequestHead) -> bool {
    head.header_has_token("upgrade", "websocket") && head.header_has_token("connection", "upgrade")
}

/// Validate an upgrade request and build the full `101 Switching Protocols` response.
///
/// Errors: 405 (not GET, with `Allow: GET`), 400 (not HTTP/1.1, or missing/invalid
/// `Sec-WebSocket-Key`), 426 (not an upgrade, or `Sec-WebSocket-Version` other than 13;
/// with `Sec-WebSocket-Version: 13`).
pub fn accept(head: &RequestHead) -> Result<Bytes, HttpError> {
    let accept = accept_key(head)?;
    let mut response = Vec::with_capacity(SWITCHING.len() + accept.len() + 4);
    response.extend_from_slice(SWITCHING);
    response.extend_from_slice(accept.as_bytes());
    response.extend_from_slice(b"\r\n\r\n");
    Ok(Bytes::from(response))
}

/// The start of every 101, up to the `Sec-WebSocket-Accept` value: [`accept`]'s response is
/// this, the value, and `\r\n\r\n`; a caller adding headers writes them between.
pub const SWITCHING: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Accept: ";

/// Validates an upgrade request as [`accept`] does and returns its `Sec-WebSocket-Accept`
/// value, for a caller that renders the 101 with headers of its own (after [`SWITCHING`]).
pub fn accept_key(head: &RequestHead) -> Result<String, HttpError> {
    if head.method != Method::Get {
        let mut e = HttpError::new(405, "method_not_allowed", "websocket upgrade requires GET");
        e.extra_headers = &[("Allow", "GET")];
        return Err(e);
    }
    if head.version != 1 {
        return Err(HttpError::new(400, "invalid_request", "websocket upgrade requires HTTP/1.1"));
    }
    if !is_websocket_upgrade(head) {
        let mut e = HttpError::new(426, "upgrade_required", "expected a websocket upgrade");
        e.extra_headers = UPGRADE_HEADERS;
        return Err(e);
    }
    if head.header("sec-websocket-version").map(<[u8]>::trim_ascii) != Some(b"13") {
        let mut e = HttpError::new(426, "upgrade_required", "Sec-WebSocket-Version must be 13");
        e.extra_headers = VERSION_HEADERS;
        return Err(e);
    }
    let key = head
        .header("sec-websocket-key")
        .map(<[u8]>::trim_ascii)
        .filter(|key| is_valid_key(key))
        .ok_or_else(|| HttpError::new(400, "invalid_request", "invalid Sec-WebSocket-Key"))?;
    Ok(derive_accept_key(key))
}

/// Whether `key` is canonical base64 of exactly 16 bytes: 22 alphabet chars + `==`, with
/// the unused low bits of the last char zero.
fn is_valid_key(key: &[u8]) -> bool {
    let is_b64 = |b: &u8| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/';
    match key {
        [body @ .., last, b'=', b'='] if key.len() == 24 => {
            body.iter().all(is_b64) && matches!(last, b'A' | b'Q' | b'g' | b'w')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::parse_head;

    const SAMPLE: &str = "GET /ws HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
        Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Version: 13\r\n\r\n";

    fn head(raw: &str) -> RequestHead {
        match parse_head(raw.as_bytes(), 8192) {
            Ok(Some((head, _))) => head,
            other => panic!("expected a head, got {other:?}"),
        }
    }

    fn status_of(raw: &str) -> (u16, &'static [(&'static str, &'static str)]) {
        match accept(&head(raw)) {
            Err(e) => (e.status, e.extra_headers),
            Ok(r) => panic!("unexpected success: {r:?}"),
        }
    }

    #[test]
    fn rfc_6455_sample_key() {
        let h = head(SAMPLE);
        assert!(is_websocket_upgrade(&h));
        let response = accept(&h).map(|b| b.to_vec()).unwrap_or_default();
        assert_eq!(
            String::from_utf8(response).unwrap_or_default(),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
    }

    #[test]
    fn detects_upgrade_case_insensitively() {
        let h = head("GET / HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: UPGRADE\r\n\r\n");
        assert!(is_websocket_upgrade(&h));
        assert!(!is_websocket_upgrade(&head("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n")));
        let h = head("GET / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n");
        assert!(!is_websocket_upgrade(&h));
    }

    #[test]
    fn validation_errors() {
        let no_key = SAMPLE.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
        assert_eq!(status_of(&no_key).0, 400);
        for bad in ["dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25jZR==", "!!!", ""] {
            let raw = SAMPLE.replace("dGhlIHNhbXBsZSBub25jZQ==", bad);
            assert_eq!(status_of(&raw).0, 400, "{bad}");
        }
        let v8 = SAMPLE.replace("Version: 13", "Version: 8");
        assert_eq!(status_of(&v8), (426, VERSION_HEADERS));
        let no_version = SAMPLE.replace("Sec-WebSocket-Version: 13\r\n", "");
        assert_eq!(status_of(&no_version), (426, VERSION_HEADERS));
        assert_eq!(status_of(&SAMPLE.replace("GET", "POST")).0, 405);
        assert_eq!(status_of(&SAMPLE.replace("HTTP/1.1", "HTTP/1.0")).0, 400);
        let plain = SAMPLE.replace("Upgrade: websocket\r\n", "");
        assert_eq!(status_of(&plain), (426, UPGRADE_HEADERS));
    }
}
