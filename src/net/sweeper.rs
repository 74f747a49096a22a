//! The shard's periodic sweep over its event connections: server pings, idle timeouts, and
//! connections stuck in closing. One pass every `ping_interval_ms`; one shared ping frame.
//! osu! connections that sent nothing (no pong, no frame) since the previous pass's ping are
//! dropped at once, as the real server does.

use std::rc::Rc;
use std::time::Duration;

use crate::dialect::DialectKind;
use crate::metrics;
use crate::model::ids::now_ms;
use crate::shard::Shard;
use crate::ws::close::CLOSE_GOING_AWAY;
use crate::ws::frame;

/// How long a closing connection may linger before it is dropped.
const CLOSING_MAX_MS: u64 = 5_000;

/// Runs until the shard stops.
pub async fn run(shard: Rc<Shard>) {
    let interval = Duration::from_millis(shard.config.ping_interval_ms.max(1));
    let ping = frame::ping(b"");
    let mut previous_ping_ms = 0u64;
    loop {
        tokio::time::sleep(interval).await;
        let now = now_ms();
        let conns: Vec<_> = shard.conns.borrow().iter().map(|(_, c)| c.clone()).collect();
        for conn in conns {
            let closing_since = conn.closing_since_ms.get();
            if closing_since != 0 {
                if now.saturating_sub(closing_since) > CLOSING_MAX_MS {
                    conn.kill();
                }
            } else if conn.dialect == DialectKind::Osu
                && previous_ping_ms != 0
                && conn.last_seen_ms.get() < previous_ping_ms
            {
                metrics::inc(&shard.metrics.timeouts_total);
                conn.kill();
            } else if now.saturating_sub(conn.last_seen_ms.get()) > shard.config.idle_timeout_ms {
                metrics::inc(&shard.metrics.timeouts_total);
                conn.close(CLOSE_GOING_AWAY, "idle timeout");
            } else {
                conn.send(ping.clone());
            }
        }
        previous_ping_ms = now;
    }
}
