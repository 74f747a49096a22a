//! The Rechat dialect (`/socket.io/`): Socket.IO over Engine.IO v3 and v4, both transports, as
//! protocol sheet 000 describes the real server (`dreamcareer7/real-estate-server`, Socket.IO
//! 1.x). So far only the pure codec: [`engineio`] and [`socketio`]. It does not implement
//! `Dialect` yet and is not in the registry.

pub mod engineio;
pub mod socketio;
