//! The BIG messenger dialect (`GET /websocket`, protocol sheet 004): requests answered with
//! `response`s, server events acknowledged by the client and re-sent until they are, presence
//! to dialog peers, typing, and delivered/read receipts. Authentication at the upgrade
//! (Bearer as BIG's server, or `?access_token=` for browsers, which cannot set the header; a
//! 401 JSON body before any upgrade).
//!
//! - [`wire`]: pure decode and render of BIG frames; [`request`]: requests and client events
//!   as closed enums, validated where decoded.
//! - [`session`]: a connection's state and its requests (each in its own task).
//! - [`owner`]: BIG frames of room events (rendered on the room owner), chat lists, and the
//!   user owner's store of unacknowledged events; [`presence`]: online/offline and typing.
//! - [`BigCommand`]: BIG's cross-shard messages, carried by `mesh::Command::Dialect`.
//!
//! Timers: a connection silent for `big_silence_ms` is closed (1011) by the shard's sweeper;
//! unacknowledged events are re-sent every `big_resend_ms` by one task per shard while any
//! are kept. They are stored (dialect records) and come back after a restart.

pub mod owner;
pub mod presence;
pub mod request;
pub mod session;
pub mod wire;

use std::any::Any;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use super::{
    Credentials, Dialect, DialectId, Presence, ReceiptRaised, Refusal, RefuseReason, RoomEvent,
    Session, Sweep,
};
use crate::config::Config;
use crate::fanout::Bundle;
use crate::http::head::RequestHead;
use crate::http::query::{bearer, query_param};
use crate::http::response;
use crate::mesh::Command;
use crate::metrics;
use crate::model::ids::now_ms;
use crate::model::{RoomId, Seq, ShardId, UserId};
use crate::net::conn::Conn;
use crate::shard::Shard;
use crate::ws::close::CLOSE_INTERNAL;

pub use owner::BigState;

/// BIG's place in the registry.
pub const ID: DialectId = DialectId(3);

/// The BIG dialect.
pub struct Big;

/// BIG's cross-shard messages (the payload of `mesh::Command::Dialect` for [`ID`]).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum BigCommand {
    /// Connection shard → user owner: `user` acknowledged event `id`.
    Ack {
        /// The user.
        user: UserId,
        /// The event id.
        id: String,
    },
    /// User owner → a shard holding `user`'s connections: too many events are unacknowledged;
    /// tell its BIG connections and close them.
    Overflow {
        /// The user.
        user: UserId,
    },
    /// User owner of `about` → user owner of `to`: `about` came online (or went offline at
    /// `last_seen`); tell `to`'s BIG connections. With `answer`, `to`'s owner tells `about`'s
    /// owner back whether `to` is online now (the newcomer's view of its peers).
    Presence {
        /// Who is told.
        to: UserId,
        /// Whose presence changed.
        about: UserId,
        /// Online or offline.
        online: bool,
        /// When it went offline, ms (0 while online).
        last_seen: u64,
        /// Answer with `to`'s own presence if it is online.
        answer: bool,
    },
    /// Connection shard → room owner: `user` types (or stopped, `stop`) in `room`; BIG members
    /// get `typing`, never buffered.
    Typing {
        /// The room.
        room: RoomId,
        /// Who types.
        user: UserId,
        /// Stopped typing.
        stop: bool,
    },
    /// Connection shard or user owner → room owner: mark `user`'s messages of `room` up to
    /// `seq` (the newest when `None`) delivered or read; no answer.
    Mark {
        /// The room.
        room: RoomId,
        /// Who.
        user: UserId,
        /// Read rather than delivered.
        read: bool,
        /// Up to this per-room seq.
        seq: Option<Seq>,
    },
    /// Room owner → user owner: keep this event for `user` until acknowledged, and send it
    /// to the user's connections once that is committed (a room event, a receipt).
    Event {
        /// The user.
        user: UserId,
        /// The event id.
        id: Arc<str>,
        /// Its coalescing key: a newer event with the same key replaces it.
        key: Option<Arc<str>>,
        /// The frame.
        frame: Bytes,
        /// A `new` of this room and seq: marked delivered for the user as it is sent, when the
        /// user has BIG connections.
        mark: Option<(RoomId, Seq)>,
        /// Sent for a member whose connections the room owner did not know yet: dropped by
        /// the user owner when the user has no BIG connection.
        if_connected: bool,
    },
}

/// `command` as a mesh command.
pub fn command(command: BigCommand) -> Command {
    Command::Dialect { dialect: ID, payload: Box::new(command) }
}

/// Sends `command` to shard `to`.
pub fn send(shard: &Shard, to: ShardId, command: BigCommand) {
    shard.send(to, self::command(command));
}

impl Dialect for Big {
    fn name(&self) -> &'static str {
        "big"
    }

    fn serves(&self, path: &str, _config: &Config) -> bool {
        path == "/websocket"
    }

    fn endpoint(&self, _config: &Config) -> Option<String> {
        Some("/websocket".into())
    }

    /// `Authorization: Bearer`, as BIG's server; else `?access_token=` (our extension: a
    /// browser cannot set the header on a WebSocket).
    fn credentials(&self, head: &RequestHead) -> Credentials {
        if let Some(token) = bearer(head) {
            return Credentials::Token(Some(token.to_string()));
        }
        let query = head.query.as_deref().and_then(|q| query_param(q, "access_token"));
        Credentials::Token(query.map(|token| token.into_owned()))
    }

    /// BIG's (Spring's) error body: 401 `Unauthorized`, or 429 `Too Many Requests`.
    fn refuse(&self, reason: RefuseReason<'_>) -> Refusal {
        let status = reason.status();
        let body = wire::error_body(status, now_ms());
        Refusal::Http(response::response(
            status,
            Some("application/json"),
            body.as_bytes(),
            false,
            &[],
        ))
    }

    fn session(&self) -> Box<dyn Session> {
        Box::<session::BigSession>::default()
    }

    fn opened(&self, shard: &Rc<Shard>, _conn: &Rc<Conn>) {
        owner::count_local(shard, 1);
    }

    fn closed(&self, shard: &Shard, _conn: &Conn) {
        owner::count_local(shard, -1);
    }

    /// Room events go through their recipients' user owners, stored before they are sent
    /// (`owner::decorate`); the bundle carries no BIG frame.
    /// Room events go to their recipients' user owners (kept there until acknowledged).
    fn routes_through_user_owners(&self) -> bool {
        true
    }

    fn decorate(
        &self,
        shard: &Shard,
        event: &RoomEvent<'_>,
        _bundle: &mut Bundle,
        commands: &mut Vec<(ShardId, Command)>,
    ) {
        owner::decorate(event, shard.shard_count, commands);
    }

    fn receipt_raised(
        &self,
        shard: &Shard,
        receipt: &ReceiptRaised<'_>,
    ) -> Vec<(ShardId, Command)> {
        owner::receipt_events(shard, receipt)
    }

    /// A shard that gained the user's BIG connections gets its unacknowledged events at once
    /// (reconnect); the user's first BIG connection (or its last one closing) is presence.
    fn presence_changed(
        &self,
        shard: &Rc<Shard>,
        user: &UserId,
        before: Presence,
        after: Presence,
        attached: Option<(ShardId, super::DialectMask)>,
    ) {
        if let Some((attached, gained)) = attached {
            if gained & ID.bit() != 0 {
                owner::resend_to(shard, user, attached);
            }
        }
        let (was, is) = (before.dialects & ID.bit() != 0, after.dialects & ID.bit() != 0);
        if was != is {
            presence::online_changed(shard, user.clone(), is);
        }
    }

    fn rooms_changed(&self, shard: &Rc<Shard>, user: &UserId) {
        owner::chats_changed(shard, user.clone());
    }

    /// Across nodes a [`BigCommand`] is its postcard encoding.
    fn encode_command(&self, payload: &(dyn Any + Send)) -> Option<Vec<u8>> {
        postcard::to_allocvec(payload.downcast_ref::<BigCommand>()?).ok()
    }

    fn decode_command(&self, bytes: &[u8]) -> Option<Box<dyn Any + Send>> {
        let command: BigCommand = postcard::from_bytes(bytes).ok()?;
        Some(Box::new(command))
    }

    fn on_command(&self, shard: &Rc<Shard>, command: Box<dyn Any + Send>) {
        let Ok(command) = command.downcast::<BigCommand>() else {
            return;
        };
        match *command {
            BigCommand::Ack { user, id } => owner::ack(shard, &user, &id),
            BigCommand::Overflow { user } => owner::overflow_local(shard, &user),
            BigCommand::Presence { to, about, online, last_seen, answer } => {
                presence::tell(shard, to, about, online, last_seen, answer)
            }
            BigCommand::Typing { room, user, stop } => presence::typing(shard, room, user, stop),
            BigCommand::Mark { room, user, read, seq } => {
                let effects = shard.mark_receipt(room, &user, read, seq);
                let (unanswered, _) = futures_channel::oneshot::channel();
                shard.commit(effects, crate::shard::ReplyTo::Local(unanswered));
            }
            BigCommand::Event { user, id, key, frame, mark, if_connected } => {
                if if_connected && shard.owner.user_presence(&user).dialects & ID.bit() == 0 {
                    return;
                }
                owner::event_to(shard, user, id, key, (frame, mark))
            }
        }
    }

    fn shard_state(&self) -> Box<dyn Any> {
        Box::new(BigState::default())
    }

    /// The unacknowledged events kept before a restart.
    fn recovered(&self, shard: &Rc<Shard>, records: Vec<crate::store::DialectRecord>) {
        owner::recovered(shard, records);
    }

    fn sweep_period_ms(&self, config: &Config) -> Option<u64> {
        Some(config.big_silence_ms)
    }

    /// Closes a connection that sent no frame for `big_silence_ms` (1011, as the real server),
    /// then drops it so its session detaches at once.
    fn sweep(&self, shard: &Rc<Shard>, conn: &Rc<Conn>, now: u64, _previous_ping_ms: u64) -> Sweep {
        if now.saturating_sub(conn.last_seen_ms.get()) < shard.config.big_silence_ms {
            return Sweep::Continue;
        }
        metrics::inc(&shard.metrics.big_silence_closes_total);
        session::close_then_drop(conn, CLOSE_INTERNAL, "no ping");
        Sweep::Ended
    }
}

#[cfg(test)]
mod cluster_tests {
    use super::*;
    use crate::cluster::wire::{decode_batch, encode_frame};

    /// A BIG command crosses nodes as itself (`Dialect::encode_command`).
    #[test]
    fn big_commands_cross_nodes() {
        let mark = BigCommand::Mark {
            room: RoomId(4),
            user: UserId::new("bg"),
            read: true,
            seq: Some(Seq(3)),
        };
        let mut out = Vec::new();
        assert!(encode_frame(&mut out, ShardId(1), 2, &command(mark)));
        let frames = decode_batch(&out).ok().expect("decodes");
        let Command::Dialect { dialect, payload } = &frames[0].command else { panic!("dialect") };
        assert_eq!(*dialect, ID);
        let decoded = payload.downcast_ref::<BigCommand>().expect("a BigCommand");
        assert!(matches!(
            decoded,
            BigCommand::Mark { room: RoomId(4), read: true, seq: Some(Seq(3)), .. }
        ));
    }
}
