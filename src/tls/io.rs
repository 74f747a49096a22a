//! The WebSocket path's read seam: a readable TLS socket → plaintext appended to the buffer
//! the session decodes frames from. Ciphertext is read into the shard's one ciphertext buffer
//! (`WS_READ_SCRATCH_BYTES`, made once per shard thread), so an idle TLS connection holds none;
//! records the read produced (a key update's answer, an alert) go to the connection's queue.

use std::cell::RefCell;
use std::io::{self, Read};
use std::rc::Rc;

use bytes::BytesMut;

use super::session::{Progress, TlsSession};
use crate::limits::WS_READ_SCRATCH_BYTES;
use crate::metrics::{self, ShardMetrics};
use crate::net::conn::Conn;

thread_local! {
    /// The shard's ciphertext read buffer (zeroed once, reused by every read).
    static CIPHERTEXT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Reads what `conn`'s socket holds (one read, at most `WS_READ_SCRATCH_BYTES`) and appends
/// its plaintext to `plain`. Returns the ciphertext bytes read (0: the peer is gone or sent
/// close_notify) and whether the read was short (the socket is drained, so edge-triggered
/// readiness will report new bytes).
pub fn recv(
    conn: &Rc<Conn>,
    tls: &RefCell<TlsSession>,
    plain: &mut BytesMut,
    metrics: &ShardMetrics,
) -> io::Result<(usize, bool)> {
    CIPHERTEXT.with(|ciphertext| {
        let mut ciphertext = ciphertext.borrow_mut();
        if ciphertext.len() < WS_READ_SCRATCH_BYTES {
            ciphertext.resize(WS_READ_SCRATCH_BYTES, 0);
        }
        let n = (&conn.socket).read(&mut ciphertext[..])?;
        if n == 0 {
            return Ok((0, true));
        }
        let before = plain.len();
        let mut session = tls.borrow_mut();
        let read = session.read(&mut ciphertext[..n], plain);
        let output = session.take_output();
        drop(session);
        if let Some(records) = output {
            conn.send_sealed(records);
        }
        match read {
            Ok(Progress::Open) => Ok((n, n < ciphertext.len())),
            // What came with the close_notify is still handled; the next read ends it.
            Ok(Progress::Closed) if plain.len() > before => Ok((n, false)),
            Ok(Progress::Closed) => Ok((0, true)),
            Err(e) => {
                metrics::inc(&metrics.tls_errors_total);
                Err(io::Error::new(io::ErrorKind::InvalidData, e))
            }
        }
    })
}
