//! Which web pages may use the Socket.IO endpoint (`rechat_cors_origins`), as engine.io's
//! server answers them: a polling request from an allowed page's origin gets
//! `Access-Control-Allow-Origin: <origin>` with `Access-Control-Allow-Credentials: true`, one
//! without an `Origin` gets `*`, and a preflight (`OPTIONS`) is answered 204; a polling
//! request or a WebSocket upgrade from another origin gets engine.io's 403 (`Forbidden`),
//! which also keeps other sites' pages from opening sockets in a visitor's name.
//!
//! Invariant: an `Origin` is reflected only when it is listed (or the list is `*`) and is a
//! bounded, header-safe value.

use bytes::Bytes;

use crate::http::head::RequestHead;
use crate::http::response;

/// Most origins the list may name.
pub const ORIGINS_MAX: usize = 64;
/// Longest origin reflected, bytes.
pub const ORIGIN_BYTES_MAX: usize = 256;

/// Checks the configured list: `*`, or 1 to [`ORIGINS_MAX`] comma-separated
/// `http(s)://host[:port]` origins.
pub fn validate(list: &str) -> Result<(), String> {
    if list.trim() == "*" {
        return Ok(());
    }
    let origins: Vec<&str> = list.split(',').map(str::trim).collect();
    if origins.len() > ORIGINS_MAX {
        return Err(format!("rechat_cors_origins lists more than {ORIGINS_MAX} origins"));
    }
    for origin in origins {
        let host = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
        let valid = host.is_some_and(|h| {
            !h.is_empty()
                && !h.contains('/')
                && h.bytes().all(|b| b.is_ascii_graphic())
                && origin.len() <= ORIGIN_BYTES_MAX
        });
        if !valid {
            return Err(format!(
                "rechat_cors_origins: {origin:?} is not `*` or an origin like https://example.com"
            ));
        }
    }
    Ok(())
}

/// How a request's origin stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// No `Origin` header (not a browser's cross-origin request).
    NoOrigin,
    /// An allowed origin, to reflect.
    Allowed(&'a str),
    /// Not allowed: 403.
    Refused,
}

/// Judges `head`'s `Origin` against the configured `list`.
pub fn judge<'a>(head: &'a RequestHead, list: &str) -> Verdict<'a> {
    let Some(origin) = head.header("origin") else {
        return Verdict::NoOrigin;
    };
    let Some(origin) = std::str::from_utf8(origin)
        .ok()
        .filter(|o| o.len() <= ORIGIN_BYTES_MAX && o.bytes().all(|b| b.is_ascii_graphic()))
    else {
        return Verdict::Refused;
    };
    let listed = list.trim() == "*" || list.split(',').any(|o| o.trim() == origin);
    if listed {
        Verdict::Allowed(origin)
    } else {
        Verdict::Refused
    }
}

/// The CORS headers for an answer to a request whose origin was judged `verdict`.
pub fn headers<'a>(verdict: &Verdict<'a>) -> Vec<(&'static str, &'a str)> {
    match verdict {
        Verdict::Allowed(origin) => vec![
            ("Access-Control-Allow-Origin", origin),
            ("Access-Control-Allow-Credentials", "true"),
            ("Vary", "Origin"),
        ],
        Verdict::NoOrigin => vec![("Access-Control-Allow-Origin", "*")],
        Verdict::Refused => Vec::new(),
    }
}

/// `response` (a whole HTTP response) with `headers` added after its status line.
pub fn with_headers(response: Bytes, headers: &[(&str, &str)]) -> Bytes {
    if headers.is_empty() {
        return response;
    }
    let Some(line_end) = response.windows(2).position(|w| w == b"\r\n") else {
        return response;
    };
    let mut out = Vec::with_capacity(response.len() + 128);
    out.extend_from_slice(&response[..line_end + 2]);
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(&response[line_end + 2..]);
    Bytes::from(out)
}

/// The answer to a preflight from an allowed origin (or none): 204 with the methods and
/// headers a polling client uses.
pub fn preflight(verdict: &Verdict<'_>, keep_alive: bool) -> Bytes {
    let mut extra = headers(verdict);
    extra.push(("Access-Control-Allow-Methods", "GET, POST, OPTIONS"));
    extra.push(("Access-Control-Allow-Headers", "Content-Type"));
    extra.push(("Access-Control-Max-Age", "86400"));
    response::response(204, None, b"", keep_alive, &extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_with_origin(origin: Option<&str>) -> RequestHead {
        let mut head =
            crate::http::head::parse_head(b"GET /socket.io/ HTTP/1.1\r\nHost: x\r\n\r\n", 1024)
                .expect("parses")
                .expect("whole")
                .0;
        if let Some(origin) = origin {
            head.headers.push(("origin".into(), origin.as_bytes().to_vec()));
        }
        head
    }

    #[test]
    fn lists_are_validated() {
        for ok in ["*", "https://a.example", "http://localhost:3000, https://b.example:8443"] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
        for bad in ["", "a.example", "https://", "https://a.example/path", "ftp://a", "*,https://a"]
        {
            assert!(validate(bad).is_err(), "{bad}");
        }
        let many = vec!["https://a.example"; ORIGINS_MAX + 1].join(",");
        assert!(validate(&many).is_err());
    }

    #[test]
    fn origins_are_judged_against_the_list() {
        let list = "https://app.example, http://localhost:3000";
        let cases = [
            (None, "*", Verdict::NoOrigin),
            (Some("https://evil.example"), "*", Verdict::Allowed("https://evil.example")),
            (Some("https://app.example"), list, Verdict::Allowed("https://app.example")),
            (Some("http://localhost:3000"), list, Verdict::Allowed("http://localhost:3000")),
            (Some("https://evil.example"), list, Verdict::Refused),
            (Some("https://app.example.evil"), list, Verdict::Refused),
            (Some("null"), list, Verdict::Refused),
        ];
        for (origin, list, want) in cases {
            let head = head_with_origin(origin);
            assert_eq!(judge(&head, list), want, "{origin:?} against {list}");
        }
        let long = format!("https://{}", "a".repeat(ORIGIN_BYTES_MAX));
        assert_eq!(judge(&head_with_origin(Some(&long)), "*"), Verdict::Refused);
    }

    #[test]
    fn headers_go_after_the_status_line() {
        let response = response::response(200, Some("text/plain"), b"ok", true, &[]);
        let out = with_headers(response, &headers(&Verdict::Allowed("https://a.example")));
        let text = String::from_utf8(out.to_vec()).expect("UTF-8");
        assert!(text
            .starts_with("HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: https://a.example\r\n"));
        assert!(text.contains("Access-Control-Allow-Credentials: true\r\n"));
        assert!(text.ends_with("\r\n\r\nok"));
        let out = preflight(&Verdict::NoOrigin, false);
        let text = String::from_utf8(out.to_vec()).expect("UTF-8");
        assert!(text.starts_with("HTTP/1.1 204 "), "{text}");
        assert!(text.contains("Access-Control-Allow-Methods: GET, POST, OPTIONS\r\n"));
    }
}
