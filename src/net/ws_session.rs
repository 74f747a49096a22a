//! One WebSocket session after the upgrade: the read loop that decodes frames from our own
//! buffer, answers control frames, hands data frames to the dialect, and tears down.
//!
//! Invariants: the read buffer starts small (`read_buffer_bytes_initial`) and grows only while a
//! frame is partially buffered, shrinking back once it is empty; every exit path detaches the
//! connection from the shard before its slab key can be reused.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;

use crate::dialect::{osu, DialectKind};
use crate::metrics;
use crate::model::ids::now_ms;
use crate::net::big_session::{self, BigConn};
use crate::net::conn::Conn;
use crate::shard::Shard;
use crate::ws::codec::{Decoder, Incoming, WsLimits};
use crate::ws::frame;

/// How long a closing connection may take to flush its close frame before we drop it.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs the session until either side closes; `buf` holds bytes read past the HTTP head.
/// Ends by unregistering the connection and decrementing the shard's `connections` gauge.
pub async fn run(shard: Rc<Shard>, conn: Rc<Conn>, mut buf: BytesMut, registered: bool) {
    metrics::inc(&shard.metrics.websockets);
    let limits = WsLimits {
        frame_bytes_max: shard.config.frame_bytes_max,
        message_bytes_max: shard.config.message_bytes_max,
    };
    let initial = shard.config.read_buffer_bytes_initial;
    let mut decoder = Decoder::new(limits);
    let big = (conn.dialect == DialectKind::Big).then(|| Rc::new(BigConn::default()));
    'session: loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(incoming)) => {
                    metrics::inc(&shard.metrics.frames_in_total);
                    conn.last_seen_ms.set(now_ms());
                    if !on_frame(&conn, big.as_ref(), incoming) {
                        break 'session;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    metrics::inc(&shard.metrics.protocol_errors_total);
                    conn.close(error.close_code, error.reason);
                    break 'session;
                }
            }
        }
        if buf.is_empty() && buf.capacity() > initial * 4 {
            buf = BytesMut::with_capacity(initial);
        } else if buf.capacity() - buf.len() < initial / 2 {
            buf.reserve(buf.len().max(initial));
        }
        let (result, returned) = crate::net::read_appending(&conn.stream, buf).await;
        buf = returned;
        match result {
            Ok(0) | Err(_) => break,
            Ok(n) => metrics::add(&shard.metrics.bytes_in_total, n as u64),
        }
    }
    let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, conn.flushed()).await;
    conn.kill();
    if registered {
        shard.detach(&conn);
        if big.is_some() {
            big_session::closed(&shard);
        }
    }
    shard.metrics.websockets.fetch_sub(1, Ordering::Relaxed);
    metrics::dec(&shard.metrics.connections);
}

/// Handles one frame; false ends the session.
fn on_frame(conn: &Rc<Conn>, big: Option<&Rc<BigConn>>, incoming: Incoming) -> bool {
    match incoming {
        Incoming::Ping(payload) => {
            conn.send(frame::pong(&payload));
            true
        }
        Incoming::Pong(_) => true,
        Incoming::Close { code, .. } => {
            conn.answer_close(code);
            false
        }
        Incoming::Text(payload) => {
            if conn.dialect == DialectKind::Echo {
                conn.send(frame::text(&payload));
            }
            if conn.dialect == DialectKind::Osu {
                on_osu_text(conn, &payload);
            }
            if let Some(state) = big {
                big_session::on_text(conn, state, &payload);
            }
            // Virola is receive-only: client text is ignored, as the protocol sheet says.
            true
        }
        Incoming::Binary(payload) => {
            if conn.dialect == DialectKind::Echo {
                conn.send(frame::binary(&payload));
            }
            if big.is_some() {
                big_session::on_binary(conn);
            }
            true
        }
    }
}

/// osu!: `chat.start` / `chat.end` toggle the connection's chat flag; anything else (not JSON,
/// unknown events) is ignored without a reply, as the real server does.
fn on_osu_text(conn: &Conn, payload: &[u8]) {
    let flags = conn.flags.get();
    match osu::decode(payload) {
        osu::ClientCommand::ChatStart => conn.flags.set(flags | osu::CHAT_ACTIVE),
        osu::ClientCommand::ChatEnd => conn.flags.set(flags & !osu::CHAT_ACTIVE),
        osu::ClientCommand::Ignored => {}
    }
}
