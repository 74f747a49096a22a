//! The WebSocket a polling session upgrades to (`transport=websocket&sid=…`), served on the
//! session's shard (`Dialect::home_shard` names it from the `sid`).
//!
//! Engine.IO's upgrade, as engine.io's server does it: the client sends the probe `2probe`,
//! the server answers `3probe` and pauses the polling (its waiting `GET` answers a noop, so the
//! client can finish its requests), the client sends the upgrade packet `5`, and from then on
//! the WebSocket is the session's transport ([`Poll::upgrade`]): the packets queued for the
//! next `GET` are flushed to it first, then everything the server sends goes to it, and its
//! client packets go into the session's pipe in order.
//!
//! Invariants: before `5`, only the probe and noops are accepted (anything else closes this
//! WebSocket, 1002, and the client stays on polling); a WebSocket that has not upgraded within
//! [`RECHAT_UPGRADE_TIMEOUT`] is closed; once upgraded, the WebSocket and the session end
//! together (this socket closing ends the session; the session ending closes this socket).

use std::cell::Cell;
use std::rc::Rc;

use bytes::Bytes;

use super::engineio::{self, Packet, PacketType};
use super::polling::Poll;
use super::session::close_then_drop;
use super::text_frame;
use crate::dialect::Session;
use crate::limits::RECHAT_UPGRADE_TIMEOUT;
use crate::metrics;
use crate::net::conn::Conn;
use crate::shard::Shard;
use crate::ws::close::{CLOSE_NORMAL, CLOSE_POLICY, CLOSE_PROTOCOL_ERROR};

/// 1003: the endpoint does not accept this kind of data (binary packets).
const CLOSE_UNSUPPORTED_DATA: u16 = 1003;

/// A WebSocket probing, then carrying, polling session `poll`.
pub struct UpgradeSession {
    poll: Rc<Poll>,
    /// It sent `5` and carries the session.
    upgraded: Rc<Cell<bool>>,
}

impl UpgradeSession {
    /// A WebSocket for `poll`, which must be [`Poll::upgradable`].
    pub fn new(poll: Rc<Poll>) -> UpgradeSession {
        UpgradeSession { poll, upgraded: Rc::new(Cell::new(false)) }
    }

    /// Closes this socket for bad input (counted); the session stays on polling unless it had
    /// upgraded (then it ends with this socket).
    fn refuse(&self, shard: &Shard, conn: &Rc<Conn>, code: u16, reason: &'static str) {
        metrics::inc(&shard.metrics.protocol_errors_total);
        close_then_drop(conn, code, reason);
    }
}

impl Drop for UpgradeSession {
    /// The socket is gone: an upgraded session ends with it; a probe that never upgraded lets
    /// the polling go on.
    fn drop(&mut self) {
        if self.upgraded.get() {
            self.poll.close();
        } else {
            self.poll.resume();
        }
    }
}

impl Session for UpgradeSession {
    /// Nothing is sent until the probe; the socket must upgrade within
    /// [`RECHAT_UPGRADE_TIMEOUT`].
    fn started(&self, _shard: &Rc<Shard>, conn: &Rc<Conn>) {
        let (conn, upgraded) = (Rc::downgrade(conn), self.upgraded.clone());
        tokio_uring::spawn(async move {
            tokio::time::sleep(RECHAT_UPGRADE_TIMEOUT).await;
            if let Some(conn) = conn.upgrade().filter(|_| !upgraded.get()) {
                close_then_drop(&conn, CLOSE_NORMAL, "upgrade timed out");
            }
        });
    }

    fn on_text(&self, shard: &Rc<Shard>, conn: &Rc<Conn>, payload: &[u8]) {
        if self.upgraded.get() {
            // The session's own packet handling (in the pipe) decodes and judges it.
            let packet = Bytes::copy_from_slice(payload);
            if !self.poll.send_upstream(packet, shard.config.rest_body_bytes_max) {
                self.refuse(shard, conn, CLOSE_POLICY, "too many packets in flight");
            }
            return;
        }
        let packet = std::str::from_utf8(payload).ok().and_then(|text| Packet::decode(text).ok());
        match packet {
            Some(p) if p.kind == PacketType::Ping && p.is_probe() => {
                conn.send(text_frame(engineio::PROBE_PONG));
                self.poll.pause();
            }
            Some(p) if p.kind == PacketType::Upgrade => {
                if self.poll.upgrade(conn) {
                    self.upgraded.set(true);
                } else {
                    close_then_drop(conn, CLOSE_NORMAL, "session ended");
                }
            }
            Some(p) if p.kind == PacketType::Noop => {}
            _ => self.refuse(shard, conn, CLOSE_PROTOCOL_ERROR, "invalid upgrade packet"),
        }
    }

    fn on_binary(&self, shard: &Rc<Shard>, conn: &Rc<Conn>, _payload: &[u8]) {
        self.refuse(shard, conn, CLOSE_UNSUPPORTED_DATA, "binary packets are not supported");
    }
}
