//! The Rechat target's wire: Socket.IO v4 over an Engine.IO v4 WebSocket
//! (`/socket.io/?EIO=4&transport=websocket`), as roomcast's `src/dialect/rechat/` speaks it.
//!
//! - Connect: the server's open packet `0{…}`, then the client authenticates, by default the way
//!   `socket.io-client` 4 does with `io(url, {auth: {token}})`: `40{"token":"…"}`, answered
//!   `40{"sid":"…"}` (or `44{…}` when refused). `--rechat-auth event` instead joins with a bare
//!   `40` and calls `42<ack>["Authenticate",token]`, as Rechat's own app does, answered
//!   `43<ack>[null,user]`. Presence events that arrive meanwhile are skipped.
//! - Keepalive: in v4 the server pings (`2`) and the client must answer `3` within
//!   `pingTimeout`, or the server drops it; the receivers answer every ping.
//! - Write: `42<ack>["Message.Send","<room id>",{"message_type":"TopLevel","comment":"t=…;"}]`,
//!   acknowledged `43<ack>[null,message]` once stored, or `43<ack>[{"http",…}]` when refused.
//! - Deliveries: `42["Message.Sent",room,message]`; the `Notification` frame that follows each
//!   message (its text quotes the comment too) is not a delivery.

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::conn::Ws;

/// The WebSocket path of an Engine.IO v4 client.
pub const PATH: &str = "/socket.io/?EIO=4&transport=websocket";

/// The ack id of the `Authenticate` call of `--rechat-auth event`.
const AUTH_ACK: u64 = 0;

/// How a Rechat connection authenticates.
#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
pub enum Auth {
    /// The token in the v4 CONNECT packet's `auth` (`io(url, {auth: {token}})`).
    Connect,
    /// A bare CONNECT, then the `Authenticate` event with an ack (Rechat's app).
    Event,
}

/// What one server frame is to the load generator.
#[derive(Debug, PartialEq)]
pub enum Frame<'a> {
    /// An Engine.IO ping: answer [`PONG`].
    Ping,
    /// A `Message.Sent` event: the whole packet, for [`crate::stamp::parse_rechat`].
    Sent(&'a str),
    /// The ack of `Message.Send` number `id`: the stored message (`Ok`) or the error object.
    Ack { id: u64, result: Result<&'a str, &'a str> },
    /// Anything else (presence, notifications, typing).
    Other,
}

/// An Engine.IO pong.
pub const PONG: &str = "3";

/// Classifies one text frame the server sent.
pub fn classify(text: &str) -> Frame<'_> {
    if text == "2" {
        return Frame::Ping;
    }
    if text.starts_with("42[\"Message.Sent\",") {
        return Frame::Sent(text);
    }
    let Some(rest) = text.strip_prefix("43") else {
        return Frame::Other;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let Ok(id) = rest[..digits].parse::<u64>() else {
        return Frame::Other;
    };
    let args = &rest[digits..];
    let result = match args.strip_prefix("[null,") {
        Some(value) => Ok(value),
        None => Err(args),
    };
    Frame::Ack { id, result }
}

/// The `Message.Send` packet with ack id `ack` posting `comment` to room `room`.
pub fn message_send(ack: u64, room: u64, comment: &str) -> String {
    let comment = serde_json::Value::from(comment);
    format!("42{ack}[\"Message.Send\",\"{room}\",{{\"message_type\":\"TopLevel\",\"comment\":{comment}}}]")
}

/// Authenticates a freshly opened Rechat WebSocket with `token` (see the module doc), answering
/// any ping meanwhile; fails on a refusal or a close (the caller bounds the time).
pub async fn handshake(ws: &mut Ws, token: &str, auth: Auth) -> Result<(), String> {
    let open = next_text(ws).await?;
    if !open.starts_with("0{") {
        return Err(format!("expected the open packet, got {}", short(&open)));
    }
    let connect = match auth {
        Auth::Connect => format!("40{}", serde_json::json!({ "token": token })),
        Auth::Event => "40".to_string(),
    };
    send(ws, connect).await?;
    loop {
        let text = next_text(ws).await?;
        if text.starts_with("44") {
            return Err(format!("connect refused: {}", short(&text)));
        }
        if text.starts_with("40") {
            break;
        }
    }
    if auth == Auth::Connect {
        return Ok(());
    }
    let call = format!("42{AUTH_ACK}{}", serde_json::json!(["Authenticate", token]));
    send(ws, call).await?;
    loop {
        let text = next_text(ws).await?;
        match classify(&text) {
            Frame::Ack { id: AUTH_ACK, result: Ok(_) } => return Ok(()),
            Frame::Ack { id: AUTH_ACK, result: Err(e) } => {
                return Err(format!("Authenticate refused: {}", short(e)))
            }
            _ => {}
        }
    }
}

/// The next text frame, pings answered on the way.
async fn next_text(ws: &mut Ws) -> Result<String, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) if text.as_str() == "2" => send(ws, PONG.into()).await?,
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_string()),
            Some(Ok(Message::Close(_))) | None => return Err("closed by the server".to_string()),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("read: {e}")),
        }
    }
}

async fn send(ws: &mut Ws, text: String) -> Result<(), String> {
    ws.send(Message::text(text)).await.map_err(|e| format!("write: {e}"))
}

fn short(text: &str) -> &str {
    let mut end = text.len().min(160);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_classify() {
        assert_eq!(classify("2"), Frame::Ping);
        assert_eq!(classify("2probe"), Frame::Other);
        let sent = r#"42["Message.Sent",{"type":"room"},{"comment":"t=1;"}]"#;
        assert_eq!(classify(sent), Frame::Sent(sent));
        assert_eq!(classify(r#"42["Notification",{"message":"t=1;"}]"#), Frame::Other);
        assert_eq!(
            classify(r#"4317[null,{"comment":"t=5;"}]"#),
            Frame::Ack { id: 17, result: Ok(r#"{"comment":"t=5;"}]"#) }
        );
        assert_eq!(
            classify(r#"433[{"http":429,"code":"TooManyRequests"}]"#),
            Frame::Ack { id: 3, result: Err(r#"[{"http":429,"code":"TooManyRequests"}]"#) }
        );
        assert_eq!(classify("43[]"), Frame::Other);
        assert_eq!(classify(r#"40{"sid":"x"}"#), Frame::Other);
    }

    #[test]
    fn message_send_renders() {
        assert_eq!(
            message_send(9, 42, "t=1;x"),
            r#"429["Message.Send","42",{"message_type":"TopLevel","comment":"t=1;x"}]"#
        );
    }
}
