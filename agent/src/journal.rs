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
use std::path::Path;
use std::sync::Mutex;

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
            _ => {}
        }
    }
}

/// The journal.
pub struct Journal {
    db: sled::Db,
    segments: sled::Tree,
    runs: sled::Tree,
    /// The next sequence number; held while appending so numbers are gap-free.
    next_seq: Mutex<u64>,
    last_seq: watch::Sender<u64>,
    /// Concurrent appends (several runs) share flushes.
    flusher: pmesh_rt::durable::GroupFlush,
}

impl Journal {
    /// Opens (or creates) the journal in `dir`.
    ///
    /// # Errors
    /// When sled cannot open it (another agent process holds it), a newer agent wrote it, or a
    /// record is damaged.
    pub fn open(dir: &Path) -> anyhow::Result<Journal> {
        // A small page cache: the journal is written once and read sequentially, and an idle
        // agent should stay small.
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(4 * 1024 * 1024)
            .open()
            .with_context(|| format!("opening the journal in {} (is another agent running?)", dir.display()))?;
        let segments = db.open_tree("segments")?;
        migrate_per_event_records(&db, &segments)?;
        let runs = db.open_tree("runs")?;
        let meta = db.open_tree("meta")?;
        check_schema(&meta, dir)?;
        // The next number continues after the last event, or after the last trimmed one.
        let last_event = segments.last()?.map(|(key, _)| seq_of(&key)).unwrap_or(0);
        let trimmed = meta.get("trimmed_up_to")?.map(|value| seq_of(&value)).unwrap_or(0);
        let last = last_event.max(trimmed);
        let (last_seq, _) = watch::channel(last);
        let flusher = {
            let db = db.clone();
            pmesh_rt::durable::GroupFlush::new(move || db.flush().map(drop).map_err(std::io::Error::other))
        };
        Ok(Journal { db, segments, runs, next_seq: Mutex::new(last + 1), last_seq, flusher })
    }

    /// Appends `batch`, less what only repeats what its runs already journalled, with the
    /// runs' progress in the same transaction; flushes it to disk, then tells watchers.
    /// Returns the last sequence number written.
    ///
    /// # Errors
    /// When the disk fails; nothing of the batch is written or announced then.
    pub async fn append(&self, batch: &[Event]) -> anyhow::Result<u64> {
        let last = {
            let mut next = self.next_seq.lock().expect("journal lock poisoned only if an append panicked");
            let (events, runs) = self.fold(batch)?;
            if events.is_empty() {
                return Ok(*next - 1);
            }
            let records: Vec<RunEvent> = events.iter().enumerate().map(|(offset, event)| event.record(*next + offset as u64)).collect();
            let last = *next + records.len() as u64 - 1;
            let segment = serde_json::to_vec(&records)?;
            let runs: Vec<(String, Vec<u8>)> =
                runs.into_iter().map(|(run_id, run)| Ok((run_id, serde_json::to_vec(&run)?))).collect::<anyhow::Result<_>>()?;
            (&self.segments, &self.runs)
                .transaction(|(segments, run_tree)| {
                    segments.insert(&last.to_be_bytes(), segment.as_slice())?;
                    for (run_id, run) in &runs {
                        run_tree.insert(run_id.as_bytes(), run.as_slice())?;
                    }
                    Ok::<_, ConflictableTransactionError<()>>(())
                })
                .map_err(|err: TransactionError<()>| anyhow::anyhow!("writing a journal segment: {err:?}"))?;
            *next = last + 1;
            last
        };
        self.flusher.flush().await.context("flushing the journal")?;
        // Another run's append may have announced a later number already; it never goes back.
        self.last_seq.send_if_modified(|announced| {
            let newer = last > *announced;
            if newer {
                *announced = last;
            }
            newer
        });
        Ok(last)
    }

    /// The events of `batch` worth journalling, and the records of the runs they move.
    fn fold<'a>(&self, batch: &'a [Event]) -> anyhow::Result<(Vec<&'a Event>, BTreeMap<String, RunRecord>)> {
        let mut runs: BTreeMap<String, RunRecord> = BTreeMap::new();
        let mut kept = Vec::with_capacity(batch.len());
        for event in batch {
            if !runs.contains_key(&event.run_id) {
                if let Some(run) = self.run(&event.run_id)? {
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

    /// Journalled events with `seq >= from`, oldest first: whole segments until at least
    /// `limit` events are gathered.
    ///
    /// # Errors
    /// When a record is damaged.
    pub fn read_from(&self, from: u64, limit: usize) -> anyhow::Result<Vec<RunEvent>> {
        let mut records = Vec::new();
        // A segment's key is its last number: the first key at or after `from` holds `from`.
        for entry in self.segments.range(from.to_be_bytes()..) {
            let (_, value) = entry?;
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
        let mut batch = sled::Batch::default();
        for key in self.segments.range(..=up_to.to_be_bytes()).keys() {
            batch.remove(key?);
        }
        self.segments.apply_batch(batch)?;
        let trimmed = self.db.open_tree("meta")?.update_and_fetch("trimmed_up_to", |old| {
            let old = old.map(seq_of).unwrap_or(0);
            Some(old.max(up_to).to_be_bytes().to_vec())
        })?;
        // An emptied journal answers the number after the highest acknowledgement (the next
        // it will write), not after this one: a stale acknowledgement must not claim that
        // events dropped by an earlier one are still held.
        let next = trimmed.map(|value| seq_of(&value)).unwrap_or(up_to) + 1;
        match self.segments.first()? {
            Some((_, value)) => {
                let segment: Vec<RunEvent> = serde_json::from_slice(&value).context("a journal segment does not decode")?;
                Ok(segment.first().map(|record| record.seq).unwrap_or(next))
            }
            None => Ok(next),
        }
    }

    /// The run with `run_id`, if this agent knows it.
    ///
    /// # Errors
    /// When the record is damaged.
    pub fn run(&self, run_id: &str) -> anyhow::Result<Option<RunRecord>> {
        self.runs.get(run_id)?.map(|value| serde_json::from_slice(&value).context("a run record does not decode")).transpose()
    }

    /// Records a run, atomically refusing a second record with the same id: `Ok(false)` when
    /// the run was known already (a retried start).
    ///
    /// # Errors
    /// When the disk fails.
    pub fn insert_run(&self, run: &RunRecord) -> anyhow::Result<bool> {
        let inserted = self.runs.compare_and_swap(&run.run_id, None as Option<&[u8]>, Some(serde_json::to_vec(run)?))?.is_ok();
        self.db.flush()?;
        Ok(inserted)
    }

    /// Runs that were running when the agent stopped.
    ///
    /// # Errors
    /// When a record is damaged.
    pub fn interrupted_runs(&self) -> anyhow::Result<Vec<RunRecord>> {
        let mut interrupted = Vec::new();
        for value in self.runs.iter().values() {
            let run: RunRecord = serde_json::from_slice(&value?).context("a run record does not decode")?;
            if run.state == RunState::Running {
                interrupted.push(run);
            }
        }
        Ok(interrupted)
    }

    /// Sets a run's state.
    ///
    /// # Errors
    /// When the disk fails.
    pub fn set_run_state(&self, run_id: &str, state: RunState) -> anyhow::Result<()> {
        if let Some(mut run) = self.run(run_id)? {
            run.state = state;
            self.runs.insert(run_id, serde_json::to_vec(&run)?)?;
            self.db.flush()?;
        }
        Ok(())
    }
}

/// Journals written before segments kept one record per key in the tree `events`; they move
/// into one segment (idempotently: a crash midway repeats the same write).
fn migrate_per_event_records(db: &sled::Db, segments: &sled::Tree) -> anyhow::Result<()> {
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
fn check_schema(meta: &sled::Tree, dir: &Path) -> anyhow::Result<()> {
    let found = meta.get("schema")?.map(|value| seq_of(&value)).unwrap_or(1);
    if found > SCHEMA_VERSION {
        anyhow::bail!(
            "the journal in {} has schema version {found}, newer than this agent's {SCHEMA_VERSION}: run the newer agent, or move the directory aside",
            dir.display()
        );
    }
    if found < SCHEMA_VERSION {
        meta.insert("schema", &SCHEMA_VERSION.to_be_bytes())?;
    }
    Ok(())
}

fn seq_of(bytes: &[u8]) -> u64 {
    bytes.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;
    use pmesh_proto::event::Kind;
    use std::time::SystemTime;

    /// Opens the journal in `dir` once sled has let go of it: a dropped database's flusher
    /// thread can hold the directory's lock for a moment (until its next tick).
    pub(super) fn reopen(dir: &Path) -> Journal {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match Journal::open(dir) {
                Ok(journal) => return journal,
                Err(err) if std::time::Instant::now() > deadline => panic!("reopening the journal: {err:#}"),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        }
    }

    fn event(line: &str) -> Event {
        Event { at: SystemTime::now(), run_id: "r1".into(), kind: EventKind::Log { step: "s".into(), line: line.into() } }
    }

    #[tokio::test]
    async fn sequence_numbers_are_gap_free_across_reopen_and_trim() {
        let dir = tempfile::tempdir().unwrap();
        {
            let journal = Journal::open(dir.path()).unwrap();
            assert_eq!(journal.append(&[event("a"), event("b")]).await.unwrap(), 2);
            assert_eq!(journal.append(&[event("c")]).await.unwrap(), 3);
            let read: Vec<u64> = journal.read_from(2, 10).unwrap().iter().map(|record| record.seq).collect();
            assert_eq!(read, [2, 3]);
            assert_eq!(journal.trim(3).unwrap(), 4, "everything acknowledged");
        }
        let journal = reopen(dir.path());
        assert_eq!(journal.append(&[event("d")]).await.unwrap(), 4, "numbering continues after a trim and a restart");
        assert_eq!(journal.read_from(0, 10).unwrap()[0].text, "d");
    }

    #[test]
    fn a_run_id_is_recorded_once() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let run = run_record("r1");
        assert!(journal.insert_run(&run).unwrap());
        assert!(!journal.insert_run(&run).unwrap());
        journal.set_run_state("r1", RunState::Succeeded).unwrap();
        assert_eq!(journal.run("r1").unwrap().unwrap().state, RunState::Succeeded);
    }

    #[tokio::test]
    async fn reads_resume_inside_a_segment_and_trims_keep_a_partly_acknowledged_one() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        journal.append(&[event("a"), event("b"), event("c")]).await.unwrap();
        journal.append(&[event("d"), event("e")]).await.unwrap();
        let seqs = |from, limit| journal.read_from(from, limit).unwrap().iter().map(|record| record.seq).collect::<Vec<_>>();
        assert_eq!(seqs(2, 100), [2, 3, 4, 5]);
        assert_eq!(seqs(2, 1), [2, 3], "whole segments, from the one holding `from`");
        assert_eq!(seqs(6, 100), Vec::<u64>::new());
        assert_eq!(journal.trim(2).unwrap(), 1, "a segment with unacknowledged events stays whole");
        assert_eq!(journal.trim(3).unwrap(), 4);
        assert_eq!(seqs(4, 100), [4, 5]);
    }

    /// A journal written one record per key (before segments) is read after an upgrade, and
    /// numbering continues after it.
    #[tokio::test]
    async fn a_per_event_journal_is_migrated_into_a_segment() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            let legacy = db.open_tree("events").unwrap();
            for seq in [4u64, 5] {
                let v1 = format!(r#"{{"v":1,"seq":{seq},"run_id":"r1","at_unix_ms":1,"kind":"log","step":"s","text":"line-{seq}"}}"#);
                legacy.insert(seq.to_be_bytes(), v1.as_bytes()).unwrap();
            }
            db.flush().unwrap();
        }
        let journal = reopen(dir.path());
        let texts: Vec<String> = journal.read_from(0, 10).unwrap().into_iter().map(|record| record.text).collect();
        assert_eq!(texts, ["line-4", "line-5"]);
        assert_eq!(journal.append(&[event("next")]).await.unwrap(), 6);
    }

    /// Journal records written by schema v1 keep decoding.
    #[test]
    fn reads_v1_records() {
        let v1 = r#"{"v":1,"seq":7,"run_id":"r1","at_unix_ms":1,"kind":"step_failed","step":"named",
            "text":"exited with code 1","percent":0.0,"exit_code":1,"tail":["x"],"attempt":1,
            "instance":"","pattern":""}"#;
        let record: RunEvent = serde_json::from_str(v1).unwrap();
        assert_eq!(record.kind, Kind::StepFailed);
        assert_eq!(record.exit_code, Some(1));
    }

    fn run_record(run_id: &str) -> RunRecord {
        RunRecord {
            v: 1,
            run_id: run_id.into(),
            instance: "i".into(),
            bundle_digest: "d".into(),
            started_at_unix_ms: 0,
            state: RunState::Running,
            values_json: "{}".into(),
            steps: Default::default(),
            announced: false,
            images: Default::default(),
        }
    }

    fn at(run_id: &str, kind: EventKind) -> Event {
        Event { at: SystemTime::now(), run_id: run_id.into(), kind }
    }

    /// The step progress a resume relies on moves with the events: what the record says was
    /// journalled is exactly what was.
    #[tokio::test]
    async fn step_progress_is_written_with_its_events() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        journal.insert_run(&run_record("r1")).unwrap();
        let log = |line: &str| at("r1", EventKind::Log { step: "s".into(), line: line.into() });
        journal.append(&[at("r1", EventKind::StepStarted { step: "s".into(), attempt: 1 }), log("a"), log("b")]).await.unwrap();
        journal.append(&[log("c")]).await.unwrap();
        let step = journal.run("r1").unwrap().unwrap().steps["s"].clone();
        assert_eq!(step, StepProgress { state: StepState::Running, lines: 3, attempt: 1 });
        assert_eq!(journal.read_from(0, 100).unwrap().len(), 4);
    }

    /// A resumed run's second "run started", "image ready" and "step started" (same attempt)
    /// are not journalled again; a new attempt is.
    #[tokio::test]
    async fn a_resumed_run_does_not_announce_twice() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        journal.insert_run(&run_record("r1")).unwrap();
        let announcements = || {
            [
                at("r1", EventKind::RunStarted { instance: "i".into(), pattern: "p@1".into(), n_steps: 1 }),
                at("r1", EventKind::ImageReady { reference: "img".into(), action: crate::executor::events::ImageAction::Present }),
                at("r1", EventKind::StepStarted { step: "s".into(), attempt: 1 }),
            ]
        };
        assert_eq!(journal.append(&announcements()).await.unwrap(), 3);
        assert_eq!(journal.append(&announcements()).await.unwrap(), 3, "nothing new to journal");
        let retry = at("r1", EventKind::StepStarted { step: "s".into(), attempt: 2 });
        assert_eq!(journal.append(&[retry]).await.unwrap(), 4);
        let kinds: Vec<Kind> = journal.read_from(0, 100).unwrap().iter().map(|record| record.kind).collect();
        assert_eq!(kinds, [Kind::RunStarted, Kind::ImageReady, Kind::StepStarted, Kind::StepStarted]);
    }

    /// A run resumed after its first step ended converges that step again: its second start
    /// and its "unchanged" are not journalled, while a step that never ended still is.
    /// (Found by the chaos suite: an agent SIGKILLed during a run's last step re-announced
    /// every earlier step.)
    #[tokio::test]
    async fn a_resumed_run_does_not_announce_an_ended_step_again() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        journal.insert_run(&run_record("r1")).unwrap();
        let started = |step: &str| at("r1", EventKind::StepStarted { step: step.into(), attempt: 1 });
        let unchanged = |step: &str| at("r1", EventKind::StepUnchanged { step: step.into(), container_id: None });
        let succeeded = at("r1", EventKind::StepSucceeded { step: "a".into(), container_id: None });
        assert_eq!(journal.append(&[started("a"), succeeded, started("b")]).await.unwrap(), 3);
        assert_eq!(journal.append(&[started("a"), unchanged("a"), started("b")]).await.unwrap(), 3, "nothing new to journal");
        assert_eq!(journal.append(&[started("c"), unchanged("c")]).await.unwrap(), 5, "a step that had not ended is journalled");
    }

    /// Run records written before the states were typed keep decoding, an unstarted step
    /// (`""`) included.
    #[test]
    fn reads_schema_1_run_records() {
        let v1 = r#"{"v":1,"run_id":"r1","instance":"i","bundle_digest":"d","started_at_unix_ms":0,"state":"running",
            "values_json":"{}","steps":{"a":{"state":"running","lines":4},"b":{"state":"","lines":0},"c":{"state":"done","lines":1}}}"#;
        let run: RunRecord = serde_json::from_str(v1).unwrap();
        assert_eq!(run.state, RunState::Running);
        let states: Vec<StepState> = run.steps.values().map(|step| step.state).collect();
        assert_eq!(states, [StepState::Running, StepState::Unstarted, StepState::Done]);
        assert!(!run.announced);
    }

    #[test]
    fn a_newer_journal_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("meta").unwrap().insert("schema", &(SCHEMA_VERSION + 1).to_be_bytes()).unwrap();
            db.flush().unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let err = loop {
            match Journal::open(dir.path()) {
                Err(err) if format!("{err:#}").contains("schema version") => break err,
                Ok(_) => panic!("a newer journal opened"),
                Err(_) if std::time::Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_millis(20)),
                Err(err) => panic!("{err:#}"),
            }
        };
        assert!(format!("{err:#}").contains("newer than this agent's"), "{err:#}");
    }
}
