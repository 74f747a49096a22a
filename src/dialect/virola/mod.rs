//! The Virola Events dialect (`GET /api/v1/events`, protocol sheet 002-003): receive-only JSON
//! text frames; clients write through the REST API. Authentication at the upgrade from the
//! `Authorization: Bearer` header, `?access_token=`, or the web client's session cookie; a
//! refusal is a 401 with Virola's own error body.

pub mod render;

use bytes::Bytes;

use super::{Credentials, Dialect, DialectId, ReceiveOnly, Refusal, RefuseReason, Session};
use crate::config::Config;
use crate::http::head::RequestHead;
use crate::http::query::{bearer, cookie, query_param};
use crate::http::response;
use crate::model::Event;

pub use render::SESSION_COOKIE;

/// Virola's place in the registry.
pub const ID: DialectId = DialectId(0);

/// The Virola dialect.
pub struct Virola;

impl Dialect for Virola {
    fn name(&self) -> &'static str {
        "virola"
    }

    fn serves(&self, path: &str, _config: &Config) -> bool {
        path == "/api/v1/events"
    }

    fn endpoint(&self, _config: &Config) -> Option<String> {
        Some("/api/v1/events".into())
    }

    /// `Authorization: Bearer`, else `?access_token=`, else the session cookie.
    fn credentials(&self, head: &RequestHead) -> Credentials {
        if let Some(token) = bearer(head) {
            return Credentials::Token(Some(token.to_string()));
        }
        if let Some(token) = head.query.as_deref().and_then(|q| query_param(q, "access_token")) {
            return Credentials::Token(Some(token.into_owned()));
        }
        Credentials::Token(cookie(head, SESSION_COOKIE).map(str::to_string))
    }

    /// Virola's error body (`errorText`, `httpStatusCode`) with 401 or 429.
    fn refuse(&self, reason: RefuseReason<'_>) -> Refusal {
        let status = reason.status();
        let body = serde_json::json!({ "errorText": reason.message(), "httpStatusCode": status })
            .to_string();
        Refusal::Http(response::response(
            status,
            Some("application/json"),
            body.as_bytes(),
            false,
            &[],
        ))
    }

    fn session(&self) -> Box<dyn Session> {
        // Receive-only: client text is ignored, as the protocol sheet says.
        Box::new(ReceiveOnly)
    }

    fn render(&self, event: &Event, moderator: bool) -> Option<Bytes> {
        Some(render::render(event, moderator))
    }
}
