//! BIG client frames: `dialect::big::wire::decode`, and `request::parse` / `parse_event` on
//! any JSON payload under every payload type.
//!
//! Invariants: no panic; every id the client sent is within `BIG_ID_BYTES_MAX`; a history
//! count is within `1..=BIG_MESSAGES_COUNT_MAX` and never with both `startId` and `endId`;
//! decoding is a function of the text (the same frame decodes the same twice).
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast::dialect::big::request::{parse, parse_event, ClientEvent, Request};
use roomcast::dialect::big::wire::{decode, ClientFrame};
use roomcast::limits::{BIG_ID_BYTES_MAX, BIG_MESSAGES_COUNT_MAX};
use serde_json::Value;

const KINDS: [&str; 10] =
    ["chats", "chat", "new", "edit", "delete", "messages", "dlvrd", "read", "typing", "offline"];

fn check_request(request: &Request) {
    let chat_id = match request {
        Request::Chats => return,
        Request::Chat { chat_id }
        | Request::Edit { chat_id, .. }
        | Request::Delete { chat_id, .. }
        | Request::Mark { chat_id, .. } => chat_id,
        Request::New { chat_id, client_message_id, attachments, .. } => {
            assert!(client_message_id.as_ref().is_none_or(|c| c.len() <= BIG_ID_BYTES_MAX));
            let parsed: Value = serde_json::from_str(attachments).expect("attachments JSON");
            assert!(parsed.is_array());
            chat_id
        }
        Request::Messages { chat_id, start, end, count } => {
            assert!((1..=BIG_MESSAGES_COUNT_MAX).contains(count));
            assert!(start.is_none() || end.is_none());
            chat_id
        }
    };
    assert!(chat_id.len() <= BIG_ID_BYTES_MAX);
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let frame = decode(text);
    match &frame {
        ClientFrame::Request { id, request } => {
            match id {
                Value::String(s) => assert!(s.len() <= BIG_ID_BYTES_MAX),
                Value::Number(_) => {}
                other => panic!("request id {other:?}"),
            }
            if let Ok(request) = request {
                check_request(request);
            }
        }
        ClientFrame::Ack(id) => assert!(id.len() <= BIG_ID_BYTES_MAX),
        ClientFrame::Event(ClientEvent::Typing { chat_id, .. }) => {
            assert!(chat_id.len() <= BIG_ID_BYTES_MAX)
        }
        ClientFrame::Event(_) | ClientFrame::Ping | ClientFrame::Invalid(_) => {}
    }
    assert_eq!(decode(text), frame);

    // The payload decoders on their own, with any JSON value as the payload.
    if let Ok(payload) = serde_json::from_str::<Value>(text) {
        for kind in KINDS {
            if let Ok(request) = parse(kind, &payload) {
                check_request(&request);
            }
            if let ClientEvent::Typing { chat_id, .. } = parse_event(kind, &payload) {
                assert!(chat_id.len() <= BIG_ID_BYTES_MAX);
            }
        }
    }
});
