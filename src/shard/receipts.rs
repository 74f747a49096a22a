//! Receipts on the room owner: delivered / read marks per (room, member), persisted with a
//! store op before anyone hears of them; the dialects tell whom a raised mark concerns (their
//! commands are released with the commit).
//!
//! Invariants: marks only move forward (`model::receipt`); a mark that moves nothing stores
//! nothing and sends nothing; only members have receipts (a deleted room's go with it).

use crate::dialect::{DialectId, ReceiptRaised};
use crate::model::ids::now_ms;
use crate::model::{Refusal, RoomId, Seq, UserId};
use crate::store::{ReceiptRecord, StoreOp};

use super::commit::Effects;
use super::Shard;
use crate::mesh::Response;

impl Shard {
    /// Room owner: marks `user`'s messages of `room` up to `seq` (the newest when `None`)
    /// delivered, or read (and delivered).
    pub fn mark_receipt(
        &self,
        room_id: RoomId,
        user: &UserId,
        read: bool,
        seq: Option<Seq>,
    ) -> Effects {
        let now = now_ms();
        let mut guard = self.owner.owned.borrow_mut();
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
        self.metrics.receipt_rooms.store(rooms_marked, std::sync::atomic::Ordering::Relaxed);
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
            room: room_id.get(),
            user: user.as_str().to_string(),
            delivered: receipt.delivered.get(),
            delivered_ms: receipt.delivered_ms,
            read: receipt.read.get(),
            read_ms: receipt.read_ms,
        })];
        let from = if read { raised.read_from } else { raised.delivered_from };
        let change = ReceiptRaised { room, user, read, from_seq: from.next(), to_seq: mark, at_ms };
        let commands =
            DialectId::all().flat_map(|d| d.get().receipt_raised(self, &change)).collect();
        Effects { response, commands, ops, pins: Vec::new() }
    }
}
