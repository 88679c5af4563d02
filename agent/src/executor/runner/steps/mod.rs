//! The four step kinds, one file each (`run`, `service`, `exec`, `wait`), and what the
//! container kinds share here: finding a step's containers, replacing one, launching one with
//! its output attached, and re-adopting one after an agent restart.

mod exec;
mod run;
mod service;
mod wait;

use tokio_util::sync::CancellationToken;

use super::{container_name, instance_filter, network_name, Attempt, Failure, Runner};
use crate::executor::contract::{labels, Found, OutputStream};
use crate::executor::plan::{Action, ContainerSpec, Plan, PlannedStep};

/// What an agent restart left of a step that was running.
enum Adoption {
    /// Its container, started before the restart: re-adopted.
    Running(Found),
    /// Nothing of it ran: its container was created but never started (and is removed), or
    /// was never created (the agent stopped between the step's start and the container's
    /// creation). The step starts afresh.
    NeverStarted,
    /// No container of this run, though it had printed lines: it vanished while the agent
    /// was down.
    Gone,
}

impl Runner {
    /// One attempt of `step`, whatever its kind.
    pub(super) async fn attempt(&self, plan: &Plan, step: &PlannedStep, cancel: &CancellationToken) -> Attempt {
        let result = match &step.action {
            Action::Run(spec) => self.run_container(plan, step, spec, "run").await,
            Action::Service(spec) => self.service(plan, step, spec, cancel).await,
            Action::Exec { service, command, env } => self.exec(plan, step, service, command, env).await,
            Action::Wait { probe, deadline, interval } => self.wait(plan, probe, *deadline, *interval).await,
        };
        result.unwrap_or_else(Attempt::Failed)
    }

    /// Existing containers of `step` in the plan's instance.
    async fn existing(&self, plan: &Plan, step: &str) -> anyhow::Result<Vec<Found>> {
        self.driver.find(&instance_filter(plan, &[(labels::STEP, step)])).await
    }

    /// Removes the step's containers and creates (without starting) one for `spec`.
    async fn replace(&self, plan: &Plan, step: &str, spec: &ContainerSpec, kind: &str) -> Result<String, Failure> {
        for old in self.existing(plan, step).await? {
            self.driver.remove(&old.id).await?;
        }
        let owner = Self::owner(plan, step, &spec.spec_hash(), kind);
        let id = self.driver.create(&container_name(&plan.scope(), step), spec, &owner, &network_name(&plan.scope())).await?;
        Ok(id)
    }

    /// Creates the step's container, attaches to its output and starts it: the output stream
    /// then holds every line from the first.
    async fn launch(&self, plan: &Plan, step: &str, spec: &ContainerSpec, kind: &str) -> Result<(String, OutputStream), Failure> {
        let id = self.replace(plan, step, spec, kind).await?;
        let output = self.driver.attach(&id).await?;
        self.driver.start(&id).await?;
        Ok((id, output))
    }

    /// After an agent restart: the step's container from this run, if it still exists, given
    /// the lines of it journalled before the restart.
    async fn adoptable(&self, plan: &Plan, step: &str, reported: u64) -> Result<Adoption, Failure> {
        let found = self.existing(plan, step).await?;
        match found.into_iter().find(|container| container.label(labels::RUN) == plan.run_id) {
            Some(container) if container.started => Ok(Adoption::Running(container)),
            // Created, but the agent stopped before starting it: nothing of it ran, so it is
            // removed and the step starts afresh.
            Some(container) => {
                tracing::info!(step, container = %container.name, "removing a container created but never started before a restart");
                self.driver.remove(&container.id).await?;
                Ok(Adoption::NeverStarted)
            }
            None if reported == 0 => {
                tracing::info!(step, "no container was created for the step before a restart; it starts afresh");
                Ok(Adoption::NeverStarted)
            }
            None => Ok(Adoption::Gone),
        }
    }

    fn vanished(step: &str) -> Failure {
        Failure::new(format!("the container of step {step} vanished while the agent was down"))
    }

    /// The running container of `service`, for exec steps and probes.
    async fn service_container(&self, plan: &Plan, service: &str) -> Result<String, Failure> {
        self.existing(plan, service)
            .await?
            .into_iter()
            .find(|found| found.running)
            .map(|found| found.id)
            .ok_or_else(|| Failure::new(format!("service {service} is not running")))
    }
}
