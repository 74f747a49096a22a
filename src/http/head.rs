//! HTTP/1.x request-head parsing over a caller-owned buffer.
//!
//! Owns: [`parse_head`] (request line + headers via `httparse`), the parsed [`RequestHead`]
//! with the connection semantics the server needs (keep-alive, body framing), and
//! [`HttpError`], the error type of the whole `http` module.
//!
//! Invariants: parsing never reads past `head_bytes_max` bytes of the buffer and never
//! panics on peer input; at most [`HTTP_HEADERS_MAX`] headers are accepted; header names are
//! stored lowercase; `path` is the raw request target before `?` (not percent-decoded).
//!
//! Limits: only `Content-Length` bodies are supported; `Transfer-Encoding: chunked` is
//! reported through [`RequestHead::chunked`] so the caller can refuse it (411/501), and any
//! other transfer coding is rejected with 501. Obsolete line folding is rejected (400).

use std::fmt;

use crate::limits::HTTP_HEADERS_MAX;
use bytes::Bytes;

/// Request method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `PATCH`
    Patch,
    /// `DELETE`
    Delete,
    /// `HEAD`
    Head,
    /// `OPTIONS`
    Options,
    /// Any other (syntactically valid) method token.
    Other,
}

impl Method {
    /// Map a method token (case-sensitive, as RFC 9110 requires).
    pub fn from_token(token: &str) -> Self {
        match token {
            "GET" => Self::Get,
            "POST" => Self::Post,
            "PUT" => Self::Put,
            "PATCH" => Self::Patch,
            "DELETE" => Self::Delete,
            "HEAD" => Self::Head,
            "OPTIONS" => Self::Options,
            _ => Self::Other,
        }
    }
}

/// A request failure to report to the client as a JSON error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// HTTP status code to answer with.
    pub status: u16,
    /// Stable machine-readable error code (`"invalid_request"`, ...).
    pub code: &'static str,
    /// Human-readable detail.
    pub message: String,
    /// Headers the response must carry (e.g. `Sec-WebSocket-Version: 13` on 426).
    pub extra_headers: &'static [(&'static str, &'static str)],
}

impl HttpError {
    /// An error without extra headers.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), extra_headers: &[] }
    }

    /// Render as a complete JSON error response (see [`super::response::json_error`]).
    pub fn render(&self, keep_alive: bool) -> Bytes {
        super::response::json_error_with_headers(
            self.status,
            self.code,
            &self.message,
            keep_alive,
            self.extra_headers,
        )
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for HttpError {}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Request method.
    pub method: Method,
    /// Raw request target up to (not including) `?`; not percent-decoded.
    pub path: String,
    /// Raw query string after `?`, if any.
    pub query: Option<String>,
    /// Minor HTTP version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// Headers in arrival order: (lowercase name, raw value).
    pub headers: Headers,
    /// Declared body length (0 when absent).
    pub content_length: usize,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    /// `Transfer-Encoding: chunked` was sent (unsupported: answer 411/501).
    pub chunked: bool,
}

/// A request's headers, (lowercase name, raw value) in arrival order, all in one buffer: a
/// head costs two allocations however many headers it has (not two per header).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    /// Every name and value, back to back.
    bytes: Vec<u8>,
    /// Per header, where its name and its value end in `bytes` (each starts where the
    /// previous one ended).
    ends: Vec<(u32, u32)>,
}

impl Headers {
    /// Room for `count` headers of `bytes` name and value bytes in all.
    fn with_capacity(count: usize, bytes: usize) -> Headers {
        Headers { bytes: Vec::with_capacity(bytes), ends: Vec::with_capacity(count) }
    }

    /// Appends a header, its name lowercased.
    fn append(&mut self, name: &[u8], value: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(name);
        self.bytes[start..].make_ascii_lowercase();
        let name_end = self.bytes.len() as u32;
        self.bytes.extend_from_slice(value);
        self.ends.push((name_end, self.bytes.len() as u32));
    }

    /// Appends a header (name lowercased), as if it had arrived last.
    pub fn push(&mut self, (name, value): (String, Vec<u8>)) {
        self.append(name.as_bytes(), &value);
    }

    /// The headers in arrival order: (lowercase name, raw value).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        // Names are tokens (httparse checks them) or a `push`ed `String`: UTF-8 either way.
        self.raw().map(|(name, value)| (std::str::from_utf8(name).unwrap_or_default(), value))
    }

    /// [`Headers::iter`] with the names as bytes (no UTF-8 check per lookup).
    fn raw(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let mut start = 0usize;
        self.ends.iter().map(move |&(name_end, value_end)| {
            let (name_end, value_end) = (name_end as usize, value_end as usize);
            let header = (&self.bytes[start..name_end], &self.bytes[name_end..value_end]);
            start = value_end;
            header
        })
    }

    /// Values of every header named `name` (case-insensitive), in order.
    fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.raw().filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| v)
    }

    /// How many headers there are.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

impl FromIterator<(String, Vec<u8>)> for Headers {
    fn from_iter<I: IntoIterator<Item = (String, Vec<u8>)>>(iter: I) -> Headers {
        let mut headers = Headers::default();
        iter.into_iter().for_each(|header| headers.push(header));
        headers
    }
}

impl RequestHead {
    /// Value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.raw().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| v)
    }

    /// [`Self::header`] as UTF-8, `None` if absent or not UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Values of every header named `name` (case-insensitive), in order.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers.named(name)
    }

    /// Whether any `name` header holds `token` in its comma-separated list
    /// (case-insensitive), as for `Connection` or `Upgrade`.
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers_named(name)
            .flat_map(|v| v.split(|&b| b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    }
}

fn bad_request(message: &str) -> HttpError {
    HttpError::new(400, "invalid_request", message)
}

fn too_large(message: &str) -> HttpError {
    HttpError::new(431, "header_too_large", message)
}

/// Parse the request head at the front of `buf`.
///
/// Returns `Ok(Some((head, len)))` with the head's length in bytes (the body starts at
/// `len`), `Ok(None)` when the head is incomplete and `buf.len() <= head_bytes_max`, or an
/// error: 431 when the head exceeds `head_bytes_max` or has more than [`HTTP_HEADERS_MAX`]
/// headers, 400 when malformed, 501 for a transfer coding other than chunked.
pub fn parse_head(
    buf: &[u8],
    head_bytes_max: usize,
) -> Result<Option<(RequestHead, usize)>, HttpError> {
    let mut slots = [httparse::EMPTY_HEADER; HTTP_HEADERS_MAX];
    let mut req = httparse::Request::new(&mut slots);
    // A complete head within the limit is always found in this prefix.
    let window = &buf[..buf.len().min(head_bytes_max)];
    // httparse reports some cut-off heads (a header value without its line end) as errors, so
    // a window without the blank line that ends a head is treated as incomplete.
    // Only looked for when httparse fails: a scan of the whole window per request otherwise.
    let has_end = || window.windows(4).any(|w| w == b"\r\n\r\n");
    let len = match req.parse(window) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() <= head_bytes_max => return Ok(None),
        Ok(httparse::Status::Partial) => return Err(too_large("request head too large")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(too_large(&format!("more than {HTTP_HEADERS_MAX} headers")))
        }
        Err(_) if !has_end() && buf.len() <= head_bytes_max => return Ok(None),
        Err(_) if !has_end() => return Err(too_large("request head too large")),
        Err(e) => return Err(bad_request(&format!("malformed request head: {e}"))),
    };
    let target = req.path.unwrap_or_default();
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query.to_owned())),
        None => (target, None),
    };
    if u32::try_from(len).is_err() {
        // The offsets of `Headers` are `u32`s (a configured `head_bytes_max` could be larger).
        return Err(too_large("request head too large"));
    }
    let bytes = req.headers.iter().map(|h| h.name.len() + h.value.len()).sum();
    let mut headers = Headers::with_capacity(req.headers.len(), bytes);
    for h in req.headers.iter() {
        headers.append(h.name.as_bytes(), h.value);
    }
    let mut head = RequestHead {
        method: Method::from_token(req.method.unwrap_or_default()),
        path: path.to_owned(),
        query,
        version: req.version.unwrap_or_default(),
        headers,
        content_length: 0,
        keep_alive: false,
        chunked: false,
    };
    apply_semantics(&mut head)?;
    Ok(Some((head, len)))
}

/// Derive keep-alive, body framing and content length from the headers.
fn apply_semantics(head: &mut RequestHead) -> Result<(), HttpError> {
    let close = head.header_has_token("connection", "close");
    head.keep_alive = match head.version {
        1 => !close,
        _ => !close && head.header_has_token("connection", "keep-alive"),
    };
    if head.header("transfer-encoding").is_some() {
        if !head.header_has_token("transfer-encoding", "chunked") {
            let msg = "only chunked transfer-encoding is recognised";
            return Err(HttpError::new(501, "not_implemented", msg));
        }
        head.chunked = true;
    }
    head.content_length = content_length(head)?;
    Ok(())
}

/// The single agreed `Content-Length` value (0 if absent); differing or invalid → 400.
fn content_length(head: &RequestHead) -> Result<usize, HttpError> {
    let mut found: Option<usize> = None;
    let values = head.headers_named("content-length");
    for item in values.flat_map(|v| v.split(|&b| b == b',')) {
        let digits = item.trim_ascii();
        let parsed = std::str::from_utf8(digits)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<usize>().ok())
            .ok_or_else(|| bad_request("invalid content-length"))?;
        if found.is_some_and(|prev| prev != parsed) {
            return Err(bad_request("conflicting content-length"));
        }
        found = Some(parsed);
    }
    Ok(found.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Option<(RequestHead, usize)>, HttpError> {
        parse_head(raw.as_bytes(), 8192)
    }

    fn head(raw: &str) -> RequestHead {
        match parse(raw) {
            Ok(Some((head, len))) => {
                assert_eq!(len, raw.len());
                head
            }
            other => panic!("expected a head, got {other:?}"),
        }
    }

    fn status(raw: &str) -> Option<u16> {
        parse(raw).err().map(|e| e.status)
    }

    #[test]
    fn parses_request_line_and_headers() {
        let h = head("POST /rooms/a%20b?x=1&y=2 HTTP/1.1\r\nHost: h\r\nX-Thing: A\r\n\r\n");
        assert_eq!((h.method, h.path.as_str()), (Method::Post, "/rooms/a%20b"));
        assert_eq!(h.query.as_deref(), Some("x=1&y=2"));
        assert_eq!(h.header("x-THING"), Some(&b"A"[..]));
        assert_eq!(h.header_str("host"), Some("h"));
        assert_eq!(h.headers.iter().nth(1), Some(("x-thing", &b"A"[..])));
        assert_eq!(h.headers.len(), 2);
        assert_eq!((h.version, h.content_length, h.chunked), (1, 0, false));
        assert_eq!(head("GET / HTTP/1.1\r\n\r\n").query, None);
        assert_eq!(head("BREW / HTTP/1.1\r\n\r\n").method, Method::Other);
    }

    #[test]
    fn incomplete_returns_none_and_body_offset_is_reported() {
        let raw = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        for cut in 0..raw.len() {
            assert_eq!(parse(&raw[..cut]), Ok(None), "cut at {cut}");
        }
        let with_body = format!("{raw}body");
        assert_eq!(parse(&with_body).map(|r| r.map(|(_, n)| n)), Ok(Some(raw.len())));
    }

    #[test]
    fn a_cut_off_header_value_is_incomplete_not_malformed() {
        let long = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Long: {}", "a".repeat(2000));
        assert!(matches!(parse_head(long.as_bytes(), 8192), Ok(None)));
        let over = format!("{long}{}", "a".repeat(8000));
        assert_eq!(parse_head(over.as_bytes(), 8192).map(|_| ()).unwrap_err().status, 431);
    }

    #[test]
    fn limits_give_431() {
        let raw = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(parse_head(raw.as_bytes(), raw.len() - 1).err().map(|e| e.status), Some(431));
        assert_eq!(parse_head(&raw.as_bytes()[..20], 19).err().map(|e| e.status), Some(431));
        assert_eq!(parse_head(&raw.as_bytes()[..20], 20), Ok(None));
        let many: String = (0..65).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(status(&format!("GET / HTTP/1.1\r\n{many}\r\n")), Some(431));
        let ok: String = (0..64).map(|i| format!("X-{i}: v\r\n")).collect();
        assert!(parse(&format!("GET / HTTP/1.1\r\n{ok}\r\n")).is_ok());
    }

    #[test]
    fn malformed_gives_400() {
        for raw in [
            "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
            "GET\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\n",
        ] {
            assert_eq!(status(raw), Some(400), "{raw:?}");
        }
        let same = head("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(same.content_length, 5);
    }

    #[test]
    fn keep_alive_rules() {
        let cases = [
            ("GET / HTTP/1.1\r\n\r\n", true),
            ("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false),
            ("GET / HTTP/1.1\r\nConnection: Upgrade, Close\r\n\r\n", false),
            ("GET / HTTP/1.0\r\n\r\n", false),
            ("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
            ("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", false),
        ];
        for (raw, keep_alive) in cases {
            assert_eq!(head(raw).keep_alive, keep_alive, "{raw:?}");
        }
    }

    #[test]
    fn transfer_encoding() {
        let h = head("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n");
        assert!(h.chunked);
        assert_eq!(status("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"), Some(501));
        let h = head("POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n");
        assert_eq!((h.chunked, h.content_length), (false, 12));
    }

    #[test]
    fn error_renders() {
        let e = HttpError::new(400, "invalid_request", "nope");
        assert_eq!(e.to_string(), "400 invalid_request: nope");
        let text = String::from_utf8(e.render(false).to_vec()).unwrap_or_default();
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        assert!(text.ends_with(r#"{"error":{"code":"invalid_request","message":"nope"}}"#));
    }
}
