//! [`StoreError`]: why the data directory or a shard file could not be opened or read.
//!
//! Invariant: every variant names the file or directory at fault, so an operator reading the
//! start-up error knows what to look at; nothing read from disk panics, it becomes one of these.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why the store could not start (or a read failed); `Display` names the path at fault.
#[derive(Debug)]
pub enum StoreError {
    /// An operating-system error on `path` while doing `what`.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the store was doing, e.g. "creating the data directory".
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The data directory's format record is missing, unreadable or of another format.
    Format {
        /// The format record (or the directory when the record is missing).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The data directory was created with another shard count.
    ShardCount {
        /// The data directory.
        data_dir: PathBuf,
        /// Shard count recorded in the directory.
        recorded: usize,
        /// Shard count this start asked for.
        requested: usize,
    },
    /// The shard file is corrupt, torn, of another version, or redb refused it.
    Database {
        /// The shard file.
        path: PathBuf,
        /// redb's or the decoder's explanation.
        message: String,
    },
    /// Another process holds the data directory (or a shard file in it).
    InUse {
        /// The data directory or shard file.
        path: PathBuf,
        /// The holder's pid, when its lock file names it.
        pid: Option<u32>,
    },
    /// The arguments cannot describe a shard (e.g. `shard >= shard_count`, zero ring slots).
    Invalid(String),
}

impl StoreError {
    pub(crate) fn io(path: &Path, what: &'static str, source: std::io::Error) -> Self {
        StoreError::Io { path: path.to_path_buf(), what, source }
    }

    pub(crate) fn db(path: &Path, err: impl fmt::Display) -> Self {
        StoreError::Database { path: path.to_path_buf(), message: err.to_string() }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io { path, what, source } => {
                write!(f, "{what} {}: {source}", path.display())
            }
            StoreError::Format { path, message } => write!(f, "{}: {message}", path.display()),
            StoreError::ShardCount { data_dir, recorded, requested } => write!(
                f,
                "data directory {} was created with {recorded} shards; start with --shards \
                 {recorded} (this start asked for {requested})",
                data_dir.display()
            ),
            StoreError::Database { path, message } => {
                write!(f, "store file {} is unreadable or corrupt: {message}", path.display())
            }
            StoreError::InUse { path, pid } => {
                write!(f, "{} is already in use by another roomcast process", path.display())?;
                if let Some(pid) = pid {
                    write!(f, " (pid {pid})")?;
                }
                f.write_str("; stop it, or start this one with another --data-dir")
            }
            StoreError::Invalid(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
