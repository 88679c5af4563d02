//! The content-addressed artifact directory: complete files by sha256, partial downloads
//! beside them, leases that keep an artifact in place while a step uses it, and LRU eviction
//! under an optional cap.
//!
//! Invariants:
//! - a file under `sha256/` is complete and verified: it only ever arrives by a rename of a
//!   partial whose size and sha256 matched (see [`Cache::land`]);
//! - a leased artifact is never evicted or removed: taking a lease and deleting a file both
//!   happen under the one `leases` lock, so a lease cannot be handed out for a file that is
//!   being deleted;
//! - one process owns a cache directory (an exclusive `flock` on `ROOT/.lock`), because
//!   leases live in memory and another process could not see them.
//!
//! Last use is the complete file's mtime: set when a lease is taken and when the last lease
//! on it is dropped. The content never changes after landing, so the mtime has no other
//! meaning, and it survives restarts without an index file to keep consistent; atime is not
//! used because `noatime`/`relatime` mounts make it unreliable.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use super::FetchError;

const COMPLETE_DIR: &str = "sha256";
const PARTIAL_DIR: &str = "partial";
const LOCK_FILE: &str = ".lock";

/// The artifact cache (the agent's) or depot (the master's). Cheap to clone: clones share
/// the lock, the leases and the cap.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<CacheInner>,
}

struct CacheInner {
    root: PathBuf,
    cap: Option<u64>,
    /// Live leases per sha256.
    leases: Mutex<HashMap<String, usize>>,
    /// Holds the directory's `flock` for as long as the cache lives.
    _lock: File,
}

/// A complete artifact in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The artifact's sha256, lowercase hex.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// When a lease on it was last taken or released.
    pub last_used: SystemTime,
    /// Whether a running step holds a lease on it now.
    pub leased: bool,
}

/// A complete artifact held in place: while any lease on a digest lives, eviction and
/// [`Cache::remove`] leave it alone. Dropping the lease releases it.
pub struct Lease {
    cache: Cache,
    sha256: String,
    path: PathBuf,
    size: u64,
}

/// How often, and how far apart, a held lock is tried again before the directory is called in
/// use: two seconds in all.
const LOCK_ATTEMPTS: u32 = 20;
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

impl Cache {
    /// Opens (creating) the cache at `root`. `cap` bounds the bytes of complete artifacts:
    /// after one lands, the least recently used unleased ones are evicted until the total is
    /// under it; `None` keeps everything (the master's depot).
    ///
    /// # Errors
    /// [`FetchError::Locked`] when another process has the directory open as a cache (still,
    /// after two seconds of trying);
    /// [`FetchError::Io`] when it cannot be created.
    pub fn open(root: impl Into<PathBuf>, cap: Option<u64>) -> Result<Cache, FetchError> {
        let root = root.into();
        for dir in [root.join(COMPLETE_DIR), root.join(PARTIAL_DIR)] {
            std::fs::create_dir_all(&dir).map_err(|error| FetchError::local(format!("creating {}", dir.display()), &dir, error))?;
        }
        let lock_path = root.join(LOCK_FILE);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|error| FetchError::local(format!("opening {}", lock_path.display()), &lock_path, error))?;
        // A lock held a moment longer than its owner: a child forked by another thread of this
        // process holds a copy of the descriptor until it execs, and a process being restarted
        // may not have exited yet. So a held lock is tried again for a little while.
        let mut attempts = 0;
        loop {
            match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                Err(rustix::io::Errno::WOULDBLOCK) if attempts < LOCK_ATTEMPTS => {
                    attempts += 1;
                    std::thread::sleep(LOCK_RETRY);
                }
                Err(rustix::io::Errno::WOULDBLOCK) => return Err(FetchError::Locked { path: root }),
                Err(errno) => return Err(FetchError::Io { what: format!("locking {}", lock_path.display()), error: errno.into() }),
            }
        }
        Ok(Cache { inner: Arc::new(CacheInner { root, cap, leases: Mutex::new(HashMap::new()), _lock: lock }) })
    }

    /// The cache's directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The cap in bytes, if any.
    pub fn cap(&self) -> Option<u64> {
        self.inner.cap
    }

    /// Where the complete artifact `sha256` lives (whether or not it is there).
    pub fn path_of(&self, sha256: &str) -> PathBuf {
        self.inner.root.join(COMPLETE_DIR).join(sha256)
    }

    pub(crate) fn partial_dir(&self) -> PathBuf {
        self.inner.root.join(PARTIAL_DIR)
    }

    /// A lease on `sha256` when it is cached, marking it used now.
    ///
    /// # Errors
    /// [`FetchError::Io`] when the file exists but cannot be read.
    pub fn lease(&self, sha256: &str) -> Result<Option<Lease>, FetchError> {
        let path = self.path_of(sha256);
        let mut leases = self.leases();
        let size = match std::fs::metadata(&path) {
            Ok(metadata) => metadata.len(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(FetchError::local(format!("reading {}", path.display()), &path, error)),
        };
        touch(&path);
        *leases.entry(sha256.to_owned()).or_insert(0) += 1;
        Ok(Some(Lease { cache: self.clone(), sha256: sha256.to_owned(), path, size }))
    }

    /// Moves a verified partial into place as `sha256` and leases it. Only the fetcher calls
    /// this, after the size and digest matched.
    pub(crate) fn land(&self, partial: &Path, sha256: &str) -> Result<Lease, FetchError> {
        let path = self.path_of(sha256);
        let local = |what: String, error| FetchError::local(what, &path, error);
        let mut leases = self.leases();
        std::fs::rename(partial, &path).map_err(|error| local(format!("moving {} into {}", partial.display(), path.display()), error))?;
        // Read-only: the content is addressed by its digest and must never change in place.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444))
            .map_err(|error| local(format!("making {} read-only", path.display()), error))?;
        // The rename must survive a crash like the content did (the file was synced).
        if let Some(dir) = path.parent() {
            if let Err(error) = File::open(dir).and_then(|dir| dir.sync_all()) {
                tracing::warn!(dir = %dir.display(), %error, "could not sync the cache directory");
            }
        }
        let size = std::fs::metadata(&path).map_err(|error| local(format!("reading {}", path.display()), error))?.len();
        touch(&path);
        *leases.entry(sha256.to_owned()).or_insert(0) += 1;
        Ok(Lease { cache: self.clone(), sha256: sha256.to_owned(), path, size })
    }

    /// The complete artifacts, in no particular order.
    ///
    /// # Errors
    /// [`FetchError::Io`] when the directory cannot be read.
    pub fn entries(&self) -> Result<Vec<Entry>, FetchError> {
        let dir = self.inner.root.join(COMPLETE_DIR);
        let local = |error| FetchError::local(format!("listing {}", dir.display()), &dir, error);
        let mut entries = Vec::new();
        for dir_entry in std::fs::read_dir(&dir).map_err(local)? {
            let dir_entry = dir_entry.map_err(local)?;
            let Some(sha256) = dir_entry.file_name().to_str().filter(|name| is_sha256(name)).map(str::to_owned) else {
                continue;
            };
            // Removed since the listing started: not an entry any more.
            let Ok(metadata) = dir_entry.metadata() else {
                continue;
            };
            let leased = self.leases().get(&sha256).is_some_and(|count| *count > 0);
            entries.push(Entry { sha256, size: metadata.len(), last_used: metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH), leased });
        }
        Ok(entries)
    }

    /// Removes the complete artifact `sha256`; `false` when it was not cached.
    ///
    /// # Errors
    /// [`FetchError::InUse`] when it is leased; [`FetchError::Io`] when it cannot be removed.
    pub fn remove(&self, sha256: &str) -> Result<bool, FetchError> {
        let path = self.path_of(sha256);
        let leases = self.leases();
        if leases.get(sha256).is_some_and(|count| *count > 0) {
            return Err(FetchError::InUse { sha256: sha256.to_owned() });
        }
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(error) => Err(FetchError::local(format!("removing {}", path.display()), &path, error)),
        }
    }

    /// Evicts least recently used, unleased artifacts until the total is under the cap, and
    /// returns what it removed. Leased artifacts stay even when they alone exceed the cap.
    ///
    /// # Errors
    /// [`FetchError::Io`] when the directory cannot be listed or a file removed.
    pub fn evict(&self) -> Result<Vec<Entry>, FetchError> {
        let Some(cap) = self.inner.cap else {
            return Ok(Vec::new());
        };
        let mut entries = self.entries()?;
        let mut total: u64 = entries.iter().map(|entry| entry.size).sum();
        if total <= cap {
            return Ok(Vec::new());
        }
        entries.sort_by_key(|entry| entry.last_used);
        let mut evicted = Vec::new();
        for entry in entries {
            if total <= cap {
                break;
            }
            // `remove` checks the lease under the lock it deletes under.
            match self.remove(&entry.sha256) {
                Ok(removed) => {
                    total -= entry.size;
                    if removed {
                        tracing::info!(sha256 = %entry.sha256, size = entry.size, "evicted from the artifact cache");
                        evicted.push(entry);
                    }
                }
                Err(FetchError::InUse { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        if total > cap {
            tracing::warn!(total, cap, "the artifact cache stays over its cap: the rest is in use");
        }
        Ok(evicted)
    }

    fn leases(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        // The map stays consistent across a panic: every update is a single insert or remove.
        self.inner.leases.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").field("root", &self.inner.root).field("cap", &self.inner.cap).finish()
    }
}

impl Lease {
    /// The artifact's path, to mount or read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its sha256, lowercase hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Clone for Lease {
    fn clone(&self) -> Self {
        *self.cache.leases().entry(self.sha256.clone()).or_insert(0) += 1;
        Lease { cache: self.cache.clone(), sha256: self.sha256.clone(), path: self.path.clone(), size: self.size }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut leases = self.cache.leases();
        if let Some(count) = leases.get_mut(&self.sha256) {
            *count -= 1;
            if *count == 0 {
                leases.remove(&self.sha256);
                // The step that used it just finished: that is its last use.
                touch(&self.path);
            }
        }
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("sha256", &self.sha256).field("path", &self.path).finish()
    }
}

/// 64 lowercase hex digits.
pub(crate) fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

/// Marks `path` used now. Best effort: a failure only makes eviction order less exact.
fn touch(path: &Path) {
    if let Err(error) = File::open(path).and_then(|file| file.set_modified(SystemTime::now())) {
        tracing::debug!(path = %path.display(), %error, "could not record the artifact's last use");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn put(cache: &Cache, sha256: &str, size: usize, last_used: SystemTime) {
        let path = cache.path_of(sha256);
        std::fs::write(&path, vec![0u8; size]).expect("write");
        File::options().write(true).open(&path).and_then(|file| file.set_modified(last_used)).expect("set mtime");
    }

    fn digest(byte: char) -> String {
        std::iter::repeat_n(byte, 64).collect()
    }

    #[test]
    fn eviction_removes_least_recently_used_unleased_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(dir.path(), Some(250)).expect("open");
        let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let (a, b, c, d) = (digest('a'), digest('b'), digest('c'), digest('d'));
        put(&cache, &a, 100, epoch); // oldest, but leased below
        put(&cache, &b, 100, epoch + Duration::from_secs(1));
        put(&cache, &c, 100, epoch + Duration::from_secs(2));
        put(&cache, &d, 100, epoch + Duration::from_secs(3));
        let lease = cache.lease(&a).expect("lease").expect("cached");
        // `lease` made `a` the most recent; put it back to the oldest to prove the lease, not
        // the order, protects it.
        File::options().write(true).open(cache.path_of(&a)).and_then(|f| f.set_modified(epoch)).expect("mtime");

        let evicted: Vec<String> = cache.evict().expect("evict").into_iter().map(|entry| entry.sha256).collect();
        assert_eq!(evicted, vec![b, c]);
        let mut left: Vec<String> = cache.entries().expect("entries").into_iter().map(|entry| entry.sha256).collect();
        left.sort();
        assert_eq!(left, vec![a.clone(), d]);

        assert!(matches!(cache.remove(&a), Err(FetchError::InUse { .. })));
        drop(lease);
        assert!(cache.remove(&a).expect("remove"));
        assert!(!cache.remove(&a).expect("remove again"));
    }

    #[test]
    fn leases_count_clones_and_a_second_open_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(dir.path(), None).expect("open");
        assert!(matches!(Cache::open(dir.path(), None), Err(FetchError::Locked { .. })));
        let sha = digest('e');
        put(&cache, &sha, 10, SystemTime::now());
        let first = cache.lease(&sha).expect("lease").expect("cached");
        let second = first.clone();
        drop(first);
        assert!(cache.entries().expect("entries")[0].leased);
        drop(second);
        assert!(!cache.entries().expect("entries")[0].leased);
        assert!(cache.lease(&digest('f')).expect("lease").is_none());
        drop(cache);
        Cache::open(dir.path(), None).expect("reopened once the first is gone");
    }
}
