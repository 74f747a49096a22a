//! The last step of the owner pipeline: an action's effects (its answer and the commands it
//! sends — deliveries, subscription changes, user-record updates) are released only once the
//! action is durable, so nobody sees or is told about a change that a crash could undo.
//!
//! Invariant: effects are released in the order their actions were applied, so deliveries of a
//! room stay in the room's order. Today the store is in memory and every commit is immediate.

use futures_channel::oneshot;

use crate::mesh::Command;
use crate::model::{Refusal, ShardId};

use super::request::Response;
use super::Shard;

/// Where an owner's answer goes.
#[derive(Debug)]
pub enum ReplyTo {
    /// A caller on another shard, waiting on its pending slot `token`.
    Remote {
        /// The calling shard.
        from: ShardId,
        /// The caller's pending slot.
        token: usize,
    },
    /// A caller on this shard.
    Local(oneshot::Sender<Response>),
}

/// What executing an action produced: the answer and the commands to send once it is durable.
#[derive(Debug)]
pub struct Effects {
    /// The caller's answer.
    pub response: Response,
    /// Commands for other shards (or this one), in order.
    pub commands: Vec<(ShardId, Command)>,
}

impl Effects {
    /// A refusal: nothing changed, nothing to send.
    pub fn refused(refusal: Refusal) -> Self {
        Effects {
            response: Response::Refused(refusal),
            commands: Vec::new(),
        }
    }
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
        }
    }

    /// Releases `effects` once they are durable (at once while the store is in memory).
    pub fn commit(&self, effects: Effects, reply_to: ReplyTo) {
        self.release(effects, reply_to);
    }

    /// Sends the effects' commands, then the answer.
    fn release(&self, effects: Effects, reply_to: ReplyTo) {
        for (shard, command) in effects.commands {
            self.send(shard, command);
        }
        self.respond(reply_to, effects.response);
    }
}
