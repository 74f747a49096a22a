//! The write-ahead log in front of a shard's redb file (`shard-<i>.log` beside
//! `shard-<i>.redb`), used with [`Durability::Fsync`](super::Durability::Fsync): each group of
//! batches is appended (one record per batch) with one `pwrite` and made durable with one
//! `fdatasync`; the writer applies the logged batches to redb later, in larger non-durable
//! transactions, and a durable redb commit (a checkpoint) makes the log's contents redundant.
//!
//! Record: `gen` (u64 LE), `len` (u32 LE), `crc` (u32 LE, CRC-32 of `gen`, `len` and the
//! payload), then `len` payload bytes: the batch's `Vec<StoreOp>` encoded with rkyv.
//!
//! Invariants:
//! - Records of the current generation start at offset 0 and follow each other without gaps;
//!   reading stops at the first record that is torn, fails its checksum or bytecheck, or has
//!   another generation (bytes left from an earlier generation, or the zero fill).
//! - A generation is used once: redb's `meta` records the current one, and a checkpoint
//!   raises it in the same durable transaction that makes the log's contents redundant, so
//!   stale records can never be read as current ones.
//! - Appends below `allocated` (bytes already written, records or zero fill) change no file
//!   metadata, so `fdatasync` writes only the appended blocks; the file is extended
//!   [`STORE_LOG_EXTEND_BYTES`] at a time with zeros, made durable before use.
//! - A failed append leaves `end` where it was: the retry rewrites the same bytes at the same
//!   offset. Everything before `durable` is durable; between `durable` and `end` are records
//!   written ([`Log::write`]) whose `fdatasync` has not completed yet (the writer pipelines:
//!   one group syncing while the next is written). A failed sync rewinds `end` to `durable`
//!   ([`Log::rewind`]) so the retry rewrites everything not known durable.
//!
//! Limits: the writer checkpoints once the log holds [`STORE_LOG_CHECKPOINT_BYTES`], so the
//! file stays below that plus one group plus one extension.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rkyv::rancor;

use super::db::Fail;
use super::record::StoreOp;
use crate::limits::STORE_LOG_EXTEND_BYTES;

/// Bytes before each record's payload: generation, length, checksum.
const HEADER: usize = 16;

/// The log file beside a shard file.
pub(crate) fn log_path(db_path: &Path) -> PathBuf {
    db_path.with_extension("log")
}

/// An open log: the file, its generation and where the next record goes.
pub(crate) struct Log {
    path: PathBuf,
    /// Shared with the writer's sync thread, which runs `fdatasync` on it.
    file: Arc<File>,
    gen: u64,
    /// Where the next record goes (records before it are written, not necessarily durable).
    end: u64,
    /// Records before this offset are durable.
    durable: u64,
    allocated: u64,
    /// The records of the group being appended.
    buf: Vec<u8>,
    /// One batch's rkyv encoding, reused.
    scratch: rkyv::util::AlignedVec,
}

fn crc(gen: u64, len: u32, payload: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(&gen.to_le_bytes());
    c.update(&len.to_le_bytes());
    c.update(payload);
    c.sum()
}

/// Reads the records of generation `gen` from the start of `bytes`; returns the batches and
/// the end of the last good record.
pub(crate) fn parse(bytes: &[u8], gen: u64) -> (Vec<Vec<StoreOp>>, u64) {
    let mut batches = Vec::new();
    let mut at = 0usize;
    while let Some(header) = bytes.get(at..at + HEADER) {
        let (gen_bytes, rest) = header.split_at(8);
        let (len_bytes, sum_bytes) = rest.split_at(4);
        let mut g = [0u8; 8];
        g.copy_from_slice(gen_bytes);
        let (mut l, mut c) = ([0u8; 4], [0u8; 4]);
        l.copy_from_slice(len_bytes);
        c.copy_from_slice(sum_bytes);
        let (record_gen, len, sum) =
            (u64::from_le_bytes(g), u32::from_le_bytes(l), u32::from_le_bytes(c));
        if record_gen != gen {
            break;
        }
        let start = at + HEADER;
        let Some(payload) = start.checked_add(len as usize).and_then(|end| bytes.get(start..end))
        else {
            break;
        };
        if crc(record_gen, len, payload) != sum {
            break;
        }
        let Ok(ops) = rkyv::from_bytes::<Vec<StoreOp>, rancor::Error>(payload) else {
            break;
        };
        batches.push(ops);
        at = start + len as usize;
    }
    (batches, at as u64)
}

impl Log {
    /// Opens (creating) the log at `path` and reads back its records of generation `gen`
    /// (none if no generation was ever recorded). Creating the file syncs its directory.
    pub(crate) fn open(path: &Path, gen: Option<u64>) -> Result<(Log, Vec<Vec<StoreOp>>), Fail> {
        let io = |what: &str, e: std::io::Error| Fail(format!("{what} {}: {e}", path.display()));
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io("opening", e))?;
        if !existed {
            file.sync_all().map_err(|e| io("syncing", e))?;
            if let Some(dir) = path.parent() {
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| io("syncing the dir of", e))?;
            }
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| io("reading", e))?;
        let (batches, end) = match gen {
            Some(gen) => parse(&bytes, gen),
            None => (Vec::new(), 0),
        };
        let log = Log {
            path: path.to_path_buf(),
            file: Arc::new(file),
            gen: gen.unwrap_or(0),
            end,
            durable: end,
            allocated: bytes.len() as u64,
            buf: Vec::new(),
            scratch: rkyv::util::AlignedVec::new(),
        };
        Ok((log, batches))
    }

    /// Appends one record per batch and makes them durable: one write, one `fdatasync` (plus,
    /// once per [`STORE_LOG_EXTEND_BYTES`], the zero fill that extends the file).
    pub(crate) fn append<'a>(
        &mut self,
        batches: impl Iterator<Item = &'a Vec<StoreOp>>,
    ) -> Result<(), Fail> {
        debug_assert_eq!(self.end, self.durable, "append behind records not yet durable");
        self.write(batches)?;
        if let Err(e) = self.file.sync_data() {
            self.rewind();
            return Err(self.fail("syncing", e));
        }
        self.synced(self.end);
        Ok(())
    }

    /// Writes one record per batch at `end` with one write and moves `end` past them, without
    /// making them durable: a `fdatasync` that starts after this returns (on [`Log::file`])
    /// does, and [`Log::synced`] records it.
    pub(crate) fn write<'a>(
        &mut self,
        batches: impl Iterator<Item = &'a Vec<StoreOp>>,
    ) -> Result<(), Fail> {
        self.buf.clear();
        for ops in batches {
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.clear();
            let payload = rkyv::api::high::to_bytes_in::<_, rancor::Error>(ops, scratch)?;
            let len = u32::try_from(payload.len())
                .map_err(|_| Fail(format!("a batch of {} bytes is too large", payload.len())))?;
            self.buf.extend_from_slice(&self.gen.to_le_bytes());
            self.buf.extend_from_slice(&len.to_le_bytes());
            self.buf.extend_from_slice(&crc(self.gen, len, &payload).to_le_bytes());
            self.buf.extend_from_slice(&payload);
            self.scratch = payload;
        }
        let end = self.end + self.buf.len() as u64;
        if end > self.allocated {
            self.extend(end)?;
        }
        self.file.write_all_at(&self.buf, self.end).map_err(|e| self.fail("writing", e))?;
        self.end = end;
        Ok(())
    }

    /// The file, for a `fdatasync` on another thread.
    pub(crate) fn file(&self) -> Arc<File> {
        self.file.clone()
    }

    /// Records that a `fdatasync` started after the records up to `end` were written has
    /// completed.
    pub(crate) fn synced(&mut self, end: u64) {
        debug_assert!(end <= self.end, "synced past the written end");
        self.durable = self.durable.max(end);
    }

    /// Records before this offset are durable.
    pub(crate) fn durable(&self) -> u64 {
        self.durable
    }

    /// After a failed `fdatasync`: the next write goes at the durable end again, so the retry
    /// rewrites every record not known durable, at the same offsets.
    pub(crate) fn rewind(&mut self) {
        self.end = self.durable;
    }

    /// Describes a failed operation on the log.
    pub(crate) fn io_fail(&self, what: &str, e: std::io::Error) -> Fail {
        self.fail(what, e)
    }

    /// Writes zeros from `allocated` up to at least `needed` (whole extension steps) and makes
    /// them durable, so later appends there change no metadata.
    fn extend(&mut self, needed: u64) -> Result<(), Fail> {
        let step = STORE_LOG_EXTEND_BYTES;
        let target = needed.div_ceil(step) * step;
        let zeros = vec![0u8; (target - self.allocated) as usize];
        self.file.write_all_at(&zeros, self.allocated).map_err(|e| self.fail("extending", e))?;
        self.file.sync_data().map_err(|e| self.fail("syncing", e))?;
        self.allocated = target;
        Ok(())
    }

    fn fail(&self, what: &str, e: std::io::Error) -> Fail {
        let kind = if e.kind() == ErrorKind::StorageFull { " (disk full)" } else { "" };
        Fail(format!("{what} the log {}{kind}: {e}", self.path.display()))
    }

    /// Starts generation `gen` at offset 0: called once a durable redb commit holds everything
    /// logged and records `gen` as the current generation.
    pub(crate) fn reset(&mut self, gen: u64) {
        debug_assert_eq!(self.end, self.durable, "reset with records not yet durable");
        self.gen = gen;
        self.end = 0;
        self.durable = 0;
    }

    /// Every batch of the current generation, read back from the file (after redb lost its
    /// non-durable commits to a failure, they are applied again from here).
    pub(crate) fn read_back(&self) -> Result<Vec<Vec<StoreOp>>, Fail> {
        let mut bytes = vec![0u8; self.end as usize];
        self.file.read_exact_at(&mut bytes, 0).map_err(|e| self.fail("reading", e))?;
        let (batches, end) = parse(&bytes, self.gen);
        if end != self.end {
            return Err(Fail(format!(
                "the log {} reads back {end} of its {} bytes",
                self.path.display(),
                self.end
            )));
        }
        Ok(batches)
    }

    /// Bytes of records in the current generation.
    pub(crate) fn len(&self) -> u64 {
        self.end
    }

    /// The current generation.
    pub(crate) fn gen(&self) -> u64 {
        self.gen
    }
}
