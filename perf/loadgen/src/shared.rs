//! State shared by every load-generator thread: the epoch, the measuring window, the phase
//! signal and the run-wide counters.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

use hdrhistogram::Histogram;
use tokio::sync::watch;

/// What the threads should be doing now.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Phase {
    /// Connecting; publishers wait.
    Connect,
    /// Rate step `step`: publish `rate` messages/s in total from `at` on (warm-up first, then
    /// the measured window).
    Go { at: Instant, step: u32, rate: f64 },
    /// Done: threads hand back their results and drop their connections.
    Stop,
}

/// Counters by kind of error; none of them aborts the run.
#[derive(Default)]
pub struct Errors {
    pub connect: AtomicU64,
    pub closed: AtomicU64,
    pub http: AtomicU64,
    pub http_io: AtomicU64,
    pub send: AtomicU64,
    pub setup: AtomicU64,
    /// Rechat: `Message.Send` acks carrying an error object.
    pub ack: AtomicU64,
}

impl Errors {
    pub fn total(&self) -> u64 {
        [&self.connect, &self.closed, &self.http, &self.http_io, &self.send, &self.setup, &self.ack]
            .iter()
            .map(|c| c.load(Relaxed))
            .sum()
    }
}

/// Everything the threads share. Window bounds are nanoseconds since `epoch`.
pub struct Shared {
    pub epoch: Instant,
    pub window_start: AtomicU64,
    pub window_end: AtomicU64,
    pub phase: watch::Sender<Phase>,
    pub stopping: AtomicBool,
    pub threads_connected: AtomicUsize,
    pub connected: AtomicU64,
    /// Deliveries of messages sent inside the window.
    pub deliveries: AtomicU64,
    /// Deliveries of any stamped message, warm-up included.
    pub deliveries_all: AtomicU64,
    /// Frames whose stamp a connection had already received among its last 8 (a server
    /// that wrote a frame twice); cumulative over the run.
    pub duplicates: AtomicU64,
    /// Messages sent inside the window, and the deliveries they should cause.
    pub sent_in_window: AtomicU64,
    pub expected: AtomicU64,
    pub sent_all: AtomicU64,
    /// Sends that left more than `LAG_NS` after their slot, and slots given up as hopeless.
    pub publish_lag: AtomicU64,
    pub publish_skipped: AtomicU64,
    /// roomcast: requests sent again because the server had closed the idle keep-alive
    /// connection they met (not errors; the server never read them). Cumulative over the run.
    pub http_reopened: AtomicU64,
    /// Rechat: `Message.Send` → its ack, for messages sent inside the window (ns).
    pub ack_latency: Mutex<Histogram<u64>>,
    pub errors: Errors,
}

impl Shared {
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            window_start: AtomicU64::new(u64::MAX),
            window_end: AtomicU64::new(u64::MAX),
            phase: watch::channel(Phase::Connect).0,
            stopping: AtomicBool::new(false),
            threads_connected: AtomicUsize::new(0),
            connected: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            deliveries_all: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            sent_in_window: AtomicU64::new(0),
            expected: AtomicU64::new(0),
            sent_all: AtomicU64::new(0),
            publish_lag: AtomicU64::new(0),
            publish_skipped: AtomicU64::new(0),
            http_reopened: AtomicU64::new(0),
            ack_latency: Mutex::new(crate::worker::new_hist()),
            errors: Errors::default(),
        }
    }

    /// Zeroes the per-step counters (errors stay cumulative over the run).
    pub fn reset_step(&self) {
        for c in [
            &self.deliveries,
            &self.deliveries_all,
            &self.sent_in_window,
            &self.expected,
            &self.sent_all,
            &self.publish_lag,
            &self.publish_skipped,
        ] {
            c.store(0, Relaxed);
        }
        self.ack_latency.lock().unwrap().reset();
    }

    /// Nanoseconds since the epoch.
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Nanoseconds since the epoch of `at`.
    pub fn ns_of(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// Whether a message stamped `nanos` was sent inside the measured window.
    pub fn in_window(&self, nanos: u64) -> bool {
        nanos >= self.window_start.load(Relaxed) && nanos < self.window_end.load(Relaxed)
    }
}
