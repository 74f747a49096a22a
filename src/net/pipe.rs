//! In-process connections: a [`Conn`] whose client is a task of this shard instead of a remote
//! WebSocket peer. The connection's socket is one end of a Unix socketpair served like any
//! upgraded socket (the shard's sessions read it, the writer writes it, the dialect's
//! `Session` handles its messages, `Shard::attach` registers it for events), so the core's
//! delivery reaches it unchanged; the other end is the [`Pipe`], through which the task sends
//! client messages (masked text frames) and reads what the server sent (text payloads).
//!
//! Meant for transports that are not a WebSocket (HTTP long-polling): the dialect's HTTP
//! handler moves packets between HTTP requests and its pipe.
//!
//! Invariants: one task reads a pipe ([`Pipe::next`]); frames are written whole; the pipe's end
//! closing (or the connection's) ends both.

use std::cell::RefCell;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;

use bytes::{Buf, Bytes, BytesMut};

use crate::dialect::{DialectId, Session};
use crate::metrics;
use crate::net::conn::Conn;
use crate::shard::Shard;

/// The client end of an in-process connection.
pub struct Pipe {
    peer: tokio_uring::net::UnixStream,
    /// Bytes read but not yet a whole frame (taken out while a read is in flight).
    read: RefCell<BytesMut>,
    /// The server side's connection.
    pub conn: Rc<Conn>,
}

/// Opens an in-process connection speaking `dialect`, served by `session`; `None` at the
/// shard's connection limit or when the socketpair cannot be made.
pub fn open(shard: &Rc<Shard>, dialect: DialectId, session: Box<dyn Session>) -> Option<Pipe> {
    if shard.conn.ws.len() >= shard.config.connections_per_shard_max {
        metrics::inc(&shard.metrics.connections_refused_total);
        return None;
    }
    let (server, client) = std::os::unix::net::UnixStream::pair().ok()?;
    server.set_nonblocking(true).ok()?;
    // SAFETY: the descriptor is a connected stream socket we own; `Conn` only sends,
    // vectors-sends and shuts it down, which a Unix stream socket supports like a TCP one.
    let socket = unsafe { std::net::TcpStream::from_raw_fd(server.into_raw_fd()) };
    let conn = Rc::new(Conn::new(dialect, socket, shard.conn.writer.clone()));
    metrics::inc(&shard.metrics.connections);
    shard.conn.ws.open(shard, conn.clone(), session, BytesMut::new());
    let peer = tokio_uring::net::UnixStream::from_std(client);
    Some(Pipe { peer, read: RefCell::new(BytesMut::new()), conn })
}

impl Pipe {
    /// Sends one client text message (a masked frame); false when the connection is gone.
    pub async fn send_text(&self, text: &[u8]) -> bool {
        let mut frame = Vec::with_capacity(text.len() + 14);
        frame.push(0x81);
        match text.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= usize::from(u16::MAX) => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        // A zero mask key: the payload goes as is.
        frame.extend_from_slice(&[0, 0, 0, 0]);
        frame.extend_from_slice(text);
        self.peer.write_all(frame).await.0.is_ok()
    }

    /// The next text message the server sent; `None` once it closed or the connection ended.
    /// Control frames are skipped.
    pub async fn next(&self) -> Option<Bytes> {
        let mut buf = std::mem::take(&mut *self.read.borrow_mut());
        loop {
            if let Some((op, payload)) = take_frame(&mut buf) {
                match op {
                    0x1 | 0x2 => {
                        *self.read.borrow_mut() = buf;
                        return Some(payload);
                    }
                    0x8 => return None,
                    _ => continue,
                }
            }
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(4096);
            }
            let (result, back) = crate::net::read_appending_unix(&self.peer, buf).await;
            buf = back;
            match result {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Ends the connection (both directions).
    pub fn close(&self) {
        self.conn.kill();
    }
}

/// Splits one whole unmasked server frame off `buf`: its opcode and payload.
fn take_frame(buf: &mut BytesMut) -> Option<(u8, Bytes)> {
    if buf.len() < 2 {
        return None;
    }
    let op = buf[0] & 0x0f;
    let (len, header) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        127 if buf.len() >= 10 => {
            let mut n = [0u8; 8];
            n.copy_from_slice(&buf[2..10]);
            (usize::try_from(u64::from_be_bytes(n)).ok()?, 10)
        }
        126 | 127 => return None,
        n => (usize::from(n), 2),
    };
    if buf.len() < header + len {
        return None;
    }
    buf.advance(header);
    Some((op, buf.split_to(len).freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_frames_split_whole() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&crate::ws::frame::text(b"hi"));
        buf.extend_from_slice(&crate::ws::frame::text(&[b'x'; 300]));
        buf.extend_from_slice(&crate::ws::frame::close(1000, ""));
        let whole = buf.len();
        let mut part = BytesMut::from(&buf[..whole - 1]);
        assert_eq!(take_frame(&mut part), Some((1, Bytes::from_static(b"hi"))));
        assert_eq!(take_frame(&mut part).map(|(op, p)| (op, p.len())), Some((1, 300)));
        assert_eq!(take_frame(&mut part), None, "a partial close frame waits");
        assert_eq!(take_frame(&mut buf).map(|f| f.0), Some(1));
        assert_eq!(take_frame(&mut buf).map(|f| f.0), Some(1));
        assert_eq!(take_frame(&mut buf).map(|f| f.0), Some(8));
        assert!(buf.is_empty());
    }
}
