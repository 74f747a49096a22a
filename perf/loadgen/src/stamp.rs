//! The send timestamp carried in every published message, and finding it again on receipt.
//!
//! A message text is `t=<nanoseconds since the run's epoch>;` padded with `x` to the payload
//! size. Every thread of the load generator shares one epoch `Instant`, so a receiver's latency
//! is its own `epoch.elapsed()` minus the stamp.

use std::fmt::Write;

/// Builds a message text carrying `nanos`, padded to `payload` bytes.
pub fn text(nanos: u64, payload: usize) -> String {
    let mut s = String::with_capacity(payload.max(24));
    let _ = write!(s, "t={nanos};");
    while s.len() < payload {
        s.push('x');
    }
    s
}

/// The stamp at the start of a plain-protocol text frame.
pub fn parse_plain(frame: &str) -> Option<u64> {
    parse_at(frame.as_bytes().strip_prefix(b"t=")?)
}

/// Calls `each` with the stamp of every message in a roomcast `TextMessagesCreated` event;
/// other event types yield nothing.
pub fn for_each_roomcast(frame: &str, mut each: impl FnMut(u64)) {
    if !frame.contains("\"TextMessagesCreated\"") {
        return;
    }
    let bytes = frame.as_bytes();
    let mut from = 0;
    while let Some(pos) = frame[from..].find("\"text\"") {
        let mut i = from + pos + "\"text\"".len();
        while i < bytes.len() && matches!(bytes[i], b' ' | b':') {
            i += 1;
        }
        if bytes[i..].starts_with(b"\"t=") {
            if let Some(nanos) = parse_at(&bytes[i + 3..]) {
                each(nanos);
            }
        }
        from = i;
    }
}

/// The stamp of a Rechat message object's `comment`: the last `"comment"` of `json`, which
/// in a `Message.Sent` packet is the message's (the room before it may repeat the message as
/// its `latest_message`, with the same comment), and in a `Message.Send` ack the message's.
/// Searching from the end skips the room's list of up to 256 users.
pub fn parse_rechat(json: &str) -> Option<u64> {
    const KEY: &str = "\"comment\":\"t=";
    let at = json.rfind(KEY)?;
    parse_at(&json.as_bytes()[at + KEY.len()..])
}

fn parse_at(digits: &[u8]) -> Option<u64> {
    let mut value: u64 = 0;
    for (i, &b) in digits.iter().enumerate() {
        match b {
            b'0'..=b'9' => value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?,
            b';' if i > 0 => return Some(value),
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_plain() {
        let t = text(123_456_789, 64);
        assert_eq!(t.len(), 64);
        assert_eq!(parse_plain(&t), Some(123_456_789));
        assert_eq!(parse_plain("hello"), None);
    }

    #[test]
    fn roomcast_batch() {
        let frame = r#"{"type":"TextMessagesCreated","data":{"messages":[{"messageId":1,"roomId":2,"userId":3,"text":"t=42;xx"},{"messageId":2,"text": "t=7;"}]}}"#;
        let mut got = Vec::new();
        for_each_roomcast(frame, |n| got.push(n));
        assert_eq!(got, vec![42, 7]);
        let mut none = Vec::new();
        for_each_roomcast(r#"{"type":"RoomCreated","data":{"text":"t=1;"}}"#, |n| none.push(n));
        assert!(none.is_empty());
    }

    #[test]
    fn rechat_comment() {
        let sent = r#"42["Message.Sent",{"latest_message":{"comment":"t=9;x"},"users":[{"id":"u1"}]},{"author":{},"comment":"t=9;x","id":"3"}]"#;
        assert_eq!(parse_rechat(sent), Some(9));
        assert_eq!(parse_rechat(r#"{"comment":"t=12;xx","id":"1"}]"#), Some(12));
        assert_eq!(parse_rechat(r#"{"comment":"hello"}"#), None);
    }
}
