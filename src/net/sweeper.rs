//! The shard's periodic sweep over its event connections: server pings, idle timeouts, and
//! connections stuck in closing. Every connection is visited once per `ping_interval_ms`, in
//! `SWEEP_SLICES` slices (by slab key) one tick apart, so pings go out in small batches instead of
//! one burst per interval that would stall deliveries; one shared ping frame. A dialect with
//! timers of its own (`Dialect::sweep`) sees each of its connections first, as often as its
//! `sweep_period_ms` asks (pings still go out once per ping interval).

use std::rc::Rc;
use std::time::Duration;

use crate::dialect::{Sweep, DIALECTS};
use crate::limits::{CLOSING_MAX_MS, SWEEP_SLICES};
use crate::metrics;
use crate::model::ids::now_ms;
use crate::shard::Shard;
use crate::ws::close::CLOSE_GOING_AWAY;
use crate::ws::frame;

/// Runs until the shard stops.
pub async fn run(shard: Rc<Shard>) {
    let config = &shard.config;
    let period = DIALECTS
        .iter()
        .filter_map(|d| d.sweep_period_ms(config))
        .fold(config.ping_interval_ms, u64::min);
    let tick_ms = (period / SWEEP_SLICES as u64).max(1);
    let tick = Duration::from_millis(tick_ms);
    let ping = frame::ping(b"");
    let mut previous_ping_ms = [0u64; SWEEP_SLICES];
    let mut slice = 0;
    loop {
        tokio::time::sleep(tick).await;
        let now = now_ms();
        // Pings (and the missed-pong rule) keep the ping interval whatever the sweep period.
        let ping_due = now.saturating_sub(previous_ping_ms[slice]) + tick_ms / 2
            >= shard.config.ping_interval_ms;
        // A dialect judges missed pongs by the previous ping only when the next one is due.
        let judged_ping = if ping_due { previous_ping_ms[slice] } else { 0 };
        let conns: Vec<_> = shard
            .conn
            .slab
            .borrow()
            .iter()
            .filter(|(key, _)| key % SWEEP_SLICES == slice)
            .map(|(_, c)| c.clone())
            .collect();
        for conn in conns {
            let closing_since = conn.closing_since_ms();
            if closing_since != 0 {
                if now.saturating_sub(closing_since) > CLOSING_MAX_MS {
                    conn.kill();
                }
            } else if matches!(
                conn.dialect.get().sweep(&shard, &conn, now, judged_ping),
                Sweep::Ended | Sweep::Kept
            ) {
                // The dialect ended it, or keeps it alive itself.
            } else if now.saturating_sub(conn.last_seen_ms.get()) > shard.config.idle_timeout_ms {
                metrics::inc(&shard.metrics.timeouts_total);
                conn.close(CLOSE_GOING_AWAY, "idle timeout");
            } else if ping_due {
                conn.send(ping.clone());
            }
        }
        if ping_due {
            previous_ping_ms[slice] = now;
        }
        slice = (slice + 1) % SWEEP_SLICES;
    }
}
