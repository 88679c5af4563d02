//! Files the daemons write: private ones (keys, credentials) are created 0600 from the start,
//! never chmod-ed after the fact, and every write goes through a temporary file and a rename so
//! a crash leaves the old file or the new one, never half of one.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Context;

/// Writes `contents` to `path` atomically with `mode`.
///
/// The temporary file has a unique name in the same directory (so the rename stays on one
/// filesystem), and is removed if anything fails: concurrent writers of one path never share
/// a temporary file, and the last rename wins with a complete file.
///
/// # Errors
/// When the directory is not writable or the disk is full; the error names the path.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path.file_name().and_then(|name| name.to_str()).unwrap_or("pmesh");
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    // The mode asked for at creation is narrowed by the process umask (the agent's unit sets
    // one); the file must end up with `mode` exactly, since containers read some of them as
    // other users.
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", tmp.path().display()))?;
    tmp.write_all(contents).with_context(|| format!("writing {}", tmp.path().display()))?;
    tmp.as_file().sync_all().with_context(|| format!("syncing {}", tmp.path().display()))?;
    tmp.persist(path).map_err(|err| err.error).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
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

    #[test]
    fn writes_with_the_mode_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|entry| entry.unwrap().file_name()).collect();
        assert_eq!(names, ["key.pem"]);
    }

    /// Many writers of one path at once: each write succeeds, the file ends up whole (one of
    /// the contents), and no temporary file is left behind.
    #[test]
    fn concurrent_writers_of_one_path_never_collide() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bundle.tar");
        let n_writers = 32;
        let contents: Vec<Vec<u8>> = (0..n_writers).map(|idx| vec![b'a' + (idx % 26) as u8; 64 * 1024]).collect();
        let barrier = std::sync::Barrier::new(n_writers);
        std::thread::scope(|scope| {
            let handles: Vec<_> = contents
                .iter()
                .map(|content| {
                    let (path, barrier) = (&path, &barrier);
                    scope.spawn(move || {
                        barrier.wait();
                        write_atomic(path, content, 0o644)
                    })
                })
                .collect();
            for handle in handles {
                handle.join().unwrap().unwrap();
            }
        });
        let written = std::fs::read(&path).unwrap();
        assert!(contents.contains(&written), "the file is not one writer's whole contents");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|entry| entry.unwrap().file_name()).collect();
        assert_eq!(names, ["bundle.tar"]);
    }
}
