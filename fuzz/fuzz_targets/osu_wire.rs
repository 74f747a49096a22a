//! `dialect::osu::wire::decode` (client frames: `chat.start` / `chat.end`).
//!
//! Invariants: no panic on any bytes; for UTF-8 input (a text frame always is: the WebSocket
//! decoder checks it), a start or end that also parses as a strict JSON value has an `event`
//! that says so; the decoded command, encoded again, decodes to itself.
//!
//! Not checked: serde skips the values of members it ignores without validating them (a lone
//! surrogate escape, or bytes that are not UTF-8, in another member's value), so `decode` accepts some objects a
//! strict JSON parser refuses; it still reads `event` right (fuzz/RESULTS.md, the first run).
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast::dialect::osu::wire::{decode, ClientCommand};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let command = decode(data);
    let event = match command {
        ClientCommand::ChatStart => "chat.start",
        ClientCommand::ChatEnd => "chat.end",
        ClientCommand::Ignored => return,
    };
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(value) = serde_json::from_str::<Value>(text) {
            assert_eq!(value.get("event").and_then(Value::as_str), Some(event));
        }
    }
    let again = serde_json::json!({ "event": event }).to_string();
    assert_eq!(decode(again.as_bytes()), command);
});
