//! Operations endpoints: `GET /healthz` and `GET /metrics` (Prometheus text format).

use crate::shard::Shard;

use super::ApiResult;

/// Liveness: 200 with the answering shard.
pub fn health(shard: &Shard) -> ApiResult {
    let body =
        serde_json::json!({ "status": "ok", "shard": shard.id, "shards": shard.shard_count });
    Ok((200, body.to_string().into_bytes()))
}

/// Every shard's counters and the mesh gauges.
pub fn metrics(shard: &Shard) -> ApiResult {
    Ok((200, shard.registry.render().into_bytes()))
}
