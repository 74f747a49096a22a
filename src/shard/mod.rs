//! A shard: one core's event loop and everything it owns, in two roles plus its end of the
//! mesh:
//! - the connection side ([`ConnSide`], `conn_side.rs`): the connections it accepted, their
//!   sessions, writer, subscriptions, token cache and rate limits, and the actions that need
//!   the mesh (`attach`, `detach`, `deliver`, `authenticate`, `revoke_local`);
//! - the owner side ([`OwnerSide`], `owner_side.rs`): the rooms and users hashed to it, its
//!   store and the writes waiting for their commit; its handlers are in `owner` (rooms, user
//!   records), `users` (notifications), `receipts`, `sessions` (logout) and `commit`.
//!
//! `Shard` itself holds what both roles use: identity, settings, metrics, the mesh endpoint
//! and its calls (`send`, `call`), the dialects' state, and the shutdown flags. A task gets
//! the shard (`Rc<Shard>`) passed in when it is spawned; nothing is looked up through a
//! thread-local.
//!
//! Invariants: a `Shard` never leaves its thread (it is `!Send`: `Rc`/`RefCell` inside); no
//! `RefCell` borrow is held across an `.await`; a command to this shard itself goes through the
//! local inbox, never a re-entrant call, so handlers never nest.

pub mod commit;
pub mod conn_side;
pub mod drain;
pub mod inbox;
pub mod nodes;
pub mod owner;
pub mod owner_side;
pub mod persist;
pub mod receipts;
pub mod sessions;
pub mod settle;
pub mod spawn;
pub mod users;

use std::any::Any;
use std::cell::{Cell, RefCell, RefMut};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_channel::oneshot;

use crate::auth::Verifier;
use crate::config::Config;
use crate::dialect::DialectId;
use crate::limits::{OWNER_REPLY_TIMEOUT, PARKED_ADMISSION_MAX};
use crate::mesh::{Command, MeshEndpoint};
use crate::metrics::{Registry, ShardMetrics};
use crate::model::{Refusal, ShardId};

pub use crate::mesh::{Request, Response};
pub use commit::{Effects, ReplyTo};
pub use conn_side::{AttachRefused, ConnSide};
pub use owner_side::OwnerSide;
pub use sessions::SessionKey;
pub use spawn::{start, ServerHandle};

/// Who waits for an owner's answer on this shard.
#[derive(Debug)]
pub enum Waiter {
    /// A task (`Shard::call`, `Shard::barrier`).
    Task(oneshot::Sender<Response>),
    /// An owner's own continuation (`Shard::ask`), run by the inbox as the answer arrives,
    /// before the commands behind it on the same ring are handled.
    Then(Box<owner::Then>),
}

/// One core's state. Shared by its tasks through `Rc`.
pub struct Shard {
    /// This shard's global index (`node * shards + local`; the local index alone).
    pub id: ShardId,
    /// Number of shards in the service: every node's (`nodes * shards`), which rooms, users
    /// and ids hash over.
    pub shard_count: usize,
    /// The cluster's shape (a node alone: one node of `shard_count` shards).
    pub topology: crate::cluster::Topology,
    /// Every setting and bound.
    pub config: Arc<Config>,
    /// Token verification.
    pub verifier: Arc<Verifier>,
    /// The HS256 secret the web console's `POST /console/token` signs with: only with
    /// `--console-mint` (`rest::console`).
    pub console_mint: Option<Arc<[u8]>>,
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
    pending: RefCell<std::collections::HashMap<u64, Waiter>>,
    /// The next caller token.
    next_call_token: Cell<u64>,
    /// Of `pending`, the tokens awaited from a shard of another node, with that node: answered
    /// with 503 when it goes down (`Shard::node_down`).
    remote_pending: RefCell<std::collections::HashMap<u64, usize>>,
    /// The connection side: the connections this shard accepted and what serves them.
    pub conn: ConnSide,
    /// The owner side: the rooms and users hashed to this shard, their store and commits.
    pub owner: OwnerSide,
    /// Each dialect's own state on this shard (connection and owner side), by dialect id.
    pub dialects: Box<[RefCell<Box<dyn Any>>]>,
    /// Set by the main thread to ask every shard to stop.
    pub stop: Arc<std::sync::atomic::AtomicBool>,
    /// The listener's TLS (this shard's copy of the certificates), when configured: then
    /// every connection it accepts is TLS.
    pub tls: Option<crate::tls::ShardTls>,
    /// Set once shutdown began: no new connections or actions.
    pub shutting_down: Cell<bool>,
    /// Wakes tasks that wait for shutdown.
    pub shutdown_wake: tokio::sync::Notify,
    /// HTTP requests being handled (REST or a dialect's), which a drain lets finish.
    pub requests_in_flight: Cell<usize>,
    /// The drain's two rounds: the shards (bits) whose `Command::Drained` of each arrived.
    pub drained_from: [Cell<u64>; 2],
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
        self.pending.borrow_mut().insert(token, Waiter::Task(tx));
        (token, rx)
    }

    /// Asks shard `to` to execute `request` and continues with `then` (`Shard::resume`) when
    /// the answer arrives: in the inbox, before any later command from `to` is handled. Each
    /// continuation belongs to a request this owner is executing, so they are bounded by the
    /// requests in flight; rings never drop, so every one is answered.
    pub fn ask(&self, to: ShardId, request: Request, then: owner::Then) {
        let token = self.next_call_token.get();
        self.next_call_token.set(token + 1);
        self.pending.borrow_mut().insert(token, Waiter::Then(Box::new(then)));
        if self.unreachable(to) {
            // The continuation runs from the inbox, as any answer would.
            let refusal = Refusal::Unavailable("that node of the cluster is down");
            self.send(self.id, Command::Response { token, response: Response::Refused(refusal) });
            return;
        }
        self.await_from(token, to);
        self.send(to, Command::Request { from: self.id, token, request });
    }

    /// Whether shard `to` is on a node that does not answer now (never for this node's).
    pub fn unreachable(&self, to: ShardId) -> bool {
        self.mesh.borrow().unreachable(to)
    }

    /// Notes that token `token` awaits an answer from shard `to` (a shard of another node is
    /// remembered, to answer it with 503 if that node goes down).
    pub fn await_from(&self, token: u64, to: ShardId) {
        let node = self.topology.node_of(to);
        if node != self.topology.node {
            self.remote_pending.borrow_mut().insert(token, node);
        }
    }

    /// Hands `response` to whoever waits for `token` (nothing when nobody does any more).
    pub fn answer(self: &Shard, token: u64, response: Response) {
        if !self.remote_pending.borrow().is_empty() {
            self.remote_pending.borrow_mut().remove(&token);
        }
        let waiter = self.pending.borrow_mut().remove(&token);
        match waiter {
            Some(Waiter::Task(sender)) => {
                let _ = sender.send(response);
            }
            Some(Waiter::Then(then)) => self.resume(*then, response),
            None => {}
        }
    }

    /// Which nodes answer (`None` alone).
    pub fn cluster_health(&self) -> Option<Arc<crate::cluster::Health>> {
        self.mesh.borrow().health().cloned()
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
        if self.unreachable(to) {
            return Response::Refused(Refusal::Unavailable("that node of the cluster is down"));
        }
        let (token, rx) = self.expect_answer();
        self.await_from(token, to);
        self.send(to, Command::Request { from: self.id, token, request });
        match tokio::time::timeout(OWNER_REPLY_TIMEOUT, rx).await {
            Ok(Ok(response)) => response,
            _ => {
                self.pending.borrow_mut().remove(&token);
                self.remote_pending.borrow_mut().remove(&token);
                Response::Refused(Refusal::Unavailable("the owner shard did not answer in time"))
            }
        }
    }

    /// Dialect `dialect`'s state on this shard, as the type its `shard_state` made.
    ///
    /// Panics when `T` is not that type: a programming error, never input.
    pub fn dialect_state<T: 'static>(&self, dialect: DialectId) -> RefMut<'_, T> {
        RefMut::map(self.dialects[dialect.index()].borrow_mut(), |state| {
            state.downcast_mut::<T>().expect("a dialect reads only its own state")
        })
    }
}
