//! The Rechat dialect (`/socket.io/`): Socket.IO over Engine.IO v3 and v4, both transports, as
//! protocol sheet 000 describes the real server (`dreamcareer7/real-estate-server`, Socket.IO
//! 1.x). This half is the pure codec: [`engineio`] (packets, open, polling payloads, the probe,
//! `sid`s naming their shard) and [`socketio`] (packets, the Rechat actions as closed enums, the
//! Rechat events and objects). It does not implement `Dialect` yet and is not in the registry.
//!
//! # Proposed design of the rest (on the `Dialect` interface)
//!
//! - **Sessions keyed by `sid`.** The handshake (`GET /socket.io/?EIO=3|4&transport=…`, no
//!   `sid`) creates an Engine.IO session on the shard it arrived on; its `sid`
//!   ([`engineio::sid_for`]) carries that shard, so any shard finds the owner with
//!   [`engineio::shard_of_sid`] (unknown or foreign: 400 `Session ID unknown`). The session holds
//!   the version, the transport, the user once `Authenticate` succeeded, the ack ids in flight,
//!   and the timers. A WebSocket handshake without `sid` opens a session directly on its
//!   connection (open packet with `upgrades: []`, then `40` for v3).
//! - **Polling across shards.** `GET`/`POST /socket.io/?EIO=..&transport=polling&sid=..` that
//!   land on another shard (the kernel spreads each new TCP connection) are forwarded through
//!   the mesh as a `Command::Dialect` (`RechatCommand::Poll { sid, post_body } → reply`), and the
//!   answer comes back the same way; the receiving shard only holds the HTTP connection. One
//!   `GET` may be pending per session (a second gets 400, as engine.io does); it is answered
//!   with the queued packets ([`engineio::encode_payload`]) as soon as any are queued, or with a
//!   noop after `pingInterval`.
//! - **Bounded polling queue.** Events for a polling session are queued on its shard as the
//!   packet texts the room owner rendered (shared `Bytes`: the WebSocket frame minus its header,
//!   so one render serves both transports and both versions); past `outbound_bytes_max` the
//!   session is closed, counted, as a slow WebSocket consumer is. A `POST` payload is bounded by
//!   `maxPayload` (advertised in v4) and [`engineio::PAYLOAD_PACKETS_MAX`].
//! - **Upgrade.** A WebSocket with `sid` arrives on any shard; it answers `2probe` with
//!   `3probe` locally, asks the session's shard to hand the session over (mesh: its state, the
//!   user, the queued packets; the old shard answers its pending `GET` with `6` and forgets it),
//!   and on the client's `5` registers the connection for events on the shard where the
//!   WebSocket arrived and flushes the queue to it. The session then lives where its socket is.
//! - **Keepalive on the sweeper.** v3: the client pings, the session answers `3`, and the sweeper
//!   drops a session silent for `pingInterval + pingTimeout`; v4: the sweeper sends `2` every
//!   `pingInterval` and drops one that does not answer within `pingTimeout`. Polling sessions
//!   without a pending or recent `GET` are swept the same way. WebSocket-level pings stay off.
//! - **Authentication in band.** `Authenticate(token)` runs the core's `authenticate`; on
//!   success the connection registers for the user's rooms and the user's owner emits
//!   `User.Online` to each room and `Users.Online` to the user's sessions; the ack is
//!   `(null, user)`, a failure `({http:401,…})`. Other actions before it are acked with
//!   `{http:401,"Authentication required"}`.
//!
//! # Hooks the `Dialect` trait lacks
//!
//! - An HTTP request hook for dialect-owned endpoints (`serves_http(path)` + `on_http(shard,
//!   head, body) -> Response | Pending`), so polling `GET`/`POST` reach the dialect and a `GET`
//!   can be held open, answered later by the session's shard.
//! - `Credentials::InBand`: admit the upgrade with no token and register the connection for
//!   events later (`Shard::attach` after `Authenticate`), instead of `refuse`.
//! - An event target that is not a WebSocket `Conn` (a polling session's queue), so `deliver`
//!   can push to it, and a way to move a registered session between shards (the upgrade).
//! - `render` sees only the `Event`; `Message.Sent` needs the room object (owner, members'
//!   display fields), so it is rendered in `decorate`, which has the room.

pub mod engineio;
pub mod socketio;
