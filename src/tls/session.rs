//! One connection's TLS state: rustls's unbuffered server connection plus the bytes that must
//! outlive one read (an incomplete record) or one write (records rustls produced while
//! reading: handshake flights, alerts, key updates).
//!
//! The two seams with the I/O code:
//! - [`TlsSession::read`]: ciphertext just read (in the caller's buffer, the shard's shared one
//!   on the WebSocket path) → plaintext appended to the buffer the caller already parses; the
//!   records rustls wants sent wait in [`TlsSession::take_output`];
//! - [`TlsSession::seal`] / [`TlsSession::seal_frames`]: plaintext to write → ciphertext
//!   records appended to the caller's outbound bytes (after any waiting output, so the stream
//!   stays in order).
//!
//! Invariants: between reads, `partial` holds less than one record plus a handshake flight
//! (at most `TLS_PARTIAL_BYTES_MAX`, else the connection fails) and no allocation when empty;
//! `output` is empty and unallocated once taken; every record rustls encodes goes out exactly
//! once and in the order it was made. Early data (0-RTT) is never accepted.
//! rustls 0.23 hands each decrypted record as its own small allocation (in-place decryption is
//! a TODO of its unbuffered API), copied here into the caller's buffer and freed at once.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, UnbufferedStatus, WriteTraffic,
};
use rustls::ServerConfig;

use crate::limits::{TLS_PARTIAL_BYTES_MAX, TLS_SEAL_BYTES_MAX};

/// Largest plaintext in one record (rustls's default fragment size).
const RECORD_PLAINTEXT_MAX: usize = 16 * 1024;
/// Most bytes a record adds to its plaintext: header 5, TLS 1.2 explicit nonce 8, AEAD tag 16,
/// TLS 1.3 inner content type 1.
const RECORD_OVERHEAD_MAX: usize = 5 + 8 + 16 + 1;
/// Most state changes one call works through before giving up (a rustls bug, not input).
const STEPS_MAX: usize = 64;

/// What the peer's bytes left the connection in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Open (handshaking, or carrying application data).
    Open,
    /// The peer sent close_notify: nothing more will be read.
    Closed,
}

/// A TLS failure: the handshake or a record failed (the peer's fault, typically); the
/// connection must end (after sending [`TlsSession::take_output`], which may hold an alert).
#[derive(Debug)]
pub struct TlsError(String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> Self {
        TlsError(e.to_string())
    }
}

/// One connection's TLS state, owned by its shard (moved whole when the connection is handed
/// to another shard).
pub struct TlsSession {
    /// rustls's state: keys, sequence numbers, the handshake in progress.
    conn: Box<UnbufferedServerConnection>,
    /// Ciphertext of an incomplete record, kept for the next read (empty, unallocated, between
    /// whole records).
    partial: BytesMut,
    /// Records to send before anything sealed later (empty, unallocated, once taken).
    output: Vec<u8>,
}

impl fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSession")
            .field("handshaking", &self.conn.is_handshaking())
            .field("partial", &self.partial.len())
            .field("output", &self.output.len())
            .finish()
    }
}

thread_local! {
    /// The shard's staging buffer for [`TlsSession::seal_frames`]: several small frames become
    /// one plaintext run, so they go out in as few records as fit. At most
    /// `TLS_SEAL_BYTES_MAX` plus one frame is kept.
    static STAGING: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl TlsSession {
    /// A new server-side connection with `config`; the handshake runs as bytes are read.
    pub fn new(config: Arc<ServerConfig>) -> Result<TlsSession, TlsError> {
        Ok(TlsSession {
            conn: Box::new(UnbufferedServerConnection::new(config)?),
            partial: BytesMut::new(),
            output: Vec::new(),
        })
    }

    /// True until the handshake completed.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The application protocol agreed by ALPN, if the client offered one.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// Bytes held between calls (an incomplete record and unsent output): 0 when idle.
    pub fn held_bytes(&self) -> usize {
        self.partial.capacity() + self.output.capacity()
    }

    /// Decrypts `ciphertext` (bytes just read; rustls may overwrite them) after any incomplete
    /// record kept from the last read, appending the plaintext to `plain`. Records rustls
    /// wants sent (a handshake flight, an alert) wait in [`TlsSession::take_output`]: the
    /// caller sends them before it waits for more bytes.
    pub fn read(
        &mut self,
        ciphertext: &mut [u8],
        plain: &mut BytesMut,
    ) -> Result<Progress, TlsError> {
        let TlsSession { conn, partial, output } = self;
        let result = if partial.is_empty() {
            let (consumed, result) = process(conn, ciphertext, plain, output);
            if result.is_ok() && consumed < ciphertext.len() {
                partial.extend_from_slice(&ciphertext[consumed..]);
            }
            result
        } else {
            partial.extend_from_slice(ciphertext);
            let (consumed, result) = process(conn, &mut partial[..], plain, output);
            partial.advance(consumed.min(partial.len()));
            if partial.is_empty() {
                *partial = BytesMut::new();
            }
            result
        };
        if partial.len() > TLS_PARTIAL_BYTES_MAX {
            return Err(TlsError(format!(
                "more than {TLS_PARTIAL_BYTES_MAX} bytes without a whole TLS record"
            )));
        }
        result
    }

    /// The records waiting to be sent (handshake, alerts), if any.
    pub fn take_output(&mut self) -> Option<Bytes> {
        (!self.output.is_empty()).then(|| Bytes::from(std::mem::take(&mut self.output)))
    }

    /// Encrypts `plain` as application data, appending to `out` (after any waiting output).
    pub fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), TlsError> {
        if !self.output.is_empty() {
            out.append(&mut self.output);
            self.output = Vec::new();
        }
        for _ in 0..STEPS_MAX {
            let UnbufferedStatus { state, .. } = self.conn.process_tls_records(&mut []);
            match state? {
                ConnectionState::WriteTraffic(mut traffic) => {
                    return encrypt(&mut traffic, plain, out).map_err(TlsError::from);
                }
                ConnectionState::EncodeTlsData(mut encoder) => encode(&mut encoder, out)?,
                ConnectionState::TransmitTlsData(transmit) => transmit.done(),
                ConnectionState::PeerClosed => {}
                other => {
                    return Err(TlsError(format!("cannot write application data now ({other:?})")))
                }
            }
        }
        Err(TlsError("TLS state did not settle".into()))
    }

    /// Encrypts the concatenation of `frames` (whole WebSocket frames), appending to `out`:
    /// one run of records rather than one record per frame.
    pub fn seal_frames<'a>(
        &mut self,
        frames: impl IntoIterator<Item = &'a [u8]>,
        out: &mut Vec<u8>,
    ) -> Result<(), TlsError> {
        let mut frames = frames.into_iter();
        let Some(first) = frames.next() else {
            return Ok(());
        };
        let Some(second) = frames.next() else {
            return self.seal(first, out);
        };
        STAGING.with(|staging| {
            let mut staging = staging.borrow_mut();
            staging.clear();
            staging.extend_from_slice(first);
            staging.extend_from_slice(second);
            for frame in frames {
                staging.extend_from_slice(frame);
            }
            let sealed = self.seal(&staging, out);
            if staging.capacity() > 2 * TLS_SEAL_BYTES_MAX {
                *staging = Vec::new();
            }
            sealed
        })
    }

    /// Appends a close_notify alert to `out` (best effort: nothing when the handshake did not
    /// complete).
    pub fn close_notify(&mut self, out: &mut Vec<u8>) {
        let UnbufferedStatus { state, .. } = self.conn.process_tls_records(&mut []);
        if let Ok(ConnectionState::WriteTraffic(mut traffic)) = state {
            let start = out.len();
            out.resize(start + 64, 0);
            match traffic.queue_close_notify(&mut out[start..]) {
                Ok(n) => out.truncate(start + n),
                Err(_) => out.truncate(start),
            }
        }
    }
}

/// Works through the records in `data`: plaintext to `plain`, records to send to `output`.
/// Returns how many bytes of `data` were used up (the rest is an incomplete record).
fn process(
    conn: &mut UnbufferedServerConnection,
    data: &mut [u8],
    plain: &mut BytesMut,
    output: &mut Vec<u8>,
) -> (usize, Result<Progress, TlsError>) {
    let mut consumed = 0;
    // Each record takes at most two steps and is at least 22 bytes long.
    for _ in 0..STEPS_MAX + data.len() / 8 {
        let UnbufferedStatus { discard, state } = conn.process_tls_records(&mut data[consumed..]);
        let step: Result<Option<Progress>, rustls::Error> = match state {
            Err(e) => Err(e),
            Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                let mut read = Ok(None);
                while let Some(record) = traffic.next_record() {
                    match record {
                        Ok(record) => plain.extend_from_slice(record.payload),
                        Err(e) => {
                            read = Err(e);
                            break;
                        }
                    }
                }
                read
            }
            Ok(ConnectionState::EncodeTlsData(mut encoder)) => {
                encode(&mut encoder, output).map(|()| None)
            }
            Ok(ConnectionState::TransmitTlsData(transmit)) => {
                // `output` is sent by the caller before it waits for more bytes.
                transmit.done();
                Ok(None)
            }
            Ok(ConnectionState::BlockedHandshake | ConnectionState::WriteTraffic(_)) => {
                Ok(Some(Progress::Open))
            }
            Ok(ConnectionState::PeerClosed | ConnectionState::Closed) => Ok(Some(Progress::Closed)),
            Ok(other) => Err(rustls::Error::General(format!("unexpected TLS state {other:?}"))),
        };
        consumed += discard;
        match step {
            Ok(None) => {}
            Ok(Some(progress)) => return (consumed, Ok(progress)),
            Err(e) => {
                flush_alerts(conn, output);
                return (consumed, Err(e.into()));
            }
        }
    }
    (consumed, Err(TlsError("TLS state did not settle".into())))
}

/// After a failure, the alert rustls queued (if any) into `output`.
fn flush_alerts(conn: &mut UnbufferedServerConnection, output: &mut Vec<u8>) {
    for _ in 0..STEPS_MAX {
        let UnbufferedStatus { state, .. } = conn.process_tls_records(&mut []);
        match state {
            Ok(ConnectionState::EncodeTlsData(mut encoder)) => {
                if encode(&mut encoder, output).is_err() {
                    return;
                }
            }
            Ok(ConnectionState::TransmitTlsData(transmit)) => transmit.done(),
            _ => return,
        }
    }
}

/// Encodes one handshake record rustls made, appending it to `out`.
fn encode<D>(encoder: &mut EncodeTlsData<'_, D>, out: &mut Vec<u8>) -> Result<(), rustls::Error> {
    let required = match encoder.encode(&mut []) {
        Ok(_) | Err(EncodeError::AlreadyEncoded) => return Ok(()),
        Err(EncodeError::InsufficientSize(size)) => size.required_size,
    };
    let start = out.len();
    out.resize(start + required, 0);
    match encoder.encode(&mut out[start..]) {
        Ok(n) => {
            out.truncate(start + n);
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(rustls::Error::General(e.to_string()))
        }
    }
}

/// Encrypts `plain` into records appended to `out`.
fn encrypt<D>(
    traffic: &mut WriteTraffic<'_, D>,
    plain: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), rustls::Error> {
    let start = out.len();
    let records = plain.len().div_ceil(RECORD_PLAINTEXT_MAX).max(1);
    let mut room = plain.len() + records * RECORD_OVERHEAD_MAX;
    loop {
        out.resize(start + room, 0);
        match traffic.encrypt(plain, &mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(EncryptError::InsufficientSize(size)) if size.required_size > room => {
                room = size.required_size;
            }
            Err(e) => {
                out.truncate(start);
                return Err(rustls::Error::General(e.to_string()));
            }
        }
    }
}
