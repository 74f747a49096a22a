//! One load-generator thread: a current-thread tokio runtime that opens its share of the
//! connections, receives and times every stamped message, and runs its share of the publishers
//! on fixed open-loop schedules.
//!
//! Nothing is queued without bound: a publisher that falls behind its schedule sends late
//! (counted as `publish_lag`) and gives up slots more than a second old (`publish_skipped`).

use std::cell::Cell;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, Stream, StreamExt};
use hdrhistogram::Histogram;
use tokio::sync::{Notify, Semaphore};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::conn::{ws_connect, Ws};
use crate::http::HttpConn;
use crate::rechat::{self, Frame};
use crate::shared::{Phase, Shared};
use crate::stamp;

/// A send later than this after its slot counts as publish lag.
const LAG: Duration = Duration::from_millis(10);
/// Slots older than this are skipped rather than sent in a burst.
const GIVE_UP: Duration = Duration::from_secs(1);
/// How long one connection attempt (TCP + handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Highest latency the histograms hold (ns); larger values are clamped.
const HIST_MAX_NS: u64 = 120_000_000_000;

/// Which server protocol the run speaks.
#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// `ws://HOST/ws?room=NAME`; text frames are relayed to the room.
    Plain,
    /// roomcast's REST + `/api/v1/events` API (the Virola dialect): publishing over REST.
    Roomcast,
    /// roomcast's Rechat dialect (Socket.IO v4 over a WebSocket, [`rechat`]): the rooms are
    /// made over REST, publishers send `Message.Send` on their own socket.
    Rechat,
}

/// Run-wide settings every thread reads.
pub struct Config {
    pub addr: SocketAddr,
    pub target: Target,
    pub payload: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub connect_concurrency: usize,
    /// Rechat: how the sockets authenticate.
    pub rechat_auth: rechat::Auth,
}

/// One publisher's part of the total rate: it publishes `share * rate` messages/s, its slot `k`
/// due at `go + (phase + k) / (share * rate)`, so publishers with spread phases interleave.
#[derive(Clone, Copy)]
pub struct Schedule {
    pub share: f64,
    pub phase: f64,
}

/// One WebSocket connection to open; a plain- or Rechat-target publisher also sends on it.
pub struct ConnSpec {
    /// Where this WebSocket connects, when not the run's `--url`.
    pub addr: Option<SocketAddr>,
    pub src: Ipv4Addr,
    pub path: String,
    /// roomcast: the `Authorization: Bearer` token; Rechat: the token sent in band.
    pub token: Option<String>,
    pub publisher: Option<Publisher>,
}

/// A publisher on its own WebSocket: its schedule, and the room it sends to.
#[derive(Clone, Copy)]
pub struct Publisher {
    pub schedule: Schedule,
    /// Members of the room (the deliveries one message should cause, the sender's included).
    pub room_size: u64,
    /// Rechat: the room's id, named in `Message.Send` (plain: unused; the path names the room).
    pub room_id: u64,
}

/// A connection's write half, shared by its publisher and (Rechat) its receiver's pongs.
type SharedSink = Rc<tokio::sync::Mutex<SplitSink<Ws, Message>>>;

/// Refused `Message.Send` acks already printed (the first few go to stderr).
static ACK_ERRORS_REPORTED: AtomicU32 = AtomicU32::new(0);

/// One HTTP keep-alive connection posting messages for one or more (room, author) pairs.
pub struct HttpWorkerSpec {
    pub src: Ipv4Addr,
    pub schedule: Schedule,
    pub targets: Vec<HttpTarget>,
}

/// `POST path` with `token`; the room has `room_size` members to deliver to.
pub struct HttpTarget {
    pub path: String,
    pub token: String,
    pub room_size: u64,
}

/// What one thread does.
#[derive(Default)]
pub struct ThreadPlan {
    pub conns: Vec<ConnSpec>,
    pub http: Vec<HttpWorkerSpec>,
}

/// A thread's latency histogram (ns); only its thread records, the main thread reads and resets
/// it between rate steps, so the lock is uncontended.
pub type Hist = Arc<Mutex<Histogram<u64>>>;

/// A fresh histogram with the bounds every thread uses.
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_NS, 3).expect("histogram bounds")
}

/// Runs one thread's plan until the run stops.
pub fn run_thread(plan: ThreadPlan, cfg: Arc<Config>, shared: Arc<Shared>, hist: Hist) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let gate = Rc::new(Semaphore::new(cfg.connect_concurrency.max(1)));
        let pending = Rc::new(Cell::new(plan.conns.len()));
        let done = Rc::new(Notify::new());
        let reported = Rc::new(Cell::new(0u32));
        for spec in plan.conns {
            tokio::task::spawn_local(conn_task(
                spec,
                cfg.clone(),
                shared.clone(),
                hist.clone(),
                Connecting {
                    gate: gate.clone(),
                    pending: pending.clone(),
                    done: done.clone(),
                    reported: reported.clone(),
                },
            ));
        }
        for spec in plan.http {
            tokio::task::spawn_local(http_worker(spec, cfg.clone(), shared.clone()));
        }
        while pending.get() > 0 {
            done.notified().await;
        }
        shared.threads_connected.fetch_add(1, Relaxed);
        let mut phase = shared.phase.subscribe();
        let _ = phase.wait_for(|p| *p == Phase::Stop).await;
    })
}

/// Connect-phase bookkeeping shared by a thread's connection tasks.
struct Connecting {
    gate: Rc<Semaphore>,
    pending: Rc<Cell<usize>>,
    done: Rc<Notify>,
    reported: Rc<Cell<u32>>,
}

async fn conn_task(
    spec: ConnSpec,
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    hist: Hist,
    connecting: Connecting,
) {
    let permit = connecting.gate.acquire().await.expect("semaphore open");
    let rechat = cfg.target == Target::Rechat;
    let bearer = spec.token.as_deref().filter(|_| !rechat);
    let result = tokio::time::timeout(CONNECT_TIMEOUT, async {
        let mut ws =
            ws_connect(spec.addr.unwrap_or(cfg.addr), spec.src, &spec.path, bearer).await?;
        if rechat {
            let token = spec.token.as_deref().unwrap_or_default();
            rechat::handshake(&mut ws, token, cfg.rechat_auth).await?;
        }
        Ok(ws)
    })
    .await
    .unwrap_or_else(|_| Err("timed out".to_string()));
    drop(permit);
    connecting.pending.set(connecting.pending.get() - 1);
    if connecting.pending.get() == 0 {
        connecting.done.notify_one();
    }
    let ws = match result {
        Ok(ws) => ws,
        Err(err) => {
            shared.errors.connect.fetch_add(1, Relaxed);
            if connecting.reported.get() < 3 {
                connecting.reported.set(connecting.reported.get() + 1);
                eprintln!("connect {}: {err}", spec.path);
            }
            return;
        }
    };
    shared.connected.fetch_add(1, Relaxed);
    let room_size = spec.publisher.map_or(0, |p| p.room_size);
    if spec.publisher.is_none() && !rechat {
        return receive(ws, cfg.target, hist, shared, None, room_size).await;
    }
    let (sink, stream) = ws.split();
    let sink: SharedSink = Rc::new(tokio::sync::Mutex::new(sink));
    if let Some(publisher) = spec.publisher {
        tokio::task::spawn_local(publish_ws(sink.clone(), publisher, cfg.clone(), shared.clone()));
    }
    let replies = rechat.then_some(sink);
    receive(stream, cfg.target, hist, shared, replies, room_size).await;
}

/// Reads frames until the socket closes, timing every stamped message. Rechat: answers the
/// server's pings through `replies` and counts the acks of this socket's `Message.Send`s to a
/// room of `room_size` members as sent (or as `ack` errors).
async fn receive<S>(
    mut stream: S,
    target: Target,
    hist: Hist,
    shared: Arc<Shared>,
    replies: Option<SharedSink>,
    room_size: u64,
) where
    S: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    let mut recent = [0u64; 8];
    let mut next = 0;
    while let Some(msg) = stream.next().await {
        match msg {
            Ok(Message::Text(text)) => {
                let now = shared.now_ns();
                let mut record = |sent: u64| {
                    if recent.contains(&sent) {
                        shared.duplicates.fetch_add(1, Relaxed);
                        return;
                    }
                    recent[next] = sent;
                    next = (next + 1) % recent.len();
                    shared.deliveries_all.fetch_add(1, Relaxed);
                    if shared.in_window(sent) {
                        shared.deliveries.fetch_add(1, Relaxed);
                        hist.lock().unwrap().saturating_record(now.saturating_sub(sent).max(1));
                    }
                };
                match target {
                    Target::Plain => {
                        if let Some(sent) = stamp::parse_plain(text.as_str()) {
                            record(sent);
                        }
                    }
                    Target::Roomcast => stamp::for_each_roomcast(text.as_str(), record),
                    Target::Rechat => match rechat::classify(text.as_str()) {
                        Frame::Sent(packet) => {
                            if let Some(sent) = stamp::parse_rechat(packet) {
                                record(sent);
                            }
                        }
                        Frame::Ping => {
                            let Some(sink) = &replies else { continue };
                            if sink.lock().await.send(Message::text(rechat::PONG)).await.is_err() {
                                break;
                            }
                        }
                        Frame::Ack { result: Ok(message), .. } => {
                            if let Some(sent) = stamp::parse_rechat(message) {
                                count_sent(&shared, sent, room_size);
                                if shared.in_window(sent) {
                                    let took = now.saturating_sub(sent).max(1);
                                    shared.ack_latency.lock().unwrap().saturating_record(took);
                                }
                            }
                        }
                        Frame::Ack { id, result: Err(error) } => {
                            shared.errors.ack.fetch_add(1, Relaxed);
                            if ACK_ERRORS_REPORTED.fetch_add(1, Relaxed) < 3 {
                                eprintln!("Message.Send {id} refused: {error}");
                            }
                        }
                        Frame::Other => {}
                    },
                }
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    if !shared.stopping.load(Relaxed) {
        shared.errors.closed.fetch_add(1, Relaxed);
    }
}

/// Waits for the go signal of a step after `last`: `(start, step, total rate)`, or `None` once
/// the run stops.
async fn wait_go(shared: &Shared, last: Option<u32>) -> Option<(Instant, u32, f64)> {
    let mut phase = shared.phase.subscribe();
    let seen = *phase
        .wait_for(|p| match p {
            Phase::Connect => false,
            Phase::Go { step, .. } => Some(*step) != last,
            Phase::Stop => true,
        })
        .await
        .ok()?;
    match seen {
        Phase::Go { at, step, rate } => Some((at, step, rate)),
        _ => None,
    }
}

/// Yields due slots of a schedule until the publishing window ends.
struct Slots {
    go: Instant,
    end: Instant,
    rate: f64,
    offset: Duration,
    next: u64,
}

impl Slots {
    fn new(go: Instant, total_rate: f64, cfg: &Config, schedule: Schedule) -> Self {
        let rate = total_rate * schedule.share;
        let offset = if rate > 0.0 {
            Duration::from_secs_f64(schedule.phase / rate)
        } else {
            Duration::ZERO
        };
        Self { go, end: go + cfg.warmup + cfg.duration, rate, offset, next: 0 }
    }

    /// Sleeps until the next slot is due and returns its number, or `None` when past the end.
    async fn next(&mut self, shared: &Shared) -> Option<u64> {
        if self.rate <= 0.0 {
            return None;
        }
        let interval = 1.0 / self.rate;
        loop {
            let due = self.go + self.offset + Duration::from_secs_f64(interval * self.next as f64);
            if due >= self.end {
                return None;
            }
            let mut now = Instant::now();
            if due > now {
                tokio::time::sleep_until(due.into()).await;
                now = Instant::now();
            }
            let late = now.saturating_duration_since(due);
            if late > GIVE_UP {
                let behind = (late.as_secs_f64() / interval) as u64;
                shared.publish_skipped.fetch_add(behind, Relaxed);
                self.next += behind.max(1);
                continue;
            }
            if late > LAG {
                shared.publish_lag.fetch_add(1, Relaxed);
            }
            let slot = self.next;
            self.next += 1;
            return Some(slot);
        }
    }
}

/// Counts one accepted publish stamped `sent` to a room of `room_size` members.
fn count_sent(shared: &Shared, sent: u64, room_size: u64) {
    shared.sent_all.fetch_add(1, Relaxed);
    if shared.in_window(sent) {
        shared.sent_in_window.fetch_add(1, Relaxed);
        shared.expected.fetch_add(room_size, Relaxed);
    }
}

/// A publisher on its own WebSocket: plain, the stamped text as a frame, counted as sent once
/// written; Rechat, a `Message.Send` with a fresh ack id, counted when its ack arrives (see
/// [`receive`]). It never waits for an ack: the server runs a socket's actions in order.
async fn publish_ws(sink: SharedSink, publisher: Publisher, cfg: Arc<Config>, shared: Arc<Shared>) {
    let mut last = None;
    let mut ack = 0u64;
    while let Some((go, step, rate)) = wait_go(&shared, last).await {
        last = Some(step);
        let mut slots = Slots::new(go, rate, &cfg, publisher.schedule);
        while slots.next(&shared).await.is_some() {
            let sent = shared.now_ns();
            let text = stamp::text(sent, cfg.payload);
            let frame = match cfg.target {
                Target::Rechat => {
                    ack += 1;
                    rechat::message_send(ack, publisher.room_id, &text)
                }
                Target::Plain | Target::Roomcast => text,
            };
            if sink.lock().await.send(Message::text(frame)).await.is_err() {
                if !shared.stopping.load(Relaxed) {
                    shared.errors.send.fetch_add(1, Relaxed);
                }
                return;
            }
            if cfg.target != Target::Rechat {
                count_sent(&shared, sent, publisher.room_size);
            }
        }
    }
}

/// A roomcast-target publisher: `POST /api/v1/rooms/{id}/messages` over one keep-alive
/// connection, one request in flight, rotating over its (room, author) targets.
async fn http_worker(spec: HttpWorkerSpec, cfg: Arc<Config>, shared: Arc<Shared>) {
    let mut conn = HttpConn::connect(cfg.addr, spec.src).await.ok();
    let mut reported = 0;
    let mut last = None;
    while let Some((go, step, rate)) = wait_go(&shared, last).await {
        last = Some(step);
        let mut slots = Slots::new(go, rate, &cfg, spec.schedule);
        while let Some(slot) = slots.next(&shared).await {
            let target = &spec.targets[slot as usize % spec.targets.len()];
            if conn.is_none() {
                conn = HttpConn::connect(cfg.addr, spec.src).await.ok();
            }
            let Some(c) = conn.as_mut() else {
                shared.errors.http_io.fetch_add(1, Relaxed);
                continue;
            };
            let sent = shared.now_ns();
            let body = serde_json::json!({ "text": stamp::text(sent, cfg.payload) }).to_string();
            let mut result = c.request("POST", &target.path, &target.token, body.as_bytes()).await;
            // The server closes keep-alive connections that stay idle too long; a request that
            // met such a closed connection was never read, so send it once more on a new one.
            if let Err(err) = &result {
                if crate::http::is_stale(err, c.response_bytes()) {
                    shared.http_reopened.fetch_add(1, Relaxed);
                    match HttpConn::connect(cfg.addr, spec.src).await {
                        Ok(fresh) => {
                            *c = fresh;
                            result = c
                                .request("POST", &target.path, &target.token, body.as_bytes())
                                .await;
                        }
                        Err(e) => result = Err(e),
                    }
                }
            }
            match result {
                Ok((status, _)) if (200..300).contains(&status) => {
                    count_sent(&shared, sent, target.room_size)
                }
                Ok((status, resp)) => {
                    shared.errors.http.fetch_add(1, Relaxed);
                    if reported < 3 {
                        reported += 1;
                        eprintln!(
                            "POST {}: HTTP {status}: {}",
                            target.path,
                            String::from_utf8_lossy(&resp[..resp.len().min(200)])
                        );
                    }
                }
                Err(err) => {
                    shared.errors.http_io.fetch_add(1, Relaxed);
                    if reported < 3 {
                        reported += 1;
                        eprintln!("POST {}: {err}", target.path);
                    }
                    conn = None;
                }
            }
        }
    }
}
