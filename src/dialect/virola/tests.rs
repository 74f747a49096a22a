//! Unit tests of the Virola renderer: each core event becomes the exact JSON frame the protocol
//! sheet (`protocols/002-003-virola-events.md` §6, §7) gives, with integer ids where the user id
//! is one, millisecond timestamps and the per-viewer `isModerator`.

use std::sync::Arc;

use serde_json::{json, Value};

use super::*;
use crate::model::{LastMessage, Seq};

/// The frame's payload as JSON, after checking it is one complete FIN text frame whose header
/// length matches the payload.
fn json_of(frame: &Bytes) -> Value {
    serde_json::from_slice(text_payload(frame)).expect("payload is JSON")
}

fn text_payload(frame: &Bytes) -> &[u8] {
    assert_eq!(frame[0], 0x81, "FIN text frame");
    let payload = crate::ws::frame::payload(frame);
    let declared = match frame[1] {
        126 => u64::from(u16::from_be_bytes([frame[2], frame[3]])),
        127 => u64::from_be_bytes(frame[2..10].try_into().unwrap()),
        n => u64::from(n),
    };
    assert_eq!(declared, payload.len() as u64, "header length is the payload length");
    payload
}

/// The sheet's §6.1 example message.
fn sheet_message() -> Message {
    Message {
        id: MessageId(2_000_130),
        seq: Seq(1),
        room: RoomId(2),
        author: UserId::new("3"),
        text: "Build 1.4.2 is ready for testing".into(),
        parent_id: MessageId(0),
        client_message_id: Some("client-1".into()),
        kind: "Regular".into(),
        attachments: "[]".into(),
        attributes: r#"{"x":1}"#.into(),
        comment_count: 0,
        created_ms: 1_753_211_000_123,
        edited_ms: 1_753_211_000_123,
        modified_ms: 1_753_211_000_123,
        deleted_ms: None,
    }
}

/// The sheet's §6.4 example room.
fn sheet_room() -> RoomView {
    RoomView {
        id: RoomId(7),
        kind: RoomKind::Public,
        name: "Release planning".into(),
        description: "not rendered".into(),
        attributes: "{}".into(),
        members: vec![(UserId::new("3"), crate::model::Role::Owner)],
        created_ms: 1_753_212_000_000,
        updated_ms: 1_753_212_000_000,
        last_seq: Seq(0),
        last_message: None,
        summary: None,
    }
}

/// The sheet's §6.1 example `TextMessage`, for `sheet_message()`.
fn sheet_message_json() -> Value {
    json!({
        "messageId": 2000130,
        "parentMessageId": 0,
        "userId": 3,
        "roomId": 2,
        "text": "Build 1.4.2 is ready for testing",
        "messageType": "Regular",
        "markupType": "TextPlain",
        "priority": "Normal",
        "createdUtc": 1753211000123u64,
        "lastEditedUtc": 1753211000123u64,
        "lastModifiedUtc": 1753211000123u64,
        "commentCount": 0,
        "attachments": [],
        "readTimestamps": []
    })
}

/// The sheet's §6.4 example `Room`, for `sheet_room()` seen by a moderator.
fn sheet_room_json(moderator: bool) -> Value {
    json!({
        "roomId": 7,
        "displayName": "Release planning",
        "roomType": "Public",
        "createdUtc": 1753212000000u64,
        "lastModifiedUtc": 1753212000000u64,
        "unreadMessageCount": 0,
        "isArchived": false,
        "isModerator": moderator,
        "isPinned": false,
        "lastMessage": null
    })
}

#[test]
fn virola_each_event_renders_the_sheet_json() {
    let edited = Message {
        text: "Build 1.4.2 is ready for testing (QA please)".into(),
        comment_count: 1,
        edited_ms: 1_753_211_100_456,
        modified_ms: 1_753_211_100_456,
        ..sheet_message()
    };
    let mut edited_json = sheet_message_json();
    edited_json["text"] = json!("Build 1.4.2 is ready for testing (QA please)");
    edited_json["commentCount"] = json!(1);
    edited_json["lastEditedUtc"] = json!(1753211100456u64);
    edited_json["lastModifiedUtc"] = json!(1753211100456u64);
    let cases: Vec<(&str, Event, bool, Value)> = vec![
        (
            "§6.1 TextMessagesCreated",
            Event::MessageCreated(Arc::new(sheet_message())),
            false,
            json!({"type": "TextMessagesCreated", "data": {"messages": [sheet_message_json()]}}),
        ),
        (
            "§6.2 TextMessagesUpdated: the complete current message",
            Event::MessageUpdated(Arc::new(edited)),
            false,
            json!({"type": "TextMessagesUpdated", "data": {"messages": [edited_json]}}),
        ),
        (
            "§6.3 TextMessageDeleted, top-level",
            Event::MessageDeleted {
                room: RoomId(2),
                message: MessageId(2_000_130),
                parent_id: MessageId(0),
            },
            false,
            json!({"type": "TextMessageDeleted", "data": {"parentMessageId": 0, "roomId": 2, "messageId": 2000130}}),
        ),
        (
            "§6.3 TextMessageDeleted, a comment",
            Event::MessageDeleted {
                room: RoomId(2),
                message: MessageId(2_000_125),
                parent_id: MessageId(2_000_124),
            },
            false,
            json!({"type": "TextMessageDeleted", "data": {"parentMessageId": 2000124, "roomId": 2, "messageId": 2000125}}),
        ),
        (
            "§6.4 RoomCreated for a moderator",
            Event::RoomCreated(Arc::new(sheet_room())),
            true,
            json!({"type": "RoomCreated", "data": {"room": sheet_room_json(true)}}),
        ),
        (
            "§6.4 RoomCreated for a plain member",
            Event::RoomCreated(Arc::new(sheet_room())),
            false,
            json!({"type": "RoomCreated", "data": {"room": sheet_room_json(false)}}),
        ),
        (
            "§6.4 RoomUpdated for a moderator",
            Event::RoomUpdated(Arc::new(sheet_room())),
            true,
            json!({"type": "RoomUpdated", "data": {"room": sheet_room_json(true)}}),
        ),
        (
            "§6.4 RoomUpdated for a plain member",
            Event::RoomUpdated(Arc::new(sheet_room())),
            false,
            json!({"type": "RoomUpdated", "data": {"room": sheet_room_json(false)}}),
        ),
        (
            "§6.5 RoomDeleted",
            Event::RoomDeleted { room: RoomId(7) },
            false,
            json!({"type": "RoomDeleted", "data": {"roomId": 7}}),
        ),
    ];
    for (name, event, moderator, expected) in cases {
        assert_eq!(json_of(&render(&event, moderator)), expected, "{name}");
    }
}

#[test]
fn virola_envelope_puts_type_before_data_and_nothing_else() {
    let frame = render(&Event::RoomDeleted { room: RoomId(7) }, false);
    assert_eq!(text_payload(&frame), br#"{"type":"RoomDeleted","data":{"roomId":7}}"#);
    let created = render(&Event::MessageCreated(Arc::new(sheet_message())), false);
    assert!(
        text_payload(&created).starts_with(
            br#"{"type":"TextMessagesCreated","data":{"messages":[{"messageId":2000130,"#
        ),
        "{:?}",
        String::from_utf8_lossy(text_payload(&created))
    );
}

#[test]
fn virola_message_events_do_not_depend_on_the_moderator_variant() {
    let message = Arc::new(sheet_message());
    let events = [
        Event::MessageCreated(message.clone()),
        Event::MessageUpdated(message),
        Event::MessageDeleted { room: RoomId(2), message: MessageId(5), parent_id: MessageId(1) },
        Event::RoomDeleted { room: RoomId(7) },
    ];
    for event in events {
        assert_eq!(render(&event, true), render(&event, false), "{event:?}");
    }
}

#[test]
fn virola_user_ids_are_integers_only_when_canonical() {
    let cases: Vec<(&str, Value)> = vec![
        ("3", json!(3)),
        ("0", json!(0)),
        ("18446744073709551615", json!(18446744073709551615u64)),
        ("18446744073709551616", json!("18446744073709551616")),
        ("007", json!("007")),
        ("alice", json!("alice")),
        ("-1", json!("-1")),
        ("", json!("")),
    ];
    for (user, expected) in cases {
        let message = Message { author: UserId::new(user), ..sheet_message() };
        let got = json_of(&render(&Event::MessageCreated(Arc::new(message)), false));
        assert_eq!(got["data"]["messages"][0]["userId"], expected, "message author {user:?}");
        let room = RoomView {
            last_message: Some(LastMessage {
                id: MessageId(9),
                created_ms: 5,
                author: UserId::new(user),
            }),
            summary: None,
            ..sheet_room()
        };
        let got = json_of(&render(&Event::RoomUpdated(Arc::new(room)), false));
        assert_eq!(
            got["data"]["room"]["lastMessage"],
            json!({"messageId": 9, "createdUtc": 5, "userId": expected}),
            "lastMessage author {user:?}"
        );
    }
}

#[test]
fn virola_room_type_is_public_only_for_public_rooms() {
    let cases = [
        (RoomKind::Public, "Public"),
        (RoomKind::Group, "Private"),
        (RoomKind::Direct, "Private"),
        (RoomKind::Announce, "Private"),
    ];
    for (kind, expected) in cases {
        let room = Arc::new(RoomView { kind, ..sheet_room() });
        for event in [Event::RoomCreated(room.clone()), Event::RoomUpdated(room)] {
            assert_eq!(
                json_of(&render(&event, true))["data"]["room"]["roomType"],
                expected,
                "{kind:?}"
            );
        }
    }
}

#[test]
fn virola_room_shows_its_own_timestamps_and_last_message() {
    let room = RoomView {
        created_ms: 1_000,
        updated_ms: 2_500,
        last_message: Some(LastMessage {
            id: MessageId(2_000_130),
            created_ms: 2_400,
            author: UserId::new("3"),
        }),
        summary: None,
        ..sheet_room()
    };
    let got = json_of(&render(&Event::RoomUpdated(Arc::new(room)), false));
    let r = &got["data"]["room"];
    assert_eq!(r["createdUtc"], json!(1000));
    assert_eq!(r["lastModifiedUtc"], json!(2500));
    assert_eq!(r["lastMessage"], json!({"messageId": 2000130, "createdUtc": 2400, "userId": 3}));
}

#[test]
fn virola_message_type_is_issue_meeting_or_regular() {
    let cases = [
        ("Regular", "Regular"),
        ("Issue", "Issue"),
        ("Meeting", "Meeting"),
        ("issue", "Regular"),
        ("Poll", "Regular"),
        ("", "Regular"),
    ];
    for (kind, expected) in cases {
        let message = Message { kind: kind.into(), ..sheet_message() };
        let got = json_of(&render(&Event::MessageUpdated(Arc::new(message)), false));
        assert_eq!(got["data"]["messages"][0]["messageType"], expected, "kind {kind:?}");
    }
}

#[test]
fn virola_attachments_embed_stored_json_or_fall_back_to_an_empty_array() {
    let cases: Vec<(&str, Value)> = vec![
        ("[]", json!([])),
        (
            r#"[{"attachmentId":4,"fileName":"a b.png","fileSize":10}]"#,
            json!([{"attachmentId": 4, "fileName": "a b.png", "fileSize": 10}]),
        ),
        ("", json!([])),
        ("not json", json!([])),
        ("[1,", json!([])),
    ];
    for (stored, expected) in cases {
        let message = Message { attachments: stored.into(), ..sheet_message() };
        let got = json_of(&render(&Event::MessageCreated(Arc::new(message)), false));
        assert_eq!(got["data"]["messages"][0]["attachments"], expected, "stored {stored:?}");
    }
}

#[test]
fn virola_text_and_names_survive_escaping_and_long_payloads() {
    let tricky = "quote \" backslash \\ newline \n tab \t nul \u{0} émoji 🎉 </script>";
    let long = "x".repeat(70_000);
    for text in [tricky.to_string(), "a".repeat(200), long] {
        let message = Message { text: text.clone(), ..sheet_message() };
        let frame = render(&Event::MessageCreated(Arc::new(message)), false);
        let got = json_of(&frame);
        assert_eq!(got["data"]["messages"][0]["text"], json!(text), "{} bytes", text.len());
        let room = RoomView { name: text.clone(), ..sheet_room() };
        let got = json_of(&render(&Event::RoomCreated(Arc::new(room)), false));
        assert_eq!(got["data"]["room"]["displayName"], json!(text), "{} bytes", text.len());
    }
}

#[test]
fn virola_deleted_message_update_renders_its_cleared_text() {
    let message = Message {
        text: String::new(),
        deleted_ms: Some(1_753_211_200_000),
        modified_ms: 1_753_211_200_000,
        ..sheet_message()
    };
    let got = json_of(&render(&Event::MessageUpdated(Arc::new(message)), false));
    let mut expected = sheet_message_json();
    expected["text"] = json!("");
    expected["lastModifiedUtc"] = json!(1753211200000u64);
    assert_eq!(got, json!({"type": "TextMessagesUpdated", "data": {"messages": [expected]}}));
}
