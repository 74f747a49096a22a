//! Dialect rendering (Virola, osu!, Rechat's Message.Sent and its Notification): `roomcast::dialect::virola::render::render` of a MessageCreated event
//! (64 B text) and a RoomUpdated event, from `roomcast::model` values built directly.
//! Each render is one JSON serialisation into one complete WebSocket text frame, done once per
//! event by the room's owner (not once per recipient).
//!
//! `cargo bench --bench render -- --warm-up-time 1 --measurement-time 3`

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use roomcast::dialect::virola::render::render;
use roomcast::model::action::NewRoom;
use roomcast::model::{
    Event, LastMessage, Message, MessageId, Role, Room, RoomId, RoomKind, RoomView, Seq, UserId,
    Viewer,
};
use std::hint::black_box;

const NOW: u64 = 1_795_000_000_000;

fn message() -> Message {
    Message {
        id: MessageId(4_294_967_311),
        seq: Seq(1234),
        room: RoomId(17),
        author: UserId::new("u1234"),
        text: format!("t={};{}", 123_456_789_u64, "x".repeat(64 - 12)),
        parent_id: MessageId(0),
        client_message_id: None,
        kind: "Regular".into(),
        attachments: "[]".into(),
        attributes: "{}".into(),
        comment_count: 0,
        created_ms: NOW,
        edited_ms: NOW,
        modified_ms: NOW,
        deleted_ms: None,
    }
}

fn room(members: usize) -> RoomView {
    let mut list: Vec<(UserId, Role)> =
        (0..members).map(|i| (UserId::new(&format!("u{i}")), Role::Member)).collect();
    list.sort_by(|a, b| a.0.cmp(&b.0));
    RoomView {
        id: RoomId(17),
        kind: RoomKind::Group,
        name: "room-17".into(),
        description: String::new(),
        attributes: "{}".into(),
        members: list,
        created_ms: NOW,
        updated_ms: NOW,
        last_seq: Seq(1234),
        last_message: Some(LastMessage {
            id: MessageId(4_294_967_311),
            created_ms: NOW,
            author: UserId::new("42"),
        }),
        summary: None,
    }
}

fn bench(c: &mut Criterion) {
    let created = Event::MessageCreated(Arc::new(message()));
    let frame = render(&created, false);
    eprintln!("MessageCreated frame: {} bytes", frame.len());
    c.bench_function("virola_render/MessageCreated_64B", |b| {
        b.iter(|| render(black_box(&created), false))
    });
    let updated = Event::RoomUpdated(Arc::new(room(1000)));
    eprintln!("RoomUpdated frame: {} bytes", render(&updated, false).len());
    let posted = message();
    c.bench_function("osu_render/chat.message.new_64B", |b| {
        b.iter(|| roomcast::dialect::osu::wire::message_new(black_box(&posted), "{}"))
    });
    c.bench_function("virola_render/RoomUpdated", |b| b.iter(|| render(black_box(&updated), true)));
    // Rechat's Message.Sent carries the room object (at most 256 member objects) and the
    // message; its Notification follows in the same buffer, both rendered from the owner's
    // room as the server does: the chat case (2 members) and a big room.
    for members in [2, 1000] {
        let m = message();
        let live = live_room(members, &m);
        let frames = roomcast::dialect::rechat::socketio::message_sent_frames(&live, &m);
        eprintln!("Message.Sent + Notification ({members} members): {} bytes", frames.len());
        c.bench_function(&format!("rechat_render/Message.Sent_{members}_members"), |b| {
            b.iter(|| {
                roomcast::dialect::rechat::socketio::message_sent_frames(black_box(&live), &m)
            })
        });
    }
}

/// The owner's room of `members` members (u0 its owner) with `m` as its newest message.
fn live_room(members: usize, m: &Message) -> Room {
    let spec = NewRoom {
        kind: RoomKind::Group,
        name: "room-17".into(),
        description: String::new(),
        attributes: "{}".into(),
        members: (1..members).map(|i| (UserId::new(&format!("u{i}")), Role::Member)).collect(),
    };
    let owner = Viewer::User(UserId::new("u0"));
    let mut room = Room::create(RoomId(17), spec, &owner, NOW, 100, usize::MAX, usize::MAX)
        .expect("a valid room");
    room.history.push_back(Arc::new(m.clone()));
    room
}

/// The allocator the server binary uses (src/main.rs), so allocation costs match.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

criterion_group!(benches, bench);
criterion_main!(benches);
