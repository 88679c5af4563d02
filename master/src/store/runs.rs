//! Patterns, their signed bundles, runs, their events, and the agents' journal cursors.
//!
//! - A pattern version is immutable: [`Store::put_pattern`] writes its bundle and record in
//!   one transaction on the condition that `NAME@VERSION` is absent.
//! - Events are kept in segments (`Namespace::RunEventSegments`): run id, NUL, the 8-byte
//!   index of the segment's last event → a [`Segment`] of that run's events with consecutive
//!   indexes, in the order the master persisted them: one write per run per persisted batch
//!   rather than per event. `Namespace::RunCounters` holds each run's next index.
//! - `Namespace::Cursors`: agent → the last sequence number persisted from its journal (and
//!   which journal: `cursors`). It
//!   moves in the same transaction as the events, on the condition that it and the runs'
//!   counters still hold what the batch was numbered from, so after any crash the master
//!   resumes exactly after the last event it kept: nothing lost, nothing stored twice.

use std::collections::BTreeMap;

use anyhow::Context;
use pmesh_proto::event::RunOutput;

use super::cursors::Cursor;
use super::records::{PatternRecord, RunRecord, RunState, Segment, StoredEvent};
use super::{decode, encode, AgentState, Namespace, Store, Txn};

/// The key of the segment of `run_id` whose last event has `index`.
pub(super) fn event_key(run_id: &str, index: u64) -> Vec<u8> {
    let mut key = run_id.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&index.to_be_bytes());
    key
}

/// An 8-byte big-endian counter; absent (or malformed) is 0.
fn counter(value: Option<&[u8]>) -> u64 {
    value.and_then(|bytes| bytes.try_into().ok()).map(u64::from_be_bytes).unwrap_or(0)
}

/// A batch numbered in its runs, and the transaction that keeps it.
struct Numbered {
    txn: Txn,
    kept: Vec<(u64, StoredEvent)>,
}

impl Store {
    /// Registers a pattern version with its signed bundle; `Ok(false)` if it was there.
    ///
    /// # Errors
    /// When the version is registered with another digest (versions are immutable), or the
    /// disk fails.
    pub fn put_pattern(&self, record: &PatternRecord, archive: &[u8], signature: &[u8]) -> anyhow::Result<bool> {
        let key = format!("{}@{}", record.name, record.version);
        let mut txn = Txn::default();
        txn.compare(Namespace::Patterns, key.as_bytes(), None)
            .put(Namespace::BundleArchives, record.digest.as_bytes(), archive)
            .put(Namespace::BundleSignatures, record.digest.as_bytes(), signature)
            .put(Namespace::Patterns, key.as_bytes(), encode(record)?);
        if self.backend.commit(&txn)? {
            self.flush()?;
            return Ok(true);
        }
        let existing: PatternRecord = self.get(&key)?.context("a pattern version vanished while it was registered")?;
        if existing.digest == record.digest {
            return Ok(false);
        }
        anyhow::bail!("{key} is registered already with another content ({}); bump the version", existing.digest);
    }

    /// Every registered pattern version.
    ///
    /// # Errors
    /// When the database fails or a record does not decode.
    pub fn patterns(&self) -> anyhow::Result<Vec<PatternRecord>> {
        Ok(self.all()?.into_iter().map(|(_, record)| record).collect())
    }

    /// `NAME@VERSION`, or the highest version of `NAME`.
    ///
    /// # Errors
    /// When the database fails or a record does not decode.
    pub fn find_pattern(&self, reference: &str) -> anyhow::Result<Option<PatternRecord>> {
        if reference.contains('@') {
            return self.get(reference);
        }
        let mut versions: Vec<PatternRecord> = self.patterns()?.into_iter().filter(|pattern| pattern.name == reference).collect();
        versions.sort_by_key(|pattern| semver::Version::parse(&pattern.version).ok());
        Ok(versions.pop())
    }

    /// The signed bundle (archive, signature) of a digest.
    ///
    /// # Errors
    /// When the database fails.
    pub fn bundle(&self, digest: &str) -> anyhow::Result<Option<(Vec<u8>, Vec<u8>)>> {
        match (
            self.backend.get(Namespace::BundleArchives, digest.as_bytes())?,
            self.backend.get(Namespace::BundleSignatures, digest.as_bytes())?,
        ) {
            (Some(archive), Some(signature)) => Ok(Some((archive, signature))),
            _ => Ok(None),
        }
    }

    /// Records a run (and flushes).
    ///
    /// # Errors
    /// When the disk fails; the run is not recorded then, even if the write reached the
    /// database before the disk filled (it is removed when the database is opened again).
    pub fn put_run(&self, run: &RunRecord) -> anyhow::Result<()> {
        self.put(&run.run_id, run)
            .and_then(|()| self.flush())
            .inspect_err(|_| self.backend.forget_on_reopen(Namespace::Runs, run.run_id.as_bytes()))
    }

    /// The run `run_id`.
    ///
    /// # Errors
    /// When the database fails or the record does not decode.
    pub fn run(&self, run_id: &str) -> anyhow::Result<Option<RunRecord>> {
        self.get(run_id)
    }

    /// Every run, by id.
    ///
    /// # Errors
    /// When the database fails or a record does not decode.
    pub fn runs(&self) -> anyhow::Result<Vec<RunRecord>> {
        Ok(self.all()?.into_iter().map(|(_, record)| record).collect())
    }

    /// Applies `change` to a run atomically, if it exists (`change` may run more than once).
    ///
    /// # Errors
    /// When the database fails or the record does not decode.
    pub fn update_run(&self, run_id: &str, change: impl Fn(&mut RunRecord)) -> anyhow::Result<Option<RunRecord>> {
        self.update(run_id, change)
    }

    /// Sets one agent's state in a run, and the outputs it reported, if the run exists.
    ///
    /// # Errors
    /// When the database fails or the record does not decode.
    pub fn set_agent_state(&self, run_id: &str, agent: &str, state: RunState, error: &str, outputs: &[RunOutput]) -> anyhow::Result<()> {
        // Only what an event may carry: a secret output's value never reaches the store.
        let outputs: Vec<RunOutput> = outputs.iter().cloned().map(RunOutput::withheld).collect();
        self.update_run(run_id, |run| {
            run.agents.insert(agent.to_owned(), AgentState { state, error: error.to_owned(), outputs: outputs.clone() });
        })
        .map(drop)
    }

    /// Persists a batch of one agent's events and moves its cursor, in one transaction;
    /// returns the events it kept with their indexes in their runs. Events the cursor is
    /// already past (a replay after a reconnect) are skipped. When another writer moved the
    /// cursor or a run's counter meanwhile (two agents' events for one run), the batch is
    /// numbered again from what they hold now.
    ///
    /// # Errors
    /// When the disk fails; then nothing of the batch is kept.
    pub fn persist(&self, agent: &str, batch: &[StoredEvent]) -> anyhow::Result<Vec<(u64, StoredEvent)>> {
        self.persist_numbered(agent, None, batch)
    }

    /// [`Store::persist`] for a consumer following the agent's journal from `cursor` (the
    /// cursor as it read it, moved by what it persisted since): refused when the stored cursor
    /// is behind it, which happens when the database lost writes that had not reached the
    /// disk (reopened after a full disk). The consumer then follows again from the stored
    /// cursor rather than leave a gap.
    ///
    /// # Errors
    /// As [`Store::persist`], and when the cursor went back.
    pub fn persist_following(&self, agent: &str, cursor: u64, batch: &[StoredEvent]) -> anyhow::Result<Vec<(u64, StoredEvent)>> {
        self.persist_numbered(agent, Some(cursor), batch)
    }

    fn persist_numbered(&self, agent: &str, following: Option<u64>, batch: &[StoredEvent]) -> anyhow::Result<Vec<(u64, StoredEvent)>> {
        loop {
            let Some(numbered) = self.number(agent, following, batch)? else { return Ok(Vec::new()) };
            if self.backend.commit(&numbered.txn)? {
                return Ok(numbered.kept);
            }
        }
    }

    /// The transaction that keeps `batch`'s new events, conditional on the cursor and
    /// counters read here, and the events with their indexes; `None` when nothing is new.
    fn number(&self, agent: &str, following: Option<u64>, batch: &[StoredEvent]) -> anyhow::Result<Option<Numbered>> {
        let stored_cursor = self.backend.get(Namespace::Cursors, agent.as_bytes())?;
        let journal = Cursor::decode(stored_cursor.as_deref());
        let mut cursor = journal.seq;
        if let Some(believed) = following.filter(|believed| *believed > cursor) {
            anyhow::bail!(
                "the stored cursor of {agent} went back from {believed} to {cursor} (writes that had not reached the disk were lost); following again from it"
            );
        }
        let mut txn = Txn::default();
        let mut next_index: BTreeMap<&str, u64> = BTreeMap::new();
        let mut segments: BTreeMap<&str, Segment> = BTreeMap::new();
        let mut kept = Vec::new();
        for event in batch {
            if event.event.seq <= cursor {
                continue;
            }
            let run_id = event.event.run_id.as_str();
            if !next_index.contains_key(run_id) {
                let stored = self.backend.get(Namespace::RunCounters, run_id.as_bytes())?;
                next_index.insert(run_id, counter(stored.as_deref()));
                txn.compare(Namespace::RunCounters, run_id.as_bytes(), stored);
            }
            let index = next_index.get_mut(run_id).expect("the run's counter was read above");
            segments.entry(run_id).or_insert_with(|| Segment { v: 1, first: *index, events: Vec::new() }).events.push(event.clone());
            kept.push((*index, event.clone()));
            *index += 1;
            cursor = event.event.seq;
        }
        if kept.is_empty() {
            return Ok(None);
        }
        txn.compare(Namespace::Cursors, agent.as_bytes(), stored_cursor);
        for (run_id, segment) in &segments {
            let last = segment.first + segment.events.len() as u64 - 1;
            txn.put(Namespace::RunEventSegments, event_key(run_id, last), encode(segment)?);
        }
        for (run_id, index) in &next_index {
            txn.put(Namespace::RunCounters, run_id.as_bytes(), index.to_be_bytes());
        }
        txn.put(Namespace::Cursors, agent.as_bytes(), journal.at(cursor).encode());
        self.fold_instances(agent, &kept, &mut txn)?;
        Ok(Some(Numbered { txn, kept }))
    }

    /// A run's stored events from `from` on, with their indexes.
    ///
    /// # Errors
    /// When the database fails or a segment does not decode.
    pub fn run_events(&self, run_id: &str, from: u64) -> anyhow::Result<Vec<(u64, StoredEvent)>> {
        let mut prefix = run_id.as_bytes().to_vec();
        prefix.push(0);
        let mut found = Vec::new();
        // A segment's key ends with its last index: the first at or after `from` holds `from`.
        for (_, value) in self.backend.scan(Namespace::RunEventSegments, &prefix, &event_key(run_id, from))? {
            let segment: Segment = decode(&value)?;
            let first = segment.first;
            found.extend(
                segment
                    .events
                    .into_iter()
                    .enumerate()
                    .map(|(offset, event)| (first + offset as u64, event))
                    .filter(|(index, _)| *index >= from),
            );
        }
        Ok(found)
    }

    /// Stores written before segments kept one event per key in `run_events`; each run's
    /// events move into one segment (idempotently: a crash midway repeats the same writes).
    pub(super) fn migrate_per_event_records(&self) -> anyhow::Result<()> {
        let legacy = self.backend.scan(Namespace::LegacyRunEvents, b"", b"")?;
        if legacy.is_empty() {
            return Ok(());
        }
        let mut runs: BTreeMap<Vec<u8>, Segment> = BTreeMap::new();
        for (key, value) in &legacy {
            let (run, index) = key.split_at(key.len().saturating_sub(8));
            let index = u64::from_be_bytes(index.try_into().context("an event key")?);
            let run_id = run.strip_suffix(&[0]).context("an event key")?.to_vec();
            runs.entry(run_id).or_insert_with(|| Segment { v: 1, first: index, events: Vec::new() }).events.push(decode(value)?);
        }
        for (run_id, segment) in &runs {
            let run_id = String::from_utf8_lossy(run_id);
            let key = event_key(&run_id, segment.first + segment.events.len() as u64 - 1);
            self.backend.put(Namespace::RunEventSegments, &key, &encode(segment)?)?;
        }
        self.flush()?;
        for (key, _) in &legacy {
            self.backend.remove(Namespace::LegacyRunEvents, key)?;
        }
        self.flush()
    }
}
