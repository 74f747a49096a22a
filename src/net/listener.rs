//! The accept loop of one shard's `SO_REUSEPORT` listener; stops when the shard shuts down.
//!
//! A failed accept never spins: an error that concerns one connection only (lost before it was
//! taken) is retried at once, anything else — out of descriptors (EMFILE/ENFILE) or memory, or
//! an unknown error — pauses the loop, twice as long each time in a row, from
//! `ACCEPT_BACKOFF_FIRST` up to `ACCEPT_BACKOFF_MAX`. Failures are counted, and logged once
//! per streak (and once when accepting works again).

use std::io;
use std::rc::Rc;
use std::time::Duration;

use crate::limits::{ACCEPT_BACKOFF_FIRST, ACCEPT_BACKOFF_MAX};
use crate::metrics;
use crate::net::admission;
use crate::shard::Shard;

/// Accepts connections until shutdown, spawning one task per connection.
pub async fn accept_loop(shard: Rc<Shard>, listener: std::net::TcpListener) {
    let listener = tokio_uring::net::TcpListener::from_std(listener);
    let mut failures: u64 = 0;
    let mut backoff: Option<Duration> = None;
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
                if failures > 0 {
                    tracing::info!(
                        shard = shard.id.get(),
                        "accepting again after {failures} failures"
                    );
                    failures = 0;
                    backoff = None;
                }
                metrics::inc(&shard.metrics.connections_accepted_total);
                match admission::admit(&shard, peer.ip()) {
                    Ok(slot) => {
                        // TCP_NODELAY is inherited from the listening socket (`net::bind`).
                        tokio_uring::spawn(crate::net::http_conn::serve(
                            shard.clone(),
                            stream,
                            slot,
                        ));
                    }
                    // Answered at once and closed as `stream` drops; a TLS client could not
                    // read a plaintext 503, so it only sees the connection closed.
                    Err(refused) if shard.tls.is_none() => admission::refuse(&stream, refused),
                    Err(_) => {}
                }
            }
            Err(error) => {
                metrics::inc(&shard.metrics.accept_errors_total);
                if failures == 0 {
                    tracing::warn!(shard = shard.id.get(), "accept failed: {error}");
                }
                failures += 1;
                let Some(pause) = backoff_after(&error, backoff) else {
                    continue;
                };
                backoff = Some(pause);
                metrics::inc(&shard.metrics.accept_backoffs_total);
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = shard.shutdown_wake.notified() => break,
                }
            }
        }
    }
}

/// The pause before the next accept after `error`, given the previous pause of this streak of
/// failures (`None` when the last accept worked); `None` to retry at once.
fn backoff_after(error: &io::Error, previous: Option<Duration>) -> Option<Duration> {
    // Errors of one pending connection (accept(2): "treat them like EAGAIN by retrying").
    const ONE_CONNECTION: [i32; 11] = [
        libc::ECONNABORTED,
        libc::EINTR,
        libc::EAGAIN,
        libc::EPROTO,
        libc::EPERM,
        libc::ENETDOWN,
        libc::ENOPROTOOPT,
        libc::EHOSTDOWN,
        libc::ENONET,
        libc::EHOSTUNREACH,
        libc::ENETUNREACH,
    ];
    if error.raw_os_error().is_some_and(|code| ONE_CONNECTION.contains(&code)) {
        return None;
    }
    Some(match previous {
        None => ACCEPT_BACKOFF_FIRST,
        Some(pause) => (pause * 2).min(ACCEPT_BACKOFF_MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    #[test]
    fn out_of_descriptors_backs_off_doubling_up_to_the_max() {
        for code in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM, libc::EBADF] {
            let mut pause = None;
            let mut pauses = Vec::new();
            for _ in 0..12 {
                pause = backoff_after(&os(code), pause);
                pauses.push(pause.expect("a pause"));
            }
            assert_eq!(pauses[0], ACCEPT_BACKOFF_FIRST, "{code}");
            assert_eq!(pauses[1], ACCEPT_BACKOFF_FIRST * 2, "{code}");
            assert!(pauses.windows(2).all(|w| w[0] <= w[1]), "{code}: {pauses:?}");
            assert_eq!(pauses.last(), Some(&ACCEPT_BACKOFF_MAX), "{code}");
        }
        assert_eq!(backoff_after(&io::Error::other("?"), None), Some(ACCEPT_BACKOFF_FIRST));
    }

    #[test]
    fn a_lost_connection_is_retried_at_once() {
        for code in [libc::ECONNABORTED, libc::EINTR, libc::EPROTO] {
            assert_eq!(backoff_after(&os(code), Some(ACCEPT_BACKOFF_MAX)), None, "{code}");
        }
    }
}
