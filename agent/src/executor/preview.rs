//! Preview: what applying a plan would do, found out without changing anything.
//!
//! It asks the same questions the runner asks before it acts (is the image there, does a
//! container of this step exist, with which spec hash, in which state) and answers with the
//! runner's own convergence rules, so a plan says "unchanged" exactly where an apply would
//! leave a container alone.

use super::contract::{labels, Artifacts, Driver};
use super::plan::{Action, ImageSource, Plan, Probe};
use super::runner::instance_filter;

/// One thing an apply would do, or leave alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// `image`, `artifact` or `step`.
    pub kind: &'static str,
    pub name: String,
    /// `pull`, `load`, `build`, `present`; `fetch`, `cached`; `create`, `replace`,
    /// `reload`, `unchanged`, `run`, `check`.
    pub action: &'static str,
    pub detail: String,
}

impl Planned {
    fn new(kind: &'static str, name: &str, action: &'static str, detail: impl Into<String>) -> Planned {
        Planned { kind, name: name.to_owned(), action, detail: detail.into() }
    }
}

/// What applying `plan` would do: artifacts, images, then the steps in the plan's order.
///
/// # Errors
/// When the container engine cannot be asked.
pub async fn preview(driver: &dyn Driver, artifacts: &dyn Artifacts, plan: &Plan) -> anyhow::Result<Vec<Planned>> {
    let mut planned = Vec::new();
    for artifact in &plan.artifacts {
        let (action, detail) = if artifacts.cached(&artifact.sha256) {
            ("cached", String::new())
        } else {
            ("fetch", pmesh_rt::fetch::human_bytes(artifact.size))
        };
        planned.push(Planned::new("artifact", &artifact.name, action, detail));
    }
    for image in &plan.images {
        let (reference, absent) = match image {
            ImageSource::Pull { reference, .. } => (reference, "pull"),
            ImageSource::Load { tag, .. } => (tag, "load"),
            ImageSource::Build(build) => (&build.tag, "build"),
        };
        let action = if driver.has_image(reference).await? { "present" } else { absent };
        planned.push(Planned::new("image", reference, action, ""));
    }
    for step in &plan.steps {
        let (action, detail) = match &step.action {
            Action::Run(spec) | Action::Service(spec) => {
                let existing = driver.find(&instance_filter(plan, &[(labels::STEP, step.name.as_str())])).await?;
                let hash = spec.spec_hash();
                let service = matches!(step.action, Action::Service(_));
                let same = |found: &&super::contract::Found| found.label(labels::SPEC_HASH) == hash;
                let converged = if service {
                    existing.len() == 1 && existing.iter().any(|found| same(&found) && found.running)
                } else {
                    existing.iter().any(|found| same(&found) && !found.running && found.exit_code == Some(0))
                };
                let stale = spec.reload.as_ref().filter(|reload| existing.first().is_some_and(|found| !reload.loaded_by(&found.id)));
                if let (true, Some(reload)) = (converged, stale) {
                    ("reload", format!("its files changed: {} in {}", reload.command.join(" "), existing[0].name))
                } else if converged {
                    ("unchanged", String::new())
                } else if let Some(old) = existing.first() {
                    let why = if !existing.iter().any(|found| same(&found)) {
                        "its spec changed"
                    } else if service {
                        "it is not running"
                    } else {
                        "its last run did not succeed"
                    };
                    ("replace", format!("{} ({why})", old.name))
                } else {
                    ("create", spec.image.clone())
                }
            }
            Action::Exec { service, command, .. } => ("run", format!("in {service}: {}", command.join(" "))),
            Action::Wait { probe, deadline, .. } => ("check", format!("{} (up to {}s)", describe(probe), deadline.as_secs())),
        };
        let detail = match &step.action {
            Action::Run(spec) | Action::Service(spec) if !spec.capabilities.is_empty() => {
                let asks = format!("capabilities {}", spec.capabilities.join(", "));
                if detail.is_empty() {
                    asks
                } else {
                    format!("{detail}; {asks}")
                }
            }
            _ => detail,
        };
        planned.push(Planned::new("step", &step.name, action, detail));
    }
    Ok(planned)
}

fn describe(probe: &Probe) -> String {
    match probe {
        Probe::Tcp { host, port } => format!("tcp {host}:{port}"),
        Probe::Http { url, .. } => format!("http {url}"),
        Probe::Dns { server, port, name, record_type } => format!("dns {record_type} {name} at {server}:{port}"),
        Probe::Exec { service, command } => format!("in {service}: {}", command.join(" ")),
    }
}
