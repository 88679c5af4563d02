//! Runs started by the master: a held bundle, values and an instance become a compiled plan,
//! run in the background with every event journalled before anyone can read it.
//!
//! A run id is idempotent: the journal records it atomically, and a start with a known id
//! starts nothing. Everything is validated (bundle held, pattern, values, compile) before the
//! run is recorded, so a refused start leaves no trace.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use pmesh_proto::pattern;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::artifacts::AgentArtifacts;
use crate::bundles::{BundleStore, StoreError};
use crate::compile::{self, Inputs};
use crate::config::AgentConfig;
use crate::docker::DockerDriver;
use crate::executor::events::{Event, EventKind, Outcome};
use crate::executor::preview::{preview, Planned};
use crate::executor::runner::Runner;
use crate::journal::pump::{self, MAX_BATCH};
use crate::journal::{Journal, RunRecord, RunState, StepState};
use crate::state::{self, Paths};

mod destroy;

pub use destroy::{DestroyError, Destroyed};

/// Why a start was refused.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The request cannot run as given; the message lists every problem, one per line.
    #[error("{0}")]
    Invalid(String),
    /// A bundle sent with the request does not verify (signature, digest, archive).
    #[error("bundle refused: {0}")]
    Refused(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The agent's runs.
pub struct Runs {
    journal: Arc<Journal>,
    paths: Paths,
    config: AgentConfig,
    active: Mutex<HashMap<String, CancellationToken>>,
    /// One permit per run allowed to run at once (`max_concurrent_runs`).
    permits: Arc<tokio::sync::Semaphore>,
    artifacts: Arc<AgentArtifacts>,
}

impl Runs {
    pub fn new(journal: Arc<Journal>, paths: Paths, config: AgentConfig, artifacts: Arc<AgentArtifacts>) -> Runs {
        let permits = Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_runs.max(1)));
        Runs { journal, paths, config, active: Mutex::new(HashMap::new()), permits, artifacts }
    }

    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// Starts a run; `Ok(false)` when the id is known already.
    ///
    /// # Errors
    /// [`StartError::Invalid`] when the bundle is not held or the pattern, values or plan are
    /// invalid: nothing is recorded or created then.
    pub async fn start(
        self: &Arc<Self>,
        run_id: &str,
        digest: &str,
        instance: &str,
        values_json: &str,
        timeout: Option<std::time::Duration>,
    ) -> Result<bool, StartError> {
        let invalid = |message: String| StartError::Invalid(message);
        if run_id.is_empty() || !run_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(invalid(format!("run id {run_id:?}: use letters, digits and '-'")));
        }
        if self.journal.run(run_id)?.is_some() {
            return Ok(false);
        }
        let mut compiled = self.compile_run(run_id, digest, instance, values_json)?;
        compiled.plan.timeout = timeout;

        let started_at_unix_ms = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        let record = RunRecord {
            v: 1,
            run_id: run_id.to_owned(),
            instance: instance.to_owned(),
            bundle_digest: digest.to_owned(),
            started_at_unix_ms,
            state: RunState::Running,
            values_json: values_json.to_owned(),
            steps: BTreeMap::new(),
            announced: false,
            images: Default::default(),
            outputs: vec![],
        };
        if !self.journal.insert_run(&record)? {
            return Ok(false);
        }
        compiled.materials.write()?;
        self.spawn_drive(run_id.to_owned(), compiled);
        Ok(true)
    }

    /// The bundle store, keyed by the enrolment's bundle-signing key, and the agent's name
    /// and advertised address (what outputs' `${host.name}` and `${host.address}` are).
    fn bundle_store(&self) -> Result<(BundleStore, pattern::RunFacts), StartError> {
        let enrolment = state::load_enrolment(&self.paths)?;
        let key = hex::decode(&enrolment.bundle_signing_key).map_err(|_| anyhow::anyhow!("the enrolment's bundle key is damaged"))?;
        let facts = pattern::RunFacts {
            host_address: compile::host_of(&enrolment.advertise).to_owned(),
            host_name: enrolment.name,
            ..Default::default()
        };
        Ok((BundleStore::new(&self.paths.data_dir, key), facts))
    }

    /// Validates and compiles a run of a held bundle.
    ///
    /// # Errors
    /// [`StartError::Invalid`] listing every problem.
    fn compile_run(&self, run_id: &str, digest: &str, instance: &str, values_json: &str) -> Result<compile::Compiled, StartError> {
        let (store, facts) = self.bundle_store()?;
        let files: BTreeMap<String, Vec<u8>> = match store.open(digest) {
            Ok(files) => files.into_iter().map(|(path, file)| (path, file.contents)).collect(),
            Err(StoreError::Missing(_)) => return Err(StartError::Invalid(format!("bundle {digest} is not on this agent; push it first"))),
            Err(err) => return Err(StartError::Invalid(err.to_string())),
        };
        self.compile_files(&files, &facts, run_id, instance, values_json)
    }

    /// What a run of a bundle sent with the request would do here; nothing is stored,
    /// written or created.
    ///
    /// # Errors
    /// [`StartError::Refused`] for a bundle that does not verify; [`StartError::Invalid`] for a
    /// run that does not compile; [`StartError::Internal`] when Docker cannot be asked.
    pub async fn plan(
        &self,
        digest: &str,
        archive: &[u8],
        signature: &[u8],
        instance: &str,
        values_json: &str,
    ) -> Result<Vec<Planned>, StartError> {
        let (store, facts) = self.bundle_store()?;
        let files: BTreeMap<String, Vec<u8>> = store
            .verify(digest, archive, signature)
            .map_err(|err| match err {
                StoreError::Refused(reason) => StartError::Refused(reason),
                other => StartError::Invalid(other.to_string()),
            })?
            .into_iter()
            .map(|(path, file)| (path, file.contents))
            .collect();
        let compiled = self.compile_files(&files, &facts, "plan", instance, values_json)?;
        let driver = DockerDriver::connect().await?;
        let mut planned = preview(&driver, self.artifacts.as_ref(), &compiled.plan).await?;
        crate::ports::check(&compiled.plan, &mut planned);
        Ok(planned)
    }

    fn compile_files(
        &self,
        files: &BTreeMap<String, Vec<u8>>,
        facts: &pattern::RunFacts,
        run_id: &str,
        instance: &str,
        values_json: &str,
    ) -> Result<compile::Compiled, StartError> {
        let invalid = |message: String| StartError::Invalid(message);
        pmesh_proto::identity::validate_name(instance).map_err(|err| invalid(format!("instance: {err}")))?;
        let parsed = pattern::parse(files).map_err(|diagnostics| invalid(lines(&diagnostics)))?;
        let refusals = self.config.security.refusals(&parsed);
        if !refusals.is_empty() {
            return Err(invalid(refusals.join("\n")));
        }
        let supplied = pattern::values_from_yaml("values", if values_json.trim().is_empty() { "{}" } else { values_json })
            .map_err(|diagnostics| invalid(lines(&diagnostics)))?;
        let params = pattern::validate_values(&parsed, &supplied).map_err(|problems| invalid(lines(&problems)))?;
        let work_dir = self.paths.data_dir.join("instances").join(instance);
        let artifacts: BTreeMap<String, std::path::PathBuf> =
            parsed.artifacts.iter().map(|(name, artifact)| (name.clone(), self.artifacts.path_of(&artifact.sha256))).collect();
        let inputs = Inputs {
            files,
            params: &params,
            instance,
            agent: &facts.host_name,
            run_id,
            work_dir: &work_dir,
            images: &self.config.images,
            artifacts: &artifacts,
            max_parallel: self.config.max_parallel_steps,
            facts,
        };
        compile::compile(&parsed, &inputs).map_err(|err| invalid(err.to_string()))
    }

    async fn drive(&self, compiled: compile::Compiled, cancel: CancellationToken) -> Outcome {
        let (tx, rx) = mpsc::channel::<Event>(4 * MAX_BATCH);
        let journal = self.journal.clone();
        // A batch the journal cannot write is retried, not dropped: the runner waits meanwhile.
        let pump = tokio::spawn(async move { pump::pump(journal.as_ref(), rx).await });
        let run_id = compiled.plan.run_id.clone();
        let outcome = match DockerDriver::connect().await {
            Ok(driver) => {
                let runner = Runner::new(Arc::new(driver), tx, compiled.secrets).with_artifacts(self.artifacts.clone());
                runner.apply(compiled.plan, cancel).await
            }
            Err(err) => {
                let now = SystemTime::now();
                let events = [
                    EventKind::RunStarted {
                        instance: compiled.plan.instance.clone(),
                        pattern: compiled.plan.pattern.clone(),
                        n_steps: compiled.plan.steps.len(),
                    },
                    EventKind::StepFailed { step: "prepare".into(), reason: format!("{err:#}"), exit_code: None, tail: vec![] },
                    EventKind::RunFinished { outcome: Outcome::Failed, outputs: vec![] },
                ];
                for kind in events {
                    let _ = tx.send(Event { at: now, run_id: run_id.clone(), kind }).await;
                }
                drop(tx);
                Outcome::Failed
            }
        };
        let _ = pump.await;
        outcome
    }

    /// Resumes the runs an agent restart interrupted: each is compiled again from its bundle
    /// and values, and its running steps' containers are re-adopted rather than restarted.
    ///
    /// # Errors
    /// When the journal cannot be read; a run that cannot be resumed is marked failed.
    pub fn resume_interrupted(self: &Arc<Self>) -> anyhow::Result<usize> {
        let interrupted = self.journal.interrupted_runs()?;
        let n_runs = interrupted.len();
        for run in interrupted {
            match self.compile_run(&run.run_id, &run.bundle_digest, &run.instance, &run.values_json) {
                Ok(mut compiled) => {
                    compiled.plan.resume = run
                        .steps
                        .iter()
                        .filter(|(_, progress)| progress.state == StepState::Running)
                        .map(|(step, progress)| (step.clone(), progress.lines))
                        .collect();
                    tracing::info!(run = %run.run_id, resumed_steps = compiled.plan.resume.len(), "resuming a run after a restart");
                    self.spawn_drive(run.run_id.clone(), compiled);
                }
                Err(err) => {
                    tracing::error!(run = %run.run_id, error = %err, "cannot resume a run; marking it failed");
                    self.journal.set_run_state(&run.run_id, RunState::Failed)?;
                }
            }
        }
        Ok(n_runs)
    }

    fn spawn_drive(self: &Arc<Self>, run_id: String, compiled: compile::Compiled) {
        let cancel = CancellationToken::new();
        self.active.lock().expect("runs lock").insert(run_id.clone(), cancel.clone());
        let runs = self.clone();
        tokio::spawn(async move {
            // Runs past `max_concurrent_runs` wait here, cancellable, for their turn.
            let permit = tokio::select! {
                permit = runs.permits.clone().acquire_owned() => permit.ok(),
                _ = cancel.cancelled() => None,
            };
            let outcome = runs.drive(compiled, cancel).await;
            drop(permit);
            runs.active.lock().expect("runs lock").remove(&run_id);
            if let Err(err) = runs.journal.set_run_state(&run_id, RunState::from(outcome)) {
                tracing::error!(run = %run_id, error = %err, "recording the run's end failed");
            }
            tracing::info!(run = %run_id, outcome = outcome.name(), "run finished");
        });
    }

    /// The outputs of `instance`'s run `run_id` (its last succeeded run here when empty),
    /// secret values included; `None` when there is no such succeeded run.
    ///
    /// # Errors
    /// When the journal cannot be read.
    pub fn instance_outputs(&self, instance: &str, run_id: &str) -> anyhow::Result<Option<RunRecord>> {
        let mut runs: Vec<RunRecord> = self
            .journal
            .runs()?
            .into_iter()
            .filter(|run| run.instance == instance && run.state == RunState::Succeeded && (run_id.is_empty() || run.run_id == run_id))
            .collect();
        runs.sort_by_key(|run| run.started_at_unix_ms);
        Ok(runs.pop())
    }

    /// Cancels a running run; `false` when it is not running here.
    pub fn cancel(&self, run_id: &str) -> bool {
        match self.active.lock().expect("runs lock").get(run_id) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }
}

fn lines<T: std::fmt::Display>(problems: &[T]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}
