//! Labs (`Namespace::Labs`, key: the lab's name): the lab file as last brought up, and where
//! each component and each of its instances stands. The master's lab driver writes a
//! replica's run id here before it starts the run, so a master restarted at any point follows
//! that run again rather than starting another: nothing runs twice.

use std::collections::BTreeMap;
use std::fmt;

use pmesh_proto::event::RunOutput;
use serde::{Deserialize, Serialize};

use super::{Namespace, Record, Store};

/// A lab as the master drives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabRecord {
    pub v: u32,
    pub name: String,
    /// The file name it was brought up from, for diagnostics.
    pub file: String,
    /// The lab file's text as last brought up.
    pub text: String,
    pub state: LabState,
    pub created_at: i64,
    pub updated_at: i64,
    /// By component name.
    pub components: BTreeMap<String, ComponentRecord>,
}

/// Where a lab stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabState {
    /// Being brought up: the driver runs (again, after a master restart).
    Active,
    /// Every component succeeded.
    Done,
    /// Some component failed or could not start; the rest finished.
    Failed,
    /// `lab down` destroyed it.
    Down,
}

/// One component of a lab.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentRecord {
    /// `NAME@VERSION` it resolved to when the lab was brought up.
    pub pattern: String,
    /// The agent it runs on (a selector's choice is kept, so it stays put).
    pub agent: String,
    pub state: ComponentState,
    /// One per instance (`count`).
    #[serde(default)]
    pub replicas: Vec<ReplicaRecord>,
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub started_at: i64,
    #[serde(default)]
    pub finished_at: i64,
    /// The last `lab up` found every instance's inputs unchanged and ran nothing.
    #[serde(default)]
    pub unchanged: bool,
}

/// One instance of a component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaRecord {
    pub instance: String,
    /// The run of the current inputs; recorded before it is started.
    pub run_id: String,
    /// sha256 of the pattern, agent and resolved values the run was started with.
    pub inputs: String,
    pub state: ComponentState,
    /// The outputs of its last succeeded run; secret ones without a value.
    #[serde(default)]
    pub outputs: Vec<RunOutput>,
    /// How many runs the lab started for it.
    #[serde(default)]
    pub runs: u32,
}

/// Where a component (or one of its instances) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentState {
    /// Waiting for what it needs.
    Pending,
    Running,
    Succeeded,
    Failed,
    /// Something it needs failed: it was not started.
    Blocked,
    /// `lab down` destroyed it.
    Destroyed,
}

impl ComponentState {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentState::Pending => "pending",
            ComponentState::Running => "running",
            ComponentState::Succeeded => "succeeded",
            ComponentState::Failed => "failed",
            ComponentState::Blocked => "blocked",
            ComponentState::Destroyed => "destroyed",
        }
    }

    /// Succeeded, failed, blocked or destroyed: the driver will not move it again.
    pub fn is_final(self) -> bool {
        !matches!(self, ComponentState::Pending | ComponentState::Running)
    }
}

impl fmt::Display for ComponentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl LabState {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            LabState::Active => "active",
            LabState::Done => "done",
            LabState::Failed => "failed",
            LabState::Down => "down",
        }
    }
}

impl Record for LabRecord {
    const NAMESPACE: Namespace = Namespace::Labs;
}

impl Store {
    /// The lab called `name`.
    ///
    /// # Errors
    /// When the database fails or the record does not decode.
    pub fn lab(&self, name: &str) -> anyhow::Result<Option<LabRecord>> {
        self.get(name)
    }

    /// Every lab, by name.
    ///
    /// # Errors
    /// When the database fails or a record does not decode.
    pub fn labs(&self) -> anyhow::Result<Vec<LabRecord>> {
        Ok(self.all()?.into_iter().map(|(_, record)| record).collect())
    }

    /// Writes a lab's record and flushes it, so what the driver decided survives a crash.
    ///
    /// # Errors
    /// When the database or the disk fails.
    pub fn put_lab(&self, record: &LabRecord) -> anyhow::Result<()> {
        self.put(&record.name, record)?;
        self.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::super::memory::MemoryBackend;
    use super::*;

    /// Records written by the v1 layout must keep decoding; this is that layout, frozen.
    #[test]
    fn reads_lab_record_v1() {
        let v1 = r#"{"v":1,"name":"lab1","file":"lab.yaml","text":"kind: Lab","state":"active","created_at":1,"updated_at":2,
            "components":{"dns":{"pattern":"dns@2.0.0","agent":"pc-1","state":"running","replicas":[{"instance":"lab1-dns",
            "run_id":"lab-lab1-dns-0-1","inputs":"ab","state":"running","runs":1}],"started_at":3}}}"#;
        let record: LabRecord = super::super::decode(v1.as_bytes()).expect("decodes");
        let dns = &record.components["dns"];
        assert_eq!((record.state, dns.state, dns.replicas[0].runs, dns.unchanged), (LabState::Active, ComponentState::Running, 1, false));
        let store = Store::with_backend(std::sync::Arc::new(MemoryBackend::default())).expect("store");
        store.put_lab(&record).expect("put");
        assert_eq!(store.lab("lab1").expect("get"), Some(record));
        assert_eq!(store.labs().expect("labs").len(), 1);
        assert_eq!(store.lab("other").expect("get"), None);
    }
}
