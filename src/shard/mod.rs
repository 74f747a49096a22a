//! A shard: one core's event loop and everything it owns — its connections, their local
//! subscriptions, the rooms and users hashed to it — plus its end of the mesh.
//!
//! Invariants: a `Shard` never leaves its thread (it is `!Send`: `Rc`/`RefCell` inside); no
//! `RefCell` borrow is held across an `.await`; a command to this shard itself goes through the
//! local inbox, never a re-entrant call, so handlers never nest.

pub mod commit;
pub mod inbox;
pub mod owner;
pub mod persist;
pub mod receipts;
pub mod sessions;
pub mod spawn;
pub mod users;

use std::any::Any;
use std::cell::{Cell, RefCell, RefMut};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_channel::oneshot;
use slab::Slab;

use crate::auth::Verifier;
use crate::config::Config;
use crate::dialect::{DialectId, DialectMask, Presence};
use crate::fanout::{self, Bundle, Subscriptions};
use crate::limits::{OWNER_REPLY_TIMEOUT, PARKED_ADMISSION_MAX, USER_RATES_MAX};
use crate::mesh::{Command, MeshEndpoint};
use crate::metrics::{Registry, ShardMetrics};
use crate::model::{Refusal, RoomId, RoomKind, ShardId, UserId};
use crate::net::conn::Conn;

pub use crate::mesh::{Request, Response};
pub use commit::{Effects, ReplyTo};
pub use spawn::{start, ServerHandle};

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
    /// Whether the parked-retry task is retrying.
    retry_running: Cell<bool>,
    /// Wakes the parked-retry task.
    retry_wake: tokio::sync::Notify,
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
    /// Each dialect's own state on this shard (connection and owner side), by dialect id.
    pub dialects: Box<[RefCell<Box<dyn Any>>]>,
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
            self.retry_wake.notify_one();
        }
    }

    /// Retries commands parked on full rings every 200 µs while any are parked; started once
    /// per shard, woken by `send` when a push finds a ring full.
    pub async fn retry_parked(self: Rc<Self>) {
        loop {
            self.retry_wake.notified().await;
            loop {
                tokio::time::sleep(Duration::from_micros(200)).await;
                if self.mesh.borrow_mut().retry_parked() == 0 {
                    self.retry_running.set(false);
                    break;
                }
            }
        }
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

    /// Dialect `dialect`'s state on this shard, as the type its `shard_state` made.
    ///
    /// Panics when `T` is not that type: a programming error, never input.
    pub fn dialect_state<T: 'static>(&self, dialect: DialectId) -> RefMut<'_, T> {
        RefMut::map(self.dialects[dialect.index()].borrow_mut(), |state| {
            state.downcast_mut::<T>().expect("a dialect reads only its own state")
        })
    }

    /// Hands `bundle` to every local subscriber of `room`; then the dialects that tagged it
    /// hear of the delivery.
    pub fn deliver(&self, room: RoomId, bundle: &Bundle) {
        let subs = self.subs.borrow();
        let conns = self.conns.borrow();
        let delivered = fanout::deliver(subs.topic(room), |k| conns.get(k), bundle);
        crate::metrics::add(&self.metrics.events_delivered_total, delivered);
        drop((subs, conns));
        for dialect in bundle.tagged() {
            dialect.get().delivered(self, room, bundle);
        }
    }

    /// Hands `bundle` to the given local connections (one user's: each gets the frame for its
    /// own user, dialect and flags).
    pub fn deliver_to(&self, keys: &[usize], bundle: &Bundle) {
        let conns = self.conns.borrow();
        let delivered = fanout::deliver(keys, |k| conns.get(k), bundle);
        crate::metrics::add(&self.metrics.events_delivered_total, delivered);
    }

    /// The users whose `dialect` connections subscribed to `room` here get a frame of
    /// `bundle`, with that frame (each user once).
    pub fn local_recipients(
        &self,
        room: RoomId,
        dialect: DialectId,
        bundle: &Bundle,
    ) -> Vec<(UserId, bytes::Bytes)> {
        let subs = self.subs.borrow();
        let conns = self.conns.borrow();
        let mut seen: std::collections::HashSet<&UserId> = std::collections::HashSet::new();
        let mut got = Vec::new();
        for conn in subs.topic(room).iter().filter_map(|k| conns.get(*k)) {
            if conn.dialect != dialect || !seen.insert(&conn.user) {
                continue;
            }
            if let Some(frame) = bundle.frame_for(dialect, &conn.user, conn.flags.get()) {
                got.push((conn.user.clone(), frame.clone()));
            }
        }
        got
    }

    /// `user`'s connections on this shard.
    pub fn local_conns_of(&self, user: &UserId) -> Vec<Rc<Conn>> {
        let keys: Vec<usize> = self.subs.borrow().conns_of(user).to_vec();
        let all = self.conns.borrow();
        keys.iter().filter_map(|k| all.get(*k).cloned()).collect()
    }

    /// The dialects of `user`'s connections on this shard.
    fn local_dialects(&self, user: &UserId) -> DialectMask {
        let subs = self.subs.borrow();
        let conns = self.conns.borrow();
        subs.conns_of(user).iter().filter_map(|k| conns.get(*k)).fold(0, |m, c| m | c.dialect.bit())
    }

    /// Registers an authenticated event connection; tells the user's owner when it is the
    /// user's first connection here, or the first of its dialect. Returns it, or `None` at the
    /// connection limit.
    pub fn attach(&self, conn_of: impl FnOnce(usize) -> Rc<Conn>) -> Option<Rc<Conn>> {
        let mut conns = self.conns.borrow_mut();
        if conns.len() >= self.config.connections_per_shard_max {
            return None;
        }
        let entry = conns.vacant_entry();
        let conn = conn_of(entry.key());
        entry.insert(conn.clone());
        drop(conns);
        let before = self.local_dialects(&conn.user);
        self.subs.borrow_mut().add_conn(&conn.user, conn.key);
        let dialects = before | conn.dialect.bit();
        if dialects != before {
            let owner = crate::model::ids::shard_of_user(&conn.user, self.shard_count);
            let user = conn.user.clone();
            self.send(owner, Command::UserAttach { user, shard: self.id, dialects });
        }
        Some(conn)
    }

    /// Unregisters a connection (before its key can be reused); tells the user's owner when
    /// it was the user's last here, or the last of its dialect.
    pub fn detach(&self, conn: &Conn) {
        let before = self.local_dialects(&conn.user);
        let last = self.subs.borrow_mut().remove_conn(&conn.user, conn.key);
        self.conns.borrow_mut().try_remove(conn.key);
        let owner = crate::model::ids::shard_of_user(&conn.user, self.shard_count);
        let user = conn.user.clone();
        if last {
            self.send(owner, Command::UserDetach { user, shard: self.id });
        } else {
            let dialects = self.local_dialects(&conn.user);
            if dialects != before {
                self.send(owner, Command::UserAttach { user, shard: self.id, dialects });
            }
        }
    }

    /// User owner: where `user`'s connections are (no shards when it has none).
    pub fn user_presence(&self, user: &UserId) -> Presence {
        self.owned.borrow().users.get(user).map_or(Presence::default(), |r| r.conns.presence())
    }

    /// Room owner: `room`'s kind and the shards holding its subscribers, when `user` is a
    /// member of it.
    pub fn room_of_member(&self, room: RoomId, user: &UserId) -> Option<(RoomKind, u64)> {
        let owned = self.owned.borrow();
        let entry = owned.rooms.get(&room)?;
        entry.room.members.contains_key(user).then(|| (entry.room.kind, entry.shard_mask()))
    }
}
