//! One step, from its first attempt to its end: each attempt bounded by the step's timeout,
//! failed attempts retried after the policy's backoff, and the step's container stopped when
//! an attempt fails or the run is cancelled.

use tokio_util::sync::CancellationToken;

use super::{instance_filter, Attempt, Failure, Runner, StepEnd};
use crate::executor::contract::labels;
use crate::executor::events::EventKind;
use crate::executor::plan::{Plan, PlannedStep};

impl Runner {
    /// Runs `step` until an attempt succeeds, the attempts run out, or `cancel` fires.
    pub(super) async fn run_step(&self, plan: &Plan, step: &PlannedStep, cancel: &CancellationToken) -> StepEnd {
        let attempts = step.retries.attempts.max(1);
        for attempt in 1..=attempts {
            self.emit(&plan.run_id, EventKind::StepStarted { step: step.name.clone(), attempt }).await;
            let outcome = tokio::select! {
                outcome = self.bounded_attempt(plan, step, cancel) => outcome,
                _ = cancel.cancelled() => {
                    self.stop_step_containers(plan, &step.name).await;
                    self.emit_failed(&plan.run_id, &step.name, Failure::new("cancelled")).await;
                    return StepEnd::Cancelled;
                }
            };
            let failure = match outcome {
                Attempt::Succeeded(container_id) => {
                    self.emit(&plan.run_id, EventKind::StepSucceeded { step: step.name.clone(), container_id }).await;
                    return StepEnd::Done;
                }
                Attempt::Unchanged(container_id) => {
                    self.emit(&plan.run_id, EventKind::StepUnchanged { step: step.name.clone(), container_id }).await;
                    return StepEnd::Done;
                }
                Attempt::Failed(failure) => failure,
            };
            // A timed-out run or service attempt leaves its container behind: stop it.
            self.stop_step_containers(plan, &step.name).await;
            if attempt == attempts {
                self.emit_failed(&plan.run_id, &step.name, failure).await;
                return StepEnd::Failed;
            }
            let delay = step.retries.delay_before(attempt + 1);
            self.emit(&plan.run_id, EventKind::StepRetrying { step: step.name.clone(), attempt: attempt + 1, reason: failure.reason })
                .await;
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = cancel.cancelled() => {
                    self.emit_failed(&plan.run_id, &step.name, Failure::new("cancelled")).await;
                    return StepEnd::Cancelled;
                }
            }
        }
        StepEnd::Failed
    }

    /// One attempt, failed when it outlasts the step's timeout.
    async fn bounded_attempt(&self, plan: &Plan, step: &PlannedStep, cancel: &CancellationToken) -> Attempt {
        let attempt = self.attempt(plan, step, cancel);
        match step.timeout {
            Some(limit) => tokio::time::timeout(limit, attempt)
                .await
                .unwrap_or_else(|_| Attempt::Failed(Failure::new(format!("timed out after {}", humantime::format_duration(limit))))),
            None => attempt.await,
        }
    }

    /// Stops this run's running containers of `step`.
    async fn stop_step_containers(&self, plan: &Plan, step: &str) {
        let filter = instance_filter(plan, &[(labels::STEP, step), (labels::RUN, plan.run_id.as_str())]);
        // Nothing found to stop is nothing to do: the attempt's own failure is what counts.
        if let Ok(found) = self.driver.find(&filter).await {
            self.stop_running(&found).await;
        }
    }
}
