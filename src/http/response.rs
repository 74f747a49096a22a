//! Complete HTTP/1.1 response bytes: status line, headers and body in one `Bytes`.
//!
//! Owns: [`response`] and its JSON helpers, including the API's error body shape
//! `{"error":{"code":"...","message":"..."}}`, [`head_only`] (the answer to HEAD) and
//! [`reason_phrase`].
//!
//! Invariants: every response carries `Content-Length` except 1xx, 204 and 304 (which RFC
//! 9110 §8.6 forbids from having one); `Connection: close` is sent whenever `keep_alive` is
//! false; extra headers containing CR or LF are dropped, so no header injection is possible.
//! Limits: no chunked responses, no `Date`/`Server` headers.

use std::fmt::Write as _;

use bytes::Bytes;

/// Standard reason phrase for `status` (`"Unknown"` for codes we never send).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Whether a header name or value is safe to emit verbatim.
fn header_safe(s: &str) -> bool {
    !s.bytes().any(|b| b == b'\r' || b == b'\n')
}

/// A complete response: status line with reason phrase, optional `Content-Type`,
/// `Content-Length` (see module invariants), `Connection: close` when `!keep_alive`,
/// `extra_headers` in order, then `body`.
pub fn response(
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
    keep_alive: bool,
    extra_headers: &[(&str, &str)],
) -> Bytes {
    // One buffer for head and body: the body is copied once, after the head.
    let mut head = String::with_capacity(160 + body.len());
    let _ = write!(head, "HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    if let Some(ct) = content_type.filter(|ct| header_safe(ct)) {
        let _ = write!(head, "Content-Type: {ct}\r\n");
    }
    if !(status < 200 || status == 204 || status == 304) {
        let _ = write!(head, "Content-Length: {}\r\n", body.len());
    }
    if !keep_alive {
        head.push_str("Connection: close\r\n");
    }
    for (name, value) in extra_headers {
        if header_safe(name) && header_safe(value) {
            let _ = write!(head, "{name}: {value}\r\n");
        }
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    Bytes::from(out)
}

/// `response` without its content: the status line and headers (`Content-Length` kept), as
/// the answer to a HEAD request must be (RFC 9110 §9.3.2).
pub fn head_only(response: Bytes) -> Bytes {
    match response.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(end) => response.slice(..end + 4),
        None => response,
    }
}

/// A JSON response from an already-serialised `body`.
pub fn json(status: u16, body: &[u8], keep_alive: bool) -> Bytes {
    response(status, Some("application/json"), body, keep_alive, &[])
}

/// A JSON response serialising `value`.
pub fn json_value(status: u16, value: &serde_json::Value, keep_alive: bool) -> Bytes {
    match serde_json::to_vec(value) {
        Ok(body) => json(status, &body, keep_alive),
        Err(_) => json_error(500, "internal", "response serialisation failed", keep_alive),
    }
}

/// A JSON error response with body exactly `{"error":{"code":..,"message":..}}`.
pub fn json_error(status: u16, code: &str, message: &str, keep_alive: bool) -> Bytes {
    json_error_with_headers(status, code, message, keep_alive, &[])
}

/// [`json_error`] with extra response headers (e.g. `Sec-WebSocket-Version: 13` on 426).
pub fn json_error_with_headers(
    status: u16,
    code: &str,
    message: &str,
    keep_alive: bool,
    extra_headers: &[(&str, &str)],
) -> Bytes {
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned());
    let body = format!(r#"{{"error":{{"code":{},"message":{}}}}}"#, quote(code), quote(message));
    let ct = Some("application/json");
    response(status, ct, body.as_bytes(), keep_alive, extra_headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(b: Bytes) -> String {
        String::from_utf8(b.to_vec()).unwrap_or_default()
    }

    #[test]
    fn plain_response_layout() {
        let r = text(response(200, Some("text/plain"), b"hi", true, &[("X-A", "1")]));
        assert_eq!(
            r,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nX-A: 1\r\n\r\nhi"
        );
        let r = text(response(404, None, b"", false, &[]));
        assert_eq!(r, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        let r = text(response(204, None, b"", true, &[]));
        assert_eq!(r, "HTTP/1.1 204 No Content\r\n\r\n");
    }

    #[test]
    fn head_only_keeps_the_headers_and_drops_the_content() {
        let full = response(405, Some("application/json"), b"{\"a\":1}", true, &[("Allow", "GET")]);
        let head = text(head_only(full));
        assert_eq!(
            head,
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json\r\n\
             Content-Length: 7\r\nAllow: GET\r\n\r\n"
        );
        assert_eq!(
            text(head_only(response(204, None, b"", true, &[]))),
            "HTTP/1.1 204 No Content\r\n\r\n"
        );
    }

    #[test]
    fn header_injection_is_dropped() {
        let r = text(response(200, None, b"", true, &[("X-A", "1\r\nSet-Cookie: x=1")]));
        assert!(!r.contains("Set-Cookie"));
    }

    #[test]
    fn json_bodies() {
        let r = text(json_error(409, "conflict", "say \"hi\"\n", true));
        assert!(r.starts_with("HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\n"));
        let body = r#"{"error":{"code":"conflict","message":"say \"hi\"\n"}}"#;
        assert!(r.ends_with(&format!("Content-Length: {}\r\n\r\n{body}", body.len())));
        let r = text(json_value(201, &serde_json::json!({"id": 7}), true));
        assert!(r.ends_with("\r\n\r\n{\"id\":7}"), "{r}");
        let r = text(json(200, b"[]", false));
        assert!(r.contains("Connection: close\r\n") && r.ends_with("[]"));
    }

    #[test]
    fn reason_phrases() {
        for status in [
            101, 200, 201, 204, 400, 401, 403, 404, 405, 409, 411, 413, 426, 429, 431, 500, 501,
            503,
        ] {
            assert_ne!(reason_phrase(status), "Unknown", "{status}");
        }
        assert_eq!(reason_phrase(599), "Unknown");
    }
}
