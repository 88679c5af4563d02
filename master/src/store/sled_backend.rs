//! The [`Backend`] over sled: one tree per [`Namespace`], named as the master's database has
//! always named them, so existing databases open unchanged. This is the only file of the
//! master that uses sled.
//!
//! A full disk: sled 0.34 poisons itself after a write fails (every later write and flush
//! answers the same error, even once space returns; reads still work), so the backend drops
//! the database and opens the directory again before the next write, once the file system
//! has room ([`MIN_ROOM`]; tried at most once a second), and reads every tree back whole
//! before it takes a write. Better still, a write is refused before it reaches sled while the
//! file system has less than [`MIN_ROOM`] free, so sled rarely meets ENOSPC at all (dropping a
//! sled database after a failed write can block for good in its final flush; the reopen then
//! times out, and a restart of the master is the way back). Until then writes fail with [`StorageError`], which the master's
//! RPCs answer as `RESOURCE_EXHAUSTED` (disk full) or `UNAVAILABLE`, naming the directory. What
//! sled had not flushed before the failure may be gone after the reopen; every invariant the
//! store keeps is a transaction, so it is all of a transaction or none of it, and the event
//! consumers notice a cursor that went back ([`super::Store::persist_following`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::backend::{Backend, Namespace, Txn};

/// Free bytes the database's file system needs before a reopen is tried.
pub const MIN_ROOM: u64 = 4 * 1024 * 1024;
const RETRY_REOPEN: Duration = Duration::from_secs(1);
/// How long a reopen waits for sled to let go of the old database.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the database takes no write now.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    #[error(
        "the master's data directory is full (no space left on device in {}): free space there; the master takes writes again by itself",
        dir.display()
    )]
    DiskFull { dir: PathBuf },
    #[error("the master's database in {} cannot be written ({detail}); it is reopened once the disk works", dir.display())]
    Unwritable { dir: PathBuf, detail: String },
}

/// The most memory sled's page cache may hold, in bytes.
const CACHE_CAPACITY: u64 = 16 * 1024 * 1024;

/// The open database and its trees, indexed by [`Namespace::index`].
struct Handles {
    db: sled::Db,
    trees: Vec<sled::Tree>,
}

impl Handles {
    fn open(dir: &Path) -> anyhow::Result<Handles> {
        // sled's page cache defaults to 1 GiB; the master's records are small, so a bounded
        // cache keeps its memory to what it holds. (This did not stop the growth the 500-agent
        // soak measures: see README, "Soak".)
        let config = sled::Config::new().path(dir).cache_capacity(CACHE_CAPACITY);
        // The directory's lock can outlive its owner for a moment: sled's flusher thread lets go
        // of a dropped database after the drop returns, a child forked by another thread holds
        // the descriptor until it execs, and a restarted master's predecessor may still be
        // exiting. A held lock is tried again for two seconds before it is reported.
        let mut attempts = 0;
        let db = loop {
            match config.open() {
                Err(sled::Error::Io(error)) if attempts < 20 && error.to_string().contains("could not acquire lock") => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                opened => break opened,
            }
        }
        .with_context(|| format!("opening the database in {} (is another `pmesh serve` running?)", dir.display()))?;
        let trees = Namespace::ALL.iter().map(|namespace| db.open_tree(namespace.name())).collect::<Result<Vec<_>, _>>()?;
        Ok(Handles { db, trees })
    }

    fn tree(&self, namespace: Namespace) -> &sled::Tree {
        &self.trees[namespace.index()]
    }
}

#[derive(Default)]
struct Health {
    /// A write failed: reopen before the next one.
    poisoned: bool,
    /// The error writes are refused with meanwhile (logged once, when it begins).
    problem: Option<StorageError>,
    last_reopen: Option<Instant>,
}

/// The master's sled database.
pub struct SledBackend {
    dir: PathBuf,
    slot: RwLock<Option<Arc<Handles>>>,
    health: Mutex<Health>,
    /// Keys to remove at the next reopen ([`Backend::forget_on_reopen`]).
    forget: Mutex<Vec<(Namespace, Vec<u8>)>>,
}

impl SledBackend {
    /// Opens (or creates) the database in `dir`.
    ///
    /// # Errors
    /// When sled cannot open it (another `pmesh serve` holds it).
    pub fn open(dir: &Path) -> anyhow::Result<SledBackend> {
        let handles = Handles::open(dir)?;
        Ok(SledBackend {
            dir: dir.to_owned(),
            slot: RwLock::new(Some(Arc::new(handles))),
            health: Mutex::default(),
            forget: Mutex::default(),
        })
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn current(&self) -> Option<Arc<Handles>> {
        self.slot.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The database: reopened first, for a write, when a write failed since it was opened
    /// (and for anything when it is closed).
    fn handles(&self, write: bool) -> anyhow::Result<Arc<Handles>> {
        let current = self.current();
        let mut health = self.health();
        match current {
            // Kept from sled: a write while the file system is (nearly) full is refused before
            // sled can fail it and poison itself.
            Some(_) if write && !health.poisoned && pmesh_rt::disk::free_bytes(&self.dir).is_some_and(|free| free < MIN_ROOM) => {
                if health.problem.is_none() {
                    let problem = StorageError::DiskFull { dir: self.dir.clone() };
                    tracing::error!("{problem} (less than {MIN_ROOM} bytes free)");
                    health.problem = Some(problem);
                }
                return Err(self.refusal(&health));
            }
            Some(handles) if !(write && health.poisoned) => return Ok(handles),
            _ => {}
        }
        if health.last_reopen.is_some_and(|at| at.elapsed() < RETRY_REOPEN)
            || pmesh_rt::disk::free_bytes(&self.dir).is_some_and(|free| free < MIN_ROOM)
        {
            return Err(self.refusal(&health));
        }
        health.last_reopen = Some(Instant::now());
        // Held across the reopen: one reopen at a time, and no write reaches a database
        // that is being replaced.
        match self.reopen() {
            Ok((handles, entries)) => {
                health.poisoned = false;
                tracing::info!(dir = %self.dir.display(), entries, "the master's database was opened again after a failed write, and read back whole");
                Ok(handles)
            }
            Err(err) => {
                note_failure(&mut health, &self.dir, &err);
                Err(err.context(self.refusal(&health)))
            }
        }
    }

    fn refusal(&self, health: &Health) -> anyhow::Error {
        let problem = health.problem.clone().unwrap_or(StorageError::Unwritable { dir: self.dir.clone(), detail: "closed".into() });
        anyhow::Error::new(problem)
    }

    /// Drops the database, opens it again, and reads every tree back; returns the entries
    /// read. The slot is left empty when the open fails.
    fn reopen(&self) -> anyhow::Result<(Arc<Handles>, usize)> {
        let old = self.slot.write().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        // sled's drop flushes, and after a failed write that flush can wait forever: drop it
        // aside, and wait below (bounded) for it to let go of the directory.
        std::thread::spawn(move || drop(old));
        let deadline = Instant::now() + RELEASE_TIMEOUT;
        let handles = loop {
            match Handles::open(&self.dir) {
                Ok(handles) => break Arc::new(handles),
                Err(err) if pmesh_rt::disk::is_full(&err) || Instant::now() > deadline => return Err(err),
                // sled's flusher thread holds the directory's lock until its next tick.
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let forget: Vec<(Namespace, Vec<u8>)> = std::mem::take(&mut *self.forget.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for (namespace, key) in &forget {
            handles.tree(*namespace).remove(key)?;
        }
        handles.db.flush()?;
        let mut entries = 0;
        for tree in &handles.trees {
            for entry in tree.iter() {
                entry.with_context(|| format!("reading back {} after a reopen", self.dir.display()))?;
                entries += 1;
            }
        }
        *self.slot.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(handles.clone());
        Ok((handles, entries))
    }

    /// Runs `op` on the database; a failure of sled marks it for a reopen and answers the
    /// condition.
    fn with<T>(&self, write: bool, op: impl FnOnce(&Handles) -> Result<T, sled::Error>) -> anyhow::Result<T> {
        let handles = self.handles(write)?;
        let result = op(&handles);
        drop(handles);
        if write && result.is_ok() {
            let mut health = self.health();
            if !health.poisoned {
                if let Some(problem) = health.problem.take() {
                    tracing::info!(was = %problem, "the master's database takes writes again");
                }
            }
        }
        result.map_err(|err| {
            let err = anyhow::Error::new(err);
            let mut health = self.health();
            note_failure(&mut health, &self.dir, &err);
            err.context(self.refusal(&health))
        })
    }
}

/// Records a failure: the database needs a reopen, and a new condition is logged once.
fn note_failure(health: &mut Health, dir: &Path, err: &anyhow::Error) {
    health.poisoned = true;
    if health.problem.is_none() {
        let problem = if pmesh_rt::disk::is_full(err) {
            StorageError::DiskFull { dir: dir.to_owned() }
        } else {
            StorageError::Unwritable { dir: dir.to_owned(), detail: format!("{err:#}") }
        };
        tracing::error!(error = format!("{err:#}"), "{problem}");
        health.problem = Some(problem);
    }
}

impl Backend for SledBackend {
    fn get(&self, namespace: Namespace, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        self.with(false, |handles| Ok(handles.tree(namespace).get(key)?.map(|value| value.to_vec())))
    }

    fn scan(&self, namespace: Namespace, prefix: &[u8], start: &[u8]) -> anyhow::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.with(false, |handles| {
            let mut found = Vec::new();
            for entry in handles.tree(namespace).range(start..) {
                let (key, value) = entry?;
                if !key.starts_with(prefix) {
                    break;
                }
                found.push((key.to_vec(), value.to_vec()));
            }
            Ok(found)
        })
    }

    fn put(&self, namespace: Namespace, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
        self.with(true, |handles| handles.tree(namespace).insert(key, value).map(drop))
    }

    fn remove(&self, namespace: Namespace, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        self.with(true, |handles| Ok(handles.tree(namespace).remove(key)?.map(|value| value.to_vec())))
    }

    fn compare_and_swap(&self, namespace: Namespace, key: &[u8], expected: Option<&[u8]>, new: Option<&[u8]>) -> anyhow::Result<bool> {
        self.with(true, |handles| Ok(handles.tree(namespace).compare_and_swap(key, expected, new)?.is_ok()))
    }

    fn commit(&self, txn: &Txn) -> anyhow::Result<bool> {
        self.with(true, |handles| commit(handles, txn))
    }

    fn flush(&self) -> anyhow::Result<()> {
        self.with(true, |handles| handles.db.flush().map(drop))
    }

    fn forget_on_reopen(&self, namespace: Namespace, key: &[u8]) {
        self.forget.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((namespace, key.to_vec()));
    }
}

/// A sled transaction over the trees `txn` involves, each given once.
fn commit(handles: &Handles, txn: &Txn) -> Result<bool, sled::Error> {
    let mut involved: Vec<Namespace> =
        txn.compares.iter().map(|compare| compare.namespace).chain(txn.writes.iter().map(|write| write.namespace)).collect();
    involved.sort();
    involved.dedup();
    let trees: Vec<&sled::Tree> = involved.iter().map(|namespace| handles.tree(*namespace)).collect();
    let position = |namespace: Namespace| involved.binary_search(&namespace).expect("every namespace of the txn is involved");
    let result = trees[..].transaction(|views| {
        for compare in &txn.compares {
            let current = views[position(compare.namespace)].get(&compare.key)?;
            if current.as_deref() != compare.expected.as_deref() {
                return Err(ConflictableTransactionError::Abort(()));
            }
        }
        for write in &txn.writes {
            let view = &views[position(write.namespace)];
            match &write.value {
                Some(value) => view.insert(write.key.as_slice(), value.as_slice())?,
                None => view.remove(write.key.as_slice())?,
            };
        }
        Ok(())
    });
    match result {
        Ok(()) => Ok(true),
        Err(TransactionError::Abort(())) => Ok(false),
        Err(TransactionError::Storage(err)) => Err(err),
    }
}
