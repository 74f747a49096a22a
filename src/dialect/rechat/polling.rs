//! Engine.IO's HTTP long-polling transport and its upgrade to WebSocket: `GET` receives a
//! payload of the packets queued since the last one, `POST` sends a payload.
//!
//! A polling session is an in-process connection ([`crate::net::pipe`]) served by the same
//! [`super::session::RechatSession`] as a WebSocket: a `POST`'s packets go into the pipe as
//! client messages, and a task reads what the server sent (the core's deliveries included)
//! into the session's queue for the next `GET`. The session lives on the shard that answered
//! its handshake, which its `sid` names; requests arriving on another shard are forwarded
//! there ([`super::RechatCommand::Poll`]) and answered back.
//!
//! The upgrade ([`super::upgrade`]): a WebSocket carrying the `sid` is served on the same shard
//! (`Dialect::home_shard`); its probe pauses the polling (a waiting `GET` answers a noop at
//! once), and its upgrade packet makes it the session's transport: the queue is flushed to it,
//! then everything the server sends goes to it, and its client packets go into the pipe in
//! order. The session itself (authentication, running actions and their acks, keepalive) stays
//! the pipe's, so nothing is in flight between two connections at the switch.
//!
//! Invariants: at most one `GET` waits per session (another gets 400); a `GET` waits at most
//! `pingInterval`, then answers a noop; the queue holds at most `outbound_bytes_max` bytes, past
//! which the session is closed (a slow consumer); a `POST` payload is bounded by the HTTP body
//! limit and [`engineio::PAYLOAD_PACKETS_MAX`], and so are the upgraded WebSocket's packets not
//! yet in the pipe; once upgraded, `GET`s and `POST`s get 400, and the session and its
//! WebSocket end together.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::Bytes;

use super::engineio::{self, HttpError, Version};
use super::session::{RechatSession, RechatState};
use super::ID;
use crate::http::response;
use crate::metrics;
use crate::net::conn::Conn;
use crate::net::pipe::{self, Pipe};
use crate::shard::Shard;
use crate::ws::frame;

/// One polling session.
pub struct Poll {
    version: Version,
    pipe: Pipe,
    /// Packets for the next `GET`.
    queue: RefCell<VecDeque<Bytes>>,
    /// Their bytes.
    queued: Cell<usize>,
    /// The session ended (nothing more will be queued).
    closed: Cell<bool>,
    /// A `GET` waits.
    waiting: Cell<bool>,
    /// Wakes the waiting `GET`.
    wake: tokio::sync::Notify,
    /// A WebSocket probed the session: `GET`s answer at once.
    paused: Cell<bool>,
    /// The WebSocket the session upgraded to.
    upgraded: RefCell<Option<Weak<Conn>>>,
    /// The upgraded WebSocket's client packets not yet in the pipe, in order.
    upstream: RefCell<VecDeque<Bytes>>,
    /// Their bytes.
    upstream_bytes: Cell<usize>,
    /// Wakes the upstream pump.
    upstream_wake: tokio::sync::Notify,
}

/// An HTTP answer for `body`.
fn ok(body: &[u8], content_type: &str, keep_alive: bool) -> Bytes {
    response::response(200, Some(content_type), body, keep_alive, &[])
}

/// The engine.io error answer.
pub fn error(e: HttpError) -> Bytes {
    response::response(e.status(), Some("application/json"), e.body().as_bytes(), false, &[])
}

/// A handshake (`GET` without `sid`): a new session on this shard; answered like its first
/// `GET` (the open packet, and `40` in v3).
pub async fn handshake(shard: &Rc<Shard>, version: Version, keep_alive: bool) -> Bytes {
    let sid = engineio::sid_for(shard.id, &rand::random::<[u8; 14]>());
    let session = RechatSession::polling(version, sid.clone());
    let Some(pipe) = pipe::open(shard, ID, Box::new(session)) else {
        return response::json_error(503, "too_many_connections", "this server is full", false);
    };
    let poll = Rc::new(Poll {
        version,
        pipe,
        queue: RefCell::new(VecDeque::new()),
        queued: Cell::new(0),
        closed: Cell::new(false),
        waiting: Cell::new(false),
        wake: tokio::sync::Notify::new(),
        paused: Cell::new(false),
        upgraded: RefCell::new(None),
        upstream: RefCell::new(VecDeque::new()),
        upstream_bytes: Cell::new(0),
        upstream_wake: tokio::sync::Notify::new(),
    });
    shard.dialect_state::<RechatState>(ID).polls.insert(sid.clone(), poll.clone());
    tokio_uring::spawn(read_into_queue(shard.clone(), sid, poll.clone()));
    get(shard, &poll, keep_alive).await
}

/// How often an ended session whose queue the client has not fetched yet checks it again.
const POLL_LINGER_CHECK: Duration = Duration::from_millis(20);

/// Moves what the server sends the session into its queue (or, once upgraded, to its
/// WebSocket), until the session ends.
async fn read_into_queue(shard: Rc<Shard>, sid: String, poll: Rc<Poll>) {
    while let Some(packet) = poll.pipe.next().await {
        if let Some(ws) = poll.upgraded.borrow().as_ref() {
            match ws.upgrade() {
                Some(ws) => {
                    ws.send(frame::text(&packet));
                    continue;
                }
                None => break,
            }
        }
        let queued = poll.queued.get() + packet.len();
        if queued > shard.config.outbound_bytes_max {
            metrics::inc(&shard.metrics.slow_consumer_closes_total);
            poll.pipe.close();
            break;
        }
        poll.queued.set(queued);
        poll.queue.borrow_mut().push_back(packet);
        poll.wake.notify_one();
    }
    poll.closed.set(true);
    poll.wake.notify_one();
    poll.upstream_wake.notify_one();
    poll.pipe.close();
    // What was queued before the end (the disconnect packet of a logout, typically) is still
    // the client's: between two GETs it has none waiting, so the session stays findable until
    // a GET takes the queue, or for a ping interval and timeout (bounded, then dropped).
    let linger = Duration::from_millis(
        shard.config.rechat_ping_interval_ms + shard.config.rechat_ping_timeout_ms,
    );
    let deadline = tokio::time::Instant::now() + linger;
    while !poll.queue.borrow().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(POLL_LINGER_CHECK).await;
    }
    shard.dialect_state::<RechatState>(ID).polls.remove(&sid);
    let ws = poll.upgraded.borrow().as_ref().and_then(Weak::upgrade);
    if let Some(ws) = ws {
        super::session::close_then_drop(&ws, crate::ws::close::CLOSE_NORMAL, "");
    }
}

impl Poll {
    /// The session's Engine.IO revision.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Whether a WebSocket may still probe this session (it has not ended or upgraded).
    pub fn upgradable(&self) -> bool {
        !self.closed.get() && self.upgraded.borrow().is_none()
    }

    /// A WebSocket probed the session: the waiting `GET` (and any later one) answers a noop at
    /// once, so the client can pause its polling and send the upgrade packet.
    pub fn pause(&self) {
        self.paused.set(true);
        self.wake.notify_one();
    }

    /// The probing WebSocket went away without upgrading: polling goes on as before.
    pub fn resume(&self) {
        self.paused.set(false);
    }

    /// Makes `ws` the session's transport: the queued packets go to it, then everything the
    /// server sends; false when the session ended or already upgraded. A session that ended
    /// while the client probed (a logout) still gives `ws` what it queued, its disconnect
    /// packet among it: the client stopped polling for the upgrade and would never fetch it.
    pub fn upgrade(self: &Rc<Self>, ws: &Rc<Conn>) -> bool {
        if !self.upgradable() {
            if self.closed.get() && self.upgraded.borrow().is_none() {
                for packet in self.queue.borrow_mut().drain(..) {
                    ws.send(frame::text(&packet));
                }
                self.queued.set(0);
            }
            return false;
        }
        for packet in self.queue.borrow_mut().drain(..) {
            ws.send(frame::text(&packet));
        }
        self.queued.set(0);
        *self.upgraded.borrow_mut() = Some(Rc::downgrade(ws));
        self.wake.notify_one();
        tokio_uring::spawn(pump_upstream(self.clone()));
        true
    }

    /// Queues one client packet of the upgraded WebSocket for the pipe; false past the bound
    /// (`bytes_max` bytes or [`engineio::PAYLOAD_PACKETS_MAX`] packets waiting).
    pub fn send_upstream(&self, packet: Bytes, bytes_max: usize) -> bool {
        let bytes = self.upstream_bytes.get() + packet.len();
        let mut upstream = self.upstream.borrow_mut();
        if bytes > bytes_max || upstream.len() >= engineio::PAYLOAD_PACKETS_MAX {
            return false;
        }
        self.upstream_bytes.set(bytes);
        upstream.push_back(packet);
        self.upstream_wake.notify_one();
        true
    }

    /// Ends the session (its WebSocket went away).
    pub fn close(&self) {
        self.pipe.close();
    }
}

/// Writes the upgraded WebSocket's client packets into the pipe, one at a time in order, until
/// the session ends.
async fn pump_upstream(poll: Rc<Poll>) {
    loop {
        let next = poll.upstream.borrow_mut().pop_front();
        match next {
            Some(packet) => {
                poll.upstream_bytes.set(poll.upstream_bytes.get().saturating_sub(packet.len()));
                if !poll.pipe.send_text(&packet).await {
                    return;
                }
            }
            None if poll.closed.get() => return,
            None => poll.upstream_wake.notified().await,
        }
    }
}

/// A request for session `sid` on this shard: `body` is a `POST`'s (`None`: a `GET`).
pub async fn request(shard: &Rc<Shard>, sid: &str, body: Option<Bytes>, keep_alive: bool) -> Bytes {
    let poll = shard.dialect_state::<RechatState>(ID).polls.get(sid).cloned();
    let Some(poll) = poll else {
        return error(HttpError::SessionIdUnknown);
    };
    if poll.upgraded.borrow().is_some() {
        // The client moved to its WebSocket: polling for the session is over.
        return error(HttpError::BadRequest);
    }
    match body {
        None => get(shard, &poll, keep_alive).await,
        Some(body) => post(shard, &poll, &body, keep_alive).await,
    }
}

/// A `GET`: the queued packets, at once or as soon as some come, or a noop after
/// `pingInterval` (a close packet once the session ended).
async fn get(shard: &Shard, poll: &Poll, keep_alive: bool) -> Bytes {
    if poll.waiting.replace(true) {
        return error(HttpError::BadRequest);
    }
    let wait = Duration::from_millis(shard.config.rechat_ping_interval_ms);
    let deadline = tokio::time::Instant::now() + wait;
    // A draining server answers at once, so the drain need not wait out the poll.
    while poll.queue.borrow().is_empty()
        && !poll.closed.get()
        && !poll.paused.get()
        && !shard.shutting_down.get()
    {
        tokio::select! {
            () = poll.wake.notified() => {}
            () = shard.shutdown_wake.notified() => {}
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    poll.waiting.set(false);
    let packets: Vec<Bytes> = poll.queue.borrow_mut().drain(..).collect();
    poll.queued.set(0);
    let texts: Vec<&str> = packets.iter().filter_map(|p| std::str::from_utf8(p).ok()).collect();
    let body = match (texts.is_empty(), poll.closed.get()) {
        (true, true) => engineio::encode_payload(poll.version, [engineio::CLOSE]),
        (true, false) => engineio::encode_payload(poll.version, [engineio::NOOP]),
        (false, _) => engineio::encode_payload(poll.version, texts),
    };
    ok(body.as_bytes(), "text/plain; charset=UTF-8", keep_alive)
}

/// A `POST`: its packets go to the session as client messages, in order; a malformed payload
/// ends the session.
async fn post(shard: &Shard, poll: &Poll, body: &[u8], keep_alive: bool) -> Bytes {
    let Ok(text) = std::str::from_utf8(body) else {
        poll.pipe.close();
        return error(HttpError::BadRequest);
    };
    let packets =
        match engineio::decode_payload(poll.version, text, shard.config.rest_body_bytes_max) {
            Ok(packets) => packets,
            Err(_) => {
                metrics::inc(&shard.metrics.protocol_errors_total);
                poll.pipe.close();
                return error(HttpError::BadRequest);
            }
        };
    for packet in packets {
        if !poll.pipe.send_text(packet.encode().as_bytes()).await {
            return error(HttpError::SessionIdUnknown);
        }
    }
    ok(b"ok", "text/html", keep_alive)
}
