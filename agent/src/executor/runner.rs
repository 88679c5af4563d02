//! The runner: walks a plan's steps as a DAG, running independent steps in parallel within
//! the plan's limit, converging on what already exists, and reporting every change as an
//! event.
//!
//! Convergence, by owner labels and spec hash (see [`contract::labels`]):
//! - a service whose running container has the same spec hash is left alone; a different
//!   hash replaces it;
//! - a run step whose last container (same hash) exited 0 is not run again;
//! - exec and wait steps run on every apply (exec commands must be idempotent).
//!
//! A failed step stops new steps from starting; the steps that need it are skipped, the ones
//! already running finish. Timeouts and cancellation stop the step's container.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::contract::{labels, ArtifactGuard, Artifacts, Driver, Health, OutputStream, OwnerLabels};
use super::events::{Event, EventKind, LineBuffer, Outcome, Redactor};
use super::plan::{Action, ContainerSpec, Plan, PlannedStep, Probe};
use super::probe;

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
    format!("pmesh-{scope}-{step}")
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

/// How a run's artifact fetches ended.
enum Fetched {
    /// All present; the guards keep them from eviction until the run ends.
    Ready(Vec<ArtifactGuard>),
    Failed,
    Cancelled,
}

/// How a step ended.
#[derive(Debug)]
enum StepEnd {
    Done,
    Failed,
    Cancelled,
}

struct Failure {
    reason: String,
    exit_code: Option<i64>,
    tail: Vec<String>,
}

impl Failure {
    fn new(reason: impl Into<String>) -> Self {
        Failure { reason: reason.into(), exit_code: None, tail: Vec::new() }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Self {
        Failure::new(format!("{err:#}"))
    }
}

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
        let timed_out = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if let Some(limit) = plan.timeout {
            let (scope, timed_out) = (scope.clone(), timed_out.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = scope.cancelled() => {}
                    _ = tokio::time::sleep(limit) => {
                        timed_out.store(true, std::sync::atomic::Ordering::SeqCst);
                        scope.cancel();
                    }
                }
            });
        }
        let mut outcome = match self.fetch(&plan, &scope).await {
            Fetched::Ready(_in_use) => match self.prepare(&plan).await {
                Ok(()) => self.walk(plan.clone(), scope.clone()).await,
                Err(failure) => {
                    self.emit(
                        &run_id,
                        EventKind::StepFailed { step: "prepare".into(), reason: failure.reason, exit_code: None, tail: failure.tail },
                    )
                    .await;
                    Outcome::Failed
                }
            },
            Fetched::Failed => Outcome::Failed,
            Fetched::Cancelled => Outcome::Cancelled,
        };
        scope.cancel();
        if outcome == Outcome::Cancelled {
            self.stop_run_containers(&plan).await;
            if timed_out.load(std::sync::atomic::Ordering::SeqCst) {
                let limit = humantime::format_duration(plan.timeout.unwrap_or_default());
                self.emit(
                    &run_id,
                    EventKind::StepFailed {
                        step: "run".into(),
                        reason: format!("the run timed out after {limit}"),
                        exit_code: None,
                        tail: vec![],
                    },
                )
                .await;
                outcome = Outcome::Failed;
            }
        }
        self.emit(&run_id, EventKind::RunFinished { outcome }).await;
        outcome
    }

    /// Stops every running container this run created (cancel stops services too).
    async fn stop_run_containers(&self, plan: &Plan) {
        let filter = instance_filter(plan, &[(labels::RUN, plan.run_id.as_str())]);
        match self.driver.find(&filter).await {
            Ok(found) => {
                for container in found.iter().filter(|container| container.running) {
                    if let Err(err) = self.driver.stop(&container.id, STOP_GRACE).await {
                        tracing::warn!(container = %container.name, error = %err, "stopping a container failed");
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "listing the run's containers failed"),
        }
    }

    /// Fetches every artifact of the plan at once (the store bounds concurrent downloads),
    /// each reported as a step named `artifact:NAME`.
    async fn fetch(&self, plan: &Plan, cancel: &CancellationToken) -> Fetched {
        if plan.artifacts.is_empty() {
            return Fetched::Ready(Vec::new());
        }
        let Some(store) = self.artifacts.clone() else {
            let reason = "this pattern needs artifacts, and this runner has no artifact cache".to_owned();
            self.emit(&plan.run_id, EventKind::StepFailed { step: "artifacts".into(), reason, exit_code: None, tail: vec![] }).await;
            return Fetched::Failed;
        };
        let fetches = plan.artifacts.iter().map(|artifact| {
            let store = store.clone();
            async move {
                let step = format!("artifact:{}", artifact.name);
                self.emit(&plan.run_id, EventKind::StepStarted { step: step.clone(), attempt: 1 }).await;
                // Progress is sampled (a few reports a second); one that finds the queue full
                // is dropped rather than holding up the transfer.
                let (events, run_id, progress_step) = (self.events.clone(), plan.run_id.clone(), step.clone());
                let progress = Box::new(move |transfer| {
                    let kind = EventKind::Transfer { step: progress_step.clone(), transfer };
                    let _ = events.try_send(Event { at: SystemTime::now(), run_id: run_id.clone(), kind });
                });
                match store.ensure(artifact, progress).await {
                    Ok(guard) => {
                        self.emit(&plan.run_id, EventKind::StepSucceeded { step, container_id: None }).await;
                        Some(guard)
                    }
                    Err(err) => {
                        self.emit(&plan.run_id, EventKind::StepFailed { step, reason: format!("{err:#}"), exit_code: None, tail: vec![] })
                            .await;
                        None
                    }
                }
            }
        });
        let all = futures_util::future::join_all(fetches);
        tokio::select! {
            fetched = all => match fetched.into_iter().collect::<Option<Vec<_>>>() {
                Some(guards) => Fetched::Ready(guards),
                None => Fetched::Failed,
            },
            _ = cancel.cancelled() => Fetched::Cancelled,
        }
    }

    async fn prepare(&self, plan: &Plan) -> Result<(), Failure> {
        // A plan without containers (only waits, say) touches nothing in Docker: Docker's
        // pool of network address ranges is small, and one network per instance adds up.
        let has_containers = plan.steps.iter().chain(&plan.teardown).any(|step| matches!(step.action, Action::Run(_) | Action::Service(_)));
        if has_containers {
            self.driver.ensure_network(&network_name(&plan.scope()), &Self::owner(plan, "", "", "network")).await?;
            for network in &plan.networks {
                self.driver.ensure_network(network, &Self::owner(plan, "", "", "network")).await?;
            }
        }
        for image in &plan.images {
            let action = self.driver.ensure_image(image).await?;
            let reference = match image {
                super::plan::ImageSource::Pull { reference, .. } => reference.clone(),
                super::plan::ImageSource::Load { tag, .. } | super::plan::ImageSource::Build { tag, .. } => tag.clone(),
            };
            self.emit(&plan.run_id, EventKind::ImageReady { reference, action }).await;
        }
        Ok(())
    }

    async fn walk(&self, plan: Arc<Plan>, cancel: CancellationToken) -> Outcome {
        #[derive(Clone, Copy, PartialEq, Eq, Debug)]
        enum State {
            Pending,
            Running,
            Done,
            Failed,
            Skipped,
        }
        let mut states: BTreeMap<String, State> = plan.steps.iter().map(|step| (step.name.clone(), State::Pending)).collect();
        let mut running: JoinSet<(String, StepEnd)> = JoinSet::new();
        let mut stopping = false;
        let mut cancelled = false;
        loop {
            // Skip what can no longer run; start what can.
            let mut progressed = true;
            while progressed {
                progressed = false;
                for step in &plan.steps {
                    if states[&step.name] != State::Pending {
                        continue;
                    }
                    let blocker = step.needs.iter().find(|need| matches!(states.get(*need), Some(State::Failed | State::Skipped)));
                    if let Some(blocker) = blocker {
                        states.insert(step.name.clone(), State::Skipped);
                        self.emit(
                            &plan.run_id,
                            EventKind::StepSkipped {
                                step: step.name.clone(),
                                reason: format!("it needs {blocker}, which did not succeed"),
                            },
                        )
                        .await;
                        progressed = true;
                        continue;
                    }
                    if stopping {
                        states.insert(step.name.clone(), State::Skipped);
                        let reason = if cancelled { "the run was cancelled" } else { "an earlier step failed" };
                        self.emit(&plan.run_id, EventKind::StepSkipped { step: step.name.clone(), reason: reason.into() }).await;
                        progressed = true;
                        continue;
                    }
                    let ready = step.needs.iter().all(|need| states.get(need) == Some(&State::Done));
                    if ready && running.len() < plan.max_parallel.max(1) {
                        states.insert(step.name.clone(), State::Running);
                        let runner = self.clone();
                        let plan = plan.clone();
                        let step = step.clone();
                        let cancel = cancel.clone();
                        running.spawn(async move {
                            let end = runner.run_step(&plan, &step, &cancel).await;
                            (step.name.clone(), end)
                        });
                    }
                }
            }
            let next = tokio::select! {
                joined = running.join_next() => joined,
                _ = cancel.cancelled(), if !cancelled => {
                    cancelled = true;
                    stopping = true;
                    continue;
                }
            };
            let Some(joined) = next else { break };
            let (name, end) = match joined {
                Ok(result) => result,
                Err(err) => {
                    tracing::error!(error = %err, "a step task panicked");
                    stopping = true;
                    continue;
                }
            };
            match end {
                StepEnd::Done => {
                    states.insert(name, State::Done);
                }
                StepEnd::Failed => {
                    states.insert(name, State::Failed);
                    stopping = true;
                }
                StepEnd::Cancelled => {
                    states.insert(name, State::Failed);
                    cancelled = true;
                    stopping = true;
                }
            }
        }
        if cancelled {
            Outcome::Cancelled
        } else if states.values().all(|state| *state == State::Done) {
            Outcome::Succeeded
        } else {
            Outcome::Failed
        }
    }

    async fn run_step(&self, plan: &Plan, step: &PlannedStep, cancel: &CancellationToken) -> StepEnd {
        let attempts = step.retries.attempts.max(1);
        for attempt in 1..=attempts {
            self.emit(&plan.run_id, EventKind::StepStarted { step: step.name.clone(), attempt }).await;
            let attempt_future = self.attempt(plan, step, cancel);
            let outcome = tokio::select! {
                outcome = async {
                    match step.timeout {
                        Some(limit) => tokio::time::timeout(limit, attempt_future).await.unwrap_or_else(|_| {
                            Attempt::Failed(Failure::new(format!("timed out after {}", humantime::format_duration(limit))))
                        }),
                        None => attempt_future.await,
                    }
                } => outcome,
                _ = cancel.cancelled() => {
                    self.stop_step_containers(plan, &step.name).await;
                    self.emit(&plan.run_id, EventKind::StepFailed { step: step.name.clone(), reason: "cancelled".into(), exit_code: None, tail: vec![] }).await;
                    return StepEnd::Cancelled;
                }
            };
            match outcome {
                Attempt::Succeeded(container_id) => {
                    self.emit(&plan.run_id, EventKind::StepSucceeded { step: step.name.clone(), container_id }).await;
                    return StepEnd::Done;
                }
                Attempt::Unchanged(container_id) => {
                    self.emit(&plan.run_id, EventKind::StepUnchanged { step: step.name.clone(), container_id }).await;
                    return StepEnd::Done;
                }
                Attempt::Failed(failure) => {
                    // A timed-out run or service attempt leaves its container behind: stop it.
                    self.stop_step_containers(plan, &step.name).await;
                    if attempt < attempts {
                        let delay = step.retries.delay_before(attempt + 1);
                        self.emit(
                            &plan.run_id,
                            EventKind::StepRetrying { step: step.name.clone(), attempt: attempt + 1, reason: failure.reason.clone() },
                        )
                        .await;
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => continue,
                            _ = cancel.cancelled() => {
                                self.emit(&plan.run_id, EventKind::StepFailed { step: step.name.clone(), reason: "cancelled".into(), exit_code: None, tail: vec![] }).await;
                                return StepEnd::Cancelled;
                            }
                        }
                    }
                    self.emit(
                        &plan.run_id,
                        EventKind::StepFailed {
                            step: step.name.clone(),
                            reason: failure.reason,
                            exit_code: failure.exit_code,
                            tail: failure.tail,
                        },
                    )
                    .await;
                    return StepEnd::Failed;
                }
            }
        }
        StepEnd::Failed
    }

    async fn stop_step_containers(&self, plan: &Plan, step: &str) {
        let filter = instance_filter(plan, &[(labels::STEP, step), (labels::RUN, plan.run_id.as_str())]);
        if let Ok(found) = self.driver.find(&filter).await {
            for container in found.iter().filter(|container| container.running) {
                if let Err(err) = self.driver.stop(&container.id, STOP_GRACE).await {
                    tracing::warn!(container = %container.name, error = %err, "stopping a container failed");
                }
            }
        }
    }

    async fn attempt(&self, plan: &Plan, step: &PlannedStep, cancel: &CancellationToken) -> Attempt {
        let result = match &step.action {
            Action::Run(spec) => self.run_container(plan, step, spec, "run").await,
            Action::Service(spec) => self.service(plan, step, spec, cancel).await,
            Action::Exec { service, command, env } => self.exec(plan, step, service, command, env).await,
            Action::Wait { probe, deadline, interval } => self.wait(plan, probe, *deadline, *interval).await,
        };
        result.unwrap_or_else(Attempt::Failed)
    }

    /// Existing containers of `step` in the plan's instance.
    async fn existing(&self, plan: &Plan, step: &str) -> anyhow::Result<Vec<super::contract::Found>> {
        self.driver.find(&instance_filter(plan, &[(labels::STEP, step)])).await
    }

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

    /// Streams a container's output as log and progress events, skipping the first `skip`
    /// lines (already reported before an agent restart); returns the last lines.
    async fn follow_logs(&self, plan: &Plan, step: &PlannedStep, mut logs: OutputStream, mut skip: u64) -> VecDeque<String> {
        let mut tail = VecDeque::with_capacity(TAIL_LINES);
        let mut buffer = LineBuffer::default();
        while let Some(chunk) = logs.next().await {
            let Ok(chunk) = chunk else { break };
            self.report_lines(plan, step, buffer.push(&chunk), &mut skip, &mut tail).await;
        }
        self.report_lines(plan, step, buffer.finish().into_iter().collect(), &mut skip, &mut tail).await;
        tail
    }

    /// Reports `lines` after the first `skip` of them, keeping the last ones in `tail`.
    async fn report_lines(&self, plan: &Plan, step: &PlannedStep, lines: Vec<String>, skip: &mut u64, tail: &mut VecDeque<String>) {
        for line in lines {
            if *skip > 0 {
                *skip -= 1;
                continue;
            }
            self.report_line(plan, step, &line).await;
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(self.redactor.redact(&line));
        }
    }

    async fn report_line(&self, plan: &Plan, step: &PlannedStep, line: &str) {
        self.emit(&plan.run_id, EventKind::Log { step: step.name.clone(), line: line.to_owned() }).await;
        if let Some(percent) = progress(&step.progress, line) {
            self.emit(&plan.run_id, EventKind::Progress { step: step.name.clone(), percent }).await;
        }
    }

    /// After an agent restart: the step's container from this run, if it still exists.
    async fn adoptable(&self, plan: &Plan, step: &str) -> Result<Option<super::contract::Found>, Failure> {
        let found = self.existing(plan, step).await?;
        Ok(found.into_iter().find(|container| container.label(labels::RUN) == plan.run_id))
    }

    fn vanished(step: &str) -> Failure {
        Failure::new(format!("the container of step {step} vanished while the agent was down"))
    }

    async fn run_container(&self, plan: &Plan, step: &PlannedStep, spec: &ContainerSpec, kind: &str) -> Result<Attempt, Failure> {
        if let Some(reported) = plan.resume.get(&step.name) {
            let container = self.adoptable(plan, &step.name).await?.ok_or_else(|| Self::vanished(&step.name))?;
            tracing::info!(step = %step.name, container = %container.name, "re-adopting a container after a restart");
            let tail = self.follow_logs(plan, step, self.driver.logs(&container.id), *reported).await;
            let exit_code = self.driver.wait(&container.id).await?;
            return Ok(if exit_code == 0 {
                Attempt::Succeeded(Some(container.id))
            } else {
                Attempt::Failed(Failure { reason: format!("exited with code {exit_code}"), exit_code: Some(exit_code), tail: tail.into() })
            });
        }
        let hash = spec.spec_hash();
        let existing = self.existing(plan, &step.name).await?;
        if let Some(done) =
            existing.iter().find(|found| found.label(labels::SPEC_HASH) == hash && !found.running && found.exit_code == Some(0))
        {
            return Ok(Attempt::Unchanged(Some(done.id.clone())));
        }
        let (id, output) = self.launch(plan, &step.name, spec, kind).await?;
        let tail = self.follow_logs(plan, step, output, 0).await;
        let exit_code = self.driver.wait(&id).await?;
        if exit_code == 0 {
            Ok(Attempt::Succeeded(Some(id)))
        } else {
            Ok(Attempt::Failed(Failure { reason: format!("exited with code {exit_code}"), exit_code: Some(exit_code), tail: tail.into() }))
        }
    }

    async fn service(&self, plan: &Plan, step: &PlannedStep, spec: &ContainerSpec, cancel: &CancellationToken) -> Result<Attempt, Failure> {
        let hash = spec.spec_hash();
        let existing = self.existing(plan, &step.name).await?;
        if let Some(current) = existing.iter().find(|found| found.label(labels::SPEC_HASH) == hash && found.running) {
            if existing.len() == 1 {
                return Ok(Attempt::Unchanged(Some(current.id.clone())));
            }
        }
        // A re-adopted service's output is read from its log file, after the lines reported
        // before the restart.
        let (id, output, skip) = if let Some(reported) = plan.resume.get(&step.name) {
            let id = self.adoptable(plan, &step.name).await?.ok_or_else(|| Self::vanished(&step.name))?.id;
            let output = self.driver.logs(&id);
            (id, output, *reported)
        } else {
            let (id, output) = self.launch(plan, &step.name, spec, "service").await?;
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
        loop {
            let (running, health) = self.driver.health(&id).await?;
            match (running, health) {
                (false, _) => {
                    let exit_code = self.driver.wait(&id).await.ok();
                    return Ok(Attempt::Failed(Failure {
                        reason: format!("the service exited (code {})", exit_code.unwrap_or(-1)),
                        exit_code,
                        tail: vec![],
                    }));
                }
                (true, Health::None | Health::Healthy) => return Ok(Attempt::Succeeded(Some(id))),
                (true, Health::Unhealthy) => return Ok(Attempt::Failed(Failure::new("the service's healthcheck reports unhealthy"))),
                (true, Health::Starting) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    async fn service_container(&self, plan: &Plan, service: &str) -> Result<String, Failure> {
        self.existing(plan, service)
            .await?
            .into_iter()
            .find(|found| found.running)
            .map(|found| found.id)
            .ok_or_else(|| Failure::new(format!("service {service} is not running")))
    }

    async fn exec(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        service: &str,
        command: &[String],
        env: &[super::plan::EnvVar],
    ) -> Result<Attempt, Failure> {
        let id = self.service_container(plan, service).await?;
        let env: Vec<String> = env.iter().map(|var| format!("{}={}", var.name, var.value.expose())).collect();
        let (exit_code, lines) = self.driver.exec(&id, command, &env).await?;
        for line in &lines {
            self.report_line(plan, step, line).await;
        }
        if exit_code == 0 {
            Ok(Attempt::Succeeded(None))
        } else {
            let tail = lines[lines.len().saturating_sub(TAIL_LINES)..].iter().map(|line| self.redactor.redact(line)).collect();
            Ok(Attempt::Failed(Failure { reason: format!("exited with code {exit_code}"), exit_code: Some(exit_code), tail }))
        }
    }

    async fn wait(&self, plan: &Plan, probe_spec: &Probe, deadline: Duration, interval: Duration) -> Result<Attempt, Failure> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let result = match probe_spec {
                Probe::Tcp { host, port } => probe::tcp(host, *port).await,
                Probe::Http { url, status } => probe::http(url, *status).await,
                Probe::Dns { server, port, name, record_type } => probe::dns(server, *port, name, record_type).await,
                Probe::Exec { service, command } => match self.service_container(plan, service).await {
                    Ok(id) => match self.driver.exec(&id, command, &[]).await {
                        Ok((0, _)) => Ok(()),
                        Ok((code, _)) => Err(anyhow::anyhow!("the probe command exited with code {code}")),
                        Err(err) => Err(err),
                    },
                    Err(failure) => Err(anyhow::anyhow!(failure.reason)),
                },
            };
            match result {
                Ok(()) => return Ok(Attempt::Succeeded(None)),
                Err(err) if tokio::time::Instant::now() + interval >= until => {
                    return Ok(Attempt::Failed(Failure::new(format!(
                        "the probe did not succeed within {}: {err:#}",
                        humantime::format_duration(deadline)
                    ))))
                }
                Err(_) => tokio::time::sleep(interval).await,
            }
        }
    }

    /// Removes everything of `instance`: runs the teardown steps, then removes its containers,
    /// networks and volumes, found by label. Returns the names removed.
    ///
    /// # Errors
    /// When Docker refuses a removal.
    pub async fn destroy(&self, plan: &Plan) -> anyhow::Result<Vec<String>> {
        for step in &plan.teardown {
            if let Action::Run(spec) = &step.action {
                match self.run_container(plan, step, spec, "teardown").await {
                    Ok(Attempt::Failed(failure)) | Err(failure) => {
                        tracing::warn!(step = %step.name, reason = %self.redactor.redact(&failure.reason), "a teardown hook failed");
                    }
                    Ok(_) => {}
                }
            }
        }
        let filter = instance_filter(plan, &[(labels::MANAGED, "true")]);
        let mut removed = Vec::new();
        for container in self.driver.find(&filter).await? {
            self.driver.remove(&container.id).await?;
            removed.push(container.name);
        }
        removed.extend(self.driver.remove_networks_and_volumes(&filter).await?);
        Ok(removed)
    }
}

/// The percentage a progress regex extracts from `line`, if any.
pub fn progress(patterns: &[regex::Regex], line: &str) -> Option<f32> {
    patterns.iter().find_map(|pattern| {
        let percent: f32 = pattern.captures(line)?.get(1)?.as_str().parse().ok()?;
        (0.0..=100.0).contains(&percent).then_some(percent)
    })
}

/// Step names in an order where every step comes after what it needs; `None` on a cycle.
pub fn topological_order(steps: &[PlannedStep]) -> Option<Vec<String>> {
    let mut remaining: HashMap<&str, Vec<&str>> =
        steps.iter().map(|step| (step.name.as_str(), step.needs.iter().map(String::as_str).collect())).collect();
    let mut order = Vec::new();
    while !remaining.is_empty() {
        let mut ready: Vec<&str> =
            remaining.iter().filter(|(_, needs)| needs.iter().all(|need| !remaining.contains_key(need))).map(|(name, _)| *name).collect();
        if ready.is_empty() {
            return None;
        }
        ready.sort_unstable();
        for name in ready {
            remaining.remove(name);
            order.push(name.to_owned());
        }
    }
    Some(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_regexes() {
        let patterns = vec![regex::Regex::new(r"Disk progress: (\d+)%").unwrap(), regex::Regex::new(r"\((\d+)%,").unwrap()];
        assert_eq!(progress(&patterns, "Disk progress: 42%"), Some(42.0));
        assert_eq!(progress(&patterns, "Uploading x.ova... (7%, 3 MiB/s)"), Some(7.0));
        assert_eq!(progress(&patterns, "Disk progress: 420%"), None);
        assert_eq!(progress(&patterns, "Opening OVA source"), None);
    }
}
