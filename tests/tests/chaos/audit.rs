//! What a round left behind, counted: from the events the master stored (`pmesh runs watch ID
//! -o json`) and from Docker. Each finding is counted under one of four heads and described in
//! one line, so a failed round says exactly what went wrong and where.
//!
//! - lost: a gap in an agent's sequence numbers (over every event of every run so far: the
//!   journal numbers agent-wide), a line a step prints that never arrived, a lifecycle event
//!   (run started/finished, step started/succeeded) missing;
//! - duplicated: an (agent, seq) stored twice, a line of a step reported twice, a lifecycle
//!   event reported twice, a line no step prints;
//! - orphans: two containers for one step of an instance, a container still running once its
//!   run ended, anything carrying the instance's labels left after destroy;
//! - wrong final states: a run, or an agent's part of it, that did not end `succeeded`.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

/// The pattern's steps, and how many lines each prints (tests/patterns/chaos).
pub const STEPS: [&str; 4] = ["prepare", "left", "right", "finish"];

/// Counts of one round, or of all of them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub lost: usize,
    pub duplicated: usize,
    pub orphans: usize,
    pub wrong_states: usize,
}

impl Counts {
    pub fn add(&mut self, other: Counts) {
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.orphans += other.orphans;
        self.wrong_states += other.wrong_states;
    }

    pub fn is_clean(&self) -> bool {
        *self == Counts::default()
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>6} {:>11} {:>8} {:>13}", self.lost, self.duplicated, self.orphans, self.wrong_states)
    }
}

/// Counts and the one-line description of each finding.
#[derive(Debug, Default)]
pub struct Findings {
    pub counts: Counts,
    pub notes: Vec<String>,
}

impl Findings {
    fn lost(&mut self, note: String) {
        self.counts.lost += 1;
        self.notes.push(format!("lost: {note}"));
    }

    fn duplicated(&mut self, note: String) {
        self.counts.duplicated += 1;
        self.notes.push(format!("duplicated: {note}"));
    }

    pub fn orphan(&mut self, note: String) {
        self.counts.orphans += 1;
        self.notes.push(format!("orphan: {note}"));
    }

    pub fn wrong_state(&mut self, note: String) {
        self.counts.wrong_states += 1;
        self.notes.push(format!("wrong final state: {note}"));
    }
}

/// Every (agent, seq) the master stored so far, over all rounds: gaps and repeats show only
/// across runs, since an agent numbers its events agent-wide.
#[derive(Debug, Default)]
pub struct SeqLedger {
    seen: BTreeMap<String, BTreeMap<u64, usize>>,
    gaps_reported: BTreeMap<String, usize>,
}

impl SeqLedger {
    /// Records `events` (one run's) and counts what is new: repeats of a (agent, seq).
    pub fn record(&mut self, run_id: &str, events: &[Value], findings: &mut Findings) {
        for event in events {
            let agent = event["agent"].as_str().unwrap_or_default().to_owned();
            let seq = event["seq"].as_u64().unwrap_or(0);
            let count = self.seen.entry(agent.clone()).or_default().entry(seq).or_insert(0);
            *count += 1;
            if *count > 1 {
                findings.duplicated(format!("{agent} seq {seq} stored again (run {run_id})"));
            }
        }
    }

    /// Counts the gaps in each agent's numbers (1 to the highest seen) not reported before.
    pub fn gaps(&mut self, findings: &mut Findings) {
        for (agent, seqs) in &self.seen {
            let last = seqs.keys().next_back().copied().unwrap_or(0);
            let missing: Vec<u64> = (1..=last).filter(|seq| !seqs.contains_key(seq)).collect();
            let reported = self.gaps_reported.entry(agent.clone()).or_insert(0);
            for seq in missing.iter().skip(*reported) {
                findings.lost(format!("{agent} seq {seq} never stored (a gap; last seq {last})"));
            }
            *reported = missing.len();
        }
    }
}

/// The event's kind as this audit names it (`STEP_FAILED`), from the JSON's `step_failed`.
fn kind(event: &Value) -> String {
    event["kind"].as_str().unwrap_or_default().to_uppercase()
}

/// Checks one agent's part of one run against what the pattern prints: every lifecycle event
/// once, every line once.
pub fn check_run(run_id: &str, agent: &str, lines_per_step: u32, events: &[Value], findings: &mut Findings) {
    let mine: Vec<&Value> = events.iter().filter(|event| event["agent"] == agent).collect();
    let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
    for event in &mine {
        let step = event["step"].as_str().unwrap_or_default();
        let key = match kind(event).as_str() {
            "LOG" => format!("line {}", event["text"].as_str().unwrap_or_default()),
            "RUN_STARTED" | "RUN_FINISHED" | "STEP_SUCCEEDED" => kind(event),
            // The pattern sets no retries: every step starts once, as attempt 1.
            "STEP_STARTED" => "STEP_STARTED".to_owned(),
            _ => continue,
        };
        *counts.entry((step.to_owned(), key)).or_insert(0) += 1;
    }
    let whereabouts =
        |step: &str| if step.is_empty() { format!("{agent} run {run_id}") } else { format!("{agent} run {run_id} step {step}") };
    let mut expected: Vec<(String, String)> = vec![(String::new(), "RUN_STARTED".into()), (String::new(), "RUN_FINISHED".into())];
    for step in STEPS {
        expected.push((step.into(), "STEP_STARTED".into()));
        expected.push((step.into(), "STEP_SUCCEEDED".into()));
        expected.extend((1..=lines_per_step).map(|line| (step.to_owned(), format!("line {step}-{line}"))));
    }
    for key in &expected {
        match counts.remove(key).unwrap_or(0) {
            0 => findings.lost(format!("{}: {} never arrived", whereabouts(&key.0), key.1)),
            1 => {}
            n => findings.duplicated(format!("{}: {} reported {n} times", whereabouts(&key.0), key.1)),
        }
    }
    for ((step, key), n) in counts {
        findings.duplicated(format!("{}: {key} is nothing the pattern prints ({n} times)", whereabouts(&step)));
    }
}

/// One line per event, `seq kind step text`: what a finding's dump holds for reading.
pub fn timeline(events: &[Value]) -> String {
    events
        .iter()
        .map(|event| {
            format!(
                "{} {} {} {} {}\n",
                event["agent"].as_str().unwrap_or_default(),
                event["seq"],
                kind(event),
                event["step"].as_str().unwrap_or_default(),
                event["text"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

/// One container as `docker ps -a` lists it, by pmesh's labels.
#[derive(Debug, Clone)]
pub struct Container {
    pub instance: String,
    pub step: String,
    pub state: String,
    pub name: String,
}

/// Every container pmesh manages on this machine (other tests' too: callers filter).
pub fn managed_containers() -> Vec<Container> {
    let format = "{{.Label \"io.pmesh.instance\"}}\t{{.Label \"io.pmesh.step\"}}\t{{.State}}\t{{.Names}}";
    pmesh_tests::docker::docker(&["ps", "-a", "--filter", "label=io.pmesh.managed=true", "--format", format])
        .lines()
        .filter_map(|line| {
            let mut fields = line.split('\t').map(str::to_owned);
            Some(Container { instance: fields.next()?, step: fields.next()?, state: fields.next()?, name: fields.next()? })
        })
        .collect()
}

/// Before destroy: one container per step of each finished instance, none still running.
pub fn check_containers(instances: &[String], containers: &[Container], findings: &mut Findings) {
    let mut per_step: BTreeMap<(&str, &str), Vec<&Container>> = BTreeMap::new();
    for container in containers.iter().filter(|container| instances.contains(&container.instance)) {
        per_step.entry((container.instance.as_str(), container.step.as_str())).or_default().push(container);
        if container.state == "running" {
            findings.orphan(format!("{} is still running after its run ended", container.name));
        }
    }
    for ((instance, step), found) in per_step {
        if found.len() > 1 {
            let names: Vec<&str> = found.iter().map(|container| container.name.as_str()).collect();
            findings.orphan(format!("instance {instance} step {step} has {} containers: {names:?}", found.len()));
        }
    }
}

/// After destroy: nothing of the instances is left.
pub fn check_destroyed(instances: &[String], containers: &[Container], findings: &mut Findings) {
    for container in containers.iter().filter(|container| instances.contains(&container.instance)) {
        findings.orphan(format!("{} ({}) is left after destroy of instance {}", container.name, container.state, container.instance));
    }
}
