//! Request credentials and parameters: query-string values, cookies and bearer tokens.
//!
//! Owns: [`query_param`] (with `application/x-www-form-urlencoded` decoding via
//! [`percent_decode`]), [`path_segment`] (strict RFC 3986 decoding of one path segment, with
//! the `percent-encoding` crate), [`cookie`] and [`bearer`].
//!
//! Invariants: never panics on peer input; borrows from the input whenever no decoding is
//! needed. Query values are lenient: malformed `%` escapes are kept literally and invalid
//! UTF-8 after decoding is replaced with U+FFFD. Path segments are strict: a malformed escape
//! or invalid UTF-8 is an error (the REST API answers 400), and `+` stays `+`. Limits: the
//! first matching parameter or cookie wins; cookie names are case-sensitive, as RFC 6265
//! specifies.

use std::borrow::Cow;

use super::head::RequestHead;

/// Value of the first `name` parameter in `query` (no leading `?`), percent-decoded with
/// `+` as space. A parameter without `=` has the empty value.
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<Cow<'a, str>> {
    query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(key, _)| !key.is_empty() && percent_decode(key) == name)
        .map(|(_, value)| percent_decode(value))
}

/// Decode `%XX` escapes and `+` (as space); borrows when there is nothing to decode.
pub fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escaped = match (b, bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&hi), Some(&lo)) => hex(hi).zip(hex(lo)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match (b, escaped) {
            (_, Some(decoded)) => {
                out.push(decoded);
                i += 3;
                continue;
            }
            (b'+', None) => out.push(b' '),
            (other, None) => out.push(other),
        }
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// Why a path segment could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadSegment {
    /// A `%` not followed by two hex digits.
    Escape,
    /// The decoded bytes are not UTF-8.
    Utf8,
}

impl std::fmt::Display for BadSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BadSegment::Escape => "a '%' in the path must be followed by two hex digits",
            BadSegment::Utf8 => "the percent-decoded path is not UTF-8",
        })
    }
}

/// One path segment (between `/`s), percent-decoded (RFC 3986: `%XX` → byte, `+` kept);
/// borrows when there is no escape. A `%` without two hex digits or a result that is not
/// UTF-8 is an error. Decode after splitting on `/`, so `%2F` stays inside its segment.
pub fn path_segment(segment: &str) -> Result<Cow<'_, str>, BadSegment> {
    let bytes = segment.as_bytes();
    let mut escapes = bytes.iter().enumerate().filter(|(_, &b)| b == b'%');
    if escapes.any(|(i, _)| {
        !matches!((bytes.get(i + 1), bytes.get(i + 2)), (Some(h), Some(l))
            if h.is_ascii_hexdigit() && l.is_ascii_hexdigit())
    }) {
        return Err(BadSegment::Escape);
    }
    percent_encoding::percent_decode_str(segment).decode_utf8().map_err(|_| BadSegment::Utf8)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Value of cookie `name` from the request's `Cookie` header(s) (`a=b; c=d`), with
/// surrounding double quotes removed. Non-UTF-8 headers are skipped.
pub fn cookie<'a>(head: &'a RequestHead, name: &str) -> Option<&'a str> {
    head.headers_named("cookie")
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| key.trim() == name)
        .map(|(_, value)| {
            let value = value.trim();
            value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value)
        })
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive);
/// `None` if absent, another scheme, or empty.
pub fn bearer(head: &RequestHead) -> Option<&str> {
    let (scheme, token) = head.header_str("authorization")?.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::parse_head;

    fn head(headers: &str) -> RequestHead {
        let raw = format!("GET / HTTP/1.1\r\n{headers}\r\n");
        match parse_head(raw.as_bytes(), 8192) {
            Ok(Some((head, _))) => head,
            other => panic!("expected a head, got {other:?}"),
        }
    }

    #[test]
    fn query_params() {
        let q = "room=general&name=J%C3%BCrgen+M&flag&empty=&a%20b=c&room=second";
        assert_eq!(query_param(q, "room").as_deref(), Some("general"));
        assert_eq!(query_param(q, "name").as_deref(), Some("Jürgen M"));
        assert_eq!(query_param(q, "flag").as_deref(), Some(""));
        assert_eq!(query_param(q, "empty").as_deref(), Some(""));
        assert_eq!(query_param(q, "a b").as_deref(), Some("c"));
        assert_eq!(query_param(q, "missing"), None);
        assert_eq!(query_param("", "x"), None);
        assert!(matches!(query_param(q, "room"), Some(Cow::Borrowed(_))));
    }

    #[test]
    fn percent_decoding_edge_cases() {
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%2B+%2b"), "+ +");
        assert_eq!(percent_decode("%ff"), "\u{FFFD}");
        assert_eq!(percent_decode("%E2%82%AC"), "€");
    }

    #[test]
    fn path_segments_decode_strictly() {
        let cases: [(&str, Result<&str, BadSegment>); 14] = [
            ("alice", Ok("alice")),
            ("caf%C3%A9", Ok("café")),
            ("caf%c3%a9", Ok("café")),
            ("a%2Fb", Ok("a/b")),
            ("%2e%2e", Ok("..")),
            ("bob%00", Ok("bob\0")),
            ("a+b", Ok("a+b")),
            ("%25", Ok("%")),
            ("%ZZ", Err(BadSegment::Escape)),
            ("bob%", Err(BadSegment::Escape)),
            ("bob%4", Err(BadSegment::Escape)),
            ("%%41", Err(BadSegment::Escape)),
            ("%C3", Err(BadSegment::Utf8)),
            ("%FF%FE", Err(BadSegment::Utf8)),
        ];
        for (raw, want) in cases {
            assert_eq!(path_segment(raw).as_deref().map_err(|e| *e), want, "{raw}");
        }
        assert!(matches!(path_segment("plain"), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn cookies() {
        let h = head("Cookie: a=1; session=\"abc\"\r\nCookie: other=x=y; A=2\r\n");
        assert_eq!(cookie(&h, "a"), Some("1"));
        assert_eq!(cookie(&h, "session"), Some("abc"));
        assert_eq!(cookie(&h, "other"), Some("x=y"));
        assert_eq!(cookie(&h, "A"), Some("2"));
        assert_eq!(cookie(&h, "missing"), None);
        assert_eq!(cookie(&head(""), "a"), None);
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer(&head("Authorization: Bearer abc.def\r\n")), Some("abc.def"));
        assert_eq!(bearer(&head("authorization: bEaReR   tok\r\n")), Some("tok"));
        assert_eq!(bearer(&head("Authorization: Basic dXNlcg==\r\n")), None);
        assert_eq!(bearer(&head("Authorization: Bearer\r\n")), None);
        assert_eq!(bearer(&head("")), None);
    }
}
