//! IO-free HTTP/1.1: request-head parsing, responses, the WebSocket upgrade, and
//! request parameters/credentials.
//!
//! Owns: [`head`] (parsing and [`HttpError`]), [`response`](mod@response) (response bytes),
//! [`upgrade`] (RFC 6455 handshake) and [`query`] (query params, cookies, bearer tokens).
//! Invariants: no IO; nothing a peer sends can panic. Limits: only `Content-Length`
//! request bodies; no chunked encoding, no HTTP/2.

pub mod head;
pub mod query;
pub mod response;
pub mod upgrade;

pub use head::{parse_head, HttpError, Method, RequestHead};
pub use query::{bearer, cookie, percent_decode, query_param};
pub use response::{
    json, json_error, json_error_with_headers, json_value, reason_phrase, response,
};
pub use upgrade::{accept, is_websocket_upgrade};
