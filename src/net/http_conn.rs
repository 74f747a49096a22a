//! Serving one accepted connection: HTTP/1.1 requests with keep-alive (the REST API), until it
//! asks for a WebSocket upgrade, which hands the socket to a dialect's session.
//!
//! Limits: the first request head must arrive within `handshake_timeout_ms`, later ones within
//! `idle_timeout_ms`; heads are at most `http_head_bytes_max` (431), bodies at most
//! `rest_body_bytes_max` (413) and only with Content-Length (chunked: 411).

use std::rc::Rc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio_uring::net::TcpStream;

use crate::dialect::{self, Credentials, Refusal};
use crate::http::head::{parse_head, RequestHead};
use crate::http::{response, upgrade};
use crate::metrics;
use crate::model::ShardId;
use crate::net::conn::Conn;
use crate::shard::Shard;

/// Serves the connection until it closes or upgrades.
///
/// An upgraded connection is handed to the shard's sessions (`ws_session`), which need no task
/// per connection, so the HTTP phase's state (the request head, the REST handler's future, the
/// io_uring stream) is freed rather than kept for the socket's whole life; the session's end
/// decrements `connections`.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    metrics::inc(&shard.metrics.connections);
    let stream = Rc::new(stream);
    if !serve_requests(&shard, stream).await {
        metrics::dec(&shard.metrics.connections);
    }
}

/// Serves requests until the connection closes (false) or is upgraded (true).
async fn serve_requests(shard: &Rc<Shard>, stream: Rc<TcpStream>) -> bool {
    let config = shard.config.clone();
    let mut buf = BytesMut::with_capacity(1024);
    let mut wait = Duration::from_millis(config.handshake_timeout_ms);
    loop {
        let head = loop {
            match parse_head(&buf, config.http_head_bytes_max) {
                Ok(Some((head, consumed))) => {
                    buf.advance(consumed);
                    break head;
                }
                Ok(None) => {}
                Err(e) => {
                    let _ = write(&stream, e.render(false)).await;
                    return false;
                }
            }
            buf = match read_more(shard, &stream, buf, wait).await {
                Some(buf) => buf,
                None => return false,
            };
        };
        metrics::inc(&shard.metrics.http_requests_total);
        if upgrade::is_websocket_upgrade(&head) {
            return upgrade_to_websocket(shard, stream, head, buf).await;
        }
        let Some(body) = read_body(shard, &stream, &head, &mut buf, wait).await else {
            return false;
        };
        let keep_alive = head.keep_alive && !shard.shutting_down.get();
        let reply = match dialect::http_at(&head.path, &shard.config) {
            Some(dialect) => dialect.get().http(shard, &head, body).await,
            None => crate::rest::handle(shard, &head, body, keep_alive).await,
        };
        if !write(&stream, reply).await || !keep_alive {
            return false;
        }
        wait = Duration::from_millis(config.idle_timeout_ms);
    }
}

/// Reads more bytes into `buf` within `wait`; `None` on EOF, error or timeout.
async fn read_more(
    shard: &Shard,
    stream: &TcpStream,
    mut buf: BytesMut,
    wait: Duration,
) -> Option<BytesMut> {
    if buf.capacity() - buf.len() < 512 {
        buf.reserve(buf.len().max(1024));
    }
    match tokio::time::timeout(wait, crate::net::read_appending(stream, buf)).await {
        Err(_) => {
            metrics::inc(&shard.metrics.timeouts_total);
            None
        }
        Ok((Ok(0) | Err(_), _)) => None,
        Ok((Ok(n), buf)) => {
            metrics::add(&shard.metrics.bytes_in_total, n as u64);
            Some(buf)
        }
    }
}

/// Reads a Content-Length body; answers and returns `None` when it is refused or never comes.
async fn read_body(
    shard: &Shard,
    stream: &TcpStream,
    head: &RequestHead,
    buf: &mut BytesMut,
    wait: Duration,
) -> Option<Bytes> {
    if head.chunked {
        let _ = write(
            stream,
            response::json_error(411, "length_required", "send a Content-Length body", false),
        )
        .await;
        return None;
    }
    if head.content_length > shard.config.rest_body_bytes_max {
        let message = format!("the body is over {} bytes", shard.config.rest_body_bytes_max);
        let _ = write(stream, response::json_error(413, "body_too_large", &message, false)).await;
        return None;
    }
    while buf.len() < head.content_length {
        let taken = std::mem::take(buf);
        *buf = read_more(shard, stream, taken, wait).await?;
    }
    Some(buf.split_to(head.content_length).freeze())
}

/// Writes a whole response; false when the socket failed.
async fn write(stream: &TcpStream, bytes: Bytes) -> bool {
    stream.write_all(bytes).await.0.is_ok()
}

/// A refusal that completes the handshake, sends `frame`, then drops the TCP connection
/// without a close frame (the dialect's own way of refusing).
async fn refuse_after_upgrade(
    stream: &TcpStream,
    head: &RequestHead,
    shard: ShardId,
    frame: Bytes,
) -> bool {
    let accepted = match upgrade::accept(head) {
        Ok(accepted) => with_shard_header(&accepted, shard),
        Err(e) => {
            let _ = write(stream, e.render(false)).await;
            return false;
        }
    };
    let mut out = Vec::with_capacity(accepted.len() + frame.len());
    out.extend_from_slice(&accepted);
    out.extend_from_slice(&frame);
    let _ = write(stream, Bytes::from(out)).await;
    let _ = stream.shutdown(std::net::Shutdown::Both);
    false
}

async fn upgrade_to_websocket(
    shard: &Rc<Shard>,
    stream: Rc<TcpStream>,
    head: RequestHead,
    buf: BytesMut,
) -> bool {
    let Some(dialect) = dialect::at_path(&head.path, &shard.config) else {
        let _ = write(
            &stream,
            response::json_error(404, "not_found", "no WebSocket endpoint at this path", false),
        )
        .await;
        return false;
    };
    if shard.shutting_down.get() {
        let _ = write(
            &stream,
            response::json_error(503, "shutting_down", "the server is shutting down", false),
        )
        .await;
        return false;
    }
    let protocol = dialect.get();
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
                    return match protocol.refuse(&reason) {
                        Refusal::Http(answer) => {
                            let _ = write(&stream, answer).await;
                            false
                        }
                        Refusal::AfterUpgrade(frame) => {
                            refuse_after_upgrade(&stream, &head, shard.id, frame).await
                        }
                    };
                }
            }
        }
    };
    let session = match protocol.session_for(&head) {
        Ok(session) => session,
        Err(Refusal::Http(answer)) => {
            let _ = write(&stream, answer).await;
            return false;
        }
        Err(Refusal::AfterUpgrade(frame)) => {
            return refuse_after_upgrade(&stream, &head, shard.id, frame).await;
        }
    };
    // Every event connection has a session, so the sessions count them all (echo ones too).
    if shard.conn.ws.len() >= shard.config.connections_per_shard_max {
        metrics::inc(&shard.metrics.connections_refused_total);
        let _ = write(
            &stream,
            response::json_error(503, "too_many_connections", "this server is full", false),
        )
        .await;
        return false;
    }
    let accepted = match upgrade::accept(&head) {
        Ok(accepted) => with_shard_header(&accepted, shard.id),
        Err(e) => {
            let _ = write(&stream, e.render(false)).await;
            return false;
        }
    };
    if !write(&stream, accepted).await {
        return false;
    }
    let Some(socket) = nonblocking_socket(&stream) else {
        return false;
    };
    drop(stream);
    let conn = Rc::new(Conn::new(dialect, socket, shard.conn.writer.clone()));
    if let Some(identity) = identity {
        if !shard.attach(&conn, &identity, flags) {
            metrics::inc(&shard.metrics.connections_refused_total);
            return false;
        }
    }
    // The head's headers are not needed any more: free them before the long-lived session.
    drop(head);
    shard.conn.ws.open(shard, conn, session, buf);
    true
}

/// The upgraded socket as a nonblocking std socket of its own (a duplicate descriptor), for
/// the readiness-driven session; the io_uring stream is dropped after this.
fn nonblocking_socket(stream: &TcpStream) -> Option<std::net::TcpStream> {
    use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
    // SAFETY: the stream's descriptor stays open while `stream` is borrowed.
    let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    let socket = std::net::TcpStream::from(fd.as_fd().try_clone_to_owned().ok()?);
    socket.set_nonblocking(true).ok()?;
    Some(socket)
}

/// Adds `X-Roomcast-Shard` to a 101 response (tests and operators see where a socket lives).
fn with_shard_header(accepted: &[u8], shard: ShardId) -> Bytes {
    let head = accepted.strip_suffix(b"\r\n\r\n").unwrap_or(accepted);
    let mut out = Vec::with_capacity(accepted.len() + 24);
    out.extend_from_slice(head);
    out.extend_from_slice(format!("\r\nX-Roomcast-Shard: {shard}\r\n\r\n").as_bytes());
    Bytes::from(out)
}
