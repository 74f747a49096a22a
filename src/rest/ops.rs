//! Operations endpoints: `GET /` (what this server is and serves), `GET /healthz`,
//! `GET /metrics` (Prometheus text format) and `GET /api/v1/openapi.json` (the REST API's
//! contract, `openapi.yaml`, converted to JSON by `build.rs`).

use crate::dialect::DialectId;
use crate::shard::Shard;

use super::{ApiResult, ROUTES};

/// Where the documentation is: the README of the source tree (the package names no published
/// repository to link to).
pub const DOCS: &str = "README.md (in the roomcast source tree)";

/// The index: the server's name and version, each dialect's WebSocket endpoint, the HTTP API's
/// paths with their methods, the web console (`/` for browsers; whether it mints tokens), and
/// where the documentation is.
pub fn index(shard: &Shard) -> ApiResult {
    let dialects: Vec<_> = DialectId::all()
        .filter_map(|d| {
            let dialect = d.get();
            let endpoint = dialect.endpoint(&shard.config)?;
            Some(serde_json::json!({ "name": dialect.name(), "endpoint": endpoint }))
        })
        .collect();
    let rest: Vec<_> = ROUTES
        .iter()
        .map(|(path, methods)| {
            let methods: Vec<&str> = methods.split(", ").collect();
            serde_json::json!({ "path": path, "methods": methods })
        })
        .collect();
    let body = serde_json::json!({
        "name": env!("CARGO_PKG_NAME"),
        "version": env!("CARGO_PKG_VERSION"),
        "description": env!("CARGO_PKG_DESCRIPTION"),
        "websocket": dialects,
        "rest": rest,
        "console": { "path": "/", "mint": shard.console_mint.is_some() },
        "docs": DOCS,
    });
    Ok((200, body.to_string().into_bytes()))
}

/// The REST API's OpenAPI 3.1 contract as JSON: `openapi.yaml` at the crate root, converted
/// once at build time (`build.rs`).
pub const OPENAPI_JSON: &str = include_str!(concat!(env!("OUT_DIR"), "/openapi.json"));

/// `GET /api/v1/openapi.json`: the contract, no token needed.
pub fn openapi() -> ApiResult {
    Ok((200, OPENAPI_JSON.as_bytes().to_vec()))
}

/// Liveness: 200 with the answering shard.
/// In a cluster, also `cluster`: this node, its NATS connection and which nodes answer;
/// `status` is `degraded` while one does not (this node still serves: 200).
pub fn health(shard: &Shard) -> ApiResult {
    let mut body =
        serde_json::json!({ "status": "ok", "shard": shard.id, "shards": shard.shard_count });
    if let Some(cluster) = shard.cluster_health() {
        if !cluster.all_up() {
            body["status"] = "degraded".into();
        }
        body["cluster"] = cluster.json();
    }
    Ok((200, body.to_string().into_bytes()))
}

/// Every shard's counters and the mesh gauges.
pub fn metrics(shard: &Shard) -> ApiResult {
    Ok((200, shard.registry.render().into_bytes()))
}
