//! The lab driver: one task per active lab, moving its components through the DAG.
//!
//! Every half second (and at once after a change) it looks at each component in dependency
//! order: a pending one whose dependencies all succeeded has its values resolved from their
//! outputs; an instance whose inputs (pattern, agent, values, hashed) match its last
//! succeeded run is left alone ("unchanged"); otherwise its next run id is written to the
//! store first and the run started with it, so a master killed at any point starts it once
//! (a start with a known run id starts nothing). A running one follows its runs in the
//! store. A component whose dependency failed is blocked; the others go on.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use pmesh_proto::event::RunOutput;
use pmesh_proto::lab::{self, refs, Component, Lab};
use pmesh_proto::v1;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::Labs;
use crate::error::now_unix;
use crate::store::{ComponentRecord, ComponentState, LabRecord, LabState, ReplicaRecord, RunState};

const TICK: Duration = Duration::from_millis(500);

impl Labs {
    /// Drives the lab `name` until every component is final, or `stop`.
    pub(super) async fn drive(&self, name: &str, stop: &CancellationToken) -> anyhow::Result<()> {
        loop {
            let Some(mut record) = self.store.lab(name)? else { return Ok(()) };
            if record.state != LabState::Active {
                return Ok(());
            }
            let lab = lab::parse(&record.file, &record.text)
                .map_err(|problems| anyhow::anyhow!("the stored lab no longer parses: {}", problems.len()))?;
            let before = record.clone();
            for component in lab.order() {
                self.advance(&lab, component, &mut record, stop).await?;
            }
            // The file's components decide; one dropped from the file only waits for `lab down`.
            let states: Vec<ComponentState> = lab
                .components
                .iter()
                .filter_map(|component| record.components.get(&component.name))
                .map(|component| component.state)
                .collect();
            if states.iter().all(|state| state.is_final()) {
                let all_good = states.iter().all(|state| *state == ComponentState::Succeeded);
                record.state = if all_good { LabState::Done } else { LabState::Failed };
                tracing::info!(lab = %name, state = record.state.as_str(), "lab finished");
            }
            if record != before {
                record.updated_at = now_unix();
                // A `lab down` may have stopped this driver while it worked: its record wins.
                if stop.is_cancelled() {
                    return Ok(());
                }
                self.store.put_lab(&record)?;
            }
            if record.state != LabState::Active {
                return Ok(());
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    }

    async fn advance(&self, lab: &Lab, component: &Component, record: &mut LabRecord, stop: &CancellationToken) -> anyhow::Result<()> {
        let state = record.components.get(&component.name).map(|state| state.state).unwrap_or(ComponentState::Pending);
        match state {
            ComponentState::Pending => self.start_component(lab, component, record, stop).await,
            ComponentState::Running => self.follow_component(component, record).await,
            _ => Ok(()),
        }
    }

    async fn start_component(
        &self,
        lab: &Lab,
        component: &Component,
        record: &mut LabRecord,
        stop: &CancellationToken,
    ) -> anyhow::Result<()> {
        let deps = Lab::dependencies(component);
        let dep_states: Vec<(&String, ComponentState)> =
            deps.iter().map(|dep| (dep, record.components.get(dep).map_or(ComponentState::Pending, |state| state.state))).collect();
        if let Some((failed, _)) = dep_states.iter().find(|(_, state)| matches!(state, ComponentState::Failed | ComponentState::Blocked)) {
            let entry = record.components.get_mut(&component.name).context("a component of the lab has no record")?;
            entry.state = ComponentState::Blocked;
            entry.error = format!("not started: {failed} did not succeed");
            return Ok(());
        }
        if !dep_states.iter().all(|(_, state)| *state == ComponentState::Succeeded) {
            return Ok(());
        }
        let outputs = outputs_of(record);
        let entry = record.components.get_mut(&component.name).context("a component of the lab has no record")?;
        entry.started_at = now_unix();
        entry.finished_at = 0;
        entry.error.clear();
        entry.unchanged = true;
        let mut replicas = Vec::with_capacity(component.count as usize);
        for index in 0..component.count {
            let instance = lab.instance(component, index);
            let values_json = match resolved_values(component, index, &outputs) {
                Ok(values_json) => values_json,
                Err(err) => {
                    entry.state = ComponentState::Failed;
                    entry.error = err;
                    entry.finished_at = now_unix();
                    return Ok(());
                }
            };
            let inputs = hex::encode(Sha256::digest(format!("{}\n{}\n{instance}\n{values_json}", entry.pattern, entry.agent)));
            let earlier = entry.replicas.iter().find(|replica| replica.instance == instance).cloned();
            if let Some(earlier) = earlier.clone().filter(|earlier| earlier.inputs == inputs && earlier.state == ComponentState::Succeeded)
            {
                if self.still_there(&entry.agent, &instance)? {
                    replicas.push(earlier);
                    continue;
                }
            }
            entry.unchanged = false;
            let runs = earlier.as_ref().map_or(0, |earlier| earlier.runs) + 1;
            let run_id = format!("lab-{}-{}-{index}-{runs}", lab.name, component.name);
            replicas.push(ReplicaRecord { instance, run_id, inputs, state: ComponentState::Running, outputs: vec![], runs });
        }
        entry.replicas = replicas;
        entry.state = ComponentState::Running;
        let (pattern, agent, starting) = (entry.pattern.clone(), entry.agent.clone(), entry.replicas.clone());
        // Run ids first, durable, then the starts: a crash in between starts each once. A
        // driver `lab down` stopped writes nothing more.
        if stop.is_cancelled() {
            return Ok(());
        }
        self.store.put_lab(record)?;
        let mut failures = BTreeMap::new();
        for replica in starting.iter().filter(|replica| replica.state == ComponentState::Running) {
            if let Some(error) = self.start_replica(component, &pattern, &agent, replica, &outputs).await {
                failures.insert(replica.instance.clone(), error);
            }
        }
        let entry = record.components.get_mut(&component.name).context("a component of the lab has no record")?;
        mark_failed(entry, &failures);
        // Finished (every instance unchanged, or every start refused) is settled by `follow`.
        Ok(())
    }

    /// Starts a replica's run (again: idempotent by its run id); the refusal, if any.
    async fn start_replica(
        &self,
        component: &Component,
        pattern: &str,
        agent: &str,
        replica: &ReplicaRecord,
        outputs: &BTreeMap<(String, String), serde_json::Value>,
    ) -> Option<String> {
        let index = if component.count > 1 {
            replica.instance.rsplit('-').next().and_then(|last| last.parse::<u32>().ok()).unwrap_or(0)
        } else {
            0
        };
        let values = match resolved_values(component, index, outputs) {
            Ok(values) => values,
            Err(err) => return Some(err),
        };
        let request = v1::MasterStartRunRequest {
            pattern: pattern.to_owned(),
            on: vec![agent.to_owned()],
            values_json: values,
            instance: replica.instance.clone(),
            run_id: replica.run_id.clone(),
            ..Default::default()
        };
        match self.dispatcher.start(request).await {
            Ok(response) => response.targets.into_iter().find(|target| !target.error.is_empty()).map(|target| target.error),
            Err(err) => Some(err.to_string()),
        }
    }

    /// Whether the instance's record on the master says it still stands (not destroyed, its
    /// last run succeeded).
    fn still_there(&self, agent: &str, instance: &str) -> anyhow::Result<bool> {
        Ok(self
            .store
            .instances(Some(agent))?
            .iter()
            .any(|record| record.name == instance && record.destroyed_at.is_none() && record.state == RunState::Succeeded))
    }

    async fn follow_component(&self, component: &Component, record: &mut LabRecord) -> anyhow::Result<()> {
        let outputs = outputs_of(record);
        let entry = record.components.get_mut(&component.name).context("a component of the lab has no record")?;
        let mut errors = Vec::new();
        for replica in entry.replicas.iter_mut().filter(|replica| replica.state == ComponentState::Running) {
            let Some(run) = self.store.run(&replica.run_id)? else {
                // Recorded but not started: the master stopped in between, or the start was
                // refused before the run was recorded.
                if let Some(error) = self.start_replica(component, &entry.pattern, &entry.agent, replica, &outputs).await {
                    replica.state = ComponentState::Failed;
                    errors.push(format!("{}: {error}", replica.instance));
                }
                continue;
            };
            let agent_state = run.agents.get(&entry.agent);
            match run.overall() {
                RunState::Pending | RunState::Running => {}
                RunState::Succeeded => {
                    replica.state = ComponentState::Succeeded;
                    replica.outputs = agent_state.map(|state| state.outputs.clone()).unwrap_or_default();
                }
                other => {
                    replica.state = ComponentState::Failed;
                    let why = agent_state
                        .map(|state| state.error.clone())
                        .filter(|error| !error.is_empty())
                        .unwrap_or_else(|| format!("run {} {other}", run.run_id));
                    errors.push(format!("{}: {why}", replica.instance));
                }
            }
        }
        if !errors.is_empty() {
            entry.error = errors.join("; ");
        }
        if entry.replicas.iter().all(|replica| replica.state.is_final()) {
            entry.state = if entry.replicas.iter().all(|replica| replica.state == ComponentState::Succeeded) {
                ComponentState::Succeeded
            } else {
                ComponentState::Failed
            };
            entry.finished_at = now_unix();
        }
        Ok(())
    }
}

/// The replicas named in `failures` failed to start, for the reason given.
fn mark_failed(entry: &mut ComponentRecord, failures: &BTreeMap<String, String>) {
    if failures.is_empty() {
        return;
    }
    for replica in &mut entry.replicas {
        if failures.contains_key(&replica.instance) {
            replica.state = ComponentState::Failed;
        }
    }
    entry.error = failures.iter().map(|(instance, error)| format!("{instance}: {error}")).collect::<Vec<_>>().join("; ");
}

/// A component's values for instance `index` as a JSON object's text, its references
/// resolved from `outputs`.
fn resolved_values(component: &Component, index: u32, outputs: &BTreeMap<(String, String), serde_json::Value>) -> Result<String, String> {
    let lookup = |producer: &str, output: &str| outputs.get(&(producer.to_owned(), output.to_owned())).cloned();
    let mut values = serde_json::Map::new();
    for value in &component.values {
        let resolved = refs::resolve(&value.value, index, &lookup)
            .map_err(|err| format!("value `{}`: {err} (a secret output cannot feed another component yet)", value.param))?;
        values.insert(value.param.clone(), resolved);
    }
    Ok(serde_json::Value::Object(values).to_string())
}

/// Every succeeded component's outputs by (component, output): a component with several
/// instances gives a list, one item per instance in order. Secret outputs have no value here.
fn outputs_of(record: &LabRecord) -> BTreeMap<(String, String), serde_json::Value> {
    let mut found: BTreeMap<(String, String), serde_json::Value> = BTreeMap::new();
    for (name, component) in &record.components {
        if component.state != ComponentState::Succeeded {
            continue;
        }
        let repeated = component.replicas.len() > 1;
        for replica in &component.replicas {
            for output in &replica.outputs {
                let Some(value) = value_of(output) else { continue };
                let key = (name.clone(), output.name.clone());
                if repeated {
                    let list = found.entry(key).or_insert_with(|| serde_json::Value::Array(vec![]));
                    if let serde_json::Value::Array(items) = list {
                        items.push(value);
                    }
                } else {
                    found.insert(key, value);
                }
            }
        }
    }
    found
}

/// An output's value; `None` for a withheld secret.
fn value_of(output: &RunOutput) -> Option<serde_json::Value> {
    output.value.clone()
}
