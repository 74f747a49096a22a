//! The data directory's layout, its format record `store.toml`, and its lock.
//!
//! Layout: `data_dir/store.toml` (format version and shard count), `data_dir/shard-<i>.redb`
//! (one redb file per shard), `data_dir/roomcast.lock` (the server's lock, holding its pid).
//! Other files, such as `jwt_secret`, are left alone.
//!
//! Invariants of the lock ([`open_data_dir`]): a server holds an exclusive `flock` on
//! `roomcast.lock` from before it reads anything in the directory until its last shard
//! thread ends, so a second server on the same directory is refused with "already in use by
//! another roomcast process" (the kernel drops the lock with the process, `kill -9` included;
//! the file itself stays). A start that created the directory and then fails removes it again
//! ([`Created::remove`]), and only while it holds the lock, so a concurrent start never loses a
//! directory it locked: a lock taken on a file that was unlinked meanwhile is retried.
//!
//! Invariants: the format record is written once, on the first start, atomically (temp file,
//! fsync, rename, fsync of the directory), and only when no shard file exists yet: shard files
//! without a record are refused rather than silently adopted under a possibly different shard
//! count. Every later start must ask for the recorded shard count (rooms and users hash to
//! shards; there is no rebalancing).

use std::fs;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::StoreError;

/// The on-disk format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// File name of the format record inside the data directory.
pub const FORMAT_FILE: &str = "store.toml";

/// File name of the lock inside the data directory.
pub const LOCK_FILE: &str = "roomcast.lock";

/// How often a lock taken on a file that a failed concurrent start removed is retried.
const LOCK_ATTEMPTS: usize = 3;

/// The exclusive lock of a data directory, held while this value (its open file) lives.
#[derive(Debug)]
pub struct DataDirLock {
    _file: fs::File,
}

/// The directories a start created (outermost first), to be removed if the start fails.
#[derive(Debug, Default)]
#[must_use = "remove what a failed start created, or drop it once the start succeeded"]
pub struct Created {
    dirs: Vec<PathBuf>,
}

impl Created {
    /// Removes the data directory (with everything in it) and the empty parents this start
    /// created. Call only while holding the directory's [`DataDirLock`].
    pub fn remove(self) {
        let Some((data_dir, parents)) = self.dirs.split_last() else {
            return;
        };
        if let Err(e) = fs::remove_dir_all(data_dir) {
            tracing::warn!(path = %data_dir.display(), "removing the new data directory: {e}");
        }
        for parent in parents.iter().rev() {
            // Only when empty: another process may have put something there meanwhile.
            let _ = fs::remove_dir(parent);
        }
    }
}

/// Creates `data_dir` if absent, locks it ([`LOCK_FILE`]), then [`check_data_dir`]s it. Returns
/// the lock and the directories this call created (see [`Created`]). A directory held by
/// another process is [`StoreError::InUse`].
///
/// Call once per process start, before anything else reads or writes the directory.
pub fn open_data_dir(
    data_dir: &Path,
    layout: Layout,
) -> Result<(DataDirLock, Created), StoreError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let created = create_dirs(data_dir)?;
        match lock(data_dir) {
            Ok(Some(lock)) => {
                if let Err(e) = check_layout(data_dir, layout) {
                    created.remove();
                    return Err(e);
                }
                return Ok((lock, created));
            }
            // The directory went away under us (a failed start removed it): take it again.
            Ok(None) if attempt < LOCK_ATTEMPTS => continue,
            Ok(None) => {
                return Err(StoreError::io(
                    data_dir,
                    "locking the data directory",
                    std::io::Error::other("it was removed while this server was starting"),
                ))
            }
            Err(e) => return Err(e),
        }
    }
}

/// Creates `data_dir` and its missing parents; returns those it created, outermost first.
fn create_dirs(data_dir: &Path) -> Result<Created, StoreError> {
    let mut missing: Vec<PathBuf> = data_dir
        .ancestors()
        .filter(|p| !p.as_os_str().is_empty())
        .take_while(|p| fs::symlink_metadata(p).is_err())
        .map(Path::to_path_buf)
        .collect();
    missing.reverse();
    fs::create_dir_all(data_dir)
        .map_err(|e| StoreError::io(data_dir, "creating the data directory", e))?;
    Ok(Created { dirs: missing })
}

/// Locks `data_dir`'s lock file and writes this process's pid into it; `None` when the file
/// was unlinked between its open and the lock (retry).
fn lock(data_dir: &Path) -> Result<Option<DataDirLock>, StoreError> {
    let path = data_dir.join(LOCK_FILE);
    let io = |what, e| StoreError::io(&path, what, e);
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io("opening the data directory's lock", e))?;
    // SAFETY: flock on a descriptor `file` owns; no memory is passed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::WouldBlock {
            let mut text = String::new();
            let pid = file.read_to_string(&mut text).ok().and_then(|_| text.trim().parse().ok());
            return Err(StoreError::InUse { path: data_dir.to_path_buf(), pid });
        }
        return Err(io("locking the data directory", e));
    }
    let held = file.metadata().map_err(|e| io("reading the data directory's lock", e))?;
    match fs::metadata(&path) {
        Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => {}
        _ => return Ok(None),
    }
    let pid = format!("{}\n", std::process::id());
    let write = (|| {
        file.set_len(0)?;
        file.rewind()?;
        file.write_all(pid.as_bytes())
    })();
    // The pid is only for the message of a refused start: a failure to write it is harmless.
    if let Err(e) = write {
        tracing::warn!(path = %path.display(), "writing the pid into the lock: {e}");
    }
    Ok(Some(DataDirLock { _file: file }))
}

#[derive(Deserialize)]
struct FormatRecord {
    format_version: u32,
    shards: usize,
    /// A cluster's node count (absent: a node alone, 1).
    nodes: Option<usize>,
    /// This directory's node in the cluster (absent: 0).
    node: Option<usize>,
}

/// What a data directory records about the service it belongs to: its shards per node, and
/// in a cluster the node count and which node it is (`src/cluster/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Shards per node.
    pub shards: usize,
    /// Nodes in the cluster (1 alone).
    pub nodes: usize,
    /// This node.
    pub node: usize,
}

impl Layout {
    /// A node alone with `shards` shards.
    pub fn alone(shards: usize) -> Layout {
        Layout { shards, nodes: 1, node: 0 }
    }
}

/// The path of shard `shard`'s redb file.
pub fn shard_path(data_dir: &Path, shard: usize) -> PathBuf {
    data_dir.join(format!("shard-{shard}.redb"))
}

/// Creates `data_dir` and its format record on the first start; on later starts checks that
/// the directory holds this format and was created with `shard_count` shards.
///
/// Call once per process, before opening any shard's [`super::Store`].
pub fn check_data_dir(data_dir: &Path, shard_count: usize) -> Result<(), StoreError> {
    check_layout(data_dir, Layout::alone(shard_count))
}

/// [`check_data_dir`] for a node of a cluster: the directory also records the node count and
/// which node it is, and a start with other numbers is refused (the hash of rooms and users
/// over the cluster's shards, and which of them this directory holds, depend on them).
pub fn check_layout(data_dir: &Path, layout: Layout) -> Result<(), StoreError> {
    let shard_count = layout.shards;
    if shard_count == 0 {
        return Err(StoreError::Invalid("shard count must be at least 1".into()));
    }
    fs::create_dir_all(data_dir)
        .map_err(|e| StoreError::io(data_dir, "creating the data directory", e))?;
    let record = data_dir.join(FORMAT_FILE);
    match read_format(data_dir)? {
        Some(recorded) => {
            check_count(data_dir, recorded.shards, shard_count)?;
            let (nodes, node) = (recorded.nodes.unwrap_or(1), recorded.node.unwrap_or(0));
            if (nodes, node) != (layout.nodes, layout.node) {
                return Err(StoreError::Invalid(format!(
                    "data directory {} belongs to node {node} of {nodes}; start with --node \
                     {node} --nodes {nodes} (this start asked for node {} of {})",
                    data_dir.display(),
                    layout.node,
                    layout.nodes
                )));
            }
            Ok(())
        }
        None => {
            if let Some(existing) = any_shard_file(data_dir)? {
                return Err(StoreError::Format {
                    path: record,
                    message: format!(
                        "missing, but shard file {} exists; restore {FORMAT_FILE} (format_version \
                         = {FORMAT_VERSION}, shards = <count>) rather than guess the shard count",
                        existing.display()
                    ),
                });
            }
            write_format(data_dir, layout)
        }
    }
}

/// Checks the format record before a shard opens its file.
/// `shard_count` counts every node's shards (`shards * nodes`).
pub(crate) fn verify(data_dir: &Path, shard_count: usize) -> Result<(), StoreError> {
    match read_format(data_dir)? {
        Some(recorded) => {
            check_count(data_dir, recorded.shards * recorded.nodes.unwrap_or(1), shard_count)
        }
        None => Err(StoreError::Format {
            path: data_dir.join(FORMAT_FILE),
            message: "missing; call check_data_dir before opening a shard".into(),
        }),
    }
}

fn check_count(data_dir: &Path, recorded: usize, requested: usize) -> Result<(), StoreError> {
    if recorded == requested {
        Ok(())
    } else {
        Err(StoreError::ShardCount { data_dir: data_dir.to_path_buf(), recorded, requested })
    }
}

/// The record, `None` if there is none yet.
fn read_format(data_dir: &Path) -> Result<Option<FormatRecord>, StoreError> {
    let path = data_dir.join(FORMAT_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io(&path, "reading the format record", e)),
    };
    let record: FormatRecord = toml::from_str(&text).map_err(|e| StoreError::Format {
        path: path.clone(),
        message: format!("not a valid format record: {e}"),
    })?;
    if record.format_version != FORMAT_VERSION {
        return Err(StoreError::Format {
            path,
            message: format!(
                "format version {} is not the version {FORMAT_VERSION} this build reads",
                record.format_version
            ),
        });
    }
    if record.shards == 0 || record.nodes == Some(0) {
        return Err(StoreError::Format { path, message: "records 0 shards".into() });
    }
    Ok(Some(record))
}

fn any_shard_file(data_dir: &Path) -> Result<Option<PathBuf>, StoreError> {
    let entries =
        fs::read_dir(data_dir).map_err(|e| StoreError::io(data_dir, "listing the data dir", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(data_dir, "listing the data dir", e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("shard-") && name.ends_with(".redb") {
            return Ok(Some(entry.path()));
        }
    }
    Ok(None)
}

fn write_format(data_dir: &Path, layout: Layout) -> Result<(), StoreError> {
    let path = data_dir.join(FORMAT_FILE);
    let temp = data_dir.join(format!("{FORMAT_FILE}.tmp"));
    let mut text = format!(
        "# roomcast data directory format; written once at creation, do not edit.\n\
         format_version = {FORMAT_VERSION}\nshards = {}\n",
        layout.shards
    );
    if layout.nodes > 1 {
        text.push_str(&format!("nodes = {}\nnode = {}\n", layout.nodes, layout.node));
    }
    let write = || -> std::io::Result<()> {
        let mut file = fs::File::create(&temp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    };
    write().map_err(|e| StoreError::io(&temp, "writing the format record", e))?;
    fs::rename(&temp, &path).map_err(|e| StoreError::io(&path, "renaming the format record", e))?;
    sync_dir(data_dir)
}

/// Fsyncs a directory so a rename or creation in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, "syncing the data directory", e))
}
