//! Run steps (and teardown hooks): a one-shot container run to completion, not run again
//! when its last container of the same spec exited 0, re-adopted after an agent restart.

use super::super::{Attempt, Failure, Runner};
use super::Adoption;
use crate::executor::contract::labels;
use crate::executor::plan::{ContainerSpec, Plan, PlannedStep};

impl Runner {
    /// Runs `spec` as the container of `step` (labelled `kind`) and waits for its exit.
    pub(in super::super) async fn run_container(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        spec: &ContainerSpec,
        kind: &str,
    ) -> Result<Attempt, Failure> {
        if let Some(reported) = plan.resume.get(&step.name) {
            match self.adoptable(plan, &step.name, *reported).await? {
                Adoption::Running(container) => {
                    tracing::info!(step = %step.name, container = %container.name, "re-adopting a container after a restart");
                    let tail = self.follow_logs(plan, step, self.driver.logs(&container.id), *reported).await;
                    let exit_code = self.driver.wait(&container.id).await?;
                    return Ok(Self::exited(container.id, exit_code, tail.into()));
                }
                Adoption::NeverStarted => {}
                Adoption::Gone => return Err(Self::vanished(&step.name)),
            }
        }
        let hash = spec.spec_hash();
        let existing = self.existing(plan, &step.name).await?;
        if let Some(done) = existing
            .iter()
            .find(|found| found.label(labels::SPEC_HASH) == hash && found.started && !found.running && found.exit_code == Some(0))
        {
            return Ok(Attempt::Unchanged(Some(done.id.clone())));
        }
        let (id, output) = self.launch(plan, &step.name, spec, kind).await?;
        let tail = self.follow_logs(plan, step, output, 0).await;
        let exit_code = self.driver.wait(&id).await?;
        Ok(Self::exited(id, exit_code, tail.into()))
    }

    /// How a run container's exit ends the attempt.
    fn exited(id: String, exit_code: i64, tail: Vec<String>) -> Attempt {
        if exit_code == 0 {
            Attempt::Succeeded(Some(id))
        } else {
            Attempt::Failed(Failure::exited(exit_code, tail))
        }
    }
}
