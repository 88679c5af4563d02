//! The records the master persists: this module's own serde types, stored as JSON, each
//! tagged with its layout version (`"v": 1`). They are not the wire types; the frozen v1
//! layouts are read back by the tests in `store::tests`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use pmesh_proto::event::{AgentEvent, EventError, RunEvent, RunOutput};
use pmesh_proto::v1;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::backend::Namespace;

/// A record type and the namespace it is kept in; the store's typed reads and writes go
/// through it, so a record cannot land in another record's namespace.
pub trait Record: Serialize + DeserializeOwned {
    const NAMESPACE: Namespace;
}

/// What the master remembers about an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub v: u32,
    pub name: String,
    /// `host:port` the master dials.
    pub address: String,
    pub labels: BTreeMap<String, String>,
    pub enrolled_at: i64,
    pub cert_serial: String,
    pub cert_not_after: i64,
    pub health: Health,
    pub last_seen: Option<i64>,
    pub last_error: Option<String>,
    pub facts: Option<FactsRecord>,
}

/// The outcome of the last check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Unknown,
    Up,
    Down,
}

/// The facts an agent last reported.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FactsRecord {
    pub hostname: String,
    pub os_id: String,
    pub os_version: String,
    pub kernel: String,
    pub arch: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub disk_free_bytes: u64,
    pub data_dir: String,
    pub docker_reachable: bool,
    pub docker_version: String,
    pub docker_error: String,
    pub agent_version: String,
    /// What the agent reported wrong ("journal: disk full at PATH"); absent in older records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// A join token, stored by the sha256 of its text so the database never holds a usable token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub v: u32,
    pub created_at: i64,
    pub expires_at: i64,
    pub name: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub force: bool,
    /// Set when an agent joined with it; a used token is kept so a reuse can be named.
    pub used_at: Option<i64>,
    pub used_by: Option<String>,
}

/// A certificate the CA issued, kept so a name can be revoked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssuedRecord {
    pub v: u32,
    /// `pmesh://ROLE/NAME`.
    pub identity: String,
    pub not_after: i64,
    pub revoked_at: Option<i64>,
}

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
    pub agents: BTreeMap<String, AgentState>,
}

/// One agent's part of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentState {
    pub state: RunState,
    #[serde(default)]
    pub error: String,
    /// The pattern's outputs once the run succeeded there; secret ones without a value (the
    /// master never holds those).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<RunOutput>,
}

/// An instance on an agent, as its runs' events left it: written in the transaction that
/// persists a run's start and end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub v: u32,
    pub name: String,
    pub agent: String,
    /// `NAME@VERSION` of the last run.
    pub pattern: String,
    pub last_run: String,
    /// The last run's state on the agent.
    pub state: RunState,
    /// The outputs of the last run that succeeded; secret ones without a value.
    #[serde(default)]
    pub outputs: Vec<RunOutput>,
    /// The run those outputs come from; empty until one succeeded.
    #[serde(default)]
    pub outputs_run: String,
    /// Unix seconds of the event that last changed it.
    pub updated_at: i64,
    /// Unix seconds of the `pmesh destroy` that removed it from its agent; cleared by its next
    /// run. Absent in records written before destroys existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destroyed_at: Option<i64>,
}

/// Where a run stands on one agent, or overall. Stored and sent as the lowercase name, as the
/// strings it replaced were.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Recorded; the start has not answered yet.
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// The master could not reach the agent to start it.
    Unreachable,
}

impl RunState {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Pending => "pending",
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
            RunState::Unreachable => "unreachable",
        }
    }

    /// Pending or running: the agent may still change it.
    pub fn is_active(self) -> bool {
        matches!(self, RunState::Pending | RunState::Running)
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a [`RunState`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a run state")]
pub struct UnknownRunState(pub String);

impl FromStr for RunState {
    type Err = UnknownRunState;

    fn from_str(text: &str) -> Result<RunState, UnknownRunState> {
        [RunState::Pending, RunState::Running, RunState::Succeeded, RunState::Failed, RunState::Cancelled, RunState::Unreachable]
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| UnknownRunState(text.to_owned()))
    }
}

impl RunRecord {
    /// `running` until every agent finished; then `succeeded`, or the worst outcome.
    pub fn overall(&self) -> RunState {
        let states: Vec<RunState> = self.agents.values().map(|agent| agent.state).collect();
        if states.iter().any(|state| state.is_active()) {
            RunState::Running
        } else if states.contains(&RunState::Unreachable) {
            RunState::Unreachable
        } else if states.contains(&RunState::Failed) {
            RunState::Failed
        } else if states.contains(&RunState::Cancelled) {
            RunState::Cancelled
        } else {
            RunState::Succeeded
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

/// What the depot remembers of an artifact, by sha256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    /// The record's layout version, [`super::SCHEMA_VERSION`].
    pub v: u32,
    /// Lowercase hex; also the key.
    pub sha256: String,
    /// In bytes.
    pub size: u64,
    /// The labels it was added under.
    pub names: BTreeSet<String>,
    /// Unix seconds of the first add.
    pub added_at: i64,
}

impl Record for AgentRecord {
    const NAMESPACE: Namespace = Namespace::Agents;
}
impl Record for TokenRecord {
    const NAMESPACE: Namespace = Namespace::Tokens;
}
impl Record for IssuedRecord {
    const NAMESPACE: Namespace = Namespace::Certs;
}
impl Record for PatternRecord {
    const NAMESPACE: Namespace = Namespace::Patterns;
}
impl Record for RunRecord {
    const NAMESPACE: Namespace = Namespace::Runs;
}
impl Record for Segment {
    const NAMESPACE: Namespace = Namespace::RunEventSegments;
}
impl Record for ArtifactRecord {
    const NAMESPACE: Namespace = Namespace::Artifacts;
}
impl Record for InstanceRecord {
    const NAMESPACE: Namespace = Namespace::Instances;
}
