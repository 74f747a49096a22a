//! A shard: one core's event loop and everything it owns — its connections, their local
//! subscriptions, the rooms and users hashed to it — plus its end of the mesh.
//!
//! Invariants: a `Shard` never leaves its thread (it is `!Send`: `Rc`/`RefCell` inside); no
//! `RefCell` borrow is held across an `.await`; a command to this shard itself goes through the
//! local inbox, never a re-entrant call, so handlers never nest.

pub mod big;
pub mod big_presence;
pub mod commit;
pub mod inbox;
pub mod owner;
pub mod persist;
pub mod receipts;
pub mod request;
pub mod sessions;
pub mod spawn;
pub mod users;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_channel::oneshot;
use slab::Slab;

use crate::auth::Verifier;
use crate::config::Config;
use crate::fanout::{Bundle, Subscriptions};
use crate::mesh::{Command, MeshEndpoint};
use crate::metrics::{Registry, ShardMetrics};
use crate::model::{Refusal, RoomId, ShardId, UserId};
use crate::net::conn::Conn;

pub use commit::{Effects, ReplyTo};
pub use request::{Request, Response};
pub use spawn::{start, ServerHandle};

/// How long a caller waits for an owner shard's answer before giving up with 503.
const OWNER_REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Users with a rate-limit bucket on one shard above which idle buckets are dropped.
const USER_RATES_MAX: usize = 65_536;
/// Verified tokens cached per shard.
pub const TOKEN_CACHE_MAX: usize = 8192;
/// Parked commands for one peer above which new client actions are refused (503).
const PARKED_ADMISSION_MAX: usize = 65_536;

/// One core's state. Shared by its tasks through `Rc`.
pub struct Shard {
    /// This shard's index.
    pub id: ShardId,
    /// Number of shards in the server.
    pub shard_count: usize,
    /// Every setting and bound.
    pub config: Arc<Config>,
    /// Token verification.
    pub verifier: Arc<Verifier>,
    /// This shard's counters.
    pub metrics: Arc<ShardMetrics>,
    /// Every shard's counters, for `/metrics`.
    pub registry: Arc<Registry>,
    /// This shard's end of the mesh.
    mesh: RefCell<MeshEndpoint>,
    /// Commands this shard sent to itself, handled by the inbox task.
    inbox: RefCell<VecDeque<Command>>,
    /// Wakes the inbox task for `inbox`.
    inbox_wake: tokio::sync::Notify,
    /// Whether the parked-retry task is running.
    retry_running: Cell<bool>,
    /// Callers waiting for owner answers, by token. Tokens are never reused, so a late answer
    /// to a caller that gave up cannot reach another caller.
    pending: RefCell<std::collections::HashMap<u64, oneshot::Sender<Response>>>,
    /// The next caller token.
    next_call_token: Cell<u64>,
    /// Open connections that receive events, by key.
    pub conns: RefCell<Slab<Rc<Conn>>>,
    /// Every upgraded WebSocket connection's reading state (event and echo connections).
    pub ws: crate::net::ws_session::Sessions,
    /// Writes queued frames out, one `send`/`sendmsg` per connection per turn.
    pub writer: Rc<crate::net::conn::Writer>,
    /// Local room subscriptions.
    pub subs: RefCell<Subscriptions>,
    /// Tokens this shard verified recently (REST requests skip the signature check).
    pub tokens: RefCell<crate::auth::TokenCache>,
    /// Logged-out sessions (a replica on every shard), refused by `authenticate`.
    pub revoked: RefCell<sessions::Revoked>,
    /// Rooms and users owned here.
    pub owned: RefCell<owner::Owned>,
    /// BIG dialect state: this shard's BIG connections, and the users owned here.
    pub big: RefCell<big::BigState>,
    /// This shard's durable store (its redb file, writer and reader threads).
    pub store: RefCell<crate::store::Store>,
    /// Writes waiting for the store, and reads in flight.
    pub commits: RefCell<commit::Commits>,
    /// Per-user token buckets for REST writes on this shard (bounded by `USER_RATES_MAX`).
    pub user_rates: RefCell<std::collections::HashMap<UserId, crate::net::rate::RateLimit>>,
    /// Set by the main thread to ask every shard to stop.
    pub stop: Arc<std::sync::atomic::AtomicBool>,
    /// Set once shutdown began: no new connections or actions.
    pub shutting_down: Cell<bool>,
    /// Wakes tasks that wait for shutdown.
    pub shutdown_wake: tokio::sync::Notify,
}

impl Shard {
    /// Sends `command` to shard `to` (itself included).
    pub fn send(self: &Shard, to: ShardId, command: Command) {
        if to == self.id {
            self.inbox.borrow_mut().push_back(command);
            self.inbox_wake.notify_one();
            return;
        }
        let pushed = self.mesh.borrow_mut().send(to, command);
        if !pushed && !self.retry_running.replace(true) {
            self.spawn_retry();
        }
    }

    fn spawn_retry(&self) {
        // The retry task needs an Rc to the shard; it finds it through the thread-local.
        tokio_uring::spawn(async {
            let Some(shard) = spawn::current() else {
                return;
            };
            loop {
                tokio::time::sleep(Duration::from_micros(200)).await;
                if shard.mesh.borrow_mut().retry_parked() == 0 {
                    shard.retry_running.set(false);
                    return;
                }
            }
        });
    }

    /// A fresh, never reused token and the receiver its answer will arrive on.
    pub fn expect_answer(&self) -> (u64, oneshot::Receiver<Response>) {
        let (tx, rx) = oneshot::channel();
        let token = self.next_call_token.get();
        self.next_call_token.set(token + 1);
        self.pending.borrow_mut().insert(token, tx);
        (token, rx)
    }

    /// Asks the owner shard `to` to execute `request` and waits for its answer.
    pub async fn call(&self, to: ShardId, request: Request) -> Response {
        if to == self.id {
            let (tx, rx) = oneshot::channel();
            self.execute(request, ReplyTo::Local(tx));
            return match tokio::time::timeout(OWNER_REPLY_TIMEOUT, rx).await {
                Ok(Ok(response)) => response,
                _ => {
                    Response::Refused(Refusal::Unavailable("the request was not answered in time"))
                }
            };
        }
        if self.mesh.borrow().parked_for(to) > PARKED_ADMISSION_MAX {
            return Response::Refused(Refusal::Unavailable(
                "the server is overloaded; retry later",
            ));
        }
        let (token, rx) = self.expect_answer();
        self.send(to, Command::Request { from: self.id, token, request });
        match tokio::time::timeout(OWNER_REPLY_TIMEOUT, rx).await {
            Ok(Ok(response)) => response,
            _ => {
                self.pending.borrow_mut().remove(&token);
                Response::Refused(Refusal::Unavailable("the owner shard did not answer in time"))
            }
        }
    }

    /// Takes one action token for `user`; false when the user is over its rate.
    pub fn take_user_action(&self, user: &UserId) -> bool {
        let now = crate::model::ids::now_ms();
        let mut rates = self.user_rates.borrow_mut();
        if rates.len() >= USER_RATES_MAX && !rates.contains_key(user) {
            // Drop the buckets that have refilled completely: their users were idle.
            let burst = self.config.actions_burst;
            rates.retain(|_, limit| !limit.is_full(now, burst));
        }
        let (per_second, burst) = (self.config.actions_per_second, self.config.actions_burst);
        let allowed = rates
            .entry(user.clone())
            .or_insert_with(|| crate::net::rate::RateLimit::new(per_second, burst, now))
            .take(now);
        if !allowed {
            crate::metrics::inc(&self.metrics.rate_limited_total);
        }
        allowed
    }

    /// Hands `bundle` to every local subscriber of `room`.
    pub fn deliver(&self, room: RoomId, bundle: &Bundle) {
        let subs = self.subs.borrow();
        let conns = self.conns.borrow();
        let mut delivered = 0u64;
        for key in subs.topic(room) {
            if let Some(conn) = conns.get(*key) {
                if let Some(frame) = bundle.frame_gated(conn.dialect, &conn.user, conn.flags.get())
                {
                    conn.send(frame.clone());
                    delivered += 1;
                }
            }
        }
        crate::metrics::add(&self.metrics.events_delivered_total, delivered);
        drop((subs, conns));
        if let Some(big) = &bundle.big {
            self.big_delivered(room, big, bundle);
        }
    }

    /// Hands `bundle` to the given local connections.
    pub fn deliver_to(&self, keys: &[usize], user: &UserId, bundle: &Bundle) {
        let conns = self.conns.borrow();
        for key in keys {
            if let Some(conn) = conns.get(*key) {
                if let Some(frame) = bundle.frame_gated(conn.dialect, user, conn.flags.get()) {
                    conn.send(frame.clone());
                    crate::metrics::inc(&self.metrics.events_delivered_total);
                }
            }
        }
    }

    /// Registers an authenticated event connection; tells the user's owner when it is the
    /// user's first connection here. Returns its key, or `None` at the connection limit.
    pub fn attach(&self, conn_of: impl FnOnce(usize) -> Rc<Conn>) -> Option<Rc<Conn>> {
        let mut conns = self.conns.borrow_mut();
        if conns.len() >= self.config.connections_per_shard_max {
            return None;
        }
        let entry = conns.vacant_entry();
        let conn = conn_of(entry.key());
        entry.insert(conn.clone());
        drop(conns);
        if self.subs.borrow_mut().add_conn(&conn.user, conn.key) {
            let owner = crate::model::ids::shard_of_user(&conn.user, self.shard_count);
            self.send(owner, Command::UserAttach { user: conn.user.clone(), shard: self.id });
        }
        Some(conn)
    }

    /// Unregisters a connection (before its key can be reused).
    pub fn detach(&self, conn: &Conn) {
        if self.subs.borrow_mut().remove_conn(&conn.user, conn.key) {
            let owner = crate::model::ids::shard_of_user(&conn.user, self.shard_count);
            self.send(owner, Command::UserDetach { user: conn.user.clone(), shard: self.id });
        }
        self.conns.borrow_mut().try_remove(conn.key);
    }
}
