//! Networking on the shard loop: accepting, HTTP/1.1 serving (tokio-uring), WebSocket sessions
//! (multishot receives and batched sends on the shard's own ring, `uring`), and each
//! connection's outbound queue and writer.

pub mod admission;
pub mod bind;
pub mod conn;
pub mod http_conn;
pub mod listener;
pub mod pipe;
pub mod rate;
pub mod sweeper;
pub mod uring;
pub mod ws_session;

use bytes::BytesMut;
use tokio_uring::buf::BoundedBuf;
use tokio_uring::net::TcpStream;

/// Reads into the spare capacity of `buf`, after the bytes it already holds (tokio-uring's
/// plain `read` writes from the start of the buffer). The caller reserves capacity first.
pub async fn read_appending(
    stream: &TcpStream,
    buf: BytesMut,
) -> (std::io::Result<usize>, BytesMut) {
    let start = buf.len();
    let end = buf.capacity();
    let (result, slice) = stream.read(buf.slice(start..end)).await;
    (result, slice.into_inner())
}

/// [`read_appending`] for a Unix stream (an in-process connection's client end).
pub async fn read_appending_unix(
    stream: &tokio_uring::net::UnixStream,
    buf: BytesMut,
) -> (std::io::Result<usize>, BytesMut) {
    let start = buf.len();
    let end = buf.capacity();
    let (result, slice) = stream.read(buf.slice(start..end)).await;
    (result, slice.into_inner())
}
