//! `pmesh pattern push|ls`, `pmesh run` and `pmesh runs …`: registering patterns, dispatching
//! them, and following runs live.
//!
//! Progress is one line per event (`TIME AGENT STEP TEXT`), which reads the same in a
//! terminal, a CI log or a pipe. Ctrl-C detaches from a run; it does not cancel it.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use pmesh_proto::event::Kind;
use pmesh_proto::v1;
use serde_json::json;

use super::client::{exit, CliError, Connection};
use super::live::Live;
use super::output::{table, Format};

/// `pmesh pattern push PATH`.
///
/// # Errors
/// [`exit::USAGE`] with every problem when the pattern does not lint.
pub async fn push(connection: &Connection, path: &Path, format: Format) -> Result<(), CliError> {
    let dir = super::pattern::read_pattern_dir(path)?;
    let diagnostics = pmesh_proto::pattern::lint(&dir.files);
    if !diagnostics.is_empty() {
        for diagnostic in &diagnostics {
            pmesh_rt::note!("{}", dir.root.join(diagnostic.to_string()).display());
        }
        return Err(CliError::new(exit::USAGE, format!("{} problem(s) in {}; nothing was pushed", diagnostics.len(), dir.root.display())));
    }
    let archive = pmesh_proto::bundle::pack(&dir.bundle_files()).map_err(|err| CliError::new(exit::USAGE, err.to_string()))?;
    let pushed = connection
        .client
        .clone()
        .max_encoding_message_size(64 * 1024 * 1024)
        .push_pattern(v1::PushPatternRequest { bundle: archive })
        .await
        .map_err(|status| connection.failed(status))?
        .into_inner();
    match format {
        Format::Json => {
            println!("{}", json!({ "name": pushed.name, "version": pushed.version, "digest": pushed.digest, "created": pushed.created }));
        }
        Format::Text => {
            let verb = if pushed.created { "registered" } else { "already registered:" };
            println!("{verb} {}@{} ({})", pushed.name, pushed.version, pushed.digest);
        }
    }
    Ok(())
}

/// `pmesh pattern ls`.
///
/// # Errors
/// When the master cannot be reached.
pub async fn list_patterns(connection: &Connection, format: Format) -> Result<(), CliError> {
    let listed =
        connection.client.clone().list_patterns(v1::ListPatternsRequest {}).await.map_err(|status| connection.failed(status))?.into_inner();
    match format {
        Format::Json => {
            let patterns: Vec<_> = listed.patterns.iter().map(|pattern| json!({ "name": pattern.name, "version": pattern.version, "digest": pattern.digest, "category": pattern.category, "description": pattern.description })).collect();
            println!("{}", serde_json::to_string_pretty(&patterns).unwrap_or_default());
        }
        Format::Text => {
            // The catalog by category, each pattern with its versions and description.
            let mut by_category: BTreeMap<&str, Vec<&v1::PatternSummary>> = BTreeMap::new();
            for pattern in &listed.patterns {
                by_category.entry(pattern.category.as_str()).or_default().push(pattern);
            }
            let mut sections = Vec::new();
            for (category, patterns) in by_category {
                let rows: Vec<Vec<String>> = patterns
                    .iter()
                    .map(|pattern| {
                        let description = if pattern.description.is_empty() { "-".to_owned() } else { pattern.description.clone() };
                        vec![format!("  {}", pattern.name), pattern.version.clone(), pattern.digest.chars().take(19).collect(), description]
                    })
                    .collect();
                sections.push(format!("{category}:\n{}", table(&["  NAME", "VERSION", "DIGEST", "DESCRIPTION"], &rows)));
            }
            if sections.is_empty() {
                println!("no pattern is registered; push one with `pmesh pattern push PATH`");
            } else {
                println!("{}", sections.join("\n\n"));
            }
        }
    }
    Ok(())
}

/// Which runs `pmesh runs ls` lists (`--state`, `--pattern`, `--agent`, `--since`).
pub struct RunsQuery {
    pub state: Option<String>,
    pub pattern: Option<String>,
    pub agent: Option<String>,
    pub since: Option<std::time::Duration>,
}

/// What `pmesh run` was given.
pub struct RunOptions {
    pub pattern: String,
    pub on: Vec<String>,
    pub selector: Vec<(String, String)>,
    pub all: bool,
    pub params: Vec<String>,
    pub values_file: Option<std::path::PathBuf>,
    pub instance: Option<String>,
    pub detach: bool,
    pub timeout: Option<std::time::Duration>,
    /// A dry run: show what each agent would do.
    pub plan: bool,
}

/// The supplied values as JSON: the values file, then each `-p` over it.
fn values_json(options: &RunOptions) -> Result<String, CliError> {
    let mut values = serde_json::Map::new();
    if let Some(file) = &options.values_file {
        let text = std::fs::read_to_string(file).map_err(|err| CliError::new(exit::USAGE, format!("{}: {err}", file.display())))?;
        let parsed = pmesh_proto::pattern::values_from_yaml(&file.display().to_string(), &text)
            .map_err(|problems| CliError::new(exit::USAGE, problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")))?;
        for (name, value) in parsed {
            values.insert(name, serde_json::to_value(&value).map_err(anyhow::Error::from)?);
        }
    }
    for assignment in &options.params {
        let (name, value) =
            pmesh_proto::pattern::parse_assignment(assignment).map_err(|problem| CliError::new(exit::USAGE, problem.to_string()))?;
        values.insert(name, serde_json::to_value(&value).map_err(anyhow::Error::from)?);
    }
    Ok(serde_json::Value::Object(values).to_string())
}

/// `pmesh run`: start, then follow unless `--detach`. Returns the exit code.
///
/// # Errors
/// [`exit::USAGE`] with one line per problem when the master refuses the values.
pub async fn run(connection: &Connection, options: RunOptions, format: Format) -> Result<u8, CliError> {
    let request = v1::MasterStartRunRequest {
        pattern: options.pattern.clone(),
        on: options.on.clone(),
        selector: options.selector.iter().cloned().collect::<HashMap<_, _>>(),
        all: options.all,
        values_json: values_json(&options)?,
        instance: options.instance.clone().unwrap_or_default(),
        run_id: String::new(),
        timeout_seconds: options.timeout.map(|timeout| timeout.as_secs().max(1)).unwrap_or(0),
        plan_only: options.plan,
    };
    let started = connection.client.clone().start_run(request).await.map_err(|status| connection.failed(status))?.into_inner();
    if options.plan {
        return Ok(print_plan(&started.targets, format));
    }
    for target in started.targets.iter().filter(|target| !target.started) {
        pmesh_rt::note!("{}: {}", target.agent, target.error);
    }
    // An agent that refused the run as invalid created nothing; with no agent running it,
    // there is nothing to follow.
    let refused = started.targets.iter().any(|target| target.invalid);
    if refused && !started.targets.iter().any(|target| target.started) {
        return Err(CliError::new(exit::USAGE, format!("run {} refused; nothing was created", started.run_id)));
    }
    if format == Format::Text {
        println!(
            "run {} started on {}",
            started.run_id,
            started.targets.iter().map(|target| target.agent.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    if options.detach {
        if format == Format::Json {
            println!("{}", json!({ "run_id": started.run_id }));
        }
        return Ok(if refused { exit::USAGE } else { 0 });
    }
    let code = watch(connection, &started.run_id, format).await?;
    Ok(if refused && code == 0 { exit::USAGE } else { code })
}

/// Prints what each agent would do; returns 2 when an agent refused the run as invalid, 4 when
/// an agent could not be asked, 1 when a step is `blocked` (it would fail: a host port taken).
fn print_plan(targets: &[v1::TargetResult], format: Format) -> u8 {
    let invalid = targets.iter().any(|target| target.invalid);
    let unreachable = targets.iter().any(|target| !target.error.is_empty());
    let blocked = targets.iter().flat_map(|target| &target.plan).any(|action| action.action == "blocked");
    match format {
        Format::Json => {
            let agents: BTreeMap<&str, serde_json::Value> = targets
                .iter()
                .map(|target| {
                    let actions: Vec<_> = target
                        .plan
                        .iter()
                        .map(|action| json!({ "kind": action.kind, "name": action.name, "action": action.action, "detail": action.detail }))
                        .collect();
                    (target.agent.as_str(), json!({ "error": target.error, "invalid": target.invalid, "actions": actions }))
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&agents).unwrap_or_default());
        }
        Format::Text => {
            for target in targets {
                println!("{}:", target.agent);
                if !target.error.is_empty() {
                    let verb = if target.invalid { "refused" } else { "could not plan" };
                    for line in target.error.lines() {
                        println!("  {verb}: {line}");
                    }
                    continue;
                }
                let rows: Vec<Vec<String>> = target
                    .plan
                    .iter()
                    .map(|action| vec![format!("  {}", action.action), action.kind.clone(), action.name.clone(), action.detail.clone()])
                    .collect();
                println!("{}", table(&["  ACTION", "KIND", "NAME", "DETAIL"], &rows));
                let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
                for action in &target.plan {
                    *counts.entry(action.action.as_str()).or_default() += 1;
                }
                println!("  {}", counts.iter().map(|(action, count)| format!("{count} {action}")).collect::<Vec<_>>().join(", "));
            }
            println!("plan only: nothing was pushed, started or changed");
        }
    }
    if invalid {
        exit::USAGE
    } else if unreachable {
        exit::UNREACHABLE
    } else if blocked {
        exit::FAILED
    } else {
        0
    }
}

/// Follows a run until it ends (or Ctrl-C detaches); returns the exit code.
///
/// # Errors
/// When the master cannot be reached or the run is unknown.
pub async fn watch(connection: &Connection, run_id: &str, format: Format) -> Result<u8, CliError> {
    let request = v1::WatchRunRequest { run_id: run_id.to_owned(), from_index: 0, no_follow: false };
    let mut long = tonic::Request::new(request);
    long.set_timeout(std::time::Duration::from_secs(7 * 24 * 3600));
    let mut stream = connection.client.clone().watch_run(long).await.map_err(|status| connection.failed(status))?.into_inner();
    let mut live = Live::new(format);
    loop {
        let next = tokio::select! {
            next = stream.message() => next,
            _ = tokio::signal::ctrl_c() => {
                live.detach();
                pmesh_rt::note!("detached; run {run_id} continues. Re-attach with: pmesh runs watch {run_id}");
                return Ok(0);
            }
        };
        match next {
            Ok(Some(message)) => {
                if let Some(envelope) = super::live::decode(message) {
                    live.event(&envelope);
                }
            }
            Ok(None) => break,
            Err(status) => {
                live.finish();
                return Err(connection.failed(status));
            }
        }
    }
    let run = get_run(connection, run_id).await?;
    live.summary(&run);
    Ok(exit_code(&run.state))
}

/// The documented exit code of a run's overall state.
pub fn exit_code(state: &str) -> u8 {
    match state {
        "succeeded" => 0,
        "cancelled" => exit::CANCELLED,
        "unreachable" => exit::UNREACHABLE,
        _ => exit::FAILED,
    }
}

/// `pmesh runs ls`.
///
/// # Errors
/// When the master cannot be reached.
pub async fn list(connection: &Connection, filter: &RunsQuery, format: Format) -> Result<(), CliError> {
    let mut listed =
        connection.client.clone().list_runs(v1::ListRunsRequest {}).await.map_err(|status| connection.failed(status))?.into_inner();
    let since = filter.since.map(|since| crate::error::now_unix() - since.as_secs() as i64);
    listed.runs.retain(|run| {
        filter.state.as_ref().is_none_or(|state| &run.state == state)
            && filter
                .pattern
                .as_ref()
                .is_none_or(|pattern| run.pattern == *pattern || run.pattern.split('@').next() == Some(pattern.as_str()))
            && filter.agent.as_ref().is_none_or(|agent| run.agents.iter().any(|state| &state.agent == agent))
            && since.is_none_or(|since| run.created_at_unix >= since)
    });
    // Newest first, as an operator looks for the run that just failed.
    listed.runs.sort_by(|left, right| right.created_at_unix.cmp(&left.created_at_unix).then_with(|| right.run_id.cmp(&left.run_id)));
    match format {
        Format::Json => {
            let runs: Vec<_> = listed.runs.iter().map(run_json).collect();
            println!("{}", serde_json::to_string_pretty(&runs).unwrap_or_default());
        }
        Format::Text => {
            let rows: Vec<Vec<String>> = listed
                .runs
                .iter()
                .map(|run| {
                    vec![
                        run.run_id.clone(),
                        run.pattern.clone(),
                        run.instance.clone(),
                        run.state.clone(),
                        run.agents.len().to_string(),
                        super::output::ago(Some(run.created_at_unix)),
                    ]
                })
                .collect();
            println!("{}", table(&["RUN", "PATTERN", "INSTANCE", "STATE", "AGENTS", "CREATED"], &rows));
        }
    }
    Ok(())
}

fn run_json(run: &v1::RunSummary) -> serde_json::Value {
    let agents: BTreeMap<&str, serde_json::Value> = run
        .agents
        .iter()
        .map(|agent| {
            let outputs = super::run_outputs::outputs_json(&agent.outputs);
            (agent.agent.as_str(), json!({ "state": agent.state, "error": agent.error, "outputs": outputs }))
        })
        .collect();
    json!({ "run_id": run.run_id, "pattern": run.pattern, "instance": run.instance, "state": run.state, "created_at_unix": run.created_at_unix, "agents": agents })
}

/// `pmesh runs show ID`.
///
/// # Errors
/// When the run is unknown or the master unreachable.
pub async fn show(connection: &Connection, run_id: &str, format: Format) -> Result<(), CliError> {
    let run = get_run(connection, run_id).await?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&run_json(&run)).unwrap_or_default()),
        Format::Text => {
            println!("Run:      {}\nPattern:  {}\nInstance: {}\nState:    {}", run.run_id, run.pattern, run.instance, run.state);
            let rows: Vec<Vec<String>> =
                run.agents.iter().map(|agent| vec![agent.agent.clone(), agent.state.clone(), agent.error.clone()]).collect();
            println!("\n{}", table(&["AGENT", "STATE", "ERROR"], &rows));
            for agent in run.agents.iter().filter(|agent| !agent.outputs.is_empty()) {
                println!("\nOutputs on {}:\n{}", agent.agent, super::run_outputs::outputs_text(&agent.outputs));
            }
        }
    }
    Ok(())
}

/// `pmesh runs logs ID [--step S] [--follow]`: the log lines of a run.
///
/// # Errors
/// When the run is unknown or the master unreachable.
pub async fn logs(connection: &Connection, run_id: &str, step: Option<&str>, follow: bool, format: Format) -> Result<(), CliError> {
    let request = v1::WatchRunRequest { run_id: run_id.to_owned(), from_index: 0, no_follow: !follow };
    let mut stream = connection.client.clone().watch_run(request).await.map_err(|status| connection.failed(status))?.into_inner();
    let mut steps: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    while let Some(message) = stream.message().await.map_err(|status| connection.failed(status))? {
        let Some(envelope) = super::live::decode(message) else { continue };
        let event = &envelope.event;
        steps.insert(event.step.clone());
        // A step's output, and why it failed: the reason is not in its output (a container
        // that never started has none).
        let shown = matches!(event.kind, Kind::Log | Kind::StepFailed);
        if !shown || step.is_some_and(|wanted| wanted != event.step) {
            continue;
        }
        let text = if event.kind == Kind::StepFailed { format!("✗ failed: {}", event.text) } else { event.text.clone() };
        match format {
            Format::Json => println!(
                "{}",
                json!({ "agent": envelope.agent, "seq": event.seq, "step": event.step, "kind": event.kind.name(), "text": event.text })
            ),
            Format::Text => println!("{:<10} {:<14} {text}", envelope.agent, event.step),
        }
    }
    // A step the run never had is a mistake to point out, not an empty answer.
    match step {
        Some(wanted) if !steps.contains(wanted) => {
            let suggestion = crate::suggest::did_you_mean(wanted, steps.iter().map(String::as_str).filter(|step| !step.is_empty()));
            Err(CliError::new(exit::FAILED, format!("run {run_id} has no step {wanted:?}{suggestion}")))
        }
        _ => Ok(()),
    }
}

/// `pmesh runs cancel ID`.
///
/// # Errors
/// When the run is unknown or the master unreachable.
pub async fn cancel(connection: &Connection, run_id: &str, format: Format) -> Result<(), CliError> {
    let cancelled = connection
        .client
        .clone()
        .cancel_run(v1::MasterCancelRunRequest { run_id: run_id.to_owned() })
        .await
        .map_err(|status| connection.failed(status))?
        .into_inner();
    match format {
        Format::Json => println!("{}", json!({ "run_id": run_id, "cancelled_on": cancelled.cancelled_on })),
        Format::Text => println!(
            "cancelling run {run_id} on: {}",
            if cancelled.cancelled_on.is_empty() { "no agent (nothing running)".to_owned() } else { cancelled.cancelled_on.join(", ") }
        ),
    }
    Ok(())
}

/// The run's record from the master.
async fn get_run(connection: &Connection, run_id: &str) -> Result<v1::RunSummary, CliError> {
    let request = v1::GetRunRequest { run_id: run_id.to_owned() };
    Ok(connection.client.clone().get_run(request).await.map_err(|status| connection.failed(status))?.into_inner())
}
