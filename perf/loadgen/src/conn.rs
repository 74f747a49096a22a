//! Client sockets: TCP connects bound to spread-out loopback source addresses, and the
//! WebSocket handshake on top with small tungstenite buffers.
//!
//! Each source address has its own ephemeral port range, so spreading connections over
//! 127.0.0.2, 127.0.0.3, … keeps tens of thousands of connections from exhausting ports.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

/// A connected client WebSocket.
pub type Ws = WebSocketStream<TcpStream>;

/// The source address for the `index`-th connection, `per_ip` connections per address.
pub fn source_ip(index: usize, per_ip: usize) -> Ipv4Addr {
    let n = 2 + index / per_ip.max(1);
    Ipv4Addr::new(127, (n >> 16) as u8, (n >> 8) as u8, n as u8)
}

/// Opens a TCP connection to `addr` from source address `src` with `TCP_NODELAY` set.
pub async fn tcp_connect(addr: SocketAddr, src: Ipv4Addr) -> io::Result<TcpStream> {
    tcp_connect_with(addr, src, None).await
}

/// [`tcp_connect`] with an optional `SO_RCVBUF` set before connecting (the kernel doubles it and
/// applies its minimum): a small receive window makes a client that stops reading back up the
/// server's queue quickly.
pub async fn tcp_connect_with(
    addr: SocketAddr,
    src: Ipv4Addr,
    rcvbuf: Option<usize>,
) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    if let Some(bytes) = rcvbuf {
        socket.set_recv_buffer_size(bytes)?;
    }
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    // Let connect() pick the port from the full 4-tuple instead of reserving one at bind().
    let _ = set_bind_address_no_port(&socket);
    socket.bind(&SocketAddr::V4(SocketAddrV4::new(src, 0)).into())?;
    let socket = TcpSocket::from_std_stream(std::net::TcpStream::from(socket));
    socket.connect(addr).await
}

fn set_bind_address_no_port(socket: &Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: a valid fd and a pointer to a live c_int of the given size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Small buffers: a load generator holds thousands of mostly idle client sockets.
pub fn client_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(256 * 1024)
}

/// Connects a WebSocket to `ws://{addr}{path}`, with a bearer token header if given.
pub async fn ws_connect(
    addr: SocketAddr,
    src: Ipv4Addr,
    path: &str,
    bearer: Option<&str>,
) -> Result<Ws, String> {
    let tcp = tcp_connect(addr, src).await.map_err(|e| format!("tcp connect: {e}"))?;
    let mut request =
        format!("ws://{addr}{path}").into_client_request().map_err(|e| format!("request: {e}"))?;
    if let Some(token) = bearer {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|e| format!("header: {e}"))?;
        request.headers_mut().insert("Authorization", value);
    }
    let (ws, _) = tokio_tungstenite::client_async_with_config(request, tcp, Some(client_config()))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    Ok(ws)
}
