//! Messages: post, history, edit, delete.

use std::rc::Rc;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::http::query::query_param;
use crate::limits::{
    CLIENT_MESSAGE_ID_BYTES_MAX, HISTORY_PAGE_DEFAULT, HISTORY_PAGE_MAX, MESSAGE_KIND_BYTES_MAX,
};
use crate::model::action::NewMessage;
use crate::model::ids::shard_of_message;
use crate::model::room::{Page, Reply};
use crate::model::{MessageId, RoomAction, Viewer};
use crate::shard::{Request, Shard};

use super::json::{self, parse_body};
use super::rooms::room_action;
use super::{parse_id, reply_of, ApiError, ApiResult, Caller};

#[derive(Deserialize)]
struct EditBody {
    #[serde(alias = "content")]
    text: Option<String>,
}

fn check_message_text(config: &Config, text: Option<String>) -> Result<String, ApiError> {
    let text = text.ok_or_else(|| ApiError::bad_request("text is required"))?;
    if text.len() > config.message_bytes_max {
        let message = format!("text is over {} bytes", config.message_bytes_max);
        return Err(ApiError { status: 413, code: "message_too_large", message });
    }
    Ok(text)
}

fn message_reply(reply: Reply, status: u16) -> ApiResult {
    match reply {
        Reply::Message(m) => Ok((status, json::wrapped("message", json::message(&m)))),
        _ => Ok((204, Vec::new())),
    }
}

/// Decodes and checks the body of `POST /api/v1/rooms/{id}/messages` from `caller` into the
/// message to post: `text` required and within `config.message_bytes_max` (413), the author
/// (the caller; a service may name any valid `author`, a user only itself: 403),
/// `client_message_id` and `kind` within their limits, attachments a JSON array, attributes a
/// JSON object, and the whole within `config.stored_message_bytes_max` (413). What `post` runs
/// before asking the room's owner.
pub fn message_body(body: &[u8], caller: &Caller, config: &Config) -> Result<NewMessage, ApiError> {
    let body = json::post_body(body)?;
    let text = check_message_text(config, body.text)?;
    let author = match (&caller.viewer, &body.author) {
        (Viewer::Service, Some(author)) => json::user_id(author)?,
        (Viewer::User(user), Some(author)) if &json::user_id(author)? != user => {
            return Err(ApiError {
                status: 403,
                code: "forbidden",
                message: "users post as themselves".into(),
            });
        }
        _ => caller.user.clone(),
    };
    if body.client_message_id.as_ref().is_some_and(|c| c.len() > CLIENT_MESSAGE_ID_BYTES_MAX) {
        return Err(ApiError::bad_request(format!(
            "client_message_id is over {CLIENT_MESSAGE_ID_BYTES_MAX} bytes"
        )));
    }
    if body.kind.as_ref().is_some_and(|k| k.len() > MESSAGE_KIND_BYTES_MAX) {
        return Err(ApiError::bad_request(format!("kind is over {MESSAGE_KIND_BYTES_MAX} bytes")));
    }
    let new = NewMessage {
        author,
        text,
        parent_id: MessageId(body.parent_id.unwrap_or(0)),
        client_message_id: body.client_message_id,
        kind: body.kind.unwrap_or_else(|| "Regular".into()),
        attachments: json::array_text(body.attachments.as_ref(), "attachments")?,
        attributes: json::object_text(body.attributes.as_ref(), "attributes")?,
    };
    new.check_size(config.stored_message_bytes_max)?;
    Ok(new)
}

/// `POST /api/v1/rooms/{id}/messages`: a member posts; a service may post for any `author`.
pub async fn post(shard: &Rc<Shard>, caller: &Caller, id: &str, body: &[u8]) -> ApiResult {
    let new = message_body(body, caller, &shard.config)?;
    message_reply(room_action(shard, caller, id, RoomAction::Post(new)).await?, 201)
}

/// The query parameter `name` as an integer, `None` when absent; present but empty or not an
/// integer is a 400 (the OpenAPI spec types it `integer`).
fn optional_u64(query: Option<&str>, name: &str) -> Result<Option<u64>, ApiError> {
    match query.and_then(|q| query_param(q, name)) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("{name} must be an integer"))),
    }
}

/// `GET /api/v1/rooms/{id}/messages?after=&before=&limit=`: ascending ids; with only `before`,
/// the newest `limit` messages before it; otherwise the oldest `limit` after `after`. A page
/// also ends early at `history_page_bytes_max` encoded bytes: then it holds fewer than `limit`
/// messages and `"truncated": true`, and the client pages on from its last (or, paging back,
/// first) id as usual.
pub async fn history(
    shard: &Rc<Shard>,
    caller: &Caller,
    id: &str,
    query: Option<&str>,
) -> ApiResult {
    let after = optional_u64(query, "after")?.map(MessageId);
    let before = optional_u64(query, "before")?.map(MessageId);
    let limit = optional_u64(query, "limit")?.map_or(HISTORY_PAGE_DEFAULT, |l| l as usize);
    if limit == 0 || limit > HISTORY_PAGE_MAX {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {HISTORY_PAGE_MAX}"
        )));
    }
    let bytes_max = shard.config.history_page_bytes_max;
    let action = RoomAction::History { after, before, limit, bytes_max };
    let page = match room_action(shard, caller, id, action).await? {
        Reply::Messages(page) => page,
        _ => Page::default(),
    };
    let messages: Vec<_> = page.messages.iter().map(|m| json::message(m)).collect();
    Ok((200, json::body(&HistoryJson { messages, truncated: page.truncated })))
}

/// A history page as the REST API shows it.
#[derive(Serialize)]
struct HistoryJson<'a> {
    messages: Vec<json::MessageJson<'a>>,
    /// The page ended early at its byte bound (more messages follow).
    truncated: bool,
}

async fn message_action(
    shard: &Rc<Shard>,
    caller: &Caller,
    id: &str,
    action: RoomAction,
) -> Result<Reply, ApiError> {
    let message = parse_id(id, "message")?;
    let owner = shard_of_message(message, shard.shard_count);
    reply_of(
        shard
            .call(owner, Request::Message { message, viewer: caller.viewer.clone(), action })
            .await,
    )
}

/// Decodes and checks the body of `PATCH /api/v1/messages/{id}`: the new `text` (or
/// `content`), required and within `config.message_bytes_max` (413). What `edit` runs before
/// asking the message's owner.
pub fn edit_body(body: &[u8], config: &Config) -> Result<String, ApiError> {
    let body: EditBody = parse_body(body)?;
    check_message_text(config, body.text)
}

/// `PATCH /api/v1/messages/{id}` with `{"text": …}`: the author edits.
pub async fn edit(shard: &Rc<Shard>, caller: &Caller, id: &str, body: &[u8]) -> ApiResult {
    let text = edit_body(body, &shard.config)?;
    let message = parse_id(id, "message")?;
    let bytes_max = shard.config.stored_message_bytes_max;
    let action = RoomAction::Edit { message, text, bytes_max };
    message_reply(message_action(shard, caller, id, action).await?, 200)
}

/// `DELETE /api/v1/messages/{id}`: the author or a moderator deletes.
pub async fn delete(shard: &Rc<Shard>, caller: &Caller, id: &str) -> ApiResult {
    let message = parse_id(id, "message")?;
    message_action(shard, caller, id, RoomAction::DeleteMessage(message)).await?;
    Ok((204, Vec::new()))
}
