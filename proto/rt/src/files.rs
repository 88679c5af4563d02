//! Files the daemons write: private ones (keys, credentials) are created 0600 from the start,
//! never chmod-ed after the fact, and every write goes through a temporary file and a rename so
//! a crash leaves the old file or the new one, never half of one.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;

/// Writes `contents` to `path` atomically with `mode`.
///
/// # Errors
/// When the directory is not writable or the disk is full; the error names the path.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".{}.tmp", path.file_name().and_then(|name| name.to_str()).unwrap_or("pmesh")));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    // The mode asked for at creation is narrowed by the process umask (the agent's unit sets
    // one); the file must end up with `mode` exactly, since containers read some of them as
    // other users.
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", tmp.display()))?;
    file.write_all(contents).with_context(|| format!("writing {}", tmp.display()))?;
    file.sync_all().with_context(|| format!("syncing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))
}

/// Writes a secret (key, credential): mode 0600.
///
/// # Errors
/// As [`write_atomic`].
pub fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    write_atomic(path, contents, 0o600)
}

/// Writes a public file (certificate, config): mode 0644.
///
/// # Errors
/// As [`write_atomic`].
pub fn write_public(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    write_atomic(path, contents, 0o644)
}

/// Reads a UTF-8 file, naming it in the error.
///
/// # Errors
/// When the file is missing or unreadable.
pub fn read_string(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}
