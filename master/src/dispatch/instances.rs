//! Instances for the operator: the store's records as the wire summary, and `--reveal`, the
//! one place a secret output's value passes through the master, asked of the agent that holds
//! it (`Agent.InstanceOutputs`) and handed to the caller, never stored or logged.

use pmesh_proto::event::RunOutput;
use pmesh_proto::v1;
use pmesh_rt::v1::agent_client::AgentClient;

use super::Dispatcher;
use crate::error::ApiError;
use crate::store::InstanceRecord;

impl Dispatcher {
    /// Every instance (only `agent`'s when not empty), by agent then name.
    ///
    /// # Errors
    /// When the store fails.
    pub fn instances(&self, agent: &str) -> Result<Vec<v1::InstanceSummary>, ApiError> {
        let agent = (!agent.is_empty()).then_some(agent);
        Ok(self.store.instances(agent)?.into_iter().map(instance_summary).collect())
    }

    /// The instances called `name` (on `agent` only, when not empty); with `reveal`, the
    /// secret outputs' values asked of their agents.
    ///
    /// # Errors
    /// [`ApiError::NotFound`] when no agent has it; [`ApiError::Failed`] when an agent cannot
    /// give a secret value asked for.
    pub async fn instance(&self, name: &str, agent: &str, reveal: bool) -> Result<Vec<v1::InstanceSummary>, ApiError> {
        let agent_filter = (!agent.is_empty()).then_some(agent);
        let records: Vec<InstanceRecord> = self.store.instances(agent_filter)?.into_iter().filter(|record| record.name == name).collect();
        if records.is_empty() {
            let on = if agent.is_empty() { String::new() } else { format!(" on agent {agent:?}") };
            return Err(ApiError::NotFound(format!("no instance {name:?}{on}")));
        }
        let mut summaries = Vec::with_capacity(records.len());
        for mut record in records {
            if reveal && record.outputs.iter().any(|output| output.secret) {
                record.outputs = self.revealed(&record).await?;
            }
            summaries.push(instance_summary(record));
        }
        Ok(summaries)
    }

    /// Destroys the instances called `name` (on `agent` only, when not empty) through their
    /// agents, which destroy from their own records; each destroyed record is marked so.
    /// Agents are asked one after another, and the first that fails stops the rest.
    ///
    /// # Errors
    /// [`ApiError::NotFound`] when no agent has it; [`ApiError::Failed`] naming the agent when
    /// one refuses or cannot be reached (those before it are destroyed and marked).
    pub async fn destroy_instance(&self, name: &str, agent: &str) -> Result<Vec<v1::DestroyedInstance>, ApiError> {
        let agent_filter = (!agent.is_empty()).then_some(agent);
        let records: Vec<InstanceRecord> = self.store.instances(agent_filter)?.into_iter().filter(|record| record.name == name).collect();
        if records.is_empty() {
            let on = if agent.is_empty() { String::new() } else { format!(" on agent {agent:?}") };
            return Err(ApiError::NotFound(format!("no instance {name:?}{on}")));
        }
        let mut destroyed = Vec::with_capacity(records.len());
        for record in records {
            destroyed.push(self.destroy_one(&record).await?);
        }
        Ok(destroyed)
    }

    async fn destroy_one(&self, record: &InstanceRecord) -> Result<v1::DestroyedInstance, ApiError> {
        let failed = |why: String| ApiError::Failed(format!("cannot destroy {} on {}: {why}", record.name, record.agent));
        if record.destroyed_at.is_some() {
            return Ok(v1::DestroyedInstance { agent: record.agent.clone(), removed: vec![], already_destroyed: true });
        }
        if record.state.is_active() {
            return Err(failed(format!(
                "its run {} is in progress; cancel it first (`pmesh runs cancel {}`)",
                record.last_run, record.last_run
            )));
        }
        let agent = self.store.agent(&record.agent)?.ok_or_else(|| failed("the agent is no longer registered".to_owned()))?;
        let dialled = self.channel(&agent).map_err(|err| failed(format!("{err:#}")))?;
        // Bounded like every agent call (`dispatch::CALL_TIMEOUT`), teardown hooks included.
        let request = v1::DestroyInstanceRequest { instance: record.name.clone() };
        let response = match AgentClient::new(dialled.channel.clone()).destroy_instance(request).await {
            Ok(response) => response.into_inner(),
            Err(status) if matches!(status.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded) => {
                return Err(ApiError::Unreachable(format!(
                    "cannot destroy {} on {}: {}",
                    record.name,
                    record.agent,
                    Self::explain(&dialled, &status)
                )));
            }
            Err(status) => return Err(failed(Self::explain(&dialled, &status))),
        };
        self.store.mark_destroyed(&record.agent, &record.name, crate::error::now_unix())?;
        tracing::info!(instance = %record.name, agent = %record.agent, n_removed = response.removed.len(), "instance destroyed");
        Ok(v1::DestroyedInstance { agent: record.agent.clone(), removed: response.removed, already_destroyed: response.already_destroyed })
    }

    /// The outputs of `record`'s last succeeded run, secret values included, from its agent.
    async fn revealed(&self, record: &InstanceRecord) -> Result<Vec<RunOutput>, ApiError> {
        let failed =
            |why: String| ApiError::Failed(format!("cannot reveal the secret outputs of {} on {}: {why}", record.name, record.agent));
        let agent = self.store.agent(&record.agent)?.ok_or_else(|| failed("the agent is no longer registered".to_owned()))?;
        let dialled = self.channel(&agent).map_err(|err| failed(format!("{err:#}")))?;
        let request = v1::InstanceOutputsRequest { instance: record.name.clone(), run_id: record.outputs_run.clone() };
        let response = AgentClient::new(dialled.channel.clone())
            .instance_outputs(request)
            .await
            .map_err(|status| failed(Self::explain(&dialled, &status)))?;
        let given: Vec<RunOutput> = response
            .into_inner()
            .outputs
            .into_iter()
            .map(RunOutput::try_from)
            .collect::<Result<_, _>>()
            .map_err(|err| failed(err.to_string()))?;
        // Only the secret values come from the agent; the rest is what the store holds.
        Ok(record
            .outputs
            .iter()
            .map(|output| match given.iter().find(|from_agent| from_agent.name == output.name && output.secret) {
                Some(from_agent) => RunOutput { value: from_agent.value.clone(), ..output.clone() },
                None => output.clone(),
            })
            .collect())
    }
}

/// The wire summary of an instance.
pub fn instance_summary(record: InstanceRecord) -> v1::InstanceSummary {
    v1::InstanceSummary {
        name: record.name,
        agent: record.agent,
        pattern: record.pattern,
        last_run: record.last_run,
        state: if record.destroyed_at.is_some() { "destroyed".to_owned() } else { record.state.to_string() },
        outputs: record.outputs.into_iter().map(v1::RunOutput::from).collect(),
        outputs_run: record.outputs_run,
        updated_at_unix: record.updated_at,
    }
}
