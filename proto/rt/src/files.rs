//! Files the daemons write: private ones (keys, credentials) are created 0600 from the start,
//! never chmod-ed after the fact, and every write goes through a temporary file and a rename so
//! a crash leaves the old file or the new one, never half of one.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;

/// Tells apart the temporary files of concurrent writes to one path (several runs delivering
/// the same bundle at once): with one shared name, a writer truncated another's file and the
/// second rename failed.
static NEXT_TMP: AtomicU64 = AtomicU64::new(0);

/// Writes `contents` to `path` atomically with `mode`. Concurrent writes of one path each
/// complete, and the last rename wins.
///
/// # Errors
/// When the directory is not writable or the disk is full; the error names the path, and the
/// temporary file is removed.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path.file_name().and_then(|name| name.to_str()).unwrap_or("pmesh");
    let tmp = dir.join(format!(".{name}.{}-{}.tmp", std::process::id(), NEXT_TMP.fetch_add(1, Ordering::Relaxed)));
    let written = write_then_rename(&tmp, path, contents, mode);
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn write_then_rename(tmp: &Path, path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    // The mode asked for at creation is narrowed by the process umask (the agent's unit sets
    // one); the file must end up with `mode` exactly, since containers read some of them as
    // other users.
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", tmp.display()))?;
    file.write_all(contents).with_context(|| format!("writing {}", tmp.display()))?;
    file.sync_all().with_context(|| format!("syncing {}", tmp.display()))?;
    std::fs::rename(tmp, path).with_context(|| format!("renaming into {}", path.display()))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Several writers of one path at once (found by the chaos suite: concurrent runs pushing
    /// the same bundle to an agent failed with an internal error): each write succeeds, the
    /// file holds one writer's whole contents, and no temporary file is left.
    #[test]
    fn concurrent_writes_of_one_path_all_succeed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bundle.tar");
        let contents: Vec<Vec<u8>> = (0..8u8).map(|writer| vec![writer; 256 * 1024]).collect();
        std::thread::scope(|scope| {
            let writers: Vec<_> = contents.iter().map(|bytes| scope.spawn(|| write_atomic(&path, bytes, 0o644))).collect();
            for writer in writers {
                writer.join().unwrap().unwrap();
            }
        });
        let written = std::fs::read(&path).unwrap();
        assert!(contents.contains(&written), "one writer's whole contents");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|entry| entry.unwrap().file_name()).collect();
        assert_eq!(names, [std::ffi::OsString::from("bundle.tar")], "no temporary file is left");
    }
}
