//! The WebSocket path's read seam: ciphertext the shard's ring received → plaintext appended
//! to the buffer the session decodes frames from. rustls decrypts in place, in the shard's one
//! ciphertext buffer (made once per shard thread), so an idle TLS connection holds none;
//! records the read produced (a key update's answer, an alert) go to the connection's queue.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::BytesMut;

use super::session::{Progress, TlsSession};
use crate::limits::WS_RECV_BUFFER_BYTES;
use crate::metrics::{self, ShardMetrics};
use crate::net::conn::Conn;

thread_local! {
    /// The shard's ciphertext read buffer (zeroed once, reused by every read).
    static CIPHERTEXT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Decrypts `ciphertext` (bytes the shard's ring received for `conn`) and appends the
/// plaintext to `plain`; records the read produced go to the connection's queue. False when
/// the connection is over: a TLS error (counted), or the peer's close_notify (what came
/// before it is in `plain` and still handled).
pub fn decrypt(
    conn: &Rc<Conn>,
    tls: &RefCell<TlsSession>,
    ciphertext: &[u8],
    plain: &mut BytesMut,
    metrics: &ShardMetrics,
) -> bool {
    CIPHERTEXT.with(|scratch| {
        // rustls decrypts in place: a copy of the received bytes in the shard's buffer.
        let mut scratch = scratch.borrow_mut();
        scratch.clear();
        scratch.extend_from_slice(ciphertext);
        let mut session = tls.borrow_mut();
        let read = session.read(&mut scratch[..], plain);
        let output = session.take_output();
        drop(session);
        if scratch.capacity() > 4 * WS_RECV_BUFFER_BYTES {
            *scratch = Vec::new();
        }
        if let Some(records) = output {
            conn.send_sealed(records);
        }
        match read {
            Ok(Progress::Open) => true,
            Ok(Progress::Closed) => false,
            Err(e) => {
                metrics::inc(&metrics.tls_errors_total);
                tracing::debug!("TLS: {e}");
                false
            }
        }
    })
}
