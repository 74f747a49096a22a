//! WebSocket close codes (RFC 6455 §7.4) and validation of codes received from a peer.
//!
//! Owns: the named close-code constants the server sends, and the rule for which codes a
//! peer may legitimately put in a Close frame. Invariant: [`is_valid_close_code_from_peer`]
//! follows the Autobahn TestSuite expectations (cases 7.7.x valid, 7.9.x invalid): the
//! registered codes 1000–1003 and 1007–1011 plus the application/private range 3000–4999.
//! Reserved or "never on the wire" codes (1004, 1005, 1006, 1015) and the unassigned
//! 1012–2999 range are rejected. Limits: none; pure functions over `u16`.

/// Normal closure: the purpose of the connection has been fulfilled.
pub const CLOSE_NORMAL: u16 = 1000;
/// Endpoint is going away (server shutdown, browser navigating away).
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Protocol error: the peer violated RFC 6455 framing rules.
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// Invalid frame payload data, e.g. non-UTF-8 text.
pub const CLOSE_INVALID_PAYLOAD: u16 = 1007;
/// Policy violation: generic code when no better one applies.
pub const CLOSE_POLICY: u16 = 1008;
/// Message (or frame) too big to process.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Internal server error: an unexpected condition prevented fulfilling the request.
pub const CLOSE_INTERNAL: u16 = 1011;

/// Whether `code`, received in a peer's Close frame, is allowed on the wire.
///
/// Valid: 1000–1003, 1007–1011, 3000–4999. Everything else (including 1004, 1005,
/// 1006, 1015, 1012–2999 and 5000+) is invalid and must be answered with 1002.
pub fn is_valid_close_code_from_peer(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autobahn_7_7_valid_codes() {
        for code in [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999] {
            assert!(is_valid_close_code_from_peer(code), "{code} should be valid");
        }
    }

    #[test]
    fn autobahn_7_9_invalid_codes() {
        for code in
            [0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
        {
            assert!(!is_valid_close_code_from_peer(code), "{code} should be invalid");
        }
    }

    #[test]
    fn named_constants_are_valid_to_send() {
        for code in [
            CLOSE_NORMAL,
            CLOSE_GOING_AWAY,
            CLOSE_PROTOCOL_ERROR,
            CLOSE_INVALID_PAYLOAD,
            CLOSE_POLICY,
            CLOSE_TOO_BIG,
            CLOSE_INTERNAL,
        ] {
            assert!(is_valid_close_code_from_peer(code));
        }
    }
}
