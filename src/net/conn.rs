//! A WebSocket connection's shared state: who it is, its outbound queue of shared frames, and
//! the writer that drains the whole queue with one `writev`.
//!
//! Invariants: queued plus in-flight bytes never exceed `outbound_bytes_max` except for one
//! close frame; at most one writer task runs per connection (`flushing`); frames are written
//! whole and in order; once `closed`, nothing but the close frame is ever queued.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::Shutdown;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use tokio_uring::net::TcpStream;

use crate::dialect::DialectKind;
use crate::metrics::{self, ShardMetrics};
use crate::model::ids::now_ms;
use crate::model::UserId;
use crate::ws::close::CLOSE_POLICY;
use crate::ws::frame;

/// Most buffers handed to one `writev` (the kernel's IOV_MAX).
const IOV_MAX: usize = 1024;

/// The queue of frames waiting to be written.
#[derive(Debug, Default)]
struct Outbound {
    frames: VecDeque<Bytes>,
    /// Bytes queued plus bytes handed to an unfinished `writev`.
    bytes: usize,
    flushing: bool,
    /// No more frames may be queued (a close frame is queued or the socket failed).
    closed: bool,
    /// Half-close the socket once the queue is written.
    shutdown_when_flushed: bool,
}

/// One connection that receives frames.
pub struct Conn {
    /// Index in the shard's slab (`usize::MAX` when not registered for events).
    pub key: usize,
    /// The authenticated user.
    pub user: UserId,
    /// The token's session id (JWT `sid`, else `jti`).
    pub session: Option<String>,
    /// The wire protocol it speaks.
    pub dialect: DialectKind,
    /// The socket, shared by the reader and the writer.
    pub stream: Rc<TcpStream>,
    out: RefCell<Outbound>,
    outbound_bytes_max: usize,
    /// When a frame last arrived, ms.
    pub last_seen_ms: Cell<u64>,
    /// When the server started closing it, ms (0 while open).
    pub closing_since_ms: Cell<u64>,
    /// Dialect protocol state bits (osu!: `dialect::osu::{CHAT_ACTIVE, SCOPE_ALL}`).
    pub flags: Cell<u8>,
    flushed: tokio::sync::Notify,
    metrics: Arc<ShardMetrics>,
}

impl Conn {
    /// A connection of `user` speaking `dialect` on `stream`.
    pub fn new(
        key: usize,
        user: UserId,
        session: Option<String>,
        dialect: DialectKind,
        stream: Rc<TcpStream>,
        outbound_bytes_max: usize,
        metrics: Arc<ShardMetrics>,
    ) -> Conn {
        crate::dialect::connection_opened(dialect);
        Conn {
            key,
            user,
            session,
            dialect,
            stream,
            out: RefCell::new(Outbound::default()),
            outbound_bytes_max,
            last_seen_ms: Cell::new(now_ms()),
            closing_since_ms: Cell::new(0),
            flags: Cell::new(0),
            flushed: tokio::sync::Notify::new(),
            metrics,
        }
    }

    /// Queues a complete frame; closes the connection as a slow consumer when the queue would
    /// pass its bound. Never blocks and never copies the frame.
    pub fn send(self: &Rc<Self>, frame: Bytes) {
        let mut out = self.out.borrow_mut();
        if out.closed {
            return;
        }
        if out.bytes + frame.len() > self.outbound_bytes_max {
            drop(out);
            metrics::inc(&self.metrics.slow_consumer_closes_total);
            self.close_now(CLOSE_POLICY, "slow consumer");
            return;
        }
        out.bytes += frame.len();
        out.frames.push_back(frame);
        metrics::inc(&self.metrics.frames_out_total);
        if !out.flushing {
            out.flushing = true;
            drop(out);
            tokio_uring::spawn(flush(self.clone()));
        }
    }

    /// Starts the closing handshake: queues a close frame after what is queued, then half-closes.
    pub fn close(self: &Rc<Self>, code: u16, reason: &str) {
        self.queue_close(frame::close(code, reason), false);
    }

    /// Answers a peer's close frame (echoing its code, or an empty close when it sent none).
    pub fn answer_close(self: &Rc<Self>, code: Option<u16>) {
        let close = match code {
            Some(code) => frame::close(code, ""),
            None => Bytes::from_static(&[0x88, 0x00]),
        };
        self.queue_close(close, false);
    }

    /// Drops what is still queued (not what is being written) and closes.
    fn close_now(self: &Rc<Self>, code: u16, reason: &str) {
        self.queue_close(frame::close(code, reason), true);
    }

    fn queue_close(self: &Rc<Self>, close: Bytes, drop_queued: bool) {
        let mut out = self.out.borrow_mut();
        if out.closed {
            return;
        }
        if drop_queued {
            let dropped: usize = out.frames.drain(..).map(|f| f.len()).sum();
            out.bytes -= dropped;
        }
        out.closed = true;
        out.shutdown_when_flushed = true;
        out.bytes += close.len();
        out.frames.push_back(close);
        self.closing_since_ms.set(now_ms());
        if !out.flushing {
            out.flushing = true;
            drop(out);
            tokio_uring::spawn(flush(self.clone()));
        }
    }

    /// True once a close frame is queued or the socket failed.
    pub fn is_closed(&self) -> bool {
        self.out.borrow().closed
    }

    /// Waits until the writer has nothing left to write (bounded by the caller).
    pub async fn flushed(&self) {
        let notified = self.flushed.notified();
        if !self.out.borrow().flushing {
            return;
        }
        notified.await;
    }

    /// Ends the connection at once: both directions, so a pending read returns.
    pub fn kill(&self) {
        let mut out = self.out.borrow_mut();
        out.closed = true;
        out.frames.clear();
        drop(out);
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        crate::dialect::connection_closed(self.dialect);
    }
}

/// The writer: drains the queue, many frames per `writev`, until it is empty.
async fn flush(conn: Rc<Conn>) {
    loop {
        let batch: Vec<Bytes> = {
            let mut out = conn.out.borrow_mut();
            if out.frames.is_empty() {
                out.flushing = false;
                let shutdown = out.shutdown_when_flushed;
                drop(out);
                conn.flushed.notify_waiters();
                if shutdown {
                    let _ = conn.stream.shutdown(Shutdown::Write);
                }
                return;
            }
            let n = out.frames.len().min(IOV_MAX);
            out.frames.drain(..n).collect()
        };
        if !write_batch(&conn, batch).await {
            conn.kill();
            let mut out = conn.out.borrow_mut();
            out.flushing = false;
            out.bytes = 0;
            drop(out);
            conn.flushed.notify_waiters();
            return;
        }
    }
}

/// Writes every buffer of `bufs`, resuming after short writes. False when the socket failed.
async fn write_batch(conn: &Conn, mut bufs: Vec<Bytes>) -> bool {
    loop {
        let total: usize = bufs.iter().map(Bytes::len).sum();
        let (result, returned) = if bufs.len() == 1 {
            let Some(single) = bufs.pop() else {
                return true;
            };
            let (result, buf) = conn.stream.write(single).submit().await;
            (result, vec![buf])
        } else {
            conn.stream.writev(bufs).await
        };
        metrics::inc(&conn.metrics.writev_total);
        let written = match result {
            Ok(n) if n > 0 => n,
            _ => return false,
        };
        conn.out.borrow_mut().bytes -= written;
        metrics::add(&conn.metrics.bytes_out_total, written as u64);
        if written == total {
            return true;
        }
        bufs = advance(returned, written);
    }
}

/// The unwritten remainder of `bufs` after `written` bytes went out.
fn advance(bufs: Vec<Bytes>, mut written: usize) -> Vec<Bytes> {
    let mut rest = Vec::with_capacity(bufs.len());
    for buf in bufs {
        if written >= buf.len() {
            written -= buf.len();
        } else {
            rest.push(buf.slice(written..));
            written = 0;
        }
    }
    rest
}

#[cfg(test)]
mod tests {
    use super::advance;
    use bytes::Bytes;

    #[test]
    fn advance_keeps_the_unwritten_tail_in_order() {
        let bufs =
            vec![Bytes::from_static(b"abc"), Bytes::from_static(b"defg"), Bytes::from_static(b"h")];
        let rest = advance(bufs, 5);
        assert_eq!(rest, vec![Bytes::from_static(b"fg"), Bytes::from_static(b"h")]);
    }
}
