//! Rooms and members: create, list, read, change, delete; add and remove members.

use std::collections::BTreeMap;
use std::rc::Rc;

use serde::Deserialize;
use serde_json::Value;

use crate::config::Config;
use crate::limits::{
    ROOM_ATTRIBUTES_BYTES_MAX, ROOM_DESCRIPTION_BYTES_MAX, ROOM_LIST_MAX, ROOM_NAME_BYTES_MAX,
};
use crate::model::action::{NewRoom, RoomPatch};
use crate::model::ids::{shard_of_pair, shard_of_room, shard_of_user};
use crate::model::room::Reply;
use crate::model::{Refusal, Role, RoomAction, RoomId, RoomKind, Seq, ShardId, UserId, Viewer};
use crate::shard::{Request, Response, Shard};

use super::json::{self, parse_body};
use super::{parse_id, reply_of, ApiError, ApiResult, Caller};

#[derive(Deserialize)]
struct CreateBody {
    name: Option<String>,
    kind: Option<String>,
    description: Option<String>,
    members: Option<Vec<Value>>,
    attributes: Option<Value>,
}

#[derive(Deserialize)]
struct PatchBody {
    name: Option<String>,
    description: Option<String>,
    attributes: Option<Value>,
}

#[derive(Deserialize)]
struct PutMemberBody {
    role: Option<String>,
}

fn check_text(value: &Option<String>, what: &str, max: usize) -> Result<(), ApiError> {
    match value {
        Some(v) if v.len() > max => {
            Err(ApiError::bad_request(format!("{what} is over {max} bytes")))
        }
        _ => Ok(()),
    }
}

/// Room attributes: a JSON object of at most [`ROOM_ATTRIBUTES_BYTES_MAX`] bytes, as text.
fn room_attributes(value: Option<&Value>) -> Result<String, ApiError> {
    let text = json::object_text(value, "attributes")?;
    if text.len() > ROOM_ATTRIBUTES_BYTES_MAX {
        return Err(ApiError::bad_request(format!(
            "attributes is over {ROOM_ATTRIBUTES_BYTES_MAX} bytes"
        )));
    }
    Ok(text)
}

fn parse_role(role: Option<&str>) -> Result<Role, ApiError> {
    match role {
        None => Ok(Role::Member),
        Some(r) => Role::parse(r)
            .ok_or_else(|| ApiError::bad_request("role is one of member, moderator, owner")),
    }
}

/// A member given as `"id"`, `42` or `{"user": "id", "role": "moderator"}`; a `role` that is
/// not a string (or null) is refused, never read as the default.
fn parse_member(value: &Value) -> Result<(UserId, Role), ApiError> {
    match value {
        Value::Object(map) => {
            let user = json::user_id(map.get("user").unwrap_or(&Value::Null))?;
            let role = match map.get("role") {
                None | Some(Value::Null) => None,
                Some(Value::String(role)) => Some(role.as_str()),
                Some(_) => return Err(ApiError::bad_request("a member's role must be a string")),
            };
            Ok((user, parse_role(role)?))
        }
        other => Ok((json::user_id(other)?, Role::Member)),
    }
}

fn room_reply(reply: Reply, status: u16) -> ApiResult {
    match reply {
        Reply::Room(view) => Ok((status, json::wrapped("room", json::room(&view)))),
        _ => Ok((204, Vec::new())),
    }
}

/// Decodes and checks the body of `POST /api/v1/rooms` into the room to create: `name` and
/// `description` within their byte limits, `kind` one of the four, at most
/// `config.members_per_room_max` `members` (413 past it), each a valid user id with a role,
/// `attributes` a JSON object within its limit. What `create` runs before asking an owner.
pub fn create_body(body: &[u8], config: &Config) -> Result<NewRoom, ApiError> {
    let body: CreateBody = parse_body(body)?;
    check_text(&body.name, "name", ROOM_NAME_BYTES_MAX)?;
    check_text(&body.description, "description", ROOM_DESCRIPTION_BYTES_MAX)?;
    let kind = match body.kind.as_deref() {
        None => RoomKind::Group,
        Some(k) => RoomKind::parse(k).ok_or_else(|| {
            ApiError::bad_request("kind is one of group, direct, public, announce")
        })?,
    };
    let members = body.members.unwrap_or_default();
    // Refused before the members are parsed, as the owner would (429 `limit_exceeded`).
    if members.len() > config.members_per_room_max {
        return Err(Refusal::Full("too many members").into());
    }
    let members = members.iter().map(parse_member).collect::<Result<Vec<_>, _>>()?;
    Ok(NewRoom {
        kind,
        name: body.name.unwrap_or_default(),
        description: body.description.unwrap_or_default(),
        attributes: room_attributes(body.attributes.as_ref())?,
        members,
    })
}

/// `POST /api/v1/rooms`: any caller may create a room; a user becomes its owner.
pub async fn create(shard: &Rc<Shard>, caller: &Caller, body: &[u8]) -> ApiResult {
    let spec = create_body(body, &shard.config)?;
    // A direct room is made (or found) by the owner of its pair: a pair has one direct room,
    // and asking again answers it with 200.
    let owner = spec
        .direct_pair(&caller.viewer)
        .map_or(shard.id, |(a, b)| shard_of_pair(&a, &b, shard.shard_count));
    match shard.call(owner, Request::CreateRoom { viewer: caller.viewer.clone(), spec }).await {
        Response::Existing(view) => room_reply(Reply::Room(view), 200),
        response => room_reply(reply_of(response)?, 201),
    }
}

/// Sends a room action to the room's owner.
pub async fn room_action(
    shard: &Rc<Shard>,
    caller: &Caller,
    id: &str,
    action: RoomAction,
) -> Result<Reply, ApiError> {
    let room: RoomId = parse_id(id, "room")?;
    let owner = shard_of_room(room, shard.shard_count);
    reply_of(shard.call(owner, Request::Room { room, viewer: caller.viewer.clone(), action }).await)
}

/// `GET /api/v1/rooms/{id}`.
pub async fn get(shard: &Rc<Shard>, caller: &Caller, id: &str) -> ApiResult {
    room_reply(room_action(shard, caller, id, RoomAction::Get).await?, 200)
}

/// Decodes and checks the body of `PATCH /api/v1/rooms/{id}`: `name`, `description` and
/// `attributes` (a JSON object) within their limits; absent ones stay `None`. What `update`
/// runs before asking the room's owner.
pub fn patch_body(body: &[u8]) -> Result<RoomPatch, ApiError> {
    let body: PatchBody = parse_body(body)?;
    check_text(&body.name, "name", ROOM_NAME_BYTES_MAX)?;
    check_text(&body.description, "description", ROOM_DESCRIPTION_BYTES_MAX)?;
    let attributes = match body.attributes {
        Some(a) => Some(room_attributes(Some(&a))?),
        None => None,
    };
    Ok(RoomPatch { name: body.name, description: body.description, attributes })
}

/// `PATCH /api/v1/rooms/{id}`.
pub async fn update(shard: &Rc<Shard>, caller: &Caller, id: &str, body: &[u8]) -> ApiResult {
    let patch = patch_body(body)?;
    room_reply(room_action(shard, caller, id, RoomAction::Update(patch)).await?, 200)
}

/// `DELETE /api/v1/rooms/{id}`.
pub async fn delete(shard: &Rc<Shard>, caller: &Caller, id: &str) -> ApiResult {
    room_action(shard, caller, id, RoomAction::Delete).await?;
    Ok((204, Vec::new()))
}

/// Decodes and checks `PUT /api/v1/rooms/{id}/members/{user}`: the decoded path segment `user`
/// (the user id rule) and the body's optional `role` (`member` when absent). What
/// `put_member` runs before asking the room's owner.
pub fn member_body(user: &str, body: &[u8]) -> Result<(UserId, Role), ApiError> {
    let body: PutMemberBody = parse_body(body)?;
    let user = json::user_id_text(user)?;
    Ok((user, parse_role(body.role.as_deref())?))
}

/// `PUT /api/v1/rooms/{id}/members/{user}` with an optional `{"role": …}`.
pub async fn put_member(
    shard: &Rc<Shard>,
    caller: &Caller,
    id: &str,
    user: &str,
    body: &[u8],
) -> ApiResult {
    let (user, role) = member_body(user, body)?;
    room_reply(room_action(shard, caller, id, RoomAction::PutMember { user, role }).await?, 200)
}

/// `DELETE /api/v1/rooms/{id}/members/{user}`.
pub async fn remove_member(shard: &Rc<Shard>, caller: &Caller, id: &str, user: &str) -> ApiResult {
    let user = json::user_id_text(user)?;
    room_action(shard, caller, id, RoomAction::RemoveMember(user)).await?;
    Ok((204, Vec::new()))
}

/// `GET /api/v1/rooms`: a user's rooms, or every room (up to 1000) for a service.
pub async fn list(shard: &Rc<Shard>, caller: &Caller) -> ApiResult {
    let mut by_owner: BTreeMap<ShardId, Option<Vec<RoomId>>> = BTreeMap::new();
    match &caller.viewer {
        Viewer::Service => ShardId::all(shard.shard_count).for_each(|s| {
            by_owner.insert(s, None);
        }),
        Viewer::User(user) => {
            let owner = shard_of_user(user, shard.shard_count);
            let Response::RoomIds(ids) =
                shard.call(owner, Request::UserRooms { user: user.clone() }).await
            else {
                return Err(ApiError {
                    status: 503,
                    code: "unavailable",
                    message: "user owner did not answer".into(),
                });
            };
            for id in ids {
                by_owner
                    .entry(shard_of_room(id, shard.shard_count))
                    .or_insert_with(|| Some(Vec::new()))
                    .get_or_insert_with(Vec::new)
                    .push(id);
            }
        }
    }
    let mut rooms = Vec::new();
    for (owner, ids) in by_owner {
        let request = Request::RoomViews {
            rooms: ids,
            viewer: caller.viewer.clone(),
            limit: ROOM_LIST_MAX,
            summary: false,
        };
        match shard.call(owner, request).await {
            Response::Rooms(views) => rooms.extend(views),
            Response::Refused(refusal) => return Err(refusal.into()),
            _ => {}
        }
    }
    rooms.sort_unstable_by_key(|r| r.id);
    rooms.truncate(ROOM_LIST_MAX);
    let rooms: Vec<_> = rooms.iter().map(|r| json::room(r)).collect();
    Ok((200, json::wrapped("rooms", rooms)))
}

/// `POST /api/v1/rooms/{id}/ack`: the osu! chat keepalive; a member of a public room keeps
/// receiving its messages on osu! sockets for 60 s. Acks for the calling user (204); 403 for a
/// non-member of a public room, 404 for an unknown or invisible room.
pub async fn ack(shard: &Rc<Shard>, caller: &Caller, id: &str) -> ApiResult {
    let room: RoomId = parse_id(id, "room")?;
    let owner = shard_of_room(room, shard.shard_count);
    let user = caller.user.clone();
    reply_of(shard.call(owner, Request::RoomAck { room, user }).await)?;
    Ok((204, Vec::new()))
}

#[derive(Deserialize)]
struct MarkBody {
    /// Mark every message up to this per-room seq (default: the newest).
    seq: Option<u64>,
    /// The member marking, for service tokens (users mark for themselves).
    user: Option<Value>,
}

/// Decodes and checks the body of `POST /api/v1/rooms/{id}/read` and `/delivered` for `viewer`:
/// the member marking (a user marks for itself; a service must name a valid `"user"`) and the
/// optional `seq`. What `mark` runs before asking the room's owner.
pub fn mark_body(body: &[u8], viewer: &Viewer) -> Result<(UserId, Option<Seq>), ApiError> {
    let body: MarkBody = parse_body(body)?;
    let user = super::acting_user(viewer, body.user.as_ref())?;
    Ok((user, body.seq.map(Seq)))
}

/// `POST /api/v1/rooms/{id}/read` and `/delivered` with an optional `{"seq": N}`: the caller's
/// cumulative receipt (marking N marks every earlier message; read implies delivered). A
/// service names the member with `"user"` (a user may name only itself). Answers the receipt
/// as it now stands.
pub async fn mark(
    shard: &Rc<Shard>,
    caller: &Caller,
    id: &str,
    body: &[u8],
    read: bool,
) -> ApiResult {
    let room: RoomId = parse_id(id, "room")?;
    let (user, seq) = mark_body(body, &caller.viewer)?;
    let owner = shard_of_room(room, shard.shard_count);
    match shard.call(owner, Request::Mark { room, user, read, seq }).await {
        Response::Receipt { seq, at_ms, missed, .. } => {
            let kind = if read { "read" } else { "delivered" };
            let receipt = serde_json::json!({ "room_id": room, "kind": kind, "seq": seq, "at_ms": at_ms, "unread": missed });
            Ok((200, json::body(&serde_json::json!({ "receipt": receipt }))))
        }
        Response::Refused(refusal) => Err(refusal.into()),
        _ => Err(ApiError {
            status: 500,
            code: "internal",
            message: "unexpected owner answer".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(value: Value) -> Vec<u8> {
        value.to_string().into_bytes()
    }

    /// `{"a":"xx…"}` of exactly `len` bytes of JSON text.
    fn object_of_len(len: usize) -> Value {
        json!({ "a": "x".repeat(len - r#"{"a":""}"#.len()) })
    }

    #[test]
    fn room_bodies_are_accepted_at_their_limits_and_refused_past_them() {
        let config = Config { members_per_room_max: 2, ..Config::default() };
        let at = json!({
            "name": "n".repeat(ROOM_NAME_BYTES_MAX),
            "description": "d".repeat(ROOM_DESCRIPTION_BYTES_MAX),
            "attributes": object_of_len(ROOM_ATTRIBUTES_BYTES_MAX),
            "members": ["bob", "carol"],
        });
        let room = create_body(&body(at.clone()), &config).expect("at every limit");
        assert_eq!(room.attributes.len(), ROOM_ATTRIBUTES_BYTES_MAX);
        assert_eq!(room.members.len(), 2);
        let patch = patch_body(&body(at.clone())).expect("at every limit");
        assert_eq!(patch.attributes.map(|a| a.len()), Some(ROOM_ATTRIBUTES_BYTES_MAX));

        let past = [
            ("name", json!("n".repeat(ROOM_NAME_BYTES_MAX + 1))),
            ("description", json!("d".repeat(ROOM_DESCRIPTION_BYTES_MAX + 1))),
            ("attributes", object_of_len(ROOM_ATTRIBUTES_BYTES_MAX + 1)),
        ];
        for (field, value) in past {
            let mut over = at.clone();
            over[field] = value;
            let e = create_body(&body(over.clone()), &config).expect_err(field);
            assert_eq!(e.status, 400, "{field}");
            let e = patch_body(&body(over)).expect_err(field);
            assert_eq!(e.status, 400, "{field}");
        }
        let mut crowded = at;
        crowded["members"] = json!(["bob", "carol", "dave"]);
        let e = create_body(&body(crowded), &config).expect_err("three members");
        assert_eq!((e.status, e.code), (429, "limit_exceeded"));
    }

    #[test]
    fn members_decode_and_wrong_types_are_refused() {
        let ok: Vec<(Value, &str, Role)> = vec![
            (json!("bob"), "bob", Role::Member),
            (json!(1001), "1001", Role::Member),
            (json!({"user": "bob"}), "bob", Role::Member),
            (json!({"user": "bob", "role": null}), "bob", Role::Member),
            (json!({"user": 7, "role": "moderator"}), "7", Role::Moderator),
            (json!("café"), "café", Role::Member),
        ];
        for (value, user, role) in ok {
            let (u, r) = parse_member(&value).unwrap_or_else(|e| panic!("{value}: {e:?}"));
            assert_eq!((u.as_str(), r), (user, role), "{value}");
        }
        for bad in [
            json!({"user": "bob", "role": 5}),
            json!({"user": "bob", "role": true}),
            json!({"user": "bob", "role": "king"}),
            json!({"role": "member"}),
            json!(-1),
            json!(1.5),
            json!(true),
            json!(["bob"]),
            json!("a/b"),
            json!(""),
            json!(".."),
            json!("bob\u{0}"),
        ] {
            let e = parse_member(&bad).expect_err(&bad.to_string());
            assert_eq!((e.status, e.code), (400, "invalid_request"), "{bad}");
        }
    }
}
