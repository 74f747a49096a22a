//! The connection side of a shard: the connections its listener accepted, their sessions and
//! writer, their room subscriptions, and what checks their requests (the token cache, the
//! logged-out sessions replica, per-user rate limits).
//!
//! Invariants: a connection key is in `slab` from `Shard::attach` until `Shard::detach`, and
//! leaves every topic of `subs` before its slot is freed; `slab` holds at most
//! `connections_per_shard_max` connections and at most `connections_per_user_max` of one user
//! (`Shard::attach` refuses more, saying why: [`AttachRefused`]); `user_rates` holds at most
//! `USER_RATES_MAX` users' buckets before idle ones are dropped; everything here is touched
//! only by this shard's thread.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use bytes::Bytes;
use slab::Slab;

use std::sync::atomic::Ordering;

use super::sessions::Revoked;
use super::Shard;
use crate::auth::{now_unix_s, Identity, TokenCache};
use crate::dialect::{DialectId, DialectMask};
use crate::fanout::{self, Bundle, Subscriptions};
use crate::limits::USER_RATES_MAX;
use crate::mesh::Command;
use crate::model::{RoomId, UserId};
use crate::net::admission::HttpPhase;
use crate::net::conn::{Bound, Conn, Writer};
use crate::net::rate::RateLimit;
use crate::net::ws_session::Sessions;

/// Why [`Shard::attach`] did not register a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachRefused {
    /// The shard holds `connections_per_shard_max` event connections.
    ShardFull,
    /// The user holds `max` (`connections_per_user_max`) event connections on this shard.
    UserFull {
        /// The bound.
        max: usize,
    },
    /// The connection was registered before.
    AlreadyAttached,
}

/// What serves one shard's connections.
pub struct ConnSide {
    /// Open connections that receive events, by key.
    pub slab: RefCell<Slab<Rc<Conn>>>,
    /// Every upgraded WebSocket connection's reading state (event and echo connections).
    pub ws: Sessions,
    /// Writes queued frames out, one `send`/`sendmsg` per connection per turn.
    pub writer: Rc<Writer>,
    /// Local room subscriptions.
    pub subs: RefCell<Subscriptions>,
    /// Tokens this shard verified recently (REST requests skip the signature check).
    pub tokens: RefCell<TokenCache>,
    /// Logged-out sessions (a replica on every shard), refused by `authenticate`.
    pub revoked: RefCell<Revoked>,
    /// Per-user token buckets for REST writes on this shard (bounded by `USER_RATES_MAX`).
    pub user_rates: RefCell<HashMap<UserId, RateLimit>>,
    /// Connections still in the HTTP phase (not upgraded), in all and per source address.
    pub http: HttpPhase,
}

impl ConnSide {
    /// No connections yet.
    pub fn new(ws: Sessions, writer: Rc<Writer>, revoked: Revoked, tokens: TokenCache) -> Self {
        ConnSide {
            slab: RefCell::new(Slab::new()),
            ws,
            writer,
            subs: RefCell::new(Subscriptions::default()),
            tokens: RefCell::new(tokens),
            revoked: RefCell::new(revoked),
            user_rates: RefCell::new(HashMap::new()),
            http: HttpPhase::default(),
        }
    }

    /// True when `sid` was logged out.
    pub fn is_revoked(&self, sid: &str) -> bool {
        let revoked = self.revoked.borrow();
        !revoked.is_empty() && revoked.contains(sid, now_unix_s())
    }

    /// The users whose `dialect` connections subscribed to `room` here get a frame of
    /// `bundle`, with that frame (each user once).
    pub fn recipients(
        &self,
        room: RoomId,
        dialect: DialectId,
        bundle: &Bundle,
    ) -> Vec<(UserId, Bytes)> {
        let subs = self.subs.borrow();
        let slab = self.slab.borrow();
        let mut seen: HashSet<&UserId> = HashSet::new();
        let mut got = Vec::new();
        for conn in subs.topic(room).iter().filter_map(|k| slab.get(*k)) {
            if conn.dialect != dialect || !seen.insert(conn.user()) {
                continue;
            }
            if let Some(frame) = bundle.frame_for(dialect, conn.user(), conn.flags.get()) {
                got.push((conn.user().clone(), frame.clone()));
            }
        }
        got
    }

    /// `user`'s connections on this shard.
    pub fn conns_of(&self, user: &UserId) -> Vec<Rc<Conn>> {
        let keys: Vec<usize> = self.subs.borrow().conns_of(user).to_vec();
        let slab = self.slab.borrow();
        keys.iter().filter_map(|k| slab.get(*k).cloned()).collect()
    }

    /// The dialects of `user`'s connections on this shard.
    pub fn dialects_of(&self, user: &UserId) -> DialectMask {
        let subs = self.subs.borrow();
        let slab = self.slab.borrow();
        subs.conns_of(user).iter().filter_map(|k| slab.get(*k)).fold(0, |m, c| m | c.dialect.bit())
    }
}

/// The connection side's actions that reach other shards or the dialects.
impl Shard {
    /// Takes one action token for `user`; false when the user is over its rate.
    pub fn take_user_action(&self, user: &UserId) -> bool {
        let now = crate::model::ids::now_ms();
        let mut rates = self.conn.user_rates.borrow_mut();
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

    /// Hands `bundle` to every local subscriber of `room`; then the dialects that tagged it
    /// hear of the delivery.
    pub fn deliver(&self, room: RoomId, bundle: &Bundle) {
        let subs = self.conn.subs.borrow();
        let conns = self.conn.slab.borrow();
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
        let conns = self.conn.slab.borrow();
        let delivered = fanout::deliver(keys, |k| conns.get(k), bundle);
        crate::metrics::add(&self.metrics.events_delivered_total, delivered);
    }

    /// Whether one more connection of `user` may register here: `Err` at the shard's or the
    /// user's connection limit, counted (`connections_refused_total`,
    /// `user_connection_limit_refused_total`). The upgrade asks before it answers, so that it
    /// can refuse in its dialect's shape.
    pub fn may_attach(&self, user: &UserId) -> Result<(), AttachRefused> {
        if self.conn.slab.borrow().len() >= self.config.connections_per_shard_max {
            crate::metrics::inc(&self.metrics.connections_refused_total);
            return Err(AttachRefused::ShardFull);
        }
        let max = self.config.connections_per_user_max;
        if self.conn.subs.borrow().conns_of(user).len() >= max {
            crate::metrics::inc(&self.metrics.user_connection_limit_refused_total);
            return Err(AttachRefused::UserFull { max });
        }
        Ok(())
    }

    /// Registers `conn` as `identity`'s connection for events (at the upgrade, or when an
    /// in-band dialect's client authenticates) with dialect `flags`; tells the user's owner
    /// when it is the user's first connection here, or the first of its dialect, and the
    /// session it showed; then the dialect's `opened` hook runs. `Err` (and nothing changes)
    /// at the shard's or the user's connection limit (counted, see [`Shard::may_attach`]), or
    /// when `conn` was registered before.
    pub fn attach(
        self: &Rc<Self>,
        conn: &Rc<Conn>,
        identity: &Identity,
        flags: u8,
    ) -> Result<(), AttachRefused> {
        if conn.bound().is_some() {
            return Err(AttachRefused::AlreadyAttached);
        }
        let user = UserId::new(&identity.user);
        self.may_attach(&user)?;
        let mut slab = self.conn.slab.borrow_mut();
        let entry = slab.vacant_entry();
        let session = identity.session.as_deref().map(super::SessionKey::of);
        // Slab keys stay below the shard's connection limit.
        let key = entry.key() as u32;
        conn.bind(Bound { key, user: user.clone(), session });
        entry.insert(conn.clone());
        drop(slab);
        conn.flags.set(flags);
        let before = self.conn.dialects_of(&user);
        self.conn.subs.borrow_mut().add_conn(&user, conn.key());
        let dialects = before | conn.dialect.bit();
        let owner = crate::model::ids::shard_of_user(&user, self.shard_count);
        if dialects != before {
            self.send(owner, Command::UserAttach { user: user.clone(), shard: self.id, dialects });
        }
        if let Some(sid) = session {
            let seen = Command::SessionSeen { user, sid, expires_at: identity.expires_at };
            self.send(owner, seen);
        }
        conn.dialect.get().opened(self, conn);
        Ok(())
    }

    /// Unregisters a registered connection (before its key can be reused); tells the user's
    /// owner when it was the user's last here, or the last of its dialect; then the dialect's
    /// `closed` hook runs. Does nothing for a connection that never registered.
    pub fn detach(&self, conn: &Conn) {
        let Some(bound) = conn.bound() else {
            return;
        };
        let before = self.conn.dialects_of(&bound.user);
        let last = self.conn.subs.borrow_mut().remove_conn(&bound.user, conn.key());
        self.conn.slab.borrow_mut().try_remove(conn.key());
        let owner = crate::model::ids::shard_of_user(&bound.user, self.shard_count);
        let user = bound.user.clone();
        if last {
            self.send(owner, Command::UserDetach { user, shard: self.id });
        } else {
            let dialects = self.conn.dialects_of(&bound.user);
            if dialects != before {
                self.send(owner, Command::UserAttach { user, shard: self.id, dialects });
            }
        }
        conn.dialect.get().closed(self, conn);
    }

    /// Verifies a token and refuses logged-out sessions, counting failures.
    pub fn authenticate(&self, token: Option<&str>) -> Result<Identity, String> {
        let result =
            crate::auth::authenticate(&self.verifier, token, |sid| self.conn.is_revoked(sid));
        if result.is_err() {
            crate::metrics::inc(&self.metrics.auth_failures_total);
        }
        result
    }

    /// [`Shard::authenticate`] for REST requests, through the shard's `TokenCache`: a bearer
    /// this shard verified before (on any keep-alive connection) skips the signature check; a
    /// cached identity is used only while it is unexpired and its session is not logged out.
    pub fn authenticate_cached(&self, token: Option<&str>) -> Result<Identity, String> {
        let cached = token.and_then(|t| self.conn.tokens.borrow().get(t, now_unix_s()).cloned());
        if let Some(identity) = cached {
            if !identity.session.as_deref().is_some_and(|s| self.conn.is_revoked(s)) {
                return Ok(identity);
            }
        }
        let result = self.authenticate(token);
        if let (Ok(identity), Some(token)) = (&result, token) {
            let mut tokens = self.conn.tokens.borrow_mut();
            tokens.insert(token, identity.clone());
            self.metrics.auth_cache_tokens.store(tokens.len() as u64, Ordering::Relaxed);
        }
        result
    }

    /// Applies a revocation on this shard: refuse the session from now on and close its
    /// connections here, each the way its dialect tells a logged-out client.
    pub fn revoke_local(&self, sid: &str, expires_at: u64) {
        if self.conn.revoked.borrow().covers(sid, expires_at) {
            // Known already (a node's resync repeats what this shard has): its connections
            // were closed when it was first applied, and none opened since.
            return;
        }
        self.conn.revoked.borrow_mut().insert(sid, expires_at, now_unix_s());
        let key = super::SessionKey::of(sid);
        let victims: Vec<_> = self
            .conn
            .slab
            .borrow()
            .iter()
            .filter(|(_, c)| c.in_session(key))
            .map(|(_, c)| c.clone())
            .collect();
        for conn in victims {
            conn.dialect.get().logged_out(&conn);
        }
    }
}
