//! The agent's durable event journal (sled, `DATA_DIR/journal`).
//!
//! Every event gets a gap-free, agent-wide sequence number and is written, and flushed, before
//! anyone can read it: watchers only ever see journalled events, so a master that resumes from
//! the last sequence number it persisted misses nothing and sees nothing twice. The master
//! acknowledges what it has persisted, and the journal drops those events, so it cannot grow
//! without bound while the master is reachable.
//!
//! Records are this module's own versioned types (`"v": 1`), not the wire types. They are kept
//! in segments, one per appended batch: the tree `segments` maps the last sequence number of a
//! batch to its records (a JSON array). One sled write per batch rather than per event is what
//! lets a chatty step's output through at tens of thousands of lines a second; an
//! acknowledgement drops whole segments, and readers skip what they have already seen.

use std::path::Path;
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::executor::events::{Event, EventKind, ImageAction, Outcome};

/// One journalled event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalRecord {
    pub v: u32,
    pub seq: u64,
    pub run_id: String,
    pub at_unix_ms: i64,
    pub kind: RecordKind,
    #[serde(default)]
    pub step: String,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub percent: f64,
    #[serde(default)]
    pub exit_code: Option<i64>,
    #[serde(default)]
    pub tail: Vec<String>,
    #[serde(default)]
    pub attempt: u32,
    #[serde(default)]
    pub instance: String,
    #[serde(default)]
    pub pattern: String,
    /// A transfer's bytes so far, its total and its rate (bytes per second).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<TransferRecord>,
}

/// The numbers of an artifact transfer, as journalled.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TransferRecord {
    pub done: u64,
    pub total: u64,
    pub rate: f64,
    #[serde(default)]
    pub eta_seconds: Option<u64>,
}

/// The kinds of journalled events, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    RunStarted,
    ImageReady,
    StepStarted,
    StepUnchanged,
    Log,
    Progress,
    StepRetrying,
    StepSucceeded,
    StepFailed,
    StepSkipped,
    RunFinished,
}

/// What the agent remembers of a run, so a retried start starts nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub v: u32,
    pub run_id: String,
    pub instance: String,
    pub bundle_digest: String,
    pub started_at_unix_ms: i64,
    /// `running`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    /// The supplied values, kept so a run interrupted by an agent restart can be resumed.
    /// The data directory is private to the agent (0700 under systemd).
    #[serde(default)]
    pub values_json: String,
    /// Each step's progress, as journalled.
    #[serde(default)]
    pub steps: std::collections::BTreeMap<String, StepProgress>,
}

/// How far a step got, from the journalled events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepProgress {
    /// `running`, `done` or `failed`.
    pub state: String,
    /// Output lines journalled so far.
    pub lines: u64,
}

fn record(seq: u64, event: &Event) -> JournalRecord {
    let at_unix_ms = event.at.duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_millis() as i64).unwrap_or(0);
    let mut out = JournalRecord {
        v: 1,
        seq,
        run_id: event.run_id.clone(),
        at_unix_ms,
        kind: RecordKind::Log,
        step: String::new(),
        text: String::new(),
        percent: 0.0,
        exit_code: None,
        tail: Vec::new(),
        attempt: 0,
        instance: String::new(),
        pattern: String::new(),
        transfer: None,
    };
    match &event.kind {
        EventKind::RunStarted { instance, pattern, n_steps } => {
            out.kind = RecordKind::RunStarted;
            out.instance = instance.clone();
            out.pattern = pattern.clone();
            out.text = format!("{n_steps} steps");
        }
        EventKind::ImageReady { reference, action } => {
            out.kind = RecordKind::ImageReady;
            let how = match action {
                ImageAction::Present => "present",
                ImageAction::Pulled => "pulled",
                ImageAction::Loaded => "loaded",
                ImageAction::Built => "built",
            };
            out.text = format!("{reference} {how}");
        }
        EventKind::StepStarted { step, attempt } => {
            out.kind = RecordKind::StepStarted;
            out.step = step.clone();
            out.attempt = *attempt;
        }
        EventKind::StepUnchanged { step, .. } => {
            out.kind = RecordKind::StepUnchanged;
            out.step = step.clone();
        }
        EventKind::Log { step, line } => {
            out.kind = RecordKind::Log;
            out.step = step.clone();
            out.text = line.clone();
        }
        EventKind::Progress { step, percent } => {
            out.kind = RecordKind::Progress;
            out.step = step.clone();
            out.percent = f64::from(*percent);
        }
        EventKind::Transfer { step, transfer } => {
            out.kind = RecordKind::Progress;
            out.step = step.clone();
            if transfer.total > 0 {
                out.percent = transfer.done as f64 * 100.0 / transfer.total as f64;
            }
            let progress =
                pmesh_rt::fetch::Progress { done: transfer.done, total: Some(transfer.total), rate: transfer.rate, eta: transfer.eta };
            out.text = progress.to_string();
            out.transfer = Some(TransferRecord {
                done: transfer.done,
                total: transfer.total,
                rate: transfer.rate,
                eta_seconds: transfer.eta.map(|eta| eta.as_secs()),
            });
        }
        EventKind::StepRetrying { step, attempt, reason } => {
            out.kind = RecordKind::StepRetrying;
            out.step = step.clone();
            out.attempt = *attempt;
            out.text = reason.clone();
        }
        EventKind::StepSucceeded { step, .. } => {
            out.kind = RecordKind::StepSucceeded;
            out.step = step.clone();
        }
        EventKind::StepFailed { step, reason, exit_code, tail } => {
            out.kind = RecordKind::StepFailed;
            out.step = step.clone();
            out.text = reason.clone();
            out.exit_code = *exit_code;
            out.tail = tail.clone();
        }
        EventKind::StepSkipped { step, reason } => {
            out.kind = RecordKind::StepSkipped;
            out.step = step.clone();
            out.text = reason.clone();
        }
        EventKind::RunFinished { outcome } => {
            out.kind = RecordKind::RunFinished;
            out.text = outcome_name(*outcome).to_owned();
        }
    }
    out
}

/// `succeeded`, `failed` or `cancelled`.
pub fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Succeeded => "succeeded",
        Outcome::Failed => "failed",
        Outcome::Cancelled => "cancelled",
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
    /// When sled cannot open it (another agent process holds it) or a record is damaged.
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

    /// Appends `batch`, flushes it to disk, then tells watchers. Returns the last sequence
    /// number written.
    ///
    /// # Errors
    /// When the disk fails; nothing of the batch is announced then.
    pub async fn append(&self, batch: &[Event]) -> anyhow::Result<u64> {
        let last = {
            let mut next = self.next_seq.lock().expect("journal lock poisoned only if an append panicked");
            if batch.is_empty() {
                return Ok(*next - 1);
            }
            let records: Vec<JournalRecord> =
                batch.iter().enumerate().map(|(offset, event)| record(*next + offset as u64, event)).collect();
            let last = *next + batch.len() as u64 - 1;
            self.segments.insert(last.to_be_bytes(), serde_json::to_vec(&records)?)?;
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

    /// Journalled events with `seq >= from`, oldest first: whole segments until at least
    /// `limit` events are gathered.
    ///
    /// # Errors
    /// When a record is damaged.
    pub fn read_from(&self, from: u64, limit: usize) -> anyhow::Result<Vec<JournalRecord>> {
        let mut records = Vec::new();
        // A segment's key is its last number: the first key at or after `from` holds `from`.
        for entry in self.segments.range(from.to_be_bytes()..) {
            let (_, value) = entry?;
            let segment: Vec<JournalRecord> = serde_json::from_slice(&value).context("a journal segment does not decode")?;
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
    /// master). Returns the oldest sequence number still held.
    ///
    /// # Errors
    /// When the disk fails.
    pub fn trim(&self, up_to: u64) -> anyhow::Result<u64> {
        let mut batch = sled::Batch::default();
        for key in self.segments.range(..=up_to.to_be_bytes()).keys() {
            batch.remove(key?);
        }
        self.segments.apply_batch(batch)?;
        self.db.open_tree("meta")?.fetch_and_update("trimmed_up_to", |old| {
            let old = old.map(seq_of).unwrap_or(0);
            Some(old.max(up_to).to_be_bytes().to_vec())
        })?;
        match self.segments.first()? {
            Some((_, value)) => {
                let segment: Vec<JournalRecord> = serde_json::from_slice(&value).context("a journal segment does not decode")?;
                Ok(segment.first().map(|record| record.seq).unwrap_or(up_to + 1))
            }
            None => Ok(up_to + 1),
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

    /// Folds a batch of events into their runs' step progress.
    ///
    /// # Errors
    /// When the disk fails.
    pub fn record_progress(&self, batch: &[Event]) -> anyhow::Result<()> {
        let mut touched: std::collections::BTreeMap<String, RunRecord> = std::collections::BTreeMap::new();
        for event in batch {
            let run = match touched.get_mut(&event.run_id) {
                Some(run) => run,
                None => {
                    let Some(run) = self.run(&event.run_id)? else { continue };
                    touched.entry(event.run_id.clone()).or_insert(run)
                }
            };
            match &event.kind {
                EventKind::StepStarted { step, .. } => run.steps.entry(step.clone()).or_default().state = "running".into(),
                EventKind::Log { step, .. } => run.steps.entry(step.clone()).or_default().lines += 1,
                EventKind::StepSucceeded { step, .. } | EventKind::StepUnchanged { step, .. } => {
                    run.steps.entry(step.clone()).or_default().state = "done".into();
                }
                EventKind::StepFailed { step, .. } | EventKind::StepSkipped { step, .. } => {
                    run.steps.entry(step.clone()).or_default().state = "failed".into();
                }
                _ => {}
            }
        }
        for (run_id, run) in touched {
            self.runs.insert(run_id, serde_json::to_vec(&run)?)?;
        }
        Ok(())
    }

    /// Runs that were running when the agent stopped.
    ///
    /// # Errors
    /// When a record is damaged.
    pub fn interrupted_runs(&self) -> anyhow::Result<Vec<RunRecord>> {
        let mut interrupted = Vec::new();
        for value in self.runs.iter().values() {
            let run: RunRecord = serde_json::from_slice(&value?).context("a run record does not decode")?;
            if run.state == "running" {
                interrupted.push(run);
            }
        }
        Ok(interrupted)
    }

    /// Sets a run's state.
    ///
    /// # Errors
    /// When the disk fails.
    pub fn set_run_state(&self, run_id: &str, state: &str) -> anyhow::Result<()> {
        if let Some(mut run) = self.run(run_id)? {
            run.state = state.to_owned();
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
    let records: Vec<JournalRecord> = legacy
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

fn seq_of(bytes: &[u8]) -> u64 {
    bytes.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    /// Opens the journal in `dir` once sled has let go of it: a dropped database's flusher
    /// thread can hold the directory's lock for a moment (until its next tick).
    fn reopen(dir: &Path) -> Journal {
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
        let run = RunRecord {
            v: 1,
            run_id: "r1".into(),
            instance: "i".into(),
            bundle_digest: "d".into(),
            started_at_unix_ms: 0,
            state: "running".into(),
            values_json: "{}".into(),
            steps: Default::default(),
        };
        assert!(journal.insert_run(&run).unwrap());
        assert!(!journal.insert_run(&run).unwrap());
        journal.set_run_state("r1", "succeeded").unwrap();
        assert_eq!(journal.run("r1").unwrap().unwrap().state, "succeeded");
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
        let record: JournalRecord = serde_json::from_str(v1).unwrap();
        assert_eq!(record.kind, RecordKind::StepFailed);
        assert_eq!(record.exit_code, Some(1));
    }
}
