//! Property tests of persisting agents' journals, on the in-memory backend and on sled: any
//! interleaving of several agents' batches (one after another, or several at once on threads),
//! replays from an older point after a reconnect, duplicates inside a batch, and reopens of
//! the store, checked after every step against a model kept here.
//!
//! What must hold: every (agent, seq) delivered is stored exactly once, in each agent's order;
//! each run's indexes are contiguous from 0; `persist` returns exactly the events it stored,
//! with their indexes; each agent's cursor is the highest sequence number persisted; and the
//! cursor, which is what the agent is acknowledged, never passes an event not stored.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pmesh_proto::event::{Kind, RunEvent};
use proptest::prelude::*;
use proptest::sample::Index;

use super::memory::MemoryBackend;
use super::*;

const AGENTS: [&str; 3] = ["pc-0", "pc-1", "pc-2"];
const RUNS: [&str; 2] = ["r0", "r1"];
/// How many events each agent's journal holds; batches past it are cut there.
const JOURNAL_LEN: usize = 40;
/// Kept small so each sled case opens a database in a tempdir and still runs in milliseconds.
const CASES: u32 = 48;

/// One consumer's batch: the agent's journal from a point at or before its cursor's next
/// number (a reconnect replays from an older point), with some events repeated in place.
#[derive(Debug, Clone)]
struct Delivery {
    agent_idx: usize,
    back: Index,
    len: usize,
    repeats: Vec<Index>,
}

#[derive(Debug, Clone)]
enum Op {
    Deliver(Delivery),
    /// Several agents' consumers persisting at once (one batch per agent at most).
    Together(Vec<Delivery>),
    /// The master restarts.
    Reopen,
}

fn delivery() -> impl Strategy<Value = Delivery> {
    (0..AGENTS.len(), any::<Index>(), 0..=8usize, prop::collection::vec(any::<Index>(), 0..=2))
        .prop_map(|(agent_idx, back, len, repeats)| Delivery { agent_idx, back, len, repeats })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => delivery().prop_map(Op::Deliver),
        2 => prop::collection::vec(delivery(), 1..=AGENTS.len()).prop_map(|deliveries| {
            // One consumer per agent: the first delivery of each agent.
            let mut seen = BTreeSet::new();
            Op::Together(deliveries.into_iter().filter(|delivery| seen.insert(delivery.agent_idx)).collect())
        }),
        1 => Just(Op::Reopen),
    ]
}

/// Where the store lives between reopens.
enum Backing {
    Memory(Arc<MemoryBackend>),
    Sled(tempfile::TempDir),
}

impl Backing {
    /// The store; for sled, once sled has let go of the directory (a dropped database's
    /// flusher can hold its lock for a moment).
    fn open(&self) -> Store {
        match self {
            Backing::Memory(backend) => Store::with_backend(backend.clone()).expect("open the store"),
            Backing::Sled(dir) => {
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    match Store::open(dir.path()) {
                        Ok(store) => return store,
                        Err(err) if Instant::now() > deadline => panic!("reopening the store: {err:#}"),
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            }
        }
    }
}

/// What the master must have stored.
struct Model {
    /// Each agent's journal: the run of each event (index `seq - 1`).
    journals: Vec<Vec<usize>>,
    /// Each agent's highest sequence number persisted.
    cursors: Vec<u64>,
    /// Every (agent, seq) persisted.
    stored: BTreeSet<(usize, u64)>,
}

fn stored_event(agent_idx: usize, seq: u64, run_idx: usize) -> StoredEvent {
    let agent = AGENTS[agent_idx];
    let event = RunEvent { step: "s".into(), text: format!("{agent}-{seq}"), ..RunEvent::new(seq, RUNS[run_idx], 0, Kind::Log) };
    StoredEvent { v: 1, agent: agent.into(), event }
}

impl Model {
    /// The batch a delivery carries, as sequence numbers in order.
    fn batch(&self, delivery: &Delivery) -> Vec<u64> {
        let cursor = self.cursors[delivery.agent_idx];
        let from = cursor + 1 - delivery.back.index(cursor as usize + 1) as u64;
        let to = (from + delivery.len as u64).min(JOURNAL_LEN as u64 + 1);
        let mut seqs: Vec<u64> = (from..to).collect();
        if !seqs.is_empty() {
            for repeat in &delivery.repeats {
                let at = repeat.index(seqs.len());
                seqs.insert(at, seqs[at]);
            }
        }
        seqs
    }

    fn events(&self, agent_idx: usize, seqs: &[u64]) -> Vec<StoredEvent> {
        seqs.iter().map(|seq| stored_event(agent_idx, *seq, self.journals[agent_idx][*seq as usize - 1])).collect()
    }

    /// What persisting `seqs` must keep: the new ones, once each, in order; moves the model.
    fn persisted(&mut self, agent_idx: usize, seqs: &[u64]) -> Vec<u64> {
        let mut new: Vec<u64> = seqs.iter().copied().filter(|seq| *seq > self.cursors[agent_idx]).collect();
        new.dedup();
        if let Some(last) = new.last() {
            self.cursors[agent_idx] = *last;
        }
        self.stored.extend(new.iter().map(|seq| (agent_idx, *seq)));
        new
    }
}

/// `persist`'s answer as (agent, seq, run, index), checked against what the model keeps.
fn check_kept(model: &mut Model, agent_idx: usize, seqs: &[u64], kept: &[(u64, StoredEvent)]) -> Result<(), TestCaseError> {
    let wanted = model.persisted(agent_idx, seqs);
    let got: Vec<u64> = kept.iter().map(|(_, event)| event.event.seq).collect();
    prop_assert_eq!(got, wanted, "{} persists the new events of {:?}, once each", AGENTS[agent_idx], seqs);
    prop_assert!(kept.iter().all(|(_, event)| event.agent == AGENTS[agent_idx]));
    Ok(())
}

fn apply(store: &Store, model: &mut Model, op: &Op, answered: &mut BTreeMap<(String, u64), u64>) -> Result<(), TestCaseError> {
    let deliveries: Vec<Delivery> = match op {
        Op::Deliver(delivery) => vec![delivery.clone()],
        Op::Together(deliveries) => deliveries.clone(),
        Op::Reopen => return Ok(()),
    };
    let batches: Vec<(usize, Vec<u64>)> = deliveries.iter().map(|delivery| (delivery.agent_idx, model.batch(delivery))).collect();
    let events: Vec<Vec<StoredEvent>> = batches.iter().map(|(agent_idx, seqs)| model.events(*agent_idx, seqs)).collect();
    let results: Vec<Vec<(u64, StoredEvent)>> = std::thread::scope(|scope| {
        let persists: Vec<_> = batches
            .iter()
            .zip(&events)
            .map(|((agent_idx, _), batch)| scope.spawn(move || store.persist(AGENTS[*agent_idx], batch).expect("persist")))
            .collect();
        persists.into_iter().map(|persist| persist.join().expect("a persisting thread")).collect()
    });
    for ((agent_idx, seqs), kept) in batches.iter().zip(&results) {
        check_kept(model, *agent_idx, seqs, kept)?;
        for (index, event) in kept {
            answered.insert((event.event.run_id.clone(), *index), event.event.seq);
        }
    }
    Ok(())
}

/// What must hold after every step. `answered` is every (run, index) `persist` returned, with
/// the sequence number it gave that index.
fn check(store: &Store, model: &Model, answered: &BTreeMap<(String, u64), u64>) -> Result<(), TestCaseError> {
    let mut found = BTreeSet::new();
    for run in RUNS {
        let events = store.run_events(run, 0).expect("run events");
        let indexes: Vec<u64> = events.iter().map(|(index, _)| *index).collect();
        prop_assert_eq!(indexes, (0..events.len() as u64).collect::<Vec<_>>(), "run {}'s indexes are contiguous from 0", run);
        let mut last_seq = BTreeMap::new();
        for (index, event) in &events {
            let agent_idx = AGENTS.iter().position(|agent| *agent == event.agent).expect("a known agent");
            prop_assert_eq!(&event.event.run_id, run);
            prop_assert_eq!(&event.event.text, &format!("{}-{}", event.agent, event.event.seq));
            prop_assert!(found.insert((agent_idx, event.event.seq)), "{}'s event {} is stored twice", event.agent, event.event.seq);
            let previous = last_seq.insert(agent_idx, event.event.seq).unwrap_or(0);
            prop_assert!(previous < event.event.seq, "{}'s events are stored in its order", event.agent);
            prop_assert_eq!(answered.get(&(run.to_owned(), *index)), Some(&event.event.seq), "persist answered index {} of {}", index, run);
        }
    }
    prop_assert_eq!(&found, &model.stored, "every (agent, seq) delivered is stored exactly once");
    prop_assert_eq!(answered.len(), found.len(), "persist answered each stored event once");
    for (agent_idx, agent) in AGENTS.iter().enumerate() {
        let cursor = store.cursor(agent).expect("cursor");
        let highest = found.iter().filter(|(stored_by, _)| *stored_by == agent_idx).map(|(_, seq)| *seq).max().unwrap_or(0);
        prop_assert_eq!(cursor, highest, "{}'s cursor is the highest number persisted", agent);
        // What the agent would be acknowledged (the cursor) passes no event left unstored.
        for seq in 1..=cursor {
            prop_assert!(found.contains(&(agent_idx, seq)), "{} is acknowledged {} but its event {} is not stored", agent, cursor, seq);
        }
    }
    Ok(())
}

fn run_case(backing: Backing, journals: Vec<Vec<usize>>, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut model = Model { journals, cursors: vec![0; AGENTS.len()], stored: BTreeSet::new() };
    let mut answered = BTreeMap::new();
    let mut store = backing.open();
    for op in ops {
        if let Op::Reopen = op {
            drop(store);
            store = backing.open();
        }
        apply(&store, &mut model, op, &mut answered)?;
        check(&store, &model, &answered)?;
    }
    Ok(())
}

fn journals() -> impl Strategy<Value = Vec<Vec<usize>>> {
    prop::collection::vec(prop::collection::vec(0..RUNS.len(), JOURNAL_LEN), AGENTS.len())
}

proptest! {
    // No failure file in the source tree: a case found is kept as a named regression test.
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn in_memory_every_event_is_stored_once_and_the_cursor_follows(journals in journals(), ops in prop::collection::vec(op(), 1..=24)) {
        run_case(Backing::Memory(Arc::new(MemoryBackend::default())), journals, &ops)?;
    }

    #[test]
    fn on_sled_every_event_is_stored_once_and_the_cursor_follows(journals in journals(), ops in prop::collection::vec(op(), 1..=24)) {
        run_case(Backing::Sled(tempfile::tempdir().expect("tempdir")), journals, &ops)?;
    }
}
