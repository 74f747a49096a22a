//! `http::head::parse_head` on arbitrary bytes, with a small and the default head limit.
//!
//! Invariants: no panic; a complete head's length is within the input and the limit and it
//! has at most `HTTP_HEADERS_MAX` headers; "incomplete" only while the input is within the
//! limit; the head parses the same from exactly its own bytes, and one byte fewer of them is
//! incomplete (the server reads heads in pieces).
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast::http::head::parse_head;
use roomcast::limits::HTTP_HEADERS_MAX;

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else { return };
    // A small limit chosen by the input, and the server's default (8 KiB).
    for max in [usize::from(first) * 4, 8192] {
        match parse_head(input, max) {
            Ok(Some((head, len))) => {
                assert!(len <= input.len() && len <= max, "len {len} max {max}");
                assert!(head.headers.len() <= HTTP_HEADERS_MAX);
                assert!(head.version <= 1);
                let again = parse_head(&input[..len], max).expect("own bytes parse again");
                assert_eq!(again, Some((head, len)), "a head depends on bytes after it");
                let short = parse_head(&input[..len - 1], max);
                assert!(matches!(short, Ok(None)), "a head's prefix is {short:?}");
            }
            Ok(None) => assert!(input.len() <= max, "incomplete past the limit"),
            Err(e) => assert!(matches!(e.status, 400 | 431 | 501), "status {}", e.status),
        }
    }
});
