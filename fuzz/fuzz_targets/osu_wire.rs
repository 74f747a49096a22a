//! `dialect::osu::wire::decode` (client frames: `chat.start` / `chat.end`).
//!
//! Invariants: no panic; a start or end is JSON whose `event` says so; the decoded command,
//! encoded again, decodes to itself.
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
    let value: Value = serde_json::from_slice(data).expect("a decoded command is JSON");
    assert_eq!(value.get("event").and_then(Value::as_str), Some(event));
    let again = serde_json::json!({ "event": event }).to_string();
    assert_eq!(decode(again.as_bytes()), command);
});
