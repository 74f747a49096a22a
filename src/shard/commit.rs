//! The last step of the owner pipeline: an action's effects (its answer and the commands it
//! sends — deliveries, subscription changes, user-record updates) are released only once the
//! action's store ops are committed (fsynced with `durability = "fsync"`), so nobody is told
//! about a change that a crash could undo.
//!
//! Invariants: effects are released in the order their actions were applied (the store
//! completes writes in submission order, and `pending` is a FIFO), so deliveries of a room stay
//! in the room's order; effects without store ops (reads, refusals) are answered at once; the
//! number of commits waiting is bounded by `COMMITS_PENDING_MAX` through admission (`admit`) of
//! new actions; a dialect's own writes (`commit_then`), which follow from those actions, are
//! never refused and come on top.

use std::collections::{HashMap, VecDeque};

use futures_channel::oneshot;

use crate::limits::{COMMITS_PENDING_MAX, STORE_READS_IN_FLIGHT_MAX};
use crate::mesh::Command;
use crate::model::room::{Page, Reply};
use crate::model::{MessageId, Refusal, RoomId, ShardId};
use crate::store::{Completion, StoreOp};

use super::owner::MessageRun;
use super::Shard;
use crate::mesh::Response;

/// Where an owner's answer goes.
#[derive(Debug)]
pub enum ReplyTo {
    /// A caller on another shard, waiting on its pending slot `token`.
    Remote {
        /// The calling shard.
        from: ShardId,
        /// The caller's pending slot.
        token: u64,
    },
    /// A caller on this shard.
    Local(oneshot::Sender<Response>),
    /// Nobody waits for an answer (a dialect's own writes, [`Shard::commit_then`]).
    Nobody,
}

/// What executing an action produced: the answer, the commands to send, and what to store.
#[derive(Debug)]
pub struct Effects {
    /// The caller's answer.
    pub response: Response,
    /// Commands for other shards (or this one), in order.
    pub commands: Vec<(ShardId, Command)>,
    /// What must be durable before anything above is released.
    pub ops: Vec<StoreOp>,
    /// Messages outside the window pinned (`Owned::pin`) until these ops are committed.
    pub pins: Vec<MessageId>,
}

impl Effects {
    /// A refusal: nothing changed, nothing to send.
    pub fn refused(refusal: Refusal) -> Self {
        Effects {
            response: Response::Refused(refusal),
            commands: Vec::new(),
            ops: Vec::new(),
            pins: Vec::new(),
        }
    }

    /// An answer that changed nothing.
    pub fn answer(response: Response) -> Self {
        Effects { response, commands: Vec::new(), ops: Vec::new(), pins: Vec::new() }
    }
}

/// One write waiting for its commit.
#[derive(Debug)]
pub struct PendingCommit {
    token: u64,
    effects: Effects,
    reply_to: ReplyTo,
    pins: Vec<MessageId>,
}

/// What a store read in flight continues with.
#[derive(Debug)]
pub enum PendingRead {
    /// A history page for a caller.
    History(ReplyTo),
    /// An edit or deletion of a message missing from the window (pinned while read).
    Message {
        /// The message.
        message: MessageId,
        /// The edit or deletion.
        run: Box<MessageRun>,
    },
    /// The parent (older than the window) of a comment posted or deleted (pinned while
    /// read); then the action runs again with it at hand.
    Parent {
        /// The parent.
        parent: MessageId,
        /// A message pinned until the action ran again (a deleted comment outside the window).
        also: Option<MessageId>,
        /// The action.
        run: Box<MessageRun>,
    },
    /// BIG: a message by per-room seq, older than the window.
    BySeq(ReplyTo),
}

/// This shard's side of its store: commits waiting, ops not yet accepted by the store's ring,
/// and history reads in flight.
#[derive(Debug, Default)]
pub struct Commits {
    /// Writes waiting for their `Written` completion, in submission order.
    pending: VecDeque<PendingCommit>,
    /// Ops the store's ring could not take yet, in order.
    unsubmitted: VecDeque<(u64, Vec<StoreOp>)>,
    /// Reads in flight, by token (at most `STORE_READS_IN_FLIGHT_MAX`).
    reads: HashMap<u64, PendingRead>,
    /// The next store token.
    next_token: u64,
}

impl Shard {
    /// Answers a caller.
    pub fn respond(&self, reply_to: ReplyTo, response: Response) {
        match reply_to {
            ReplyTo::Remote { from, token } => {
                self.send(from, Command::Response { token, response })
            }
            ReplyTo::Local(sender) => {
                let _ = sender.send(response);
            }
            ReplyTo::Nobody => {}
        }
    }

    /// Refuses a new write when the store is failing or too far behind.
    pub fn admit(&self) -> Result<(), Refusal> {
        if !self.owner.store.borrow().is_healthy() {
            return Err(Refusal::Unavailable(
                "the store is failing writes (disk full or I/O error); retry later",
            ));
        }
        if self.owner.commits.borrow().pending.len() >= COMMITS_PENDING_MAX {
            return Err(Refusal::Unavailable(
                "too many writes are waiting for the disk; retry later",
            ));
        }
        Ok(())
    }

    /// Releases `effects` once their ops are committed (at once when there are none).
    pub fn commit(&self, effects: Effects, reply_to: ReplyTo) {
        let mut effects = effects;
        let pins = std::mem::take(&mut effects.pins);
        if effects.ops.is_empty() {
            self.unpin(&pins);
            self.release(effects, reply_to);
            return;
        }
        let mut commits = self.owner.commits.borrow_mut();
        let token = commits.next_token;
        commits.next_token += 1;
        let ops = std::mem::take(&mut effects.ops);
        commits.pending.push_back(PendingCommit { token, effects, reply_to, pins });
        if commits.unsubmitted.is_empty() {
            if let Err(ops) = self.owner.store.borrow_mut().submit(token, ops) {
                commits.unsubmitted.push_back((token, ops));
            }
        } else {
            commits.unsubmitted.push_back((token, ops));
        }
    }

    /// Stores `ops` (a dialect's writes, through the same group commit and FIFO as every
    /// change), then sends `commands`: released in order with every other commit, and at once
    /// when there are no ops. Not refused while the store fails: the ops wait and are retried.
    pub fn commit_then(&self, ops: Vec<StoreOp>, commands: Vec<(ShardId, Command)>) {
        let effects =
            Effects { response: Response::RoomIds(Vec::new()), commands, ops, pins: Vec::new() };
        self.commit(effects, ReplyTo::Nobody);
    }

    /// Hands ops the store's ring refused earlier to it again, in order.
    pub fn resubmit(&self) {
        let mut commits = self.owner.commits.borrow_mut();
        let mut store = self.owner.store.borrow_mut();
        while let Some((token, ops)) = commits.unsubmitted.pop_front() {
            if let Err(ops) = store.submit(token, ops) {
                commits.unsubmitted.push_front((token, ops));
                break;
            }
        }
    }

    /// Queues a history read from disk (`after`, `before`, `limit`, `bytes_max`: see
    /// `RoomAction::History`); its answer goes to `reply_to`.
    pub fn read_history_from_store(
        &self,
        room: RoomId,
        (after, before, limit, bytes_max): (Option<MessageId>, Option<MessageId>, usize, usize),
        reply_to: ReplyTo,
    ) {
        let (after, before) = (after.map(MessageId::get), before.map(MessageId::get));
        self.read_from_store(PendingRead::History(reply_to), |store, token| {
            store.read_history(token, room.get(), after, before, (limit, bytes_max))
        });
    }

    /// Queues a store read (`read` pushes it with its token) that continues with `then`;
    /// refused with 503 when `STORE_READS_IN_FLIGHT_MAX` reads are in flight or the store's
    /// read ring is full.
    pub fn read_from_store(
        &self,
        then: PendingRead,
        read: impl FnOnce(&mut crate::store::Store, u64) -> Result<(), crate::store::RingFull>,
    ) {
        let mut commits = self.owner.commits.borrow_mut();
        let token = commits.next_token;
        let queued = commits.reads.len() < STORE_READS_IN_FLIGHT_MAX
            && read(&mut self.owner.store.borrow_mut(), token).is_ok();
        if queued {
            commits.next_token += 1;
            commits.reads.insert(token, then);
            return;
        }
        drop(commits);
        let busy = Refusal::Unavailable("the store is busy; retry later");
        match then {
            PendingRead::History(reply_to) | PendingRead::BySeq(reply_to) => {
                self.respond(reply_to, Response::Refused(busy))
            }
            PendingRead::Message { message, run } => {
                self.unpin(&[message]);
                self.respond(run.reply_to, Response::Refused(busy));
            }
            PendingRead::Parent { parent, also, run } => {
                self.unpin(&[parent]);
                self.unpin(also.as_slice());
                self.respond(run.reply_to, Response::Refused(busy));
            }
        }
    }

    /// The read in flight with `token`, taken out.
    fn take_read(&self, token: u64) -> Option<PendingRead> {
        self.owner.commits.borrow_mut().reads.remove(&token)
    }

    /// Drops one pin of each of `messages` (`Owned::pin`).
    pub fn unpin(&self, messages: &[MessageId]) {
        if messages.is_empty() {
            return;
        }
        let mut owned = self.owner.owned.borrow_mut();
        for message in messages {
            owned.unpin(*message);
        }
    }

    /// Handles the store's completions: releases committed effects, answers reads.
    pub fn drain_store(&self) {
        let mut completions = Vec::new();
        self.owner.store.borrow_mut().drain_completions(&mut completions);
        for completion in completions {
            match completion {
                Completion::Written { token, result } => self.written(token, result),
                Completion::History { token, result } => {
                    let Some(PendingRead::History(reply_to)) = self.take_read(token) else {
                        continue;
                    };
                    let response = match result {
                        Ok((records, truncated)) => Response::Done(Reply::Messages(Page {
                            messages: records.into_iter().map(|r| r.into_message()).collect(),
                            truncated,
                        })),
                        Err(error) => {
                            tracing::error!(shard = self.id.get(), "history read failed: {error}");
                            Response::Refused(Refusal::Unavailable("reading history failed"))
                        }
                    };
                    self.respond(reply_to, response);
                }
                Completion::Message { token, result } => match self.take_read(token) {
                    Some(PendingRead::Message { message, run }) => {
                        match result {
                            Ok(record) => self.detached_ready(message, record, *run),
                            Err(error) => self.message_read_failed(run.reply_to, &error),
                        }
                        // The read's own pin; an applied change holds another until committed.
                        self.unpin(&[message]);
                    }
                    Some(PendingRead::Parent { parent, also, run }) => {
                        match result {
                            Ok(record) => self.parent_ready(parent, record, *run),
                            Err(error) => self.message_read_failed(run.reply_to, &error),
                        }
                        self.unpin(&[parent]);
                        self.unpin(also.as_slice());
                    }
                    Some(PendingRead::BySeq(reply_to)) => {
                        let response = match result {
                            Ok(Some(record)) => {
                                Response::Done(Reply::Message(record.into_message()))
                            }
                            Ok(None) => {
                                Response::Refused(Refusal::NotFound("messageId is not exists"))
                            }
                            Err(error) => {
                                tracing::error!(
                                    shard = self.id.get(),
                                    "message read failed: {error}"
                                );
                                Response::Refused(Refusal::Unavailable(
                                    "reading the message failed",
                                ))
                            }
                        };
                        self.respond(reply_to, response);
                    }
                    _ => {}
                },
            }
        }
        self.resubmit();
    }

    fn written(&self, token: u64, result: Result<(), String>) {
        let pending = self.owner.commits.borrow_mut().pending.pop_front();
        let Some(pending) = pending else {
            tracing::error!(
                shard = self.id.get(),
                token,
                "a store completion without a pending commit"
            );
            return;
        };
        assert_eq!(pending.token, token, "store completions come in submission order");
        self.unpin(&pending.pins);
        match result {
            Ok(()) => self.release(pending.effects, pending.reply_to),
            Err(error) => {
                tracing::error!(shard = self.id.get(), "a write was not committed: {error}");
                self.respond(
                    pending.reply_to,
                    Response::Refused(Refusal::Unavailable("the write could not be stored")),
                );
            }
        }
    }

    /// Copies the store's counters into this shard's metrics.
    pub fn note_store_metrics(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let m = self.owner.store.borrow().metrics();
        self.metrics.store_commits_total.store(m.commits, Relaxed);
        self.metrics.store_commit_failures_total.store(m.commit_failures, Relaxed);
        self.metrics.store_batches_total.store(m.batches, Relaxed);
        self.metrics.store_healthy.store(u64::from(m.healthy), Relaxed);
        self.metrics.store_write_ring_used.store(m.write_ring_used as u64, Relaxed);
        self.metrics.store_checkpoints_total.store(m.checkpoints, Relaxed);
        self.metrics.store_log_bytes.store(m.log_bytes, Relaxed);
        self.metrics.store_unapplied_batches.store(m.unapplied_batches, Relaxed);
        self.metrics.store_log_replayed_batches.store(m.replayed_batches, Relaxed);
    }

    /// Sends the effects' commands, then the answer.
    /// A message read for a change failed: logged, and the change refused (503).
    fn message_read_failed(&self, reply_to: ReplyTo, error: &dyn std::fmt::Display) {
        tracing::error!(shard = self.id.get(), "message read failed: {error}");
        let failed = Refusal::Unavailable("reading the message failed");
        self.respond(reply_to, Response::Refused(failed));
    }

    fn release(&self, effects: Effects, reply_to: ReplyTo) {
        for (shard, command) in effects.commands {
            self.send(shard, command);
        }
        self.respond(reply_to, effects.response);
    }
}
