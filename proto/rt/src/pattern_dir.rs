//! Reading a pattern directory from disk: every regular file under it, by `/`-separated
//! relative path, for `pmesh_proto::pattern` (which knows the format) and bundles.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use pmesh_proto::bundle::BundleFile;
use pmesh_proto::pattern::PATTERN_FILE;

/// A pattern directory as read from disk.
#[derive(Debug, Clone)]
pub struct PatternDir {
    /// The directory.
    pub root: PathBuf,
    /// Every regular file under it (hidden ones left out), by `/`-separated relative path.
    pub files: BTreeMap<String, Vec<u8>>,
    /// The files with an executable bit.
    pub executables: BTreeSet<String>,
}

/// Why a pattern directory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The path is not a pattern, or holds what a pattern may not (a symlink, a non-UTF-8 name).
    #[error("{0}")]
    NotAPattern(String),
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl PatternDir {
    /// The files as a bundle holds them.
    pub fn bundle_files(&self) -> BTreeMap<String, BundleFile> {
        self.files
            .iter()
            .map(|(path, contents)| {
                let file = BundleFile { contents: contents.clone(), executable: self.executables.contains(path) };
                (path.clone(), file)
            })
            .collect()
    }
}

/// Reads the pattern at `path`: a directory, or its `pattern.yaml`.
///
/// # Errors
/// [`ReadError::NotAPattern`] when `path` is neither or holds a symlink, FIFO, socket or device
/// (bundles carry regular files only); [`ReadError::Io`] when a file cannot be read.
pub fn read(path: &Path) -> Result<PatternDir, ReadError> {
    let root = if path.is_file() && path.file_name().is_some_and(|name| name == PATTERN_FILE) {
        path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    } else {
        path.to_path_buf()
    };
    if !root.is_dir() {
        return Err(ReadError::NotAPattern(format!("{} is not a pattern directory (one holding {PATTERN_FILE})", path.display())));
    }
    let mut dir = PatternDir { root: root.clone(), files: BTreeMap::new(), executables: BTreeSet::new() };
    walk(&root, &root, &mut dir)?;
    Ok(dir)
}

fn walk(root: &Path, current: &Path, dir: &mut PatternDir) -> Result<(), ReadError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ReadError::Io { path, source }
    };
    let mut entries: Vec<_> = std::fs::read_dir(current).map_err(io(current))?.collect::<Result<_, _>>().map_err(io(current))?;
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        // Checked without following links and before opening: a FIFO would block the read
        // forever and a device could be endless.
        let metadata = std::fs::symlink_metadata(&path).map_err(io(&path))?;
        let file_type = metadata.file_type();
        if file_type.is_symlink() {
            return Err(ReadError::NotAPattern(format!("{} is a symlink; a pattern holds regular files only", path.display())));
        }
        if file_type.is_dir() {
            walk(root, &path, dir)?;
            continue;
        }
        if !file_type.is_file() {
            let kind = special_kind(&file_type);
            return Err(ReadError::NotAPattern(format!("{} is {kind}; a pattern holds regular files only", path.display())));
        }
        let relative = path.strip_prefix(root).expect("walked paths are under the root");
        let relative = relative
            .to_str()
            .ok_or_else(|| ReadError::NotAPattern(format!("{} is not a UTF-8 path", path.display())))?
            .replace(std::path::MAIN_SEPARATOR, "/");
        let contents = std::fs::read(&path).map_err(io(&path))?;
        let executable = {
            use std::os::unix::fs::PermissionsExt;
            metadata.permissions().mode() & 0o111 != 0
        };
        if executable {
            dir.executables.insert(relative.clone());
        }
        dir.files.insert(relative, contents);
    }
    Ok(())
}

/// What a file that is neither regular nor a directory is, for the refusal.
fn special_kind(file_type: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_block_device() || file_type.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::write(dir.path().join(PATTERN_FILE), "apiVersion: pmesh/v1\n").expect("writable");
        dir
    }

    #[test]
    fn reads_regular_files() {
        let dir = pattern_dir();
        std::fs::create_dir(dir.path().join("templates")).expect("mkdir");
        std::fs::write(dir.path().join("templates/a.j2"), "x").expect("writable");
        let read = read(dir.path()).expect("a pattern");
        assert_eq!(read.files.keys().collect::<Vec<_>>(), [PATTERN_FILE, "templates/a.j2"]);
    }

    /// A FIFO is refused by its type before anything opens it, so the read returns at once
    /// instead of blocking until a writer comes.
    #[test]
    fn refuses_fifos_without_opening_them() {
        let dir = pattern_dir();
        let fifo = dir.path().join("templates.fifo");
        rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o644), 0).expect("mkfifo");
        let err = read(dir.path()).expect_err("a FIFO is not a pattern file").to_string();
        assert_eq!(err, format!("{} is a FIFO; a pattern holds regular files only", fifo.display()));
    }

    #[test]
    fn refuses_sockets_and_symlinks() {
        let dir = pattern_dir();
        let socket_path = dir.path().join("control.sock");
        let _socket = std::os::unix::net::UnixListener::bind(&socket_path).expect("a socket");
        let err = read(dir.path()).expect_err("a socket").to_string();
        assert!(err.ends_with("control.sock is a socket; a pattern holds regular files only"), "{err}");
        std::fs::remove_file(&socket_path).expect("removable");
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).expect("a symlink");
        let err = read(dir.path()).expect_err("a symlink").to_string();
        assert!(err.ends_with("link is a symlink; a pattern holds regular files only"), "{err}");
    }
}
