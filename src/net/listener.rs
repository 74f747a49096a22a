//! The accept loop of one shard's `SO_REUSEPORT` listener; stops when the shard shuts down.

use std::rc::Rc;

use crate::metrics;
use crate::net::admission;
use crate::shard::Shard;

/// Accepts connections until shutdown, spawning one task per connection.
pub async fn accept_loop(shard: Rc<Shard>, listener: std::net::TcpListener) {
    let listener = tokio_uring::net::TcpListener::from_std(listener);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shard.shutdown_wake.notified() => break,
        };
        if shard.shutting_down.get() {
            break;
        }
        match accepted {
            Ok((stream, peer)) => {
                metrics::inc(&shard.metrics.connections_accepted_total);
                match admission::admit(&shard, peer.ip()) {
                    Ok(slot) => {
                        let _ = stream.set_nodelay(true);
                        tokio_uring::spawn(crate::net::http_conn::serve(
                            shard.clone(),
                            stream,
                            slot,
                        ));
                    }
                    // Answered at once and closed as `stream` drops.
                    Err(refused) => admission::refuse(&stream, refused),
                }
            }
            Err(error) => {
                tracing::warn!(shard = shard.id.get(), "accept failed: {error}");
                // Out of descriptors or similar: back off instead of spinning.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
