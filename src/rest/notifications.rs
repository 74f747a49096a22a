//! Notifications: a backend posts one to a user; a user marks its notifications read. Both go
//! to the user's owner shard, which stores them and tells the user's osu! connections.

use std::rc::Rc;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::limits::{
    NOTIFICATION_DETAILS_BYTES_MAX, NOTIFICATION_NAME_BYTES_MAX, NOTIFICATION_READ_IDS_MAX,
};
use crate::model::ids::shard_of_user;
use crate::model::{Notification, UserId, Viewer};
use crate::shard::{Request, Response, Shard};

use super::json::{self, parse_body};
use super::{ApiError, ApiResult, Caller};

#[derive(Deserialize)]
struct NewBody {
    name: Option<String>,
    category: Option<String>,
    object_type: Option<String>,
    object_id: Option<u64>,
    source_user_id: Option<Value>,
    details: Option<Value>,
}

#[derive(Deserialize)]
struct ReadBody {
    ids: Option<Vec<u64>>,
    user: Option<Value>,
}

fn short(value: Option<String>, what: &str, required: bool) -> Result<String, ApiError> {
    match value {
        None if required => Err(ApiError::bad_request(format!("{what} is required"))),
        None => Ok(String::new()),
        Some(v) if v.len() > NOTIFICATION_NAME_BYTES_MAX => Err(ApiError::bad_request(format!(
            "{what} is over {NOTIFICATION_NAME_BYTES_MAX} bytes"
        ))),
        Some(v) => Ok(v),
    }
}

fn notifications_of(response: Response) -> Result<Vec<Notification>, ApiError> {
    match response {
        Response::Notifications(list) => Ok(list),
        Response::Refused(refusal) => Err(refusal.into()),
        _ => Err(ApiError { status: 500, code: "internal", message: "unexpected answer".into() }),
    }
}

/// Decodes and checks `POST /api/v1/users/{user}/notifications`: the decoded path segment
/// `user` (the user id rule), the body's required `name` and `object_type` and optional
/// `category` (each at most [`NOTIFICATION_NAME_BYTES_MAX`] bytes; `category` defaults to
/// `object_type`), `details` (a JSON object within [`NOTIFICATION_DETAILS_BYTES_MAX`]) and
/// `source_user_id` (a valid user id). The notification to store (id and time still 0): what
/// `create` runs before asking the user's owner.
pub fn notification_body(user: &str, body: &[u8]) -> Result<Notification, ApiError> {
    let user = json::user_id_text(user)?;
    let body: NewBody = parse_body(body)?;
    let name = short(body.name, "name", true)?;
    let object_type = short(body.object_type, "object_type", true)?;
    let category = short(body.category, "category", false)?;
    let category = if category.is_empty() { object_type.clone() } else { category };
    let details = json::object_text(body.details.as_ref(), "details")?;
    if details.len() > NOTIFICATION_DETAILS_BYTES_MAX {
        return Err(ApiError::bad_request(format!(
            "details is over {NOTIFICATION_DETAILS_BYTES_MAX} bytes"
        )));
    }
    let source_user = match body.source_user_id {
        None | Some(Value::Null) => None,
        Some(v) => Some(json::user_id(&v)?),
    };
    Ok(Notification {
        id: 0,
        user,
        name,
        category,
        object_type,
        object_id: body.object_id.unwrap_or(0),
        source_user,
        details,
        created_ms: 0,
        read: false,
    })
}

/// `POST /api/v1/users/{user}/notifications` (service only): `{"name", "object_type",
/// "object_id", "source_user_id"?, "details"?, "category"?}` → 201 `{"notification": …}`.
pub async fn create(shard: &Rc<Shard>, caller: &Caller, user: &str, body: &[u8]) -> ApiResult {
    if caller.viewer != Viewer::Service {
        return Err(ApiError {
            status: 403,
            code: "forbidden",
            message: "only a service posts notifications".into(),
        });
    }
    let notification = notification_body(user, body)?;
    let user = notification.user.clone();
    let owner = shard_of_user(&user, shard.shard_count);
    let request = Request::Notify { notification: Box::new(notification) };
    let created = notifications_of(shard.call(owner, request).await)?;
    let Some(n) = created.first() else {
        return Err(ApiError { status: 500, code: "internal", message: "nothing created".into() });
    };
    Ok((201, json::body(&json!({ "notification": n.to_json() }))))
}

/// Decodes and checks the body of `POST /api/v1/notifications/read` for `viewer`: whose
/// notifications (a user's own — naming another is 403; a service must name a valid
/// `"user"`) and the required `ids`, at most [`NOTIFICATION_READ_IDS_MAX`]. What `read` runs
/// before asking the user's owner.
pub fn read_body(body: &[u8], viewer: &Viewer) -> Result<(UserId, Vec<u64>), ApiError> {
    let body: ReadBody = parse_body(body)?;
    let user: UserId = super::acting_user(viewer, body.user.as_ref())?;
    let ids = body.ids.ok_or_else(|| ApiError::bad_request("ids is required"))?;
    if ids.len() > NOTIFICATION_READ_IDS_MAX {
        return Err(ApiError::bad_request(format!("at most {NOTIFICATION_READ_IDS_MAX} ids")));
    }
    Ok((user, ids))
}

/// `POST /api/v1/notifications/read` `{"ids": [...]}` (a service adds `"user"`) → 200
/// `{"read": [ids marked now]}`.
pub async fn read(shard: &Rc<Shard>, caller: &Caller, body: &[u8]) -> ApiResult {
    let (user, ids) = read_body(body, &caller.viewer)?;
    let owner = shard_of_user(&user, shard.shard_count);
    let read = notifications_of(shard.call(owner, Request::ReadNotifications { user, ids }).await)?;
    let ids: Vec<u64> = read.iter().map(|n| n.id).collect();
    Ok((200, json::body(&json!({ "read": ids }))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: Value) -> Vec<u8> {
        value.to_string().into_bytes()
    }

    #[test]
    fn notification_bodies_are_accepted_at_their_limits_and_refused_past_them() {
        let name = "n".repeat(NOTIFICATION_NAME_BYTES_MAX);
        let details =
            json!({ "a": "x".repeat(NOTIFICATION_DETAILS_BYTES_MAX - r#"{"a":""}"#.len()) });
        let at = json!({
            "name": name, "category": name, "object_type": name, "object_id": 7, "details": details,
        });
        let n = notification_body("1001", &body(at.clone())).expect("at every limit");
        assert_eq!((n.user.as_str(), n.object_id), ("1001", 7));
        assert_eq!(n.details.len(), NOTIFICATION_DETAILS_BYTES_MAX);
        for field in ["name", "category", "object_type", "details"] {
            let mut over = at.clone();
            over[field] = if field == "details" {
                json!({ "a": "x".repeat(NOTIFICATION_DETAILS_BYTES_MAX + 1 - r#"{"a":""}"#.len()) })
            } else {
                json!("n".repeat(NOTIFICATION_NAME_BYTES_MAX + 1))
            };
            let e = notification_body("1001", &body(over)).expect_err(field);
            assert_eq!(e.status, 400, "{field}");
        }
    }

    #[test]
    fn read_bodies_take_at_most_the_id_limit_and_a_service_names_the_user() {
        let alice = Viewer::User(UserId::new("alice"));
        let ids: Vec<u64> = (0..NOTIFICATION_READ_IDS_MAX as u64).collect();
        let (user, read) =
            read_body(&body(json!({ "ids": ids, "user": "alice" })), &alice).expect("at the limit");
        assert_eq!((user.as_str(), read.len()), ("alice", NOTIFICATION_READ_IDS_MAX));
        // A user acts for itself: naming another is 403.
        let e = read_body(&body(json!({ "ids": [1], "user": "bob" })), &alice).expect_err("other");
        assert_eq!(e.status, 403);
        let more: Vec<u64> = (0..=NOTIFICATION_READ_IDS_MAX as u64).collect();
        let e = read_body(&body(json!({ "ids": more })), &alice).expect_err("past the limit");
        assert_eq!(e.status, 400);
        let (user, _) = read_body(&body(json!({ "ids": [1], "user": "bob" })), &Viewer::Service)
            .expect("named");
        assert_eq!(user.as_str(), "bob");
        let e = read_body(&body(json!({ "ids": [1] })), &Viewer::Service).expect_err("unnamed");
        assert_eq!(e.status, 400);
    }
}
