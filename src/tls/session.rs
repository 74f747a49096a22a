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

#[cfg(test)]
mod tests {
    use super::*;

    /// A server config for a fresh self-signed certificate, and a client config trusting it.
    fn configs() -> (Arc<ServerConfig>, Arc<rustls::ClientConfig>) {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        let cert = params.self_signed(&key).expect("cert");
        // One directory per call: the tests run in parallel in one process.
        static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("roomcast-tls-unit-{}-{call}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, cert.pem()).expect("cert file");
        std::fs::write(&key_path, key.serialize_pem()).expect("key file");
        let server = super::super::load_server_config(&cert_path, &key_path).expect("loads");
        let _ = std::fs::remove_dir_all(&dir);
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).expect("root");
        let client =
            rustls::ClientConfig::builder_with_provider(Arc::new(super::super::crypto_provider()))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
        (server, Arc::new(client))
    }

    /// What the client wants to send.
    fn client_bytes(client: &mut rustls::ClientConnection) -> Vec<u8> {
        let mut out = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut out).expect("write_tls");
        }
        out
    }

    /// Feeds `bytes` to the client and returns the plaintext it then holds.
    fn to_client(client: &mut rustls::ClientConnection, mut bytes: &[u8]) -> Vec<u8> {
        while !bytes.is_empty() {
            client.read_tls(&mut bytes).expect("read_tls");
            client.process_new_packets().expect("client accepts the server's records");
        }
        let mut plain = Vec::new();
        let _ = std::io::Read::read_to_end(&mut client.reader(), &mut plain);
        plain
    }

    /// Feeds `bytes` to the server `step` bytes at a time; the plaintext it decrypted.
    fn to_server(server: &mut TlsSession, bytes: &[u8], step: usize) -> BytesMut {
        let mut plain = BytesMut::new();
        for chunk in bytes.chunks(step) {
            let mut chunk = chunk.to_vec();
            assert_eq!(server.read(&mut chunk, &mut plain).expect("server reads"), Progress::Open);
        }
        plain
    }

    /// A completed handshake (the server fed a byte at a time).
    fn handshake() -> (TlsSession, rustls::ClientConnection) {
        let (server_config, client_config) = configs();
        let mut server = TlsSession::new(server_config).expect("session");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let mut client = rustls::ClientConnection::new(client_config, name).expect("client");
        for _ in 0..10 {
            let hello = client_bytes(&mut client);
            to_server(&mut server, &hello, 1);
            if let Some(answer) = server.take_output() {
                to_client(&mut client, &answer);
            }
            if !client.is_handshaking() && !server.is_handshaking() {
                break;
            }
        }
        assert!(!server.is_handshaking() && !client.is_handshaking(), "handshake completes");
        (server, client)
    }

    #[test]
    fn records_split_anywhere_decrypt_whole_and_an_idle_session_holds_no_buffer() {
        let (mut server, mut client) = handshake();
        assert_eq!(server.held_bytes(), 0, "idle after the handshake");
        for step in [1, 7, 100, 1 << 20] {
            std::io::Write::write_all(&mut client.writer(), b"first message").unwrap();
            std::io::Write::write_all(&mut client.writer(), &[7u8; 40_000]).unwrap();
            let records = client_bytes(&mut client);
            let plain = to_server(&mut server, &records, step);
            assert_eq!(&plain[..13], b"first message", "step {step}");
            assert_eq!(plain.len(), 13 + 40_000, "step {step}");
            assert!(plain[13..].iter().all(|&b| b == 7), "step {step}");
            assert_eq!(server.held_bytes(), 0, "nothing kept once records are whole");
        }
        // Half a record is kept, and only until the rest comes.
        std::io::Write::write_all(&mut client.writer(), b"split").unwrap();
        let record = client_bytes(&mut client);
        let mut plain = BytesMut::new();
        let (head, tail) = record.split_at(record.len() / 2);
        server.read(&mut head.to_vec(), &mut plain).unwrap();
        assert!(plain.is_empty() && server.held_bytes() > 0);
        server.read(&mut tail.to_vec(), &mut plain).unwrap();
        assert_eq!(&plain[..], b"split");
        assert_eq!(server.held_bytes(), 0);
    }

    #[test]
    fn sealed_frames_reach_the_client_in_order_with_a_close_notify() {
        let (mut server, mut client) = handshake();
        let frames: [&[u8]; 3] = [b"one", &[9u8; 20_000], b"three"];
        let mut out = Vec::new();
        server.seal_frames(frames, &mut out).expect("seals");
        server.seal(b"four", &mut out).expect("seals");
        server.close_notify(&mut out);
        let plain = to_client(&mut client, &out);
        let mut want = b"one".to_vec();
        want.extend_from_slice(&[9u8; 20_000]);
        want.extend_from_slice(b"threefour");
        assert_eq!(plain, want);
        assert_eq!(server.held_bytes(), 0);
    }

    #[test]
    fn garbage_fails_with_an_alert_to_send() {
        let (server_config, _) = configs();
        let mut server = TlsSession::new(server_config).expect("session");
        let mut plain = BytesMut::new();
        let mut request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        assert!(server.read(&mut request, &mut plain).is_err());
        assert!(plain.is_empty());
        let alert = server.take_output().expect("an alert");
        assert_eq!(alert[0], 21, "an alert record: {alert:?}");
    }
}
