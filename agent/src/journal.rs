//! The agent's durable event journal (sled, `DATA_DIR/journal`).
//!
//! Every event gets a gap-free, agent-wide sequence number and is written, and flushed, before
//! anyone can read it: watchers only ever see journalled events, so a master that resumes from
//! the last sequence number it persisted misses nothing and sees nothing twice. The master
//! acknowledges what it has persisted, and the journal drops those events, so it cannot grow
//! without bound while the master is reachable.
//!
//! Events are the mesh's event record ([`RunEvent`]), kept in segments, one per appended
//! batch: the tree `segments` maps the last sequence number of a batch to its events (a JSON
//! array). One sled write per batch rather than per event is what lets a chatty step's output
//! through at tens of thousands of lines a second; an acknowledgement drops whole segments, and
//! readers skip what they have already seen. The tree `meta` holds the schema version
//! ([`SCHEMA_VERSION`]; a newer journal is refused) and where trimming reached.
//!
//! A run's record (tree `runs`) keeps how far each step got, and it moves in the same sled
//! transaction as the segment that carries the events: after a crash the line count a resumed
//! step skips is exactly what the journal holds, so a re-adopted step repeats no line. For the
//! same reason a resumed run does not announce again what it already announced (its start, an
//! image, a step's attempt, the end of a step that had ended).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use anyhow::Context;
use pmesh_proto::event::RunEvent;
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use tokio::sync::watch;

use crate::executor::events::{Event, EventKind, Outcome};

/// The layout this build writes: 1 kept a `"v"` in every record, 2 keeps it here, in `meta`.
/// Both read the same events; a journal with a newer version is refused.
pub const SCHEMA_VERSION: u64 = 2;

/// What the agent remembers of a run, so a retried start starts nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub v: u32,
    pub run_id: String,
    pub instance: String,
    pub bundle_digest: String,
    pub started_at_unix_ms: i64,
    pub state: RunState,
    /// The supplied values, kept so a run interrupted by an agent restart can be resumed.
    /// The data directory is private to the agent (0700 under systemd).
    #[serde(default)]
    pub values_json: String,
    /// Each step's progress, as journalled.
    #[serde(default)]
    pub steps: BTreeMap<String, StepProgress>,
    /// Whether the run's start is journalled.
    #[serde(default)]
    pub announced: bool,
    /// The images whose readiness is journalled.
    #[serde(default)]
    pub images: BTreeSet<String>,
    /// A succeeded run's outputs, secret values included (events carry those without one);
    /// `pmesh instances show --reveal` reads them through `InstanceOutputs`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<pmesh_proto::event::RunOutput>,
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl From<Outcome> for RunState {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Succeeded => RunState::Succeeded,
            Outcome::Failed => RunState::Failed,
            Outcome::Cancelled => RunState::Cancelled,
        }
    }
}

/// How far a step got, from the journalled events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepProgress {
    pub state: StepState,
    /// Output lines journalled so far.
    pub lines: u64,
    /// The attempt whose start is journalled.
    #[serde(default)]
    pub attempt: u32,
}

/// Where a step is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Seen, but its start is not journalled (stored as `""`, as schema 1 did).
    #[default]
    #[serde(rename = "")]
    Unstarted,
    Running,
    Done,
    Failed,
}

impl RunRecord {
    /// Whether `event` only repeats what this run already journalled: a resumed run announces
    /// its start, its images and its running steps' attempts again, and converges the steps
    /// that had ended before the restart, which start again and end "unchanged".
    fn repeats(&self, event: &EventKind) -> bool {
        let done = |step: &str| self.steps.get(step).is_some_and(|progress| progress.state == StepState::Done);
        match event {
            EventKind::RunStarted { .. } => self.announced,
            EventKind::ImageReady { reference, .. } => self.images.contains(reference),
            EventKind::StepStarted { step, attempt } => {
                done(step)
                    || self.steps.get(step).is_some_and(|progress| progress.state == StepState::Running && progress.attempt == *attempt)
            }
            EventKind::StepUnchanged { step, .. } | EventKind::StepSucceeded { step, .. } => done(step),
            _ => false,
        }
    }

    /// Folds a journalled event into the run's progress.
    fn fold(&mut self, event: &EventKind) {
        match event {
            EventKind::RunStarted { .. } => self.announced = true,
            EventKind::ImageReady { reference, .. } => {
                self.images.insert(reference.clone());
            }
            EventKind::StepStarted { step, attempt } => {
                let progress = self.steps.entry(step.clone()).or_default();
                progress.state = StepState::Running;
                progress.attempt = *attempt;
            }
            EventKind::Log { step, .. } => self.steps.entry(step.clone()).or_default().lines += 1,
            EventKind::StepSucceeded { step, .. } | EventKind::StepUnchanged { step, .. } => {
                self.steps.entry(step.clone()).or_default().state = StepState::Done;
            }
            EventKind::StepFailed { step, .. } | EventKind::StepSkipped { step, .. } => {
                self.steps.entry(step.clone()).or_default().state = StepState::Failed;
            }
            // The run's end moves with the event that says it: a restart never resumes a run
            // whose end is journalled, even if recording the outcome afterwards failed.
            EventKind::RunFinished { outcome, outputs } => {
                self.state = RunState::from(*outcome);
                self.outputs = outputs.clone();
            }
            _ => {}
        }
    }
}

/// Why an append failed, and whether the journal kept the batch.
#[derive(Debug, thiserror::Error)]
#[error("{error:#}")]
pub struct AppendError {
    /// The batch is numbered and held by the journal, which writes it (again, after a
    /// reopen) until a flush succeeds: wait with [`Journal::sync`] rather than append it again.
    pub accepted: bool,
    pub error: anyhow::Error,
}

impl AppendError {
    fn refused(error: anyhow::Error) -> AppendError {
        AppendError { accepted: false, error }
    }

    fn accepted(error: anyhow::Error) -> AppendError {
        AppendError { accepted: true, error }
    }
}

/// The journal.
pub struct Journal {
    /// This journal's identity ([`disk::identity`]), kept across restarts.
    id: String,
    dir: PathBuf,
    /// The database, swapped for a fresh one after a failed write poisoned it.
    slot: disk::Slot,
    /// Held while numbering and writing, so numbers are gap-free, and while reopening.
    writes: Mutex<Writes>,
    /// Taken last: nothing else is locked while it is held.
    health: Mutex<disk::Health>,
    /// The last durable sequence number: readers see nothing after it.
    last_seq: watch::Sender<u64>,
    /// Concurrent appends (several runs) share flushes.
    flusher: pmesh_rt::durable::GroupFlush,
}

/// What the write lock guards.
struct Writes {
    /// The next sequence number.
    next_seq: u64,
    next_ticket: u64,
    /// Segments written since the last flush that succeeded.
    pending: Vec<disk::Pending>,
    /// Runs whose record may have reached sled though recording them failed (the start was
    /// refused): removed at the next reopen.
    forget: Vec<String>,
}

impl Journal {
    /// Opens (or creates) the journal in `dir`.
    ///
    /// # Errors
    /// When sled cannot open it (another agent process holds it), a newer agent wrote it, or a
    /// record is damaged.
    pub fn open(dir: &Path) -> anyhow::Result<Journal> {
        let handles = disk::Handles::open(dir)?;
        disk::migrate_per_event_records(&handles.db, &handles.segments)?;
        disk::check_schema(&handles.meta, dir)?;
        let id = disk::identity(&handles.meta)?;
        // The next number continues after the last event, or after the last trimmed one.
        let last_event = handles.segments.last()?.map(|(key, _)| seq_of(&key)).unwrap_or(0);
        let trimmed = handles.meta.get("trimmed_up_to")?.map(|value| seq_of(&value)).unwrap_or(0);
        let last = last_event.max(trimmed);
        let (last_seq, _) = watch::channel(last);
        let slot: disk::Slot = Arc::new(RwLock::new(Some(Arc::new(handles))));
        let flusher = {
            let (slot, dir) = (slot.clone(), dir.to_owned());
            pmesh_rt::durable::GroupFlush::new(move || {
                let handles = disk::current(&slot, &dir).map_err(std::io::Error::other)?;
                // sled's own I/O error, so that a full disk reads as one.
                handles.db.flush().map(drop).map_err(|err| match err {
                    sled::Error::Io(io) => io,
                    other => std::io::Error::other(other),
                })
            })
        };
        let writes = Writes { next_seq: last + 1, next_ticket: 1, pending: Vec::new(), forget: Vec::new() };
        Ok(Journal { id, dir: dir.to_owned(), slot, writes: Mutex::new(writes), health: Mutex::default(), last_seq, flusher })
    }

    fn writes(&self) -> std::sync::MutexGuard<'_, Writes> {
        self.writes.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn health(&self) -> std::sync::MutexGuard<'_, disk::Health> {
        self.health.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// This journal's identity: another journal under the same agent name (the host installed
    /// again) numbers its events from 1 again, and a master tells the two apart by it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// What is wrong with the journal's disk, for the agent's facts: "journal: disk full at
    /// PATH" from a failed write until a flush succeeds again.
    pub fn problem(&self) -> Option<String> {
        self.health().problem.clone()
    }

    /// Notes a failed write when the error is the database's or the disk's (a record that
    /// does not decode poisons nothing).
    fn failed(&self, err: &anyhow::Error) {
        if err.chain().any(|cause| cause.is::<sled::Error>() || cause.is::<std::io::Error>()) {
            self.health().failed(&self.dir, err);
        }
    }

    /// The database for a write: opened again first when a write failed since it was opened
    /// (see [`disk`]), with the pending segments written again and the whole journal read
    /// back.
    fn writable(&self, writes: &mut Writes) -> anyhow::Result<Arc<disk::Handles>> {
        self.writable_if_room(writes, true)
    }

    /// [`Journal::writable`]; with `need_room`, refused while the file system has less than
    /// [`disk::MIN_ROOM`] free, before sled can meet a full disk.
    fn writable_if_room(&self, writes: &mut Writes, need_room: bool) -> anyhow::Result<Arc<disk::Handles>> {
        let closed = self.slot.read().unwrap_or_else(std::sync::PoisonError::into_inner).is_none();
        {
            let mut health = self.health();
            if !health.poisoned && !closed {
                if need_room && pmesh_rt::disk::free_bytes(&self.dir).is_some_and(|free| free < disk::MIN_ROOM) {
                    health.low(&self.dir);
                    return Err(health.refusal());
                }
                drop(health);
                return disk::current(&self.slot, &self.dir);
            }
            if !health.may_reopen(&self.dir) {
                return Err(health.refusal());
            }
        }
        let reopened = disk::reopen(&self.slot, &self.dir).and_then(|handles| {
            for write in &writes.pending {
                write.apply(&handles)?;
            }
            for run_id in &writes.forget {
                handles.runs.remove(run_id.as_bytes())?;
            }
            Ok(handles)
        });
        let handles = reopened.inspect_err(|err| self.health().failed(&self.dir, err))?;
        writes.forget.clear();
        let verified = disk::verify(&handles).inspect_err(|err| self.health().damaged(&self.dir, err))?;
        tracing::info!(
            dir = %self.dir.display(),
            segments = verified.segments,
            first = verified.first,
            last = verified.last,
            runs = verified.runs,
            pending = writes.pending.len(),
            "the journal was opened again after a failed write, and read back whole"
        );
        self.health().poisoned = false;
        Ok(handles)
    }

    /// The database for a read: a poisoned one still reads; a closed one is opened again.
    fn readable(&self) -> anyhow::Result<Arc<disk::Handles>> {
        match disk::current(&self.slot, &self.dir) {
            Ok(handles) => Ok(handles),
            Err(_) => self.writable(&mut self.writes()),
        }
    }

    /// Appends `batch`, less what only repeats what its runs already journalled, with the
    /// runs' progress in the same transaction; flushes it to disk, then tells watchers.
    /// Returns the last sequence number written.
    ///
    /// # Errors
    /// When the disk fails. Refused (not [`AppendError::accepted`]): nothing of the batch is
    /// written, numbered or announced; append it again later. Accepted: the batch is numbered
    /// and held; [`Journal::sync`] until it succeeds, and it is on disk.
    pub async fn append(&self, batch: &[Event]) -> Result<u64, AppendError> {
        let (last, ticket) = {
            let mut writes = self.writes();
            let handles = self.writable(&mut writes).map_err(AppendError::refused)?;
            let (events, runs) = fold(&handles.runs, batch).map_err(AppendError::refused)?;
            if events.is_empty() {
                return Ok(writes.next_seq - 1);
            }
            let next = writes.next_seq;
            let records: Vec<RunEvent> = events.iter().enumerate().map(|(offset, event)| event.record(next + offset as u64)).collect();
            let last = next + records.len() as u64 - 1;
            let encoded = serde_json::to_vec(&records).map_err(anyhow::Error::from).and_then(|segment| {
                let runs = runs.into_iter().map(|(run_id, run)| Ok((run_id, serde_json::to_vec(&run)?))).collect::<anyhow::Result<_>>()?;
                Ok((segment, runs))
            });
            let (segment, runs) = encoded.map_err(AppendError::refused)?;
            let write = disk::Pending { ticket: writes.next_ticket, last, segment, runs };
            let written = write.apply(&handles);
            drop(handles);
            // Written or not, the batch is the journal's now: a reopen writes it again.
            writes.next_seq = last + 1;
            writes.next_ticket += 1;
            let ticket = write.ticket;
            writes.pending.push(write);
            if let Err(err) = written {
                self.failed(&err);
                return Err(AppendError::accepted(err));
            }
            (last, ticket)
        };
        self.settle(ticket).await.map_err(AppendError::accepted)?;
        Ok(last)
    }

    /// Makes every accepted batch durable: after a failed append, this (retried until it
    /// succeeds) rather than appending the batch again.
    ///
    /// # Errors
    /// While the disk still fails.
    pub async fn sync(&self) -> Result<(), AppendError> {
        let ticket = {
            let mut writes = self.writes();
            self.writable(&mut writes).map_err(AppendError::accepted)?;
            writes.next_ticket - 1
        };
        self.settle(ticket).await.map_err(AppendError::accepted)
    }

    /// Flushes; once every write up to `ticket` is durable, drops them from the pending list
    /// and announces the last number they hold.
    async fn settle(&self, ticket: u64) -> anyhow::Result<()> {
        self.flusher.flush().await.context("flushing the journal").inspect_err(|err| self.failed(err))?;
        let durable = {
            let mut writes = self.writes();
            let durable = writes.pending.iter().filter(|write| write.ticket <= ticket).map(|write| write.last).max();
            writes.pending.retain(|write| write.ticket > ticket);
            durable
        };
        self.health().flushed();
        // Another run's append may have announced a later number already; it never goes back.
        if let Some(durable) = durable {
            self.last_seq.send_if_modified(|announced| {
                let newer = durable > *announced;
                if newer {
                    *announced = durable;
                }
                newer
            });
        }
        Ok(())
    }

    /// Journalled events with `seq >= from`, oldest first: whole segments until at least
    /// `limit` events are gathered. Only durable events are read: none that a failed flush
    /// could still take back.
    ///
    /// # Errors
    /// When a record is damaged, or the journal is closed after a failed write.
    pub fn read_from(&self, from: u64, limit: usize) -> anyhow::Result<Vec<RunEvent>> {
        let handles = self.readable()?;
        let durable = *self.last_seq.borrow();
        let mut records = Vec::new();
        // A segment's key is its last number: the first key at or after `from` holds `from`.
        for entry in handles.segments.range(from.to_be_bytes()..) {
            let (key, value) = entry?;
            if seq_of(&key) > durable {
                break;
            }
            let segment: Vec<RunEvent> = serde_json::from_slice(&value).context("a journal segment does not decode")?;
            records.extend(segment.into_iter().filter(|record| record.seq >= from));
            if records.len() >= limit {
                break;
            }
        }
        Ok(records)
    }

    /// Announces the last journalled sequence number as it grows.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.last_seq.subscribe()
    }

    /// Drops the segments whose events are all at or below `up_to` (acknowledged by the
    /// master). Returns the oldest sequence number still held (none held: the one after the
    /// highest acknowledgement).
    ///
    /// # Errors
    /// When the disk fails.
    pub fn trim(&self, up_to: u64) -> anyhow::Result<u64> {
        match self.writable_if_room(&mut self.writes(), false) {
            Ok(handles) => trim(&handles, up_to).inspect_err(|err| self.failed(err)),
            // A journal that cannot be written keeps what it holds (a trim only allows dropping
            // it): the condition is reported already, and the next acknowledgement trims.
            Err(_) => oldest(&*self.readable()?, None, up_to),
        }
    }

    /// The run with `run_id`, if this agent knows it.
    ///
    /// # Errors
    /// When the record is damaged.
    pub fn run(&self, run_id: &str) -> anyhow::Result<Option<RunRecord>> {
        run_in(&self.readable()?.runs, run_id)
    }

    /// Records a run, atomically refusing a second record with the same id: `Ok(false)` when
    /// the run was known already (a retried start).
    ///
    /// # Errors
    /// When the disk fails; the record is not kept then (a reopen removes it if it reached
    /// sled).
    pub fn insert_run(&self, run: &RunRecord) -> anyhow::Result<bool> {
        let value = serde_json::to_vec(run)?;
        let handles = self.writable(&mut self.writes())?;
        let inserted = handles.runs.compare_and_swap(&run.run_id, None as Option<&[u8]>, Some(value)).map(|swapped| swapped.is_ok());
        let result = inserted.and_then(|inserted| handles.db.flush().map(|_| inserted)).map_err(anyhow::Error::from);
        drop(handles);
        if let Err(err) = &result {
            self.failed(err);
            self.writes().forget.push(run.run_id.clone());
        }
        result
    }

    /// Every run this agent recorded.
    ///
    /// # Errors
    /// When a record is damaged.
    pub fn runs(&self) -> anyhow::Result<Vec<RunRecord>> {
        let mut runs = Vec::new();
        for value in self.readable()?.runs.iter().values() {
            runs.push(serde_json::from_slice(&value?).context("a run record does not decode")?);
        }
        Ok(runs)
    }

    /// Runs that were running when the agent stopped.
    ///
    /// # Errors
    /// When a record is damaged.
    pub fn interrupted_runs(&self) -> anyhow::Result<Vec<RunRecord>> {
        Ok(self.runs()?.into_iter().filter(|run| run.state == RunState::Running).collect())
    }

    /// Sets a run's state.
    ///
    /// # Errors
    /// When the disk fails.
    pub fn set_run_state(&self, run_id: &str, state: RunState) -> anyhow::Result<()> {
        let handles = self.writable(&mut self.writes())?;
        let result = (|| {
            if let Some(mut run) = run_in(&handles.runs, run_id)? {
                run.state = state;
                handles.runs.insert(run_id, serde_json::to_vec(&run)?)?;
                handles.db.flush()?;
            }
            Ok(())
        })();
        drop(handles);
        result.inspect_err(|err| self.failed(err))
    }
}

/// The events of `batch` worth journalling, and the records of the runs they move.
fn fold<'a>(run_tree: &sled::Tree, batch: &'a [Event]) -> anyhow::Result<(Vec<&'a Event>, BTreeMap<String, RunRecord>)> {
    let mut runs: BTreeMap<String, RunRecord> = BTreeMap::new();
    let mut kept = Vec::with_capacity(batch.len());
    for event in batch {
        if !runs.contains_key(&event.run_id) {
            if let Some(run) = run_in(run_tree, &event.run_id)? {
                runs.insert(event.run_id.clone(), run);
            }
        }
        match runs.get_mut(&event.run_id) {
            Some(run) if run.repeats(&event.kind) => continue,
            Some(run) => run.fold(&event.kind),
            // Events of a run without a record (a local apply's journal, tests) are kept.
            None => {}
        }
        kept.push(event);
    }
    Ok((kept, runs))
}

fn run_in(run_tree: &sled::Tree, run_id: &str) -> anyhow::Result<Option<RunRecord>> {
    run_tree.get(run_id)?.map(|value| serde_json::from_slice(&value).context("a run record does not decode")).transpose()
}

/// [`Journal::trim`] on an open database.
fn trim(handles: &disk::Handles, up_to: u64) -> anyhow::Result<u64> {
    let keys: Vec<sled::IVec> = handles.segments.range(..=up_to.to_be_bytes()).keys().collect::<Result<_, _>>()?;
    // The segments go and the high-water mark moves in one transaction: a crash between the
    // two must never leave the segments gone with the mark behind, or the next start would
    // number events again from below what the master acknowledged, and the master would drop
    // them as seen.
    let trimmed = (&handles.segments, &handles.meta)
        .transaction(|(segments, meta)| {
            let old = meta.get("trimmed_up_to")?.map(|value| seq_of(&value)).unwrap_or(0);
            let mark = old.max(up_to);
            meta.insert("trimmed_up_to", &mark.to_be_bytes())?;
            for key in &keys {
                segments.remove(key)?;
            }
            Ok::<_, ConflictableTransactionError<()>>(mark)
        })
        .map_err(|err: TransactionError<()>| anyhow::anyhow!("trimming the journal: {err:?}"))?;
    oldest(handles, Some(trimmed), up_to)
}

/// The oldest sequence number held; none held, the one after the highest acknowledgement
/// (`trimmed`, read from `meta` when not given).
fn oldest(handles: &disk::Handles, trimmed: Option<u64>, up_to: u64) -> anyhow::Result<u64> {
    let trimmed = match trimmed {
        Some(trimmed) => Some(trimmed),
        None => handles.meta.get("trimmed_up_to")?.map(|value| seq_of(&value)),
    };
    // An emptied journal answers the number after the highest acknowledgement (the next
    // it will write), not after this one: a stale acknowledgement must not claim that
    // events dropped by an earlier one are still held.
    let next = trimmed.unwrap_or(up_to).max(up_to) + 1;
    match handles.segments.first()? {
        Some((_, value)) => {
            let segment: Vec<RunEvent> = serde_json::from_slice(&value).context("a journal segment does not decode")?;
            Ok(segment.first().map(|record| record.seq).unwrap_or(next))
        }
        None => Ok(next),
    }
}

fn seq_of(bytes: &[u8]) -> u64 {
    bytes.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

mod disk;
pub mod pump;

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests;
