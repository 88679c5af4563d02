//! A run's first phase: every artifact of the plan fetched into the cache at once, each
//! reported as a step named `artifact:NAME`, with its transfer progress.

use std::time::SystemTime;

use tokio_util::sync::CancellationToken;

use super::Runner;
use crate::executor::contract::ArtifactGuard;
use crate::executor::events::{Event, EventKind};
use crate::executor::plan::Plan;

/// How a run's artifact fetches ended.
pub(super) enum Fetched {
    /// All present; the guards keep them from eviction until the run ends.
    Ready(Vec<ArtifactGuard>),
    Failed,
    Cancelled,
}

impl Runner {
    /// Fetches every artifact of the plan at once (the store bounds concurrent downloads),
    /// each reported as a step named `artifact:NAME`.
    pub(super) async fn fetch(&self, plan: &Plan, cancel: &CancellationToken) -> Fetched {
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
}
