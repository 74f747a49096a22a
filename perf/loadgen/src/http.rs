//! A tiny HTTP/1.1 keep-alive client: one request at a time, `Content-Length` bodies only.
//!
//! Enough for roomcast's REST calls in the load generator; no pipelining, no chunked bodies.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound on a response head plus body we are willing to buffer.
const MAX_RESPONSE: usize = 4 * 1024 * 1024;

/// One keep-alive connection to the server.
pub struct HttpConn {
    stream: TcpStream,
    host: String,
    buf: Vec<u8>,
    out: Vec<u8>,
    /// Response bytes read for the request in flight (0: the server said nothing yet).
    got: usize,
}

/// True for an I/O error that means the server had closed an idle keep-alive connection
/// before this request: EOF, reset or broken pipe with no response byte read. The request was
/// not processed, so it is safe to send it again on a fresh connection.
pub fn is_stale(err: &io::Error, got: usize) -> bool {
    got == 0
        && matches!(
            err.kind(),
            io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::ConnectionAborted
        )
}

impl HttpConn {
    /// Connects from source address `src` to `addr`.
    pub async fn connect(addr: SocketAddr, src: Ipv4Addr) -> io::Result<Self> {
        let stream = crate::conn::tcp_connect(addr, src).await?;
        Ok(Self {
            stream,
            host: addr.to_string(),
            buf: Vec::with_capacity(4096),
            out: Vec::with_capacity(1024),
            got: 0,
        })
    }

    /// Response bytes read for the last request (see [`is_stale`]).
    pub fn response_bytes(&self) -> usize {
        self.got
    }

    /// Sends one request and reads its response: `(status, body)`.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        bearer: &str,
        body: &[u8],
    ) -> io::Result<(u16, Vec<u8>)> {
        use std::io::Write;
        self.out.clear();
        write!(
            self.out,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {bearer}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        )?;
        self.out.extend_from_slice(body);
        self.got = self.buf.len();
        self.stream.write_all(&self.out).await?;
        self.read_response().await
    }

    async fn read_response(&mut self) -> io::Result<(u16, Vec<u8>)> {
        loop {
            if let Some((status, head_len, body_len)) = parse_head(&self.buf)? {
                let total = head_len + body_len;
                if total > MAX_RESPONSE {
                    return Err(io::Error::other("response too large"));
                }
                while self.buf.len() < total {
                    self.fill().await?;
                }
                let body = self.buf[head_len..total].to_vec();
                self.buf.drain(..total);
                return Ok((status, body));
            }
            if self.buf.len() > MAX_RESPONSE {
                return Err(io::Error::other("response head too large"));
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        self.got += n;
        Ok(())
    }
}

/// Parses a response head: `Some((status, head length, body length))` once complete.
pub fn parse_head(buf: &[u8]) -> io::Result<Option<(u16, usize, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(head_len)) => {
            let status = resp.code.unwrap_or(0);
            let mut body_len = 0usize;
            for h in resp.headers.iter() {
                if h.name.eq_ignore_ascii_case("content-length") {
                    body_len = std::str::from_utf8(h.value)
                        .ok()
                        .and_then(|v| v.trim().parse().ok())
                        .ok_or_else(|| io::Error::other("bad content-length"))?;
                } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                    return Err(io::Error::other("chunked responses are not supported"));
                }
            }
            Ok(Some((status, head_len, body_len)))
        }
        Err(err) => Err(io::Error::other(format!("bad response head: {err}"))),
    }
}
