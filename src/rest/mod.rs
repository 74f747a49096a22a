//! The REST API on the shard loops: routing `(method, path)` to handlers, bearer auth, and
//! turning every outcome into a response with a JSON body (`{"error":{"code","message"}}` on
//! failure). Handlers build core actions and send them to the owner shard.

pub mod console;
pub mod json;
pub mod messages;
pub mod notifications;
pub mod ops;
pub mod rooms;
pub mod sessions;

use std::rc::Rc;

use bytes::Bytes;

use crate::http::head::{Method, RequestHead};
use crate::http::query::{bearer, path_segment};
use crate::http::response;
use crate::model::room::Reply;
use crate::model::{Refusal, UserId, Viewer};
use crate::shard::{Response, Shard};

/// A failed request: status, code and message for the JSON error body.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Machine-readable code.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

impl ApiError {
    /// A 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError { status: 400, code: "invalid_request", message: message.into() }
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        ApiError { status: refusal.status(), code: refusal.code(), message: refusal.message() }
    }
}

/// What a handler returns: status and JSON body, or an error.
pub type ApiResult = Result<(u16, Vec<u8>), ApiError>;

/// Who is calling, from the bearer token.
pub struct Caller {
    /// The viewer the model checks permissions for.
    pub viewer: Viewer,
    /// The token's subject (a service's own id for services).
    pub user: UserId,
    /// The token's session (`sid`, else `jti`).
    pub session: Option<String>,
    /// The token's `exp`, unix s.
    pub expires_at: u64,
}

/// Every path of the HTTP API (`{…}` is a path parameter) with the methods it answers: the
/// `Allow` header of its 405 and the list `GET /` shows. `route` below answers exactly these.
pub const ROUTES: &[(&str, &str)] = &[
    ("/", "GET"),
    ("/healthz", "GET"),
    ("/metrics", "GET"),
    ("/api/v1/openapi.json", "GET"),
    ("/console/token", "POST"),
    ("/console/{file}", "GET"),
    ("/api/v1/rooms", "GET, POST"),
    ("/api/v1/rooms/{id}", "GET, PATCH, DELETE"),
    ("/api/v1/rooms/{id}/members/{user}", "PUT, DELETE"),
    ("/api/v1/rooms/{id}/messages", "GET, POST"),
    ("/api/v1/rooms/{id}/read", "POST"),
    ("/api/v1/rooms/{id}/delivered", "POST"),
    ("/api/v1/rooms/{id}/ack", "POST"),
    ("/api/v1/messages/{id}", "PATCH, DELETE"),
    ("/api/v1/users/{user}/notifications", "POST"),
    ("/api/v1/notifications/read", "POST"),
    ("/api/v1/sessions/{sid}", "DELETE"),
];

/// The methods [`ROUTES`] lists for a path's `segments`.
fn allowed_methods(segments: &[&str]) -> Option<&'static str> {
    ROUTES.iter().find_map(|&(pattern, methods)| {
        let pattern: Vec<&str> = pattern.trim_matches('/').split('/').collect();
        let matches = pattern.len() == segments.len()
            && pattern.iter().zip(segments).all(|(p, s)| p.starts_with('{') || p == s);
        matches.then_some(methods)
    })
}

/// Answers one request. Path segments are percent-decoded after the split on `/` (a
/// malformed escape or non-UTF-8 result → 400), so `%2F` never separates segments.
pub async fn handle(shard: &Rc<Shard>, head: &RequestHead, body: Bytes, keep_alive: bool) -> Bytes {
    let decoded: Result<Vec<_>, _> =
        head.path.trim_matches('/').split('/').map(path_segment).collect();
    let decoded = match decoded {
        Ok(decoded) => decoded,
        Err(e) => {
            let e = ApiError::bad_request(format!("bad path: {e}"));
            return response::json_error(e.status, e.code, &e.message, keep_alive);
        }
    };
    let segments: Vec<&str> = decoded.iter().map(|s| s.as_ref()).collect();
    if head.method == Method::Get {
        if let Some(page) = console::serve(head, &segments, keep_alive) {
            return page;
        }
    }
    let result = route(shard, head, &segments, &body).await;
    match result {
        Err(e) if e.status == 405 => response::json_error_with_headers(
            405,
            e.code,
            &e.message,
            keep_alive,
            &[("Allow", allowed_methods(&segments).unwrap_or("GET"))],
        ),
        Ok((204, _)) => response::response(204, None, &[], keep_alive, &[]),
        Ok((status, body)) if segments == ["metrics"] => {
            response::response(status, Some("text/plain; version=0.0.4"), &body, keep_alive, &[])
        }
        // `/` is the console to a browser (`console::serve`) and this JSON to other clients.
        Ok((status, body)) if segments == [""] => response::response(
            status,
            Some("application/json"),
            &body,
            keep_alive,
            &[("Vary", "Accept")],
        ),
        Ok((status, body)) => {
            response::response(status, Some("application/json"), &body, keep_alive, &[])
        }
        Err(e) if e.status == 401 => response::json_error_with_headers(
            401,
            e.code,
            &e.message,
            keep_alive,
            &[("WWW-Authenticate", "Bearer")],
        ),
        // Unavailable (overload, a failing store, a node of the cluster down): retry soon.
        Err(e) if e.status == 503 => response::json_error_with_headers(
            503,
            e.code,
            &e.message,
            keep_alive,
            &[("Retry-After", "1")],
        ),
        Err(e) => response::json_error(e.status, e.code, &e.message, keep_alive),
    }
}

async fn route(shard: &Rc<Shard>, head: &RequestHead, segments: &[&str], body: &[u8]) -> ApiResult {
    use Method::{Delete, Get, Patch, Post, Put};
    let method = head.method;
    let method_not_allowed = || not_allowed(segments);
    match segments {
        [""] => only_get(method, segments, || ops::index(shard)),
        ["healthz"] => only_get(method, segments, || ops::health(shard)),
        ["metrics"] => only_get(method, segments, || ops::metrics(shard)),
        ["api", "v1", "openapi.json"] => only_get(method, segments, ops::openapi),
        ["console", "token"] if method == Method::Post => console::mint(shard, body),
        ["console", "token"] => Err(not_allowed(segments)),
        ["console", _] => only_get(method, segments, || {
            Err(ApiError {
                status: 404,
                code: "not_found",
                message: format!("no console file {}", head.path),
            })
        }),
        ["api", "v1", "events"] | ["notifications", ..] | ["websocket"] => Err(ApiError {
            status: 426,
            code: "upgrade_required",
            message: "this is a WebSocket endpoint: send an upgrade request".into(),
        }),
        ["api", "v1", rest @ ..] => {
            let caller = caller(shard, head)?;
            let writes = matches!(method, Post | Put | Patch | Delete);
            if writes && caller.viewer != Viewer::Service {
                take_user_action(shard, &caller.user)?;
            }
            match (rest, method) {
                (["rooms"], Post) => rooms::create(shard, &caller, body).await,
                (["rooms"], Get) => rooms::list(shard, &caller).await,
                (["rooms"], _) => Err(method_not_allowed()),
                (["rooms", id], Get) => rooms::get(shard, &caller, id).await,
                (["rooms", id], Patch) => rooms::update(shard, &caller, id, body).await,
                (["rooms", id], Delete) => rooms::delete(shard, &caller, id).await,
                (["rooms", _], _) => Err(method_not_allowed()),
                (["rooms", id, "members", user], Put) => {
                    rooms::put_member(shard, &caller, id, user, body).await
                }
                (["rooms", id, "members", user], Delete) => {
                    rooms::remove_member(shard, &caller, id, user).await
                }
                (["rooms", _, "members", _], _) => Err(method_not_allowed()),
                (["rooms", id, "messages"], Post) => messages::post(shard, &caller, id, body).await,
                (["rooms", id, "messages"], Get) => {
                    messages::history(shard, &caller, id, head.query.as_deref()).await
                }
                (["rooms", _, "messages"], _) => Err(method_not_allowed()),
                (["messages", id], Patch) => messages::edit(shard, &caller, id, body).await,
                (["messages", id], Delete) => messages::delete(shard, &caller, id).await,
                (["messages", _], _) => Err(method_not_allowed()),
                (["rooms", id, "ack"], Post) => rooms::ack(shard, &caller, id).await,
                (["rooms", id, "read"], Post) => rooms::mark(shard, &caller, id, body, true).await,
                (["rooms", id, "delivered"], Post) => {
                    rooms::mark(shard, &caller, id, body, false).await
                }
                (["rooms", _, "read" | "delivered"], _) => Err(method_not_allowed()),
                (["rooms", _, "ack"], _) => Err(method_not_allowed()),
                (["users", user, "notifications"], Post) => {
                    notifications::create(shard, &caller, user, body).await
                }
                (["users", _, "notifications"], _) => Err(method_not_allowed()),
                (["notifications", "read"], Post) => {
                    notifications::read(shard, &caller, body).await
                }
                (["notifications", "read"], _) => Err(method_not_allowed()),
                (["sessions", sid], Delete) => {
                    sessions::delete(shard, &caller, sid, head.query.as_deref()).await
                }
                (["sessions", _], _) => Err(method_not_allowed()),
                (
                    _,
                    Put
                    | Get
                    | Post
                    | Patch
                    | Delete
                    | Method::Head
                    | Method::Options
                    | Method::Other,
                ) => Err(ApiError {
                    status: 404,
                    code: "not_found",
                    message: format!("no route for {}", head.path),
                }),
            }
        }
        _ => Err(ApiError {
            status: 404,
            code: "not_found",
            message: format!("no route for {}", head.path),
        }),
    }
}

fn only_get(method: Method, segments: &[&str], f: impl FnOnce() -> ApiResult) -> ApiResult {
    if method == Method::Get {
        f()
    } else {
        Err(not_allowed(segments))
    }
}

/// A 405 naming the path's methods (`handle` adds them as `Allow`).
fn not_allowed(segments: &[&str]) -> ApiError {
    ApiError {
        status: 405,
        code: "method_not_allowed",
        message: format!("allowed methods: {}", allowed_methods(segments).unwrap_or("GET")),
    }
}

fn caller(shard: &Shard, head: &RequestHead) -> Result<Caller, ApiError> {
    let identity = shard.authenticate_cached(bearer(head)).map_err(|message| ApiError {
        status: 401,
        code: "unauthorized",
        message,
    })?;
    let user = UserId::new(&identity.user);
    let viewer = if identity.is_service { Viewer::Service } else { Viewer::User(user.clone()) };
    Ok(Caller { viewer, user, session: identity.session, expires_at: identity.expires_at })
}

/// Whom a call that names a `"user"` in its body acts for: a service must name one; a user
/// acts for itself and may name only itself (another valid id → 403, as for a message's
/// `author`). A named id that breaks the user id rule → 400.
pub fn acting_user(viewer: &Viewer, named: Option<&serde_json::Value>) -> Result<UserId, ApiError> {
    let named = named.map(json::user_id).transpose()?;
    match (viewer, named) {
        (Viewer::Service, Some(user)) => Ok(user),
        (Viewer::Service, None) => Err(ApiError::bad_request("a service names the \"user\"")),
        (Viewer::User(me), Some(user)) if &user != me => Err(ApiError {
            status: 403,
            code: "forbidden",
            message: "users act for themselves".into(),
        }),
        (Viewer::User(me), _) => Ok(me.clone()),
    }
}

/// Takes one of `user`'s actions on this shard (`actions_per_second`), or refuses with 429
/// `rate_limited`.
pub fn take_user_action(shard: &Shard, user: &UserId) -> Result<(), ApiError> {
    if shard.take_user_action(user) {
        return Ok(());
    }
    Err(ApiError {
        status: 429,
        code: "rate_limited",
        message: format!(
            "over {} actions per second (burst {}); slow down",
            shard.config.actions_per_second, shard.config.actions_burst
        ),
    })
}

/// Parses a numeric path segment into an id.
pub fn parse_id<Id: From<u64>>(segment: &str, what: &'static str) -> Result<Id, ApiError> {
    segment.parse::<u64>().map(Id::from).map_err(|_| ApiError {
        status: 404,
        code: "not_found",
        message: format!("no such {what}: {segment}"),
    })
}

/// Unwraps an owner's answer into its reply.
pub fn reply_of(response: Response) -> Result<Reply, ApiError> {
    match response {
        Response::Done(reply) => Ok(reply),
        Response::Refused(refusal) => Err(refusal.into()),
        Response::Existing(view) => Ok(Reply::Room(view)),
        Response::RoomIds(_)
        | Response::Rooms(_)
        | Response::Notifications(_)
        | Response::Receipt { .. }
        | Response::Users(_)
        | Response::PairHolder(_) => Err(ApiError {
            status: 500,
            code: "internal",
            message: "unexpected owner answer".into(),
        }),
    }
}
