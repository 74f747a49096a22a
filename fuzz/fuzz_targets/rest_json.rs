//! The REST request bodies (`rest::json`): `post_body` (what every posted message goes
//! through), `parse_body` and the field checks `user_id`, `user_id_text`, `object_text` and
//! `array_text`.
//!
//! Invariants: no panic; a refusal is a 400; an accepted user id obeys the user id rule and
//! parses again to itself; attributes and attachments text is a JSON object / array.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast::limits::USER_ID_BYTES_MAX;
use roomcast::model::UserId;
use roomcast::rest::json::{array_text, object_text, parse_body, post_body, user_id, user_id_text};
use serde_json::Value;

fn check_user(id: &UserId) {
    assert!(!id.as_str().is_empty() && id.as_str().len() <= USER_ID_BYTES_MAX);
    assert_eq!(UserId::parse(id.as_str()).ok().as_ref(), Some(id));
}

fuzz_target!(|data: &[u8]| {
    match post_body(data) {
        Ok(body) => {
            if let Some(author) = &body.author {
                match user_id(author) {
                    Ok(id) => check_user(&id),
                    Err(e) => assert_eq!(e.status, 400),
                }
            }
            match array_text(body.attachments.as_ref(), "attachments") {
                Ok(text) => assert!(serde_json::from_str::<Value>(&text).unwrap().is_array()),
                Err(e) => assert_eq!(e.status, 400),
            }
            match object_text(body.attributes.as_ref(), "attributes") {
                Ok(text) => assert!(serde_json::from_str::<Value>(&text).unwrap().is_object()),
                Err(e) => assert_eq!(e.status, 400),
            }
            let _ = (body.text, body.parent_id, body.client_message_id, body.kind);
        }
        Err(e) => assert_eq!(e.status, 400),
    }
    match parse_body::<Value>(data) {
        Ok(value) => {
            if let Ok(id) = user_id(&value) {
                check_user(&id);
            }
        }
        Err(e) => assert_eq!(e.status, 400),
    }
    if let Ok(text) = std::str::from_utf8(data) {
        match user_id_text(text) {
            Ok(id) => {
                assert_eq!(id.as_str(), text);
                check_user(&id);
            }
            Err(e) => assert_eq!(e.status, 400),
        }
    }
});
