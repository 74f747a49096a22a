//! IO-free WebSocket codec.
