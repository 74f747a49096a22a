//! Unit tests of the pure room model (`Room::create`, `Room::apply`): permissions per role and
//! room kind, ids and seqs, events, membership changes, history paging and direct rooms.
//!
//! Every test builds rooms in memory and asserts exact values: refusals with their messages,
//! full `Message`/`RoomView` values inside events, and the room's state after the action.

use super::*;
use crate::model::action::RoomPatch;
use crate::model::ShardId;

/// The room id every fixture uses.
const ROOM: RoomId = RoomId(7);
/// Creation time of every fixture room.
const T0: u64 = 1_000;
/// The time actions are applied at.
const T1: u64 = 2_000;
/// The first message ids of `ids()`: shard 1 of 4, so `id % 4 == 1`, starting above 100.
const ID1: MessageId = MessageId(105);
const ID2: MessageId = MessageId(109);
const ID3: MessageId = MessageId(113);
const ID4: MessageId = MessageId(117);
const ID5: MessageId = MessageId(121);
const ID6: MessageId = MessageId(125);

fn uid(name: &str) -> UserId {
    UserId::new(name)
}

/// `"service"` is the service viewer; any other name is that user.
fn who(name: &str) -> Viewer {
    match name {
        "service" => Viewer::Service,
        user => Viewer::User(uid(user)),
    }
}

/// An allocator whose ids are `ID1`, `ID2`, … (shard 1 of 4, after 100).
fn ids() -> IdAllocator {
    IdAllocator::new(ShardId(1), 4, 100)
}

fn spec(kind: RoomKind, members: &[(&str, Role)]) -> NewRoom {
    NewRoom {
        kind,
        name: "general".into(),
        description: "talk".into(),
        attributes: r#"{"k":1}"#.into(),
        members: members.iter().map(|(u, r)| (uid(u), *r)).collect(),
    }
}

/// A room of `kind` created by the service with an owner, a moderator and a member.
fn fixture(kind: RoomKind) -> Room {
    let members = [("owner", Role::Owner), ("mod", Role::Moderator), ("mem", Role::Member)];
    Room::create(ROOM, spec(kind, &members), &Viewer::Service, T0, 100, usize::MAX, 10).unwrap()
}

/// A direct room of `a` and `b`, created by `a`.
fn direct(a: &str, b: &str) -> Room {
    Room::create(
        ROOM,
        spec(RoomKind::Direct, &[(b, Role::Member)]),
        &who(a),
        T0,
        100,
        usize::MAX,
        10,
    )
    .unwrap()
}

fn new_message(author: &str, text: &str, parent_id: MessageId) -> NewMessage {
    NewMessage {
        author: uid(author),
        text: text.into(),
        parent_id,
        client_message_id: Some(format!("c-{text}")),
        kind: "Regular".into(),
        attachments: "[]".into(),
        attributes: "{}".into(),
    }
}

/// The message `Room::apply` creates for `new_message(author, text, parent_id)`.
fn message(id: MessageId, seq: Seq, author: &str, text: &str, parent_id: MessageId) -> Message {
    Message {
        id,
        seq,
        room: ROOM,
        author: uid(author),
        text: text.into(),
        parent_id,
        client_message_id: Some(format!("c-{text}")),
        kind: "Regular".into(),
        attachments: "[]".into(),
        attributes: "{}".into(),
        comment_count: 0,
        created_ms: T1,
        edited_ms: T1,
        modified_ms: T1,
        deleted_ms: None,
    }
}

fn post_as(
    room: &mut Room,
    ids: &mut IdAllocator,
    viewer: &str,
    author: &str,
    text: &str,
) -> Result<Outcome, Refusal> {
    room.apply(&who(viewer), RoomAction::Post(new_message(author, text, MessageId(0))), ids, T1)
}

/// Posts `text` as `author` (who must be allowed to) and returns the new message's id.
fn post_ok(room: &mut Room, ids: &mut IdAllocator, author: &str, text: &str) -> MessageId {
    match post_as(room, ids, author, author, text).unwrap().reply {
        Reply::Message(m) => m.id,
        other => panic!("post replied {other:?}"),
    }
}

/// An event with its full contents, comparable with `assert_eq!`.
#[derive(Debug, PartialEq)]
enum Seen {
    MessageCreated(Message),
    MessageUpdated(Message),
    MessageDeleted { room: RoomId, message: MessageId, parent_id: MessageId },
    RoomCreated(RoomView),
    RoomUpdated(RoomView),
    RoomDeleted(RoomId),
}

fn seen(events: &[Event]) -> Vec<Seen> {
    events
        .iter()
        .map(|e| match e {
            Event::MessageCreated(m) => Seen::MessageCreated((**m).clone()),
            Event::MessageUpdated(m) => Seen::MessageUpdated((**m).clone()),
            Event::MessageDeleted { room, message, parent_id } => {
                Seen::MessageDeleted { room: *room, message: *message, parent_id: *parent_id }
            }
            Event::RoomCreated(v) => Seen::RoomCreated((**v).clone()),
            Event::RoomUpdated(v) => Seen::RoomUpdated((**v).clone()),
            Event::RoomDeleted { room } => Seen::RoomDeleted(*room),
        })
        .collect()
}

/// The reply reduced to comparable values.
#[derive(Debug, PartialEq)]
enum Answer {
    Empty,
    Room(RoomView),
    Message(Message),
    Messages(Vec<MessageId>),
    /// A page that ended early at its byte bound.
    Truncated(Vec<MessageId>),
}

fn answer(reply: &Reply) -> Answer {
    match reply {
        Reply::Empty => Answer::Empty,
        Reply::Room(v) => Answer::Room((**v).clone()),
        Reply::Message(m) => Answer::Message((**m).clone()),
        Reply::Messages(page) => {
            let ids = page.messages.iter().map(|m| m.id).collect();
            if page.truncated {
                Answer::Truncated(ids)
            } else {
                Answer::Messages(ids)
            }
        }
    }
}

/// Members and roles, sorted by user id.
fn roster(room: &Room) -> Vec<(String, Role)> {
    let mut out: Vec<_> =
        room.members.iter().map(|(u, m)| (u.as_str().to_string(), m.role)).collect();
    out.sort();
    out
}

fn roles(members: &[(&str, Role)]) -> Vec<(String, Role)> {
    members.iter().map(|(u, r)| (u.to_string(), *r)).collect()
}

fn history_ids(room: &Room) -> Vec<MessageId> {
    room.history.iter().map(|m| m.id).collect()
}

#[test]
fn room_kind_and_role_names_round_trip_and_unknown_names_are_refused() {
    let kinds = [
        ("group", RoomKind::Group),
        ("direct", RoomKind::Direct),
        ("public", RoomKind::Public),
        ("announce", RoomKind::Announce),
    ];
    for (name, kind) in kinds {
        assert_eq!(RoomKind::parse(name), Some(kind), "{name}");
        assert_eq!(kind.as_str(), name);
    }
    let all_roles =
        [("member", Role::Member), ("moderator", Role::Moderator), ("owner", Role::Owner)];
    for (name, role) in all_roles {
        assert_eq!(Role::parse(name), Some(role), "{name}");
        assert_eq!(role.as_str(), name);
    }
    for bad in ["", "Group", "private", "dm"] {
        assert_eq!(RoomKind::parse(bad), None, "{bad:?}");
    }
    for bad in ["", "Owner", "admin", "mod"] {
        assert_eq!(Role::parse(bad), None, "{bad:?}");
    }
    assert!(Role::Member < Role::Moderator && Role::Moderator < Role::Owner);
}

#[test]
fn create_sets_members_and_roles_or_refuses_over_the_limits() {
    struct Case {
        name: &'static str,
        creator: &'static str,
        kind: RoomKind,
        members: Vec<(&'static str, Role)>,
        members_max: usize,
        expected: Result<Vec<(&'static str, Role)>, Refusal>,
    }
    use Role::*;
    let too_many = Refusal::Full("too many members");
    let direct_over = Refusal::Invalid("a direct room has at most two members".into());
    let cases = vec![
        Case {
            name: "service creates with the given roles and no owner added",
            creator: "service",
            kind: RoomKind::Group,
            members: vec![("a", Member), ("b", Moderator)],
            members_max: 10,
            expected: Ok(vec![("a", Member), ("b", Moderator)]),
        },
        Case {
            name: "a user creator becomes the owner",
            creator: "a",
            kind: RoomKind::Group,
            members: vec![("b", Member)],
            members_max: 10,
            expected: Ok(vec![("a", Owner), ("b", Member)]),
        },
        Case {
            name: "a creator listed as a member is still the owner",
            creator: "a",
            kind: RoomKind::Public,
            members: vec![("a", Member), ("b", Member)],
            members_max: 10,
            expected: Ok(vec![("a", Owner), ("b", Member)]),
        },
        Case {
            name: "a user creator alone",
            creator: "a",
            kind: RoomKind::Announce,
            members: vec![],
            members_max: 10,
            expected: Ok(vec![("a", Owner)]),
        },
        Case {
            name: "exactly members_max including the creator",
            creator: "a",
            kind: RoomKind::Group,
            members: vec![("b", Member), ("c", Member)],
            members_max: 3,
            expected: Ok(vec![("a", Owner), ("b", Member), ("c", Member)]),
        },
        Case {
            name: "the creator counts toward members_max",
            creator: "a",
            kind: RoomKind::Group,
            members: vec![("b", Member), ("c", Member)],
            members_max: 2,
            expected: Err(too_many.clone()),
        },
        Case {
            name: "service over members_max",
            creator: "service",
            kind: RoomKind::Group,
            members: vec![("a", Member), ("b", Member), ("c", Member)],
            members_max: 2,
            expected: Err(too_many),
        },
        Case {
            name: "direct room of two by a user",
            creator: "a",
            kind: RoomKind::Direct,
            members: vec![("b", Member)],
            members_max: 10,
            expected: Ok(vec![("a", Owner), ("b", Member)]),
        },
        Case {
            name: "direct room of two by the service",
            creator: "service",
            kind: RoomKind::Direct,
            members: vec![("a", Member), ("b", Member)],
            members_max: 10,
            expected: Ok(vec![("a", Member), ("b", Member)]),
        },
        Case {
            name: "direct room with a third member",
            creator: "a",
            kind: RoomKind::Direct,
            members: vec![("b", Member), ("c", Member)],
            members_max: 10,
            expected: Err(direct_over.clone()),
        },
        Case {
            name: "direct room of three by the service",
            creator: "service",
            kind: RoomKind::Direct,
            members: vec![("a", Member), ("b", Member), ("c", Member)],
            members_max: 10,
            expected: Err(direct_over),
        },
    ];
    for case in cases {
        let created = Room::create(
            ROOM,
            spec(case.kind, &case.members),
            &who(case.creator),
            T0,
            100,
            usize::MAX,
            case.members_max,
        );
        match (created, case.expected) {
            (Ok(room), Ok(expected)) => {
                assert_eq!(roster(&room), roles(&expected), "{}", case.name);
                assert!(room.members.values().all(|m| m.shard_mask == 0), "{}", case.name);
                assert_eq!(room.kind, case.kind, "{}", case.name);
                assert_eq!(room.members_max, case.members_max, "{}", case.name);
            }
            (Err(refusal), Err(expected)) => assert_eq!(refusal, expected, "{}", case.name),
            (got, expected) => panic!("{}: got {got:?}, expected {expected:?}", case.name),
        }
    }
}

#[test]
fn create_view_shows_every_field_and_an_empty_history() {
    let room = Room::create(
        ROOM,
        spec(RoomKind::Group, &[("b", Role::Member), ("a", Role::Moderator)]),
        &who("c"),
        T0,
        50,
        usize::MAX,
        10,
    )
    .unwrap();
    assert_eq!(room.history_max, 50);
    assert!(room.history.is_empty());
    assert_eq!(
        *room.view(),
        RoomView {
            id: ROOM,
            kind: RoomKind::Group,
            name: "general".into(),
            description: "talk".into(),
            attributes: r#"{"k":1}"#.into(),
            members: vec![
                (uid("a"), Role::Moderator),
                (uid("b"), Role::Member),
                (uid("c"), Role::Owner)
            ],
            created_ms: T0,
            updated_ms: T0,
            last_seq: Seq(0),
            last_message: None,
            summary: None,
        }
    );
}

#[test]
fn get_is_visible_to_members_services_and_anyone_in_public_rooms() {
    use RoomKind::*;
    // (room kind, viewer, visible)
    let cases = vec![
        (Group, "mem", true),
        (Group, "service", true),
        (Group, "stranger", false),
        (Announce, "stranger", false),
        (Public, "stranger", true),
    ];
    for (kind, viewer, visible) in cases {
        let mut room = fixture(kind);
        let got = room.apply(&who(viewer), RoomAction::Get, &mut ids(), T1);
        let label = format!("{kind:?} as {viewer}");
        if visible {
            let out = got.unwrap();
            assert_eq!(answer(&out.reply), Answer::Room((*room.view()).clone()), "{label}");
            assert!(out.events.is_empty(), "{label}");
            assert!(!out.deleted && out.joined.is_none() && out.left.is_none(), "{label}");
            assert!(out.stored.is_none(), "{label}");
        } else {
            assert_eq!(got.unwrap_err(), Refusal::NotFound("no such room"), "{label}");
        }
    }
}

#[test]
fn post_permission_depends_on_membership_role_and_room_kind() {
    use RoomKind::*;
    let only_members = Err(Refusal::Forbidden("only members may post"));
    let announce = Err(Refusal::Forbidden("only owners and moderators post in an announce room"));
    let hidden = Err(Refusal::NotFound("no such room"));
    // (name, room kind, viewer, author, expected)
    let cases = vec![
        ("group member", Group, "mem", "mem", Ok(())),
        ("group owner", Group, "owner", "owner", Ok(())),
        ("group stranger does not see the room", Group, "stranger", "stranger", hidden.clone()),
        ("public member", Public, "mem", "mem", Ok(())),
        ("public stranger", Public, "stranger", "stranger", only_members),
        ("announce member", Announce, "mem", "mem", announce.clone()),
        ("announce moderator", Announce, "mod", "mod", Ok(())),
        ("announce owner", Announce, "owner", "owner", Ok(())),
        ("announce stranger does not see it", Announce, "stranger", "stranger", hidden),
        ("service for a member", Group, "service", "mem", Ok(())),
        ("service for a group stranger", Group, "service", "stranger", Ok(())),
        ("service for an announce member", Announce, "service", "mem", announce),
        ("service for an announce moderator", Announce, "service", "mod", Ok(())),
    ];
    for (name, kind, viewer, author, expected) in cases {
        let mut room = fixture(kind);
        let mut alloc = ids();
        let got = post_as(&mut room, &mut alloc, viewer, author, "hi");
        match expected {
            Ok(()) => {
                let out = got.unwrap_or_else(|e| panic!("{name}: refused {e:?}"));
                let expected = message(ID1, Seq(1), author, "hi", MessageId(0));
                assert_eq!(answer(&out.reply), Answer::Message(expected), "{name}");
                assert_eq!(room.last_seq, Seq(1), "{name}");
                assert_eq!(history_ids(&room), vec![ID1], "{name}");
            }
            Err(refusal) => {
                assert_eq!(got.unwrap_err(), refusal, "{name}");
                assert_eq!(room.last_seq, Seq(0), "{name}: no seq taken");
                assert!(room.history.is_empty(), "{name}");
                assert_eq!(MessageId(alloc.next_id()), ID1, "{name}: no id taken");
            }
        }
    }
}

#[test]
fn post_assigns_increasing_ids_and_seqs_and_emits_one_created_event() {
    let mut room = fixture(RoomKind::Group);
    let mut alloc = ids();
    let texts =
        [("mem", "one", ID1, Seq(1)), ("owner", "two", ID2, Seq(2)), ("mod", "three", ID3, Seq(3))];
    for (author, text, id, seq) in texts {
        let out = post_as(&mut room, &mut alloc, author, author, text).unwrap();
        let expected = message(id, seq, author, text, MessageId(0));
        assert_eq!(answer(&out.reply), Answer::Message(expected.clone()), "{text}");
        assert_eq!(seen(&out.events), vec![Seen::MessageCreated(expected.clone())], "{text}");
        assert_eq!(out.stored.as_deref(), Some(&expected), "{text}");
        assert!(out.joined.is_none() && out.left.is_none() && !out.deleted, "{text}");
        assert_eq!(room.last_seq, seq);
    }
    assert_eq!(history_ids(&room), vec![ID1, ID2, ID3]);
    let view = room.view();
    assert_eq!(view.last_seq, Seq(3));
    assert_eq!(
        view.last_message,
        Some(LastMessage { id: ID3, created_ms: T1, author: uid("mod") })
    );
    // Posting does not change the room's own timestamps.
    assert_eq!((view.created_ms, view.updated_ms), (T0, T0));
}

#[test]
fn post_keeps_only_the_newest_history_max_messages_in_memory() {
    let mut room =
        Room::create(ROOM, spec(RoomKind::Group, &[]), &who("a"), T0, 3, usize::MAX, 10).unwrap();
    let mut alloc = ids();
    for text in ["1", "2", "3", "4", "5"] {
        post_ok(&mut room, &mut alloc, "a", text);
    }
    assert_eq!(history_ids(&room), vec![ID3, ID4, ID5]);
    assert_eq!(room.last_seq, Seq(5));
    let seqs: Vec<Seq> = room.history.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, vec![Seq(3), Seq(4), Seq(5)]);
}

#[test]
fn the_window_keeps_within_its_byte_bound_through_posts_and_edits() {
    let t100 = "x".repeat(100);
    let mut scratch =
        Room::create(ROOM, spec(RoomKind::Group, &[]), &who("a"), T0, 100, usize::MAX, 10).unwrap();
    post_ok(&mut scratch, &mut ids(), "a", &t100);
    let one = scratch.history[0].encoded_len();
    // Room for two such messages, not three.
    let bound = 2 * one + 50;
    let mut room =
        Room::create(ROOM, spec(RoomKind::Group, &[]), &who("a"), T0, 100, bound, 10).unwrap();
    let window_bytes = |room: &Room| room.history.iter().map(|m| m.encoded_len()).sum::<usize>();
    let mut alloc = ids();
    post_ok(&mut room, &mut alloc, "a", &t100);
    post_ok(&mut room, &mut alloc, "a", &t100);
    assert_eq!(history_ids(&room), vec![ID1, ID2]);
    assert_eq!(room.history_bytes, 2 * one);
    let out = room
        .apply(&who("a"), RoomAction::Post(new_message("a", &t100, MessageId(0))), &mut alloc, T1)
        .unwrap();
    assert_eq!(out.evicted.iter().map(|m| m.id).collect::<Vec<_>>(), vec![ID1]);
    assert_eq!(out.evicted_for_bytes, 1);
    assert_eq!(history_ids(&room), vec![ID2, ID3]);
    // An edit that grows a message evicts the oldest too (here: the edited one itself).
    let edit = RoomAction::Edit { message: ID2, text: "y".repeat(300), bytes_max: usize::MAX };
    let out = room.apply(&who("a"), edit, &mut alloc, T1).unwrap();
    assert_eq!(out.evicted.iter().map(|m| m.id).collect::<Vec<_>>(), vec![ID2]);
    assert_eq!(out.evicted[0].text, "y".repeat(300), "the evicted version is the edited one");
    assert_eq!(history_ids(&room), vec![ID3]);
    assert_eq!(room.history_bytes, window_bytes(&room));
    // A deletion shrinks it; the newest message always stays, however large.
    room.apply(&who("a"), RoomAction::DeleteMessage(ID3), &mut alloc, T1).unwrap();
    assert_eq!(room.history_bytes, window_bytes(&room));
    assert!(room.history_bytes < one);
    let big = "z".repeat(bound);
    post_ok(&mut room, &mut alloc, "a", &big);
    assert_eq!(room.history.len(), 1);
    assert_eq!(room.history_bytes, window_bytes(&room));
    assert!(room.history_bytes > bound);
}

#[test]
fn comments_count_on_a_parent_older_than_the_window_when_the_owner_gives_it() {
    let mut room =
        Room::create(ROOM, spec(RoomKind::Group, &[]), &who("a"), T0, 2, usize::MAX, 10).unwrap();
    let mut alloc = ids();
    for text in ["topic", "f1", "f2"] {
        post_ok(&mut room, &mut alloc, "a", text);
    }
    assert_eq!(history_ids(&room), vec![ID2, ID3]);
    let post = |parent| RoomAction::Post(new_message("a", "reply", parent));
    assert_eq!(room.outside_parent(&post(ID1)), Some(ID1));
    assert_eq!(room.outside_parent(&post(ID2)), None, "in the window");
    // Without the parent at hand: 404; another room's message is no parent either.
    let refused = room.apply(&who("a"), post(ID1), &mut alloc, T1).unwrap_err();
    assert_eq!(refused, Refusal::NotFound("no such parent message"));
    let mut foreign =
        Arc::new(Message { room: RoomId(99), ..message(ID1, Seq(1), "a", "x", MessageId(0)) });
    let refused = room.apply_with_parent(&who("a"), post(ID1), &mut alloc, T1, Some(&mut foreign));
    assert_eq!(refused.unwrap_err(), Refusal::NotFound("no such parent message"));
    // With it: counted, and updated among the events (so the owner stores and sends it).
    let mut parent = room_message(ID1, "topic");
    let out =
        room.apply_with_parent(&who("a"), post(ID1), &mut alloc, T1, Some(&mut parent)).unwrap();
    assert_eq!(parent.comment_count, 1);
    assert!(
        matches!(&out.events[1], Event::MessageUpdated(m) if m.id == ID1 && m.comment_count == 1)
    );
    let comment = match out.reply {
        Reply::Message(m) => m,
        other => panic!("{other:?}"),
    };
    assert_eq!(room.outside_parent(&RoomAction::DeleteMessage(comment.id)), Some(ID1));
    let delete = RoomAction::DeleteMessage(comment.id);
    let out = room.apply_with_parent(&who("a"), delete, &mut alloc, T1, Some(&mut parent)).unwrap();
    assert_eq!(parent.comment_count, 0);
    assert!(matches!(&out.events[1], Event::MessageUpdated(m) if m.id == ID1));
    // A comment outside the window too (apply_detached), its parent given.
    let mut old_comment = Arc::new(message(ID6, Seq(4), "a", "old reply", ID1));
    Arc::make_mut(&mut parent).comment_count = 1;
    let out = room
        .apply_detached(
            &who("a"),
            RoomAction::DeleteMessage(ID6),
            &mut old_comment,
            T1,
            Some(&mut parent),
        )
        .unwrap();
    assert_eq!(parent.comment_count, 0);
    assert_eq!(out.events.len(), 2);
}

/// A message of `ROOM` by "a", with no comments.
fn room_message(id: MessageId, text: &str) -> Arc<Message> {
    Arc::new(Message { room: ROOM, ..message(id, Seq(1), "a", text, MessageId(0)) })
}

#[test]
fn post_comment_counts_on_the_parent_and_emits_created_then_updated() {
    let mut room = fixture(RoomKind::Group);
    let mut alloc = ids();
    let parent = post_ok(&mut room, &mut alloc, "owner", "topic");
    assert_eq!(parent, ID1);
    let later = T1 + 500;
    let out = room
        .apply(&who("mem"), RoomAction::Post(new_message("mem", "reply", ID1)), &mut alloc, later)
        .unwrap();
    let comment = Message {
        created_ms: later,
        edited_ms: later,
        modified_ms: later,
        ..message(ID2, Seq(2), "mem", "reply", ID1)
    };
    let updated_parent = Message {
        comment_count: 1,
        modified_ms: later,
        ..message(ID1, Seq(1), "owner", "topic", MessageId(0))
    };
    assert_eq!(
        seen(&out.events),
        vec![Seen::MessageCreated(comment.clone()), Seen::MessageUpdated(updated_parent.clone())]
    );
    assert_eq!(answer(&out.reply), Answer::Message(comment.clone()));
    assert_eq!(out.stored.as_deref(), Some(&comment));
    assert_eq!(*room.history[0], updated_parent);
}

#[test]
fn post_comment_on_a_missing_or_deleted_parent_is_not_found_and_changes_nothing() {
    let mut room = fixture(RoomKind::Group);
    let mut alloc = ids();
    post_ok(&mut room, &mut alloc, "mem", "kept");
    let gone = post_ok(&mut room, &mut alloc, "mem", "gone");
    room.apply(&who("mem"), RoomAction::DeleteMessage(gone), &mut alloc, T1).unwrap();
    for parent in [gone, MessageId(999), MessageId(ID1.get() + 1)] {
        let got = room.apply(
            &who("mem"),
            RoomAction::Post(new_message("mem", "reply", parent)),
            &mut alloc,
            T1,
        );
        assert_eq!(got.unwrap_err(), Refusal::NotFound("no such parent message"), "{parent}");
    }
    assert_eq!(room.last_seq, Seq(2));
    assert_eq!(history_ids(&room), vec![ID1, ID2]);
    assert_eq!(MessageId(alloc.next_id()), ID3, "a refused comment takes no id");
}

#[test]
fn edit_is_for_the_author_or_a_service_only() {
    let not_author = Err(Refusal::Forbidden("only the author may edit a message"));
    // (viewer, expected); "mem" wrote the message.
    let cases = vec![
        ("mem", Ok(())),
        ("service", Ok(())),
        ("mod", not_author.clone()),
        ("owner", not_author),
        ("stranger", Err(Refusal::NotFound("no such room"))),
    ];
    for (viewer, expected) in cases {
        let mut room = fixture(RoomKind::Group);
        let mut alloc = ids();
        let id = post_ok(&mut room, &mut alloc, "mem", "draft");
        let later = T1 + 300;
        let edit = RoomAction::Edit { message: id, text: "final".into(), bytes_max: usize::MAX };
        let got = room.apply(&who(viewer), edit, &mut alloc, later);
        let original = message(ID1, Seq(1), "mem", "draft", MessageId(0));
        match expected {
            Ok(()) => {
                let out = got.unwrap();
                let edited = Message {
                    text: "final".into(),
                    edited_ms: later,
                    modified_ms: later,
                    ..original
                };
                assert_eq!(answer(&out.reply), Answer::Message(edited.clone()), "{viewer}");
                assert_eq!(seen(&out.events), vec![Seen::MessageUpdated(edited.clone())]);
                assert_eq!(out.stored.as_deref(), Some(&edited), "{viewer}");
                assert_eq!(*room.history[0], edited, "{viewer}");
                assert_eq!(room.last_seq, Seq(1), "an edit takes no seq");
            }
            Err(refusal) => {
                assert_eq!(got.unwrap_err(), refusal, "{viewer}");
                assert_eq!(*room.history[0], original, "{viewer}");
            }
        }
    }
}

#[test]
fn edit_of_a_deleted_or_unknown_message_is_not_found() {
    let mut room = fixture(RoomKind::Group);
    let mut alloc = ids();
    let gone = post_ok(&mut room, &mut alloc, "mem", "gone");
    room.apply(&who("mem"), RoomAction::DeleteMessage(gone), &mut alloc, T1).unwrap();
    for (viewer, id) in [("mem", gone), ("service", gone), ("mem", MessageId(999))] {
        let got = room.apply(
            &who(viewer),
            RoomAction::Edit { message: id, text: "x".into(), bytes_max: usize::MAX },
            &mut alloc,
            T1,
        );
        assert_eq!(got.unwrap_err(), Refusal::NotFound("no such message"), "{viewer} {id}");
    }
    assert_eq!(room.history[0].text, "", "the deleted text stays cleared");
}

#[test]
fn edit_with_a_clock_behind_creation_never_dates_the_edit_before_it() {
    let mut room = fixture(RoomKind::Group);
    let mut alloc = ids();
    let id = post_ok(&mut room, &mut alloc, "mem", "t");
    let out = room
        .apply(
            &who("mem"),
            RoomAction::Edit { message: id, text: "u".into(), bytes_max: usize::MAX },
            &mut alloc,
            T1 - 10,
        )
        .unwrap();
    let Reply::Message(m) = &out.reply else { panic!("edit replied {:?}", out.reply) };
    assert_eq!((m.created_ms, m.edited_ms, m.modified_ms), (T1, T1, T1));
}

#[test]
fn delete_message_is_for_the_author_moderators_owners_and_services() {
    let forbidden = Err(Refusal::Forbidden("only the author or a moderator may delete a message"));
    // (viewer, expected); "mem" wrote the message, "other" is another plain member.
    let cases = vec![
        ("mem", Ok(())),
        ("mod", Ok(())),
        ("owner", Ok(())),
        ("service", Ok(())),
        ("other", forbidden),
        ("stranger", Err(Refusal::NotFound("no such room"))),
    ];
    for (viewer, expected) in cases {
        let mut room = fixture(RoomKind::Group);
        room.members.insert(uid("other"), Member { role: Role::Member, shard_mask: 0 });
        let mut alloc = ids();
        let first = post_ok(&mut room, &mut alloc, "owner", "first");
        let id = post_ok(&mut room, &mut alloc, "mem", "doomed");
        let later = T1 + 700;
        let got = room.apply(&who(viewer), RoomAction::DeleteMessage(id), &mut alloc, later);
        let original = message(ID2, Seq(2), "mem", "doomed", MessageId(0));
        match expected {
            Ok(()) => {
                let out = got.unwrap();
                let deleted = Message {
                    text: String::new(),
                    deleted_ms: Some(later),
                    modified_ms: later,
                    ..original
                };
                assert_eq!(answer(&out.reply), Answer::Empty, "{viewer}");
                assert_eq!(
                    seen(&out.events),
                    vec![Seen::MessageDeleted {
                        room: ROOM,
                        message: ID2,
                        parent_id: MessageId(0)
                    }],
                    "{viewer}"
                );
                assert_eq!(out.stored.as_deref(), Some(&deleted), "{viewer}");
                // The tombstone stays in the window but no longer counts as the last message.
                assert_eq!(*room.history[1], deleted, "{viewer}");
                let last = LastMessage { id: first, created_ms: T1, author: uid("owner") };
                assert_eq!(room.view().last_message, Some(last), "{viewer}");
                let again = room.apply(&who(viewer), RoomAction::DeleteMessage(id), &mut alloc, T1);
                assert_eq!(again.unwrap_err(), Refusal::NotFound("no such message"), "{viewer}");
            }
            Err(refusal) => {
                assert_eq!(got.unwrap_err(), refusal, "{viewer}");
                assert_eq!(*room.history[1], original, "{viewer}");
            }
        }
    }
}

#[test]
fn delete_comment_reports_its_parent_and_decrements_the_parent_count() {
    let mut room = fixture(RoomKind::Group);
    let mut alloc = ids();
    let parent = post_ok(&mut room, &mut alloc, "owner", "topic");
    let new = new_message("mem", "reply", parent);
    room.apply(&who("mem"), RoomAction::Post(new), &mut alloc, T1).unwrap();
    assert_eq!(room.history[0].comment_count, 1);
    let later = T1 + 900;
    let out = room.apply(&who("mem"), RoomAction::DeleteMessage(ID2), &mut alloc, later).unwrap();
    let parent_after = Message {
        comment_count: 0,
        modified_ms: later,
        ..message(ID1, Seq(1), "owner", "topic", MessageId(0))
    };
    assert_eq!(
        seen(&out.events),
        vec![
            Seen::MessageDeleted { room: ROOM, message: ID2, parent_id: ID1 },
            Seen::MessageUpdated(parent_after.clone()),
        ]
    );
    assert_eq!(*room.history[0], parent_after);
}

#[test]
fn delete_comment_of_a_deleted_parent_emits_only_the_deletion() {
    let mut room = fixture(RoomKind::Group);
    let mut alloc = ids();
    let parent = post_ok(&mut room, &mut alloc, "owner", "topic");
    let new = new_message("mem", "reply", parent);
    room.apply(&who("mem"), RoomAction::Post(new), &mut alloc, T1).unwrap();
    room.apply(&who("owner"), RoomAction::DeleteMessage(parent), &mut alloc, T1).unwrap();
    let out = room.apply(&who("mem"), RoomAction::DeleteMessage(ID2), &mut alloc, T1).unwrap();
    assert_eq!(
        seen(&out.events),
        vec![Seen::MessageDeleted { room: ROOM, message: ID2, parent_id: ID1 }]
    );
    assert_eq!(room.view().last_message, None, "no live message is left");
}

#[test]
fn put_member_permissions_roles_limits_and_joined() {
    use Role::*;
    use RoomKind::*;
    let base = vec![("mem", Member), ("mod", Moderator), ("owner", Owner)];
    // The fixture's roster with `user` at `role`.
    let with = |user: &'static str, role: Role| {
        let mut v: Vec<_> = base.iter().copied().filter(|(u, _)| *u != user).collect();
        v.push((user, role));
        v.sort();
        v
    };
    let no_add = Err(Refusal::Forbidden("only owners and moderators may add members"));
    let owners_only = Err(Refusal::Forbidden("only an owner may make owners"));
    let full = Err(Refusal::Full("the room has its maximum number of members"));
    let hidden = Err(Refusal::NotFound("no such room"));
    let (joins, changes) = (Ok(true), Ok(false));
    // (name, room kind, members_max, viewer, user, role, expected): `Ok(joined)` leaves the
    // fixture's roster with `user` at `role`; a refusal leaves it unchanged.
    let cases = vec![
        ("owner adds a member", Group, 10, "owner", "new", Member, joins.clone()),
        ("moderator adds a moderator", Group, 10, "mod", "new", Moderator, joins.clone()),
        ("service adds an owner", Group, 10, "service", "new", Owner, joins.clone()),
        ("owner makes an owner", Group, 10, "owner", "mem", Owner, changes.clone()),
        ("owner promotes a member", Group, 10, "owner", "mem", Moderator, changes.clone()),
        ("moderator demotes itself", Group, 10, "mod", "mod", Member, changes.clone()),
        ("moderator may not make owners", Group, 10, "mod", "mem", Owner, owners_only.clone()),
        ("moderator may not become owner", Group, 10, "mod", "mod", Owner, owners_only),
        ("member may not add", Group, 10, "mem", "new", Member, no_add.clone()),
        ("member may not promote itself", Public, 10, "mem", "mem", Moderator, no_add.clone()),
        ("anyone joins a public room", Public, 10, "new", "new", Member, joins),
        ("nobody self-joins as moderator", Public, 10, "new", "new", Moderator, no_add.clone()),
        ("public stranger may not add others", Public, 10, "new", "other", Member, no_add),
        ("group stranger may not join", Group, 10, "new", "new", Member, hidden.clone()),
        ("announce stranger may not join", Announce, 10, "new", "new", Member, hidden),
        ("full room refuses a new member", Group, 3, "owner", "new", Member, full.clone()),
        ("full public room refuses a self-join", Public, 3, "new", "new", Member, full),
        ("full room changes a role", Group, 3, "owner", "mem", Moderator, changes),
    ];
    for (name, kind, members_max, viewer, user, role, expected) in cases {
        let members = [("owner", Owner), ("mod", Moderator), ("mem", Member)];
        let mut room = Room::create(
            ROOM,
            spec(kind, &members),
            &Viewer::Service,
            T0,
            100,
            usize::MAX,
            members_max,
        )
        .unwrap();
        let put = RoomAction::PutMember { user: uid(user), role };
        let got = room.apply(&who(viewer), put, &mut ids(), T1);
        match expected {
            Ok(joined) => {
                let out = got.unwrap_or_else(|e| panic!("{name}: refused {e:?}"));
                assert_eq!(roster(&room), roles(&with(user, role)), "{name}");
                assert_eq!(out.joined, joined.then(|| uid(user)), "{name}");
                assert_eq!(out.left, None, "{name}");
                assert_eq!(room.updated_ms, T1, "{name}");
                let view = (*room.view()).clone();
                assert_eq!(view.role_of(&uid(user)), Some(role), "{name}");
                assert_eq!(answer(&out.reply), Answer::Room(view.clone()), "{name}");
                assert_eq!(seen(&out.events), vec![Seen::RoomUpdated(view)], "{name}");
                assert!(out.stored.is_none() && !out.deleted, "{name}");
            }
            Err(refusal) => {
                assert_eq!(got.unwrap_err(), refusal, "{name}");
                assert_eq!(roster(&room), roles(&base), "{name}: roster unchanged");
                assert_eq!(room.updated_ms, T0, "{name}");
            }
        }
    }
}

#[test]
fn remove_member_permissions_and_left_with_the_members_shards() {
    use RoomKind::*;
    let others = Err(Refusal::Forbidden("only owners and moderators may remove other members"));
    let no_member = Err(Refusal::NotFound("no such member"));
    let hidden = Err(Refusal::NotFound("no such room"));
    // (name, room kind, viewer, user, expected)
    let cases = vec![
        ("owner removes a member", Group, "owner", "mem", Ok(())),
        ("moderator removes a member", Group, "mod", "mem", Ok(())),
        ("service removes a member", Group, "service", "mem", Ok(())),
        ("a member leaves", Group, "mem", "mem", Ok(())),
        ("a moderator leaves", Group, "mod", "mod", Ok(())),
        ("a member may not remove others", Group, "mem", "mod", others.clone()),
        ("a public stranger may not remove members", Public, "stranger", "mem", others),
        ("removing a non-member", Group, "owner", "stranger", no_member.clone()),
        ("a public stranger leaving", Public, "stranger", "stranger", no_member),
        ("a group stranger does not see it", Group, "stranger", "stranger", hidden),
    ];
    for (name, kind, viewer, user, expected) in cases {
        let mut room = fixture(kind);
        for (i, member) in room.members.values_mut().enumerate() {
            member.shard_mask = (1 << i) | 0b1000;
        }
        let mask = room.members.get(&uid(user)).map(|m| m.shard_mask);
        let before = roster(&room);
        let got = room.apply(&who(viewer), RoomAction::RemoveMember(uid(user)), &mut ids(), T1);
        match expected {
            Ok(()) => {
                let out = got.unwrap_or_else(|e| panic!("{name}: refused {e:?}"));
                let remaining: Vec<_> = before.into_iter().filter(|(u, _)| u != user).collect();
                assert_eq!(roster(&room), remaining, "{name}");
                assert_eq!(out.left, Some((uid(user), mask.unwrap())), "{name}");
                assert_eq!(out.joined, None, "{name}");
                assert_eq!(answer(&out.reply), Answer::Empty, "{name}");
                assert_eq!(room.updated_ms, T1, "{name}");
                let view = (*room.view()).clone();
                assert_eq!(view.role_of(&uid(user)), None, "{name}");
                assert_eq!(seen(&out.events), vec![Seen::RoomUpdated(view)], "{name}");
            }
            Err(refusal) => {
                assert_eq!(got.unwrap_err(), refusal, "{name}");
                assert_eq!(roster(&room), before, "{name}: roster unchanged");
                assert_eq!(room.updated_ms, T0, "{name}");
            }
        }
    }
}

#[test]
fn removed_member_of_a_group_can_no_longer_post_or_see_the_room() {
    let mut room = fixture(RoomKind::Group);
    let mut alloc = ids();
    room.apply(&who("mem"), RoomAction::RemoveMember(uid("mem")), &mut alloc, T1).unwrap();
    let post = post_as(&mut room, &mut alloc, "mem", "mem", "hello?");
    assert_eq!(post.unwrap_err(), Refusal::NotFound("no such room"));
    let get = room.apply(&who("mem"), RoomAction::Get, &mut alloc, T1);
    assert_eq!(get.unwrap_err(), Refusal::NotFound("no such room"));
}

#[test]
fn update_is_for_owners_moderators_and_services_and_patches_only_given_fields() {
    use RoomKind::*;
    let forbidden = Err(Refusal::Forbidden("only owners and moderators may change the room"));
    // (room kind, viewer, expected)
    let cases = vec![
        (Group, "owner", Ok(())),
        (Group, "mod", Ok(())),
        (Group, "service", Ok(())),
        (Group, "mem", forbidden.clone()),
        (Public, "stranger", forbidden),
        (Group, "stranger", Err(Refusal::NotFound("no such room"))),
    ];
    for (kind, viewer, expected) in cases {
        let mut room = fixture(kind);
        let patch = RoomPatch { name: Some("renamed".into()), ..RoomPatch::default() };
        let got = room.apply(&who(viewer), RoomAction::Update(patch), &mut ids(), T1);
        let label = format!("{kind:?} as {viewer}");
        match expected {
            Ok(()) => {
                let out = got.unwrap();
                let view = (*room.view()).clone();
                let fields =
                    (view.name.as_str(), view.description.as_str(), view.attributes.as_str());
                assert_eq!(fields, ("renamed", "talk", r#"{"k":1}"#), "{label}");
                assert_eq!((view.created_ms, view.updated_ms), (T0, T1), "{label}");
                assert_eq!(answer(&out.reply), Answer::Room(view.clone()), "{label}");
                assert_eq!(seen(&out.events), vec![Seen::RoomUpdated(view)], "{label}");
            }
            Err(refusal) => {
                assert_eq!(got.unwrap_err(), refusal, "{label}");
                assert_eq!((room.name.as_str(), room.updated_ms), ("general", T0), "{label}");
            }
        }
    }
}

#[test]
fn update_sets_every_given_field_and_never_moves_updated_back() {
    let mut room = fixture(RoomKind::Group);
    let patch = RoomPatch {
        name: Some("n".into()),
        description: Some("d".into()),
        attributes: Some(r#"{"a":[]}"#.into()),
    };
    room.apply(&who("owner"), RoomAction::Update(patch), &mut ids(), T1).unwrap();
    assert_eq!(
        (room.name.as_str(), room.description.as_str(), room.attributes.as_str()),
        ("n", "d", r#"{"a":[]}"#)
    );
    let out =
        room.apply(&who("owner"), RoomAction::Update(RoomPatch::default()), &mut ids(), T1 - 50);
    assert_eq!(room.updated_ms, T1, "a clock behind the last change keeps updated_ms");
    assert_eq!(seen(&out.unwrap().events), vec![Seen::RoomUpdated((*room.view()).clone())]);
}

#[test]
fn delete_room_is_for_the_owner_and_services_only() {
    use RoomKind::*;
    let forbidden = Err(Refusal::Forbidden("only the owner may delete the room"));
    // (room kind, viewer, expected)
    let cases = vec![
        (Group, "owner", Ok(())),
        (Group, "service", Ok(())),
        (Group, "mod", forbidden.clone()),
        (Group, "mem", forbidden.clone()),
        (Public, "stranger", forbidden),
        (Group, "stranger", Err(Refusal::NotFound("no such room"))),
    ];
    for (kind, viewer, expected) in cases {
        let mut room = fixture(kind);
        let got = room.apply(&who(viewer), RoomAction::Delete, &mut ids(), T1);
        let label = format!("{kind:?} as {viewer}");
        match expected {
            Ok(()) => {
                let out = got.unwrap();
                assert!(out.deleted, "{label}");
                assert_eq!(seen(&out.events), vec![Seen::RoomDeleted(ROOM)], "{label}");
                assert_eq!(answer(&out.reply), Answer::Empty, "{label}");
                assert_eq!((out.joined, out.left), (None, None), "{label}");
            }
            Err(refusal) => assert_eq!(got.unwrap_err(), refusal, "{label}"),
        }
    }
}

#[test]
fn history_pages_by_after_before_and_limit_and_skips_deleted_messages() {
    let mut room = fixture(RoomKind::Public);
    let mut alloc = ids();
    for text in ["1", "2", "3", "4", "5", "6"] {
        post_ok(&mut room, &mut alloc, "mem", text);
    }
    assert_eq!(history_ids(&room), vec![ID1, ID2, ID3, ID4, ID5, ID6]);
    room.apply(&who("mem"), RoomAction::DeleteMessage(ID4), &mut alloc, T1).unwrap();
    // (name, after, before, limit, expected ids); ID4 is deleted.
    let cases = vec![
        ("everything", None, None, 50, vec![ID1, ID2, ID3, ID5, ID6]),
        ("no bounds: the oldest", None, None, 2, vec![ID1, ID2]),
        ("after: the next ones", Some(ID1), None, 2, vec![ID2, ID3]),
        ("after skips the deleted message", Some(ID3), None, 2, vec![ID5, ID6]),
        ("before alone: the newest before it", None, Some(ID6), 2, vec![ID3, ID5]),
        ("before alone, fewer than the limit", None, Some(ID3), 10, vec![ID1, ID2]),
        ("both: strictly between", Some(ID1), Some(ID6), 10, vec![ID2, ID3, ID5]),
        ("both, small limit: oldest after `after`", Some(ID1), Some(ID6), 1, vec![ID2]),
        ("after the newest", Some(ID6), None, 10, vec![]),
        ("before the oldest", None, Some(ID1), 10, vec![]),
        (
            "bounds between ids",
            Some(MessageId(ID2.get() + 1)),
            Some(MessageId(ID3.get() + 1)),
            10,
            vec![ID3],
        ),
        ("limit zero", None, None, 0, vec![]),
        ("empty range", Some(ID3), Some(ID2), 10, vec![]),
    ];
    for (name, after, before, limit, expected) in cases {
        for viewer in ["mem", "stranger", "service"] {
            let action = RoomAction::History { after, before, limit, bytes_max: usize::MAX };
            let out = room.apply(&who(viewer), action, &mut alloc, T1).unwrap();
            let label = format!("{name} as {viewer}");
            assert_eq!(answer(&out.reply), Answer::Messages(expected.clone()), "{label}");
            assert!(out.events.is_empty() && out.stored.is_none(), "{label}");
        }
    }
}

#[test]
fn history_pages_end_early_at_their_byte_bound_and_always_hold_one_message() {
    let mut room = fixture(RoomKind::Group);
    let mut alloc = ids();
    // Six messages of exactly `size` encoded bytes each.
    let texts: Vec<String> = (1..=6).map(|i| format!("{i}{}", "x".repeat(999))).collect();
    for text in &texts {
        post_ok(&mut room, &mut alloc, "mem", text);
    }
    let size = room.history[0].encoded_len();
    assert!(room.history.iter().all(|m| m.encoded_len() == size));
    // (name, after, before, limit, bytes_max, expected)
    let cases = vec![
        ("all fit", None, None, 10, 6 * size, Answer::Messages(vec![ID1, ID2, ID3, ID4, ID5, ID6])),
        ("forward, cut at two", None, None, 10, 2 * size + 1, Answer::Truncated(vec![ID1, ID2])),
        ("forward after", Some(ID2), None, 10, 2 * size, Answer::Truncated(vec![ID3, ID4])),
        ("the count ends first", None, None, 2, 3 * size, Answer::Messages(vec![ID1, ID2])),
        (
            "back from before: newest",
            None,
            Some(ID6),
            10,
            2 * size,
            Answer::Truncated(vec![ID4, ID5]),
        ),
        ("one always fits", None, None, 10, 1, Answer::Truncated(vec![ID1])),
        ("one always fits, back", None, Some(ID3), 10, 0, Answer::Truncated(vec![ID2])),
        ("exactly the last", Some(ID4), None, 10, 2 * size, Answer::Messages(vec![ID5, ID6])),
    ];
    for (name, after, before, limit, bytes_max, expected) in cases {
        let action = RoomAction::History { after, before, limit, bytes_max };
        let out = room.apply(&who("mem"), action, &mut alloc, T1).unwrap();
        assert_eq!(answer(&out.reply), expected, "{name}");
    }
}

#[test]
fn a_new_message_counts_every_field_against_its_bound() {
    let plain = NewMessage {
        author: uid("mem"),
        text: String::new(),
        parent_id: MessageId(0),
        client_message_id: None,
        kind: String::new(),
        attachments: String::new(),
        attributes: String::new(),
    };
    let base = plain.encoded_len();
    assert_eq!(base, crate::limits::MESSAGE_ENCODED_OVERHEAD_BYTES + 3);
    let kb = "k".repeat(1000);
    // (name, message, its encoded length)
    let cases = vec![
        ("text", NewMessage { text: kb.clone(), ..plain.clone() }, base + 1000),
        ("escaped text", NewMessage { text: "\n".repeat(500), ..plain.clone() }, base + 1000),
        (
            "attachments",
            NewMessage { attachments: format!("[\"{kb}\"]"), ..plain.clone() },
            base + 1004,
        ),
        (
            "attributes",
            NewMessage { attributes: format!("{{\"a\":\"{kb}\"}}"), ..plain.clone() },
            base + 1008,
        ),
        (
            "client id",
            NewMessage { client_message_id: Some(kb.clone()), ..plain.clone() },
            base + 1000,
        ),
        ("kind", NewMessage { kind: kb.clone(), ..plain.clone() }, base + 1000),
    ];
    for (name, message, len) in cases {
        assert_eq!(message.encoded_len(), len, "{name}");
        assert_eq!(message.check_size(len), Ok(()), "{name}");
        assert_eq!(message.check_size(len - 1), Err(Refusal::too_large(len, len - 1)), "{name}");
        assert_eq!(Refusal::too_large(len, len - 1).status(), 413);
    }
}

#[test]
fn an_edit_may_not_make_a_message_larger_than_its_bound() {
    let mut room = fixture(RoomKind::Group);
    let mut alloc = ids();
    let id = post_ok(&mut room, &mut alloc, "mem", "short");
    let base = room.history[0].encoded_len() - "short".len();
    let edit =
        |text: &str, bytes_max| RoomAction::Edit { message: id, text: text.into(), bytes_max };
    let refused = room.apply(&who("mem"), edit(&"y".repeat(101), base + 100), &mut alloc, T1);
    assert_eq!(refused.unwrap_err(), Refusal::too_large(base + 101, base + 100));
    assert_eq!(room.history[0].text, "short", "a refused edit changes nothing");
    // Escapes count: 50 quotes are 100 bytes of JSON.
    let quotes = "\"".repeat(50);
    room.apply(&who("mem"), edit(&quotes, base + 100), &mut alloc, T1).unwrap();
    assert_eq!(room.history[0].text, quotes);
    assert_eq!(room.history[0].encoded_len(), base + 100);
}

#[test]
fn history_of_a_group_is_hidden_from_non_members() {
    let mut room = fixture(RoomKind::Group);
    let mut alloc = ids();
    post_ok(&mut room, &mut alloc, "mem", "secret");
    let action = RoomAction::History { after: None, before: None, limit: 10, bytes_max: 1 << 20 };
    let got = room.apply(&who("stranger"), action, &mut alloc, T1);
    assert_eq!(got.unwrap_err(), Refusal::NotFound("no such room"));
}

#[test]
fn direct_room_members_post_and_a_third_member_is_refused() {
    let mut room = direct("a", "b");
    assert_eq!(roster(&room), roles(&[("a", Role::Owner), ("b", Role::Member)]));
    let mut alloc = ids();
    assert_eq!(post_ok(&mut room, &mut alloc, "b", "hi a"), ID1);
    assert_eq!(post_ok(&mut room, &mut alloc, "a", "hi b"), ID2);
    let outsider = post_as(&mut room, &mut alloc, "c", "c", "me too");
    assert_eq!(outsider.unwrap_err(), Refusal::NotFound("no such room"));
    let conflict = Refusal::Conflict("a direct room has at most two members".into());
    for viewer in ["a", "service"] {
        let add = RoomAction::PutMember { user: uid("c"), role: Role::Member };
        assert_eq!(
            room.apply(&who(viewer), add, &mut alloc, T1).unwrap_err(),
            conflict,
            "{viewer}"
        );
    }
    assert_eq!(roster(&room), roles(&[("a", Role::Owner), ("b", Role::Member)]));
}

#[test]
fn direct_room_with_one_member_left_takes_a_second_but_not_a_third() {
    let mut room = direct("a", "b");
    let mut alloc = ids();
    let left = room.apply(&who("b"), RoomAction::RemoveMember(uid("b")), &mut alloc, T1).unwrap();
    assert_eq!(left.left, Some((uid("b"), 0)));
    let add = |user: &str| RoomAction::PutMember { user: uid(user), role: Role::Member };
    let out = room.apply(&who("a"), add("c"), &mut alloc, T1).unwrap();
    assert_eq!(out.joined, Some(uid("c")));
    assert_eq!(roster(&room), roles(&[("a", Role::Owner), ("c", Role::Member)]));
    let third = room.apply(&who("a"), add("d"), &mut alloc, T1);
    assert_eq!(
        third.unwrap_err(),
        Refusal::Conflict("a direct room has at most two members".into())
    );
}

/// Edits and deletions of a message older than the window (`apply_detached`) follow the same
/// rules and give the same outcome as in the window.
#[test]
fn detached_messages_follow_the_window_rules() {
    let later = T1 + 5;
    let old = || Arc::new(message(ID1, Seq(1), "mem", "old", MessageId(0)));
    let edit = |text: &str| RoomAction::Edit { message: ID1, text: text.into(), bytes_max: 4096 };
    let mut room = fixture(RoomKind::Group);
    type Case = (&'static str, RoomAction, Result<(), Refusal>);
    let cases: Vec<Case> = vec![
        ("stranger", edit("x"), Err(Refusal::NotFound("no such room"))),
        ("stranger", RoomAction::DeleteMessage(ID1), Err(Refusal::NotFound("no such room"))),
        ("mod", edit("x"), Err(Refusal::Forbidden("only the author may edit a message"))),
        ("owner", edit("x"), Err(Refusal::Forbidden("only the author may edit a message"))),
        ("mem", edit("new"), Ok(())),
        ("service", edit("new"), Ok(())),
        ("mod", RoomAction::DeleteMessage(ID1), Ok(())),
        ("mem", RoomAction::DeleteMessage(ID1), Ok(())),
        ("service", RoomAction::DeleteMessage(ID1), Ok(())),
    ];
    for (viewer, action, expected) in cases {
        let mut m = old();
        let got = room.apply_detached(&who(viewer), action.clone(), &mut m, later, None);
        match (got, expected) {
            (Err(got), Err(want)) => assert_eq!(got, want, "{viewer} {action:?}"),
            (Ok(out), Ok(())) => {
                assert_eq!(out.stored.as_ref(), Some(&m), "{viewer} {action:?}");
                match action {
                    RoomAction::Edit { .. } => {
                        assert_eq!((m.text.as_str(), m.edited_ms), ("new", later));
                        assert!(matches!(&out.events[..], [Event::MessageUpdated(e)] if *e == m));
                    }
                    _ => {
                        assert_eq!(m.deleted_ms, Some(later));
                        assert!(m.text.is_empty());
                        let want = Event::MessageDeleted {
                            room: ROOM,
                            message: ID1,
                            parent_id: MessageId(0),
                        };
                        assert_eq!(format!("{:?}", out.events[0]), format!("{want:?}"));
                    }
                }
            }
            (got, want) => panic!("{viewer} {action:?}: {got:?}, expected {want:?}"),
        }
    }
    // Deleted, or of another room: no such message.
    let mut gone = old();
    Arc::make_mut(&mut gone).deleted_ms = Some(T1);
    let got = room.apply_detached(&who("mem"), edit("x"), &mut gone, later, None);
    assert_eq!(got.unwrap_err(), Refusal::NotFound("no such message"));
    let mut elsewhere = old();
    Arc::make_mut(&mut elsewhere).room = RoomId(8);
    let got = room.apply_detached(
        &who("mem"),
        RoomAction::DeleteMessage(ID1),
        &mut elsewhere,
        later,
        None,
    );
    assert_eq!(got.unwrap_err(), Refusal::NotFound("no such message"));
    // Too large after the edit: 413, as in the window.
    let mut m = old();
    let big = RoomAction::Edit { message: ID1, text: "x".repeat(5000), bytes_max: 4096 };
    assert!(matches!(
        room.apply_detached(&who("mem"), big, &mut m, later, None),
        Err(Refusal::MessageTooLarge(_))
    ));
    assert_eq!(m.text, "old", "a refused change leaves the message alone");
}
