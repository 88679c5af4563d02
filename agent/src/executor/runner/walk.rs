//! The DAG walk: starts every step whose needs are done, at most `max_parallel` at once (and
//! at most a repeated step's `parallel` of its repetitions);
//! after a failure or a cancellation it starts nothing more, skips what can no longer run,
//! and lets the steps already running finish.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Runner, StepEnd};
use crate::executor::events::{EventKind, Outcome};
use crate::executor::plan::{Plan, PlannedStep};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Pending,
    Running,
    Done,
    Failed,
    Skipped,
}

/// Where a walk stands: each step's state, the tasks running steps, and whether it stops.
struct Walk {
    states: BTreeMap<String, State>,
    running: JoinSet<(String, StepEnd)>,
    /// A step failed or the run was cancelled: nothing new starts.
    stopping: bool,
    cancelled: bool,
}

impl Walk {
    fn new(plan: &Plan) -> Walk {
        let states = plan.steps.iter().map(|step| (step.name.clone(), State::Pending)).collect();
        Walk { states, running: JoinSet::new(), stopping: false, cancelled: false }
    }

    /// Why a pending `step` will never run, if it will not.
    fn skip_reason(&self, step: &PlannedStep) -> Option<String> {
        let blocker = step.needs.iter().find(|need| matches!(self.states.get(*need), Some(State::Failed | State::Skipped)));
        if let Some(blocker) = blocker {
            return Some(format!("it needs {blocker}, which did not succeed"));
        }
        if self.stopping {
            let reason = if self.cancelled { "the run was cancelled" } else { "an earlier step failed" };
            return Some(reason.to_owned());
        }
        None
    }

    /// Records how a step task ended.
    fn record(&mut self, joined: Result<(String, StepEnd), tokio::task::JoinError>) {
        let (name, end) = match joined {
            Ok(result) => result,
            Err(err) => {
                tracing::error!(error = %err, "a step task panicked");
                self.stopping = true;
                return;
            }
        };
        match end {
            StepEnd::Done => {
                self.states.insert(name, State::Done);
            }
            StepEnd::Failed => {
                self.states.insert(name, State::Failed);
                self.stopping = true;
            }
            StepEnd::Cancelled => {
                self.states.insert(name, State::Failed);
                self.cancelled = true;
                self.stopping = true;
            }
        }
    }

    /// Whether `step` is a repetition whose group already runs `parallel` repetitions.
    fn group_full(&self, plan: &Plan, step: &PlannedStep) -> bool {
        let Some(group) = &step.group else { return false };
        let running = plan
            .steps
            .iter()
            .filter(|other| other.group.as_ref().is_some_and(|own| own.step == group.step))
            .filter(|other| self.states.get(&other.name) == Some(&State::Running))
            .count();
        running >= group.parallel.max(1)
    }

    fn outcome(&self) -> Outcome {
        if self.cancelled {
            Outcome::Cancelled
        } else if self.states.values().all(|state| *state == State::Done) {
            Outcome::Succeeded
        } else {
            Outcome::Failed
        }
    }
}

impl Runner {
    /// Runs the plan's steps in dependency order until all are done, one fails, or `cancel`
    /// fires.
    pub(super) async fn walk(&self, plan: Arc<Plan>, cancel: CancellationToken) -> Outcome {
        let mut walk = Walk::new(&plan);
        loop {
            self.schedule(&plan, &cancel, &mut walk).await;
            let next = tokio::select! {
                joined = walk.running.join_next() => joined,
                _ = cancel.cancelled(), if !walk.cancelled => {
                    walk.cancelled = true;
                    walk.stopping = true;
                    continue;
                }
            };
            let Some(joined) = next else { break };
            walk.record(joined);
        }
        walk.outcome()
    }

    /// Skips what can no longer run and starts what can, until nothing changes: a skip can
    /// make the steps that need the skipped one skippable in turn.
    async fn schedule(&self, plan: &Arc<Plan>, cancel: &CancellationToken, walk: &mut Walk) {
        let mut progressed = true;
        while progressed {
            progressed = false;
            for step in &plan.steps {
                if walk.states[&step.name] != State::Pending {
                    continue;
                }
                if let Some(reason) = walk.skip_reason(step) {
                    walk.states.insert(step.name.clone(), State::Skipped);
                    self.emit(&plan.run_id, EventKind::StepSkipped { step: step.name.clone(), reason }).await;
                    progressed = true;
                    continue;
                }
                let ready = step.needs.iter().all(|need| walk.states.get(need) == Some(&State::Done));
                if ready && walk.running.len() < plan.max_parallel.max(1) && !walk.group_full(plan, step) {
                    walk.states.insert(step.name.clone(), State::Running);
                    let (runner, plan, step, cancel) = (self.clone(), plan.clone(), step.clone(), cancel.clone());
                    walk.running.spawn(async move {
                        let end = runner.run_step(&plan, &step, &cancel).await;
                        (step.name.clone(), end)
                    });
                }
            }
        }
    }
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
