//! The load generator's reusable pieces, shared by its binaries (`loadgen`, the WebSocket load
//! generator, `ingest`, the durable-ingest benchmark, and `soak`, the churn soak): the loopback
//! TCP connector, a keep-alive HTTP/1.1 client, HS256 token minting, and `/proc` readers.

pub mod conn;
pub mod http;
pub mod procfs;
pub mod token;
