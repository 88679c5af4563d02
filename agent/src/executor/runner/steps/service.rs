//! Service steps: a long-running container, left alone when it runs with the same spec (or
//! reloaded in place when only the files of its `dir` mounts changed and it has a reload
//! command), re-adopted after an agent restart, done once it is running (and healthy, if it
//! has a check); its output is reported until the run ends.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::super::{Attempt, Failure, Runner};
use super::Adoption;
use crate::executor::contract::{labels, Health};
use crate::executor::plan::{ContainerSpec, Plan, PlannedStep};

/// How often a starting service's health is asked again.
const HEALTH_POLL: Duration = Duration::from_millis(250);

impl Runner {
    /// Converges the service of `step` on `spec` and waits for it to be up.
    pub(super) async fn service(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        spec: &ContainerSpec,
        cancel: &CancellationToken,
    ) -> Result<Attempt, Failure> {
        // A service that was running when the agent stopped is re-adopted before convergence
        // is asked: it runs with this run's spec, and its output is read from its log file,
        // after the lines reported before the restart.
        let adopted = match plan.resume.get(&step.name) {
            Some(reported) => match self.adoptable(plan, &step.name, *reported).await? {
                Adoption::Running(container) => Some((container, *reported)),
                Adoption::NeverStarted => None,
                Adoption::Gone => return Err(Self::vanished(&step.name)),
            },
            None => None,
        };
        let (id, output, skip) = if let Some((container, reported)) = adopted {
            tracing::info!(step = %step.name, container = %container.name, "re-adopting a service after a restart");
            let output = self.driver.logs(&container.id);
            (container.id, output, reported)
        } else {
            let hash = spec.spec_hash();
            let existing = self.existing(plan, &step.name).await?;
            if let Some(current) = existing.iter().find(|found| found.label(labels::SPEC_HASH) == hash && found.running) {
                if existing.len() == 1 {
                    return self.reload_if_changed(plan, step, spec, &current.id).await;
                }
            }
            let (id, output) = self.launch(plan, &step.name, spec, "service").await?;
            // A new container reads the current files when it starts.
            Self::record_loaded(spec, &id);
            (id, output, 0)
        };
        // The service's output is reported until the run ends.
        let runner = self.clone();
        let (plan_for_logs, step_for_logs) = (plan.clone(), step.clone());
        let log_stop = cancel.child_token();
        tokio::spawn(async move {
            tokio::select! {
                _ = runner.follow_logs(&plan_for_logs, &step_for_logs, output, skip) => {}
                _ = log_stop.cancelled() => {}
            }
        });
        self.until_up(&id).await
    }

    /// A running service with the same spec: unchanged, unless the files of its `dir` mounts
    /// changed since it loaded them; then its reload command runs in it, and it keeps running.
    async fn reload_if_changed(&self, plan: &Plan, step: &PlannedStep, spec: &ContainerSpec, id: &str) -> Result<Attempt, Failure> {
        let Some(reload) = spec.reload.as_ref().filter(|reload| !reload.loaded_by(id)) else {
            return Ok(Attempt::Unchanged(Some(id.to_owned())));
        };
        self.report_line(plan, step, &format!("its files changed: reloading in place ({})", reload.command.join(" "))).await;
        match self.exec_in(plan, step, id, &reload.command, &[]).await? {
            Attempt::Failed(mut failure) => {
                failure.reason = format!("the reload command {}", failure.reason);
                Ok(Attempt::Failed(failure))
            }
            _ => {
                Self::record_loaded(spec, id);
                Ok(Attempt::Succeeded(Some(id.to_owned())))
            }
        }
    }

    /// Records that container `id` has the spec's reloadable files loaded; a record that
    /// cannot be written only costs a needless reload next time.
    fn record_loaded(spec: &ContainerSpec, id: &str) {
        if let Some(reload) = &spec.reload {
            if let Err(err) = reload.record_loaded(id) {
                tracing::warn!(record = %reload.record.display(), error = %format!("{err:#}"), "recording a reload failed");
            }
        }
    }

    /// Waits until the service runs and its healthcheck (if any) passes.
    async fn until_up(&self, id: &str) -> Result<Attempt, Failure> {
        loop {
            let (running, health) = self.driver.health(id).await?;
            match (running, health) {
                (false, _) => {
                    let exit_code = self.driver.wait(id).await.ok();
                    return Ok(Attempt::Failed(Failure {
                        reason: format!("the service exited (code {})", exit_code.unwrap_or(-1)),
                        exit_code,
                        tail: vec![],
                    }));
                }
                (true, Health::None | Health::Healthy) => return Ok(Attempt::Succeeded(Some(id.to_owned()))),
                (true, Health::Unhealthy) => return Ok(Attempt::Failed(Failure::new("the service's healthcheck reports unhealthy"))),
                (true, Health::Starting) => tokio::time::sleep(HEALTH_POLL).await,
            }
        }
    }
}
