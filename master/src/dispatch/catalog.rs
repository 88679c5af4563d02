//! The master's registry as a lab sees it ([`pmesh_proto::lab::Catalog`]): registered
//! patterns by name and semver range (parsed through the dispatcher's cache), and the agents
//! by name and labels. Read once per lint, plan or `lab up`, from the store as it is then.

use std::collections::BTreeMap;

use pmesh_proto::lab::{Catalog, Resolved};

use super::Dispatcher;
use crate::store::{AgentRecord, PatternRecord};

/// A snapshot of the registry.
pub struct Registry<'d> {
    dispatcher: &'d Dispatcher,
    patterns: Vec<PatternRecord>,
    agents: Vec<AgentRecord>,
}

impl Dispatcher {
    /// The registry as it is now, for checking and running a lab.
    ///
    /// # Errors
    /// When the store fails.
    pub fn registry(&self) -> anyhow::Result<Registry<'_>> {
        Ok(Registry { dispatcher: self, patterns: self.store.patterns()?, agents: self.store.agents()? })
    }
}

impl Registry<'_> {
    /// The agent a placement names: `on`'s agent, or the first by name carrying a selector's
    /// labels.
    pub fn place(&self, placement: &pmesh_proto::lab::Placement) -> Option<String> {
        let mut names: Vec<&AgentRecord> = self
            .agents
            .iter()
            .filter(|agent| match placement {
                pmesh_proto::lab::Placement::On(name) => &agent.name == name,
                pmesh_proto::lab::Placement::Selector(labels) => labels.iter().all(|(key, value)| agent.labels.get(key) == Some(value)),
            })
            .collect();
        names.sort_by(|left, right| left.name.cmp(&right.name));
        names.first().map(|agent| agent.name.clone())
    }
}

impl Registry<'_> {
    /// Whether the agent `name` is registered and carries every label.
    pub fn carries(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.agents.iter().any(|agent| agent.name == name && labels.iter().all(|(key, value)| agent.labels.get(key) == Some(value)))
    }
}

impl Catalog for Registry<'_> {
    fn pattern(&self, name: &str, version: Option<&semver::VersionReq>) -> Result<Resolved, String> {
        let mut versions: Vec<(semver::Version, &PatternRecord)> = self
            .patterns
            .iter()
            .filter(|pattern| pattern.name == name)
            .filter_map(|pattern| semver::Version::parse(&pattern.version).ok().map(|parsed| (parsed, pattern)))
            .collect();
        if versions.is_empty() {
            return Err(format!("no pattern `{name}` is registered; push it with `pmesh pattern push`"));
        }
        versions.sort_by(|left, right| left.0.cmp(&right.0));
        let registered: Vec<String> = versions.iter().map(|(parsed, _)| parsed.to_string()).collect();
        let chosen = versions.iter().rev().find(|(parsed, _)| version.is_none_or(|req| req.matches(parsed)));
        let Some((parsed, record)) = chosen else {
            let req = version.map(ToString::to_string).unwrap_or_default();
            return Err(format!("no registered version of `{name}` matches `{req}`; registered: {}", registered.join(", ")));
        };
        let _ = parsed;
        let record: &PatternRecord = record;
        let reference = format!("{name}@{}", record.version);
        let (_, _, pattern) = self.dispatcher.registered(&reference).map_err(|err| err.to_string())?;
        Ok(Resolved { reference, pattern })
    }

    fn has_agent(&self, name: &str) -> bool {
        self.agents.iter().any(|agent| agent.name == name)
    }

    fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.agents.iter().any(|agent| labels.iter().all(|(key, value)| agent.labels.get(key) == Some(value)))
    }
}
