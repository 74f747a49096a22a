//! Logging a session out: `DELETE /api/v1/sessions/{sid}`. The user's owner stores the
//! revocation and broadcasts it; every shard then refuses the session's tokens and closes its
//! connections (osu! ones get `{"event":"logout"}` first).

use std::rc::Rc;

use crate::http::query::query_param;
use crate::limits::SESSION_ID_BYTES_MAX;
use crate::model::ids::shard_of_user;
use crate::model::Viewer;
use crate::shard::{Request, Shard};

use super::json;
use super::{reply_of, ApiError, ApiResult, Caller};

/// `DELETE /api/v1/sessions/{sid}`: a user logs out one of its own sessions (its current one,
/// or one its connections showed the server); a service logs out any (`?user=` names whose).
pub async fn delete(
    shard: &Rc<Shard>,
    caller: &Caller,
    sid: &str,
    query: Option<&str>,
) -> ApiResult {
    if sid.is_empty() || sid.len() > SESSION_ID_BYTES_MAX {
        return Err(ApiError { status: 404, code: "not_found", message: "no such session".into() });
    }
    let (user, expires_at, known_only) = match &caller.viewer {
        Viewer::Service => {
            let user = query.and_then(|q| query_param(q, "user")).ok_or_else(|| {
                ApiError::bad_request("a service names the session's user: ?user=")
            })?;
            (json::user_id_text(&user)?, None, false)
        }
        Viewer::User(user) if caller.session.as_deref() == Some(sid) => {
            (user.clone(), Some(caller.expires_at), false)
        }
        Viewer::User(user) => (user.clone(), None, true),
    };
    let owner = shard_of_user(&user, shard.shard_count);
    let request = Request::RevokeSession { user, sid: sid.to_string(), expires_at, known_only };
    reply_of(shard.call(owner, request).await)?;
    // The owner told every shard; apply it here too so this caller's next request (on this
    // shard) is refused even before that command is handled.
    shard.revoke_local(sid, expires_at.unwrap_or(crate::auth::now_unix_s() + 60));
    Ok((204, Vec::new()))
}
