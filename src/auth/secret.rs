//! The HS256 secret file `<data_dir>/jwt_secret`.
//!
//! Invariants: the file, once visible under its final name, is complete: it is
//! written to a private temporary file (`create_new`, mode 0600, fsynced) and
//! then hard-linked into place, which fails rather than overwrites if another
//! process won the race (we then read the winner's file). On filesystems
//! without hard links we fall back to `create_new` on the final name.
//! The secret is the file's bytes with surrounding ASCII whitespace trimmed
//! (the hex text itself, so other tools can sign with the same file).
//! Limits: an existing file with group/other permissions is used, with a warning.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rand::TryRngCore;

use super::to_hex;

/// File name of the secret inside the data directory.
pub const SECRET_FILE_NAME: &str = "jwt_secret";

/// Reads `data_dir/jwt_secret`, or creates it (and `data_dir`) holding 32
/// random bytes as 64 lowercase hex chars with mode 0600. Returns the secret
/// bytes and whether this call created the file. A file that is empty after
/// trimming is an `InvalidData` error.
pub fn load_or_create_secret(data_dir: &Path) -> io::Result<(Vec<u8>, bool)> {
    let path = data_dir.join(SECRET_FILE_NAME);
    match read_secret(&path) {
        Ok(secret) => return Ok((secret, false)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    fs::create_dir_all(data_dir)?;
    let mut raw = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut raw)
        .map_err(|e| io::Error::other(format!("OS random source failed: {e}")))?;
    let hex = to_hex(&raw);
    match publish(data_dir, &path, hex.as_bytes()) {
        Ok(()) => Ok((hex.into_bytes(), true)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok((read_secret(&path)?, false)),
        Err(e) => Err(e),
    }
}

/// Reads `data_dir/jwt_secret` without ever creating it (`NotFound` when absent).
pub fn load_secret(data_dir: &Path) -> io::Result<Vec<u8>> {
    read_secret(&data_dir.join(SECRET_FILE_NAME))
}

/// Reads and trims the secret file; refuses an empty one.
fn read_secret(path: &Path) -> io::Result<Vec<u8>> {
    let bytes = fs::read(path)?;
    let secret = bytes.trim_ascii();
    if secret.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("JWT secret file {} is empty", path.display()),
        ));
    }
    if let Ok(meta) = fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "JWT secret file is readable by group/others; chmod 600 it");
        }
    }
    Ok(secret.to_vec())
}

/// Makes `contents` appear atomically at `path` (never overwriting).
fn publish(dir: &Path, path: &Path, contents: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(
        ".{SECRET_FILE_NAME}.{}.{:016x}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ));
    write_private_file(&tmp, contents)?;
    let linked = fs::hard_link(&tmp, path);
    // Best effort: a leftover temp file is harmless (mode 0600, never read).
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(e),
        // No hard links on this filesystem: plain exclusive create.
        Err(_) => write_private_file(path, contents)?,
    }
    // Best effort: make the new directory entry durable.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Creates `path` exclusively with mode 0600, writes `contents`, fsyncs.
fn write_private_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}
