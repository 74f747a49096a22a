//! The cluster's wire: how a [`Command`] crosses nodes.
//!
//! A NATS message on `<prefix>.w<version>.node.<n>.mesh` ([`subject`]) is a batch of frames, each
//! `(from, to, command)`: the sending global shard, a mask of destination global shards (all on
//! node `n`; several bits for a broadcast, published once per node) and the command, encoded
//! with serde and `postcard` (a departure from rkyv, see ARCHITECTURE.md: commands hold
//! strings, vectors, `Arc`s and bundles, and serde derives sit on the model types already).
//! An `Arc<Bundle>` is encoded once per message and rebuilt once on the receiving node, then
//! shared by its local shards. A dialect's `Command::Dialect` payload is the dialect's own
//! bytes (`Dialect::encode_command` / `decode_command`); the core never reads them.
//!
//! Invariants: decoding never panics on what a peer sends; a frame that does not decode ends
//! the batch's decoding (counted by the caller, the rest dropped); user ids are checked
//! against the rule as they are decoded.

use std::any::Any;
use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::dialect::{DialectId, DIALECT_COUNT};
use crate::fanout::bundle::{Alternative, Frames, Routing};
use crate::fanout::Bundle;
use crate::mesh::Command;
use crate::model::{ShardId, UserId};

/// The version of this wire (the frames' encoding and every `Command`'s shape), bumped with
/// any change to either. It is a token of every cluster subject ([`subject`]), so nodes of
/// different versions never decode each other's bytes: each sees the other down, and says why
/// ([`health_version`]). 1: the first cluster (subjects without the token); 2: `SessionSeen`
/// carries a session key.
pub const WIRE_VERSION: u32 = 2;

/// Node `node`'s subject of `kind` (`mesh` or `health`) at this wire version (`node` may be
/// `*`).
pub fn subject(prefix: &str, node: impl std::fmt::Display, kind: &str) -> String {
    format!("{prefix}.w{WIRE_VERSION}.node.{node}.{kind}")
}

/// The health subjects of every wire version: this one's and others' (`<prefix>.*.node.*.health`)
/// and the first version's (`<prefix>.node.*.health`), so a node that speaks another is noticed.
pub fn health_subjects_any_version(prefix: &str) -> [String; 2] {
    [format!("{prefix}.*.node.*.health"), format!("{prefix}.node.*.health")]
}

/// The wire version whose health subject `subject` is (1 for the first version's, which had
/// no version token); `None` when it is not a health subject under `prefix`.
pub fn health_version(prefix: &str, subject: &str) -> Option<u32> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix('.')?.strip_suffix(".health")?;
    let mut tokens = rest.split('.');
    match (tokens.next()?, tokens.next()?, tokens.next(), tokens.next()) {
        ("node", _, None, None) => Some(1),
        (version, "node", Some(_), None) => version.strip_prefix('w')?.parse().ok(),
        _ => None,
    }
}

/// Whether `command` may cross nodes at all.
pub fn crosses_nodes(command: &Command) -> bool {
    !matches!(
        command,
        Command::Adopt(_)
            | Command::Shutdown
            | Command::Drained { .. }
            | Command::NodeDown(_)
            | Command::NodeUp(_)
    )
}

/// Appends one frame to `out`; false (nothing usable appended) when `command` cannot be
/// encoded (a node-local command, or a dialect payload without an encoding).
pub fn encode_frame(out: &mut Vec<u8>, from: ShardId, to: u64, command: &Command) -> bool {
    if !crosses_nodes(command) {
        return false;
    }
    let len = out.len();
    let from = u16::try_from(from.0).unwrap_or(u16::MAX);
    match postcard::to_io(&(from, to, command), &mut *out) {
        Ok(_) => true,
        Err(_) => {
            out.truncate(len);
            false
        }
    }
}

/// One decoded frame.
pub struct Frame {
    /// The sending global shard.
    pub from: ShardId,
    /// The destination global shards.
    pub to: u64,
    /// The command.
    pub command: Command,
}

/// Decodes a batch; `Err(frames decoded before the bad one)` when one does not decode.
pub fn decode_batch(mut bytes: &[u8]) -> Result<Vec<Frame>, Vec<Frame>> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        match postcard::take_from_bytes::<(u16, u64, Command)>(bytes) {
            Ok(((from, to, command), rest)) => {
                frames.push(Frame { from: ShardId(usize::from(from)), to, command });
                bytes = rest;
            }
            Err(e) => {
                tracing::warn!(
                    "cluster: a frame does not decode: {e}: {:?}",
                    &bytes[..bytes.len().min(48)]
                );
                return Err(frames);
            }
        }
    }
    Ok(frames)
}

/// A second handle on a command that goes to several shards of one node (a broadcast's
/// `Arc<Bundle>` is shared); `None` for commands that are never merged.
pub fn clone_broadcast(command: &Command) -> Option<Command> {
    Some(match command {
        Command::Deliver { room, bundle } => {
            Command::Deliver { room: *room, bundle: bundle.clone() }
        }
        Command::RoomGone { room, bundle } => {
            Command::RoomGone { room: *room, bundle: bundle.clone() }
        }
        Command::DeliverToUser { user, bundle } => {
            Command::DeliverToUser { user: user.clone(), bundle: bundle.clone() }
        }
        Command::RevokeSession { sid, expires_at } => {
            Command::RevokeSession { sid: sid.clone(), expires_at: *expires_at }
        }
        _ => return None,
    })
}

/// Whether `next` is the same broadcast as `last` (the same shared bundle, or the same
/// revocation), so it can ride in `last`'s frame with one more destination bit.
pub fn same_broadcast(last: &Command, next: &Command) -> bool {
    use std::sync::Arc;
    match (last, next) {
        (Command::Deliver { room: a, bundle: x }, Command::Deliver { room: b, bundle: y })
        | (Command::RoomGone { room: a, bundle: x }, Command::RoomGone { room: b, bundle: y }) => {
            a == b && Arc::ptr_eq(x, y)
        }
        (
            Command::DeliverToUser { user: a, bundle: x },
            Command::DeliverToUser { user: b, bundle: y },
        ) => a == b && Arc::ptr_eq(x, y),
        (
            Command::RevokeSession { sid: a, expires_at: x },
            Command::RevokeSession { sid: b, expires_at: y },
        ) => a == b && x == y,
        _ => false,
    }
}

/// `Command::Dialect` out: the dialect's id and its own bytes.
pub fn serialize_dialect<S: Serializer>(
    dialect: &DialectId,
    payload: &Box<dyn Any + Send>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match dialect.get().encode_command(payload.as_ref()) {
        Some(bytes) => (dialect.0, Bytes::from(bytes)).serialize(serializer),
        None => Err(serde::ser::Error::custom("this dialect message does not cross nodes")),
    }
}

/// `Command::Dialect` in: a known dialect that decodes its bytes.
pub fn deserialize_dialect<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<(DialectId, Box<dyn Any + Send>), D::Error> {
    let (id, bytes): (u8, Bytes) = Deserialize::deserialize(deserializer)?;
    if usize::from(id) >= DIALECT_COUNT {
        return Err(serde::de::Error::custom("unknown dialect"));
    }
    let dialect = DialectId(id);
    match dialect.get().decode_command(&bytes) {
        Some(payload) => Ok((dialect, payload)),
        None => Err(serde::de::Error::custom("the dialect's message does not decode")),
    }
}

#[derive(Serialize)]
struct BundleOut<'a> {
    frames: &'a Frames,
    alternative: Option<(Vec<&'a UserId>, &'a Frames)>,
    gates: &'a [u8; DIALECT_COUNT],
    routing: Vec<Option<RoutingOut<'a>>>,
}

#[derive(Serialize)]
struct RoutingOut<'a> {
    only: Option<Vec<&'a UserId>>,
    skip: &'a Option<UserId>,
    per_viewer: Vec<(&'a UserId, &'a Bytes)>,
}

#[derive(Deserialize)]
struct BundleIn {
    frames: Frames,
    alternative: Option<(Vec<UserId>, Frames)>,
    gates: [u8; DIALECT_COUNT],
    routing: Vec<Option<RoutingIn>>,
}

#[derive(Deserialize)]
struct RoutingIn {
    only: Option<Vec<UserId>>,
    skip: Option<UserId>,
    per_viewer: Vec<(UserId, Bytes)>,
}

/// A bundle on the wire: its frames, alternative, gates and routing. The compressed frames are
/// made again by the receiving node's first deflate recipient; a routing `tag` (a dialect's
/// note for its `delivered` hook, unused by the dialects today) stays on the sending node.
impl Serialize for Bundle {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let out = BundleOut {
            frames: &self.frames,
            alternative: self.alternative.as_ref().map(|a| (a.users.iter().collect(), &a.frames)),
            gates: &self.gates,
            routing: self
                .routing
                .iter()
                .map(|r| {
                    r.as_ref().map(|r| RoutingOut {
                        only: r.only.as_ref().map(|only| only.iter().collect()),
                        skip: &r.skip,
                        per_viewer: r.per_viewer.iter().collect(),
                    })
                })
                .collect(),
        };
        out.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Bundle {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = BundleIn::deserialize(deserializer)?;
        if wire.routing.len() != DIALECT_COUNT {
            return Err(serde::de::Error::custom("a bundle's routing has one entry per dialect"));
        }
        let mut routing: [Option<Box<Routing>>; DIALECT_COUNT] = Default::default();
        for (slot, r) in routing.iter_mut().zip(wire.routing) {
            *slot = r.map(|r| {
                Box::new(Routing {
                    only: r.only.map(|only| only.into_iter().collect::<HashSet<_>>()),
                    skip: r.skip,
                    per_viewer: r.per_viewer.into_iter().collect::<HashMap<_, _>>(),
                    tag: None,
                })
            });
        }
        Ok(Bundle {
            frames: wire.frames,
            alternative: wire.alternative.map(|(users, frames)| {
                Box::new(Alternative { users: users.into_iter().collect(), frames })
            }),
            gates: wire.gates,
            routing,
            deflated: Default::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn health_subjects_name_their_wire_version() {
        use super::{health_version, subject, WIRE_VERSION};
        let ours = subject("rc.a", 3, "health");
        assert_eq!(ours, format!("rc.a.w{WIRE_VERSION}.node.3.health"));
        assert_eq!(health_version("rc.a", &ours), Some(WIRE_VERSION));
        assert_eq!(health_version("rc.a", "rc.a.node.3.health"), Some(1));
        assert_eq!(health_version("rc.a", "rc.a.w9.node.0.health"), Some(9));
        for other in [
            "rc.a.w2.node.3.mesh",
            "rc.b.w2.node.3.health",
            "rc.a.x2.node.3.health",
            "rc.a.w2.node.health",
            "rc.a.node.3.4.health",
            "rc.ab.node.3.health",
        ] {
            assert_eq!(health_version("rc.a", other), None, "{other}");
        }
    }

    use std::sync::Arc;

    use super::*;
    use crate::model::{RoomId, UserId};

    #[test]
    fn a_batch_round_trips_and_a_broken_tail_is_reported() {
        let mut bundle = Bundle::default();
        bundle.frames[0] = Some(Bytes::from_static(b"\x81\x02hi"));
        bundle.gates[1] = 3;
        let bundle = Arc::new(bundle);
        let mut out = Vec::new();
        let deliver = Command::Deliver { room: RoomId(7), bundle: bundle.clone() };
        assert!(encode_frame(&mut out, ShardId(1), 0b1100, &deliver));
        let attach =
            Command::UserAttach { user: UserId::new("ann"), shard: ShardId(2), dialects: 5 };
        assert!(encode_frame(&mut out, ShardId(0), 0b0100, &attach));
        assert!(!encode_frame(&mut out, ShardId(0), 1, &Command::Shutdown));
        let frames = decode_batch(&out).ok().expect("decodes");
        assert_eq!(frames.len(), 2);
        assert_eq!((frames[0].from, frames[0].to), (ShardId(1), 0b1100));
        match &frames[0].command {
            Command::Deliver { room, bundle } => {
                assert_eq!(*room, RoomId(7));
                assert_eq!(bundle.frames[0].as_deref(), Some(&b"\x81\x02hi"[..]));
                assert_eq!(bundle.gates[1], 3);
            }
            other => panic!("{other:?}"),
        }
        match &frames[1].command {
            Command::UserAttach { user, shard, dialects } => {
                assert_eq!((user.as_str(), *shard, *dialects), ("ann", ShardId(2), 5));
            }
            other => panic!("{other:?}"),
        }
        // Garbage after good frames: those decoded are kept, the caller counts the rest.
        out.extend_from_slice(&[0xff, 0xff, 0xff]);
        assert_eq!(decode_batch(&out).err().map(|f| f.len()), Some(2));
        assert!(decode_batch(&[0x07]).is_err());
    }

    #[test]
    fn a_user_id_from_a_peer_is_checked() {
        let mut out = Vec::new();
        let bad = Command::RoomJoined { user: UserId::new("a b"), room: RoomId(1) };
        assert!(encode_frame(&mut out, ShardId(0), 1, &bad));
        assert!(decode_batch(&out).is_err());
    }
}

#[cfg(test)]
mod order_tests {
    use super::*;
    use crate::model::{RoomId, UserId};

    /// Every variant after a node-local one decodes as itself (serde numbers skipped variants
    /// when encoding only).
    #[test]
    fn the_last_crossing_variants_round_trip() {
        let mut out = Vec::new();
        let pair = (UserId::new("a"), UserId::new("b"));
        let command = Command::DirectPair { pair, room: RoomId(9), held: true };
        assert!(encode_frame(&mut out, ShardId(0), 1, &command));
        let frames = decode_batch(&out).ok().expect("decodes");
        assert!(matches!(
            frames[0].command,
            Command::DirectPair { room: RoomId(9), held: true, .. }
        ));
    }
}
