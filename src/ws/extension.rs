//! `Sec-WebSocket-Extensions` negotiation of permessage-deflate (RFC 7692 §5, §7.1), server side.
//!
//! Owns: parsing the client's offers (RFC 6455 §9.1 grammar: comma-separated extensions, each
//! `token *( ";" param [ "=" ( token | quoted-string ) ] )`) and choosing the answer
//! ([`negotiate`]).
//!
//! The server always answers `permessage-deflate; server_no_context_takeover;
//! client_no_context_takeover`: neither side keeps a compression context between messages,
//! so a connection holds no (de)compressor while idle and one compressed frame can be shared
//! by every deflate recipient. `server_max_window_bits=N` is echoed when offered (RFC 7692
//! §7.1.2.1 requires it) and honoured: the connection's own messages are compressed with a
//! `2^N`-byte window (zlib-rs takes 9 to 15); broadcast frames, compressed once with a 32 KiB
//! window, go to it uncompressed (RSV1 = 0 is always valid), and so does everything for
//! `N = 8`, a window zlib cannot produce for raw DEFLATE.
//! `client_max_window_bits` is never answered: the server inflates with a 32 KiB window,
//! which covers any window the client picks.
//!
//! Invariants: the first acceptable offer wins; a malformed offer, an unknown or repeated
//! parameter or a value out of range makes that offer declined, never the request refused;
//! at most [`OFFERS_MAX`] extension offers and [`PARAMS_MAX`] parameters per offer are looked
//! at (the rest is ignored). Pure: no IO, no allocation but the answer.

/// Most extension offers (over every `Sec-WebSocket-Extensions` header) that are looked at.
pub const OFFERS_MAX: usize = 16;
/// Most parameters of one offer; an offer with more is declined.
pub const PARAMS_MAX: usize = 8;

/// The permessage-deflate answer for an offer the server accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreement {
    /// The `Sec-WebSocket-Extensions` response header's value.
    pub response: String,
    /// The LZ77 window the server may use for its messages, log2 (15 unless the client
    /// asked for less with `server_max_window_bits`).
    pub server_window_bits: u8,
}

/// The answer to the offers in `values` (every `Sec-WebSocket-Extensions` header, in order):
/// the first acceptable permessage-deflate offer, or `None` (no extension).
pub fn negotiate<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<Agreement> {
    let mut seen = 0;
    for value in values {
        for offer in split_outside_quotes(value, b',') {
            if offer.trim_ascii().is_empty() {
                continue; // `1#` lists may hold empty elements
            }
            seen += 1;
            if seen > OFFERS_MAX {
                return None;
            }
            if let Some(agreement) = accept_offer(offer) {
                return Some(agreement);
            }
        }
    }
    None
}

/// The agreement for one offer, if it is an acceptable permessage-deflate offer.
fn accept_offer(offer: &[u8]) -> Option<Agreement> {
    let mut parts = split_outside_quotes(offer, b';');
    let name = parts.next()?.trim_ascii();
    if !name.eq_ignore_ascii_case(b"permessage-deflate") {
        return None;
    }
    let mut seen = [false; 4];
    let mut server_window: Option<u8> = None;
    for (i, param) in parts.enumerate() {
        if i >= PARAMS_MAX {
            return None;
        }
        let (key, value) = match param.iter().position(|&b| b == b'=') {
            Some(at) => (param[..at].trim_ascii(), Some(unquote(param[at + 1..].trim_ascii())?)),
            None => (param.trim_ascii(), None),
        };
        if !is_token(key) {
            return None;
        }
        let slot = match key.to_ascii_lowercase().as_slice() {
            b"server_no_context_takeover" if value.is_none() => 0,
            b"client_no_context_takeover" if value.is_none() => 1,
            b"server_max_window_bits" => {
                server_window = Some(window_bits(value?)?);
                2
            }
            b"client_max_window_bits" => {
                if let Some(value) = value {
                    window_bits(value)?;
                }
                3
            }
            _ => return None,
        };
        if std::mem::replace(&mut seen[slot], true) {
            return None; // a parameter given twice
        }
    }
    let mut response =
        String::from("permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    if let Some(bits) = server_window {
        response.push_str(&format!("; server_max_window_bits={bits}"));
    }
    Some(Agreement { response, server_window_bits: server_window.unwrap_or(15) })
}

/// A window size parameter: `8` to `15`, digits only, no leading zero.
fn window_bits(value: &[u8]) -> Option<u8> {
    match value {
        [b'8'] => Some(8),
        [b'9'] => Some(9),
        [b'1', d @ b'0'..=b'5'] => Some(10 + (d - b'0')),
        _ => None,
    }
}

/// A parameter value: a token, or a quoted-string whose content is a token (RFC 7692 §7.1);
/// `None` when it is neither.
fn unquote(value: &[u8]) -> Option<&[u8]> {
    let inner = match value {
        [b'"', inner @ .., b'"'] => inner,
        _ => value,
    };
    is_token(inner).then_some(inner)
}

/// An RFC 7230 token: one or more tchars.
fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `s` split at every `sep` outside a quoted-string (a backslash escapes the next byte there).
fn split_outside_quotes(s: &[u8], sep: u8) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let s = rest?;
        let (mut quoted, mut escaped) = (false, false);
        for (i, &b) in s.iter().enumerate() {
            match b {
                _ if escaped => escaped = false,
                b'\\' if quoted => escaped = true,
                b'"' => quoted = !quoted,
                _ if b == sep && !quoted => {
                    rest = Some(&s[i + 1..]);
                    return Some(&s[..i]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(s)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    /// The answer header and the server's window bits.
    type Answer = Option<(String, u8)>;

    fn answer(values: &[&str]) -> Answer {
        negotiate(values.iter().map(|v| v.as_bytes()))
            .map(|agreement| (agreement.response, agreement.server_window_bits))
    }

    #[test]
    fn accepted_offers() {
        let plain = Some((BOTH.to_string(), 15));
        let table: &[(&[&str], Answer)] = &[
            (&["permessage-deflate"], plain.clone()),
            (&["PerMessage-Deflate"], plain.clone()),
            (&["permessage-deflate; client_max_window_bits"], plain.clone()),
            (&["permessage-deflate; client_max_window_bits=10"], plain.clone()),
            (&["permessage-deflate; client_max_window_bits=\"12\""], plain.clone()),
            (
                &["permessage-deflate;server_no_context_takeover;client_no_context_takeover"],
                plain.clone(),
            ),
            (&["  permessage-deflate ;  client_no_context_takeover  "], plain.clone()),
            (
                &["permessage-deflate; client_no_context_takeover; client_max_window_bits; \
                   server_no_context_takeover; server_max_window_bits=15"],
                Some((format!("{BOTH}; server_max_window_bits=15"), 15)),
            ),
            (
                &["permessage-deflate; server_max_window_bits=8"],
                Some((format!("{BOTH}; server_max_window_bits=8"), 8)),
            ),
            (
                &["permessage-deflate; server_max_window_bits=\"10\""],
                Some((format!("{BOTH}; server_max_window_bits=10"), 10)),
            ),
            // Other extensions are skipped; the first acceptable offer wins.
            (&["x-webkit-deflate-frame, permessage-deflate"], plain.clone()),
            (&["foo; bar=\"a,b\"", "permessage-deflate"], plain.clone()),
            (
                &["permessage-deflate; server_max_window_bits=9, permessage-deflate"],
                Some((format!("{BOTH}; server_max_window_bits=9"), 9)),
            ),
            // A declined offer falls back to the next one.
            (&["permessage-deflate; server_max_window_bits=7, permessage-deflate"], plain.clone()),
            (&["permessage-deflate; bogus, permessage-deflate"], plain.clone()),
            (&[",, permessage-deflate"], plain),
        ];
        for (values, want) in table {
            assert_eq!(&answer(values), want, "{values:?}");
        }
    }

    #[test]
    fn declined_offers() {
        let table: &[&str] = &[
            "",
            "x-webkit-deflate-frame",
            "permessage-deflate; unknown",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=08",
            "permessage-deflate; server_max_window_bits=abc",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=\"\"",
            "permessage-deflate; client_max_window_bits=\"1 0\"",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
            "permessage-deflate; =10",
            "permessage-deflate; \"quoted\"",
            "permessage-deflate; a;b;c;d;e;f;g;h;i",
            "permessage-deflate; client_max_window_bits=\"12",
            "permessage-deflate x",
        ];
        for value in table {
            assert_eq!(answer(&[value]), None, "{value}");
        }
    }

    #[test]
    fn offers_are_bounded() {
        let many = vec!["x-other"; OFFERS_MAX].join(", ");
        assert_eq!(answer(&[&many, "permessage-deflate"]), None);
        let fewer = vec!["x-other"; OFFERS_MAX - 1].join(", ");
        assert!(answer(&[&fewer, "permessage-deflate"]).is_some());
        let params = "; client_no_context_takeover".repeat(PARAMS_MAX + 1);
        assert_eq!(answer(&[&format!("permessage-deflate{params}")]), None);
        // Hostile bytes never panic.
        for value in ["\"", "\\", ";;;", "permessage-deflate;\"\\", "\u{ff};=,\""] {
            let _ = answer(&[value]);
        }
    }

    #[test]
    fn split_respects_quotes() {
        let parts: Vec<&[u8]> = split_outside_quotes(b"a=\"x,y\",b,\"c\\\",d\"", b',').collect();
        assert_eq!(parts, [&b"a=\"x,y\""[..], b"b", b"\"c\\\",d\""]);
    }
}
