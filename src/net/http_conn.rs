//! Serving one accepted connection: HTTP/1.1 requests with keep-alive (the REST API), until it
//! asks for a WebSocket upgrade, which hands the socket to a dialect's session.
//!
//! Limits: a whole request (head and body) must arrive within `handshake_timeout_ms`, counted
//! from accept for the first request and from its first byte for later ones (a deadline, not a
//! wait per read: a byte at a time does not extend it); a keep-alive connection must start its
//! next request within `http_keepalive_timeout_ms` of a response; and a client must take some
//! of a response being written at least every `handshake_timeout_ms`. Past any of these the
//! socket is closed. Heads are at most `http_head_bytes_max` (431), bodies at most
//! `rest_body_bytes_max` (413) and only with Content-Length (chunked: 411). An upgrade past
//! `connections_per_shard_max` gets 503; one past the user's `connections_per_user_max` gets
//! its dialect's refusal (`Dialect::refuse` with `RefuseReason::TooManyConnections`) before
//! the 101. permessage-deflate is negotiated at the upgrade (`ws::extension`) unless
//! `--deflate off`.
//!
//! With TLS configured (`--tls-cert`), every connection is TLS from its first byte: reads
//! decrypt into the same request buffer (`TlsSession::read`), the handshake running inside the
//! first request's deadline, and every write is sealed first; the upgrade hands the
//! connection's TLS state to its `Conn`.
//!
//! Invariant: no io_uring op on the stream outlives the task's wait for it ([`until`]), so the
//! descriptor is closed exactly once, when the last `Rc<TcpStream>` drops (the upgrade hands
//! the session a duplicate of its own).

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::time::Instant;
use tokio_uring::net::TcpStream;

use crate::config::Switch;
use crate::dialect::{self, Credentials, Refusal, RefuseReason};
use crate::http::head::{parse_head, Method, RequestHead};
use crate::http::{response, upgrade};
use crate::metrics;
use crate::model::{ShardId, UserId};
use crate::net::admission::HttpSlot;
use crate::net::conn::{Conn, Deflate};
use crate::shard::{AttachRefused, Shard};
use crate::tls::{Progress, TlsSession};
use crate::ws::extension::{self, Agreement};

/// Serves the connection until it closes or upgrades; `slot` is its place in the shard's HTTP
/// phase, given back as this returns.
///
/// An upgraded connection is handed to the shard's sessions (`ws_session`), which need no task
/// per connection, so the HTTP phase's state (the request head, the REST handler's future, the
/// io_uring stream) is freed rather than kept for the socket's whole life; the session's end
/// decrements `connections`.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream, slot: HttpSlot) {
    metrics::inc(&shard.metrics.connections);
    let tls = match &shard.tls {
        None => None,
        Some(tls) => match tls.accept() {
            Ok(session) => Some(session),
            Err(e) => {
                tracing::warn!(shard = shard.id.get(), "TLS connection state: {e}");
                metrics::dec(&shard.metrics.connections);
                return;
            }
        },
    };
    let io = Io { stream: Rc::new(stream), tls: RefCell::new(tls) };
    if !serve_requests(&shard, io).await {
        metrics::dec(&shard.metrics.connections);
    }
    drop(slot);
}

/// A connection in its HTTP phase: the io_uring stream and, on a TLS listener, its TLS state.
struct Io {
    stream: Rc<TcpStream>,
    tls: RefCell<Option<TlsSession>>,
}

/// Serves requests until the connection closes (false) or is upgraded (true).
async fn serve_requests(shard: &Rc<Shard>, io: Io) -> bool {
    let stream = &io;
    let config = shard.config.clone();
    let request_time = Duration::from_millis(config.handshake_timeout_ms);
    let keep_alive_time = Duration::from_millis(config.http_keepalive_timeout_ms);
    let mut buf = BytesMut::with_capacity(1024);
    // The first request's deadline runs from accept.
    let mut deadline = Instant::now() + request_time;
    loop {
        let head = loop {
            match parse_head(&buf, config.http_head_bytes_max) {
                Ok(Some((head, consumed))) => {
                    buf.advance(consumed);
                    break head;
                }
                Ok(None) => {}
                Err(e) => {
                    let _ = write(shard, stream, e.render(false)).await;
                    return false;
                }
            }
            buf = match read_more(shard, stream, buf, deadline).await {
                Ok(buf) => buf,
                Err(end) => return end.count(&shard.metrics.timeouts_total),
            };
        };
        metrics::inc(&shard.metrics.http_requests_total);
        if upgrade::is_websocket_upgrade(&head) {
            return upgrade_to_websocket(shard, io, head, buf, false).await;
        }
        // A request that starts once the drain began is refused, so every request the drain
        // waits for was counted before it (`shard::drain`): no write is acknowledged after
        // its shard's first drain round.
        if shard.shutting_down.get() {
            let refused =
                response::json_error(503, "shutting_down", "the server is shutting down", false);
            let _ = write(shard, stream, refused).await;
            return false;
        }
        let in_flight = InFlight::new(shard);
        let Some(body) = read_body(shard, stream, &head, &mut buf, deadline).await else {
            return false;
        };
        let keep_alive = head.keep_alive && !shard.shutting_down.get();
        let reply = match dialect::http_at(&head.path, &shard.config) {
            Some(dialect) => dialect.get().http(shard, &head, body).await,
            None => crate::rest::handle(shard, &head, body, keep_alive).await,
        };
        drop(in_flight);
        // A response to HEAD has no content (RFC 9110 §9.3.2): a keep-alive client would read
        // it as the start of the next response.
        let reply = if head.method == Method::Head { response::head_only(reply) } else { reply };
        if !write(shard, stream, reply).await || !keep_alive {
            return false;
        }
        if buf.is_empty() {
            // Idle between requests: the next one must start within the keep-alive time.
            buf = match read_more(shard, stream, buf, Instant::now() + keep_alive_time).await {
                Ok(buf) => buf,
                Err(end) => return end.count(&shard.metrics.http_keepalive_closes_total),
            };
        }
        // A later request's deadline runs from its first byte.
        deadline = Instant::now() + request_time;
    }
}

/// One HTTP request being handled, counted in `Shard::requests_in_flight` while it lives (the
/// drain waits for the count to reach 0).
struct InFlight<'a>(&'a Shard);

impl<'a> InFlight<'a> {
    fn new(shard: &'a Shard) -> Self {
        shard.requests_in_flight.set(shard.requests_in_flight.get() + 1);
        InFlight(shard)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.requests_in_flight.set(self.0.requests_in_flight.get().saturating_sub(1));
    }
}

/// Why a read gave no bytes.
enum ReadEnd {
    /// EOF or an error: the peer is gone.
    Closed,
    /// The deadline passed; the socket was shut down.
    Deadline,
}

impl ReadEnd {
    /// Counts a deadline in `counter`; false (the connection is over) either way.
    fn count(self, counter: &AtomicU64) -> bool {
        if let ReadEnd::Deadline = self {
            metrics::inc(counter);
        }
        false
    }
}

/// Reads more bytes into `buf` before `deadline` (plaintext: decrypted on a TLS connection,
/// whose handshake runs here until the first request bytes arrive).
async fn read_more(
    shard: &Shard,
    io: &Io,
    mut buf: BytesMut,
    deadline: Instant,
) -> Result<BytesMut, ReadEnd> {
    if io.tls.borrow().is_some() {
        return read_more_tls(shard, io, buf, deadline).await;
    }
    let stream = &*io.stream;
    if buf.capacity() - buf.len() < 512 {
        buf.reserve(buf.len().max(1024));
    }
    match until(stream, deadline, crate::net::read_appending(stream, buf)).await {
        None => Err(ReadEnd::Deadline),
        Some((Ok(0) | Err(_), _)) => Err(ReadEnd::Closed),
        Some((Ok(n), buf)) => {
            metrics::add(&shard.metrics.bytes_in_total, n as u64);
            Ok(buf)
        }
    }
}

/// [`read_more`] on a TLS connection: reads ciphertext and decrypts it into `buf`, sending what
/// the handshake answers, until some plaintext arrived.
async fn read_more_tls(
    shard: &Shard,
    io: &Io,
    mut buf: BytesMut,
    deadline: Instant,
) -> Result<BytesMut, ReadEnd> {
    let stream = &*io.stream;
    loop {
        let cipher = BytesMut::with_capacity(crate::limits::TLS_HTTP_READ_BYTES);
        let mut cipher =
            match until(stream, deadline, crate::net::read_appending(stream, cipher)).await {
                None => return Err(ReadEnd::Deadline),
                Some((Ok(0) | Err(_), _)) => return Err(ReadEnd::Closed),
                Some((Ok(n), cipher)) => {
                    metrics::add(&shard.metrics.bytes_in_total, n as u64);
                    cipher
                }
            };
        let before = buf.len();
        let (read, output) = {
            let mut tls = io.tls.borrow_mut();
            let Some(tls) = tls.as_mut() else {
                return Err(ReadEnd::Closed);
            };
            (tls.read(&mut cipher, &mut buf), tls.take_output())
        };
        drop(cipher);
        if let Some(output) = output {
            if !write_raw(shard, stream, output).await {
                return Err(ReadEnd::Closed);
            }
        }
        match read {
            Err(e) => {
                metrics::inc(&shard.metrics.tls_errors_total);
                tracing::debug!(shard = shard.id.get(), "TLS: {e}");
                return Err(ReadEnd::Closed);
            }
            Ok(_) if buf.len() > before => return Ok(buf),
            Ok(Progress::Closed) => return Err(ReadEnd::Closed),
            Ok(Progress::Open) => {}
        }
    }
}

/// Runs `op`, an io_uring operation on `stream`, until `deadline`; `None` when the deadline
/// came first, and then the socket is shut down (the peer sees it closed).
///
/// The op is never dropped while in flight: tokio-uring keeps a dropped op's buffer and its
/// reference to the descriptor until the kernel completes it, and a read of a silent peer
/// completes only when the peer sends or leaves, so the descriptor would stay open (and the
/// TCP connection with it) however long the peer waits. Shutting the socket down makes the
/// kernel complete the pending op at once (a read with EOF, a write with an error), and the op
/// is awaited to its end here, so the caller's `TcpStream` is the descriptor's only owner again
/// and closes it when dropped.
async fn until<T>(stream: &TcpStream, deadline: Instant, op: impl Future<Output = T>) -> Option<T> {
    let mut op = std::pin::pin!(op);
    tokio::select! {
        biased;
        out = &mut op => Some(out),
        () = tokio::time::sleep_until(deadline) => {
            let _ = stream.shutdown(std::net::Shutdown::Both);
            let _ = op.await;
            None
        }
    }
}

/// Reads a Content-Length body; answers and returns `None` when it is refused or never comes.
async fn read_body(
    shard: &Shard,
    stream: &Io,
    head: &RequestHead,
    buf: &mut BytesMut,
    deadline: Instant,
) -> Option<Bytes> {
    if head.chunked {
        let _ = write(
            shard,
            stream,
            response::json_error(411, "length_required", "send a Content-Length body", false),
        )
        .await;
        return None;
    }
    if head.content_length > shard.config.rest_body_bytes_max {
        let message = format!("the body is over {} bytes", shard.config.rest_body_bytes_max);
        let _ = write(shard, stream, response::json_error(413, "body_too_large", &message, false))
            .await;
        return None;
    }
    while buf.len() < head.content_length {
        let taken = std::mem::take(buf);
        match read_more(shard, stream, taken, deadline).await {
            Ok(more) => *buf = more,
            Err(end) => {
                end.count(&shard.metrics.timeouts_total);
                return None;
            }
        }
    }
    Some(buf.split_to(head.content_length).freeze())
}

/// Writes a whole response (sealed first on a TLS connection); false when the socket failed,
/// or when the client took none of it for `handshake_timeout_ms` (a client that does not
/// read): then the socket is shut down.
async fn write(shard: &Shard, io: &Io, bytes: Bytes) -> bool {
    let sealed = match io.tls.borrow_mut().as_mut() {
        None => None,
        Some(tls) => {
            let mut out = Vec::with_capacity(bytes.len() + 64);
            match tls.seal(&bytes, &mut out) {
                Ok(()) => Some(Bytes::from(out)),
                Err(e) => {
                    metrics::inc(&shard.metrics.tls_errors_total);
                    tracing::debug!(shard = shard.id.get(), "TLS: {e}");
                    return false;
                }
            }
        }
    };
    write_raw(shard, &io.stream, sealed.unwrap_or(bytes)).await
}

/// [`write`] of bytes as they go on the wire.
async fn write_raw(shard: &Shard, stream: &TcpStream, bytes: Bytes) -> bool {
    let stall = Duration::from_millis(shard.config.handshake_timeout_ms);
    let mut rest = bytes;
    while !rest.is_empty() {
        match until(stream, Instant::now() + stall, stream.write(rest).submit()).await {
            None => {
                metrics::inc(&shard.metrics.timeouts_total);
                return false;
            }
            Some((Ok(0) | Err(_), _)) => return false,
            Some((Ok(n), unsent)) => {
                rest = unsent;
                rest.advance(n);
            }
        }
    }
    true
}

/// A refusal that completes the handshake, sends `frame`, then drops the TCP connection
/// without a close frame (the dialect's own way of refusing).
async fn refuse_after_upgrade(
    shard: &Shard,
    stream: &Io,
    head: &RequestHead,
    frame: Bytes,
) -> bool {
    let accepted = match upgrade::accept_key(head) {
        Ok(key) => switching_protocols(&key, shard.id, None),
        Err(e) => {
            let _ = write(shard, stream, e.render(false)).await;
            return false;
        }
    };
    let mut out = Vec::with_capacity(accepted.len() + frame.len());
    out.extend_from_slice(&accepted);
    out.extend_from_slice(&frame);
    let _ = write(shard, stream, Bytes::from(out)).await;
    let _ = stream.stream.shutdown(std::net::Shutdown::Both);
    false
}

/// Answers an upgrade with the dialect's refusal; always false (the connection ends).
async fn answer_refusal(shard: &Shard, stream: &Io, head: &RequestHead, refusal: Refusal) -> bool {
    match refusal {
        Refusal::Http(answer) => {
            let _ = write(shard, stream, answer).await;
            false
        }
        Refusal::AfterUpgrade(frame) => refuse_after_upgrade(shard, stream, head, frame).await,
    }
}

/// An upgrade request on its way to the shard that must serve it ([`Dialect::home_shard`]):
/// nothing was answered yet.
///
/// [`Dialect::home_shard`]: crate::dialect::Dialect::home_shard
#[derive(Debug)]
pub struct Handoff {
    /// The socket (its own descriptor).
    socket: std::net::TcpStream,
    /// The parsed request head.
    head: RequestHead,
    /// Bytes read past the head (plaintext).
    buf: BytesMut,
    /// The connection's TLS state, on a TLS listener.
    tls: Option<TlsSession>,
}

/// Serves a handed-off upgrade request on this shard (its home): counted as this shard's
/// connection from here on.
pub fn adopt(shard: &Rc<Shard>, handoff: Handoff) {
    let shard = shard.clone();
    tokio_uring::spawn(async move {
        metrics::inc(&shard.metrics.connections);
        let Handoff { socket, head, buf, tls } = handoff;
        let io = Io { stream: Rc::new(TcpStream::from_std(socket)), tls: RefCell::new(tls) };
        if !upgrade_to_websocket(&shard, io, head, buf, true).await {
            metrics::dec(&shard.metrics.connections);
        }
    });
}

/// Upgrades the connection to the dialect's WebSocket session (true), or answers the refusal
/// (false). `adopted`: the request was handed here by another shard, so it is served here.
async fn upgrade_to_websocket(
    shard: &Rc<Shard>,
    io: Io,
    head: RequestHead,
    buf: BytesMut,
    adopted: bool,
) -> bool {
    let stream = &io;
    let Some(dialect) = dialect::at_path(&head.path, &shard.config) else {
        let _ = write(
            shard,
            stream,
            response::json_error(404, "not_found", "no WebSocket endpoint at this path", false),
        )
        .await;
        return false;
    };
    if shard.shutting_down.get() {
        let _ = write(
            shard,
            stream,
            response::json_error(503, "shutting_down", "the server is shutting down", false),
        )
        .await;
        return false;
    }
    let protocol = dialect.get();
    match protocol.home_shard(&head, shard.shard_count) {
        // A socket never crosses nodes: a home on another node is served here (and is unknown).
        Some(home) if home != shard.id && !adopted && shard.topology.local_of(home).is_some() => {
            // The request continues state that lives on `home`: serve it there. This shard's
            // count of it ends here (the caller's), the home's starts in `adopt`.
            let Some(socket) = owned_socket(&io.stream) else {
                return false;
            };
            let tls = io.tls.into_inner();
            drop(io.stream);
            metrics::inc(&shard.metrics.upgrades_handed_off_total);
            let handoff = Handoff { socket, head, buf, tls };
            shard.send(home, crate::mesh::Command::Adopt(Box::new(handoff)));
            return false;
        }
        _ => {}
    }
    let (identity, flags) = match protocol.credentials(&head) {
        Credentials::None | Credentials::InBand => (None, 0),
        Credentials::Token(token) => {
            let admitted = shard.authenticate(token.as_deref()).and_then(|identity| match protocol
                .admit(&identity)
            {
                Some(flags) => Ok((identity, flags)),
                None => Err("the token may not connect here".to_string()),
            });
            match admitted {
                Ok((identity, flags)) => (Some(identity), flags),
                Err(reason) => {
                    let refusal = protocol.refuse(RefuseReason::Unauthorized(&reason));
                    return answer_refusal(shard, stream, &head, refusal).await;
                }
            }
        }
    };
    // The user's connection limit is refused here, before the 101, in the dialect's shape.
    if let Some(identity) = &identity {
        match shard.may_attach(&UserId::new(&identity.user)) {
            Ok(()) => {}
            Err(AttachRefused::UserFull { max }) => {
                let refusal = protocol.refuse(RefuseReason::TooManyConnections { max });
                return answer_refusal(shard, stream, &head, refusal).await;
            }
            Err(AttachRefused::ShardFull | AttachRefused::AlreadyAttached) => {
                let _ = write(
                    shard,
                    stream,
                    response::json_error(503, "too_many_connections", "this server is full", false),
                )
                .await;
                return false;
            }
        }
    }
    let session = match protocol.session_for(shard, &head) {
        Ok(session) => session,
        Err(refusal) => return answer_refusal(shard, stream, &head, refusal).await,
    };
    // Every event connection has a session, so the sessions count them all (echo ones too).
    if shard.conn.ws.len() >= shard.config.connections_per_shard_max {
        metrics::inc(&shard.metrics.connections_refused_total);
        let _ = write(
            shard,
            stream,
            response::json_error(503, "too_many_connections", "this server is full", false),
        )
        .await;
        return false;
    }
    // permessage-deflate: the first acceptable offer, unless it is switched off.
    let deflate = match shard.config.deflate {
        Switch::On => extension::negotiate(head.headers_named("sec-websocket-extensions")),
        Switch::Off => None,
    };
    let accepted = match upgrade::accept_key(&head) {
        Ok(key) => switching_protocols(&key, shard.id, deflate.as_ref()),
        Err(e) => {
            let _ = write(shard, stream, e.render(false)).await;
            return false;
        }
    };
    let Some(socket) = owned_socket(&io.stream) else {
        return false;
    };
    let mut conn = Conn::new(dialect, socket, shard.conn.writer.clone());
    if let Some(agreement) = &deflate {
        let bits = agreement.server_window_bits;
        let window_bits = if bits >= crate::ws::deflate::WINDOW_BITS_MIN { bits } else { 0 };
        conn.deflate = Deflate { inbound: true, window_bits };
    }
    let conn = Rc::new(conn);
    if let Some(identity) = identity {
        // Registered before the 101, whose arrival tells the client it is subscribed: frames
        // for it queue behind the 101 until it is written (`hold`).
        conn.hold();
        if let Err(refused) = shard.attach(&conn, &identity, flags) {
            // Another upgrade of the user (or of the shard) took the last slot since
            // `may_attach`: refuse in the dialect's shape.
            let refusal = match refused {
                AttachRefused::UserFull { max } => {
                    protocol.refuse(RefuseReason::TooManyConnections { max })
                }
                AttachRefused::ShardFull | AttachRefused::AlreadyAttached => Refusal::Http(
                    response::json_error(503, "too_many_connections", "this server is full", false),
                ),
            };
            return answer_refusal(shard, &io, &head, refusal).await;
        }
        if !shard.settle_subscriptions(conn.user()).await {
            shard.detach(&conn);
            let _ = write(
                shard,
                &io,
                response::json_error(503, "unavailable", "the server is overloaded", false),
            )
            .await;
            return false;
        }
    }
    if !write(shard, &io, accepted).await {
        shard.detach(&conn);
        return false;
    }
    // The TLS state moves to the connection before anything is written through it (it is
    // held, and its session does not serve it yet).
    if let Some(tls) = io.tls.into_inner() {
        let _ = conn.set_tls(tls);
    }
    conn.release();
    drop(io.stream);
    // The head's headers are not needed any more: free them before the long-lived session.
    drop(head);
    shard.conn.ws.open(shard, conn, session, buf);
    true
}

/// The upgraded socket as a std socket of its own (a duplicate descriptor), for the shard's
/// ring; the tokio-uring stream is dropped after this. It stays blocking: only io_uring
/// operations and `shutdown` use it, and io_uring never blocks on a socket.
fn owned_socket(stream: &TcpStream) -> Option<std::net::TcpStream> {
    use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
    // SAFETY: the stream's descriptor stays open while `stream` is borrowed.
    let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    Some(std::net::TcpStream::from(fd.as_fd().try_clone_to_owned().ok()?))
}

/// The 101 for `Sec-WebSocket-Accept` value `key`, with `X-Roomcast-Shard` (tests and
/// operators see where a socket lives) and the negotiated `Sec-WebSocket-Extensions`, if any:
/// written once into a buffer of its final size.
fn switching_protocols(key: &str, shard: ShardId, deflate: Option<&Agreement>) -> Bytes {
    use std::io::Write;
    const EXTENSIONS: &[u8] = b"\r\nSec-WebSocket-Extensions: ";
    const SHARD: &[u8] = b"\r\nX-Roomcast-Shard: ";
    let extension = deflate.map_or(&[][..], |agreement| agreement.response.as_bytes());
    let mut out = Vec::with_capacity(
        upgrade::SWITCHING.len()
            + key.len()
            + EXTENSIONS.len()
            + extension.len()
            + SHARD.len()
            + 20
            + 4,
    );
    out.extend_from_slice(upgrade::SWITCHING);
    out.extend_from_slice(key.as_bytes());
    if deflate.is_some() {
        out.extend_from_slice(EXTENSIONS);
        out.extend_from_slice(extension);
    }
    out.extend_from_slice(SHARD);
    let _ = write!(out, "{}", shard.0);
    out.extend_from_slice(b"\r\n\r\n");
    Bytes::from(out)
}
