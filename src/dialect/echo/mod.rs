//! The conformance echo endpoint (`--echo-endpoint PATH`, off by default): every data frame
//! comes back as it was sent: compressed again, every message whatever its size, when the
//! connection negotiated permessage-deflate (so conformance runs exercise the compressor on
//! each case). No authentication, no events: it exists for the Autobahn cases.

use std::rc::Rc;

use super::{Credentials, Dialect, DialectId, Refusal, RefuseReason, Session};
use crate::config::Config;
use crate::http::head::RequestHead;
use crate::net::conn::Conn;
use crate::shard::Shard;
use crate::ws::frame;

/// The echo endpoint's place in the registry.
pub const ID: DialectId = DialectId(1);

/// The echo endpoint.
pub struct Echo;

/// An echo connection: sends every message back.
struct EchoSession;

impl Session for EchoSession {
    fn on_text(&self, _shard: &Rc<Shard>, conn: &Rc<Conn>, payload: &[u8]) {
        conn.send(conn.compressed(frame::text(payload), Some(0)));
    }

    fn on_binary(&self, _shard: &Rc<Shard>, conn: &Rc<Conn>, payload: &[u8]) {
        conn.send(conn.compressed(frame::binary(payload), Some(0)));
    }
}

impl Dialect for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }

    fn serves(&self, path: &str, config: &Config) -> bool {
        config.echo_endpoint.as_deref() == Some(path)
    }

    fn endpoint(&self, config: &Config) -> Option<String> {
        config.echo_endpoint.clone()
    }

    fn credentials(&self, _head: &RequestHead) -> Credentials {
        Credentials::None
    }

    fn refuse(&self, reason: RefuseReason<'_>) -> Refusal {
        // Never asked: the endpoint authenticates nobody and registers no connection.
        reason.core_refusal()
    }

    fn session(&self) -> Box<dyn Session> {
        Box::new(EchoSession)
    }
}
