//! The typed model of a step: what runs, and the graph and limits around it.
//!
//! A [`Step`] is its place in the DAG (`needs`), its limits (`timeout`, `retries`) and an [`Action`], one variant per step kind, each
//! holding only the fields that kind accepts. The field lists per kind ([`StepKind::fields`]) are shared by lint and the serde form, so
//! both refuse the same fields.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use super::probe::{BasicAuth, JsonCondition, PortValue, Probe, Trust, DNS_RECORD_TYPES};
pub use super::repeat::{Count, Repeat};

/// One step of a pattern.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "StepRepr", try_from = "StepRepr")]
pub struct Step {
    /// Steps that must have succeeded before this one starts.
    pub needs: Vec<String>,
    /// How long one attempt may take before it is stopped (all kinds but `wait`).
    pub timeout: Option<Duration>,
    /// How often to try again after a failure (all kinds but `wait`).
    pub retries: Option<Retries>,
    /// Repeated over a list or a count (`run` steps only).
    pub repeat: Option<Repeat>,
    /// What the step does.
    pub action: Action,
}

impl Step {
    /// The step's kind.
    pub fn kind(&self) -> StepKind {
        match &self.action {
            Action::Run(_) => StepKind::Run,
            Action::Service(_) => StepKind::Service,
            Action::Exec(_) => StepKind::Exec,
            Action::Wait(_) => StepKind::Wait,
            Action::Teardown(_) => StepKind::Teardown,
        }
    }
}

/// The kinds of step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    /// A one-shot container run to completion.
    Run,
    /// A long-running container.
    Service,
    /// A command inside a running service.
    Exec,
    /// A probe retried until it succeeds or its deadline passes.
    Wait,
    /// A one-shot container run when the instance is destroyed.
    Teardown,
}

const CONTAINER_FIELDS: [&str; 8] = ["image", "command", "args", "env", "mounts", "networks", "resources", "progress"];
const CONTROL_FIELDS: [&str; 4] = ["kind", "needs", "timeout", "retries"];

impl StepKind {
    /// Every kind, as written in YAML.
    pub const ALL: [&'static str; 5] = ["run", "service", "exec", "wait", "teardown"];

    /// The kind named `name` in YAML.
    pub fn from_name(name: &str) -> Option<StepKind> {
        Some(match name {
            "run" => StepKind::Run,
            "service" => StepKind::Service,
            "exec" => StepKind::Exec,
            "wait" => StepKind::Wait,
            "teardown" => StepKind::Teardown,
            _ => return None,
        })
    }

    /// The name of the kind in YAML.
    pub fn name(self) -> &'static str {
        match self {
            StepKind::Run => "run",
            StepKind::Service => "service",
            StepKind::Exec => "exec",
            StepKind::Wait => "wait",
            StepKind::Teardown => "teardown",
        }
    }

    /// The fields a step of this kind accepts, in the order the documentation lists them.
    pub fn fields(self) -> Vec<&'static str> {
        let mut fields = Vec::new();
        match self {
            StepKind::Run | StepKind::Teardown | StepKind::Service => {
                fields.extend(CONTROL_FIELDS);
                fields.extend(CONTAINER_FIELDS);
                // A teardown hook runs at destroy and asks for nothing beyond a container.
                if self != StepKind::Teardown {
                    fields.push("capabilities");
                }
                if self == StepKind::Run {
                    fields.push("repeat");
                }
                if self == StepKind::Service {
                    fields.extend(["ports", "restart", "healthcheck", "reload"]);
                }
            }
            StepKind::Exec => {
                fields.extend(CONTROL_FIELDS);
                fields.extend(["service", "command", "env", "progress"]);
            }
            StepKind::Wait => fields.extend(["kind", "needs", "probe", "deadline", "interval"]),
        }
        fields
    }
}

/// What a step does, by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A one-shot container run to completion; a non-zero exit fails the step.
    Run(Container),
    /// A long-running container, ready when running and healthy.
    Service(Service),
    /// A command run inside a service step's container.
    Exec(Exec),
    /// A probe retried until it succeeds.
    Wait(Wait),
    /// A one-shot container run when the instance is destroyed.
    Teardown(Container),
}

/// A container to create: image, command line, environment and attachments.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Container {
    /// The name of an image in `images`.
    pub image: String,
    /// Replaces the image's entrypoint when not empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Replaces the image's default arguments when not empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment variables; values may hold `${param}` placeholders, secrets included.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// What is mounted where.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    /// Networks the instance owns that the container joins; others reach it by step name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<String>,
    /// CPU and memory limits.
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
    /// Regexes with one capture group turning log lines into percentages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub progress: Vec<String>,
    /// Linux capabilities added to Docker's default set (`SYS_ADMIN`, no `CAP_` prefix); the
    /// agent runs the step only when its `[security] allow_capabilities` holds every one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
}

/// A long-running container and how it is exposed and watched.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Service {
    /// The container.
    pub container: Container,
    /// Ports published on the agent host.
    pub ports: Vec<PortMapping>,
    /// Docker's restart policy.
    pub restart: Restart,
    /// Docker's healthcheck; the step is ready once it passes.
    pub healthcheck: Option<Healthcheck>,
    /// A command run in the running container when only files of its `dir` mounts changed,
    /// instead of replacing it (`[rndc, reload]`); empty: any change replaces it.
    pub reload: Vec<String>,
}

/// A command inside a running service.
#[derive(Debug, Clone, PartialEq)]
pub struct Exec {
    /// The name of a `service` step.
    pub service: String,
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// Progress regexes, as for containers.
    pub progress: Vec<String>,
}

/// A probe retried every `interval` until it succeeds or `deadline` passes.
#[derive(Debug, Clone, PartialEq)]
pub struct Wait {
    /// What to check.
    pub probe: Probe,
    /// How long to keep trying.
    pub deadline: Duration,
    /// How long to wait between tries.
    pub interval: Duration,
}

/// The default pause between two probes.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// Something mounted into a container. (serde cannot refuse unknown fields next to a flattened field; lint does.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// What is mounted.
    #[serde(flatten)]
    pub source: MountSource,
    /// The absolute path inside the container.
    pub target: String,
    /// Whether the container may not write to it.
    #[serde(default)]
    pub readonly: bool,
}

/// The source of a mount: exactly one of four.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountSource {
    /// A file from `files`, by its `dest`.
    File(String),
    /// A directory of the work directory: the files whose `dest` is under `NAME/`. Files
    /// rewritten in it (by rename) are seen by the running container, as a single-file bind
    /// mount's are not.
    Dir(String),
    /// A downloaded artifact, by name (mounted read-only).
    Artifact(String),
    /// A named volume the instance owns, created on first use and removed by destroy.
    Volume(String),
}

/// A port published on the agent host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortMapping {
    /// The port inside the container.
    pub container: u16,
    /// The port on the host; the container port when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<PortValue>,
    /// `tcp` or `udp`.
    #[serde(default)]
    pub protocol: Protocol,
}

/// A transport protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

/// Docker's restart policy for a service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// Never restart.
    No,
    /// Restart after a non-zero exit.
    OnFailure,
    /// Always restart.
    Always,
    /// Restart unless stopped by pmesh or an operator.
    #[default]
    UnlessStopped,
}

impl Restart {
    /// Every policy, as written in YAML.
    pub const ALL: [&'static str; 4] = ["no", "on-failure", "always", "unless-stopped"];
}

/// Docker's healthcheck; absent fields take Docker's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Healthcheck {
    /// The command, run without a shell; exit 0 means healthy.
    pub command: Vec<String>,
    /// Time between checks (30s).
    #[serde(default = "Healthcheck::default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// How long one check may take (30s).
    #[serde(default = "Healthcheck::default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Failures in a row before the container is unhealthy (3).
    #[serde(default = "Healthcheck::default_retries")]
    pub retries: u32,
    /// Grace period after start when failures do not count (0s).
    #[serde(default, with = "humantime_serde")]
    pub start_period: Duration,
}

impl Healthcheck {
    /// Docker's default interval.
    pub fn default_interval() -> Duration {
        Duration::from_secs(30)
    }
    /// Docker's default timeout.
    pub fn default_timeout() -> Duration {
        Duration::from_secs(30)
    }
    /// Docker's default number of retries.
    pub fn default_retries() -> u32 {
        3
    }
}

/// CPU and memory limits of a container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPUs, such as `1.5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Memory in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
}

impl Resources {
    /// Whether no limit is set.
    pub fn is_empty(&self) -> bool {
        self.cpus.is_none() && self.memory.is_none()
    }
}

/// How a failed step is tried again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retries {
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// The pause before the second attempt, doubled before each later one.
    #[serde(default = "default_backoff", with = "humantime_serde")]
    pub backoff: Duration,
}

/// The pause before the second attempt when `retries.backoff` is not given.
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(5);

fn default_backoff() -> Duration {
    DEFAULT_BACKOFF
}

/// The flat serde form of a step, as in YAML.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepRepr {
    kind: StepKind,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    needs: Vec<String>,
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retries: Option<Retries>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    repeat: Option<Repeat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    image: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    command: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    args: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    mounts: Vec<Mount>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    networks: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resources: Option<Resources>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    progress: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    capabilities: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ports: Vec<PortMapping>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    restart: Option<Restart>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    healthcheck: Option<Healthcheck>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    reload: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    probe: Option<Probe>,
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    deadline: Option<Duration>,
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    interval: Option<Duration>,
}

impl StepRepr {
    /// The names of the fields that are set.
    fn present(&self) -> Vec<&'static str> {
        let set = [
            ("needs", !self.needs.is_empty()),
            ("timeout", self.timeout.is_some()),
            ("retries", self.retries.is_some()),
            ("repeat", self.repeat.is_some()),
            ("image", self.image.is_some()),
            ("command", !self.command.is_empty()),
            ("args", !self.args.is_empty()),
            ("env", !self.env.is_empty()),
            ("mounts", !self.mounts.is_empty()),
            ("networks", !self.networks.is_empty()),
            ("resources", self.resources.is_some()),
            ("progress", !self.progress.is_empty()),
            ("capabilities", !self.capabilities.is_empty()),
            ("ports", !self.ports.is_empty()),
            ("restart", self.restart.is_some()),
            ("healthcheck", self.healthcheck.is_some()),
            ("reload", !self.reload.is_empty()),
            ("service", self.service.is_some()),
            ("probe", self.probe.is_some()),
            ("deadline", self.deadline.is_some()),
            ("interval", self.interval.is_some()),
        ];
        set.into_iter().filter(|(_, is_set)| *is_set).map(|(name, _)| name).collect()
    }

    fn container(&mut self) -> Result<Container, String> {
        Ok(Container {
            image: self.image.take().ok_or("missing field `image`")?,
            command: std::mem::take(&mut self.command),
            args: std::mem::take(&mut self.args),
            env: std::mem::take(&mut self.env),
            mounts: std::mem::take(&mut self.mounts),
            networks: std::mem::take(&mut self.networks),
            resources: self.resources.take().unwrap_or_default(),
            progress: std::mem::take(&mut self.progress),
            capabilities: std::mem::take(&mut self.capabilities),
        })
    }
}

impl TryFrom<StepRepr> for Step {
    type Error = String;

    fn try_from(mut repr: StepRepr) -> Result<Self, Self::Error> {
        let allowed = repr.kind.fields();
        if let Some(field) = repr.present().into_iter().find(|field| !allowed.contains(field)) {
            return Err(format!("unknown field `{field}` for a {} step", repr.kind.name()));
        }
        let action = match repr.kind {
            StepKind::Run => Action::Run(repr.container()?),
            StepKind::Teardown => Action::Teardown(repr.container()?),
            StepKind::Service => Action::Service(Service {
                container: repr.container()?,
                ports: std::mem::take(&mut repr.ports),
                restart: repr.restart.unwrap_or_default(),
                healthcheck: repr.healthcheck.take(),
                reload: std::mem::take(&mut repr.reload),
            }),
            StepKind::Exec => Action::Exec(Exec {
                service: repr.service.take().ok_or("missing field `service`")?,
                command: std::mem::take(&mut repr.command),
                env: std::mem::take(&mut repr.env),
                progress: std::mem::take(&mut repr.progress),
            }),
            StepKind::Wait => Action::Wait(Wait {
                probe: repr.probe.take().ok_or("missing field `probe`")?,
                deadline: repr.deadline.ok_or("missing field `deadline`")?,
                interval: repr.interval.unwrap_or(DEFAULT_PROBE_INTERVAL),
            }),
        };
        Ok(Step { needs: repr.needs, timeout: repr.timeout, retries: repr.retries, repeat: repr.repeat, action })
    }
}

impl From<Step> for StepRepr {
    fn from(step: Step) -> Self {
        let kind = step.kind();
        let mut repr = StepRepr {
            kind,
            needs: step.needs,
            timeout: step.timeout,
            retries: step.retries,
            repeat: step.repeat,
            image: None,
            command: Vec::new(),
            args: Vec::new(),
            env: BTreeMap::new(),
            mounts: Vec::new(),
            networks: Vec::new(),
            resources: None,
            progress: Vec::new(),
            capabilities: Vec::new(),
            ports: Vec::new(),
            restart: None,
            healthcheck: None,
            reload: Vec::new(),
            service: None,
            probe: None,
            deadline: None,
            interval: None,
        };
        let put_container = |repr: &mut StepRepr, container: Container| {
            repr.image = Some(container.image);
            repr.command = container.command;
            repr.args = container.args;
            repr.env = container.env;
            repr.mounts = container.mounts;
            repr.networks = container.networks;
            repr.resources = (!container.resources.is_empty()).then_some(container.resources);
            repr.progress = container.progress;
            repr.capabilities = container.capabilities;
        };
        match step.action {
            Action::Run(container) | Action::Teardown(container) => put_container(&mut repr, container),
            Action::Service(service) => {
                put_container(&mut repr, service.container);
                repr.ports = service.ports;
                repr.restart = Some(service.restart);
                repr.healthcheck = service.healthcheck;
                repr.reload = service.reload;
            }
            Action::Exec(exec) => {
                repr.service = Some(exec.service);
                repr.command = exec.command;
                repr.env = exec.env;
                repr.progress = exec.progress;
            }
            Action::Wait(wait) => {
                repr.probe = Some(wait.probe);
                repr.deadline = Some(wait.deadline);
                repr.interval = Some(wait.interval);
            }
        }
        repr
    }
}
