//! `pmesh-agent pattern apply|destroy`: run a pattern on this agent directly, without a
//! master. For pattern authors, and for testing a pattern on a pattern controller before
//! dispatch; the master's `pmesh run` drives the same compile and runner.
//!
//! Progress is printed as one plain, timestamped line per event.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pmesh_proto::pattern::{self, ParamValue, Pattern};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::artifacts::AgentArtifacts;
use crate::compile::{self, Inputs};
use crate::config::AgentConfig;
use crate::docker::DockerDriver;
use crate::executor::events::{Event, EventKind, Outcome};
use crate::executor::runner::Runner;
use crate::exit::{self, CliError};

/// What `pattern apply` and `pattern destroy` were given.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub pattern: PathBuf,
    pub instance: String,
    /// `-p name=value`, in order; later ones win.
    pub assignments: Vec<String>,
    /// `-f values.yaml`.
    pub values_file: Option<PathBuf>,
    pub data_dir: PathBuf,
}

fn usage(message: impl Into<String>) -> CliError {
    CliError::new(exit::USAGE, message)
}

/// Reads and parses the pattern; every problem goes to stderr as `FILE:LINE:COLUMN: message`.
fn load(path: &Path) -> Result<(BTreeMap<String, Vec<u8>>, Pattern), CliError> {
    let dir = pmesh_rt::pattern_dir::read(path).map_err(|err| usage(err.to_string()))?;
    match pattern::parse(&dir.files) {
        Ok(parsed) => Ok((dir.files, parsed)),
        Err(diagnostics) => {
            for diagnostic in &diagnostics {
                pmesh_rt::note!("{}", dir.root.join(diagnostic.to_string()).display());
            }
            Err(usage(format!("{} problem(s) in {}; nothing was changed", diagnostics.len(), dir.root.display())))
        }
    }
}

/// The supplied values: the values file first, then each `-p` over it.
fn values(options: &LocalOptions) -> Result<BTreeMap<String, ParamValue>, CliError> {
    let mut values = BTreeMap::new();
    if let Some(file) = &options.values_file {
        let text = std::fs::read_to_string(file).map_err(|err| usage(format!("{}: {err}", file.display())))?;
        let parsed = pattern::values_from_yaml(&file.display().to_string(), &text)
            .map_err(|diagnostics| usage(diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")))?;
        values.extend(parsed);
    }
    for assignment in &options.assignments {
        let (name, value) = pattern::parse_assignment(assignment).map_err(|problem| usage(problem.to_string()))?;
        values.insert(name, value);
    }
    Ok(values)
}

/// A pattern's artifacts need the agent's cache; a local apply opens it only then, since the
/// running daemon holds it (and a local apply of such a pattern is refused while it runs).
/// A destroy (`fetching` false) mounts nothing and needs no cache.
async fn compile_for(
    options: &LocalOptions,
    config: &AgentConfig,
    run_id: &str,
    fetching: bool,
) -> Result<(compile::Compiled, Option<Arc<AgentArtifacts>>), CliError> {
    pmesh_proto::identity::validate_name(&options.instance).map_err(|err| usage(format!("--instance: {err}")))?;
    let (files, parsed) = load(&options.pattern)?;
    // A destroy creates nothing, so it removes an instance whatever its steps asked for.
    let refusals = if fetching { config.security.refusals(&parsed) } else { Vec::new() };
    if !refusals.is_empty() {
        return Err(usage(refusals.join("\n")));
    }
    let supplied = values(options)?;
    let params = pattern::validate_values(&parsed, &supplied)
        .map_err(|problems| usage(problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")))?;
    let work_dir = options.data_dir.join("instances").join(&options.instance);
    let store = if parsed.artifacts.is_empty() || !fetching {
        None
    } else {
        Some(Arc::new(
            AgentArtifacts::open(&options.data_dir, &config.artifacts, None)
                .map_err(|err| CliError::new(exit::FAILED, format!("{err:#}")))?,
        ))
    };
    let artifacts: BTreeMap<String, PathBuf> = match &store {
        Some(store) => parsed.artifacts.iter().map(|(name, artifact)| (name.clone(), store.path_of(&artifact.sha256))).collect(),
        None => parsed.artifacts.keys().map(|name| (name.clone(), PathBuf::new())).collect(),
    };
    // A local apply has no advertised address: the host's name stands for both.
    let host = crate::facts::hostname();
    let facts = pattern::RunFacts { host_address: host.clone(), host_name: host, ..Default::default() };
    let inputs = Inputs {
        files: &files,
        params: &params,
        instance: &options.instance,
        agent: "",
        run_id,
        work_dir: &work_dir,
        images: &config.images,
        artifacts: &artifacts,
        max_parallel: config.max_parallel_steps,
        facts: &facts,
    };
    let compiled = compile::compile(&parsed, &inputs).map_err(|err| usage(err.to_string()))?;
    Ok((compiled, store))
}

/// Applies the pattern to the instance, printing progress; returns the exit code.
///
/// # Errors
/// A [`CliError`] when the pattern or values are invalid (nothing is changed then) or Docker
/// cannot be reached.
pub async fn apply(options: LocalOptions, config: AgentConfig) -> Result<u8, CliError> {
    let run_id = compile::new_run_id();
    let (compiled, store) = compile_for(&options, &config, &run_id, true).await?;
    let driver = DockerDriver::connect().await.map_err(|err| CliError::new(exit::UNREACHABLE, format!("{err:#}")))?;
    compiled.materials.write()?;
    let (tx, mut rx) = mpsc::channel(1024);
    let mut runner = Runner::new(Arc::new(driver), tx, compiled.secrets);
    if let Some(store) = store {
        runner = runner.with_artifacts(store);
    }
    let cancel = CancellationToken::new();
    let interrupt = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            pmesh_rt::note!("interrupted: stopping the run");
            interrupt.cancel();
        }
    });
    let printer = tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            println!("{}", describe(&event));
        }
    });
    let outcome = runner.apply(compiled.plan, cancel).await;
    drop(runner);
    let _ = printer.await;
    Ok(match outcome {
        Outcome::Succeeded => 0,
        Outcome::Failed => exit::FAILED,
        Outcome::Cancelled => exit::CANCELLED,
    })
}

/// Destroys the instance: teardown hooks, then its containers, networks and volumes.
///
/// # Errors
/// A [`CliError`] when Docker cannot be reached or refuses a removal.
pub async fn destroy(options: LocalOptions, config: AgentConfig) -> Result<Vec<String>, CliError> {
    let run_id = compile::new_run_id();
    let (compiled, _) = compile_for(&options, &config, &run_id, false).await?;
    let driver = DockerDriver::connect().await.map_err(|err| CliError::new(exit::UNREACHABLE, format!("{err:#}")))?;
    let (tx, mut rx) = mpsc::channel(1024);
    let printer = tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            println!("{}", describe(&event));
        }
    });
    let runner = Runner::new(Arc::new(driver), tx, compiled.secrets);
    let removed = runner.destroy(&compiled.plan).await?;
    drop(runner);
    let _ = printer.await;
    let work_dir = options.data_dir.join("instances").join(&options.instance);
    if work_dir.exists() {
        std::fs::remove_dir_all(&work_dir).map_err(|err| CliError::new(exit::FAILED, format!("removing {}: {err}", work_dir.display())))?;
    }
    Ok(removed)
}

/// One plain line for an event.
pub fn describe(event: &Event) -> String {
    let time = humantime::format_rfc3339_seconds(event.at);
    let (subject, text) = match &event.kind {
        EventKind::RunStarted { instance, pattern, n_steps } => {
            (String::from("run"), format!("{} applying {pattern} to instance {instance} ({n_steps} steps)", event.run_id))
        }
        EventKind::ImageReady { reference, action } => (String::from("image"), format!("{reference} {}", action.name())),
        EventKind::StepStarted { step, attempt } => {
            (step.clone(), if *attempt > 1 { format!("started (attempt {attempt})") } else { "started".into() })
        }
        EventKind::StepUnchanged { step, .. } => (step.clone(), "unchanged".into()),
        EventKind::Log { step, line } => (step.clone(), format!("| {line}")),
        EventKind::Progress { step, percent } => (step.clone(), format!("{percent:.0}%")),
        EventKind::Transfer { step, transfer } => (step.clone(), transfer.to_string()),
        EventKind::StepRetrying { step, attempt, reason } => (step.clone(), format!("failed ({reason}); retrying, attempt {attempt}")),
        EventKind::StepSucceeded { step, .. } => (step.clone(), "succeeded".into()),
        EventKind::StepFailed { step, reason, tail, .. } => {
            let mut text = format!("FAILED: {reason}");
            for line in tail {
                text.push_str(&format!("\n    {line}"));
            }
            (step.clone(), text)
        }
        EventKind::StepSkipped { step, reason } => (step.clone(), format!("skipped: {reason}")),
        EventKind::RunFinished { outcome, .. } => (String::from("run"), format!("{outcome:?}").to_lowercase()),
    };
    format!("{time} {subject:<14} {text}")
}
