//! The osu! notification WebSocket dialect (`GET /notifications`, any path under it; protocol
//! sheet 001). Authentication at the upgrade (Bearer, else `?access_token=` when no
//! `Authorization` header came); a refusal completes the handshake, sends
//! `{"error":"authentication failed"}` and drops the socket, as the real relay does.
//!
//! Per-connection state is two bits of [`Conn::flags`] ([`CHAT_ACTIVE`], [`SCOPE_ALL`]) that
//! gate what a connection receives. Owner-side state: the public rooms' recent activity
//! ([`activity`]). Timers: a connection silent since its previous ping is dropped.

pub mod activity;
pub mod wire;

use std::any::Any;
use std::rc::Rc;

use bytes::Bytes;

use super::{
    Credentials, Dialect, DialectId, NotificationEvent, Refusal, RefuseReason, RoomChange,
    RoomEvent, Session, Sweep,
};
use crate::auth::Identity;
use crate::config::Config;
use crate::fanout::{Bundle, Routing};
use crate::http::head::RequestHead;
use crate::http::query::{bearer, query_param};
use crate::metrics;
use crate::model::{Event, Room, RoomKind, RoomView, UserId};
use crate::net::conn::Conn;
use crate::shard::Shard;

pub use wire::{ClientCommand, CHAT_ACTIVE, SCOPE_ALL};

/// osu!'s place in the registry.
pub const ID: DialectId = DialectId(2);

/// The osu! dialect.
pub struct Osu;

/// An osu! connection: `chat.start` / `chat.end` toggle its chat flag; anything else (not
/// JSON, unknown events) is ignored without a reply, as the real server does.
struct OsuSession;

impl Session for OsuSession {
    fn on_text(&self, _shard: &Rc<Shard>, conn: &Rc<Conn>, payload: &[u8]) {
        let flags = conn.flags.get();
        match wire::decode(payload) {
            ClientCommand::ChatStart => conn.flags.set(flags | CHAT_ACTIVE),
            ClientCommand::ChatEnd => conn.flags.set(flags & !CHAT_ACTIVE),
            ClientCommand::Ignored => {}
        }
    }
}

impl Dialect for Osu {
    fn name(&self) -> &'static str {
        "osu"
    }

    fn serves(&self, path: &str, _config: &Config) -> bool {
        path == "/notifications" || path.starts_with("/notifications/")
    }

    fn endpoint(&self, _config: &Config) -> Option<String> {
        Some("/notifications".into())
    }

    /// `Authorization: Bearer`, else `?access_token=` only when no `Authorization` header was
    /// sent at all (as the real server does).
    fn credentials(&self, head: &RequestHead) -> Credentials {
        if head.header("authorization").is_some() {
            return Credentials::Token(bearer(head).map(str::to_string));
        }
        let query = head.query.as_deref().and_then(|q| query_param(q, "access_token"));
        Credentials::Token(query.map(|t| t.into_owned()))
    }

    fn admit(&self, identity: &Identity) -> Option<u8> {
        wire::scope_flags(&identity.scopes)
    }

    /// osu!'s way: complete the handshake, send `{"error":…}`, drop the connection.
    fn refuse(&self, reason: RefuseReason<'_>) -> Refusal {
        match reason {
            RefuseReason::Unauthorized(_) => Refusal::AfterUpgrade(wire::authentication_failed()),
            RefuseReason::TooManyConnections { .. } => {
                Refusal::AfterUpgrade(wire::too_many_connections())
            }
        }
    }

    fn session(&self) -> Box<dyn Session> {
        Box::new(OsuSession)
    }

    /// `connection.ready` once the user's owner has handled the attach (a barrier through the
    /// same ring), i.e. once user-directed events reach the socket.
    fn opened(&self, shard: &Rc<Shard>, conn: &Rc<Conn>) {
        let owner = crate::model::ids::shard_of_user(conn.user(), shard.shard_count);
        let (shard, conn) = (shard.clone(), conn.clone());
        tokio_uring::spawn(async move {
            if shard.barrier(owner).await {
                conn.send(wire::connection_ready());
            }
        });
    }

    /// A room joined (`chat.channel.join`) or left (`chat.channel.part`), as `viewer` sees it.
    fn render_for(
        &self,
        event: &Event,
        room: &RoomView,
        viewer: &UserId,
        _moderator: bool,
    ) -> Option<Bytes> {
        match event {
            Event::RoomCreated(view) => Some(wire::channel_event(true, view, viewer)),
            Event::RoomDeleted { .. } => Some(wire::channel_event(false, room, viewer)),
            _ => None,
        }
    }

    /// Chat (messages, channel join/part) only after `chat.start`.
    fn gate(&self, event: &Event) -> u8 {
        match event {
            Event::MessageCreated(_) | Event::RoomCreated(_) | Event::RoomDeleted { .. } => {
                CHAT_ACTIVE
            }
            _ => 0,
        }
    }

    fn render_notification(&self, event: &NotificationEvent<'_>) -> Option<(Bytes, u8)> {
        let frame = match event {
            NotificationEvent::New(n) => wire::notification_new(n),
            NotificationEvent::Read { read, now_ms } => wire::notifications_read(read, *now_ms),
        };
        Some((frame, SCOPE_ALL))
    }

    /// A new message's `chat.message.new` is rendered here, not in `render`: its sender is
    /// named from the room's attributes, as join/part name users. A public room's new message
    /// goes only to members active in the last minute; a deleted room parts its channel (a PM
    /// rendered for each of its members).
    fn decorate(
        &self,
        shard: &Shard,
        cx: &RoomEvent<'_>,
        bundle: &mut Bundle,
        _commands: &mut Vec<(crate::model::ShardId, crate::mesh::Command)>,
    ) {
        if let Event::MessageCreated(m) = cx.event {
            // Once per message, shared by every osu! recipient.
            bundle.frames[ID.index()] = Some(wire::message_new(m, &cx.room.attributes));
        }
        match cx.event {
            Event::MessageCreated(_) if cx.room.kind == RoomKind::Public => {
                let only = shard
                    .dialect_state::<activity::Activity>(ID)
                    .active(cx.room.id, crate::model::ids::now_ms());
                bundle.routing[ID.index()] =
                    Some(Box::new(Routing { only: Some(only), ..Routing::default() }));
            }
            Event::RoomDeleted { .. } if cx.deleted => {
                let Some(view) = cx.view else { return };
                if view.kind == RoomKind::Direct {
                    let per_viewer = view
                        .members
                        .iter()
                        .map(|(u, _)| (u.clone(), wire::channel_event(false, view, u)))
                        .collect();
                    bundle.routing[ID.index()] =
                        Some(Box::new(Routing { per_viewer, ..Routing::default() }));
                } else {
                    bundle.frames[ID.index()] =
                        Some(wire::channel_event(false, view, &UserId::new("")));
                }
            }
            _ => {}
        }
    }

    fn room_changed(&self, shard: &Shard, change: &RoomChange<'_>) {
        shard.dialect_state::<activity::Activity>(ID).note(change, crate::model::ids::now_ms());
    }

    fn room_ack(&self, shard: &Shard, room: &Room, user: &UserId) {
        if room.kind == RoomKind::Public {
            let now = crate::model::ids::now_ms();
            shard.dialect_state::<activity::Activity>(ID).touch(room.id, user, now);
        }
    }

    fn shard_state(&self) -> Box<dyn Any> {
        Box::new(activity::Activity::default())
    }

    /// `{"event":"logout"}`, then a close frame without a status code (peers see 1005).
    fn logged_out(&self, conn: &Rc<Conn>) {
        conn.send(wire::logout());
        conn.answer_close(None);
    }

    /// A connection that sent nothing (no pong, no frame) since its previous ping is dropped
    /// at once, as the real server does.
    fn sweep(&self, shard: &Rc<Shard>, conn: &Rc<Conn>, _now: u64, previous_ping_ms: u64) -> Sweep {
        if previous_ping_ms != 0 && conn.last_seen_ms.get() < previous_ping_ms {
            metrics::inc(&shard.metrics.timeouts_total);
            conn.kill();
            return Sweep::Ended;
        }
        Sweep::Continue
    }
}
