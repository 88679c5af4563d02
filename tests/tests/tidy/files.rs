//! The repository's `.rs` files, and which of them hold production code.

use std::path::{Path, PathBuf};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("the repository root")
}

pub fn relative(repo: &Path, path: &Path) -> String {
    path.strip_prefix(repo).unwrap_or(path).to_string_lossy().into_owned()
}

pub struct SourceFile {
    /// Relative to the repository root, with `/`.
    pub path: String,
    pub text: String,
}

/// Every `.rs` file of the repository, outside build output and hidden directories, sorted.
pub fn rust_files() -> Vec<SourceFile> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display())) {
            let path = entry.expect("a directory entry").path();
            let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default();
            if path.is_dir() && !name.starts_with('.') && !name.starts_with("target") {
                walk(&path, found);
            } else if name.ends_with(".rs") {
                found.push(path);
            }
        }
    }
    let repo = repo();
    let mut paths = Vec::new();
    walk(&repo, &mut paths);
    paths.sort();
    assert!(paths.len() > 50, "only {} .rs files under {}", paths.len(), repo.display());
    paths.iter().map(|path| SourceFile { path: relative(&repo, path), text: read(path) }).collect()
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// Whether a file holds production code: not a `tests.rs` module, nor under a `tests/` folder
/// (the integration tests, and the `tests` crate's harness).
pub fn is_production(path: &str) -> bool {
    !path.split('/').any(|component| component == "tests" || component == "tests.rs")
}
