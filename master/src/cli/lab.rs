//! `pmesh lab lint|plan|up|status|ls|down`: a lab file composing registered patterns across
//! agents, run by the master. The file is read here and its text sent to the master, which
//! checks it against its registry and drives it; the CLI follows the lab's status.
//!
//! Exit codes: 2 for a lab file with problems (every one printed as
//! `FILE:LINE:COLUMN: message`, nothing recorded), 1 when a component failed (`up`), 4 when
//! the master cannot be reached, 1 for an unknown lab.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;
use pmesh_proto::v1;
use serde_json::json;

use super::client::{exit, CliError, Connection};
use super::output::{ago, table, Format};
use super::run_outputs::{outputs_json, outputs_text};

/// `pmesh lab`.
#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Check a lab file: every problem as FILE:LINE:COLUMN: message; the master's registry too
    /// (patterns, versions, agents, params, outputs and their types) when it can be reached.
    Lint { file: PathBuf },
    /// What each component's agent would do; components waiting for outputs say for which.
    Plan { file: PathBuf },
    /// Bring the lab up (the master runs it) and follow it until every component finished.
    Up {
        file: PathBuf,
        /// Return once the master accepted the lab; follow it with `lab status`.
        #[arg(long)]
        detach: bool,
    },
    /// Each component's state, agent, times and outputs.
    Status { name: String },
    /// Every lab.
    Ls,
    /// The output of the lab's runs, by component (the last run of each instance).
    Logs {
        name: String,
        /// Only this component.
        #[arg(long)]
        component: Option<String>,
    },
    /// Destroy every component's instances, dependents first.
    Down { name: String },
}

fn read(file: &Path) -> Result<(String, String), CliError> {
    let text = std::fs::read_to_string(file).map_err(|err| CliError::new(exit::USAGE, format!("{}: {err}", file.display())))?;
    Ok((file.display().to_string(), text))
}

/// `lab lint`, which works without a master for what the file alone can tell.
///
/// # Errors
/// [`exit::USAGE`] when the file has problems.
pub async fn lint(file: &Path, connection: Result<Connection, CliError>, format: Format) -> Result<(), CliError> {
    let (name, text) = read(file)?;
    let mut problems: Vec<String> = pmesh_proto::lab::lint(&name, &text).iter().map(ToString::to_string).collect();
    let mut unchecked = None;
    if problems.is_empty() {
        match connection {
            Ok(connection) => {
                let request = v1::LabFileRequest { file: name.clone(), text };
                match connection.client.clone().lint_lab(request).await {
                    Ok(response) => problems = response.into_inner().diagnostics,
                    Err(status) => unchecked = Some(connection.failed(status).message),
                }
            }
            Err(err) => unchecked = Some(err.message),
        }
    }
    match format {
        Format::Json => {
            println!("{}", json!({"valid": problems.is_empty(), "problems": problems, "registry_checked": unchecked.is_none()}));
        }
        Format::Text => {
            for problem in &problems {
                println!("{problem}");
            }
            if problems.is_empty() {
                println!("{name}: the lab is valid");
            }
        }
    }
    if let Some(why) = &unchecked {
        eprintln!("note: patterns, versions, agents and outputs were not checked against a master: {why}");
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CliError::new(exit::USAGE, format!("{} problem(s) in {name}; nothing was changed", problems.len())))
    }
}

/// The other verbs.
///
/// # Errors
/// A [`CliError`] with the documented exit code.
pub async fn run(command: LabCommand, connection: &Connection, format: Format) -> Result<(), CliError> {
    let mut client = connection.client.clone();
    let failed = |status| connection.failed(status);
    match command {
        LabCommand::Lint { .. } => unreachable!("`lab lint` is dispatched to `lint`"),
        LabCommand::Plan { file } => {
            let (name, text) = read(&file)?;
            let plan = client.plan_lab(v1::LabFileRequest { file: name, text }).await.map_err(failed)?.into_inner();
            print_plan(&plan, format);
            if plan.components.iter().any(|component| !component.error.is_empty()) {
                return Err(CliError::new(exit::FAILED, "some components cannot be planned; see above"));
            }
        }
        LabCommand::Up { file, detach } => {
            let (name, text) = read(&file)?;
            let status = client.lab_up(v1::LabFileRequest { file: name, text }).await.map_err(failed)?.into_inner();
            println!("lab {} accepted: {} components", status.name, status.components.len());
            if detach {
                println!("follow it with `pmesh lab status {}`", status.name);
                return Ok(());
            }
            return follow(connection, &status.name, format).await;
        }
        LabCommand::Status { name } => {
            let status = client.get_lab(v1::GetLabRequest { name }).await.map_err(failed)?.into_inner();
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&status_json(&status)).unwrap_or_default()),
                Format::Text => println!("{}", status_text(&status)),
            }
        }
        LabCommand::Ls => {
            let labs = client.list_labs(v1::ListLabsRequest {}).await.map_err(failed)?.into_inner().labs;
            match format {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&json!(labs.iter().map(status_json).collect::<Vec<_>>())).unwrap_or_default()
                ),
                Format::Text if labs.is_empty() => println!("no labs yet; bring one up with `pmesh lab up FILE`"),
                Format::Text => {
                    let rows: Vec<Vec<String>> = labs
                        .iter()
                        .map(|lab| {
                            let done = lab.components.iter().filter(|component| component.state == "succeeded").count();
                            vec![
                                lab.name.clone(),
                                lab.state.clone(),
                                format!("{done}/{} succeeded", lab.components.len()),
                                ago(Some(lab.updated_at_unix)),
                            ]
                        })
                        .collect();
                    println!("{}", table(&["NAME", "STATE", "COMPONENTS", "UPDATED"], &rows));
                }
            }
        }
        LabCommand::Logs { name, component } => {
            let status = client.get_lab(v1::GetLabRequest { name }).await.map_err(failed)?.into_inner();
            if let Some(wanted) = &component {
                if !status.components.iter().any(|known| &known.name == wanted) {
                    return Err(CliError::new(exit::USAGE, format!("lab {} has no component {wanted:?}", status.name)));
                }
            }
            for known in status.components.iter().filter(|known| component.as_ref().is_none_or(|wanted| wanted == &known.name)) {
                for instance in known.instances.iter().filter(|instance| !instance.run_id.is_empty()) {
                    if matches!(format, Format::Text) {
                        println!("== {} ({}, run {})", known.name, instance.instance, instance.run_id);
                    }
                    // A run refused before it was recorded has no logs; its error is in `status`.
                    if let Err(err) = super::runs::logs(connection, &instance.run_id, None, false, format).await {
                        println!("   no output: {}", err.message);
                    }
                }
            }
        }
        LabCommand::Down { name } => {
            let response = client.lab_down(v1::GetLabRequest { name: name.clone() }).await.map_err(failed)?.into_inner();
            for component in &response.components {
                if component.destroyed.is_empty() {
                    println!("{}: nothing to destroy", component.name);
                }
                for item in &component.destroyed {
                    let instance = format!("{name}/{}", component.name);
                    println!("{}", super::destroy::describe(&instance, item));
                }
            }
            println!("lab {name} is down");
        }
    }
    Ok(())
}

/// Follows a lab's status until it is no longer active, printing each component's change.
async fn follow(connection: &Connection, name: &str, format: Format) -> Result<(), CliError> {
    let mut client = connection.client.clone();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let status =
            client.get_lab(v1::GetLabRequest { name: name.to_owned() }).await.map_err(|status| connection.failed(status))?.into_inner();
        for component in &status.components {
            let line = component_line(component);
            if seen.get(&component.name) != Some(&line) {
                println!("{}", humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string() + " " + &line);
                seen.insert(component.name.clone(), line);
            }
        }
        if status.state != "active" {
            if matches!(format, Format::Json) {
                println!("{}", serde_json::to_string_pretty(&status_json(&status)).unwrap_or_default());
            }
            println!("lab {} {}", status.name, status.state);
            return match status.state.as_str() {
                "done" => Ok(()),
                _ => Err(CliError::new(
                    exit::FAILED,
                    format!("lab {} did not come up completely; `pmesh lab status {}` says why", status.name, status.name),
                )),
            };
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `COMPONENT  STATE on AGENT …` as one line of the live view.
fn component_line(component: &v1::LabComponentStatus) -> String {
    let runs: Vec<&str> = component.instances.iter().map(|instance| instance.run_id.as_str()).filter(|run| !run.is_empty()).collect();
    let state = if component.state == "succeeded" && component.unchanged {
        "unchanged (inputs as before; nothing run)".to_owned()
    } else {
        component.state.clone()
    };
    let mut line = format!("{:<14} {:<12} on {} ({})", component.name, state, component.agent, component.pattern);
    if component.state == "running" && !runs.is_empty() {
        line.push_str(&format!(" runs {}", runs.join(", ")));
    }
    if !component.error.is_empty() {
        line.push_str(&format!(": {}", component.error));
    }
    line
}

fn duration(component: &v1::LabComponentStatus) -> String {
    match (component.started_at_unix, component.finished_at_unix) {
        (0, _) => "-".to_owned(),
        (start, 0) => format!("{}s so far", (crate::error::now_unix() - start).max(0)),
        (start, end) => format!("{}s", (end - start).max(0)),
    }
}

fn status_text(status: &v1::LabStatus) -> String {
    let rows: Vec<Vec<String>> = status
        .components
        .iter()
        .map(|component| {
            let state =
                if component.state == "succeeded" && component.unchanged { "unchanged".to_owned() } else { component.state.clone() };
            let runs: u32 = component.instances.iter().map(|instance| instance.runs).sum();
            vec![
                component.name.clone(),
                component.pattern.clone(),
                component.agent.clone(),
                state,
                duration(component),
                runs.to_string(),
                component.needs.join(","),
            ]
        })
        .collect();
    let mut text = format!(
        "Lab: {} ({}), from {}\n\n{}",
        status.name,
        status.state,
        status.file,
        table(&["COMPONENT", "PATTERN", "AGENT", "STATE", "TIME", "RUNS", "NEEDS"], &rows)
    );
    for component in &status.components {
        if !component.error.is_empty() {
            text.push_str(&format!("\n\n{}: {}", component.name, component.error));
        }
        for instance in component.instances.iter().filter(|instance| !instance.outputs.is_empty()) {
            text.push_str(&format!("\n\nOutputs of {} ({}):\n{}", instance.instance, component.name, outputs_text(&instance.outputs)));
        }
    }
    text
}

fn status_json(status: &v1::LabStatus) -> serde_json::Value {
    json!({
        "name": status.name,
        "state": status.state,
        "file": status.file,
        "updated_at_unix": status.updated_at_unix,
        "components": status.components.iter().map(|component| json!({
            "name": component.name,
            "pattern": component.pattern,
            "agent": component.agent,
            "state": component.state,
            "unchanged": component.unchanged,
            "error": component.error,
            "needs": component.needs,
            "started_at_unix": component.started_at_unix,
            "finished_at_unix": component.finished_at_unix,
            "instances": component.instances.iter().map(|instance| json!({
                "instance": instance.instance,
                "run_id": instance.run_id,
                "state": instance.state,
                "runs": instance.runs,
                "outputs": outputs_json(&instance.outputs),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

fn print_plan(plan: &v1::PlanLabResponse, format: Format) {
    if matches!(format, Format::Json) {
        let items: Vec<serde_json::Value> = plan
            .components
            .iter()
            .map(|component| {
                json!({
                    "component": component.name,
                    "instance": component.instance,
                    "agent": component.agent,
                    "waits_for": component.waits_for,
                    "error": component.error,
                    "actions": component.actions.iter().map(|action| json!({"kind": action.kind, "name": action.name, "action": action.action, "detail": action.detail})).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&json!(items)).unwrap_or_default());
        return;
    }
    for component in &plan.components {
        println!("{} ({} on {}):", component.name, component.instance, component.agent);
        if !component.waits_for.is_empty() {
            println!("  values known after {} succeed(s); planned then", component.waits_for.join(", "));
        } else if !component.error.is_empty() {
            println!("  cannot plan: {}", component.error);
        }
        for action in &component.actions {
            let detail = if action.detail.is_empty() { String::new() } else { format!(" ({})", action.detail) };
            println!("  {:<8} {:<24} {}{detail}", action.kind, action.name, action.action);
        }
    }
}
