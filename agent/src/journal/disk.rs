//! The journal's sled database, and what happens when the disk under it fails.
//!
//! sled 0.34 poisons itself after a write fails (a full disk: ENOSPC): every later write and
//! flush of that database answers the same error, even once space returns, while reads still
//! work. The only way back is to drop it and open the directory again, which recovers what
//! reached the file. So the journal keeps its database in a [`Slot`] it can swap, and every
//! segment written since the last flush that succeeded in a list of [`Pending`] writes: after
//! a reopen those are written again (the same keys and bytes: idempotent), so nothing the
//! journal accepted is lost and nothing is written twice. The reopened journal is then read
//! back whole ([`verify`]) before it takes a write.
//!
//! A reopen is only tried when the file system has room again ([`MIN_ROOM`]) and at most
//! once a second; until then writes are refused with the condition, which [`Health`] keeps
//! for the agent's facts, and which is logged once when it begins and once when it ends.
//!
//! Better still, sled is kept from ever meeting ENOSPC: a write is refused, before it reaches
//! sled, while the file system has less than [`MIN_ROOM`] free (a trim, which frees space, is
//! not). sled 0.34 does not always recover from a failed write in place: dropping such a
//! database can block for good in its final flush (found by this module's tmpfs test), in
//! which case the reopen times out and the journal stays closed until the agent restarts.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use pmesh_proto::event::RunEvent;
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

/// Free bytes the journal's file system needs before a reopen is tried: a few of sled's
/// 512 KiB segments.
pub const MIN_ROOM: u64 = 2 * 1024 * 1024;
/// The shortest time between two reopen attempts.
const RETRY_REOPEN: Duration = Duration::from_secs(1);
/// How long a reopen waits for sled to let go of the old database (its flusher thread holds
/// the directory's lock until its next tick).
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

/// The open database and its trees.
pub struct Handles {
    pub db: sled::Db,
    pub segments: sled::Tree,
    pub runs: sled::Tree,
    pub meta: sled::Tree,
}

impl Handles {
    /// Opens the database in `dir` (no migration or schema check: the journal's `open` does
    /// those once).
    pub fn open(dir: &Path) -> anyhow::Result<Handles> {
        // A small page cache: the journal is written once and read sequentially, and an idle
        // agent should stay small.
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(4 * 1024 * 1024)
            .open()
            .with_context(|| format!("opening the journal in {} (is another agent running?)", dir.display()))?;
        let segments = db.open_tree("segments")?;
        let runs = db.open_tree("runs")?;
        let meta = db.open_tree("meta")?;
        Ok(Handles { db, segments, runs, meta })
    }
}

/// The database, shared with the group flusher; `None` while a reopen is under way or after
/// one failed.
pub type Slot = Arc<RwLock<Option<Arc<Handles>>>>;

/// The database in `slot`, or why there is none.
pub fn current(slot: &Slot, dir: &Path) -> anyhow::Result<Arc<Handles>> {
    slot.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone().ok_or_else(|| {
        anyhow::anyhow!("the journal in {} is closed after a write failed; it reopens once the disk has room", dir.display())
    })
}

/// A segment written since the last flush that succeeded, with the run records written in the
/// same transaction: what a reopen writes again.
pub struct Pending {
    /// Taken in write order, under the journal's write lock.
    pub ticket: u64,
    /// The segment's key: its last sequence number.
    pub last: u64,
    pub segment: Vec<u8>,
    pub runs: Vec<(String, Vec<u8>)>,
}

impl Pending {
    /// Writes the segment and its runs' records in one transaction.
    pub fn apply(&self, handles: &Handles) -> anyhow::Result<()> {
        (&handles.segments, &handles.runs)
            .transaction(|(segments, run_tree)| {
                segments.insert(&self.last.to_be_bytes(), self.segment.as_slice())?;
                for (run_id, run) in &self.runs {
                    run_tree.insert(run_id.as_bytes(), run.as_slice())?;
                }
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|err: TransactionError<()>| match err {
                TransactionError::Storage(err) => anyhow::Error::new(err).context("writing a journal segment"),
                TransactionError::Abort(()) => anyhow::anyhow!("writing a journal segment was aborted"),
            })
    }
}

/// Whether the journal's disk works, and what to tell the operator when it does not.
#[derive(Debug, Default)]
pub struct Health {
    /// A write failed: the database must be reopened before the next one.
    pub poisoned: bool,
    /// The condition, such as "journal: disk full at /var/lib/pmesh-agent/journal"; kept
    /// until a flush succeeds again.
    pub problem: Option<String>,
    /// The problem is a full disk.
    full: bool,
    last_reopen: Option<Instant>,
}

impl Health {
    /// Records a failed write; logs the condition when it is new.
    pub fn failed(&mut self, dir: &Path, err: &anyhow::Error) {
        self.poisoned = true;
        if self.problem.is_none() {
            let problem = describe(dir, err);
            self.full = pmesh_rt::disk::is_full(err);
            tracing::error!(error = format!("{err:#}"), "{problem}; the runs' events are held and written once it can be");
            self.problem = Some(problem);
        }
    }

    /// Records a write refused before it reached sled because the file system has less than
    /// [`MIN_ROOM`] free: the database stays healthy; the condition is logged once.
    pub fn low(&mut self, dir: &Path) {
        if self.problem.is_none() {
            let problem = format!("journal: disk full at {}", dir.display());
            tracing::error!("{problem} (less than {MIN_ROOM} bytes free); the runs' events are held and written once there is room");
            self.problem = Some(problem);
            self.full = true;
        }
    }

    /// Records a flush that succeeded; logs the end of a condition.
    pub fn flushed(&mut self) {
        if !self.poisoned {
            if let Some(problem) = self.problem.take() {
                tracing::info!(was = %problem, "the journal is written to disk again");
            }
        }
    }

    /// Records a journal that did not read back whole after a reopen: it takes no write.
    pub fn damaged(&mut self, dir: &Path, err: &anyhow::Error) {
        self.poisoned = true;
        self.full = false;
        let problem = format!("journal: damaged at {}: {err:#}", dir.display());
        tracing::error!("{problem}");
        self.problem = Some(problem);
    }

    /// The error a write is refused with while the problem lasts: a full disk's carries
    /// ENOSPC, so callers (and the master) can tell it apart.
    pub fn refusal(&self) -> anyhow::Error {
        let problem = self.problem.clone().unwrap_or_else(|| "journal: closed after a write failed".into());
        if self.full {
            anyhow::Error::new(std::io::Error::from_raw_os_error(28)).context(problem)
        } else {
            anyhow::anyhow!(problem)
        }
    }

    /// Whether a reopen may be tried now: not more than once a [`RETRY_REOPEN`], and only
    /// when the file system has room.
    pub fn may_reopen(&mut self, dir: &Path) -> bool {
        if self.last_reopen.is_some_and(|at| at.elapsed() < RETRY_REOPEN) {
            return false;
        }
        self.last_reopen = Some(Instant::now());
        pmesh_rt::disk::free_bytes(dir).is_none_or(|free| free >= MIN_ROOM)
    }
}

/// The condition a failed write reports, naming the journal's directory.
pub fn describe(dir: &Path, err: &anyhow::Error) -> String {
    if pmesh_rt::disk::is_full(err) {
        format!("journal: disk full at {}", dir.display())
    } else {
        format!("journal: cannot write at {}: {err:#}", dir.display())
    }
}

/// Drops the database in `slot` and opens `dir` again, waiting for sled to let go of the old
/// one. The slot is left empty when the open fails.
///
/// # Errors
/// When the directory cannot be opened again in time.
pub fn reopen(slot: &Slot, dir: &Path) -> anyhow::Result<Arc<Handles>> {
    let old = slot.write().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    // sled's drop flushes, and after a failed write that flush can wait forever: drop it
    // aside, and wait below (bounded) for it to let go of the directory.
    std::thread::spawn(move || drop(old));
    let deadline = Instant::now() + RELEASE_TIMEOUT;
    let handles = loop {
        match Handles::open(dir) {
            Ok(handles) => break Arc::new(handles),
            // A full disk does not get better by waiting here: the next attempt is later.
            Err(err) if pmesh_rt::disk::is_full(&err) || Instant::now() > deadline => return Err(err),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    *slot.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(handles.clone());
    Ok(handles)
}

/// What [`verify`] read back.
#[derive(Debug, PartialEq, Eq)]
pub struct Verified {
    pub segments: usize,
    /// The first and last sequence numbers held (none: `(0, 0)`).
    pub first: u64,
    pub last: u64,
    pub runs: usize,
}

/// Reads the whole journal back: every segment decodes, is keyed by its last number and
/// continues where the one before it ended; every run record decodes.
///
/// # Errors
/// When anything does not hold, naming the key.
pub fn verify(handles: &Handles) -> anyhow::Result<Verified> {
    let mut verified = Verified { segments: 0, first: 0, last: 0, runs: 0 };
    for entry in handles.segments.iter() {
        let (key, value) = entry?;
        let key = super::seq_of(&key);
        let segment: Vec<RunEvent> =
            serde_json::from_slice(&value).with_context(|| format!("the journal segment ending at {key} does not decode"))?;
        for record in &segment {
            anyhow::ensure!(
                verified.last == 0 || record.seq == verified.last + 1,
                "the journal has a gap or a repeat: event {} follows {}",
                record.seq,
                verified.last
            );
            if verified.first == 0 {
                verified.first = record.seq;
            }
            verified.last = record.seq;
        }
        anyhow::ensure!(verified.last == key, "the journal segment keyed {key} ends at {}", verified.last);
        verified.segments += 1;
    }
    for entry in handles.runs.iter() {
        let (key, value) = entry?;
        serde_json::from_slice::<super::RunRecord>(&value)
            .with_context(|| format!("the run record {} does not decode", String::from_utf8_lossy(&key)))?;
        verified.runs += 1;
    }
    Ok(verified)
}

/// Journals written before segments kept one record per key in the tree `events`; they move
/// into one segment (idempotently: a crash midway repeats the same write).
pub fn migrate_per_event_records(db: &sled::Db, segments: &sled::Tree) -> anyhow::Result<()> {
    let legacy = db.open_tree("events")?;
    if legacy.is_empty() {
        return Ok(());
    }
    let records: Vec<RunEvent> = legacy
        .iter()
        .values()
        .map(|value| serde_json::from_slice(&value?).context("a journal record does not decode"))
        .collect::<anyhow::Result<_>>()?;
    if let Some(last) = records.last().map(|record| record.seq) {
        segments.insert(last.to_be_bytes(), serde_json::to_vec(&records)?)?;
        db.flush()?;
    }
    legacy.clear()?;
    db.flush()?;
    Ok(())
}

/// Refuses a journal a newer agent wrote, and records this build's version otherwise (schema
/// 1 journals read as they are: their records' `"v"` is ignored).
pub fn check_schema(meta: &sled::Tree, dir: &Path) -> anyhow::Result<()> {
    let found = meta.get("schema")?.map(|value| super::seq_of(&value)).unwrap_or(1);
    if found > super::SCHEMA_VERSION {
        anyhow::bail!(
            "the journal in {} has schema version {found}, newer than this agent's {}: run the newer agent, or move the directory aside",
            dir.display(),
            super::SCHEMA_VERSION
        );
    }
    if found < super::SCHEMA_VERSION {
        meta.insert("schema", &super::SCHEMA_VERSION.to_be_bytes())?;
    }
    Ok(())
}

/// The journal's identity, made when the journal is (or, for a journal an older agent wrote,
/// when it is first opened by this one): random, so that a master following the journal
/// can tell it from the one an earlier installation under the same agent name wrote, whose
/// sequence numbers this one repeats.
pub fn identity(meta: &sled::Tree) -> anyhow::Result<String> {
    if let Some(found) = meta.get("id")? {
        return String::from_utf8(found.to_vec()).context("the journal's id is not text");
    }
    let made = format!("{:032x}", rand::random::<u128>());
    match meta.compare_and_swap("id", None as Option<&[u8]>, Some(made.as_bytes()))? {
        // Durable before any master can learn it: an id that changed after a crash would
        // make a master read this journal's old events again.
        Ok(()) => {
            meta.flush()?;
            Ok(made)
        }
        Err(current) => {
            let current = current.current.context("the journal's id vanished")?;
            String::from_utf8(current.to_vec()).context("the journal's id is not text")
        }
    }
}
