//! The runner: walks a plan's steps as a DAG, running independent steps in parallel within
//! the plan's limit, converging on what already exists, and reporting every change as an
//! event.
//!
//! A run goes through `fetch` (the plan's artifacts), `prepare` (networks and images, a
//! build reported as the step `image:NAME`), then
//! `walk` (the DAG within `max_parallel`), where each step's attempts, retries and timeouts
//! are the business of `attempts` and each step kind has its file under `steps`. `logs`
//! turns container output into events; `destroy` removes an instance. This file
//! holds the public API and the run's own scope: its time limit and cancellation.
//!
//! Convergence, by owner labels and spec hash (see [`contract::labels`]):
//! - a service whose running container has the same spec hash is left alone; a different
//!   hash replaces it;
//! - a run step whose last container (same hash) exited 0 is not run again;
//! - exec and wait steps run on every apply (exec commands must be idempotent).
//!
//! A failed step stops new steps from starting; the steps that need it are skipped, the ones
//! already running finish. Timeouts and cancellation stop the step's container.

mod attempts;
mod destroy;
mod fetch;
mod logs;
mod outputs;
mod prepare;
mod steps;
mod walk;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::contract::{self, labels, Artifacts, Driver, OwnerLabels};
use super::events::{Event, EventKind, Outcome, Redactor};
use super::plan::Plan;
use fetch::Fetched;
use prepare::Prepared;

pub use logs::progress;
pub use outputs::MAX_OUTPUT_FILE;
pub use walk::topological_order;

/// Lines of output kept for a failure report.
pub const TAIL_LINES: usize = 20;
/// How long a stopped container gets before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The Docker network every container of an instance joins (`scope`: see [`Plan::scope`]).
pub fn network_name(scope: &str) -> String {
    format!("pmesh-{scope}")
}

/// The container name of `step` (`scope`: see [`Plan::scope`]).
pub fn container_name(scope: &str, step: &str) -> String {
    // A repetition's name (`deploy[esxi-01]`) holds brackets, which Docker names may not.
    format!("pmesh-{scope}-{}", step.replace('[', "-").replace(']', ""))
}

/// The label filter selecting the plan's instance (and agent, when dispatched), plus `extra`.
pub(crate) fn instance_filter<'a>(plan: &'a Plan, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut filter = vec![(labels::INSTANCE, plan.instance.as_str())];
    if !plan.agent.is_empty() {
        filter.push((labels::AGENT, plan.agent.as_str()));
    }
    filter.extend_from_slice(extra);
    filter
}

/// Runs plans against a driver.
#[derive(Clone)]
pub struct Runner {
    driver: Arc<dyn Driver>,
    events: mpsc::Sender<Event>,
    redactor: Arc<Redactor>,
    artifacts: Option<Arc<dyn Artifacts>>,
}

/// How a step ended.
#[derive(Debug)]
enum StepEnd {
    Done,
    Failed,
    Cancelled,
}

/// Why an attempt (or the preparation of a run) failed, as a `StepFailed` event reports it.
struct Failure {
    reason: String,
    exit_code: Option<i64>,
    tail: Vec<String>,
}

impl Failure {
    fn new(reason: impl Into<String>) -> Self {
        Failure { reason: reason.into(), exit_code: None, tail: Vec::new() }
    }

    /// A container or command that exited non-zero.
    fn exited(exit_code: i64, tail: Vec<String>) -> Self {
        Failure { reason: format!("exited with code {exit_code}"), exit_code: Some(exit_code), tail }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Self {
        Failure::new(format!("{err:#}"))
    }
}

/// How one attempt of a step ended; the container id, when the step has one.
enum Attempt {
    Succeeded(Option<String>),
    Unchanged(Option<String>),
    Failed(Failure),
}

impl Runner {
    /// A runner reporting to `events`, redacting `secrets` from every line it reports.
    pub fn new(driver: Arc<dyn Driver>, events: mpsc::Sender<Event>, secrets: Vec<String>) -> Self {
        Runner { driver, events, redactor: Arc::new(Redactor::new(secrets)), artifacts: None }
    }

    /// The runner fetches plans' artifacts through `artifacts`; without it, a plan that has
    /// artifacts fails.
    pub fn with_artifacts(mut self, artifacts: Arc<dyn Artifacts>) -> Self {
        self.artifacts = Some(artifacts);
        self
    }

    async fn emit(&self, run_id: &str, kind: EventKind) {
        let kind = match kind {
            EventKind::Log { step, line } => EventKind::Log { step, line: self.redactor.redact(&line) },
            EventKind::StepFailed { step, reason, exit_code, tail } => EventKind::StepFailed {
                step,
                reason: self.redactor.redact(&reason),
                exit_code,
                tail: tail.iter().map(|line| self.redactor.redact(line)).collect(),
            },
            other => other,
        };
        // A watcher that went away does not stop the run.
        let _ = self.events.send(Event { at: SystemTime::now(), run_id: run_id.to_owned(), kind }).await;
    }

    /// Reports `failure` as the end of `step`.
    async fn emit_failed(&self, run_id: &str, step: &str, failure: Failure) {
        let kind =
            EventKind::StepFailed { step: step.to_owned(), reason: failure.reason, exit_code: failure.exit_code, tail: failure.tail };
        self.emit(run_id, kind).await;
    }

    fn owner(plan: &Plan, step: &str, spec_hash: &str, kind: &str) -> OwnerLabels {
        OwnerLabels {
            instance: plan.instance.clone(),
            run: plan.run_id.clone(),
            step: step.to_owned(),
            spec_hash: spec_hash.to_owned(),
            pattern: plan.pattern.clone(),
            kind: kind.to_owned(),
            agent: plan.agent.clone(),
        }
    }

    /// Applies `plan` until every step is done, one fails, or `cancel` fires.
    pub async fn apply(&self, plan: Plan, cancel: CancellationToken) -> Outcome {
        let plan = Arc::new(plan);
        let run_id = plan.run_id.clone();
        self.emit(
            &run_id,
            EventKind::RunStarted { instance: plan.instance.clone(), pattern: plan.pattern.clone(), n_steps: plan.steps.len() },
        )
        .await;
        // The run's scope: cancelled by the caller's token, and by the end of the run, which
        // stops the tasks that follow services' output.
        let scope = cancel.child_token();
        let timed_out = Arc::new(AtomicBool::new(false));
        if let Some(limit) = plan.timeout {
            let (scope, timed_out) = (scope.clone(), timed_out.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = scope.cancelled() => {}
                    _ = tokio::time::sleep(limit) => {
                        timed_out.store(true, Ordering::SeqCst);
                        scope.cancel();
                    }
                }
            });
        }
        let mut outcome = match self.fetch(&plan, &scope).await {
            Fetched::Ready(_in_use) => match self.prepare(&plan, &scope).await {
                Prepared::Ready => self.walk(plan.clone(), scope.clone()).await,
                Prepared::Failed => Outcome::Failed,
                Prepared::Cancelled => Outcome::Cancelled,
            },
            Fetched::Failed => Outcome::Failed,
            Fetched::Cancelled => Outcome::Cancelled,
        };
        scope.cancel();
        if outcome == Outcome::Cancelled {
            self.stop_run_containers(&plan).await;
            if timed_out.load(Ordering::SeqCst) {
                let limit = humantime::format_duration(plan.timeout.unwrap_or_default());
                self.emit_failed(&run_id, "run", Failure::new(format!("the run timed out after {limit}"))).await;
                outcome = Outcome::Failed;
            }
        }
        let mut outputs = Vec::new();
        if outcome == Outcome::Succeeded && !plan.outputs.is_empty() {
            match self.outputs(&plan).await {
                Ok(rendered) => outputs = rendered,
                Err(failure) => {
                    self.emit_failed(&run_id, "outputs", failure).await;
                    outcome = Outcome::Failed;
                }
            }
        }
        self.emit(&run_id, EventKind::RunFinished { outcome, outputs }).await;
        outcome
    }

    /// Stops every running container this run created (cancel stops services too).
    async fn stop_run_containers(&self, plan: &Plan) {
        let filter = instance_filter(plan, &[(labels::RUN, plan.run_id.as_str())]);
        match self.driver.find(&filter).await {
            Ok(found) => self.stop_running(&found).await,
            Err(err) => tracing::warn!(error = %err, "listing the run's containers failed"),
        }
    }

    /// Stops the running containers among `found`; a container that will not stop is logged,
    /// not fatal: the run is ending either way.
    async fn stop_running(&self, found: &[contract::Found]) {
        for container in found.iter().filter(|container| container.running) {
            if let Err(err) = self.driver.stop(&container.id, STOP_GRACE).await {
                tracing::warn!(container = %container.name, error = %err, "stopping a container failed");
            }
        }
    }
}
