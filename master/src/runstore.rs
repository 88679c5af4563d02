//! Patterns, runs and their events in the master's sled database.
//!
//! - `patterns`: `NAME@VERSION` → [`PatternRecord`]; `bundle_archives` and
//!   `bundle_signatures`: digest → bytes.
//! - `runs`: run id → [`RunRecord`].
//! - `run_event_segments`: run id, NUL, the 8-byte index of the segment's last event → a
//!   [`Segment`] of that run's events with consecutive indexes, in the order the master
//!   persisted them: one sled write per run per persisted batch rather than per event;
//!   `run_counters` holds each run's next index. (Stores written one event per key, in
//!   `run_events`, are moved into segments when opened.)
//! - `cursors`: agent → the last sequence number persisted from its journal. It moves in the
//!   same transaction as the event, so after any crash the master resumes exactly after the
//!   last event it kept: nothing lost, nothing stored twice.
//!
//! Records are versioned (`"v": 1`) and are not the wire types.

use std::collections::BTreeMap;

use anyhow::Context;
use pmesh_proto::event::{AgentEvent, EventError, RunEvent};
use pmesh_proto::v1;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

/// A registered pattern version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatternRecord {
    pub v: u32,
    pub name: String,
    pub version: String,
    pub digest: String,
    pub description: String,
    pub category: String,
    pub pushed_at: i64,
}

/// A run across agents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub v: u32,
    pub run_id: String,
    /// `NAME@VERSION`.
    pub pattern: String,
    pub digest: String,
    pub instance: String,
    pub created_at: i64,
    /// Agent → state (`pending`, `running`, `succeeded`, `failed`, `cancelled`, `unreachable`).
    pub agents: BTreeMap<String, AgentState>,
}

/// One agent's part of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentState {
    pub state: String,
    #[serde(default)]
    pub error: String,
}

impl RunRecord {
    /// `running` until every agent finished; then `succeeded`, or the worst outcome.
    pub fn overall(&self) -> &'static str {
        let states: Vec<&str> = self.agents.values().map(|agent| agent.state.as_str()).collect();
        if states.iter().any(|state| matches!(*state, "pending" | "running")) {
            "running"
        } else if states.contains(&"unreachable") {
            "unreachable"
        } else if states.contains(&"failed") {
            "failed"
        } else if states.contains(&"cancelled") {
            "cancelled"
        } else {
            "succeeded"
        }
    }
}

/// An event as the master keeps it: the mesh's event record and the agent that journalled
/// it. (Records written before the kind was typed hold its protocol number, and a transfer as
/// a triple; [`RunEvent`] reads both.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub v: u32,
    pub agent: String,
    #[serde(flatten)]
    pub event: RunEvent,
}

impl StoredEvent {
    /// An agent's event as it arrived on the wire.
    ///
    /// # Errors
    /// When this build cannot represent it (a kind from a newer agent).
    pub fn from_wire(agent: &str, event: v1::RunEvent) -> Result<StoredEvent, EventError> {
        Ok(StoredEvent { v: 1, agent: agent.to_owned(), event: event.try_into()? })
    }

    /// The event for a watcher, at `index` among its run's events.
    pub fn into_wire(self, index: u64) -> v1::AgentRunEvent {
        AgentEvent { agent: self.agent, index, event: self.event }.into()
    }
}

/// Consecutive events of one run, as persisted together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub v: u32,
    /// The index of the first event.
    pub first: u64,
    pub events: Vec<StoredEvent>,
}

/// The run-side trees.
#[derive(Clone)]
pub struct RunStore {
    db: sled::Db,
    patterns: sled::Tree,
    archives: sled::Tree,
    signatures: sled::Tree,
    runs: sled::Tree,
    events: sled::Tree,
    counters: sled::Tree,
    cursors: sled::Tree,
    flusher: pmesh_rt::durable::GroupFlush,
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> anyhow::Result<T> {
    serde_json::from_slice(bytes).context("a database record does not decode; the database may be damaged")
}

fn event_key(run_id: &str, index: u64) -> Vec<u8> {
    let mut key = run_id.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&index.to_be_bytes());
    key
}

impl RunStore {
    /// Opens the trees in the master's database.
    ///
    /// # Errors
    /// When sled fails.
    pub fn open(db: &sled::Db) -> anyhow::Result<RunStore> {
        Ok(RunStore {
            patterns: db.open_tree("patterns")?,
            archives: db.open_tree("bundle_archives")?,
            signatures: db.open_tree("bundle_signatures")?,
            runs: db.open_tree("runs")?,
            events: {
                let segments = db.open_tree("run_event_segments")?;
                migrate_per_event_records(db, &segments)?;
                segments
            },
            counters: db.open_tree("run_counters")?,
            cursors: db.open_tree("cursors")?,
            flusher: {
                let db = db.clone();
                pmesh_rt::durable::GroupFlush::new(move || db.flush().map(drop).map_err(std::io::Error::other))
            },
            db: db.clone(),
        })
    }

    /// Registers a pattern version with its signed bundle; `Ok(false)` if it was there.
    ///
    /// # Errors
    /// When the version is registered with another digest (versions are immutable), or the
    /// disk fails.
    pub fn put_pattern(&self, record: &PatternRecord, archive: &[u8], signature: &[u8]) -> anyhow::Result<bool> {
        let key = format!("{}@{}", record.name, record.version);
        if let Some(existing) = self.patterns.get(&key)? {
            let existing: PatternRecord = decode(&existing)?;
            if existing.digest == record.digest {
                return Ok(false);
            }
            anyhow::bail!("{key} is registered already with another content ({}); bump the version", existing.digest);
        }
        self.archives.insert(&record.digest, archive)?;
        self.signatures.insert(&record.digest, signature)?;
        self.patterns.insert(key, serde_json::to_vec(record)?)?;
        self.db.flush()?;
        Ok(true)
    }

    pub fn patterns(&self) -> anyhow::Result<Vec<PatternRecord>> {
        self.patterns.iter().values().map(|value| decode(&value?)).collect()
    }

    /// `NAME@VERSION`, or the highest version of `NAME`.
    pub fn find_pattern(&self, reference: &str) -> anyhow::Result<Option<PatternRecord>> {
        if reference.contains('@') {
            return self.patterns.get(reference)?.map(|value| decode(&value)).transpose();
        }
        let mut versions: Vec<PatternRecord> = self.patterns()?.into_iter().filter(|pattern| pattern.name == reference).collect();
        versions.sort_by_key(|pattern| semver::Version::parse(&pattern.version).ok());
        Ok(versions.pop())
    }

    /// The signed bundle of a digest.
    pub fn bundle(&self, digest: &str) -> anyhow::Result<Option<(Vec<u8>, Vec<u8>)>> {
        match (self.archives.get(digest)?, self.signatures.get(digest)?) {
            (Some(archive), Some(signature)) => Ok(Some((archive.to_vec(), signature.to_vec()))),
            _ => Ok(None),
        }
    }

    pub fn put_run(&self, run: &RunRecord) -> anyhow::Result<()> {
        self.runs.insert(&run.run_id, serde_json::to_vec(run)?)?;
        self.db.flush()?;
        Ok(())
    }

    pub fn run(&self, run_id: &str) -> anyhow::Result<Option<RunRecord>> {
        self.runs.get(run_id)?.map(|value| decode(&value)).transpose()
    }

    pub fn runs(&self) -> anyhow::Result<Vec<RunRecord>> {
        self.runs.iter().values().map(|value| decode(&value?)).collect()
    }

    /// Sets one agent's state in a run.
    pub fn set_agent_state(&self, run_id: &str, agent: &str, state: &str, error: &str) -> anyhow::Result<()> {
        self.runs.fetch_and_update(run_id, |old| {
            let mut run: RunRecord = serde_json::from_slice(old?).ok()?;
            run.agents.insert(agent.to_owned(), AgentState { state: state.to_owned(), error: error.to_owned() });
            serde_json::to_vec(&run).ok()
        })?;
        Ok(())
    }

    /// The last sequence number persisted from `agent`'s journal (0 for none).
    pub fn cursor(&self, agent: &str) -> anyhow::Result<u64> {
        Ok(self.cursors.get(agent)?.and_then(|value| value.as_ref().try_into().ok()).map(u64::from_be_bytes).unwrap_or(0))
    }

    /// Persists a batch of one agent's events and moves its cursor, in one transaction;
    /// returns the events it kept with their indexes in their runs. Events the cursor is
    /// already past (a replay after a reconnect) are skipped.
    ///
    /// # Errors
    /// When the disk fails; then nothing of the batch is kept.
    pub fn persist(&self, agent: &str, batch: &[StoredEvent]) -> anyhow::Result<Vec<(u64, StoredEvent)>> {
        let result = (&self.events, &self.counters, &self.cursors).transaction(|(events, counters, cursors)| {
            let mut cursor =
                cursors.get(agent.as_bytes())?.and_then(|value| value.as_ref().try_into().ok()).map(u64::from_be_bytes).unwrap_or(0);
            let mut next_index: BTreeMap<&str, u64> = BTreeMap::new();
            let mut segments: BTreeMap<&str, Segment> = BTreeMap::new();
            let mut kept = Vec::new();
            for event in batch {
                if event.event.seq <= cursor {
                    continue;
                }
                let run_id = event.event.run_id.as_str();
                let index = match next_index.get_mut(run_id) {
                    Some(index) => index,
                    None => {
                        let stored = counters
                            .get(run_id.as_bytes())?
                            .and_then(|value| value.as_ref().try_into().ok())
                            .map(u64::from_be_bytes)
                            .unwrap_or(0);
                        next_index.entry(run_id).or_insert(stored)
                    }
                };
                segments.entry(run_id).or_insert_with(|| Segment { v: 1, first: *index, events: Vec::new() }).events.push(event.clone());
                kept.push((*index, event.clone()));
                *index += 1;
                cursor = event.event.seq;
            }
            for (run_id, segment) in &segments {
                let last = segment.first + segment.events.len() as u64 - 1;
                let encoded = serde_json::to_vec(segment).map_err(|err| ConflictableTransactionError::Abort(anyhow::Error::from(err)))?;
                events.insert(event_key(run_id, last), encoded)?;
            }
            for (run_id, index) in &next_index {
                counters.insert(run_id.as_bytes(), &index.to_be_bytes())?;
            }
            cursors.insert(agent.as_bytes(), &cursor.to_be_bytes())?;
            Ok::<_, ConflictableTransactionError<anyhow::Error>>(kept)
        });
        match result {
            Ok(kept) => Ok(kept),
            Err(TransactionError::Abort(err)) => Err(err),
            Err(TransactionError::Storage(err)) => Err(err.into()),
        }
    }

    /// Makes persisted events durable; concurrent callers share one flush.
    pub async fn flush(&self) -> anyhow::Result<()> {
        self.flusher.flush().await
    }

    /// A run's stored events from `from` on, with their indexes.
    pub fn run_events(&self, run_id: &str, from: u64) -> anyhow::Result<Vec<(u64, StoredEvent)>> {
        let mut prefix = run_id.as_bytes().to_vec();
        prefix.push(0);
        let mut found = Vec::new();
        // A segment's key ends with its last index: the first at or after `from` holds `from`.
        for entry in self.events.range(event_key(run_id, from)..) {
            let (key, value) = entry?;
            if !key.starts_with(&prefix) {
                break;
            }
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
}

/// Stores written before segments kept one event per key in `run_events`; each run's events
/// move into one segment (idempotently: a crash midway repeats the same writes).
fn migrate_per_event_records(db: &sled::Db, segments: &sled::Tree) -> anyhow::Result<()> {
    let legacy = db.open_tree("run_events")?;
    if legacy.is_empty() {
        return Ok(());
    }
    let mut runs: BTreeMap<Vec<u8>, Segment> = BTreeMap::new();
    for entry in legacy.iter() {
        let (key, value) = entry?;
        let (run, index) = key.split_at(key.len().saturating_sub(8));
        let index = u64::from_be_bytes(index.try_into().context("an event key")?);
        let run_id = run.strip_suffix(&[0]).context("an event key")?.to_vec();
        runs.entry(run_id).or_insert_with(|| Segment { v: 1, first: index, events: Vec::new() }).events.push(decode(&value)?);
    }
    for (run_id, segment) in &runs {
        let run_id = String::from_utf8_lossy(run_id);
        segments.insert(event_key(&run_id, segment.first + segment.events.len() as u64 - 1), serde_json::to_vec(segment)?)?;
    }
    db.flush()?;
    legacy.clear()?;
    db.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use pmesh_proto::event::Kind;

    use super::*;

    fn event(agent: &str, seq: u64) -> StoredEvent {
        let event = RunEvent { step: "s".into(), text: format!("{agent}-{seq}"), ..RunEvent::new(seq, "r1", 0, Kind::Log) };
        StoredEvent { v: 1, agent: agent.into(), event }
    }

    #[test]
    fn events_are_kept_once_in_persist_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let store = RunStore::open(&db).unwrap();
        let indexes = |kept: Vec<(u64, StoredEvent)>| kept.into_iter().map(|(index, event)| (index, event.event.text)).collect::<Vec<_>>();
        assert_eq!(indexes(store.persist("a", &[event("a", 1)]).unwrap()), [(0, "a-1".to_owned())]);
        assert_eq!(indexes(store.persist("b", &[event("b", 1)]).unwrap()), [(1, "b-1".to_owned())]);
        assert_eq!(
            indexes(store.persist("a", &[event("a", 1), event("a", 2), event("a", 3)]).unwrap()),
            [(2, "a-2".to_owned()), (3, "a-3".to_owned())],
            "a replayed event is not stored twice"
        );
        assert_eq!(store.cursor("a").unwrap(), 3);
        let texts: Vec<String> = store.run_events("r1", 1).unwrap().into_iter().map(|(_, event)| event.event.text).collect();
        assert_eq!(texts, ["b-1", "a-2", "a-3"]);
        let indexes: Vec<u64> = store.run_events("r1", 3).unwrap().into_iter().map(|(index, _)| index).collect();
        assert_eq!(indexes, [3], "a read from inside a segment starts at its index");
    }

    /// A store written one event per key (before segments) reads the same after an upgrade,
    /// and its runs' numbering continues.
    #[test]
    fn per_event_records_are_migrated_into_segments() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        {
            let legacy = db.open_tree("run_events").unwrap();
            let counters = db.open_tree("run_counters").unwrap();
            for (index, seq) in [(0u64, 1u64), (1, 2)] {
                legacy.insert(event_key("r1", index), serde_json::to_vec(&event("a", seq)).unwrap()).unwrap();
            }
            counters.insert("r1", &2u64.to_be_bytes()).unwrap();
            db.open_tree("cursors").unwrap().insert("a", &2u64.to_be_bytes()).unwrap();
        }
        let store = RunStore::open(&db).unwrap();
        let texts: Vec<(u64, String)> =
            store.run_events("r1", 0).unwrap().into_iter().map(|(index, event)| (index, event.event.text)).collect();
        assert_eq!(texts, [(0, "a-1".to_owned()), (1, "a-2".to_owned())]);
        assert_eq!(store.persist("a", &[event("a", 3)]).unwrap()[0].0, 2);
        assert!(db.open_tree("run_events").unwrap().is_empty());
    }

    #[test]
    fn versions_are_immutable_and_the_newest_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let store = RunStore::open(&db).unwrap();
        let record = |version: &str, digest: &str| PatternRecord {
            v: 1,
            name: "dns".into(),
            version: version.into(),
            digest: digest.into(),
            description: String::new(),
            category: "shared-service".into(),
            pushed_at: 0,
        };
        assert!(store.put_pattern(&record("1.0.0", "d1"), b"a", b"s").unwrap());
        assert!(!store.put_pattern(&record("1.0.0", "d1"), b"a", b"s").unwrap());
        assert!(store.put_pattern(&record("1.0.0", "d2"), b"b", b"s").is_err());
        assert!(store.put_pattern(&record("1.10.0", "d3"), b"c", b"s").unwrap());
        assert!(store.put_pattern(&record("1.9.0", "d4"), b"d", b"s").unwrap());
        assert_eq!(store.find_pattern("dns").unwrap().unwrap().version, "1.10.0");
        assert_eq!(store.find_pattern("dns@1.9.0").unwrap().unwrap().digest, "d4");
    }
}
