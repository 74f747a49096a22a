//! Peer server for the roomcast benchmarks: tokio + tokio-tungstenite, "plain" broadcast protocol.
//!
//! Connect to `ws://HOST:PORT/ws?room=NAME`; every text frame a client sends is relayed to every
//! member of the room, sender included. Written the way a typical user of the ecosystem writes it:
//! a multi-thread runtime, one reader task and one writer task per connection, and one
//! `tokio::sync::broadcast` channel per room kept in a `Mutex<HashMap<..>>`. The broadcast value
//! is the received `Utf8Bytes`, so one message body is shared by every receiver (clones are
//! reference-count bumps).
//!
//! `--tuned` switches tungstenite from its defaults (128 KiB read buffer, 128 KiB write buffer)
//! to a 4 KiB read buffer and a write buffer that is flushed at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// How many messages a slow receiver may fall behind before it starts losing them.
const ROOM_CHANNEL_CAPACITY: usize = 1024;

#[derive(Parser, Debug)]
#[command(about = "tokio-tungstenite room broadcast peer server")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// Use small tungstenite buffers instead of the library defaults.
    #[arg(long)]
    tuned: bool,
}

/// Room name to its broadcast sender; a room disappears when its last member leaves.
type Rooms = Arc<Mutex<HashMap<String, broadcast::Sender<Utf8Bytes>>>>;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let config = if args.tuned {
        Some(
            WebSocketConfig::default()
                .read_buffer_size(4 * 1024)
                .write_buffer_size(0)
                .max_write_buffer_size(1024 * 1024),
        )
    } else {
        None
    };
    let listener = TcpListener::bind(args.listen).await?;
    let rooms: Rooms = Arc::default();
    println!(
        "tokio-tungstenite peer listening on {} (tuned: {})",
        listener.local_addr()?,
        args.tuned
    );
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                eprintln!("accept: {err}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        tokio::spawn(handle(stream, rooms.clone(), config));
    }
}

/// Runs one connection: handshake, join the room, relay until either side closes.
// The handshake callback's error type is fixed by tungstenite's `Callback` trait.
#[allow(clippy::result_large_err)]
async fn handle(stream: TcpStream, rooms: Rooms, config: Option<WebSocketConfig>) {
    let _ = stream.set_nodelay(true);
    let mut room = String::from("default");
    let callback = |req: &Request, resp: Response| {
        if let Some(query) = req.uri().query() {
            for pair in query.split('&') {
                if let Some(name) = pair.strip_prefix("room=") {
                    room = name.to_string();
                }
            }
        }
        Ok(resp)
    };
    let ws = match tokio_tungstenite::accept_hdr_async_with_config(stream, callback, config).await {
        Ok(ws) => ws,
        Err(_) => return,
    };

    let tx = rooms
        .lock()
        .unwrap()
        .entry(room.clone())
        .or_insert_with(|| broadcast::channel(ROOM_CHANNEL_CAPACITY).0)
        .clone();
    let mut rx = tx.subscribe();
    let (mut sink, mut stream) = ws.split();

    let writer = tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(text) => {
                    if sink.send(Message::Text(text)).await.is_err() {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    });

    while let Some(Ok(msg)) = stream.next().await {
        match msg {
            Message::Text(text) => {
                let _ = tx.send(text);
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    writer.abort();
    let _ = writer.await;

    let mut rooms = rooms.lock().unwrap();
    // The writer (and with it our receiver) is gone: the room is empty when no receivers remain.
    if tx.receiver_count() == 0 {
        if let Some(current) = rooms.get(&room) {
            if current.same_channel(&tx) && current.receiver_count() == 0 {
                rooms.remove(&room);
            }
        }
    }
}
