//! Receipts on the room owner: BIG `dlvrd` / `read` marks per (room, member), persisted with
//! a store op before anyone hears of them, and the `dlvrd` / `read` events for the authors of
//! the newly covered messages, sent through each author's user owner (which keeps them until
//! acknowledged).
//!
//! Invariants: marks only move forward (`model::receipt`); a mark that moves nothing stores
//! nothing and sends nothing; only members have receipts (a deleted room's go with it); the
//! covered messages are looked up in the in-memory window only (older ones send no event).

use std::collections::HashMap;
use std::sync::Arc;

use crate::dialect::big;
use crate::mesh::Command;
use crate::model::ids::{now_ms, shard_of_user};
use crate::model::{Refusal, RoomId, RoomKind, UserId};
use crate::store::{ReceiptRecord, StoreOp};

use super::commit::Effects;
use super::request::Response;
use super::Shard;

impl Shard {
    /// Room owner: marks `user`'s messages of `room` up to `seq` (the newest when `None`)
    /// delivered, or read (and delivered).
    pub fn mark_receipt(
        &self,
        room_id: RoomId,
        user: &UserId,
        read: bool,
        seq: Option<u64>,
    ) -> Effects {
        let now = now_ms();
        let mut guard = self.owned.borrow_mut();
        let owned = &mut *guard;
        let Some(entry) = owned.rooms.get(&room_id) else {
            return Effects::refused(Refusal::NotFound("no such room"));
        };
        let room = &entry.room;
        if !room.members.contains_key(user) {
            return Effects::refused(Refusal::NotFound("no such room"));
        }
        let target = match seq {
            Some(s) if s > room.last_seq => {
                return Effects::refused(Refusal::NotFound("messageId is not exists"))
            }
            Some(s) => s,
            None => room.last_seq,
        };
        let raised = {
            let receipt =
                owned.receipts.entry(room_id).or_default().entry(user.clone()).or_default();
            receipt.mark(target, read, now)
        };
        let rooms_marked = owned.receipts.len() as u64;
        self.metrics.big_receipt_rooms.store(rooms_marked, std::sync::atomic::Ordering::Relaxed);
        let receipt =
            owned.receipts.get(&room_id).and_then(|r| r.get(user)).copied().unwrap_or_default();
        let (mark, at_ms) = if read {
            (receipt.read, receipt.read_ms)
        } else {
            (receipt.delivered, receipt.delivered_ms)
        };
        let client_message_id = room
            .history
            .binary_search_by(|m| m.seq.cmp(&mark))
            .ok()
            .and_then(|i| room.history[i].client_message_id.clone());
        let response = Response::Receipt {
            seq: mark,
            at_ms,
            missed: receipt.missed(room.last_seq),
            client_message_id,
        };
        let Some(raised) = raised else {
            return Effects::answer(response);
        };
        if !read && self.admit().is_err() {
            // An automatic delivered mark may wait for the next one.
            return Effects::answer(response);
        }
        let ops = vec![StoreOp::PutReceipt(ReceiptRecord {
            room: room_id,
            user: user.as_str().to_string(),
            delivered: receipt.delivered,
            delivered_ms: receipt.delivered_ms,
            read: receipt.read,
            read_ms: receipt.read_ms,
        })];
        // The newest newly covered message of each other author.
        let from = if read { raised.read_from } else { raised.delivered_from };
        let mut newest: HashMap<&UserId, &Arc<crate::model::Message>> = HashMap::new();
        for m in room.history.iter().rev().take_while(|m| m.seq > from) {
            if m.seq <= mark && &m.author != user && m.deleted_ms.is_none() {
                newest.entry(&m.author).or_insert(m);
            }
        }
        let kind = if read { "read" } else { "dlvrd" };
        let mut commands = Vec::with_capacity(newest.len());
        for (author, m) in newest {
            let chat = if room.kind == RoomKind::Direct {
                user.as_str().to_string()
            } else {
                room_id.to_string()
            };
            let id = format!("{}{}-{}-{}", &kind[..1], m.id, user, at_ms);
            let frame = big::receipt(&id, now, kind, &chat, user, m, at_ms);
            // Marks are cumulative: a newer one for the same chat and marker supersedes it.
            let key = Some(Arc::from(format!("{kind}:{room_id}:{user}")));
            let owner = shard_of_user(author, self.shard_count);
            commands.push((
                owner,
                Command::BigEvent { user: author.clone(), id: Arc::from(id), key, frame },
            ));
        }
        Effects { response, commands, ops }
    }
}
