//! Unit tests of the runner against the in-memory driver of `executor::fake`, on tokio's
//! paused clock: backoff and timeouts take no real time, and the instant of every driver
//! call is exact. Each test asserts on the events the run emitted and on the calls the
//! driver recorded.
//!
//! - `attempts`: retries and backoff, step and run timeouts, cancellation;
//! - `walk`: a failure skipping its dependents, needs, `max_parallel`;
//! - `converge`: create, replace or leave alone, re-adoption after an agent restart;
//! - `phases`: the step kinds' details, artifacts, preparation and destroy;
//! - `outputs`: a succeeded run's outputs, from values and containers' files.
//! - `reload`: a service reloaded in place when only its `dir` files changed.

mod attempts;
mod build;
mod converge;
mod outputs;
mod phases;
mod reload;
mod walk;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Runner;
use crate::executor::events::{Event, EventKind, Outcome};
use crate::executor::fake::{Call, FakeArtifacts, FakeDriver};
use crate::executor::plan::{Action, ContainerSpec, Plan, PlannedStep, RestartPolicy, RetryPolicy};

const RUN_ID: &str = "run-1";
const INSTANCE: &str = "inst";
/// Past this (on the paused clock, so at once), a run that never ends fails its test rather
/// than hanging it.
const HANG: Duration = Duration::from_secs(24 * 3600);

fn spec(command: &str) -> ContainerSpec {
    ContainerSpec {
        image: "tools:1".into(),
        entrypoint: None,
        command: vec![command.to_owned()],
        env: vec![],
        mounts: vec![],
        ports: vec![],
        networks: vec![],
        restart: RestartPolicy::No,
        healthcheck: None,
        memory_bytes: None,
        nano_cpus: None,
        workdir: None,
        user: None,
        inputs: BTreeMap::new(),
        reload: None,
        capabilities: vec![],
    }
}

fn step(name: &str, needs: &[&str], action: Action) -> PlannedStep {
    PlannedStep {
        group: None,
        name: name.to_owned(),
        needs: needs.iter().map(|need| (*need).to_owned()).collect(),
        timeout: None,
        retries: RetryPolicy::default(),
        progress: vec![],
        action,
    }
}

/// A run step whose container runs `name`.
fn run(name: &str, needs: &[&str]) -> PlannedStep {
    step(name, needs, Action::Run(spec(name)))
}

fn service(name: &str, needs: &[&str]) -> PlannedStep {
    step(name, needs, Action::Service(spec(name)))
}

fn retried(mut step: PlannedStep, attempts: u32, backoff: Duration) -> PlannedStep {
    step.retries = RetryPolicy { attempts, backoff };
    step
}

fn plan(steps: Vec<PlannedStep>) -> Plan {
    Plan {
        instance: INSTANCE.into(),
        agent: String::new(),
        pattern: "test@0.1.0".into(),
        run_id: RUN_ID.into(),
        artifacts: vec![],
        images: vec![],
        networks: vec![],
        steps,
        teardown: vec![],
        max_parallel: 4,
        timeout: None,
        resume: BTreeMap::new(),
        outputs: vec![],
    }
}

/// A runner on `driver` (and `artifacts`), with a queue that holds a whole test's events.
fn runner(driver: &Arc<FakeDriver>, artifacts: Option<&Arc<FakeArtifacts>>) -> (Runner, mpsc::Receiver<Event>) {
    let (tx, rx) = mpsc::channel(10_000);
    let mut runner = Runner::new(driver.clone(), tx, vec!["hunter2".into()]);
    if let Some(artifacts) = artifacts {
        runner = runner.with_artifacts(artifacts.clone());
    }
    (runner, rx)
}

/// Applies `plan` to the end; returns its outcome and every event.
async fn apply(driver: &Arc<FakeDriver>, plan: Plan) -> (Outcome, Vec<EventKind>) {
    let (runner, mut rx) = runner(driver, None);
    let outcome = tokio::time::timeout(HANG, runner.apply(plan, CancellationToken::new())).await.expect("the run ends");
    (outcome, drain(&mut rx))
}

/// Applies `plan` in a task of its own, for a test that acts while it runs.
fn spawn_apply(runner: Runner, plan: Plan, cancel: CancellationToken) -> tokio::task::JoinHandle<Outcome> {
    tokio::spawn(async move { runner.apply(plan, cancel).await })
}

/// The events queued so far, checked to belong to the run.
fn drain(rx: &mut mpsc::Receiver<Event>) -> Vec<EventKind> {
    let mut kinds = Vec::new();
    while let Ok(event) = rx.try_recv() {
        assert_eq!(event.run_id, RUN_ID);
        kinds.push(event.kind);
    }
    kinds
}

/// Events until (and with) the first one `until` accepts.
async fn events_until(rx: &mut mpsc::Receiver<Event>, until: impl Fn(&EventKind) -> bool) -> Vec<EventKind> {
    let mut kinds = Vec::new();
    loop {
        let event = tokio::time::timeout(HANG, rx.recv()).await.expect("the awaited event comes").expect("it comes before the run ends");
        let done = until(&event.kind);
        kinds.push(event.kind);
        if done {
            return kinds;
        }
    }
}

/// The events of `step`, in order.
fn of_step(events: &[EventKind], step: &str) -> Vec<EventKind> {
    events.iter().filter(|kind| kind.step() == Some(step)).cloned().collect()
}

fn started(step: &str, attempt: u32) -> EventKind {
    EventKind::StepStarted { step: step.into(), attempt }
}

fn log(step: &str, line: &str) -> EventKind {
    EventKind::Log { step: step.into(), line: line.into() }
}

fn retrying(step: &str, attempt: u32, reason: &str) -> EventKind {
    EventKind::StepRetrying { step: step.into(), attempt, reason: reason.into() }
}

fn succeeded(step: &str, container_id: Option<&str>) -> EventKind {
    EventKind::StepSucceeded { step: step.into(), container_id: container_id.map(str::to_owned) }
}

fn unchanged(step: &str, container_id: &str) -> EventKind {
    EventKind::StepUnchanged { step: step.into(), container_id: Some(container_id.into()) }
}

fn failed(step: &str, reason: &str, exit_code: Option<i64>, tail: &[&str]) -> EventKind {
    EventKind::StepFailed {
        step: step.into(),
        reason: reason.into(),
        exit_code,
        tail: tail.iter().map(|line| (*line).to_owned()).collect(),
    }
}

fn skipped(step: &str, reason: &str) -> EventKind {
    EventKind::StepSkipped { step: step.into(), reason: reason.into() }
}

fn finished(outcome: Outcome) -> EventKind {
    EventKind::RunFinished { outcome, outputs: vec![] }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The containers created: when, for which step, with which id.
fn creates(driver: &FakeDriver) -> Vec<(Duration, String, String)> {
    let calls = driver.calls_at().into_iter();
    calls.filter_map(|(at, call)| if let Call::Create { id, step, .. } = call { Some((at, step, id)) } else { None }).collect()
}

/// The containers stopped: when, and which.
fn stops(driver: &FakeDriver) -> Vec<(Duration, String)> {
    driver.calls_at().into_iter().filter_map(|(at, call)| if let Call::Stop(id) = call { Some((at, id)) } else { None }).collect()
}

fn removes(driver: &FakeDriver) -> Vec<String> {
    driver.calls().into_iter().filter_map(|call| if let Call::Remove(id) = call { Some(id) } else { None }).collect()
}

fn created(at: u64, step: &str, id: &str) -> (Duration, String, String) {
    (secs(at), step.to_owned(), id.to_owned())
}
