//! The REST request bodies past `rest_json`'s decode: what each handler runs before it asks an
//! owner shard. `rest::rooms::{create_body, patch_body, member_body, mark_body}`,
//! `rest::messages::{message_body, edit_body}` and
//! `rest::notifications::{notification_body, read_body}`, each for the same body.
//!
//! Input: the first byte picks the caller (a service or the user `alice`), the path user of
//! the member and notification calls, and a small configuration (0–7 members, 56–248 bytes
//! of text, 513–1281 bytes of encoded message); the rest is the body, decoded under that
//! configuration and under the defaults. Limits above libFuzzer's default 4 KB inputs (room
//! attributes, notification details, the default stored message size) are not reached here;
//! the unit tests of `rest::rooms` and `rest::notifications` try each at and past its limit.
//!
//! Invariants: no panic; a refusal is a 400, or the 413/403/429 its call documents; what is
//! accepted keeps every limit of `limits.rs` and of the configuration (name, description,
//! attributes, member count, message text, client message id, kind, encoded message size,
//! notification name, category, object type, details, read ids); every user id in it obeys
//! the user id rule and parses again to itself; a user caller marks, reads and posts as itself;
//! attributes, details and attachments are JSON objects / arrays; and a body accepted under the
//! small configuration is accepted, the same, under the (larger) defaults.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast::config::Config;
use roomcast::limits::{
    CLIENT_MESSAGE_ID_BYTES_MAX, MESSAGE_ENCODED_OVERHEAD_BYTES, MESSAGE_KIND_BYTES_MAX,
    NOTIFICATION_DETAILS_BYTES_MAX, NOTIFICATION_NAME_BYTES_MAX, NOTIFICATION_READ_IDS_MAX,
    ROOM_ATTRIBUTES_BYTES_MAX, ROOM_DESCRIPTION_BYTES_MAX, ROOM_NAME_BYTES_MAX, USER_ID_BYTES_MAX,
};
use roomcast::model::{Role, RoomKind, UserId, Viewer};
use roomcast::rest::messages::{edit_body, message_body};
use roomcast::rest::notifications::{notification_body, read_body};
use roomcast::rest::rooms::{create_body, mark_body, member_body, patch_body};
use roomcast::rest::{ApiError, Caller};
use serde_json::Value;

/// Path users for the member and notification calls: valid ones and ones the rule refuses.
const PATH_USERS: [&str; 4] = ["bob", "1001", "", "a/b"];

fn check_user(id: &UserId) {
    assert!(!id.as_str().is_empty() && id.as_str().len() <= USER_ID_BYTES_MAX);
    assert_eq!(UserId::parse(id.as_str()).ok().as_ref(), Some(id));
}

fn is_json(text: &str, object: bool) -> bool {
    match serde_json::from_str::<Value>(text) {
        Ok(v) if object => v.is_object(),
        Ok(v) => v.is_array(),
        Err(_) => false,
    }
}

/// A refusal is one of `allowed` (status, code); 400s are always `invalid_request`.
fn refused(e: &ApiError, allowed: &[(u16, &str)]) {
    let ok = (e.status == 400 && e.code == "invalid_request")
        || allowed.iter().any(|&(s, c)| (s, c) == (e.status, e.code));
    assert!(ok, "unexpected refusal {} {}: {}", e.status, e.code, e.message);
}

fn check_bodies(data: &[u8], caller: &Caller, path_user: &str, config: &Config) {
    match create_body(data, config) {
        Ok(room) => {
            assert!(room.name.len() <= ROOM_NAME_BYTES_MAX);
            assert!(room.description.len() <= ROOM_DESCRIPTION_BYTES_MAX);
            assert!(room.attributes.len() <= ROOM_ATTRIBUTES_BYTES_MAX);
            assert!(is_json(&room.attributes, true));
            assert!(room.members.len() <= config.members_per_room_max);
            assert_eq!(RoomKind::parse(room.kind.as_str()), Some(room.kind));
            for (user, role) in &room.members {
                check_user(user);
                assert_eq!(Role::parse(role.as_str()), Some(*role));
            }
        }
        Err(e) => refused(&e, &[(429, "limit_exceeded")]),
    }
    match patch_body(data) {
        Ok(patch) => {
            assert!(patch.name.as_ref().is_none_or(|n| n.len() <= ROOM_NAME_BYTES_MAX));
            assert!(patch
                .description
                .as_ref()
                .is_none_or(|d| d.len() <= ROOM_DESCRIPTION_BYTES_MAX));
            if let Some(a) = patch.attributes {
                assert!(a.len() <= ROOM_ATTRIBUTES_BYTES_MAX && is_json(&a, true));
            }
        }
        Err(e) => refused(&e, &[]),
    }
    match member_body(path_user, data) {
        Ok((user, role)) => {
            check_user(&user);
            assert_eq!(user.as_str(), path_user);
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        Err(e) => refused(&e, &[]),
    }
    match mark_body(data, &caller.viewer) {
        Ok((user, _seq)) => {
            check_user(&user);
            if let Viewer::User(me) = &caller.viewer {
                assert_eq!(&user, me);
            }
        }
        Err(e) => refused(&e, &[(403, "forbidden")]),
    }
    match message_body(data, caller, config) {
        Ok(m) => {
            assert!(m.text.len() <= config.message_bytes_max);
            check_user(&m.author);
            if let Viewer::User(me) = &caller.viewer {
                assert_eq!(&m.author, me);
            }
            assert!(m
                .client_message_id
                .as_ref()
                .is_none_or(|c| c.len() <= CLIENT_MESSAGE_ID_BYTES_MAX));
            assert!(m.kind.len() <= MESSAGE_KIND_BYTES_MAX);
            assert!(is_json(&m.attachments, false) && is_json(&m.attributes, true));
            assert!(m.encoded_len() <= config.stored_message_bytes_max);
        }
        Err(e) => refused(&e, &[(413, "message_too_large"), (403, "forbidden")]),
    }
    match edit_body(data, config) {
        Ok(text) => assert!(text.len() <= config.message_bytes_max),
        Err(e) => refused(&e, &[(413, "message_too_large")]),
    }
    match notification_body(path_user, data) {
        Ok(n) => {
            check_user(&n.user);
            assert_eq!(n.user.as_str(), path_user);
            for text in [&n.name, &n.category, &n.object_type] {
                assert!(text.len() <= NOTIFICATION_NAME_BYTES_MAX);
            }
            assert!(!n.category.is_empty() || n.object_type.is_empty());
            assert!(n.details.len() <= NOTIFICATION_DETAILS_BYTES_MAX);
            assert!(is_json(&n.details, true));
            if let Some(source) = &n.source_user {
                check_user(source);
            }
        }
        Err(e) => refused(&e, &[]),
    }
    match read_body(data, &caller.viewer) {
        Ok((user, ids)) => {
            check_user(&user);
            if let Viewer::User(me) = &caller.viewer {
                assert_eq!(&user, me);
            }
            assert!(ids.len() <= NOTIFICATION_READ_IDS_MAX);
        }
        Err(e) => refused(&e, &[(403, "forbidden")]),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    let caller = if pick & 1 == 0 {
        Caller { viewer: Viewer::Service, user: UserId::new("svc"), session: None, expires_at: 0 }
    } else {
        let alice = UserId::new("alice");
        Caller { viewer: Viewer::User(alice.clone()), user: alice, session: None, expires_at: 0 }
    };
    let path_user = PATH_USERS[usize::from(pick >> 1 & 3)];
    let defaults = Config::default();
    let small = Config {
        members_per_room_max: usize::from(pick >> 3 & 7),
        message_bytes_max: usize::from(pick >> 6) * 64 + 56,
        // Just over a message's fixed overhead (`Config::validate`'s floor), so that the
        // encoded-size check is reached by inputs of libFuzzer's default 4 KB at most.
        stored_message_bytes_max: MESSAGE_ENCODED_OVERHEAD_BYTES + 1 + usize::from(pick >> 6) * 256,
        ..Config::default()
    };
    check_bodies(body, &caller, path_user, &small);
    check_bodies(body, &caller, path_user, &defaults);

    // What the small limits accept, the defaults accept the same.
    assert!(small.members_per_room_max <= defaults.members_per_room_max);
    assert!(small.message_bytes_max <= defaults.message_bytes_max);
    assert!(small.stored_message_bytes_max <= defaults.stored_message_bytes_max);
    if let Ok(room) = create_body(body, &small) {
        let again = create_body(body, &defaults).expect("accepted under smaller limits");
        assert_eq!((room.kind, room.name, room.members), (again.kind, again.name, again.members));
    }
    if let Ok(m) = message_body(body, &caller, &small) {
        let again = message_body(body, &caller, &defaults).expect("accepted under smaller limits");
        assert_eq!((m.text, m.author, m.attributes), (again.text, again.author, again.attributes));
    }
    if let Ok(text) = edit_body(body, &small) {
        assert_eq!(edit_body(body, &defaults).ok(), Some(text));
    }
});
