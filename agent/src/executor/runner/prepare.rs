//! A run's second phase: the instance's networks and the plan's images, before any step.
//! An image built on the agent is reported as a step of its own, `image:NAME`: its build's
//! output as log lines, Docker's `Step N/M` as the step's progress, and a failed build as
//! that step's failure with the build's last lines.

use std::collections::VecDeque;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{network_name, Failure, Runner, TAIL_LINES};
use crate::executor::contract::ImageAction;
use crate::executor::events::{EventKind, LineBuffer};
use crate::executor::plan::{Action, BuildSpec, ImageSource, Plan};

/// How preparing a run ended; a failure has been reported already.
pub(super) enum Prepared {
    Ready,
    Failed,
    Cancelled,
}

impl Runner {
    /// Creates the instance's networks (when a step has a container) and makes every image
    /// available, reporting how each was obtained.
    pub(super) async fn prepare(&self, plan: &Plan, cancel: &CancellationToken) -> Prepared {
        if let Err(failure) = self.networks(plan).await {
            self.emit_failed(&plan.run_id, "prepare", failure).await;
            return Prepared::Failed;
        }
        for image in &plan.images {
            let action = match image {
                ImageSource::Build(build) => {
                    let step = format!("image:{}", build.name);
                    let built = tokio::select! {
                        built = self.build_image(plan, build, &step) => built,
                        _ = cancel.cancelled() => return Prepared::Cancelled,
                    };
                    match built {
                        Ok(action) => action,
                        Err(failure) => {
                            self.emit_failed(&plan.run_id, &step, failure).await;
                            return Prepared::Failed;
                        }
                    }
                }
                other => match self.driver.ensure_image(other).await {
                    Ok(action) => action,
                    Err(err) => {
                        self.emit_failed(&plan.run_id, "prepare", err.into()).await;
                        return Prepared::Failed;
                    }
                },
            };
            self.emit(&plan.run_id, EventKind::ImageReady { reference: image.reference().to_owned(), action }).await;
        }
        Prepared::Ready
    }

    async fn networks(&self, plan: &Plan) -> Result<(), Failure> {
        // A plan without containers (only waits, say) touches nothing in Docker: Docker's
        // pool of network address ranges is small, and one network per instance adds up.
        let has_containers = plan.steps.iter().chain(&plan.teardown).any(|step| matches!(step.action, Action::Run(_) | Action::Service(_)));
        if has_containers {
            self.driver.ensure_network(&network_name(&plan.scope()), &Self::owner(plan, "", "", "network")).await?;
            for network in &plan.networks {
                self.driver.ensure_network(network, &Self::owner(plan, "", "", "network")).await?;
            }
        }
        Ok(())
    }

    /// Builds `build` unless an image with its tag (a digest of everything it is built from)
    /// is present, reporting the build as `step`.
    async fn build_image(&self, plan: &Plan, build: &BuildSpec, step: &str) -> Result<ImageAction, Failure> {
        if self.driver.has_image(&build.tag).await? {
            return Ok(ImageAction::Present);
        }
        self.emit(&plan.run_id, EventKind::StepStarted { step: step.to_owned(), attempt: 1 }).await;
        let mut output = self.driver.build_image(build).await?;
        let mut tail = VecDeque::with_capacity(TAIL_LINES);
        let mut buffer = LineBuffer::default();
        let mut error = None;
        while let Some(chunk) = output.next().await {
            match chunk {
                Ok(chunk) => self.build_lines(plan, step, buffer.push(&chunk), &mut tail).await,
                Err(err) => {
                    error = Some(err);
                    break;
                }
            }
        }
        self.build_lines(plan, step, buffer.finish().into_iter().collect(), &mut tail).await;
        if let Some(err) = error {
            let reason = format!("building {} failed: {err:#}", build.tag);
            return Err(Failure { reason, exit_code: None, tail: tail.into() });
        }
        self.emit(&plan.run_id, EventKind::StepSucceeded { step: step.to_owned(), container_id: None }).await;
        Ok(ImageAction::Built)
    }

    async fn build_lines(&self, plan: &Plan, step: &str, lines: Vec<String>, tail: &mut VecDeque<String>) {
        for line in lines {
            self.emit(&plan.run_id, EventKind::Log { step: step.to_owned(), line: line.clone() }).await;
            if let Some(percent) = build_progress(&line) {
                self.emit(&plan.run_id, EventKind::Progress { step: step.to_owned(), percent }).await;
            }
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(self.redactor.redact(&line));
        }
    }
}

/// The share of a build done when Docker starts `Step N/M : …`: N-1 of M steps.
fn build_progress(line: &str) -> Option<f32> {
    let (counts, _) = line.strip_prefix("Step ")?.split_once(" : ")?;
    let (step, total) = counts.split_once('/')?;
    let (step, total): (u32, u32) = (step.parse().ok()?, total.parse().ok()?);
    (step >= 1 && step <= total).then(|| (step - 1) as f32 * 100.0 / total as f32)
}

#[cfg(test)]
mod tests {
    use super::build_progress;

    #[test]
    fn docker_steps_are_the_builds_progress() {
        assert_eq!(build_progress("Step 1/4 : FROM debian"), Some(0.0));
        assert_eq!(build_progress("Step 3/4 : RUN sh /ctx/install.sh"), Some(50.0));
        assert_eq!(build_progress("Step 5/4 : RUN x"), None);
        assert_eq!(build_progress("Step 0/4 : RUN x"), None);
        assert_eq!(build_progress(" ---> Running in 5f2c"), None);
        assert_eq!(build_progress("Step 2/x : RUN"), None);
    }
}
