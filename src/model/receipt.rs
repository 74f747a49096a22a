//! Receipts: per (room, user), how far the user has had messages delivered and read, as
//! cumulative per-room seqs with the time each mark was first made. Pure.
//!
//! Invariants: marks only move forward (marking N marks every earlier message); read implies
//! delivered (`delivered >= read`); a repeated or older mark changes nothing and reports
//! nothing, so it is never re-sent.

use super::ids::Seq;

/// One user's marks in one room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Receipt {
    /// Every message up to this seq is delivered.
    pub delivered: Seq,
    /// When `delivered` was last raised, ms.
    pub delivered_ms: u64,
    /// Every message up to this seq is read.
    pub read: Seq,
    /// When `read` was last raised, ms.
    pub read_ms: u64,
}

/// What a mark changed: the previous marks, for finding the newly covered messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Raised {
    /// `delivered` before the mark.
    pub delivered_from: Seq,
    /// `read` before the mark.
    pub read_from: Seq,
}

impl Receipt {
    /// Marks every message up to `seq` delivered (`read = false`) or read (and delivered);
    /// `None` when nothing moved.
    pub fn mark(&mut self, seq: Seq, read: bool, now_ms: u64) -> Option<Raised> {
        let before = Raised { delivered_from: self.delivered, read_from: self.read };
        if read && seq > self.read {
            self.read = seq;
            self.read_ms = now_ms;
        }
        if seq > self.delivered {
            self.delivered = seq;
            self.delivered_ms = now_ms;
        }
        (self.delivered != before.delivered_from || self.read != before.read_from).then_some(before)
    }

    /// How many messages after the read mark the room holds, up to `last_seq`.
    pub fn missed(&self, last_seq: Seq) -> u64 {
        last_seq.saturating_sub(self.read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_cumulative_read_implies_delivered_and_repeats_change_nothing() {
        let mut r = Receipt::default();
        assert_eq!(
            r.mark(Seq(3), false, 10),
            Some(Raised { delivered_from: Seq(0), read_from: Seq(0) })
        );
        assert_eq!((r.delivered, r.read, r.delivered_ms), (Seq(3), Seq(0), 10));
        assert_eq!(r.mark(Seq(2), false, 11), None, "older mark");
        assert_eq!(r.mark(Seq(3), false, 12), None, "repeated mark");
        assert_eq!(
            r.mark(Seq(5), true, 13),
            Some(Raised { delivered_from: Seq(3), read_from: Seq(0) })
        );
        assert_eq!((r.delivered, r.read, r.read_ms, r.delivered_ms), (Seq(5), Seq(5), 13, 13));
        assert_eq!(r.mark(Seq(5), true, 14), None);
        assert_eq!(r.missed(Seq(8)), 3);
    }
}
