//! The web console: its static files (`console/` in the source tree, compiled in), served at
//! `GET /` to browsers (a request whose `Accept` names `text/html`) and at `/console/{file}`,
//! and `POST /console/token`, which mints a user token when the server runs with
//! `--console-mint` (dev servers only; 404 otherwise).
//!
//! Invariants: every console file goes out with its own `Content-Type`, `nosniff` and a
//! Content-Security-Policy that allows only this origin's scripts, styles and connections (no
//! inline script or style, no frames, no forms posting elsewhere). A minted token is a plain
//! user token (no role, no scopes: all), valid for [`CONSOLE_TOKEN_TTL_S`], for a `user` that
//! keeps the user id rule, and each mint takes one action from that user's rate limit.

use bytes::Bytes;
use serde::Deserialize;

use crate::auth::{mint_hs256, MintClaims};
use crate::http::head::RequestHead;
use crate::http::response;
use crate::limits::CONSOLE_TOKEN_TTL_S;
use crate::shard::Shard;

use super::json::{self, parse_body};
use super::{ApiError, ApiResult};

/// The console's Content-Security-Policy: scripts, styles and connections (REST and the
/// WebSockets, which `'self'` covers) of this origin only.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                       connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
                       frame-ancestors 'none'";

/// The console's files: name under `/console/`, `Content-Type`, contents.
const FILES: &[(&str, &str, &[u8])] = &[
    ("index.html", "text/html; charset=utf-8", include_bytes!("../../console/index.html")),
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../../console/app.js")),
    ("style.css", "text/css; charset=utf-8", include_bytes!("../../console/style.css")),
    ("icon.svg", "image/svg+xml", include_bytes!("../../console/icon.svg")),
];

/// The console's answer to a `GET` of `segments`, if it is one of its files: `/` for a
/// browser, or `/console/{file}`. `None` leaves the request to the API (the JSON index, 404s).
pub fn serve(head: &RequestHead, segments: &[&str], keep_alive: bool) -> Option<Bytes> {
    let name = match segments {
        [""] if wants_html(head) => "index.html",
        ["console", name] => name,
        _ => return None,
    };
    let &(_, content_type, body) = FILES.iter().find(|(file, _, _)| *file == name)?;
    let headers = [
        ("Content-Security-Policy", CSP),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("X-Frame-Options", "DENY"),
        ("Cache-Control", "no-cache"),
        ("Vary", "Accept"),
    ];
    Some(response::response(200, Some(content_type), body, keep_alive, &headers))
}

/// Whether the request's `Accept` header names `text/html` (a browser's navigation does;
/// curl's `*/*` and API clients' `application/json` do not).
fn wants_html(head: &RequestHead) -> bool {
    head.headers_named("accept").any(|value| {
        value.split(|&b| b == b',').any(|item| {
            let media = item.split(|&b| b == b';').next().unwrap_or_default();
            media.trim_ascii().eq_ignore_ascii_case(b"text/html")
        })
    })
}

#[derive(Deserialize)]
struct MintBody {
    user: Option<serde_json::Value>,
}

/// `POST /console/token` with `{"user": ID}` → 201 `{"token","user","expires_in"}`: a user
/// token signed with the server's HS256 secret. 404 unless `--console-mint`; 400 for a user
/// id that breaks the rule; 429 past the user's action rate.
pub fn mint(shard: &Shard, body: &[u8]) -> ApiResult {
    let Some(secret) = shard.console_mint.as_deref() else {
        return Err(ApiError {
            status: 404,
            code: "not_found",
            message: "the console mints no tokens on this server (it runs without \
                      --console-mint): paste a token made by `roomcast token --user ID`"
                .into(),
        });
    };
    let body: MintBody = parse_body(body)?;
    let user = json::user_id(
        body.user.as_ref().ok_or_else(|| ApiError::bad_request("user is required"))?,
    )?;
    super::take_user_action(shard, &user)?;
    let claims = MintClaims {
        sub: user.as_str().to_owned(),
        role: None,
        sid: None,
        scopes: None,
        ttl_s: CONSOLE_TOKEN_TTL_S,
    };
    let token = mint_hs256(secret, &claims).map_err(|e| ApiError {
        status: 500,
        code: "internal",
        message: format!("cannot mint a token: {e}"),
    })?;
    let reply = serde_json::json!({
        "token": token,
        "user": user.as_str(),
        "expires_in": CONSOLE_TOKEN_TTL_S,
    });
    Ok((201, reply.to_string().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::Method;

    fn head(accept: Option<&str>) -> RequestHead {
        RequestHead {
            method: Method::Get,
            path: "/".into(),
            query: None,
            version: 1,
            headers: accept
                .map(|a| ("accept".to_string(), a.as_bytes().to_vec()))
                .into_iter()
                .collect(),
            content_length: 0,
            keep_alive: true,
            chunked: false,
        }
    }

    #[test]
    fn only_html_accepting_requests_get_the_page_at_the_root() {
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        for (accept, html) in [
            (Some(browser), true),
            (Some("TEXT/HTML ; q=1"), true),
            (Some("*/*"), false),
            (Some("application/json"), false),
            (Some("text/htmlx"), false),
            (None, false),
        ] {
            assert_eq!(serve(&head(accept), &[""], true).is_some(), html, "{accept:?}");
        }
    }

    #[test]
    fn every_file_has_its_type_and_the_policy() {
        for (name, content_type) in [
            ("index.html", "text/html; charset=utf-8"),
            ("app.js", "text/javascript; charset=utf-8"),
            ("style.css", "text/css; charset=utf-8"),
            ("icon.svg", "image/svg+xml"),
        ] {
            let r = serve(&head(None), &["console", name], true).expect(name);
            let text = String::from_utf8_lossy(&r);
            assert!(text.contains(&format!("Content-Type: {content_type}\r\n")), "{text}");
            assert!(text.contains(&format!("Content-Security-Policy: {CSP}\r\n")), "{name}");
            assert!(text.contains("X-Content-Type-Options: nosniff"), "{name}");
        }
        assert!(serve(&head(None), &["console", "nope.js"], true).is_none());
        assert!(serve(&head(None), &["console", ".."], true).is_none());
    }
}
