//! Turns a pattern, its files and the supplied values into an executor [`Plan`]: parameters
//! substituted, templates rendered, images resolved through the mirror map, and every name
//! scoped to the instance. Rendering happens here, in memory; [`Materials::write`] puts the
//! rendered files on disk where the containers mount them.
//!
//! Secrets go only where a secret may go: whole `env` values (as secret env vars) and
//! templates. A secret anywhere else (a command line, an image reference) is refused.
//!
//! [`compile`] walks the pattern once with a `Compiler`, which holds what the parts share (the
//! placeholders, the rendered files' digests, the image references, the networks): files
//! first, then images, then steps, then artifacts, since each refers to the ones before.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pmesh_proto::pattern::spec::{
    Action as SpecAction, Artifact, Container, Image, Mount, MountSource as SpecMount, PortValue, Probe as SpecProbe,
    Protocol as SpecProtocol, Restart, Service, Step,
};
use pmesh_proto::pattern::{self, ParamValue, Params, Pattern};
use sha2::{Digest, Sha256};

use crate::config::ImageConfig;
use crate::executor::plan::{
    scope, Action, ContainerSpec, EnvValue, EnvVar, HealthSpec, ImageSource, MountSource, MountSpec, Plan, PlannedArtifact, PlannedStep,
    PortSpec, Probe, Protocol, RegistryAuth, Reload, RestartPolicy, RetryPolicy,
};

/// Why a pattern could not be turned into a plan; the message names the step and field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct CompileError(String);

/// Files to write before the plan runs: rendered templates and copied pattern files, by
/// absolute path.
#[derive(Debug, Default)]
pub struct Materials {
    pub files: BTreeMap<PathBuf, Vec<u8>>,
    /// The templates rendered with a secret value in them: written 0600.
    pub private: BTreeSet<PathBuf>,
}

impl Materials {
    /// Writes every file, atomically. A file holding a secret is 0600, owned by the agent's
    /// user: no other user of the host reads it, and a container's process reads it as root
    /// (Docker's default capabilities include `DAC_OVERRIDE`), so a pattern reads its secret
    /// files as root and may drop to another user after (as `shared/ldap` does). Every other
    /// file is 0644: containers read them as whatever user they run as.
    ///
    /// # Errors
    /// When the disk fails.
    pub fn write(&self) -> anyhow::Result<()> {
        for (path, contents) in &self.files {
            let mode = if self.private.contains(path) { 0o600 } else { 0o644 };
            pmesh_rt::files::write_atomic(path, contents, mode)?;
        }
        Ok(())
    }
}

/// What [`compile`] needs besides the pattern.
pub struct Inputs<'a> {
    pub files: &'a BTreeMap<String, Vec<u8>>,
    pub params: &'a Params,
    pub instance: &'a str,
    /// The dispatching agent's name, "" for a local apply (see `Plan::agent`).
    pub agent: &'a str,
    pub run_id: &'a str,
    /// `DATA_DIR/instances/INSTANCE`: rendered files go under `files/`, build contexts under
    /// `pattern/`.
    pub work_dir: &'a Path,
    pub images: &'a ImageConfig,
    /// Artifacts already in the cache, by name.
    pub artifacts: &'a BTreeMap<String, PathBuf>,
    pub max_parallel: usize,
    /// What `${host.address}` and `${host.name}` stand for in outputs.
    pub facts: &'a pattern::RunFacts,
}

/// A compiled plan, its files, and the secret values to redact from its output.
pub struct Compiled {
    pub plan: Plan,
    pub materials: Materials,
    pub secrets: Vec<String>,
}

/// Compiles `pattern` for `inputs`.
///
/// # Errors
/// [`CompileError`] naming the step and field whose value cannot be resolved.
pub fn compile(pattern: &Pattern, inputs: &Inputs<'_>) -> Result<Compiled, CompileError> {
    Compiler::new(pattern, inputs).compile()
}

/// Rewrites an image reference through the mirror map: the longest matching prefix wins.
pub fn rewrite_image(reference: &str, rewrites: &BTreeMap<String, String>) -> String {
    rewrites
        .iter()
        .filter(|(from, _)| reference.starts_with(from.as_str()))
        .max_by_key(|(from, _)| from.len())
        .map(|(from, to)| format!("{to}{}", &reference[from.len()..]))
        .unwrap_or_else(|| reference.to_owned())
}

/// The registry host of a reference (`registry.lab:5000/x/y:1` → `registry.lab:5000`).
fn registry_of(reference: &str) -> &str {
    match reference.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => first,
        _ => "docker.io",
    }
}

/// `${param}` substitution, knowing which params are secret and so where each may go (a
/// repetition's own copy holds `item` and `index` too).
struct Placeholders<'a> {
    params: std::borrow::Cow<'a, Params>,
    /// The names of the secret params.
    secrets: BTreeSet<String>,
}

impl<'a> Placeholders<'a> {
    fn new(params: std::borrow::Cow<'a, Params>) -> Self {
        let secrets = params.iter().filter(|(_, value)| matches!(value, ParamValue::Secret(_))).map(|(name, _)| name.clone()).collect();
        Placeholders { params, secrets }
    }

    /// Substitutes `${param}` in text where no secret may go.
    fn text(&self, value: &str, place: &str) -> Result<String, CompileError> {
        if let Some(secret) = self.secrets.iter().find(|name| value.contains(&format!("${{{name}}}"))) {
            return Err(CompileError(format!("{place}: secret param {secret} may only be used in env values and templates")));
        }
        pattern::substitute(value, &self.params).map_err(|err| CompileError(format!("{place}: {err}")))
    }

    fn texts(&self, values: &[String], place: &str) -> Result<Vec<String>, CompileError> {
        values.iter().map(|value| self.text(value, place)).collect()
    }

    /// Substitutes `${param}` where a secret may go (an artifact URL may hold a download
    /// token); the runner redacts every secret value from what it reports.
    fn secret_text(&self, value: &str, place: &str) -> Result<String, CompileError> {
        pattern::substitute(value, &self.params).map_err(|err| CompileError(format!("{place}: {err}")))
    }

    fn port(&self, value: &PortValue, place: &str) -> Result<u16, CompileError> {
        match value {
            PortValue::Number(number) => Ok(*number),
            // The model keeps the param's name (`"${listen_port}"` in YAML).
            PortValue::Param(name) => {
                let resolved = self
                    .params
                    .get(name)
                    .and_then(ParamValue::as_text)
                    .ok_or_else(|| CompileError(format!("{place}: param {name} has no value")))?;
                resolved.parse().map_err(|_| CompileError(format!("{place}: param {name} = {resolved:?} is not a port")))
            }
        }
    }

    /// Env values: a value that is exactly one secret param, or that mixes one into other
    /// text, becomes a secret env var.
    fn env(&self, values: &BTreeMap<String, String>, place: &str) -> Result<Vec<EnvVar>, CompileError> {
        values
            .iter()
            .map(|(name, raw)| {
                let whole_secret = self.params.iter().find_map(|(param, value)| match value {
                    ParamValue::Secret(secret) if raw == &format!("${{{param}}}") => Some(secret.clone()),
                    _ => None,
                });
                let value = match whole_secret {
                    Some(secret) => EnvValue::Secret(secret),
                    None => {
                        let substituted = self.secret_text(raw, &format!("{place}.{name}"))?;
                        // A secret mixed into other text is still a secret.
                        if self.secrets.iter().any(|param| raw.contains(&format!("${{{param}}}"))) {
                            EnvValue::Secret(pattern::Secret::new(substituted))
                        } else {
                            EnvValue::Plain(substituted)
                        }
                    }
                };
                Ok(EnvVar { name: name.clone(), value })
            })
            .collect()
    }

    /// Whether rendered `contents` hold the value of a secret param.
    fn holds_secret(&self, contents: &[u8]) -> bool {
        self.secret_values()
            .iter()
            .any(|secret| !secret.is_empty() && contents.windows(secret.len()).any(|window| window == secret.as_bytes()))
    }

    /// The secret values, for the runner to redact.
    fn secret_values(&self) -> Vec<String> {
        self.params
            .iter()
            .filter_map(|(_, value)| match value {
                ParamValue::Secret(secret) => Some(secret.expose().to_owned()),
                _ => None,
            })
            .collect()
    }
}

/// One compilation: the pattern and inputs, and what the parts resolved so far that later
/// parts refer to.
struct Compiler<'a> {
    pattern: &'a Pattern,
    inputs: &'a Inputs<'a>,
    placeholders: Placeholders<'a>,
    /// `AGENT-INSTANCE` (or `INSTANCE` for a local apply): the prefix of every name.
    scope: String,
    materials: Materials,
    /// The sha256 of each file's contents, by its destination name.
    file_digests: BTreeMap<String, String>,
    /// The reference each image name resolves to.
    image_refs: BTreeMap<String, String>,
    /// The scoped networks the containers join.
    networks: BTreeSet<String>,
}

impl<'a> Compiler<'a> {
    fn new(pattern: &'a Pattern, inputs: &'a Inputs<'a>) -> Self {
        Compiler {
            pattern,
            inputs,
            placeholders: Placeholders::new(std::borrow::Cow::Owned(repeat::with_run_facts(inputs))),
            scope: scope(inputs.agent, inputs.instance),
            materials: Materials::default(),
            file_digests: BTreeMap::new(),
            image_refs: BTreeMap::new(),
            networks: BTreeSet::new(),
        }
    }

    fn compile(mut self) -> Result<Compiled, CompileError> {
        self.files()?;
        let images = self.images()?;
        let (steps, teardown) = self.steps()?;
        let artifacts = self.artifacts(&steps)?;
        let (pattern, inputs) = (self.pattern, self.inputs);
        // `${image.NAME}` in outputs is the reference each image resolved to here.
        let facts = pattern::RunFacts { images: self.image_refs.clone(), ..inputs.facts.clone() };
        let outputs = outputs::plan_outputs(pattern, inputs.params, &facts)?;
        let plan = Plan {
            instance: inputs.instance.to_owned(),
            artifacts,
            agent: inputs.agent.to_owned(),
            pattern: format!("{}@{}", pattern.metadata.name, pattern.metadata.version),
            run_id: inputs.run_id.to_owned(),
            images,
            networks: self.networks.into_iter().collect(),
            steps,
            teardown,
            max_parallel: inputs.max_parallel,
            resume: BTreeMap::new(),
            timeout: None,
            outputs,
        };
        Ok(Compiled { plan, materials: self.materials, secrets: self.placeholders.secret_values() })
    }

    /// Files: templates rendered, the rest copied, by destination name.
    fn files(&mut self) -> Result<(), CompileError> {
        let files_dir = self.inputs.work_dir.join("files");
        for file in &self.pattern.files {
            let source =
                self.inputs.files.get(&file.path).ok_or_else(|| CompileError(format!("files: {} is not in the pattern", file.path)))?;
            let contents = if file.template {
                let template = std::str::from_utf8(source).map_err(|_| CompileError(format!("files: {} is not UTF-8", file.path)))?;
                pattern::render(template, self.inputs.params)
                    .map_err(|err| CompileError(format!("files: {}: {err}", file.path)))?
                    .into_bytes()
            } else {
                source.clone()
            };
            self.file_digests.insert(file.dest().to_owned(), hex::encode(Sha256::digest(&contents)));
            if file.template && self.placeholders.holds_secret(&contents) {
                self.materials.private.insert(files_dir.join(file.dest()));
            }
            self.materials.files.insert(files_dir.join(file.dest()), contents);
        }
        Ok(())
    }

    /// Images, each resolved to the reference steps run, by the name steps use.
    fn images(&mut self) -> Result<Vec<ImageSource>, CompileError> {
        let mut images = Vec::new();
        for (name, image) in &self.pattern.images {
            let place = format!("images.{name}");
            let source = match image {
                Image::Ref(reference) => self.pull(reference, &place)?,
                Image::Load(artifact) => self.load(name, artifact, &place)?,
                Image::Build(build) => self.build(name, build, &place)?,
            };
            self.image_refs.insert(name.clone(), source.reference().to_owned());
            images.push(source);
        }
        Ok(images)
    }

    /// A registry image: through the mirror map, with the registry's login when one is set.
    fn pull(&self, reference: &str, place: &str) -> Result<ImageSource, CompileError> {
        let config = self.inputs.images;
        let reference = rewrite_image(&self.placeholders.text(reference, place)?, &config.rewrite);
        let auth = config
            .registries
            .get(registry_of(&reference))
            .map(|login| RegistryAuth { username: login.username.clone(), password: login.password.clone() });
        Ok(ImageSource::Pull { reference, auth })
    }

    /// An image tarball from the artifact cache, tagged by the pattern's version.
    fn load(&self, name: &str, artifact: &str, place: &str) -> Result<ImageSource, CompileError> {
        let tarball =
            self.inputs.artifacts.get(artifact).ok_or_else(|| CompileError(format!("{place}: artifact {artifact} is not in the cache")))?;
        let metadata = &self.pattern.metadata;
        Ok(ImageSource::Load { tarball: tarball.clone(), tag: format!("pmesh/{}-{name}:{}", metadata.name, metadata.version) })
    }

    /// The steps to run, and the teardown steps apart.
    fn steps(&mut self) -> Result<(Vec<PlannedStep>, Vec<PlannedStep>), CompileError> {
        let mut steps = Vec::new();
        let mut teardown = Vec::new();
        for (name, step) in &self.pattern.steps {
            if let Some(repeat) = &step.repeat {
                steps.extend(self.repeated(name, step, repeat)?);
                continue;
            }
            let planned = self.step(name, step)?;
            if matches!(step.action, SpecAction::Teardown(_)) {
                teardown.push(planned);
            } else {
                steps.push(planned);
            }
        }
        repeat::expand_needs(&mut steps);
        Ok((steps, teardown))
    }

    fn step(&mut self, name: &str, step: &Step) -> Result<PlannedStep, CompileError> {
        let place = format!("steps.{name}");
        let placeholders = &self.placeholders;
        let action = match &step.action {
            SpecAction::Run(container) | SpecAction::Teardown(container) => Action::Run(self.container_spec(container, &place)?),
            SpecAction::Service(service) => Action::Service(self.service(service, &place, name)?),
            SpecAction::Exec(exec) => Action::Exec {
                service: exec.service.clone(),
                command: placeholders.texts(&exec.command, &format!("{place}.command"))?,
                env: placeholders.env(&exec.env, &format!("{place}.env"))?,
            },
            SpecAction::Wait(wait) => {
                Action::Wait { probe: self.probe(&wait.probe, &place)?, deadline: wait.deadline, interval: wait.interval }
            }
        };
        Ok(PlannedStep {
            name: name.to_owned(),
            needs: step.needs.clone(),
            timeout: step.timeout,
            retries: step
                .retries
                .as_ref()
                .map(|retries| RetryPolicy { attempts: retries.attempts.max(1), backoff: retries.backoff })
                .unwrap_or_default(),
            progress: progress_patterns(step, &place)?,
            group: None,
            action,
        })
    }

    /// A service: its container, and the restart policy, ports and healthcheck a one-shot
    /// container has not.
    fn service(&mut self, service: &Service, place: &str, name: &str) -> Result<ContainerSpec, CompileError> {
        let mut spec = self.container_spec(&service.container, place)?;
        // With a reload command, the files of `dir` mounts leave the spec hash: a change of
        // them alone reloads the running container instead of replacing it.
        if !service.reload.is_empty() {
            let (reloadable, others) = std::mem::take(&mut spec.inputs).into_iter().partition(|(key, _)| key.starts_with("dir:"));
            spec.inputs = others;
            spec.reload = Some(Reload {
                command: self.placeholders.texts(&service.reload, &format!("{place}.reload"))?,
                inputs: reloadable,
                record: self.inputs.work_dir.join("reloaded").join(name),
            });
        }
        spec.restart = match service.restart {
            Restart::No => RestartPolicy::No,
            Restart::OnFailure => RestartPolicy::OnFailure,
            Restart::Always => RestartPolicy::Always,
            Restart::UnlessStopped => RestartPolicy::UnlessStopped,
        };
        for mapping in &service.ports {
            let container_port = mapping.container;
            let host_port = match &mapping.host {
                Some(value) => self.placeholders.port(value, &format!("{place}.ports"))?,
                None => container_port,
            };
            let protocol = match mapping.protocol {
                SpecProtocol::Tcp => Protocol::Tcp,
                SpecProtocol::Udp => Protocol::Udp,
            };
            spec.ports.push(PortSpec { container_port, host_port, host_ip: None, protocol });
        }
        spec.healthcheck = match &service.healthcheck {
            Some(check) => Some(HealthSpec {
                command: self.placeholders.texts(&check.command, &format!("{place}.healthcheck"))?,
                interval: check.interval,
                timeout: check.timeout,
                retries: check.retries,
            }),
            None => None,
        };
        Ok(spec)
    }

    /// A container as both run and service steps have it; its networks join the plan's.
    fn container_spec(&mut self, container: &Container, place: &str) -> Result<ContainerSpec, CompileError> {
        let image = self
            .image_refs
            .get(&container.image)
            .ok_or_else(|| CompileError(format!("{place}.image: no image named {}", container.image)))?;
        let mut mounts = Vec::new();
        let mut used_inputs = BTreeMap::new();
        for mount in &container.mounts {
            mounts.push(self.mount(mount, place, &mut used_inputs)?);
        }
        let scoped_networks: Vec<String> = container.networks.iter().map(|name| format!("pmesh-{}-{name}", self.scope)).collect();
        self.networks.extend(scoped_networks.iter().cloned());
        let placeholders = &self.placeholders;
        Ok(ContainerSpec {
            image: image.clone(),
            entrypoint: (!container.command.is_empty())
                .then(|| placeholders.texts(&container.command, &format!("{place}.command")))
                .transpose()?,
            command: placeholders.texts(&container.args, &format!("{place}.args"))?,
            env: placeholders.env(&container.env, &format!("{place}.env"))?,
            mounts,
            ports: Vec::new(),
            networks: scoped_networks,
            restart: RestartPolicy::No,
            healthcheck: None,
            memory_bytes: container.resources.memory,
            nano_cpus: container.resources.cpus.map(|cpus| (cpus * 1e9) as u64),
            workdir: None,
            user: None,
            inputs: used_inputs,
            reload: None,
            capabilities: container.capabilities.clone(),
        })
    }

    /// A mount; a pattern file's digest (each file's, for a directory) goes into `used_inputs`,
    /// so a changed file restarts the container that mounts it (or reloads it: see `service`).
    fn mount(&self, mount: &Mount, place: &str, used_inputs: &mut BTreeMap<String, String>) -> Result<MountSpec, CompileError> {
        let target = self.placeholders.text(&mount.target, &format!("{place}.mounts"))?;
        let (source, read_only) = match &mount.source {
            SpecMount::File(name) => {
                let digest =
                    self.file_digests.get(name).ok_or_else(|| CompileError(format!("{place}.mounts: no file with dest {name}")))?;
                used_inputs.insert(format!("file:{name}"), digest.clone());
                (MountSource::Host(self.inputs.work_dir.join("files").join(name)), mount.readonly)
            }
            // A directory: every file under it counts, so a changed one is seen.
            SpecMount::Dir(name) => {
                let prefix = format!("{name}/");
                for (dest, digest) in self.file_digests.iter().filter(|(dest, _)| dest.starts_with(&prefix)) {
                    used_inputs.insert(format!("dir:{dest}"), digest.clone());
                }
                (MountSource::Host(self.inputs.work_dir.join("files").join(name)), mount.readonly)
            }
            SpecMount::Artifact(name) => {
                let path = self
                    .inputs
                    .artifacts
                    .get(name)
                    .ok_or_else(|| CompileError(format!("{place}.mounts: artifact {name} is not in the cache")))?;
                (MountSource::Host(path.clone()), true)
            }
            SpecMount::Volume(name) => (MountSource::Volume(format!("pmesh-{}-{name}", self.scope)), mount.readonly),
        };
        Ok(MountSpec { source, target, read_only })
    }

    fn probe(&self, spec: &SpecProbe, place: &str) -> Result<Probe, CompileError> {
        let place = format!("{place}.probe");
        let placeholders = &self.placeholders;
        Ok(match spec {
            SpecProbe::Tcp { host, port } => Probe::Tcp { host: placeholders.text(host, &place)?, port: placeholders.port(port, &place)? },
            SpecProbe::Http { url, status, trust, auth, json } => {
                let url = placeholders.text(url, &place)?;
                let trust = probe::trust(placeholders, &url, trust.as_ref(), &place)?;
                let auth = match auth {
                    Some(auth) => Some(probe::basic_auth(placeholders, auth, &place)?),
                    None => None,
                };
                let json = match json {
                    Some(condition) => Some((placeholders.text(&condition.path, &place)?, placeholders.text(&condition.equals, &place)?)),
                    None => None,
                };
                Probe::Http { url, status: *status, trust, auth, json }
            }
            SpecProbe::Dns { server, port, name, record_type } => Probe::Dns {
                server: placeholders.text(server, &place)?,
                port: placeholders.port(port, &place)?,
                name: placeholders.text(name, &place)?,
                record_type: record_type.clone(),
            },
            SpecProbe::Exec { service, command } => Probe::Exec { service: service.clone(), command: placeholders.texts(command, &place)? },
        })
    }

    /// The artifacts to fetch. One a service mounts is in use for as long as the service runs,
    /// past the run, so it is retained for the instance's scope.
    fn artifacts(&self, steps: &[PlannedStep]) -> Result<Vec<PlannedArtifact>, CompileError> {
        let mut artifacts = Vec::new();
        for (name, artifact) in &self.pattern.artifacts {
            let mut planned = self.artifact(name, artifact)?;
            let mounted_by_service = steps.iter().any(|step| match &step.action {
                Action::Service(spec) => spec.mounts.iter().any(|mount| mount.source == MountSource::Host(planned.path.clone())),
                _ => false,
            });
            if mounted_by_service {
                planned.retain_for = Some(self.scope.clone());
            }
            artifacts.push(planned);
        }
        Ok(artifacts)
    }

    fn artifact(&self, name: &str, artifact: &Artifact) -> Result<PlannedArtifact, CompileError> {
        let place = format!("artifacts.{name}");
        let path = self.inputs.artifacts.get(name).ok_or_else(|| CompileError(format!("{place}: no cache path for it")))?;
        let urls =
            artifact.urls.iter().map(|url| self.placeholders.secret_text(url, &format!("{place}.url"))).collect::<Result<Vec<_>, _>>()?;
        let auth = match &artifact.auth {
            None => None,
            // An optional token left out means an anonymous download.
            Some(param) => match self.inputs.params.get(param) {
                Some(ParamValue::Secret(secret)) => Some(secret.clone()),
                None => None,
                Some(_) => return Err(CompileError(format!("{place}.auth: param {param} is not a secret"))),
            },
        };
        Ok(PlannedArtifact {
            name: name.to_owned(),
            sha256: artifact.sha256.clone(),
            size: artifact.size,
            path: path.clone(),
            urls,
            auth,
            retain_for: None,
        })
    }
}

fn progress_patterns(step: &Step, place: &str) -> Result<Vec<regex::Regex>, CompileError> {
    let patterns: &[String] = match &step.action {
        SpecAction::Run(container) | SpecAction::Teardown(container) => &container.progress,
        SpecAction::Service(service) => &service.container.progress,
        SpecAction::Exec(exec) => &exec.progress,
        SpecAction::Wait(_) => &[],
    };
    patterns.iter().map(|pattern| regex::Regex::new(pattern).map_err(|err| CompileError(format!("{place}.progress: {err}")))).collect()
}

/// The default parallelism when the config does not set one.
pub const DEFAULT_MAX_PARALLEL: usize = 4;

/// A run id: time-ordered and unique enough for one agent.
pub fn new_run_id() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or(Duration::ZERO);
    format!("r{}{:04x}", now.as_secs(), rand::random::<u16>())
}

mod image_build;
mod outputs;
mod probe;
mod repeat;
#[cfg(test)]
mod tests;

pub use outputs::host_of;
