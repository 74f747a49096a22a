//! Rechat's Socket.IO layer: `socketio::decode` (the data of an Engine.IO message packet).
//!
//! Invariants: no panic; every field kept is within its bound (namespace, token, event name,
//! comment, URLs, ids, id lists); a message's attributes and attachments render as a JSON
//! object / array; decoding is a function of the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast::dialect::rechat::socketio::{
    decode, parse_attributes, ClientPacket, Request, COMMENT_BYTES_MAX, EVENT_NAME_BYTES_MAX,
    ID_BYTES_MAX, ID_LIST_MAX, NSP_BYTES_MAX, TOKEN_BYTES_MAX, URL_BYTES_MAX,
};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(packet) = decode(text) else { return };
    let (ClientPacket::Connect { nsp, .. }
    | ClientPacket::Disconnect { nsp }
    | ClientPacket::Event { nsp, .. }
    | ClientPacket::Ack { nsp, .. }) = &packet;
    assert!(nsp.len() <= NSP_BYTES_MAX);
    match &packet {
        ClientPacket::Connect { token: Some(token), .. } => {
            assert!(!token.is_empty() && token.len() <= TOKEN_BYTES_MAX)
        }
        ClientPacket::Event { request: Ok(request), .. } => match request {
            Request::Authenticate { token } => assert!(token.len() <= TOKEN_BYTES_MAX),
            Request::Unknown(name) => assert!(name.len() <= EVENT_NAME_BYTES_MAX),
            Request::MessageSend { message, .. } => {
                assert!(message.comment.len() <= COMMENT_BYTES_MAX);
                for url in [
                    &message.image_url,
                    &message.image_thumbnail_url,
                    &message.document_url,
                    &message.video_url,
                ] {
                    assert!(url.as_ref().is_none_or(|u| u.len() <= URL_BYTES_MAX));
                }
                for id in [&message.recommendation, &message.notification] {
                    assert!(id.as_ref().is_none_or(|i| i.len() <= ID_BYTES_MAX));
                }
                for list in [&message.mentions, &message.attachments] {
                    assert!(list.len() <= ID_LIST_MAX);
                    assert!(list.iter().all(|i| i.len() <= ID_BYTES_MAX));
                }
                assert!(parse_attributes(&message.attributes()).is_some());
                let attachments: Value = serde_json::from_str(&message.attachments_json()).unwrap();
                assert!(attachments.is_array());
            }
            Request::Typing { .. } | Request::TypingEnded { .. } => {}
        },
        _ => {}
    }
    assert_eq!(decode(text), Ok(packet));
});
