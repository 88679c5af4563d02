//! Destroying an instance the master asks for, from what this agent recorded itself: the
//! bundle and values of the instance's last run (its run record, in the journal) compile the
//! plan again, whose teardown hooks run before everything carrying the instance's labels is
//! removed. The master needs neither the pattern's directory nor its values.
//!
//! A destroy leaves a marker (`destroyed/INSTANCE`, the run it destroyed), so destroying it
//! again runs no hook and says so; a new run of the instance makes the marker stale.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{Runs, StartError};
use crate::docker::DockerDriver;
use crate::executor::runner::Runner;
use crate::journal::RunState;

/// What a destroy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destroyed {
    /// The containers, networks and volumes removed.
    pub removed: Vec<String>,
    /// The instance's last run was destroyed before: no hook ran again.
    pub already_destroyed: bool,
    /// The run whose record the destroy compiled.
    pub run_id: String,
}

/// Why a destroy was refused.
#[derive(Debug, thiserror::Error)]
pub enum DestroyError {
    /// This agent never ran the instance.
    #[error("no run of instance {0:?} is recorded on this agent")]
    Unknown(String),
    /// A run of the instance is in progress.
    #[error("run {run_id} of instance {instance:?} is in progress; cancel it (`pmesh runs cancel {run_id}`) or wait for it to end")]
    Busy { instance: String, run_id: String },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The marker a destroy leaves.
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    v: u32,
    run_id: String,
    at_unix: i64,
}

impl Runs {
    fn marker_path(&self, instance: &str) -> PathBuf {
        self.paths.data_dir.join("destroyed").join(instance)
    }

    /// Destroys `instance`: the teardown hooks of its last run's plan, then every container,
    /// network and volume carrying its labels (this agent's), then its rendered files.
    ///
    /// # Errors
    /// [`DestroyError::Unknown`] for an instance never run here, [`DestroyError::Busy`] while a
    /// run of it is in progress (nothing is touched then); internal errors when the journal,
    /// Docker or the disk fail.
    pub async fn destroy(self: &Arc<Self>, instance: &str) -> Result<Destroyed, DestroyError> {
        pmesh_proto::identity::validate_name(instance).map_err(|_| DestroyError::Unknown(instance.to_owned()))?;
        let mut runs: Vec<_> = self.journal.runs()?.into_iter().filter(|run| run.instance == instance).collect();
        runs.sort_by_key(|run| run.started_at_unix_ms);
        let last = runs.pop().ok_or_else(|| DestroyError::Unknown(instance.to_owned()))?;
        if last.state == RunState::Running {
            return Err(DestroyError::Busy { instance: instance.to_owned(), run_id: last.run_id });
        }
        let marker_path = self.marker_path(instance);
        let already_destroyed = std::fs::read(&marker_path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Marker>(&bytes).ok())
            .is_some_and(|marker| marker.run_id == last.run_id);

        let compiled = match self.compile_run(&last.run_id, &last.bundle_digest, instance, &last.values_json) {
            Ok(compiled) => compiled,
            Err(StartError::Internal(err)) => return Err(err.into()),
            Err(err) => return Err(anyhow::anyhow!("the recorded run {} of {instance} no longer compiles: {err}", last.run_id).into()),
        };
        let mut plan = compiled.plan;
        if already_destroyed {
            // The hooks ran when it was destroyed; only what still carries its labels goes.
            plan.teardown.clear();
        }
        let driver = DockerDriver::connect().await?;
        // The hooks' events are not a run's: they go to the agent's log only.
        let (tx, mut rx) = mpsc::channel(256);
        let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let runner = Runner::new(Arc::new(driver), tx, compiled.secrets);
        let removed = runner.destroy(&plan).await?;
        drop(runner);
        let _ = drain.await;

        let work_dir = self.paths.data_dir.join("instances").join(instance);
        if work_dir.exists() {
            std::fs::remove_dir_all(&work_dir).with_context(|| format!("removing {}", work_dir.display()))?;
        }
        let at_unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let marker = serde_json::to_vec(&Marker { v: 1, run_id: last.run_id.clone(), at_unix }).context("encoding a destroy marker")?;
        if let Some(dir) = marker_path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        pmesh_rt::files::write_private(&marker_path, &marker)?;
        tracing::info!(%instance, run = %last.run_id, n_removed = removed.len(), already_destroyed, "instance destroyed");
        Ok(Destroyed { removed, already_destroyed, run_id: last.run_id })
    }
}
