//! The data directory's layout and its format record, `store.toml`.
//!
//! Layout: `data_dir/store.toml` (format version and shard count), `data_dir/shard-<i>.redb`
//! (one redb file per shard). Other files, such as `jwt_secret`, are left alone.
//!
//! Invariants: the format record is written once, on the first start, atomically (temp file,
//! fsync, rename, fsync of the directory), and only when no shard file exists yet: shard files
//! without a record are refused rather than silently adopted under a possibly different shard
//! count. Every later start must ask for the recorded shard count (rooms and users hash to
//! shards; there is no rebalancing).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::StoreError;

/// The on-disk format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// File name of the format record inside the data directory.
pub const FORMAT_FILE: &str = "store.toml";

#[derive(Deserialize)]
struct FormatRecord {
    format_version: u32,
    shards: usize,
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
    if shard_count == 0 {
        return Err(StoreError::Invalid("shard count must be at least 1".into()));
    }
    fs::create_dir_all(data_dir)
        .map_err(|e| StoreError::io(data_dir, "creating the data directory", e))?;
    let record = data_dir.join(FORMAT_FILE);
    match read_format(data_dir)? {
        Some(recorded) => check_count(data_dir, recorded, shard_count),
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
            write_format(data_dir, shard_count)
        }
    }
}

/// Checks the format record before a shard opens its file.
pub(crate) fn verify(data_dir: &Path, shard_count: usize) -> Result<(), StoreError> {
    match read_format(data_dir)? {
        Some(recorded) => check_count(data_dir, recorded, shard_count),
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

/// The recorded shard count, `None` if there is no record yet.
fn read_format(data_dir: &Path) -> Result<Option<usize>, StoreError> {
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
    if record.shards == 0 {
        return Err(StoreError::Format { path, message: "records 0 shards".into() });
    }
    Ok(Some(record.shards))
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

fn write_format(data_dir: &Path, shard_count: usize) -> Result<(), StoreError> {
    let path = data_dir.join(FORMAT_FILE);
    let temp = data_dir.join(format!("{FORMAT_FILE}.tmp"));
    let text = format!(
        "# roomcast data directory format; written once at creation, do not edit.\n\
         format_version = {FORMAT_VERSION}\nshards = {shard_count}\n"
    );
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
